"""Two rows under one lead_id are refreshed or taken for one another only when they are provably
the same lead: issue 21's lead-safety findings 1-3, through the real CLI on both engines."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from archiver.db import Db
from archiver.jobtypes import JobSpec
from archiver.runner import run_job
from archiver.selection import Criteria, Selection
from tests.support import oracle
from tests.support import proc as hp
from tests.support.beside import Beside
from tests.support.cli import summary_of
from tests.support.db import ARCHIVE, LIVE, VDb

LEAD = 7


def cli_json(vdb: VDb, *args: str) -> dict[str, Any]:
    result = vdb.cli([*args, "--json"])
    assert result.exit_code in (0, 1), result.output
    return summary_of(result)


# --- 1. "same lead" told by a NULL or zero entry_date ---------------------------------------


@pytest.mark.parametrize("entry_date", ["NULL", "'0000-00-00 00:00:00'"])
def test_two_leads_without_an_entry_date_are_a_conflict_in_every_command(
    vdb: VDb, entry_date: str
) -> None:
    vdb.seed(10)
    vdb.db.write(f"UPDATE {LIVE} SET entry_date = {entry_date} WHERE lead_id = {LEAD}")
    vdb.db.write(f"INSERT INTO {ARCHIVE} SELECT * FROM {LIVE} WHERE lead_id = {LEAD}")
    vdb.db.write(
        f"UPDATE {ARCHIVE} SET first_name = 'Alice', phone_number = '3055550100',"
        f" comments = 'paid customer', modify_date = modify_date WHERE lead_id = {LEAD}"
    )
    vdb.db.write(
        f"UPDATE {LIVE} SET first_name = 'Bob', phone_number = '8135550199',"
        f" modify_date = modify_date WHERE lead_id = {LEAD}"
    )
    before = (vdb.row_bytes(LIVE, [LEAD]), vdb.row_bytes(ARCHIVE, [LEAD]))
    ids = [str(LEAD)]
    planned = cli_json(vdb, "archive", *ids, "--ignore-window", "--dry-run")
    assert planned["counts"] == {"conflict": 1}
    for direction in ("archive", "dearchive"):
        done = cli_json(vdb, direction, *ids, "--ignore-window")
        assert done["counts"] == {"conflict": 1}, direction
        assert (vdb.row_bytes(LIVE, [LEAD]), vdb.row_bytes(ARCHIVE, [LEAD])) == before
    result = vdb.cli(["verify", *ids, "--json"])
    assert result.exit_code == 1, result.output
    report = summary_of(result)
    assert report["lead_ids"]["both_different"] == [LEAD]


def test_equal_rows_without_an_entry_date_still_move(vdb: VDb) -> None:
    vdb.seed(10)
    vdb.db.write(f"UPDATE {LIVE} SET entry_date = NULL WHERE lead_id IN (3, {LEAD})")
    vdb.db.write(f"INSERT INTO {ARCHIVE} SELECT * FROM {LIVE} WHERE lead_id = {LEAD}")
    live = vdb.row_bytes(LIVE, [3, LEAD])
    done = cli_json(vdb, "archive", "3", str(LEAD), "--ignore-window")
    assert done["counts"] == {"archived": 2}
    assert vdb.row_bytes(ARCHIVE, [3, LEAD]) == live and vdb.ids(LIVE).count(LEAD) == 0


# --- 2. an ALTER that cut values, then undone, and the runs after it ------------------------

WHERE = "lead_id <= 20"
FULL = "customer asked for the premium plan, call Tue"


def run_with_hook(vdb: VDb, direction: str, hook: Any) -> Any:
    settings = replace(vdb.settings, chunk_size=10)
    spec = JobSpec(direction, Selection(criteria=Criteria(where=WHERE).resolve()))
    db = vdb.connect()
    try:
        return run_job(db, settings, replace(spec, ignore_window=True), hook=hook)
    finally:
        hp.close_quietly(db)


class CutAndUndo:
    """At the first chunk's `after_insert` (the copies written, nothing deleted), a DBA's
    session that lets an ALTER cut values runs MODIFY comments VARCHAR(5) on vicidial_list
    and puts VARCHAR(255) back. On InnoDB the chunk's transaction holds the table: the ALTER
    gives up (lock_wait_timeout) and cuts nothing."""

    def __init__(self, vdb: VDb) -> None:
        self.vdb, self.ran = vdb, False

    def hook(self, at: str, _db: Db, _ids: Sequence[int]) -> None:
        if at != "after_insert" or self.ran:
            return
        self.ran = True
        dba = self.vdb.connect()
        try:
            dba.write("SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION', lock_wait_timeout = 1")
            dba.write(f"ALTER TABLE {LIVE} MODIFY comments VARCHAR(5)")
            dba.write(f"ALTER TABLE {LIVE} MODIFY comments VARCHAR(255)")
        except OperationalError:
            assert self.vdb.engine == "InnoDB"
        finally:
            hp.close_quietly(dba)


def comments(vdb: VDb) -> dict[str, dict[int, object]]:
    return {t: oracle.values_of(vdb.db, t, "comments", WHERE) for t in (LIVE, ARCHIVE)}


def lost_comments(vdb: VDb, before: dict[int, object]) -> dict[int, object]:
    now = comments(vdb)
    return {i: v for i, v in before.items() if v not in (now[LIVE].get(i), now[ARCHIVE].get(i))}


@pytest.mark.parametrize("direction", ["archive", "dearchive"])
def test_values_an_alter_cut_survive_every_later_run(vdb: VDb, direction: str) -> None:
    vdb.seed(30)
    vdb.db.write(f"UPDATE {LIVE} SET comments = '{FULL}', modify_date = modify_date WHERE {WHERE}")
    # The first chunk's leads: those the job had in hand when the ALTER cut the live values
    # (it cuts the next chunk's before the job reads them: that loss is the ALTER's own).
    before = {i: v for i, v in comments(vdb)[LIVE].items() if i <= 10}
    if direction == "dearchive":
        assert cli_json(vdb, "archive", "--where", WHERE, "--ignore-window")["counts"] == {
            "archived": 20
        }
    cut = CutAndUndo(vdb)
    summary = run_with_hook(vdb, direction, cut.hook)
    assert cut.ran and summary.state == "done"
    assert not lost_comments(vdb, before)
    held = sorted(i for i, v in comments(vdb)[LIVE].items() if v != FULL)
    assert held if vdb.engine == "MyISAM" else not held, held
    # A call on one of them: what a call changes never releases the pair.
    vdb.db.write(f"UPDATE {LIVE} SET status = 'NA', called_count = called_count + 1 WHERE {WHERE}")
    for args in (
        ("archive", "--dry-run"),
        ("archive",),
        ("dearchive",),
        ("archive", "--no-delete"),
        ("archive",),
    ):
        data = cli_json(vdb, *args, "--where", WHERE, "--ignore-window")
        assert data["counts"].get("conflict", 0) == len(held), (args, data["counts"])
        assert not lost_comments(vdb, before), args
    report = summary_of(vdb.cli(["verify", "--where", WHERE, "--json"]))
    assert report["lead_ids"]["both_different"] == held
    named = [w for w in report["warnings"] if "are held: " in w]
    if held:
        assert f"are held: {','.join(map(str, held))};" in named[0]
    else:
        assert not named
    if not held:
        return
    # The operator decides for the archive's values: the live row takes them back, and the
    # next run moves the lead.
    first = held[0]
    vdb.db.write(
        f"UPDATE {LIVE} AS l JOIN {ARCHIVE} AS a ON a.lead_id = l.lead_id"
        f" SET l.comments = a.comments WHERE l.lead_id = {first}"
    )
    data = cli_json(vdb, "archive", "--where", WHERE, "--ignore-window")
    assert data["counts"].get("conflict", 0) == len(held) - 1
    assert first not in vdb.ids(LIVE) and not lost_comments(vdb, before)


# --- 3. a column only the archive has ---------------------------------------------------------

NOTE = "chargeback 2024-03, do not recontact"


COLUMNS = {
    "nullable": "backoffice_note VARCHAR(100) NULL",
    "default": "backoffice_note VARCHAR(100) NOT NULL DEFAULT ''",
    "no_default": "backoffice_note VARCHAR(100) NOT NULL",
}


def archive_with_a_call(vdb: VDb, column: str, note: str | None) -> dict[int, object]:
    """Lead 9 in both tables, equal on every shared column (an earlier `--no-delete`), its
    archive row given `note` (None: left as the copy wrote it) in a column vicidial_list
    lacks; an archive run in which a call changes the lead after the chunk found its copy
    equal. Returns the archive's backoffice_note after it."""
    vdb.seed(20)
    vdb.db.write(f"ALTER TABLE {ARCHIVE} ADD COLUMN {COLUMNS[column]}")
    assert cli_json(vdb, "archive", "9", "--no-delete", "--ignore-window")["counts"] == {
        "refreshed": 1
    }
    if note is not None:
        vdb.db.write(
            f"UPDATE {ARCHIVE} SET backoffice_note = '{note}', modify_date = modify_date"
            " WHERE lead_id = 9"
        )
    called = f"UPDATE {LIVE} SET called_count = called_count + 1, status = 'NA' WHERE lead_id = 9"
    call = Beside(vdb, called, {})
    db = vdb.connect()
    try:
        spec = JobSpec("archive", Selection.from_ids([9]), ignore_window=True)
        run_job(db, vdb.settings, spec, hook=call.hook)
    finally:
        hp.close_quietly(db)
    call.join()
    assert call.rows == (1 if vdb.engine == "MyISAM" else 0)  # InnoDB: after the chunk
    return oracle.values_of(vdb.db, ARCHIVE, "backoffice_note", "lead_id = 9")


