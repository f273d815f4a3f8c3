"""How many statements a chunk runs, by name, per engine and direction: the strategy chosen for
the tables decides them (strategies.py), and the hook sees each one by its name after it ran.
A change here changes what a chunk costs the dialer: it must be deliberate."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from archiver.commands import outcome_error
from archiver.db import Db
from archiver.errors import Failed
from archiver.jobtypes import ARCHIVE, DEARCHIVE, JobSpec
from archiver.runner import run_job
from archiver.selection import Criteria, Selection
from archiver.strategies import CHUNK_POINTS
from tests.support import oracle
from tests.support.beside import Beside
from tests.support.db import ARCHIVE as ARCHIVE_T
from tests.support.db import LIVE, VDb


def chunks_by_name(vdb: VDb, direction: str) -> tuple[list[str], list[Counter[str]]]:
    """Run `lead_id <= 30` in chunks of 10 (deletes in batches of 4) and return the statements
    run before the first chunk, and each chunk's statements counted by name."""
    names: list[str] = []

    def hook(point: str, _db: Db, _ids: Sequence[int]) -> None:
        if point not in CHUNK_POINTS:
            names.append(point)

    settings = replace(vdb.settings, chunk_size=10, delete_batch=4)
    crit = Criteria(where="lead_id <= 30").resolve()
    spec = JobSpec(direction=direction, selection=Selection(criteria=crit))
    db = vdb.connect()
    try:
        summary = run_job(db, settings, spec, hook=hook)
    finally:
        db.conn.close()
    assert summary.state == "done" and summary.chunks == 3 and summary.leads == 30
    first = names.index("scan")
    chunks: list[Counter[str]] = [Counter()]
    for name in names[first:]:
        chunks[-1][name] += 1
        if name == "checkpoint":
            chunks.append(Counter())
    assert chunks[-1] == Counter()  # nothing after the last checkpoint
    return names[:first], chunks[:-1]


def test_statements_per_chunk_archive_then_dearchive(vdb: VDb) -> None:
    vdb.seed(31)  # lead 31, the newest, is outside the selection
    cols = ", ".join(f"`{c}`" for c in vdb.columns())
    vdb.db.write(
        f"INSERT INTO `{ARCHIVE_T}` ({cols}) SELECT {cols} FROM `{LIVE}` WHERE lead_id <= 5"
    )
    vdb.db.write(f"UPDATE `{ARCHIVE_T}` SET comments = 'old' WHERE lead_id BETWEEN 3 AND 5")

    before, chunks = chunks_by_name(vdb, ARCHIVE)
    if vdb.engine == "MyISAM":
        # Autocommit: the tables' versions once; each chunk reads the live table once (the
        # scan, with the rows' bytes: the copies and their fingerprints are made from them,
        # for the leads to insert and for the copies found in the archive alike), marks its
        # leads pending with the fingerprints, inserts the rows as literals, reads which of
        # its leads the live table still holds (an index read: a lead deleted by someone else
        # since the scan is `gone`, its copy withdrawn) and deletes in batches of 4.
        assert before == ["tables_at"]
        each = {"scan": 1, "pending": 1, "copy": 1, "present": 1}
        assert chunks == [
            Counter({**each, "update": 1, "delete": 3, "checkpoint": 1}),
            Counter({**each, "delete": 3, "checkpoint": 1}),
            Counter({**each, "delete": 3, "checkpoint": 1}),
        ]
        assert [sum(c.values()) for c in chunks] == [9, 8, 8]
    else:
        # One transaction per chunk: the locking scan, one statement per step, the checkpoint.
        assert before == []
        assert chunks == [
            Counter({"scan": 1, "copy": 1, "update": 1, "delete": 1, "checkpoint": 1}),
            Counter({"scan": 1, "copy": 1, "delete": 1, "checkpoint": 1}),
            Counter({"scan": 1, "copy": 1, "delete": 1, "checkpoint": 1}),
        ]
        assert [sum(c.values()) for c in chunks] == [5, 4, 4]
    assert vdb.ids(LIVE) == [31] and vdb.count(ARCHIVE_T) == 30

    before, chunks = chunks_by_name(vdb, DEARCHIVE)
    if vdb.engine == "MyISAM":
        # Dearchive copies with INSERT … SELECT (the archive is not the dialer's table); the
        # fingerprints come from the scan's bytes too; one delete per chunk.
        assert before == ["tables_at"]
        each = {"scan": 1, "pending": 1, "copy": 1, "delete": 1, "checkpoint": 1}
        assert chunks == [Counter(each)] * 3
        assert [sum(c.values()) for c in chunks] == [5, 5, 5]
    else:
        assert before == []
        assert chunks == [Counter({"scan": 1, "copy": 1, "delete": 1, "checkpoint": 1})] * 3
        assert [sum(c.values()) for c in chunks] == [4, 4, 4]
    assert vdb.count(LIVE) == 31 and vdb.count(ARCHIVE_T) == 0


