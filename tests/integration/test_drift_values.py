"""Drift that passed the schema check but could not hold a value byte-exactly (TIMESTAMP and
DATETIME, ZEROFILL), restore options the target column cannot hold, and the admin-log row's
time zone."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import pymysql
import pytest

from archiver.db import Db
from tests.support import serverlock
from tests.support.db import ARCHIVE, LIVE, VDb, open_db, server_settings


def archiver_tables(vdb: VDb) -> list[str]:
    return [str(r[0]) for r in vdb.db.rows("SHOW TABLES LIKE 'archiver%'")]


def assert_refused(vdb: VDb, args: list[str], needle: str) -> None:
    """Exit 2, one `Error:` line naming `needle`, and not a byte written anywhere."""
    before = (vdb.checksum(), archiver_tables(vdb), jobs(vdb))
    r = vdb.cli(args)
    assert r.exit_code == 2, (r.stdout, r.stderr)
    lines = [x for x in r.stderr.splitlines() if not x.startswith("{")]
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    assert needle in lines[0], lines[0]
    assert (vdb.checksum(), archiver_tables(vdb), jobs(vdb)) == before


def jobs(vdb: VDb) -> int:
    if "archiver_jobs" not in archiver_tables(vdb):
        return 0
    return int(vdb.db.scalar("SELECT COUNT(*) FROM archiver_jobs"))


# --- TIMESTAMP and DATETIME ----------------------------------------------------------------


def test_timestamp_into_datetime_archive_is_drift_until_synced(vdb: VDb) -> None:
    vdb.seed(10)
    original = vdb.row_bytes(LIVE)
    vdb.db.write(f"ALTER TABLE {ARCHIVE} MODIFY modify_date DATETIME NOT NULL")
    r = vdb.cli(["schema", "check", "--json"])
    assert r.exit_code == 1, r.stdout
    blocking = json.loads(r.stdout)["blocking"]
    assert len(blocking) == 1 and blocking[0].startswith(
        "column 'modify_date' is timestamp in the source but datetime in the target"
    )
    assert_refused(vdb, ["archive", "3", "--ignore-window"], "'modify_date'")
    r = vdb.cli(["schema", "sync"])
    assert "MODIFY COLUMN `modify_date` timestamp NOT NULL" in r.stdout, r.stdout
    assert vdb.cli(["schema", "sync", "--apply"]).exit_code == 0
    assert vdb.cli(["schema", "check"]).exit_code == 0
    r = vdb.cli(["archive", "--where", "lead_id <= 9", "--ignore-window", "--json"])
    assert json.loads(r.stdout)["counts"] == {"archived": 9}, r.stderr
    assert vdb.row_bytes(ARCHIVE) == {i: original[i] for i in range(1, 10)}


def test_timestamp_archive_into_datetime_live_is_drift(vdb: VDb) -> None:
    """The other direction: dearchive from a TIMESTAMP archive into a DATETIME live column."""
    vdb.seed(10)
    r = vdb.cli(["archive", "--where", "lead_id <= 5", "--ignore-window", "--json"])
    assert r.exit_code == 0, r.stderr
    vdb.db.write(f"ALTER TABLE {LIVE} MODIFY modify_date DATETIME NOT NULL")
    assert_refused(vdb, ["dearchive", "1", "2", "--ignore-window"], "'modify_date'")


@contextmanager
def global_time_zone(admin: Db, zone: str) -> Iterator[None]:
    """The server's GLOBAL time_zone for the duration, restored whatever happens. The server the
    tests share runs at SYSTEM = UTC, where a UTC timestamp and the server's local time cannot
    be told apart; a named lock keeps two such tests from overlapping."""
    serverlock.assert_alone("SET GLOBAL time_zone")
    assert admin.scalar("SELECT GET_LOCK('vicidial-archiver-tests:global-time-zone', 60)") == 1
    original = admin.scalar("SELECT @@GLOBAL.time_zone")
    admin.write("SET GLOBAL time_zone = :z", {"z": zone})
    try:
        yield
    finally:
        admin.write("SET GLOBAL time_zone = :z", {"z": original})
        admin.scalar("SELECT RELEASE_LOCK('vicidial-archiver-tests:global-time-zone')")


@pytest.mark.server_global
def test_admin_log_event_date_is_server_local_time(vdb: VDb) -> None:
    vdb.seed(10)
    admin = open_db(server_settings())
    d = vdb.settings.db
    try:
        with global_time_zone(admin, "-05:00"):
            # A session as VICIdial opens one: the server's default zone, no SET time_zone.
            dialer = pymysql.connect(
                host=d.host, port=d.port, user=d.user, password=d.password or "", database=vdb.name
            )
            try:
                with dialer.cursor() as cur:
                    cur.execute("SELECT @@session.time_zone, NOW()")
                    zone, before = cur.fetchone()
                    assert zone == "-05:00"
                    r = vdb.cli(["archive", "1", "2", "--ignore-window", "--admin-log"])
                    assert r.exit_code == 0, r.stderr
                    cur.execute("SELECT NOW()")
                    (after,) = cur.fetchone()
            finally:
                dialer.close()
    finally:
        admin.conn.close()
    (event_date,) = vdb.db.rows("SELECT event_date FROM vicidial_admin_log")[0]
    assert before <= event_date <= after, (before, event_date, after)


# --- ZEROFILL ------------------------------------------------------------------------------

ZEROFILL = "SMALLINT(5) UNSIGNED ZEROFILL DEFAULT '0'"


@pytest.mark.parametrize(
    ("table", "command"), [(LIVE, "archive"), (ARCHIVE, "archive"), (ARCHIVE, "dearchive")]
)
def test_zerofill_on_one_side_is_drift(vdb: VDb, table: str, command: str) -> None:
    vdb.seed(20)
    if command == "dearchive":
        r = vdb.cli(["archive", "--where", "lead_id <= 9", "--ignore-window"])
        assert r.exit_code == 0, r.stderr
    vdb.db.write(f"ALTER TABLE {table} MODIFY called_count {ZEROFILL}")
    r = vdb.cli(["schema", "check", "--json"])
    assert r.exit_code == 1, r.stdout
    assert "column 'called_count'" in json.loads(r.stdout)["blocking"][0]
    assert_refused(
        vdb, [command, "--where", "lead_id < 10", "--ignore-window"], "column 'called_count'"
    )


def test_zerofill_drift_synced_then_converges(vdb: VDb) -> None:
    vdb.seed(20)
    vdb.db.write(f"ALTER TABLE {LIVE} MODIFY called_count {ZEROFILL}")
    original = vdb.row_bytes(LIVE)
    r = vdb.cli(["schema", "sync"])
    assert "MODIFY COLUMN `called_count` smallint(5) unsigned zerofill" in r.stdout, r.stdout
    assert vdb.cli(["schema", "sync", "--apply"]).exit_code == 0
    r = vdb.cli(["archive", "--where", "lead_id < 10", "--ignore-window", "--json"])
    assert json.loads(r.stdout)["counts"] == {"archived": 9}, r.stderr
    assert vdb.row_bytes(ARCHIVE) == {i: original[i] for i in range(1, 10)}
    padded = bytes.fromhex(vdb.row_bytes(ARCHIVE, [3])[3][vdb.columns().index("called_count")])
    assert len(padded) == 5 and padded.startswith(b"000"), padded  # the archive pads too


def test_zerofill_of_another_width_is_drift(vdb: VDb) -> None:
    vdb.seed(5)
    vdb.db.write(f"ALTER TABLE {LIVE} MODIFY called_count {ZEROFILL}")
    vdb.db.write(f"ALTER TABLE {ARCHIVE} MODIFY called_count INT(6) UNSIGNED ZEROFILL")
    assert_refused(vdb, ["archive", "1", "--ignore-window"], "column 'called_count'")


# --- restore options against the live column ------------------------------------------------

NARROW = {
    "status": "MODIFY status VARCHAR(4)",
    "called_count": "MODIFY called_count TINYINT(3) UNSIGNED DEFAULT '0'",
    "cslr": "MODIFY called_since_last_reset ENUM('Y','D') DEFAULT 'Y'",
}


@pytest.mark.parametrize(
    ("narrow", "args", "needle"),
    [
        (None, ["--set-status", "N\U0001f600W"], "--set-status 'N\U0001f600W'"),  # utf8mb3
        (None, ["--set-status", "TOOLONGX"], "--set-status 'TOOLONGX'"),
        (None, ["--set-called-count", "70000"], "--set-called-count 70000"),
        (None, ["--set-called-count", "-1"], "--set-called-count -1"),
        ("status", ["--set-status", "ABCDE"], "at most 4 characters"),
        ("called_count", ["--set-called-count", "300"], "0 to 255"),
        ("cslr", ["--reset-called"], "--reset-called"),
    ],
)
def test_restore_option_the_live_column_cannot_hold_is_refused(
    vdb: VDb, narrow: str | None, args: list[str], needle: str
) -> None:
    vdb.seed(10)
    if narrow:
        for table in (LIVE, ARCHIVE):
            vdb.db.write(f"ALTER TABLE {table} {NARROW[narrow]}")
    r = vdb.cli(["archive", "--where", "lead_id <= 5", "--ignore-window"])
    assert r.exit_code == 0, r.stderr
    assert_refused(vdb, ["dearchive", "1", "2", "--ignore-window", *args], needle)


def test_restore_options_the_column_holds_are_applied(vdb: VDb) -> None:
    vdb.seed(10)
    for table in (LIVE, ARCHIVE):
        vdb.db.write(f"ALTER TABLE {table} MODIFY status VARCHAR(6) CHARACTER SET utf8mb4")
    r = vdb.cli(["archive", "--where", "lead_id <= 5", "--ignore-window"])
    assert r.exit_code == 0, r.stderr
    r = vdb.cli(
        [
            "dearchive",
            "1",
            "--ignore-window",
            "--set-status",
            "N\U0001f600W",
            "--set-called-count",
            "65535",
        ]
    )
    assert r.exit_code == 0, r.stderr
    assert vdb.db.rows(f"SELECT status, called_count FROM {LIVE} WHERE lead_id = 1") == [
        ("N\U0001f600W", 65535)
    ]
