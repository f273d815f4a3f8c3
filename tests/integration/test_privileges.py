"""archiver/sql/grants.sql is enough, and no more than enough (issue 7), on MyISAM and InnoDB:
a user holding exactly those grants (adapted to the test database) runs archive jobs, the jobs
commands and a schema check; it cannot drop, alter or read anything else; and its password
appears in no output, log line, report file or checkpoint row."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy.exc import DBAPIError

from archiver import config
from archiver.db import connect, make_engine
from tests.support.cli import invoke
from tests.support.db import ARCHIVE, LIVE, VDb

GRANTS_USER = "'vicidial_archiver'@'127.0.0.1'"


def grants_sql() -> str:
    return resources.files("archiver").joinpath("sql/grants.sql").read_text("utf-8")


def statements(text: str) -> list[str]:
    body = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


@pytest.fixture
def restricted(vdb: VDb) -> Iterator[dict[str, str]]:
    """A user created by grants.sql, for this test database only."""
    user = f"va_priv_{uuid.uuid4().hex[:8]}"
    # Characters a DSN must escape and a careless message would show as they are.
    password = f"Pw{uuid.uuid4().hex[:10]}!@:/%?#"
    text = (
        grants_sql()
        .replace("`asterisk`.", f"`{vdb.name}`.")
        .replace(GRANTS_USER, f"'{user}'@'127.0.0.1'")
        .replace("'CHANGE_ME'", f"'{password}'")
    )
    try:
        for stmt in statements(text):
            # text() would read ':/' as nothing, but a ':name' in a password as a parameter.
            vdb.db.write(stmt.replace(":", "\\:"))
        dsn = f"mysql://{user}:{quote(password, safe='')}@127.0.0.1:3306/{vdb.name}"
        yield {"user": user, "password": password, "dsn": dsn}
    finally:
        vdb.db.write(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")


def as_user(who: dict[str, str], args: list[str], *, verbose: bool = True) -> Any:
    argv = ["--dsn", who["dsn"], "--log-format", "json", *(["-v"] if verbose else []), *args]
    result = invoke(argv)
    assert "Traceback" not in result.stderr
    return result


def test_grants_file_uses_only_table_level_privileges() -> None:
    stmts = statements(grants_sql())
    grants = [s for s in stmts if s.upper().startswith("GRANT")]
    assert stmts[0].startswith(f"CREATE USER IF NOT EXISTS {GRANTS_USER}")
    assert len(grants) == len(stmts) - 1
    targets = {}
    for g in grants:
        m = re.fullmatch(r"GRANT (.+) ON `asterisk`\.`(\w+)` TO " + re.escape(GRANTS_USER), g)
        assert m, g  # one named table of one database: never *.* or db.*, no wildcards
        targets[m.group(2)] = {p.strip() for p in m.group(1).split(",")}
    dml = {"SELECT", "INSERT", "UPDATE", "DELETE"}
    assert targets == {
        "vicidial_list": dml,
        "vicidial_list_archive": dml | {"CREATE"},  # given before the table exists
        "vicidial_hopper": {"SELECT"},
        "vicidial_auto_calls": {"SELECT"},
        "vicidial_live_agents": {"SELECT"},
        "vicidial_callbacks": {"SELECT"},
        "vicidial_lists": {"SELECT"},
        "vicidial_admin_log": {"INSERT"},
        "archiver_jobs": dml | {"CREATE"},
        "archiver_chunks": dml | {"CREATE"},
        "archiver_leads": dml | {"CREATE"},
        "archiver_pending": dml | {"CREATE"},
        "archiver_job_ids": dml | {"CREATE"},
    }
    # Every checkpoint table the tool creates is granted.
    ddl = resources.files("archiver").joinpath("sql/checkpoint.sql").read_text("utf-8")
    created = set(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", ddl))
    assert created == {t for t in targets if t.startswith("archiver_")}


def test_least_privilege_user_runs_archive_jobs(
    vdb: VDb, restricted: dict[str, str], tmp_path: Path
) -> None:
    vdb.seed(1202)  # the newest lead, 1202, is on list 201: not in campaign SALESA
    vdb.db.write("INSERT INTO vicidial_hopper (lead_id, campaign_id, list_id) VALUES (5, 'X', 101)")
    vdb.db.write(
        "INSERT INTO vicidial_callbacks (lead_id, list_id, status) VALUES (6, 101, 'LIVE')"
    )
    before = vdb.row_bytes(LIVE)
    outputs: list[str] = []

    # A dry run first: reads only, creates nothing.
    result = as_user(restricted, ["archive", "--dry-run", "--campaign", "SALESA", "--json"])
    outputs += [result.stdout, result.stderr]
    assert result.exit_code == 0, result.stderr
    plan = json.loads(result.stdout)

    # Criteria through vicidial_lists, the guards, the throttle's status read, a report.
    report = tmp_path / "report.csv"
    result = as_user(
        restricted,
        [
            "archive",
            "--campaign",
            "SALESA",
            "--chunk-size",
            "200",
            "--max-threads-running",
            "1000",
            "--report",
            str(report),
            "--json",
        ],
    )
    outputs += [result.stdout, result.stderr, report.read_text()]
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    salesa = {i for i in before if i % 5 in (0, 1)}  # lists 101 and 102 (synthetic.LISTS)
    assert data["counts"] == plan["counts"] == {"archived": len(salesa) - 2, "skipped_live": 2}
    moved = salesa - {5, 6}
    assert vdb.row_bytes(ARCHIVE) == {i: before[i] for i in moved}
    assert vdb.row_bytes(LIVE) == {i: v for i, v in before.items() if i not in moved}

    # Explicit ids through an API request body; the equal copies are left alone.
    req = tmp_path / "req.json"
    req.write_text(json.dumps({"lead_ids": [3, 4, 5, 11], "delete_leads": True}))
    result = as_user(restricted, ["archive", "--request", str(req), "--json"])
    outputs += [result.stdout, result.stderr]
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["counts"] == {
        "archived": 2,
        "skipped_live": 1,
        "already_archived": 1,
    }
    job_id = str(json.loads(result.stdout)["job_id"])

    for args in (
        ["jobs", "list"],
        ["jobs", "show", job_id],
        ["jobs", "show", job_id, "--json"],
        ["jobs", "show", "1", "--leads", "all"],
        ["jobs", "prune", "--older-than", "1d"],
        ["schema", "check"],
    ):
        result = as_user(restricted, args)
        outputs += [result.stdout, result.stderr]
        assert result.exit_code == 0, (args, result.stderr)
    assert "5,skipped_live" in "".join(outputs)

    # The password is nowhere: not in outputs, logs (-v logs every statement), the report or
    # any checkpoint row.
    secret, escaped = restricted["password"], quote(restricted["password"], safe="")
    for text in outputs:
        assert secret not in text and escaped not in text
    tables = ("archiver_jobs", "archiver_chunks", "archiver_leads", "archiver_pending")
    for table in (*tables, "archiver_job_ids"):
        for row in vdb.db.rows(f"SELECT * FROM {table}"):
            assert secret not in repr(row) and escaped not in repr(row)


@pytest.mark.parametrize(
    ("sql", "errno"),
    [
        (f"DROP TABLE {LIVE}", 1142),
        (f"ALTER TABLE {ARCHIVE} ADD COLUMN x INT", 1142),
        (f"TRUNCATE TABLE {ARCHIVE}", 1142),
        ("CREATE TABLE archiver_other (a INT)", 1142),
        ("DELETE FROM vicidial_hopper", 1142),
        ("UPDATE vicidial_lists SET active = 'N'", 1142),
        ("SELECT * FROM vicidial_admin_log", 1142),
        ("SELECT user FROM mysql.user", 1142),
        ("SELECT * FROM vicidial_list INTO OUTFILE '/tmp/va_priv_leak'", 1227),
        ("CREATE DATABASE va_priv_other", 1044),
    ],
)
def test_least_privilege_user_can_do_nothing_else(
    vdb: VDb, restricted: dict[str, str], sql: str, errno: int
) -> None:
    settings = config.load_settings(env={}, dsn=restricted["dsn"])
    engine = make_engine(settings)
    conn = connect(engine, settings)
    try:
        with pytest.raises(DBAPIError) as err:
            conn.exec_driver_sql(sql)
        assert err.value.orig.args[0] == errno  # type: ignore[union-attr]
    finally:
        conn.close()
        engine.dispose()


def test_wrong_password_of_that_user_is_refused_without_showing_it(
    vdb: VDb, restricted: dict[str, str]
) -> None:
    secret = restricted["password"]
    dsn = restricted["dsn"].replace(quote(secret, safe=""), quote(secret[::-1], safe=""))
    result = invoke(["--dsn", dsn, "--log-format", "json", "-v", "archive", "1"])
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: access denied for user '{restricted['user']}' on "
        "127.0.0.1:3306; check the user and password (--dsn, "
        "ARCHIVER_DB_PASSWORD or --astguiclient)\n"
    )
    assert secret not in result.stderr and secret[::-1] not in result.stderr


def test_password_in_dsn_is_masked_in_the_process_title(
    vdb: VDb, restricted: dict[str, str]
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    vdb.seed(50)
    exe = Path(sys.executable).with_name("vicidial-archiver")
    proc = subprocess.Popen(
        [
            str(exe),
            "--dsn",
            restricted["dsn"],
            "--log-format",
            "json",
            "archive",
            "--where",
            "lead_id <= 40",
            "--chunk-size",
            "1",
            "--sleep",
            "0.5",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "ARCHIVER_CONFIG": "", "ARCHIVER_DSN": ""},
    )
    try:
        deadline = time.monotonic() + 10
        title = ""
        while time.monotonic() < deadline and "***" not in title:
            time.sleep(0.1)
            with open(f"/proc/{proc.pid}/cmdline", "rb") as fh:
                title = fh.read().replace(b"\0", b" ").decode()
        secret = quote(restricted["password"], safe="")
        assert "***@127.0.0.1" in title, title
        assert secret not in title and restricted["password"] not in title
        assert proc.stderr is not None
        first = proc.stderr.readline()  # the job has started: SIGTERM is a clean stop now
        while '"event": "chunk"' not in first:
            first = proc.stderr.readline()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 3, err
    assert restricted["password"] not in out + err + first


@pytest.fixture
def previous_version_user(vdb: VDb) -> Iterator[tuple[str, dict[str, str]]]:
    """An account made by the grants.sql of the version before archiver_job_ids."""
    user = f"va_old_{uuid.uuid4().hex[:8]}"
    text = (
        grants_sql()
        .replace("`asterisk`.", f"`{vdb.name}`.")
        .replace(GRANTS_USER, f"'{user}'@'127.0.0.1'")
        .replace("'CHANGE_ME'", "'pw'")
    )
    try:
        for stmt in statements(text):
            if "archiver_job_ids" not in stmt:
                vdb.db.write(stmt)
        yield user, {"dsn": f"mysql://{user}:pw@127.0.0.1:3306/{vdb.name}"}
    finally:
        vdb.db.write(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")


def test_grants_of_the_previous_version_get_the_grant_to_add(
    vdb: VDb, previous_version_user: tuple[str, dict[str, str]]
) -> None:
    """An account made by the grants.sql of the version before archiver_job_ids: every command
    that needs the checkpoint tables stops with exit 2 and the GRANT to add, never a raw 1142."""
    user, who = previous_version_user
    vdb.seed(5)
    grant = (
        f"GRANT CREATE, SELECT, INSERT, UPDATE, DELETE ON `{vdb.name}`.`archiver_job_ids` "
        f"TO '{user}'@'127.0.0.1'"
    )
    # `jobs list` creates no table: it has nothing to list, and says so.
    assert as_user(who, ["jobs", "list"], verbose=False).exit_code == 0
    archive = ["archive", "--ignore-window", "--list-id", "101"]
    result = as_user(who, archive, verbose=False)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error: ")
    assert grant in result.stderr and "1142" not in result.stderr
    vdb.db.write(grant)
    assert as_user(who, archive, verbose=False).exit_code == 0


def test_a_missing_create_grant_is_refused_before_any_checkpoint_table_is_created(
    vdb: VDb, previous_version_user: tuple[str, dict[str, str]]
) -> None:
    """Issue 21, finding 13: exit 2 "nothing written" came after four of the five checkpoint
    tables were created. Every table the account may not create is found first."""
    vdb.db.write(
        "DROP TABLE IF EXISTS archiver_jobs, archiver_chunks, archiver_leads, archiver_pending,"
        " archiver_job_ids"
    )
    vdb.seed(5)
    before = vdb.checksum()
    _, who = previous_version_user

    result = as_user(who, ["archive", "--ignore-window", "5"], verbose=False)

    assert result.exit_code == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "archiver_job_ids" in errors[0], result.stderr
    tables = vdb.db.rows(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
        " AND TABLE_NAME LIKE 'archiver\\_%'"
    )
    assert tables == []
    assert vdb.checksum() == before
