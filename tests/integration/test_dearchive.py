"""dearchive: the mirror of archive, and the lead_dearchive API lines byte for byte."""

from __future__ import annotations

import json

import pytest

from tests.support.db import ARCHIVE, LIVE, VDb


def archive_all(vdb: VDb, upto: int) -> None:
    r = vdb.cli(["archive", "--where", f"lead_id <= {upto}", "--no-safe-auto-increment", "--json"])
    assert r.exit_code == 0, r.stderr


def test_round_trip_2000_leads_byte_identical(vdb: VDb) -> None:
    vdb.seed(2000)
    original = vdb.row_bytes(LIVE)
    archive_all(vdb, 2000)
    assert vdb.count(LIVE) == 0
    assert vdb.row_bytes(ARCHIVE) == original
    r = vdb.cli(["dearchive", "--where", "lead_id <= 2000", "--json"])
    assert r.exit_code == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["counts"] == {"dearchived": 2000}
    assert vdb.count(ARCHIVE) == 0
    assert vdb.row_bytes(LIVE) == original


def test_lead_dearchive_lines_exact(vdb: VDb) -> None:
    vdb.seed(10)
    archive_all(vdb, 5)
    cases = [
        (
            ["dearchive", "3", "--user", "6666"],
            "SUCCESS: lead_dearchive LEAD DE-ARCHIVED: 6666|3|1|1\n",
            0,
        ),
        (
            ["dearchive", "3", "--user", "6666"],
            "ERROR: lead_dearchive ARCHIVED LEAD NOT FOUND: 6666|3||\n",
            1,
        ),
        (
            ["dearchive", "99999999999", "--user", "u"],
            "ERROR: lead_dearchive ARCHIVED LEAD NOT FOUND: u|99999999999||\n",
            1,
        ),
        (
            ["dearchive", "abc", "--user", "u"],
            "ERROR: lead_dearchive INVALID SEARCH PARAMETERS: u|\n",
            2,
        ),
        (
            ["dearchive", "123456789012", "--user", "u"],
            "ERROR: lead_dearchive INVALID SEARCH PARAMETERS: u|123456789012\n",
            2,
        ),
        (
            ["dearchive", "--user", "u", "--", "-4"],
            "SUCCESS: lead_dearchive LEAD DE-ARCHIVED: u|4|1|1\n",
            0,
        ),
    ]
    for args, line, code in cases:
        r = vdb.cli(args)
        assert (r.stdout, r.exit_code) == (line, code), (args, r.stdout, r.stderr)
    # In both tables: VICIdial refuses and names the archive row's list_id; nothing changes.
    vdb.db.write(
        f"INSERT INTO {ARCHIVE} (lead_id, list_id, phone_number) "
        "SELECT lead_id, 4242, phone_number FROM vicidial_list WHERE lead_id = 7"
    )
    before = vdb.checksum()
    r = vdb.cli(["dearchive", "7", "--user", "u"])
    assert (r.stdout, r.exit_code) == (
        "ERROR: lead_dearchive NON-ARCHIVED LEAD FOUND: u|7|4242\n",
        1,
    )
    assert vdb.checksum() == before


def test_conflict_untouched_and_equal_pair_completed(vdb: VDb) -> None:
    vdb.seed(20)
    archive_all(vdb, 10)
    cols = ", ".join(f"`{c}`" for c in vdb.columns())
    # lead 2: live again and different (a conflict); lead 3: in both and equal (a killed run).
    vdb.db.write(
        f"INSERT INTO {LIVE} ({cols}) SELECT {cols} FROM {ARCHIVE} WHERE lead_id IN (2, 3)"
    )
    vdb.db.write(
        f"UPDATE {LIVE} SET comments = 'changed', modify_date = modify_date WHERE lead_id = 2"
    )
    conflict_rows = (vdb.row_bytes(LIVE, [2]), vdb.row_bytes(ARCHIVE, [2]))
    r = vdb.cli(["dearchive", "2", "3", "4", "--json", "--report", f"/tmp/{vdb.name}.csv"])
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["counts"] == {"conflict": 1, "dearchived": 2}
    assert (vdb.row_bytes(LIVE, [2]), vdb.row_bytes(ARCHIVE, [2])) == conflict_rows
    assert vdb.ids(ARCHIVE) == [1, 2, 5, 6, 7, 8, 9, 10]
    with open(f"/tmp/{vdb.name}.csv") as fh:
        assert fh.read().splitlines() == ["lead_id,outcome", "2,conflict"]


def test_restore_options_applied(vdb: VDb) -> None:
    vdb.seed(30)
    vdb.db.write(
        f"UPDATE {LIVE} SET called_since_last_reset = 'Y', status = 'NA', called_count = 7"
    )
    archive_all(vdb, 20)
    r = vdb.cli(
        [
            "dearchive",
            "--where",
            "lead_id <= 10",
            "--reset-called",
            "--set-status",
            "NEW",
            "--set-called-count",
            "0",
            "--json",
        ]
    )
    assert r.exit_code == 0, r.stderr
    rows = vdb.db.rows(
        f"SELECT lead_id, called_since_last_reset, status, called_count FROM {LIVE}"
        " WHERE lead_id <= 20 ORDER BY lead_id"
    )
    assert rows == [(i, "N", "NEW", 0) for i in range(1, 11)]
    assert vdb.ids(ARCHIVE) == list(range(11, 21))
    # The criteria select from the archive: a live lead matching --where is not touched.
    live_21 = vdb.row_bytes(LIVE, [21])
    r = vdb.cli(["dearchive", "--where", "lead_id <= 25", "--json"])
    assert json.loads(r.stdout)["counts"] == {"dearchived": 10}
    assert vdb.row_bytes(LIVE, [21]) == live_21


def test_restore_above_auto_increment_moves_counter(vdb: VDb) -> None:
    vdb.seed(5)
    vdb.db.write(
        f"INSERT INTO {ARCHIVE} (lead_id, list_id, phone_number) VALUES (5000, 101, '7275550000')"
    )
    r = vdb.cli(["dearchive", "5000", "--user", "u"])
    assert r.stdout == "SUCCESS: lead_dearchive LEAD DE-ARCHIVED: u|5000|1|1\n"
    vdb.db.write(f"INSERT INTO {LIVE} (list_id, phone_number) VALUES (101, '7275550001')")
    assert vdb.db.scalar(f"SELECT MAX(lead_id) FROM {LIVE}") == 5001


@pytest.mark.parametrize("args", [["--set-status", "TOOLONGX"], ["--set-called-count", "70000"]])
def test_bad_restore_options(vdb: VDb, args: list[str]) -> None:
    vdb.seed(5)
    archive_all(vdb, 3)
    before = vdb.checksum()
    r = vdb.cli(["dearchive", "1", "2", *args])
    assert r.exit_code == 2
    assert r.stderr.startswith("Error: --")
    assert vdb.checksum() == before
