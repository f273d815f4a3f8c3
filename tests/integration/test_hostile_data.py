"""Hostile data (issue 7), on MyISAM and on InnoDB: values a collation calls equal but bytes do
not, NULL vs '' vs 'NULL', zero and invalid dates under a strict GLOBAL sql_mode, maximum-length
values in every VARCHAR, lead ids at the top of INT UNSIGNED, and archives whose character set
or column type cannot hold what live holds. In every case a lead ends either moved with a
byte-identical copy or still live and unchanged: never a silently altered copy, never lost."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from archiver.db import Db
from tests.support.db import ARCHIVE, LIVE, VDb, strict_global_sql_mode

MAX_ID = 4294967295


# --- helpers ------------------------------------------------------------------------------------


def insert_lead(db: Db, table: str, lead_id: int, **values: Any) -> None:
    # An entry_date, the same in both tables: what proves two rows are the same lead.
    row = {
        "lead_id": lead_id,
        "phone_number": f"555{lead_id % 10**7:07d}",
        "entry_date": "2024-01-02 03:04:05",
        **values,
    }
    cols = ", ".join(f"`{c}`" for c in row)
    marks = ", ".join(f":{c}" for c in row)
    db.write(f"INSERT INTO `{table}` ({cols}) VALUES ({marks})", row)


def archive_cli(vdb: VDb, *args: str, code: int = 0) -> dict[str, Any]:
    result = vdb.cli(["archive", *args, "--json"])
    assert result.exit_code == code, result.stderr
    assert "Traceback" not in result.stderr
    return json.loads(result.stdout) if code == 0 else {"stderr": result.stderr}


def error_line(vdb: VDb, *args: str) -> str:
    result = vdb.cli(["archive", *args])
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("Error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def value_of(vdb: VDb, table: str, lead_id: int, column: str) -> Any:
    return vdb.db.scalar(f"SELECT `{column}` FROM `{table}` WHERE lead_id = :l", {"l": lead_id})


def no_lead_lost(vdb: VDb, ids: Sequence[int]) -> None:
    assert set(ids) <= set(vdb.ids(LIVE)) | set(vdb.ids(ARCHIVE))


# --- equal to the collation, different in bytes ------------------------------------------------

# (column, live value, stale archive value, does utf8mb3_unicode_ci's `=` call them equal?)
PAIRS = [
    ("first_name", "Smith", "smith", True),
    ("first_name", "smith", "SMITH", True),
    ("status", "sale", "SALE", True),
    ("middle_initial", "A", "a", True),
    ("title", "Dr", "DR", True),
    ("state", "QC", "qc", True),
    ("last_name", "García", "Garcia", True),
    ("last_name", "é", "e", True),
    ("first_name", "Zoë", "Zoe", True),
    ("city", "Zürich", "Zurich", True),
    ("province", "Québec", "Quebec", True),
    ("owner", "ß", "ss", True),
    ("comments", "Smith ", "Smith", True),
    ("comments", "Smith", "Smith ", True),
    ("comments", "Smith", "Smith   ", True),
    ("phone_number", "7275551111 ", "7275551111", True),
    ("email", "NULL", None, False),
    ("email", "NULL", "", False),
    ("email", "", None, False),
    ("email", None, "", False),
    ("address3", None, "NULL", False),
    ("security_phrase", "null", "NULL", True),
    ("date_of_birth", "0000-00-00", None, False),
    ("date_of_birth", None, "0000-00-00", False),
    ("last_local_call_time", "0000-00-00 00:00:00", None, False),
    ("entry_date", "2023-02-31 00:00:00", "2023-03-03 00:00:00", False),
]


@pytest.mark.parametrize(
    ("column", "live", "stale", "collation_equal"),
    PAIRS,
    ids=[f"{c}:{lv!r}-vs-{st!r}" for c, lv, st, _ in PAIRS],
)
def test_values_the_collation_calls_equal_are_not_equal_copies(
    vdb: VDb, column: str, live: Any, stale: Any, collation_equal: bool
) -> None:
    insert_lead(vdb.db, LIVE, 1, **{column: live})
    insert_lead(vdb.db, ARCHIVE, 1, **{column: stale})
    insert_lead(vdb.db, LIVE, 2)  # the newest
    # The same modify_date on both sides: the one column is the only difference.
    vdb.db.write(
        f"UPDATE {ARCHIVE} a JOIN {LIVE} l USING (lead_id) SET a.modify_date = l.modify_date"
    )
    live_row, stale_row = vdb.row_bytes(LIVE, [1])[1], vdb.row_bytes(ARCHIVE, [1])[1]
    assert live_row != stale_row
    same = vdb.db.scalar(
        f"SELECT COUNT(*) FROM {LIVE} l JOIN {ARCHIVE} a USING (lead_id) "
        f"WHERE l.`{column}` = a.`{column}`"
    )
    assert bool(same) == collation_equal  # the trap is real: `=` alone would say equal

    data = archive_cli(vdb, "--no-update", "1")  # the stale copy may not be refreshed
    other_lead = column == "entry_date"  # another entry_date: another lead under the same id
    assert data["counts"] == {"conflict" if other_lead else "kept_changed": 1}
    assert vdb.row_bytes(LIVE, [1])[1] == live_row
    assert vdb.row_bytes(ARCHIVE, [1])[1] == stale_row
    if other_lead:  # never overwritten: both rows stay as they are
        assert archive_cli(vdb, "1")["counts"] == {"conflict": 1}
        assert vdb.row_bytes(ARCHIVE, [1])[1] == stale_row
        return

    data = archive_cli(vdb, "1")  # --update refreshes the copy to the live bytes, then moves
    assert data["counts"] == {"archived": 1}
    assert vdb.row_bytes(ARCHIVE, [1])[1] == live_row
    assert vdb.ids(LIVE) == [2]


# --- hostile values copied as they are -------------------------------------------------------

TEXT_VALUES = [
    "",
    " ",
    "  ",
    "NULL",
    "null",
    "Null ",
    "\\N",
    "\\",
    "\\\\",
    "'",
    "''",
    '"',
    "`",
    "%",
    "_",
    "%_%",
    "a\x00b",
    "\x00",
    "\t",
    "\r\n",
    "\n",
    "line1\nline2",
    " leading",
    "trailing ",
    "é",
    "e\u0301",
    "ß",
    "ss",
    "Ǆ",
    "ǅ",
    "ǆ",
    "İ",
    "ı",
    "ﬁ",
    "Å",
    "Å",
    "\u200b",
    "\u00a0",
    "\ufeff",
    "東京",
    "한국어",
    "עברית",
    "العربية",
    "\u202eevil",
    "'; DROP TABLE vicidial_list; --",
    "0",
    "-0",
    "1e3",
    "0x41",
    "\x7f",
    "\x1b[31m",
]


def test_hostile_text_values_round_trip(vdb: VDb) -> None:
    for n, text in enumerate(TEXT_VALUES, 1):
        insert_lead(
            vdb.db,
            LIVE,
            n,
            first_name=text[:30],
            last_name=text[:30],
            comments=text,
            email=text[:70],
            security_phrase=text[:100],
            owner=text[:20],
            vendor_lead_code=text[:20],
            source_id=text[:50],
        )
    newest = len(TEXT_VALUES) + 1
    insert_lead(vdb.db, LIVE, newest)
    stored = {int(r[0]): r[1] for r in vdb.db.rows(f"SELECT lead_id, comments FROM {LIVE}")}
    assert [stored[n] for n in range(1, newest)] == TEXT_VALUES  # the server kept each value
    before = vdb.row_bytes(LIVE)
    data = archive_cli(vdb, "--where", f"lead_id < {newest}")
    assert data["counts"] == {"archived": len(TEXT_VALUES)}
    assert vdb.row_bytes(ARCHIVE) == {n: before[n] for n in range(1, newest)}
    archived = {int(r[0]): r[1] for r in vdb.db.rows(f"SELECT lead_id, comments FROM {ARCHIVE}")}
    assert [archived[n] for n in range(1, newest)] == TEXT_VALUES


# --- zero and invalid dates under a strict server --------------------------------------------

DATES = [  # (date_of_birth, entry_date, last_local_call_time, modify_date)
    ("0000-00-00", "0000-00-00 00:00:00", "0000-00-00 00:00:00", "0000-00-00 00:00:00"),
    ("2023-02-31", "2023-02-30 12:00:00", "2023-04-31 23:59:59", "1970-01-01 00:00:01"),
    ("2023-00-00", "2023-00-00 00:00:00", "2023-11-00 08:00:00", "2038-01-19 03:14:07"),
    ("2023-04-00", "2023-00-15 10:00:00", "0000-01-01 00:00:00", "2024-02-29 12:00:00"),
    ("2023-00-15", "9999-12-31 23:59:59", "1000-01-01 00:00:00", "2024-03-10 02:30:00"),
    ("1000-01-01", None, None, "2021-01-01 00:00:00"),
    ("9999-12-31", "2024-02-29 00:00:00", "2024-03-31 02:30:00", "2021-01-01 00:00:00"),
    (None, "2019-02-29 00:00:00", "2019-04-31 00:00:00", "2021-01-01 00:00:00"),
]
DATE_COLS = ("date_of_birth", "entry_date", "last_local_call_time", "modify_date")


@pytest.mark.server_global
def test_zero_and_invalid_dates_survive_a_strict_global_sql_mode(vdb: VDb) -> None:
    for n, values in enumerate(DATES, 1):
        insert_lead(vdb.db, LIVE, n, **dict(zip(DATE_COLS, values, strict=True)))
    insert_lead(vdb.db, LIVE, 100)
    exprs = ", ".join(f"CAST(`{c}` AS CHAR)" for c in DATE_COLS)
    stored = [
        tuple(r)
        for r in vdb.db.rows(f"SELECT {exprs} FROM {LIVE} WHERE lead_id < 100 ORDER BY lead_id")
    ]
    assert stored == DATES  # what VICIdial data holds, as the server keeps it
    before = vdb.row_bytes(LIVE)
    with strict_global_sql_mode(vdb.db):
        data = archive_cli(vdb, "--where", "lead_id < 100")
    assert data["counts"] == {"archived": len(DATES)}
    assert vdb.row_bytes(ARCHIVE) == {n: before[n] for n in range(1, len(DATES) + 1)}
    copied = [tuple(r) for r in vdb.db.rows(f"SELECT {exprs} FROM {ARCHIVE} ORDER BY lead_id")]
    assert copied == DATES


@pytest.mark.server_global
def test_zero_date_compared_against_null_under_a_strict_global_sql_mode(vdb: VDb) -> None:
    insert_lead(vdb.db, LIVE, 1, date_of_birth="0000-00-00")
    insert_lead(vdb.db, ARCHIVE, 1, date_of_birth=None)
    insert_lead(vdb.db, LIVE, 2)
    vdb.db.write(
        f"UPDATE {ARCHIVE} a JOIN {LIVE} l USING (lead_id) SET a.modify_date = l.modify_date"
    )
    with strict_global_sql_mode(vdb.db):
        assert archive_cli(vdb, "--no-update", "1")["counts"] == {"kept_changed": 1}
        assert archive_cli(vdb, "1")["counts"] == {"archived": 1}
    assert vdb.db.scalar(f"SELECT CAST(date_of_birth AS CHAR) FROM {ARCHIVE}") == "0000-00-00"


# --- maximum lengths -------------------------------------------------------------------------


def _varchars(vdb: VDb) -> dict[str, int]:
    rows = vdb.db.rows(
        "SELECT COLUMN_NAME, CHARACTER_MAXIMUM_LENGTH FROM information_schema."
        "COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t AND "
        "DATA_TYPE = 'varchar' ORDER BY ORDINAL_POSITION",
        {"t": LIVE},
    )
    return {str(r[0]): int(r[1]) for r in rows}


FILLS = {1: "東", 2: "é", 3: "x", 4: "€ ", 5: " "}  # 3-byte, 2-byte, ASCII, trailing space, blanks


def test_maximum_length_values_in_every_varchar(vdb: VDb) -> None:
    varchars = _varchars(vdb)
    assert len(varchars) == 23  # every VARCHAR of vicidial_list
    for lead, fill in FILLS.items():
        values = {c: (fill * n)[:n] for c, n in varchars.items()}
        insert_lead(vdb.db, LIVE, lead, **values)
    insert_lead(vdb.db, LIVE, 99)
    lengths = ", ".join(f"CHAR_LENGTH(`{c}`)" for c in varchars)
    for row in vdb.db.rows(f"SELECT {lengths} FROM {LIVE} WHERE lead_id < 99"):
        assert list(row) == list(varchars.values())  # nothing was cut on the way in
    before = vdb.row_bytes(LIVE)
    data = archive_cli(vdb, "--where", "lead_id < 99")
    assert data["counts"] == {"archived": len(FILLS)}
    assert vdb.row_bytes(ARCHIVE) == {n: before[n] for n in FILLS}
    for row in vdb.db.rows(f"SELECT {lengths} FROM {ARCHIVE}"):
        assert list(row) == list(varchars.values())


# --- lead ids at the top of INT UNSIGNED -----------------------------------------------------


def test_lead_ids_at_the_top_of_int_unsigned(vdb: VDb, tmp_path: Path) -> None:
    top = [MAX_ID - 2, MAX_ID - 1, MAX_ID]
    for lead in (1, 2, 3, *top):
        insert_lead(vdb.db, LIVE, lead, first_name=f"lead{lead}")
    before = vdb.row_bytes(LIVE)
    report = tmp_path / "r.csv"
    data = archive_cli(vdb, str(MAX_ID - 1), str(MAX_ID), "--report", str(report))
    assert data["counts"] == {"archived": 1, "skipped_newest": 1}
    assert report.read_text().splitlines() == ["lead_id,outcome", f"{MAX_ID},skipped_newest"]
    started = time.monotonic()
    # Criteria walk the key from 0: four billion ids of gap may not cost four billion / window
    # queries.
    data = archive_cli(vdb, "--where", f"lead_id >= {MAX_ID - 10}", "--no-safe-auto-increment")
    assert time.monotonic() - started < 10
    assert data["counts"] == {"archived": 2}
    assert vdb.ids(LIVE) == [1, 2, 3]
    assert vdb.row_bytes(ARCHIVE) == {i: before[i] for i in top}
    result = vdb.cli(["jobs", "show", str(data["job_id"]), "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["cursor"] == MAX_ID


def test_every_lead_at_the_top_through_criteria_in_small_chunks(vdb: VDb) -> None:
    ids = [1, 2, 1_000_000, 2_000_000_000, MAX_ID - 3, MAX_ID - 2, MAX_ID - 1, MAX_ID]
    for lead in ids:
        insert_lead(vdb.db, LIVE, lead)
    before = vdb.row_bytes(LIVE)
    started = time.monotonic()
    data = archive_cli(
        vdb, "--where", "lead_id > 1", "--chunk-size", "2", "--no-safe-auto-increment"
    )
    assert time.monotonic() - started < 10
    assert data["counts"] == {"archived": 7}
    assert data["chunks"] == 4
    assert vdb.ids(LIVE) == [1]
    assert vdb.row_bytes(ARCHIVE) == {i: before[i] for i in ids[1:]}


# --- archives that cannot hold what live holds -----------------------------------------------

EMOJI = "😀 ok 🎉"


def _live_utf8mb4_with_emoji(vdb: VDb) -> dict[int, Any]:
    vdb.db.write(f"ALTER TABLE {LIVE} CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    vdb.seed(5)
    insert_lead(vdb.db, LIVE, 6, first_name=EMOJI, comments=f"{EMOJI} {'𝄞' * 10}")
    insert_lead(vdb.db, LIVE, 7)
    assert value_of(vdb, LIVE, 6, "first_name") == EMOJI
    return {t: vdb.row_bytes(t) for t in (LIVE, ARCHIVE)}


@pytest.mark.parametrize("charset", ["utf8mb3", "latin1"])
def test_archive_in_a_narrower_charset_is_refused_up_front(vdb: VDb, charset: str) -> None:
    if charset != "utf8mb3":
        vdb.db.write(f"ALTER TABLE {ARCHIVE} CONVERT TO CHARACTER SET {charset}")
    before = _live_utf8mb4_with_emoji(vdb)
    for args in (["6"], ["--where", "lead_id < 7"], ["--dry-run", "6"], ["--no-delete", "6"]):
        line = error_line(vdb, *args)
        assert line.startswith(
            "Error: column 'status' is character set utf8mb4 in the source but "
            f"{charset} in the target, which cannot hold every character "
            "(vicidial_list → vicidial_list_archive); run `vicidial-archiver schema sync`"
        )
        assert {t: vdb.row_bytes(t) for t in (LIVE, ARCHIVE)} == before
    assert value_of(vdb, LIVE, 6, "first_name") == EMOJI
    result = vdb.cli(["schema", "check"])
    assert result.exit_code == 1
    assert "BLOCKING: column 'first_name' is character set utf8mb4" in result.stdout


def test_one_utf8mb4_column_is_enough_to_refuse(vdb: VDb) -> None:
    vdb.db.write(
        f"ALTER TABLE {LIVE} MODIFY comments VARCHAR(255) CHARACTER SET utf8mb4 "
        "COLLATE utf8mb4_unicode_ci"
    )
    insert_lead(vdb.db, LIVE, 1, comments=EMOJI)
    insert_lead(vdb.db, LIVE, 2)
    before = vdb.row_bytes(LIVE)
    assert error_line(vdb, "1") == (
        "Error: column 'comments' is character set utf8mb4 in the source but utf8mb3 in the "
        "target, which cannot hold every character (vicidial_list → vicidial_list_archive); run "
        "`vicidial-archiver schema sync` to see the ALTER TABLE that fixes it"
    )
    assert vdb.row_bytes(LIVE) == before and vdb.count(ARCHIVE) == 0
    # The fix schema sync prints makes the archive able to hold it, and the lead moves intact.
    result = vdb.cli(["schema", "sync", "--apply"])
    assert result.exit_code == 0, result.stderr
    assert "MODIFY COLUMN `comments` varchar(255) CHARACTER SET utf8mb4" in result.stdout
    assert archive_cli(vdb, "1")["counts"] == {"archived": 1}
    assert vdb.row_bytes(ARCHIVE) == {1: before[1]}
    assert value_of(vdb, ARCHIVE, 1, "comments") == EMOJI


def test_wider_charset_archive_holds_every_byte(vdb: VDb) -> None:
    vdb.db.write(
        f"ALTER TABLE {ARCHIVE} CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
    )
    vdb.seed(300)
    before = vdb.row_bytes(LIVE)
    data = archive_cli(vdb, "--where", "lead_id < 300")
    assert data["counts"] == {"archived": 299}
    assert vdb.row_bytes(ARCHIVE) == {i: before[i] for i in range(1, 300)}


def test_four_byte_characters_round_trip_between_utf8mb4_tables(vdb: VDb) -> None:
    vdb.db.write(
        f"ALTER TABLE {ARCHIVE} CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
    )
    before = _live_utf8mb4_with_emoji(vdb)[LIVE]
    data = archive_cli(vdb, "--where", "lead_id < 7")
    assert data["counts"] == {"archived": 6}
    assert vdb.row_bytes(ARCHIVE) == {i: before[i] for i in range(1, 7)}
    assert value_of(vdb, ARCHIVE, 6, "first_name") == EMOJI


def test_text_column_too_small_in_bytes_is_refused(vdb: VDb) -> None:
    """TINYTEXT holds 255 bytes, VARCHAR(255) utf8 up to 765: a copy would be cut short."""
    vdb.db.write(f"ALTER TABLE {ARCHIVE} MODIFY comments TINYTEXT")
    insert_lead(vdb.db, LIVE, 1, comments="é" * 255)
    insert_lead(vdb.db, LIVE, 2, comments="short")
    insert_lead(vdb.db, LIVE, 3)
    before = vdb.row_bytes(LIVE)
    assert error_line(vdb, "1", "2").startswith(
        "Error: column 'comments' is varchar(255) in the source but tinytext in the target, "
        "which holds only 255 bytes"
    )
    assert vdb.row_bytes(LIVE) == before and vdb.count(ARCHIVE) == 0


def test_drifted_column_order_and_extra_archive_column(vdb: VDb) -> None:
    """VICIdial's own `INSERT … SELECT *` shuffles data between drifted columns; by name it
    cannot."""
    vdb.db.write(
        f"ALTER TABLE {ARCHIVE} MODIFY first_name VARCHAR(30) AFTER entry_list_id, "
        "MODIFY `rank` SMALLINT(5) NOT NULL DEFAULT 0 FIRST, "
        "ADD COLUMN archived_by VARCHAR(20) DEFAULT 'nobody'"
    )
    vdb.seed(50)
    before = vdb.row_bytes(LIVE)
    data = archive_cli(vdb, "--where", "lead_id < 50")
    assert data["counts"] == {"archived": 49}
    assert vdb.row_bytes(ARCHIVE) == {i: before[i] for i in range(1, 50)}  # read by name
    assert {r[0] for r in vdb.db.rows(f"SELECT archived_by FROM {ARCHIVE}")} == {"nobody"}
    no_lead_lost(vdb, range(1, 51))
