"""A dry run through the core API: `JobSpec.dry_run` alone decides it, whatever connection the
job is given. On MyISAM and on InnoDB, against the real server."""

from __future__ import annotations

import pytest

from archiver.jobtypes import ARCHIVE, JobSpec
from archiver.runner import run_job
from archiver.selection import Criteria, Selection
from tests.support.db import VDb


def _tables(vdb: VDb) -> list[str]:
    rows = vdb.db.rows(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE "
        "TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE 'archiver\\_%'"
    )
    return sorted(str(r[0]) for r in rows)


def _spec(dry_run: bool) -> JobSpec:
    crit = Criteria(where="lead_id <= 10").resolve()
    return JobSpec(direction=ARCHIVE, selection=Selection(criteria=crit), dry_run=dry_run)


def test_dry_run_spec_on_a_plain_connection_writes_nothing(vdb: VDb) -> None:
    """A library caller passes JobSpec(dry_run=True) and a connection opened the usual way:
    the job is a dry run all the same (it used to archive the leads)."""
    vdb.seed(11)
    checksum = vdb.checksum()
    db = vdb.connect()  # Db(conn): its own dry_run flag left at its default
    try:
        summary = run_job(db, vdb.settings, _spec(dry_run=True))
    finally:
        db.conn.close()
    assert vdb.checksum() == checksum
    assert vdb.count("vicidial_list") == 11 and vdb.count("vicidial_list_archive") == 0
    assert _tables(vdb) == []  # no checkpoint tables, no job
    assert summary.dry_run and summary.job_id is None
    assert dict(summary.counts) == {"archived": 10}
    assert summary.sql and summary.sql[-1].startswith("DELETE s FROM `vicidial_list`")


def test_a_dry_run_connection_under_a_real_job_is_refused(vdb: VDb) -> None:
    """The other half of one source of truth: a connection in dry-run mode given a job that is
    not a dry run is a caller's mistake, refused before anything is written."""
    vdb.seed(11)
    checksum = vdb.checksum()
    db = vdb.connect()
    db.dry_run = True
    try:
        with pytest.raises(ValueError, match=r"JobSpec\.dry_run"):
            run_job(db, vdb.settings, _spec(dry_run=False))
    finally:
        db.conn.close()
    assert vdb.checksum() == checksum and _tables(vdb) == []
