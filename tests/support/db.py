"""Throwaway VICIdial databases on the test server (ARCHIVER_TEST_DSN, default
root@127.0.0.1:3306): each one uniquely named, dropped afterwards; the fixtures in conftest.py
build on these."""

from __future__ import annotations

import os
import shlex
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from click.testing import Result

from archiver import config, synthetic
from archiver.db import Db, connect, make_engine
from tests.support import oracle, serverlock
from tests.support.cli import invoke
from tests.support.oracle import ARCHIVE, LIVE

TEST_DSN = os.environ.get("ARCHIVER_TEST_DSN", "mysql://root@127.0.0.1:3306/mysql")
ENGINES = ("MyISAM", "InnoDB")


def server_settings() -> config.Settings:
    return config.load_settings(dsn=TEST_DSN, env={})


def open_db(settings: config.Settings) -> Db:
    return Db(connect(make_engine(settings), settings))


@dataclass
class VDb:
    """A throwaway VICIdial database on the test server."""

    name: str
    engine: str
    settings: config.Settings
    db: Db

    @property
    def dsn(self) -> str:
        d = self.settings.db
        pw = f":{d.password}" if d.password else ""
        return f"mysql://{d.user}{pw}@{d.host}:{d.port}/{self.name}"

    def connect(self) -> Db:
        """A second, independent connection (a concurrent dialer, a probe)."""
        return open_db(self.settings)

    def seed(self, count: int, first_id: int = 1) -> None:
        synthetic.seed_leads(self.db, count, first_id=first_id)

    def ids(self, table: str) -> list[int]:
        return [int(r[0]) for r in self.db.rows(f"SELECT lead_id FROM `{table}` ORDER BY lead_id")]

    def count(self, table: str) -> int:
        return int(self.db.scalar(f"SELECT COUNT(*) FROM `{table}`"))

    def columns(self, table: str = LIVE) -> list[str]:
        return oracle.columns_of(self.db, LIVE)

    def row_bytes(self, table: str, ids: Sequence[int] | None = None) -> dict[int, tuple[Any, ...]]:
        """Every live column of each row as exact bytes (HEX of the binary cast), by lead_id;
        column order is the live table's whatever the table's own order is."""
        return oracle.row_bytes(self.db, table, self.columns(), ids)

    def checksum(self, *tables: str) -> str:
        """A digest of every row of the tables, byte-exact."""
        return oracle.tables_digest(self.db, self.columns(), tables or (LIVE, ARCHIVE))

    def cli(
        self, args: str | Sequence[str], input: str | None = None, env: dict[str, str] | None = None
    ) -> Result:
        argv = shlex.split(args) if isinstance(args, str) else list(args)
        return invoke(["--dsn", self.dsn, "--log-format", "json", *argv], input=input, env=env)


def make_test_db(engine: str, *, archive: bool = True, seed: int = 0) -> VDb:
    server = server_settings()
    admin = open_db(server)
    name = f"va_test_{uuid.uuid4().hex[:12]}"
    synthetic.create_database(admin, name)
    admin.conn.close()
    settings = replace(server, db=replace(server.db, database=name))
    tdb = VDb(name, engine, settings, open_db(settings))
    synthetic.create_tables(tdb.db, engine, archive=archive)
    if seed:
        tdb.seed(seed)
    return tdb


@contextmanager
def temp_db(engine: str, *, archive: bool = True, seed: int = 0) -> Iterator[VDb]:
    """make_test_db for the length of a `with`."""
    tdb = make_test_db(engine, archive=archive, seed=seed)
    try:
        yield tdb
    finally:
        drop_test_db(tdb)


def drop_test_db(tdb: VDb) -> None:
    try:
        tdb.db.conn.close()
    except Exception:
        pass
    admin = open_db(server_settings())
    synthetic.drop_database(admin, tdb.name)
    admin.conn.close()


@contextmanager
def strict_global_sql_mode(db: Db) -> Iterator[None]:
    """The strictest GLOBAL sql_mode for the duration (new sessions, the tool's included)."""
    serverlock.assert_alone("SET GLOBAL sql_mode")
    original = db.scalar("SELECT @@GLOBAL.sql_mode")
    db.write(
        "SET GLOBAL sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_DATE,NO_ZERO_IN_DATE,"
        "ERROR_FOR_DIVISION_BY_ZERO'"
    )
    try:
        yield
    finally:
        db.write("SET GLOBAL sql_mode = :m", {"m": original})


@contextmanager
def db_user(vdb: VDb, password: str, *, monitor: bool = False) -> Iterator[str]:
    """A user of the test database with this password (bound, so any character goes)."""
    user = f"va_dsn_{uuid.uuid4().hex[:8]}"
    vdb.db.write(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY :pw", {"pw": password})
    vdb.db.write(f"GRANT ALL ON `{vdb.name}`.* TO '{user}'@'127.0.0.1'")
    if monitor:  # what SHOW SLAVE STATUS needs on MariaDB
        vdb.db.write(f"GRANT SLAVE MONITOR ON *.* TO '{user}'@'127.0.0.1'")
    try:
        yield user
    finally:
        vdb.db.write(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")