@pytest.mark.parametrize("column", sorted(COLUMNS))
def test_an_archive_only_value_is_never_removed_as_the_jobs_copy(vdb: VDb, column: str) -> None:
    """The copy is not the job's to remove: the note stays, and a later run moves the lead."""
    assert archive_with_a_call(vdb, column, NOTE) == {9: NOTE}
    done = cli_json(vdb, "archive", "9", "--ignore-window")
    assert done["counts"] in ({"archived": 1}, {"already_archived": 1})
    assert 9 not in vdb.ids(LIVE)
    assert oracle.values_of(vdb.db, ARCHIVE, "backoffice_note", "lead_id = 9") == {9: NOTE}


@pytest.mark.parametrize("column", ["nullable", "default"])
def test_a_stale_copy_with_its_archive_only_column_at_its_default_still_goes(
    vdb: VDb, column: str
) -> None:
    """MyISAM: the copy holds nothing but what the job found equal, so it goes (the lead is
    live only, for a later run); InnoDB: the call waited for the chunk, which moved the lead."""
    notes = archive_with_a_call(vdb, column, None)
    assert notes == ({} if vdb.engine == "MyISAM" else {9: None if column == "nullable" else ""})
    assert (9 in vdb.ids(LIVE)) == (vdb.engine == "MyISAM")


