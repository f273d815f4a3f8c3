"""Refusals write nothing, DDL included; a report that cannot be written after the job has
written data is exit 1 with the summary, never a traceback."""

from __future__ import annotations

import stat
from pathlib import Path

from archiver.checkpoint import lock_name
from tests.support import proc as hp
from tests.support.db import ARCHIVE, LIVE, VDb


def archiver_tables(vdb: VDb) -> list[str]:
    rows = vdb.db.rows(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
        " AND TABLE_NAME LIKE 'archiver\\_%'"
    )
    return sorted(str(r[0]) for r in rows)


def test_run_refused_by_the_lock_creates_no_table(vdb: VDb) -> None:
    vdb.seed(10)
    assert archiver_tables(vdb) == []
    holder = vdb.connect()
    try:
        got = holder.scalar("SELECT GET_LOCK(:n, 0)", {"n": lock_name(vdb.settings)})
        assert got == 1
        before = vdb.checksum()
        # Criteria: a big job, which waits for no other (a few ids run beside it: claims).
        done = hp.run(vdb.dsn, ["archive", "--where", "lead_id <= 2", "--ignore-window"])
        assert done.rc == 4, done.describe()
        assert "another session" in done.error
        assert archiver_tables(vdb) == []
        assert vdb.checksum() == before
    finally:
        hp.close_quietly(holder)


def test_report_that_fails_mid_job_ends_with_error_and_summary(vdb: VDb) -> None:
    vdb.seed(10)
    vdb.db.write(f"INSERT INTO {ARCHIVE} SELECT * FROM {LIVE} WHERE lead_id = 3")
    vdb.db.write(f"DELETE FROM {LIVE} WHERE lead_id = 3")
    done = hp.run(
        vdb.dsn, ["archive", "1", "2", "3", "--report", "/dev/full", "--ignore-window", "--json"]
    )
    assert done.rc == 1, done.describe()
    assert done.error.startswith("Error: cannot write the report /dev/full: No space left")
    assert "Traceback" not in done.stderr
    assert done.summary["counts"] == {"archived": 2, "already_archived": 1}
    assert vdb.ids(LIVE) == [4, 5, 6, 7, 8, 9, 10]


YESTERDAY = "lead_id,outcome\n7,skipped_live\n9,conflict\n"


def test_run_refused_by_the_lock_leaves_the_last_report_as_it_was(vdb: VDb, tmp_path: Path) -> None:
    """Issue 21, finding 13: `--report FILE` was emptied before the lock was asked for."""
    vdb.seed(10)
    report = tmp_path / "not-moved.csv"
    report.write_text(YESTERDAY)
    holder = vdb.connect()
    try:
        assert holder.scalar("SELECT GET_LOCK(:n, 0)", {"n": lock_name(vdb.settings)}) == 1
        args = ["archive", "--where", "lead_id <= 2", "--ignore-window", "--report", str(report)]
        done = hp.run(vdb.dsn, args)
        assert done.rc == 4, done.describe()
    finally:
        hp.close_quietly(holder)
    assert report.read_text() == YESTERDAY
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-moved.csv"]


def test_report_is_replaced_when_the_job_ends_through_a_link_and_with_its_mode(
    vdb: VDb, tmp_path: Path
) -> None:
    """The lines go to a temporary file beside the report, renamed over it at the end: the
    link stays a link, the file keeps its mode, nothing is left beside it."""
    vdb.seed(10)
    vdb.db.write(f"INSERT INTO {ARCHIVE} SELECT * FROM {LIVE} WHERE lead_id = 3")
    vdb.db.write(f"DELETE FROM {LIVE} WHERE lead_id = 3")
    real = tmp_path / "real.csv"
    real.write_text(YESTERDAY)
    real.chmod(0o640)
    link = tmp_path / "link.csv"
    link.symlink_to(real)

    done = hp.run(vdb.dsn, ["archive", "1", "3", "--ignore-window", "--report", str(link)])

    assert done.rc == 0, done.describe()
    assert link.is_symlink()
    assert real.read_text() == "lead_id,outcome\n3,already_archived\n"
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.csv", "real.csv"]
