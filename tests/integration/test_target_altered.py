"""A change to the target table while a job runs, landing between a chunk's scan and its copy
(MyISAM) or between two chunks (InnoDB: the ALTER waits for the chunk's transaction). The delete
must not remove a source row whose copy no longer means what the source row means, and the job
must not end done with such leads."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest

from archiver.db import Db
from archiver.jobtypes import ARCHIVE as ARCHIVE_DIR
from archiver.jobtypes import DEARCHIVE as DEARCHIVE_DIR
from archiver.jobtypes import JobSpec
from archiver.runner import run_job
from archiver.selection import Criteria, Selection
from tests.support import proc as hp
from tests.support.db import ARCHIVE, LIVE, VDb

WHERE = "lead_id <= 20"


class AlterBeside:
    """At the first chunk's `pending` (MyISAM: after the scan, before the copy) or `scan`
    (InnoDB: queued behind the chunk's transaction; the rest of the job meets it), `sql` runs on its
    own connection after `session` (an administrator's session settings)."""

    def __init__(self, vdb: VDb, sql: str, session: str = "") -> None:
        self.vdb, self.sql, self.session = vdb, sql, session
        self.point = "pending" if vdb.engine == "MyISAM" else "scan"
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def _alter(self) -> None:
        db = self.vdb.connect()
        try:
            if self.session:
                db.write(self.session)
            db.write(self.sql)
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            hp.close_quietly(db)

    def hook(self, at: str, db: Db, _ids: Sequence[int]) -> None:
        if at != self.point or self.thread is not None:
            return
        self.thread = threading.Thread(target=self._alter)
        self.thread.start()
        if self.vdb.engine == "MyISAM":
            self.thread.join(10)
            return
        waiting = (
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE STATE"
            " = 'Waiting for table metadata lock' AND INFO LIKE '%ALTER TABLE%'"
        )
        deadline = time.monotonic() + 10
        while not db.scalar(waiting) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert db.scalar(waiting) == 1, "the ALTER never queued behind the chunk"

    def join(self) -> None:
        assert self.thread is not None, f"the job never reached {self.point}"
        self.thread.join(20)
        assert self.error is None, self.error


def run(vdb: VDb, direction: str, hook: Any = None, **spec: Any) -> Any:
    settings = replace(vdb.settings, chunk_size=10)
    crit = Criteria(where=WHERE).resolve()
    job = JobSpec(direction, Selection(criteria=crit), **spec)
    db = vdb.connect()
    try:
        return run_job(db, settings, job, hook=hook)
    finally:
        hp.close_quietly(db)


def read(vdb: VDb, table: str, expr: str, session: str = "") -> dict[int, str | None]:
    db = vdb.connect()
    try:
        if session:
            db.write(session)
        rows = db.rows(f"SELECT lead_id, {expr} FROM `{table}` WHERE {WHERE}")
    finally:
        hp.close_quietly(db)
    return {int(r[0]): None if r[1] is None else str(r[1]) for r in rows}


def lost(
    before: dict[int, str | None], src: dict[int, str | None], dst: dict[int, str | None]
) -> dict[int, str | None]:
    """Leads that no longer hold their value in either table (gone from the source, and their
    copy in the target reads otherwise)."""
    return {
        lead: dst.get(lead, "<absent>")
        for lead, value in before.items()
        if not (lead in src and src[lead] == value) and not (lead in dst and dst[lead] == value)
    }


def test_archive_column_converted_to_latin1_during_the_run_keeps_every_name(vdb: VDb) -> None:
    """An administrator converts the archive's first_name to latin1 (every name already
    archived converted by the ALTER) while a job archives leads named José. A lead gone from
    the live table must read José in the archive."""
    vdb.seed(21)
    vdb.db.write(f"UPDATE `{LIVE}` SET first_name = 'José' WHERE {WHERE}")
    name = "CONVERT(first_name USING utf8mb4)"
    before = read(vdb, LIVE, name)
    alter = AlterBeside(
        vdb,
        f"ALTER TABLE `{ARCHIVE}` MODIFY first_name VARCHAR(30) CHARACTER SET latin1"
        " COLLATE latin1_swedish_ci NULL",
    )
    summary = run(vdb, ARCHIVE_DIR, alter.hook)
    alter.join()
    gone = lost(before, read(vdb, LIVE, name), read(vdb, ARCHIVE, name))
    assert not gone, f"job {summary.state}: leads deleted from {LIVE}, their name now {gone}"


# VICIdial's sessions, and its administrator's, run in the server's local time zone.
LOCAL = "SET SESSION time_zone = '-05:00'"


@pytest.mark.parametrize("direction", [ARCHIVE_DIR, DEARCHIVE_DIR])
def test_target_modify_date_made_datetime_during_the_run_keeps_every_time(
    vdb: VDb, direction: str
) -> None:
    """An administrator changes the target's modify_date from TIMESTAMP to DATETIME (in the
    server's local time, as VICIdial reads it; every row already there converted by the ALTER)
    while a job moves leads into it. Read as VICIdial reads them, a lead gone from the source
    must show the same modify_date in the target."""
    vdb.seed(21)
    if direction == DEARCHIVE_DIR:
        first = run(vdb, ARCHIVE_DIR)
        assert first.state == "done" and first.leads == 20
    src, dst = (LIVE, ARCHIVE) if direction == ARCHIVE_DIR else (ARCHIVE, LIVE)
    expr = "CAST(modify_date AS CHAR)"
    before = read(vdb, src, expr, LOCAL)
    assert len(before) == 20
    alter = AlterBeside(
        vdb,
        f"ALTER TABLE `{dst}` MODIFY modify_date DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP",
        LOCAL,
    )
    summary = run(vdb, direction, alter.hook)
    alter.join()
    gone = lost(before, read(vdb, src, expr, LOCAL), read(vdb, dst, expr, LOCAL))
    assert not gone, f"job {summary.state}: leads deleted from {src}, modify_date now {gone}"


def test_live_status_narrowed_during_a_dearchive_with_overrides_gives_the_asked_status(
    vdb: VDb,
) -> None:
    """Dearchive with --set-status NEW: the restored row's status is not compared with the
    archive's (it is set, not copied). The live status column is narrowed to two characters
    while the job runs: a lead whose archive row is deleted must hold the status asked for."""
    vdb.seed(21)
    first = run(vdb, ARCHIVE_DIR)
    assert first.state == "done" and first.leads == 20
    alter = AlterBeside(vdb, f"ALTER TABLE `{LIVE}` MODIFY status VARCHAR(2) NULL")
    summary = run(vdb, DEARCHIVE_DIR, alter.hook, overrides={"status": "NEW"})
    alter.join()
    restored = read(vdb, LIVE, "status")
    archived = read(vdb, ARCHIVE, "status")
    wrong = {
        lead: status
        for lead, status in restored.items()
        if lead not in archived and status != "NEW"
    }
    assert not wrong, f"job {summary.state}: restored with status {wrong}, not 'NEW'"
