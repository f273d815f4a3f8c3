"""Server connections, the seeded template database, fresh copies and the checksum that
verifies a run (its SQL is the tests' byte-exact oracle, tests/support/oracle.py). Shared by
run.py, the probe and the experiments."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pymysql

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from archiver import config, synthetic  # noqa: E402
from archiver import logging as alog  # noqa: E402
from archiver.db import Db, connect, make_engine  # noqa: E402
from archiver.schema import reflect  # noqa: E402
from archiver.steps import ARCHIVE as TO_ARCHIVE  # noqa: E402
from archiver.steps import ChunkSql  # noqa: E402
from tests.support.oracle import ARCHIVE, LIVE, checksum_sql  # noqa: E402

TEMPLATE = "va_bench_tpl"
RUN_DB = "va_bench_run"


@dataclass(frozen=True)
class Server:
    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: str = ""

    @staticmethod
    def from_dsn(dsn: str) -> Server:
        parts = config.parse_dsn(dsn, "--dsn")
        return Server(
            host=parts.get("host", "127.0.0.1"),
            port=int(parts.get("port", 3306)),
            user=parts.get("user", "root"),
            password=parts.get("password", ""),
        )

    def dsn(self, database: str) -> str:
        pw = f":{self.password}" if self.password else ""
        return f"mysql://{self.user}{pw}@{self.host}:{self.port}/{database}"

    def connect(self, database: str | None = None, **kw: Any) -> pymysql.connections.Connection:
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            database=database,
            autocommit=True,
            charset="utf8mb4",
            **kw,
        )

    def archiver_db(self, database: str) -> Db:
        """A connection through the tool's own Db helper (what synthetic.* expects)."""
        settings = config.load_settings(dsn=self.dsn(database), env={})
        settings = replace(settings, db=replace(settings.db, database=database))
        return Db(connect(make_engine(settings), settings))


def quiet_logs() -> None:
    """The tool's Db helper logs every statement at debug level; the bench does not want that."""
    alog.configure("json", verbose=False)


def q1(conn: Any, sql: str, args: Any = None) -> Any:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        row = cur.fetchone()
    return None if row is None else row[0]


def rows(conn: Any, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


def exec_(conn: Any, sql: str, args: Any = None) -> int:
    with conn.cursor() as cur:
        return int(cur.execute(sql, args))


# --- template and fresh copies ----------------------------------------------------------------


def create_run_db(server: Server, name: str, engine: str) -> Db:
    """A new, empty database `name` with the stock VICIdial tables in `engine`."""
    admin = server.archiver_db("mysql")
    synthetic.drop_database(admin, name)
    synthetic.create_database(admin, name)
    admin.conn.close()
    db = server.archiver_db(name)
    synthetic.create_tables(db, engine)
    return db


def template_leads(server: Server, name: str = TEMPLATE) -> int | None:
    """How many leads an existing template holds (None when there is none)."""
    conn = server.connect()
    try:
        if not q1(
            conn,
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s"
            " AND TABLE_NAME = 'bench_meta'",
            (name,),
        ):
            return None
        return int(q1(conn, f"SELECT leads FROM `{name}`.bench_meta"))
    finally:
        conn.close()


def seed_template(server: Server, leads: int, name: str = TEMPLATE) -> float:
    """Seed `leads` synthetic leads into a MyISAM template database (once per bench run);
    every measured run starts from a copy of it. Returns the seconds it took."""
    started = time.monotonic()
    db = create_run_db(server, name, "MyISAM")
    db.write("ALTER TABLE vicidial_list DISABLE KEYS")
    synthetic.seed_leads(db, leads, batch=200_000)
    db.write("ALTER TABLE vicidial_list ENABLE KEYS")
    db.write("CREATE TABLE bench_meta (leads INT UNSIGNED NOT NULL) ENGINE=MyISAM")
    db.write(f"INSERT INTO bench_meta VALUES ({int(leads)})")
    db.conn.close()
    return time.monotonic() - started


def fresh_copy(server: Server, engine: str, name: str = RUN_DB, template: str = TEMPLATE) -> float:
    """A new database `name` with the stock tables in `engine` and the template's leads
    (CREATE TABLE from the stock schema + one INSERT … SELECT). Returns seconds taken."""
    started = time.monotonic()
    db = create_run_db(server, name, engine)
    myisam = engine.lower() == "myisam"
    if myisam:
        db.write("ALTER TABLE vicidial_list DISABLE KEYS")
    else:
        db.write("SET SESSION unique_checks = 0, foreign_key_checks = 0")
    db.write(f"INSERT INTO vicidial_list SELECT * FROM `{template}`.vicidial_list")
    if myisam:
        db.write("ALTER TABLE vicidial_list ENABLE KEYS")
    db.conn.close()
    settle(server, name, engine)
    return time.monotonic() - started


@contextmanager
def template_copy(server: Server, engine: str, name: str) -> Iterator[tuple[Db, ChunkSql, int]]:
    """A fresh copy `name` of the template in `engine`, with a connection through the tool's
    Db helper, the tool's archive-direction statements for it and the template's lead count;
    dropped afterwards. For the statement-shape scripts."""
    leads = template_leads(server)
    if leads is None:
        raise SystemExit(f"no template {TEMPLATE}: run bench/run.py --keep-template first")
    fresh_copy(server, engine, name=name)
    try:
        db = server.archiver_db(name)
        try:
            live, archive = reflect(db, LIVE), reflect(db, ARCHIVE)
            assert live is not None and archive is not None
            yield db, ChunkSql(TO_ARCHIVE, live, archive), leads
        finally:
            db.conn.close()
    finally:
        drop(server, name)


def settle(server: Server, name: str, engine: str) -> None:
    """Let the copy's writes reach disk before a measured run starts, so a run does not pay
    for the previous copy's writes: FLUSH TABLES … FOR EXPORT writes MyISAM's key cache and
    InnoDB's dirty pages of the two tables out (InnoDB's page cleaner alone may leave them
    dirty for minutes on an idle server)."""
    conn = server.connect(name)
    try:
        exec_(conn, f"FLUSH TABLES `{LIVE}`, `{ARCHIVE}` FOR EXPORT")
        exec_(conn, "UNLOCK TABLES")
    finally:
        conn.close()


def drop(server: Server, name: str) -> None:
    conn = server.connect()
    try:
        exec_(conn, f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()


# --- verification --------------------------------------------------------------------------


def live_columns(conn: Any, database: str) -> list[str]:
    return [
        str(r[0])
        for r in rows(
            conn,
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s"
            " AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
            (database, LIVE),
        )
    ]


def checksum(conn: Any, table: str, columns: list[str], where: str) -> tuple[int, str, int]:
    r = rows(conn, checksum_sql(table, columns, where))[0]
    return int(r[0]), str(r[1]), int(r[2])


def env_without_archiver() -> dict[str, str]:
    """The environment for the tool's process: no stray ARCHIVER_* settings from the caller."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVER_")}
    env["ARCHIVER_CONFIG"] = ""
    return env
