"""`doctor`: the settings in force and their origins, and every grant a command needs, named
as the GRANT statement to run; exit 0 only when a nightly archive would start."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_privileges import GRANTS_USER, grants_sql, statements
from tests.support.cli import invoke
from tests.support.db import VDb, db_user

GRANT_LINES = [s for s in statements(grants_sql()) if s.startswith("GRANT")]


def _table(grant: str) -> str:
    m = re.search(r"ON `asterisk`\.`(\w+)`", grant)
    assert m, grant
    return m.group(1)


@pytest.fixture
def account(vdb: VDb) -> Iterator[tuple[str, str]]:
    """A user for this test database, with no grant yet: (user, DSN)."""
    user = f"va_doc_{uuid.uuid4().hex[:8]}"
    vdb.db.write(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'pw'")
    try:
        yield user, f"mysql://{user}:pw@127.0.0.1:3306/{vdb.name}"
    finally:
        vdb.db.write(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")


def _grant_all_but(vdb: VDb, user: str, left_out: str | None) -> None:
    for g in GRANT_LINES:
        if g != left_out:
            vdb.db.write(
                g.replace("`asterisk`.", f"`{vdb.name}`.").replace(
                    GRANTS_USER, f"'{user}'@'127.0.0.1'"
                )
            )


def _doctor(dsn: str, *args: str) -> tuple[int, str, str]:
    result = invoke(["--dsn", dsn, "doctor", *args])
    assert "Traceback" not in result.stderr
    return result.exit_code, result.stdout, result.stderr


def test_doctor_is_ready_on_a_set_up_database(vdb: VDb) -> None:
    code, out, _ = _doctor(vdb.dsn)
    assert code == 0, out
    assert out.rstrip().endswith("Ready: a nightly archive would start.")
    assert re.search(r"^  db\.database +\S+ +--dsn$", out, re.M)
    assert re.search(r"^  chunk_size +500 +default$", out, re.M)
    assert "  ok    grants for archive: " in out


def test_doctor_with_every_grant_of_grants_sql_is_ready(vdb: VDb, account: tuple[str, str]) -> None:
    user, dsn = account
    _grant_all_but(vdb, user, None)
    code, out, _ = _doctor(dsn)
    assert code == 0, out
    assert "GRANT" not in out


@pytest.mark.parametrize("left_out", GRANT_LINES, ids=_table)
def test_doctor_names_each_missing_grant(vdb: VDb, account: tuple[str, str], left_out: str) -> None:
    user, dsn = account
    _grant_all_but(vdb, user, left_out)
    code, out, _ = _doctor(dsn)
    table = _table(left_out)
    printed = [
        ln.strip() for ln in out.splitlines() if ln.strip().startswith("GRANT ") and table in ln
    ]
    assert printed, out
    # vicidial_admin_log (--admin-log) is optional: reported, a nightly archive still starts.
    assert code == (0 if table == "vicidial_admin_log" else 1), out
    if table != "vicidial_admin_log":
        assert "Not ready:" in out and "grants for archive" in out
    # What doctor prints is what to run: after it, nothing is missing.
    for stmt in dict.fromkeys(printed):
        vdb.db.write(stmt.rstrip(";"))
    code, out, _ = _doctor(dsn)
    assert code == 0, out
    assert "GRANT" not in out


def test_doctor_json_is_typed(vdb: VDb, account: tuple[str, str]) -> None:
    user, dsn = account
    _grant_all_but(vdb, user, GRANT_LINES[0])
    code, out, _ = _doctor(dsn, "--json")
    doc = json.loads(out)
    assert code == 1 and doc["ready"] is False
    failed = [c for c in doc["checks"] if not c["ok"]]
    assert failed and all(isinstance(c["fix"], list) for c in failed)
    password = next(s for s in doc["settings"] if s["key"] == "db.password")
    assert password == {"key": "db.password", "value": "***", "from": "--dsn"}
    assert "pw@" not in out and ":pw" not in out


def test_doctor_says_where_each_setting_came_from(vdb: VDb, tmp_path: Path) -> None:
    config = tmp_path / "va.toml"
    config.write_text(
        f'[database]\ndsn = "{vdb.dsn}"\n[archive]\nchunk_size = 200\n[throttle]\nsleep = 0.5\n'
    )
    config.chmod(0o600)
    result = invoke(
        ["--config", str(config), "doctor"],
        env={"ARCHIVER_DB_NAME": vdb.name, "ARCHIVER_CONFIG": ""},
    )
    out = result.stdout
    assert result.exit_code == 0, out + result.stderr
    where = str(config.resolve())
    assert re.search(rf"^  chunk_size +200 +{re.escape(where)}$", out, re.M)
    assert re.search(rf"^  throttle\.sleep +0\.5 +{re.escape(where)}$", out, re.M)
    assert re.search(r"^  db\.database +\S+ +environment ARCHIVER_DB_NAME$", out, re.M)
    assert re.search(r"^  delete_batch +100 +default$", out, re.M)


def test_doctor_tells_no_access_to_the_database_from_a_wrong_password(vdb: VDb) -> None:
    with db_user(vdb, "right-pw") as user:
        other = f"va_nodb_{uuid.uuid4().hex[:8]}"
        code, out, _ = _doctor(f"mysql://{user}:right-pw@127.0.0.1:3306/{other}")
        assert code == 1
        assert f"has no access to database '{other}'" in out and "password is right" in out
        code, out, _ = _doctor(f"mysql://{user}:wrong-pw@127.0.0.1:3306/{vdb.name}")
        assert code == 1
        assert "check the user and password" in out and "no access to database" not in out


def test_doctor_names_a_held_lock(vdb: VDb) -> None:
    holder = vdb.connect()
    try:
        name = f"vicidial-archiver:{vdb.name}"
        assert holder.scalar("SELECT GET_LOCK(:n, 0)", {"n": name[:64]}) == 1
        code, out, _ = _doctor(vdb.dsn)
        assert code == 1
        assert re.search(r"FAIL  job lock: .* is held by connection \d+", out), out
    finally:
        holder.conn.close()


def test_doctor_names_schema_init_for_a_missing_archive(vdb: VDb) -> None:
    vdb.db.write("DROP TABLE vicidial_list_archive")
    code, out, _ = _doctor(vdb.dsn)
    assert code == 1
    assert "FAIL  tables: archive table 'vicidial_list_archive' does not exist" in out
    assert "vicidial-archiver schema init" in out
