"""Refusals write nothing, DDL included; a report that cannot be written after the job has
written data is exit 1 with the summary, never a traceback."""

from __future__ import annotations

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
        done = hp.run(vdb.dsn, ["archive", "1", "2", "--ignore-window"])
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