FULL = "customer asked for the premium plan, call Tue"


def _cut_and_undo(vdb: VDb) -> None:
    """A DBA's MODIFY comments VARCHAR(5), then back: the live comments are cut."""
    db = vdb.connect()
    try:
        db.run("SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION'")
        db.write(f"ALTER TABLE {LIVE} MODIFY comments VARCHAR(5)")
        db.write(f"ALTER TABLE {LIVE} MODIFY comments VARCHAR(255)")
    finally:
        hp.close_quietly(db)


def _full_survives(vdb: VDb) -> bool:
    rows = vdb.db.rows(
        f"SELECT comments FROM {LIVE} WHERE lead_id = 9"
        f" UNION ALL SELECT comments FROM {ARCHIVE} WHERE lead_id = 9"
    )
    return FULL in [str(r[0]) for r in rows]


def test_a_run_killed_before_it_could_hold_a_pair_leaves_it_held(vdb: VDb) -> None:
    """Review round 3: the hold was written at the end of the chunk; a run killed after its
    copy, an ALTER that cut values and undid it, then the same command (a resume) refreshed the
    archive with the cut values and deleted the live row. A pending row fingerprinted before
    an ALTER holds the pair now."""
    vdb.seed(40)
    vdb.db.write(f"UPDATE {LIVE} SET comments = :c WHERE lead_id = 9", {"c": FULL})
    args = ["archive", "--where", "lead_id <= 20", "--ignore-window", "--json"]
    killed = hp.run(vdb.dsn, args, env={"ARCHIVER_FAULT": "after_insert:1"})
    assert killed.rc == -9, killed.describe()
    if vdb.engine == "InnoDB":  # the cut chunk rolled back: the ALTER cuts the only row
        assert vdb.ids(ARCHIVE) == []
        return
    _cut_and_undo(vdb)
    again = vdb.cli(args)
    assert again.exit_code in (0, 1), again.output
    assert _full_survives(vdb), "the full comments are in neither table"
    if vdb.engine == "MyISAM":
        assert summary_of(again)["counts"].get("conflict", 0) >= 1
    # jobs cancel --force and prune (a 30-day prune cron) keep the hold.
    vdb.cli(["jobs", "cancel", "1", "--force"])
    vdb.cli(["jobs", "prune", "--older-than", "0s", "--yes"])
    vdb.cli(args)
    assert _full_survives(vdb), "a prune lost the hold"
