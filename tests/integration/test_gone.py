"""Leads deleted by someone else while a chunk has them in hand (an admin's "delete lead", an
erasure request, VICIdial's own lead_dearchive): a lead gone from the source before its copy
does not appear in the target, and a lead the chunk did not move is never counted moved. Its
outcome is `gone`. On InnoDB the chunk holds the rows locked: the other delete waits for it."""

from __future__ import annotations

from collections.abc import Sequence

from archiver.db import Db, connect, make_engine
from archiver.jobtypes import Flags, JobSpec, Summary
from archiver.runner import run_job
from archiver.selection import Selection
from tests.support import oracle
from tests.support import proc as hp
from tests.support.beside import Beside
from tests.support.db import ARCHIVE, LIVE, VDb

LEADS = [5, 6, 7]


def run_beside(vdb: VDb, direction: str, beside: Beside, flags: Flags | None = None) -> Summary:
    spec = JobSpec(
        direction=direction,
        selection=Selection.from_ids(LEADS),
        ignore_window=True,
        flags=flags or Flags(),
        name="beside",
    )
    db = Db(connect(make_engine(vdb.settings), vdb.settings))
    try:
        return run_job(db, vdb.settings, spec, hook=beside.hook)
    finally:
        hp.close_quietly(db)
        beside.join()


def listed(vdb: VDb, outcome: str) -> str:
    done = vdb.cli(["jobs", "show", "beside", "--leads", outcome])
    assert done.exit_code == 0, done.output
    return done.stdout


def test_lead_deleted_after_the_scan_is_not_archived(vdb: VDb) -> None:
    vdb.seed(20)
    kept = vdb.row_bytes(LIVE, LEADS)
    erase = Beside(vdb, f"DELETE FROM {LIVE} WHERE lead_id = 6", {}, point="scan")
    summary = run_beside(vdb, "archive", erase)
    where = oracle.placement(vdb.db, vdb.columns())
    if vdb.engine == "InnoDB":  # the delete waited for the chunk: it found the lead archived
        assert erase.rows == 0 and dict(summary.counts) == {"archived": 3}
        assert vdb.row_bytes(ARCHIVE, LEADS) == kept
        return
    assert erase.rows == 1
    assert 6 not in where.archive | where.live, "the deleted lead is back, in the archive"
    assert dict(summary.counts) == {"archived": 2, "gone": 1}
    assert vdb.row_bytes(ARCHIVE) == {5: kept[5], 7: kept[7]}
    assert listed(vdb, "gone") == "6,gone\n"


def test_lead_deleted_after_the_scan_is_not_copied_by_a_no_delete_run(vdb: VDb) -> None:
    vdb.seed(20)
    erase = Beside(vdb, f"DELETE FROM {LIVE} WHERE lead_id = 6", {}, point="scan")
    summary = run_beside(vdb, "archive", erase, Flags(insert=True, update=True, delete=False))
    if vdb.engine == "InnoDB":
        assert dict(summary.counts) == {"refreshed": 3}
        return
    assert 6 not in oracle.ids_of(vdb.db, ARCHIVE)
    assert dict(summary.counts) == {"refreshed": 2, "gone": 1}


def test_copy_that_was_there_before_stays_when_its_live_row_is_deleted(vdb: VDb) -> None:
    """The archive held an equal copy of lead 6 before the job (not this job's copy): it is
    not the job's to remove; the lead was not moved by the job either."""
    vdb.seed(20)
    vdb.db.write(f"INSERT INTO {ARCHIVE} SELECT * FROM {LIVE} WHERE lead_id = 6")
    before = vdb.row_bytes(ARCHIVE)
    erase = Beside(vdb, f"DELETE FROM {LIVE} WHERE lead_id = 6", {}, point="scan")
    summary = run_beside(vdb, "archive", erase)
    assert vdb.row_bytes(ARCHIVE, [6]) == before
    if vdb.engine == "MyISAM":
        assert dict(summary.counts) == {"archived": 2, "gone": 1}


def test_archive_row_deleted_after_the_scan_is_not_counted_dearchived(vdb: VDb) -> None:
    vdb.seed(20)
    kept = vdb.row_bytes(LIVE, LEADS)
    assert vdb.cli(["archive", "5", "6", "7", "--ignore-window"]).exit_code == 0
    erase = Beside(vdb, f"DELETE FROM {ARCHIVE} WHERE lead_id = 6", {}, point="scan")
    summary = run_beside(vdb, "dearchive", erase)
    where = oracle.placement(vdb.db, vdb.columns())
    if vdb.engine == "InnoDB":
        assert erase.rows == 0 and dict(summary.counts) == {"dearchived": 3}
        assert vdb.row_bytes(LIVE, LEADS) == kept
        return
    assert erase.rows == 1 and 6 not in where.archive | where.live
    assert dict(summary.counts) == {"dearchived": 2, "gone": 1}
    assert summary.job_counts == summary.counts
    assert vdb.row_bytes(LIVE, LEADS) == {5: kept[5], 7: kept[7]}
    assert listed(vdb, "gone") == "6,gone\n"


