"""Stops and counts: a cancelled job runs no further chunk and records every chunk that ran;
the admin-log row counts only the copies written; each database has a job lock of its own; a
stop request wakes every wait between chunks and no chunk starts after it. Every count a user
sees (the summary, archiver_jobs, archiver_chunks, `jobs show`, vicidial_admin_log) equals what
a query of the two tables shows. Every test runs on MyISAM and on InnoDB."""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from archiver import synthetic
from archiver.checkpoint import lock_name
from tests.support import proc as hp
from tests.support.db import ARCHIVE, LIVE, VDb, drop_test_db, open_db, server_settings

LIST_999 = ["archive", "--list-id", "999", "--chunk-size", "50", "--ignore-window", "--json"]


def archived_999(vdb: VDb) -> int:
    return int(vdb.db.scalar(f"SELECT COUNT(*) FROM {ARCHIVE} WHERE list_id = 999"))


def recorded(vdb: VDb, job_id: int) -> dict[str, Any]:
    """What the checkpoint says job `job_id` did, each way a user can read it."""
    counts_json, chunks = vdb.db.rows(
        "SELECT counts_json, chunks FROM archiver_jobs WHERE job_id = :j", {"j": job_id}
    )[0]
    per_chunk = [
        json.loads(r[0]).get("archived", 0)
        for r in vdb.db.rows(
            "SELECT counts_json FROM archiver_chunks WHERE job_id = :j", {"j": job_id}
        )
    ]
    show = vdb.cli(["jobs", "show", str(job_id), "--json"])
    assert show.exit_code == 0, show.output
    return {
        "counts_json": json.loads(counts_json).get("archived", 0),
        "chunks": int(chunks),
        "archiver_chunks": sum(per_chunk),
        "archiver_chunks_rows": len(per_chunk),
        "jobs_show": json.loads(show.stdout)["counts"].get("archived", 0),
    }


def test_cancel_while_the_job_sleeps_starts_no_chunk(vdb: VDb) -> None:
    """`jobs cancel` between two chunks: the job looks at its state before the next chunk and
    stops there; what it moved and what it recorded are the same leads."""
    vdb.seed(1000)
    with hp.Proc(hp.argv(vdb.dsn, [*LIST_999, "--sleep", "2"])) as proc:
        proc.wait_chunk(1)
        cancel = vdb.cli(["jobs", "cancel", "1"])
        assert cancel.exit_code == 0, cancel.output
        done = proc.finish(60)
    assert done.rc == 3, done.describe()
    assert done.summary["state"] == "cancelled"
    assert [c["chunk"] for c in done.chunks()] == [1], "a chunk ran after the cancel"
    moved = archived_999(vdb)
    assert moved == 50
    assert done.summary["counts"] == done.summary["job_counts"] == {"archived": moved}
    assert recorded(vdb, 1) == {
        "counts_json": moved,
        "chunks": 1,
        "archiver_chunks": moved,
        "archiver_chunks_rows": 1,
        "jobs_show": moved,
    }


def _block_chunk(vdb: VDb) -> Any:
    """Another session that makes the job's first chunk wait part-way: a row lock on its first
    lead (InnoDB: the chunk's locking read waits) or a READ lock on the archive (MyISAM: its
    copy waits)."""
    first = int(vdb.db.scalar(f"SELECT MIN(lead_id) FROM {LIVE} WHERE list_id = 999"))
    blocker = vdb.connect()
    if vdb.engine == "InnoDB":
        blocker.run("START TRANSACTION")
        blocker.rows(f"SELECT lead_id FROM {LIVE} WHERE lead_id = :l FOR UPDATE", {"l": first})
    else:
        blocker.run(f"LOCK TABLES {ARCHIVE} READ")
    return blocker


