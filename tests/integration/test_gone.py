"""Leads deleted by someone else while a chunk has them in hand (an admin's "delete lead", an
erasure request, VICIdial's own lead_dearchive): a lead gone from the source before its copy
does not appear in the target, and a lead the chunk did not move is never counted moved. Its
outcome is `gone`. On InnoDB the chunk holds the rows locked: the other delete waits for it."""

from __future__ import annotations

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