# --- review round 3: a withdrawal cannot tell a lead deleted before its copy from one moved
# after it, so nothing is withdrawn; the rows are read again before the copy instead.


def test_a_lead_another_mover_moves_after_the_copy_stays_archived(vdb: VDb) -> None:
    """After this chunk's copy, another mover (a second archiver under another lock name, a
    DBA's cleanup, VICIdial's own script) deletes the live row, proven by the copy: the copy
    is then the only one, and stays."""
    vdb.seed(20)
    kept = vdb.row_bytes(LIVE, LEADS)
    move = Beside(
        vdb,
        f"DELETE s FROM {LIVE} AS s JOIN {ARCHIVE} AS a ON a.lead_id = s.lead_id"
        " WHERE s.lead_id = 6 AND CAST(a.comments AS BINARY) <=> CAST(s.comments AS BINARY)",
        {},
        point="copy",
    )
    run_beside(vdb, "archive", move)
    where = oracle.placement(vdb.db, vdb.columns())
    assert where.archive >= {5, 6, 7} and not where.live & set(LEADS)
    assert vdb.row_bytes(ARCHIVE, LEADS) == kept


def test_a_lead_replaced_by_another_under_its_id_after_the_scan_is_not_copied(vdb: VDb) -> None:
    """An admin deletes lead 6 (Alice) after the scan and a new lead 6 (Bob) is inserted: the
    scan's Alice must not be written into the archive."""
    vdb.seed(20)
    vdb.db.write(f"UPDATE {LIVE} SET first_name = 'Alice' WHERE lead_id = 6")
    insert_bob = (
        f"INSERT INTO {LIVE} (lead_id, entry_date, modify_date, status, list_id, phone_number,"
        " first_name) VALUES (6, '2031-01-01 00:00:00', '2031-01-01 00:00:00', 'NEW', 101,"
        " '8135550000', 'Bob')"
    )

    class Replace(Beside):
        def _change(self) -> None:
            db = self.vdb.connect()
            try:
                self.rows = db.write(f"DELETE FROM {LIVE} WHERE lead_id = 6")
                db.write(insert_bob)
            finally:
                hp.close_quietly(db)

    replace = Replace(vdb, "", {}, point="scan")
    run_beside(vdb, "archive", replace)
    names = {
        t: [str(r[0]) for r in vdb.db.rows(f"SELECT first_name FROM {t} WHERE lead_id = 6")]
        for t in (LIVE, ARCHIVE)
    }
    if vdb.engine == "InnoDB":  # the delete waited for the chunk: Alice was archived first
        assert names == {LIVE: ["Bob"], ARCHIVE: ["Alice"]}
        return
    assert names == {LIVE: ["Bob"], ARCHIVE: []}, "the deleted Alice is back, in the archive"


def test_a_run_cut_after_copying_around_a_deleted_lead_never_brings_it_back(vdb: VDb) -> None:
    """Lead 6 is deleted after the scan and the run is cut right after its copy (as a second
    Ctrl-C would): the run again never puts lead 6 into the archive."""
    vdb.seed(20)
    erase = Beside(vdb, f"DELETE FROM {LIVE} WHERE lead_id = 6", {}, point="scan")

    def cut(at: str, db: Db, ids: Sequence[int]) -> None:
        erase.hook(at, db, ids)
        if at == "after_insert":
            raise KeyboardInterrupt

    spec = JobSpec("archive", Selection.from_ids(LEADS), ignore_window=True, name="beside")
    db = Db(connect(make_engine(vdb.settings), vdb.settings))
    try:
        summary = run_job(db, vdb.settings, spec, hook=cut)
    finally:
        hp.close_quietly(db)
        erase.join()
    assert summary.state == "stopped"
    again = vdb.cli(["archive", *map(str, LEADS), "--ignore-window", "--job-name", "beside"])
    assert again.exit_code == 0, again.output
    where = oracle.placement(vdb.db, vdb.columns())
    if vdb.engine == "MyISAM":
        assert 6 not in where.archive | where.live
    assert {5, 7} <= where.archive