def test_cancel_during_a_chunk_records_the_chunk_that_ran(vdb: VDb) -> None:
    """`jobs cancel` while a chunk is running: the chunk finishes, its leads move, and its
    checkpoint is recorded with the cancelled job (not rolled back); no other chunk runs."""
    vdb.seed(1000)
    blocker = _block_chunk(vdb)
    try:
        with hp.Proc(hp.argv(vdb.dsn, LIST_999)) as proc:
            hp.wait_blocked(vdb.db, vdb.name)
            cancel = vdb.cli(["jobs", "cancel", "1"])
            assert cancel.exit_code == 0, cancel.output
            blocker.run("ROLLBACK" if vdb.engine == "InnoDB" else "UNLOCK TABLES")
            done = proc.finish(60)
    finally:
        blocker.conn.close()
    assert done.rc == 3, done.describe()
    assert done.summary["state"] == "cancelled"
    assert "cancelled" in done.stderr
    moved = archived_999(vdb)
    assert moved == 50, "the chunk in hand did not finish, or another one ran"
    assert done.summary["counts"] == done.summary["job_counts"] == {"archived": moved}
    assert (done.summary["chunks"], done.summary["leads"]) == (1, moved)
    assert recorded(vdb, 1) == {
        "counts_json": moved,
        "chunks": 1,
        "archiver_chunks": moved,
        "archiver_chunks_rows": 1,
        "jobs_show": moved,
    }
    assert vdb.db.scalar("SELECT state FROM archiver_jobs WHERE job_id = 1") == "cancelled"


