"""The archive command (issue 3), on MyISAM and on InnoDB: moves, verification, step flags,
data round-trips, report, dry run and logs. Every test runs against the real server."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from archiver.config import Settings
from archiver.db import Db
from archiver.jobtypes import ARCHIVE, Flags, JobSpec, Summary
from archiver.runner import run_job
from archiver.selection import Criteria, Selection
from archiver.strategies import CHUNK_POINTS
from tests.support.db import ARCHIVE as ARCHIVE_T
from tests.support.db import LIVE, VDb, strict_global_sql_mode

# The 35 columns of vicidial_list in their physical order (vicidial-facts.md).
COLUMNS = (
    "lead_id",
    "entry_date",
    "modify_date",
    "status",
    "user",
    "vendor_lead_code",
    "source_id",
    "list_id",
    "gmt_offset_now",
    "called_since_last_reset",
    "phone_code",
    "phone_number",
    "title",
    "first_name",
    "middle_initial",
    "last_name",
    "address1",
    "address2",
    "address3",
    "city",
    "state",
    "province",
    "postal_code",
    "country_code",
    "gender",
    "date_of_birth",
    "alt_phone",
    "email",
    "security_phrase",
    "comments",
    "called_count",
    "last_local_call_time",
    "rank",
    "owner",
    "entry_list_id",
)

# A lead with every column set, and for each column a value that differs from it in bytes;
# where the column allows it, one that utf8_unicode_ci still calls equal (case, accent,
# trailing space) or a NULL ↔ '' swap.
BASE: dict[str, Any] = {
    "entry_date": "2020-01-02 03:04:05",
    "modify_date": "2021-02-03 04:05:06",
    "status": "sale",
    "user": "agent01",
    "vendor_lead_code": "VL10",
    "source_id": "import",
    "list_id": 101,
    "gmt_offset_now": "-5.00",
    "called_since_last_reset": "Y1",
    "phone_code": "1",
    "phone_number": "7275551111",
    "title": "Mr",
    "first_name": "smith",
    "middle_initial": "q",
    "last_name": "Garcia",
    "address1": "1 Main St",
    "address2": "",
    "address3": None,
    "city": "Montreal",
    "state": "fl",
    "province": "Quebec",
    "postal_code": "33701",
    "country_code": "usa",
    "gender": "M",
    "date_of_birth": "1980-05-17",
    "alt_phone": "",
    "email": "a@example.com",
    "security_phrase": "blue",
    "comments": "call back",
    "called_count": 3,
    "last_local_call_time": "2024-03-10 02:30:00",
    "rank": -3,
    "owner": "agent01",
    "entry_list_id": 0,
}
CHANGED: dict[str, Any] = {
    "entry_date": "2020-01-02 03:04:06",
    "modify_date": "2021-02-03 04:05:07",
    "status": "SALE",
    "user": "AGENT01",
    "vendor_lead_code": "VL10 ",
    "source_id": "Import",
    "list_id": 102,
    "gmt_offset_now": "-5.50",
    "called_since_last_reset": "Y10",
    "phone_code": "1 ",
    "phone_number": "7275551111 ",
    "title": "MR",
    "first_name": "Smith",
    "middle_initial": "Q",
    "last_name": "García",
    "address1": "1 MAIN ST",
    "address2": None,
    "address3": "",
    "city": "Montréal",
    "state": "FL",
    "province": "Québec",
    "postal_code": "33701 ",
    "country_code": "USA",
    "gender": "F",
    "date_of_birth": "0000-00-00",
    "alt_phone": None,
    "email": "A@example.com",
    "security_phrase": "NULL",
    "comments": "call back ",
    "called_count": 4,
    "last_local_call_time": None,
    "rank": 3,
    "owner": "",
    "entry_list_id": 101,
}
TARGET, NEWER = 10, 11


# --- helpers ------------------------------------------------------------------------------------


def insert_lead(db: Db, table: str, lead_id: int, **values: Any) -> None:
    row = {"lead_id": lead_id, "phone_number": f"555{lead_id:07d}", **values}
    cols = ", ".join(f"`{c}`" for c in row)
    marks = ", ".join(f":{c}" for c in row)
    db.write(f"INSERT INTO `{table}` ({cols}) VALUES ({marks})", row)


def copy_to_archive(vdb: VDb, ids: Sequence[int], *, delete: bool = False) -> None:
    cols = ", ".join(f"`{c}`" for c in COLUMNS)
    vdb.db.write(
        f"INSERT INTO {ARCHIVE_T} ({cols}) SELECT {cols} FROM {LIVE} WHERE lead_id IN :ids",
        {"ids": list(ids)},
    )
    if delete:
        vdb.db.write(f"DELETE FROM {LIVE} WHERE lead_id IN :ids", {"ids": list(ids)})


def cli_json(vdb: VDb, args: Sequence[str], *, code: int = 0) -> dict[str, Any]:
    result = vdb.cli(["archive", *args, "--json"])
    assert result.exit_code == code, result.stderr
    assert "Traceback" not in result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def archiver_tables(vdb: VDb) -> list[str]:
    rows = vdb.db.rows(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE "
        "TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE 'archiver\\_%'"
    )
    return sorted(str(r[0]) for r in rows)


ALL_STEPS = Flags()


def run(
    vdb: VDb,
    ids: Sequence[int] | None = None,
    *,
    where: str = "",
    flags: Flags = ALL_STEPS,
    hook: Any = None,
    report: str | None = None,
    settings: Settings | None = None,
    dry_run: bool = False,
) -> Summary:
    """One job through the core API (as the CLI runs it), on a connection of its own."""
    selection = (
        Selection.from_ids(ids)
        if ids is not None
        else Selection(criteria=Criteria(where=where).resolve())
    )
    spec = JobSpec(
        direction=ARCHIVE, selection=selection, flags=flags, report=report, dry_run=dry_run
    )
    db = vdb.connect()
    db.dry_run = dry_run
    try:
        return run_job(db, settings or vdb.settings, spec, hook=hook)
    finally:
        db.conn.close()


def set_column(db: Db, lead_id: int, column: str, value: Any) -> None:
    """Change one column of a live row and nothing else (modify_date kept unless it is the one)."""
    keep = "" if column == "modify_date" else ", `modify_date` = `modify_date`"
    db.write(
        f"UPDATE {LIVE} SET `{column}` = :v{keep} WHERE lead_id = :id", {"v": value, "id": lead_id}
    )


def watch_archive_writes(vdb: VDb) -> None:
    """Record every row INSERT and UPDATE reaching the archive table (triggers fire for each
    row a statement writes, even when the new values equal the old)."""
    vdb.db.write(
        f"CREATE TABLE archive_writes (lead_id INT UNSIGNED, op VARCHAR(6)) ENGINE={vdb.engine}"
    )
    for op in ("insert", "update"):
        vdb.db.write(
            f"CREATE TRIGGER archive_{op} BEFORE {op.upper()} ON {ARCHIVE_T} "
            f"FOR EACH ROW INSERT INTO archive_writes VALUES (NEW.lead_id, '{op}')"
        )


def archive_writes(vdb: VDb) -> list[tuple[int, str]]:
    return [(int(r[0]), str(r[1])) for r in vdb.db.rows("SELECT lead_id, op FROM archive_writes")]


def test_the_column_list_is_vicidial_list(vdb: VDb) -> None:
    assert tuple(vdb.columns()) == COLUMNS
    assert set(BASE) == set(CHANGED) == set(COLUMNS) - {"lead_id"}


# --- moving leads -------------------------------------------------------------------------------


def test_archive_1200_leads_in_chunks_of_500(vdb: VDb) -> None:
    vdb.seed(1300)
    before = vdb.row_bytes(LIVE)
    # No --ignore-window: no window is configured by default.
    data = cli_json(vdb, ["--where", "lead_id <= 1200", "--chunk-size", "500"])
    assert data["state"] == "done"
    assert data["counts"] == {"archived": 1200}
    assert data["job_counts"] == {"archived": 1200}
    assert (data["leads"], data["chunks"]) == (1200, 3)
    archived = vdb.row_bytes(ARCHIVE_T)
    assert archived == {i: before[i] for i in range(1, 1201)}  # every column, modify_date too
    assert vdb.row_bytes(LIVE) == {i: before[i] for i in range(1201, 1301)}  # others untouched


def test_newest_lead_is_kept_unless_no_safe_auto_increment(vdb: VDb) -> None:
    vdb.seed(1200)
    before = vdb.row_bytes(LIVE)
    data = cli_json(vdb, ["--where", "lead_id <= 1200"])
    assert data["counts"] == {"archived": 1199, "skipped_newest": 1}
    assert data["chunks"] == 3
    assert vdb.ids(LIVE) == [1200]
    data = cli_json(vdb, ["--where", "lead_id <= 1200", "--no-safe-auto-increment"])
    assert data["counts"] == {"archived": 1}
    assert vdb.ids(LIVE) == []
    assert vdb.row_bytes(ARCHIVE_T) == before


def test_archive_by_list_id(vdb: VDb) -> None:
    vdb.seed(1001)  # the newest lead, 1001, is on list 102
    before = vdb.row_bytes(LIVE)
    lists = dict(vdb.db.rows(f"SELECT lead_id, list_id FROM {LIVE}"))
    chosen = {i for i, lid in lists.items() if lid in (101, 999)}
    data = cli_json(vdb, ["--list-id", "101", "--list-id", "999", "--chunk-size", "150"])
    assert data["counts"] == {"archived": len(chosen)}
    assert data["chunks"] == -(-len(chosen) // 150)
    assert vdb.row_bytes(ARCHIVE_T) == {i: before[i] for i in chosen}
    assert vdb.row_bytes(LIVE) == {i: v for i, v in before.items() if i not in chosen}


def test_id_limit_binds_requests_not_id_files(vdb: VDb, tmp_path: Path) -> None:
    """archive.id_limit is the Lead Archive API's limit: --request obeys it (and a config file
    raises it); --ids-file takes any number."""
    vdb.seed(1201)
    before = vdb.row_bytes(LIVE)
    req = tmp_path / "req.json"
    req.write_text(json.dumps({"lead_ids": list(range(1, 601))}))
    result = vdb.cli(["archive", "--request", str(req), "--json"])
    assert result.exit_code == 2
    assert result.stderr.startswith(
        f"Error: {req}: lead_ids holds 600 ids, more than the limit of 500 per request;"
    )
    conf = tmp_path / "archiver.toml"
    conf.write_text("[archive]\nid_limit = 600\n")
    result = vdb.cli(["--config", str(conf), "archive", "--request", str(req), "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["counts"] == {"archived": 600}
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(str(i) for i in range(1, 1201)) + "\n")
    result = vdb.cli(["archive", "--ids-file", str(ids_file), "--json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["counts"] == {"archived": 600, "already_archived": 600}
    assert data["chunks"] == 3
    assert vdb.row_bytes(ARCHIVE_T) == {i: before[i] for i in range(1, 1201)}
    assert vdb.ids(LIVE) == [1201]


def test_missing_and_already_archived_ids(vdb: VDb) -> None:
    vdb.seed(10)
    copy_to_archive(vdb, [3], delete=True)
    archived_row = vdb.row_bytes(ARCHIVE_T)[3]
    data = cli_json(vdb, ["1", "3", "77", "4294967295"])
    assert data["counts"] == {"archived": 1, "already_archived": 1, "missing": 2}
    assert vdb.row_bytes(ARCHIVE_T)[3] == archived_row
    assert vdb.ids(ARCHIVE_T) == [1, 3]


# --- verification: a live row changed after the copy is never deleted ----------------------


def _verified_change(vdb: VDb, column: str, value: Any, original: Any = "base") -> None:
    base = dict(BASE)
    if original != "base":
        base[column] = original
    insert_lead(vdb.db, LIVE, TARGET, **base)
    insert_lead(vdb.db, LIVE, NEWER, **BASE)  # the newest lead, so TARGET is not skipped
    copy_before = vdb.row_bytes(LIVE, [TARGET])[TARGET]
    seen: list[str] = []

    def change_after_update(point: str, db: Db, ids: Sequence[int]) -> None:
        seen.append(point)
        if point == "after_update":
            assert list(ids) == [TARGET]
            set_column(db, TARGET, column, value)  # the chunk's own connection (InnoDB locks)

    summary = run(vdb, [TARGET], hook=change_after_update)
    # The hook also sees each statement by name; the chunk's points come in this order.
    assert [p for p in seen if p in CHUNK_POINTS] == [
        "after_insert",
        "after_update",
        "after_delete",
        "before_checkpoint",
    ]
    assert {"scan", "copy", "delete", "checkpoint"} <= set(seen)
    assert dict(summary.counts) == {"kept_changed": 1}
    changed = vdb.row_bytes(LIVE, [TARGET])[TARGET]
    differing = [c for c, a, b in zip(COLUMNS, copy_before, changed, strict=True) if a != b]
    assert differing == [column]  # the change really is that column, and only it
    if vdb.engine == "MyISAM" and column != "entry_date":
        # The live row is the newer: the copy this job wrote is removed (proven to be it: its
        # fingerprint, the same lead, no ALTER since), so no stale copy is left behind.
        assert vdb.row_bytes(ARCHIVE_T) == {}
    else:  # any other change keeps the copy, made before the change, beside the live row
        assert vdb.row_bytes(ARCHIVE_T) == {TARGET: copy_before}
    outcome = vdb.db.scalar("SELECT outcome FROM archiver_leads WHERE lead_id = :l", {"l": TARGET})
    assert outcome == "kept_changed"

    summary = run(vdb, [TARGET])  # the next run refreshes the copy (--update) and moves it
    if column == "entry_date":
        # Another entry_date is another lead under the same id: nothing is overwritten.
        assert dict(summary.counts) == {"conflict": 1}
        assert vdb.row_bytes(ARCHIVE_T) == {TARGET: copy_before}
        assert vdb.row_bytes(LIVE, [TARGET]) == {TARGET: changed}
        return
    assert dict(summary.counts) == {"archived": 1}
    assert vdb.row_bytes(ARCHIVE_T) == {TARGET: changed}
    assert vdb.ids(LIVE) == [NEWER]


@pytest.mark.parametrize("column", COLUMNS[1:])
def test_change_of_any_one_column_after_the_copy_keeps_the_lead(vdb: VDb, column: str) -> None:
    _verified_change(vdb, column, CHANGED[column])


@pytest.mark.parametrize(
    ("kind", "column", "original", "value"),
    [
        ("case only", "first_name", "smith", "Smith"),
        ("case only", "email", "a@example.com", "A@EXAMPLE.COM"),
        ("trailing space", "last_name", "Smith", "Smith "),
        ("trailing space removed", "last_name", "Smith ", "Smith"),
        ("accent", "city", "Montreal", "Montréal"),
        ("NULL to ''", "address3", None, ""),
        ("'' to NULL", "address2", "", None),
        ("NULL to 'NULL'", "email", None, "NULL"),
        ("zero date to NULL", "date_of_birth", "0000-00-00", None),
    ],
)
def test_change_that_the_collation_calls_equal_keeps_the_lead(
    vdb: VDb, kind: str, column: str, original: Any, value: Any
) -> None:
    _verified_change(vdb, column, value, original)


# --- step flags --------------------------------------------------------------------------------

A_LIVE, B_EQUAL, C_STALE, D_ARCHIVED, E_NOWHERE, Z_NEWEST = 1, 2, 3, 4, 5, 6


def _flag_states(vdb: VDb) -> dict[str, Any]:
    """A: live only · B: in both, equal · C: in both, archive stale · D: archive only ·
    E: in neither · Z: the newest lead, not selected."""
    for lead in (A_LIVE, B_EQUAL, C_STALE, D_ARCHIVED, Z_NEWEST):
        insert_lead(vdb.db, LIVE, lead, **{**BASE, "first_name": f"lead{lead}"})
    copy_to_archive(vdb, [B_EQUAL, C_STALE, D_ARCHIVED])
    vdb.db.write(f"DELETE FROM {LIVE} WHERE lead_id = {D_ARCHIVED}")
    vdb.db.write(
        f"UPDATE {ARCHIVE_T} SET first_name = 'stale', modify_date = modify_date "
        f"WHERE lead_id = {C_STALE}"
    )
    return {"live": vdb.row_bytes(LIVE), "archive": vdb.row_bytes(ARCHIVE_T)}


def _expected(
    ins: bool, upd: bool, dele: bool, start: dict[str, Any]
) -> tuple[dict[str, int], dict[int, Any], dict[int, Any]]:
    """Outcome counts, live rows and archive rows the Lead Archive API describes."""
    live, arch = dict(start["live"]), dict(start["archive"])
    outcomes = {D_ARCHIVED: "already_archived", E_NOWHERE: "missing"}
    # A: insert copies it; delete then finds an equal copy.
    if ins:
        arch[A_LIVE] = live[A_LIVE]
        outcomes[A_LIVE] = "archived" if dele else "refreshed"
    else:
        outcomes[A_LIVE] = "not_copied"
    # B: already equal: nothing is written to the archive; delete may remove the live row.
    outcomes[B_EQUAL] = "archived" if dele else "already_copied"
    # C: update refreshes the stale copy; without it, delete finds no equal copy.
    if upd:
        arch[C_STALE] = live[C_STALE]
        outcomes[C_STALE] = "archived" if dele else "refreshed"
    else:
        outcomes[C_STALE] = "kept_changed"
    for lead, out in outcomes.items():
        if out == "archived":
            del live[lead]
    counts: dict[str, int] = {}
    for out in outcomes.values():
        counts[out] = counts.get(out, 0) + 1
    return counts, live, arch


FLAG_COMBOS = [(i, u, d) for i in (True, False) for u in (True, False) for d in (True, False)]


def _combo_id(combo: tuple[bool, bool, bool]) -> str:
    return "-".join(
        ("" if on else "no-") + name
        for on, name in zip(combo, ("insert", "update", "delete"), strict=True)
    )


@pytest.mark.parametrize("combo", FLAG_COMBOS, ids=_combo_id)
@pytest.mark.parametrize("via", ["flags", "request"])
def test_step_flags_do_what_the_lead_archive_api_says(
    vdb: VDb, tmp_path: Path, via: str, combo: tuple[bool, bool, bool]
) -> None:
    ins, upd, dele = combo
    start = _flag_states(vdb)
    watch_archive_writes(vdb)
    ids = [A_LIVE, B_EQUAL, C_STALE, D_ARCHIVED, E_NOWHERE]
    if via == "flags":
        args = [
            f"--{'' if ins else 'no-'}insert",
            f"--{'' if upd else 'no-'}update",
            f"--{'' if dele else 'no-'}delete",
            *map(str, ids),
        ]
    else:
        body = {"insert_leads": ins, "update_leads": upd, "delete_leads": dele, "lead_ids": ids}
        path = tmp_path / "request.json"
        path.write_text(json.dumps(body))
        args = ["--request", str(path)]
    data = cli_json(vdb, args)
    counts, live, arch = _expected(ins, upd, dele, start)
    assert data["counts"] == counts
    assert vdb.row_bytes(LIVE) == live
    assert vdb.row_bytes(ARCHIVE_T) == arch
    # Only A (copied) and C (refreshed) are written; B's equal copy and D never are.
    writes = ([(A_LIVE, "insert")] if ins else []) + ([(C_STALE, "update")] if upd else [])
    assert sorted(archive_writes(vdb)) == writes


def test_request_booleans_and_flags_both_must_allow_a_step(vdb: VDb, tmp_path: Path) -> None:
    start = _flag_states(vdb)
    path = tmp_path / "request.json"
    path.write_text(json.dumps({"lead_ids": [A_LIVE, C_STALE], "delete_leads": True}))
    data = cli_json(vdb, ["--request", str(path), "--no-delete"])
    assert data["counts"] == {"refreshed": 2}
    assert vdb.row_bytes(LIVE) == start["live"]
    path.write_text(json.dumps({"lead_ids": [A_LIVE, C_STALE], "delete_leads": False}))
    data = cli_json(vdb, ["--request", str(path), "--delete"])
    assert data["counts"] == {"already_copied": 2}  # copied by the first run: nothing to write
    assert vdb.row_bytes(LIVE) == start["live"]
    path.write_text(json.dumps({"lead_ids": [A_LIVE, C_STALE]}))  # booleans default to true
    data = cli_json(vdb, ["--request", str(path)])
    assert data["counts"] == {"archived": 2}


def test_equal_copies_are_not_written_again(vdb: VDb) -> None:
    for lead in (1, 2, 3, 4):
        insert_lead(vdb.db, LIVE, lead, **BASE)
    copy_to_archive(vdb, [1, 2, 3])
    insert_lead(vdb.db, ARCHIVE_T, 5, **BASE)
    archive_before = vdb.row_bytes(ARCHIVE_T)
    watch_archive_writes(vdb)
    summary = run(vdb, [1, 2, 3, 5])
    assert dict(summary.counts) == {"archived": 3, "already_archived": 1}
    assert archive_writes(vdb) == []  # not one INSERT or UPDATE reached an archive row
    assert vdb.row_bytes(ARCHIVE_T) == archive_before  # modify_date included
    assert vdb.ids(LIVE) == [4]


def test_write_watch_sees_writes(vdb: VDb) -> None:
    """The trigger-based watch above can fail: it sees the insert and the refresh."""
    for lead in (1, 2, 3):
        insert_lead(vdb.db, LIVE, lead, **BASE)
    copy_to_archive(vdb, [2])
    vdb.db.write(f"UPDATE {ARCHIVE_T} SET comments = 'old' WHERE lead_id = 2")
    watch_archive_writes(vdb)
    summary = run(vdb, [1, 2])
    assert dict(summary.counts) == {"archived": 2}
    assert sorted(archive_writes(vdb)) == [(1, "insert"), (2, "update")]


# --- data round-trips ------------------------------------------------------------------------

TEXTS = [
    "José Müller",
    "Łukasz Nguyễn",
    "Zoë Öztürk",
    "Straße",
    "東京都",
    "Ελληνικά",
    "€ ½ ©",
    'O\'Brien \\ "q"',
    "tab\there",
    "line\nbreak",
]


@pytest.mark.server_global
def test_data_round_trips_under_a_strict_global_sql_mode(vdb: VDb) -> None:
    rows: dict[int, dict[str, Any]] = {
        1: {
            "entry_date": "0000-00-00 00:00:00",
            "modify_date": "0000-00-00 00:00:00",
            "date_of_birth": "0000-00-00",
            "last_local_call_time": "0000-00-00 00:00:00",
            "rank": -32768,
            "gmt_offset_now": "-99.99",
            "called_since_last_reset": "D",
            "gender": "U",
            "called_count": 65535,
        },
        2: {
            "rank": 32767,
            "gmt_offset_now": "99.99",
            "called_since_last_reset": "Y10",
            "gender": "F",
            "list_id": 99999999999999,
            "entry_list_id": 18446744073709551615,
        },
        3: {
            "rank": -1,
            "gmt_offset_now": "-3.50",
            "called_since_last_reset": "N",
            "date_of_birth": "1999-12-31",
            "gender": "M",
        },
    }
    for n, text in enumerate(TEXTS, 4):
        rows[n] = {
            "first_name": text[:30],
            "last_name": text[:30],
            "city": text[:50],
            "comments": text,
            "rank": -n,
            "gmt_offset_now": f"-{n % 12}.25",
            "called_since_last_reset": ("Y", "N", "Y1", "Y5", "D")[n % 5],
            "gender": "MFU"[n % 3],
        }
    for lead, values in rows.items():
        insert_lead(vdb.db, LIVE, lead, **values)
    insert_lead(vdb.db, LIVE, 99)  # the newest
    before = vdb.row_bytes(LIVE)
    with strict_global_sql_mode(vdb.db):
        probe = vdb.connect()  # a new connection sees the new global, as the tool's do
        try:
            assert "STRICT_ALL_TABLES" in probe.scalar("SELECT @@GLOBAL.sql_mode")
        finally:
            probe.conn.close()
        data = cli_json(vdb, ["--where", "lead_id < 99"])
    assert data["counts"] == {"archived": len(rows)}
    arch = vdb.row_bytes(ARCHIVE_T)
    assert arch == {i: before[i] for i in rows}
    got = vdb.db.rows(
        f"SELECT CAST(date_of_birth AS CHAR), CAST(modify_date AS CHAR), `rank`,"
        f" CAST(gmt_offset_now AS CHAR), called_since_last_reset, entry_list_id"
        f" FROM {ARCHIVE_T} WHERE lead_id IN (1, 2) ORDER BY lead_id"
    )
    assert tuple(got[0]) == ("0000-00-00", "0000-00-00 00:00:00", -32768, "-99.99", "D", 0)
    assert tuple(got[1])[2:] == (32767, "99.99", "Y10", 18446744073709551615)
    names = dict(vdb.db.rows(f"SELECT lead_id, comments FROM {ARCHIVE_T} WHERE lead_id >= 4"))
    assert [names[n] for n in range(4, 4 + len(TEXTS))] == TEXTS


# --- report, dry run, logs ----------------------------------------------------------------------


def _report_states(vdb: VDb) -> None:
    """1, 2 archivable · 3 in the hopper · 4 archive only · 5 stale copy · 6 nowhere · 7 newest."""
    for lead in (1, 2, 3, 5, 7):
        insert_lead(vdb.db, LIVE, lead, **BASE)
    insert_lead(vdb.db, ARCHIVE_T, 4, **BASE)
    copy_to_archive(vdb, [5])
    vdb.db.write(f"UPDATE {ARCHIVE_T} SET comments = 'old' WHERE lead_id = 5")
    vdb.db.write("INSERT INTO vicidial_hopper (lead_id, campaign_id, list_id) VALUES (3, 'C', 101)")


def test_report_lists_every_lead_not_archived(vdb: VDb, tmp_path: Path) -> None:
    _report_states(vdb)
    report = tmp_path / "report.csv"
    data = cli_json(
        vdb,
        [
            "--no-update",
            "--report",
            str(report),
            "--chunk-size",
            "3",
            "1",
            "2",
            "3",
            "4",
            "5",
            "6",
            "7",
        ],
    )
    assert data["counts"] == {
        "archived": 2,
        "skipped_live": 1,
        "already_archived": 1,
        "kept_changed": 1,
        "missing": 1,
        "skipped_newest": 1,
    }
    with report.open(newline="") as fh:
        lines = list(csv.reader(fh))
    assert lines == [
        ["lead_id", "outcome"],
        ["3", "skipped_live"],
        ["4", "already_archived"],
        ["5", "kept_changed"],
        ["6", "missing"],
        ["7", "skipped_newest"],
    ]
    assert vdb.ids(LIVE) == [3, 5, 7]


def test_report_through_the_core_api_lists_kept_changed(vdb: VDb, tmp_path: Path) -> None:
    for lead in (1, 2, 3):
        insert_lead(vdb.db, LIVE, lead, **BASE)

    def change(point: str, db: Db, ids: Sequence[int]) -> None:
        if point == "after_update":
            set_column(db, 2, "status", "SALE")

    report = tmp_path / "r.csv"
    summary = run(vdb, [1, 2], hook=change, report=str(report))
    assert dict(summary.counts) == {"archived": 1, "kept_changed": 1}
    assert report.read_text().splitlines() == ["lead_id,outcome", "2,kept_changed"]


def test_dry_run_writes_nothing_and_shows_counts_and_sql(vdb: VDb, tmp_path: Path) -> None:
    vdb.seed(1200)
    copy_to_archive(vdb, range(1, 11), delete=True)  # already archived
    copy_to_archive(vdb, range(11, 21))  # equal copies
    checksum = vdb.checksum()
    report = tmp_path / "plan.csv"
    result = vdb.cli(
        ["archive", "--dry-run", "--where", "lead_id <= 1200", "--report", str(report)]
    )
    assert result.exit_code == 0, result.stderr
    assert vdb.checksum() == checksum
    assert archiver_tables(vdb) == []  # no checkpoint tables, no job
    out = result.stdout
    head = "DRY RUN — nothing written; what a run would do: archive: done — 1,189 archived, "
    assert f"\n{head}1 kept (1 skipped_newest), 1,190 leads examined in 3 chunks, " in out, out
    # On MyISAM the copy inserts, as literals, the rows the chunk's scan read, so vicidial_list
    # is locked only for that read; on InnoDB it is one INSERT … SELECT inside the transaction.
    # Shown with column lists shortened to their first item (--json keeps them whole).
    more = len(vdb.columns()) - 1
    copy = (
        f"INSERT IGNORE INTO `vicidial_list_archive` (`lead_id`, … {more} more)"
        if vdb.engine == "MyISAM"
        else f"INSERT INTO `vicidial_list_archive` (`lead_id`, … {more} more)"
    )
    assert copy in out
    # The plan says which copy path runs.
    path = "INSERT IGNORE … VALUES of the rows" if vdb.engine == "MyISAM" else "INSERT … SELECT"
    assert re.search(rf"^plan: copy: {re.escape(path)}", out, re.M), out
    assert "UPDATE `vicidial_list_archive` AS d JOIN `vicidial_list` AS s" in out
    assert "DELETE s FROM `vicidial_list` AS s JOIN `vicidial_list_archive` AS d" in out
    assert f"CAST(s.`lead_id` AS BINARY) <=> CAST(d.`lead_id` AS BINARY) AND … {more} more)" in out
    assert "CAST(s.`rank` AS BINARY)" not in out
    # One chunk: copy, update, delete; on MyISAM the delete runs in statements of 100 leads,
    # the first shown and the other four counted.
    assert len(re.findall(r"`lead_id` IN \(", out)) == 3
    assert ("-- 4 more like the one above" in out) == (vdb.engine == "MyISAM")
    assert report.read_text().splitlines() == ["lead_id,outcome", "1200,skipped_newest"]

    result = vdb.cli(["archive", "--dry-run", "--where", "lead_id <= 1200", "--json"])
    assert result.exit_code == 0, result.stderr
    plan = json.loads(result.stdout)
    assert (plan["dry_run"], plan["job_id"]) == (True, None)
    assert plan["counts"] == {"archived": 1189, "skipped_newest": 1}
    assert "CAST(s.`rank` AS BINARY) <=> CAST(d.`rank` AS BINARY)" in plan["sql"][-1]
    # The first chunk is 11…510: insert names the 490 leads not yet copied (11…20 have an equal
    # copy already); update and delete name the whole chunk; nothing of the next chunk.
    if vdb.engine == "MyISAM":
        insert, update, *deletes = plan["sql"]
        assert [_in_lists(d) for d in deletes] == [
            [list(range(k, min(k + 100, 511)))] for k in range(11, 511, 100)
        ]
        assert insert.startswith("INSERT IGNORE INTO `vicidial_list_archive`")
        assert "VALUES /* the rows the scan read, as literals: `lead_id` IN (21, " in insert
    else:
        insert, update, *deletes = plan["sql"]
        assert len(deletes) == 1
        assert insert.startswith("INSERT INTO `vicidial_list_archive`")
    assert update.startswith("UPDATE `vicidial_list_archive`")
    assert all(d.startswith("DELETE s FROM `vicidial_list`") for d in deletes)
    assert _in_lists(insert) == [list(range(21, 511))]
    assert _in_lists(update) == [list(range(11, 511))]
    assert [i for d in deletes for i in _in_lists(d)[0]] == list(range(11, 511))
    assert vdb.checksum() == checksum and archiver_tables(vdb) == []

    real = cli_json(vdb, ["--where", "lead_id <= 1200"])  # the plan was right
    assert real["counts"] == plan["counts"]


def _in_lists(stmt: str) -> list[list[int]]:
    return [[int(x) for x in m.split(", ")] for m in re.findall(r"IN \(([0-9, ]+)\)", stmt)]


def test_logs_one_chunk_event_per_chunk_and_one_summary(vdb: VDb) -> None:
    vdb.seed(1100)
    settings = replace(vdb.settings, chunk_size=400)
    with capture_logs() as logs:
        summary = run(vdb, where="lead_id <= 1000", settings=settings)
    chunks = [e for e in logs if e["event"] == "chunk"]
    summaries = [e for e in logs if e["event"] == "summary"]
    assert [(c["first_lead_id"], c["last_lead_id"]) for c in chunks] == [
        (1, 400),
        (401, 800),
        (801, 1000),
    ]
    assert [c["counts"] for c in chunks] == [
        {"archived": 400},
        {"archived": 400},
        {"archived": 200},
    ]
    for c in chunks:
        assert c["log_level"] == "info"
        assert isinstance(c["ms"], float) and c["ms"] >= 0
    assert len(summaries) == 1
    assert summaries[0]["counts"] == {"archived": 1000}
    assert summaries[0]["state"] == "done" and summaries[0]["chunks"] == 3
    assert dict(summary.counts) == {"archived": 1000}


def test_where_with_colons_and_percent_signs(vdb: VDb) -> None:
    for lead, comment in ((1, "at 10:30 call"), (2, "ratio 50%:50%"), (3, "plain"), (4, "x")):
        insert_lead(vdb.db, LIVE, lead, comments=comment)
    data = cli_json(vdb, ["--where", "comments LIKE '%:%' OR comments = 'at 10:30 call'"])
    assert data["counts"] == {"archived": 2}
    assert vdb.ids(ARCHIVE_T) == [1, 2]


def test_myisam_delete_runs_in_short_statements_each_a_whole_proof(vdb: VDb) -> None:
    """Archiving from MyISAM, a chunk's delete runs in statements of `delete_batch` leads (the
    write lock on vicidial_list is held briefly); InnoDB deletes the chunk in one statement.
    A lead changed after the copy, in the last batch, is kept by that batch's own proof."""
    vdb.seed(260)
    before = vdb.row_bytes(LIVE)
    deletes: list[list[int]] = []

    def change(point: str, db: Db, ids: Sequence[int]) -> None:
        if point == "after_update":
            set_column(db, 230, "comments", "changed after the copy")
        if point == "delete":  # after each statement named `delete`, with its leads
            deletes.append(list(ids))

    settings = replace(vdb.settings, chunk_size=250, delete_batch=100)
    summary = run(vdb, where="lead_id <= 250", hook=change, settings=settings)
    assert dict(summary.counts) == {"archived": 249, "kept_changed": 1}
    if vdb.engine == "MyISAM":
        assert deletes == [list(range(1, 101)), list(range(101, 201)), list(range(201, 251))]
    else:
        assert deletes == [list(range(1, 251))]
    assert vdb.ids(LIVE) == [230, *range(251, 261)]
    # MyISAM removes its own copy of 230, which the change made stale; InnoDB's chunk held
    # the row (the change waited for the commit on another connection; here it is the chunk's
    # own), so the copy made before the change is still there.
    copied = [i for i in range(1, 251) if i != 230 or vdb.engine == "InnoDB"]
    assert vdb.row_bytes(ARCHIVE_T) == {i: before[i] for i in copied}