def test_a_lead_changed_after_its_copy_adds_the_proven_removal_of_the_copy(vdb: VDb) -> None:
    """A call changes a lead after the chunk copied it (here on the chunk's own connection,
    which InnoDB's row lock lets through): the delete spares it, so the chunk checks the
    tables' columns and reads the leads' states. MyISAM then removes the stale copy by a
    statement of its own that proves it is the job's copy, and reads the states again."""
    vdb.seed(11)
    names: list[str] = []

    def hook(point: str, db: Db, ids: Sequence[int]) -> None:
        names.append(point)
        if point == "after_update":
            db.write(f"UPDATE `{LIVE}` SET status = 'SALE' WHERE lead_id = 4")

    crit = Criteria(where="lead_id <= 10").resolve()
    db = vdb.connect()
    try:
        summary = run_job(db, vdb.settings, JobSpec(ARCHIVE, Selection(criteria=crit)), hook=hook)
    finally:
        db.conn.close()
    assert dict(summary.counts) == {"archived": 9, "kept_changed": 1}
    assert vdb.ids(LIVE) == [4, 11]
    # InnoDB keeps the copy made before the change (the chunk's own connection made it, under
    # the chunk's row lock); MyISAM proves the copy is its own and removes it.
    assert (4 in vdb.ids(ARCHIVE_T)) == (vdb.engine == "InnoDB")
    if vdb.engine == "MyISAM":
        assert names == [
            "tables_at",
            "scan",
            "pending",
            "present",  # every lead still live and as the scan read it: all copied
            "copy",
            "after_insert",
            "after_update",
            "delete",
            "after_delete",
            "fingerprint",  # the delete spared a lead: the tables are unchanged, go on
            "classify",
            "in_dst",
            "selected",  # does the selection still hold it? (yes: kept_changed)
            "delete_stale_copy",
            "classify",
            "in_dst",
            "before_checkpoint",
            "checkpoint",
        ]
    else:
        assert names == [
            "scan",
            "copy",
            "after_insert",
            "after_update",
            "delete",
            "after_delete",
            "fingerprint",
            "classify",
            "in_dst",
            "before_checkpoint",
            "checkpoint",
        ]


def test_a_column_added_mid_chunk_stops_the_job_after_the_fingerprint_check(vdb: VDb) -> None:
    """An ALTER lands after the copy: the delete's schema guard spares every lead, the chunk
    reads the tables' fingerprints (`fingerprint`), names the change and fails the job,
    resumable. MyISAM marks its pending leads as copied before an ALTER (`pending_altered`);
    InnoDB's ALTER waits for the chunk's commit, so its next chunk meets it."""
    vdb.seed(21)
    columns = vdb.columns()
    original = vdb.row_bytes(LIVE)
    alter = Beside(vdb, f"ALTER TABLE `{LIVE}` ADD COLUMN va_extra INT NULL", {}, "after_update")
    names: list[str] = []

    def hook(point: str, db: Db, ids: Sequence[int]) -> None:
        names.append(point)
        if point == "after_update" and alter.thread is None:
            alter.hook(point, db, ids)
            if vdb.engine == "InnoDB":  # the ALTER is queued behind the chunk before it commits
                waiting = (
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE STATE"
                    " = 'Waiting for table metadata lock' AND INFO LIKE '%ALTER TABLE%va_extra%'"
                )
                deadline = time.monotonic() + 10
                while not db.scalar(waiting) and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert db.scalar(waiting) == 1, "the ALTER never queued behind the chunk"

    settings = replace(vdb.settings, chunk_size=10)
    crit = Criteria(where="lead_id <= 20").resolve()
    db = vdb.connect()
    try:
        summary = run_job(db, settings, JobSpec(ARCHIVE, Selection(criteria=crit)), hook=hook)
    finally:
        db.conn.close()
    alter.join()
    assert summary.state == "failed"
    error = outcome_error(summary)
    assert isinstance(error, Failed)
    message = str(error)
    assert message.startswith(f"a table changed during the run ({LIVE}: column va_extra added)")
    assert "job 1 is resumable" in message
    tail = ["delete", "after_delete", "fingerprint"]
    if vdb.engine == "MyISAM":
        assert names[-4:] == [*tail, "pending_altered"]
        assert names.count("checkpoint") == 0
        altered = vdb.db.scalar("SELECT COUNT(*) FROM archiver_pending WHERE tables_at = 'altered'")
        assert altered == 10
    else:
        assert names[-3:] == tail
        assert names.count("checkpoint") == 1  # chunk 1 committed; chunk 2 met the ALTER
    where = oracle.placement(vdb.db, columns)  # every lead intact, live or archived
    assert where.live | where.archive == set(original)
    assert all(where.rows[i] == original[i] for i in original)