def test_admin_log_counts_only_the_copies_written(vdb: VDb) -> None:
    """--no-update leaves a differing archive row as it was (`kept_changed`): the admin-log
    row VICIdial shows counts the one lead archived, not the two whose copies were not
    written."""
    vdb.seed(20)
    vdb.db.write(f"INSERT INTO {ARCHIVE} SELECT * FROM {LIVE} WHERE lead_id IN (3, 4)")
    vdb.db.write(
        f"UPDATE {LIVE} SET comments = 'newer', modify_date = modify_date WHERE lead_id IN (3, 4)"
    )
    before = vdb.row_bytes(ARCHIVE)
    r = vdb.cli(
        ["archive", "2", "3", "4", "--no-update", "--ignore-window", "--json", "--admin-log"]
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["counts"] == {"archived": 1, "kept_changed": 2}
    after = vdb.row_bytes(ARCHIVE)
    written = sorted(lead for lead, row in after.items() if before.get(lead) != row)
    assert written == [2]
    assert vdb.ids(LIVE).count(2) == 0
    notes = vdb.db.scalar("SELECT event_notes FROM vicidial_admin_log")
    assert notes == "1 vicidial_list leads archived|1 vicidial_list leads deleted|"


@contextmanager
def named_db(engine: str, name: str, seed: int) -> Iterator[VDb]:
    """A throwaway VICIdial database of a chosen name (make_test_db names its own)."""
    server = server_settings()
    admin = open_db(server)
    synthetic.create_database(admin, name)
    admin.conn.close()
    settings = replace(server, db=replace(server.db, database=name))
    tdb = VDb(name, engine, settings, open_db(settings))
    try:
        synthetic.create_tables(tdb.db, engine)
        tdb.seed(seed)
        yield tdb
    finally:
        drop_test_db(tdb)


def test_databases_with_long_shared_prefix_have_a_lock_each(engine: str) -> None:
    """Two databases whose 64-character names differ only at the end: a job in one does not
    lock the other out, and the lock still names the job that holds it."""
    stem = f"va_test_{uuid.uuid4().hex[:12]}_".ljust(60, "x")
    a, b = stem + "aaaa", stem + "bbbb"
    with ExitStack() as stack:
        da = stack.enter_context(named_db(engine, a, 300))
        db_ = stack.enter_context(named_db(engine, b, 300))
        assert lock_name(da.settings) != lock_name(db_.settings)
        slow = ["archive", "--list-id", "999", "--chunk-size", "10", "--sleep", "5"]
        with hp.Proc(hp.argv(da.dsn, [*slow, "--ignore-window", "--json"])) as proc:
            proc.wait_chunk(1)
            other = db_.cli(["archive", "--list-id", "999", "--ignore-window", "--json"])
            assert other.exit_code == 0, other.output
            same = da.cli(["archive", "--list-id", "999", "--ignore-window", "--json"])
            assert same.exit_code == 4, same.output
            assert f"another job holds the lock {lock_name(da.settings)!r}: job 1 " in same.output
            proc.signal(signal.SIGTERM)
            assert proc.finish(30).rc == 3


# --- a stop request wakes every wait ----------------------------------------------------------

SLEEPY = ["archive", "3", "4", "5", "--chunk-size", "1", "--ignore-window", "--json"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_the_sleep_stops_within_a_second(vdb: VDb, sig: signal.Signals) -> None:
    """A stop request while the job sleeps between chunks (--sleep 30) ends the sleep at once
    and no chunk starts after it (the sleep used to run out, then one more chunk ran)."""
    vdb.seed(10)
    with hp.Proc(hp.argv(vdb.dsn, [*SLEEPY, "--sleep", "30"])) as proc:
        proc.wait_chunk(1)
        proc.wait_for('"event": "throttle_sleep"')
        time.sleep(0.5)
        asked = time.monotonic()
        proc.signal(sig)
        done = proc.finish(60)
        took = time.monotonic() - asked
    assert done.rc == 3, done.describe()
    assert took < 1.5, f"stopped {took:.1f}s after {sig.name}"
    assert [c["chunk"] for c in done.chunks()] == [1]
    assert done.summary["state"] == "stopped"
    assert done.summary["stop_reason"] == f"stopped by {sig.name}"
    assert vdb.ids(ARCHIVE) == [3]
    assert done.summary["counts"] == done.summary["job_counts"] == {"archived": 1}


def test_max_runtime_ends_the_sleep(vdb: VDb) -> None:
    """--max-runtime reached during a sleep between chunks: the job stops then, not when the
    sleep would have ended, and runs no further chunk."""
    vdb.seed(10)
    started = time.monotonic()
    r = vdb.cli([*SLEEPY, "--sleep", "30", "--max-runtime", "2"])
    took = time.monotonic() - started
    assert r.exit_code == 3, r.output
    assert took < 6, f"the run took {took:.1f}s with --max-runtime 2 and --sleep 30"
    summary = json.loads(r.stdout)
    assert summary["stop_reason"] == "--max-runtime of 2s reached"
    assert (summary["chunks"], summary["counts"]) == (1, {"archived": 1})
    assert vdb.ids(ARCHIVE) == [3]


def test_the_window_closing_ends_the_sleep(vdb: VDb, tmp_path: Path) -> None:
    """The off-hours window closes while the job sleeps between chunks: it stops then."""
    vdb.seed(10)
    now = datetime.now(ZoneInfo("UTC"))
    conf = tmp_path / "closing.toml"
    conf.write_text(
        f'[window]\nstart = "{(now - timedelta(minutes=5)).strftime("%H:%M:%S")}"\n'
        f'end = "{(now + timedelta(seconds=3)).strftime("%H:%M:%S")}"\ntimezone = "UTC"\n'
    )
    args = ["--config", str(conf), "archive", "3", "4", "5", "--chunk-size", "1", "--json"]
    started = time.monotonic()
    r = vdb.cli([*args, "--sleep", "30"])
    took = time.monotonic() - started
    assert r.exit_code == 3, r.output
    assert took < 7, f"the run took {took:.1f}s with the window closing after 3s"
    summary = json.loads(r.stdout)
    assert summary["stop_reason"].startswith("the off-hours window ("), summary
    assert (summary["chunks"], summary["counts"]) == (1, {"archived": 1})


def test_cancel_ends_the_sleep(vdb: VDb) -> None:
    """`jobs cancel` while the job sleeps (--sleep 30): the job reads its state while it
    waits and stops within a couple of seconds, its lock released."""
    vdb.seed(10)
    with hp.Proc(hp.argv(vdb.dsn, [*SLEEPY, "--sleep", "30"])) as proc:
        proc.wait_for('"event": "throttle_sleep"')
        asked = time.monotonic()
        cancel = vdb.cli(["jobs", "cancel", "1"])
        assert cancel.exit_code == 0, cancel.output
        done = proc.finish(60)
        took = time.monotonic() - asked
    assert done.rc == 3, done.describe()
    assert took < 3, f"stopped {took:.1f}s after the cancel"
    assert done.summary["state"] == "cancelled"
    assert [c["chunk"] for c in done.chunks()] == [1]
    assert vdb.ids(ARCHIVE) == [3]
    assert recorded(vdb, 1)["counts_json"] == 1
