"""The server, the seeded data sets and the copies each run works on, the selection, and the
checksum that verifies a run (its SQL is the tests' byte-exact oracle, tests/support/oracle.py).

A data set of N leads is seeded once into a MyISAM template database `va_bench_tpl_<N>`; every
measured run starts from a fresh copy of it in the engine under test (`va_bench_run`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from typing import Any

import pymysql

from archiver import config, synthetic
from archiver import logging as alog
from archiver.db import Db, connect, make_engine
from bench import log
from tests.support.oracle import ARCHIVE as ARCHIVE  # re-exported: the tables' names
from tests.support.oracle import LIVE as LIVE
from tests.support.oracle import checksum_sql

RUN_DB = "va_bench_run"
TEMPLATE_PREFIX = "va_bench_tpl_"

# The template's list layout: leads in blocks of LIST_BLOCK ids, every other block in the list
# that is archived (half of the leads), the others spread over the remaining lists. Changing
# it changes LAYOUT, so a kept template of the old layout is rebuilt.
ARCHIVE_LIST = 999
LIST_BLOCK = 1000
LAYOUT = f"list {ARCHIVE_LIST} every other block of {LIST_BLOCK}"


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
            host=str(parts.get("host", "127.0.0.1")),
            port=int(parts.get("port", 3306)),
            user=str(parts.get("user", "root")),
            password=str(parts.get("password", "")),
        )

    def dsn(self, database: str) -> str:
        pw = f":{self.password}" if self.password else ""
        return f"mysql://{self.user}{pw}@{self.host}:{self.port}/{database}"

    def connect(self, database: str | None = None, **kw: Any) -> Any:
        """A PyMySQL connection (autocommit, utf8mb4)."""
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


@dataclass(frozen=True)
class Selection:
    """What every tool archives: `where` for the SQL tools and the checks, `ours` the same
    selection as this tool's flags."""

    where: str
    ours: tuple[str, ...]

    @staticmethod
    def by_list() -> Selection:
        return Selection(f"list_id = {ARCHIVE_LIST}", ("--list-id", str(ARCHIVE_LIST)))

    @staticmethod
    def by_where(where: str) -> Selection:
        return Selection(where, ("--where", where))


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


# --- data sets and fresh copies --------------------------------------------------------------


def create_run_db(server: Server, name: str, engine: str) -> Db:
    """A new, empty database `name` with the stock VICIdial tables in `engine`."""
    admin = server.archiver_db("mysql")
    synthetic.drop_database(admin, name)
    synthetic.create_database(admin, name)
    admin.conn.close()
    db = server.archiver_db(name)
    synthetic.create_tables(db, engine)
    return db


def template_name(leads: int) -> str:
    return f"{TEMPLATE_PREFIX}{leads}"


def template_meta(server: Server, name: str) -> tuple[int, str] | None:
    """(leads, layout) of an existing template, None when there is none."""
    conn = server.connect()
    try:
        if not q1(
            conn,
            "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s"
            " AND TABLE_NAME = 'bench_meta' AND COLUMN_NAME = 'layout'",
            (name,),
        ):
            return None
        row = rows(conn, f"SELECT leads, layout FROM `{name}`.bench_meta")
        return (int(row[0][0]), str(row[0][1])) if row else None
    finally:
        conn.close()


def seed_template(server: Server, leads: int) -> float:
    """Seed `leads` synthetic leads into the MyISAM template of that size, in the bench's list
    layout. Returns the seconds it took."""
    started = time.monotonic()
    name = template_name(leads)
    db = create_run_db(server, name, "MyISAM")
    db.write("ALTER TABLE vicidial_list DISABLE KEYS")
    synthetic.seed_leads(db, leads, batch=200_000)
    others = ", ".join(str(lid) for lid, _ in synthetic.LISTS if lid != ARCHIVE_LIST)
    n_others = len(synthetic.LISTS) - 1
    db.write(
        f"UPDATE vicidial_list SET list_id = IF((lead_id - 1) DIV {LIST_BLOCK} % 2 = 0,"
        f" {ARCHIVE_LIST}, ELT(1 + lead_id % {n_others}, {others}))"
    )
    db.write("ALTER TABLE vicidial_list ENABLE KEYS")
    db.write(
        "CREATE TABLE bench_meta (leads INT UNSIGNED NOT NULL, layout VARCHAR(200) NOT NULL)"
        " ENGINE=MyISAM"
    )
    db.write(f"INSERT INTO bench_meta VALUES ({int(leads)}, '{LAYOUT}')")
    db.conn.close()
    return time.monotonic() - started


class Templates:
    """The data sets of one bench invocation: each size seeded once, on first use, and copied
    for every run; dropped at the end unless kept. A kept template of the same size and layout
    is reused by the next invocation."""

    def __init__(self, server: Server, keep: bool) -> None:
        self.server, self.keep = server, keep
        self.ready: dict[int, str] = {}

    def get(self, leads: int) -> str:
        if leads in self.ready:
            return self.ready[leads]
        name = template_name(leads)
        if self.keep and template_meta(self.server, name) == (leads, LAYOUT):
            log(f"reusing template {name}")
        else:
            log(f"seeding {leads:,} leads into template {name} …")
            log(f"seeded in {seed_template(self.server, leads):.1f}s")
        self.ready[leads] = name
        return name

    def drop(self, leads: int) -> None:
        """Drop one size's template now (unless kept): the scaling run frees its disk."""
        name = self.ready.pop(leads, None)
        if name is not None and not self.keep:
            drop(self.server, name)

    def close(self) -> None:
        for leads in list(self.ready):
            self.drop(leads)


def fresh_copy(server: Server, engine: str, template: str, name: str = RUN_DB) -> float:
    """A new database `name` with the stock tables in `engine` and the template's leads
    (CREATE TABLE from the stock schema + one INSERT … SELECT; MyISAM: keys disabled during
    the copy and rebuilt by sort; InnoDB: unique checks off). Returns seconds taken."""
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
    settle(server, name)
    return time.monotonic() - started


def settle(server: Server, name: str) -> None:
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

Checksum = tuple[int, str, int]


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


def checksum(conn: Any, table: str, columns: list[str], where: str) -> Checksum:
    r = rows(conn, checksum_sql(table, columns, where))[0]
    return int(r[0]), str(r[1]), int(r[2])


def env_without_archiver() -> dict[str, str]:
    """The environment for the tool's process: no stray ARCHIVER_* settings from the caller."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVER_")}
    env["ARCHIVER_CONFIG"] = ""
    return env
