"""Bounded waits: a database or replica that accepts TCP and never answers, a --where that the
allow-list accepts but that runs for ever, and passwords outside ASCII."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from archiver.db import Db, connect, make_engine
from tests.support import proc as hp
from tests.support.cli import invoke
from tests.support.db import ARCHIVE, VDb, db_user
from tests.support.silent import DrippingDb, SilentDb

COSTLY = (
    "list_id = 101 AND EXISTS (SELECT 1 FROM vicidial_list a, vicidial_list b, vicidial_list c"
    " WHERE a.lead_id + b.lead_id + c.lead_id = 0)"
)


def test_cli_gives_up_on_a_database_that_never_answers(tmp_path: Path) -> None:
    silent = SilentDb(life=60)
    try:
        conf = tmp_path / "c.toml"
        conf.write_text(
            f"[database]\nhost = '127.0.0.1'\nport = {silent.port}\nuser = 'x'\n"
            "database = 'asterisk'\nconnect_timeout = 2\n"
        )
        started = time.monotonic()
        done = hp.run("", ["jobs", "list"], config=str(conf), timeout=60)
        took = time.monotonic() - started
    finally:
        silent.stop()
    assert done.rc == 2, done.describe()
    assert done.error.startswith("Error: cannot connect to MariaDB/MySQL at 127.0.0.1:")
    assert took < 30  # not a timing assertion of speed: without the bound it waits for ever


def test_cli_gives_up_on_a_database_that_drips_its_handshake(tmp_path: Path) -> None:
    """Each byte of the greeting comes within the read timeout, the whole greeting in 90 s:
    the attempt as a whole ends at connect_timeout, with the unreachable server's error."""
    dripping = DrippingDb(life=120)
    try:
        conf = tmp_path / "c.toml"
        conf.write_text(
            f"[database]\nhost = '127.0.0.1'\nport = {dripping.port}\nuser = 'x'\n"
            "database = 'asterisk'\nconnect_timeout = 2\n"
        )
        started = time.monotonic()
        done = hp.run("", ["archive", "1", "--ignore-window"], config=str(conf), timeout=100)
        took = time.monotonic() - started
    finally:
        dripping.stop()
    assert done.rc == 2, done.describe()
    assert done.error.startswith("Error: cannot connect to MariaDB/MySQL at 127.0.0.1:")
    assert "Traceback" not in done.stderr
    assert dripping.accepted == 1
    assert took < 30, took  # unbounded, the greeting alone takes 90 s


def test_the_deadline_ends_with_the_connection_attempt(vdb: VDb) -> None:
    """The handshake's deadline bounds the attempt only: a statement of the connection made
    may run longer than connect_timeout (a chunk, an ALTER of `schema sync`)."""
    settings = replace(vdb.settings, db=replace(vdb.settings.db, connect_timeout=1))
    engine = make_engine(settings)
    db = Db(connect(engine, settings))
    try:
        assert db.scalar("SELECT SLEEP(2)") == 0
        assert db.scalar("SELECT @@session.time_zone") == "+00:00"
    finally:
        db.conn.close()
        engine.dispose()


def test_where_that_runs_on_is_stopped_by_the_statement_timeout(vdb: VDb, tmp_path: Path) -> None:
    vdb.seed(2000)
    conf = tmp_path / "c.toml"
    conf.write_text("[archive]\nstatement_timeout = 2\n")
    args = ["archive", "--where", COSTLY, "--ignore-window", "--json"]
    done = hp.run(vdb.dsn, args, config=str(conf), timeout=120)
    assert done.rc == 1, done.describe()
    assert "ran longer than archive.statement_timeout" in done.error
    assert "Traceback" not in done.stderr
    # The server ended the statement: the job lock is free for the next run.
    hp.wait_lock_free(vdb.db, vdb.settings, timeout=15)
    dry = hp.run(vdb.dsn, [*args, "--dry-run"], config=str(conf), timeout=120)
    assert dry.rc == 1, dry.describe()
    assert vdb.count(ARCHIVE) == 0


@pytest.mark.parametrize("password", ["пароль", "pässwörd", "密码 with space"])
def test_passwords_outside_ascii_connect(vdb: VDb, password: str) -> None:
    with db_user(vdb, password) as user:
        env = {"ARCHIVER_DB_PASSWORD": password}
        dsn = f"mysql://{user}@127.0.0.1:{vdb.settings.db.port}/{vdb.name}"
        result = invoke(["--dsn", dsn, "jobs", "list"], env=env)
    assert result.exit_code == 0, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("listener", [SilentDb, DrippingDb], ids=["silent", "dripping"])
def test_a_replica_that_never_answers_is_an_unknown_lag(
    vdb: VDb, tmp_path: Path, listener: type[SilentDb]
) -> None:
    vdb.seed(5)
    silent = listener(life=90)
    try:
        replica = f"mysql://m:пароль@127.0.0.1:{silent.port}/"
        conf = tmp_path / "c.toml"
        conf.write_text(
            f"[throttle]\nmax_replica_lag = 5\nreplicas = ['{replica}']\n"
            "[database]\nconnect_timeout = 1\n"
        )
        args = ["archive", "1", "2", "3", "--chunk-size", "1", "--max-wait", "3s"]
        done = hp.run(vdb.dsn, [*args, "--ignore-window"], config=str(conf), timeout=80)
    finally:
        silent.stop()
    assert done.rc == 3, done.describe()
    ends = [e for e in done.events if e["event"] == "summary"]
    gave_up = "throttle gave up: replica_lag stayed too high"
    assert [e["stop_reason"][: len(gave_up)] for e in ends] == [gave_up]
    assert done.error == ""
    assert "Traceback" not in done.stderr and "пароль" not in done.stderr
    assert vdb.db.scalar("SELECT state FROM archiver_jobs") == "stopped"
