"""Concurrency: one job per database (a second run exits 4 and names the holder), and a dialer
that keeps updating and inserting leads while a job runs: no update is ever lost, and a lead
changed after its copy is kept live (kept_changed) and archived on the next run. Every test
runs on MyISAM and on InnoDB."""

from __future__ import annotations

import random
import re
import signal
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from archiver.checkpoint import lock_name
from archiver.db import Db, connect, make_engine
from archiver.jobtypes import JobSpec
from archiver.runner import run_job
from archiver.selection import Criteria, Selection
from tests.support import oracle
from tests.support import proc as hp
from tests.support.cli import summary_of
from tests.support.db import ARCHIVE, LIVE, VDb


def jobs_count(vdb: VDb) -> int:
    return int(vdb.db.scalar("SELECT COUNT(*) FROM archiver_jobs"))


# --- one job at a time ---------------------------------------------------------------------


def test_second_run_exits_4_and_names_the_holder(vdb: VDb) -> None:
    vdb.seed(3000)
    original = vdb.row_bytes(LIVE)
    args = ["archive", "--ignore-window", "--where", "lead_id > 0", "--chunk-size", "100", "--json"]
    lock = lock_name(vdb.settings)
    with hp.Proc(hp.argv(vdb.dsn, [*args, "--sleep", "0.3"])) as holder:
        holder.wait_chunk(1)
        conn_id = vdb.db.scalar("SELECT IS_USED_LOCK(:n)", {"n": lock})
        assert conn_id is not None
        expected = (
            f"Error: another job holds the lock {lock!r}: job 1 on host "
            f"{socket.gethostname()} pid {holder.pid} (connection {conn_id}); wait for "
            "it to finish or stop it, then run again"
        )
        for second in (
            ["archive", "--ignore-window", "--list-id", "101", "--json"],
            args,
            ["jobs", "resume", "1"],
        ):
            result = vdb.cli(second)
            assert result.exit_code == 4, result.stderr
            assert [ln for ln in result.stderr.splitlines() if ln.startswith("Error:")] == [
                expected
            ]
            assert result.stdout == ""
        assert jobs_count(vdb) == 1  # the refused runs started no job and claimed none
        runs = vdb.db.scalar("SELECT runs FROM archiver_jobs WHERE job_id = 1")
        assert runs == 1
        holder.signal(signal.SIGTERM)
        stopped = holder.finish(60)
    assert stopped.rc == 3, stopped.describe()
    resumed = vdb.cli([*args, "--sleep", "0"])  # the job keeps its --sleep 0.3 unless given
    assert resumed.exit_code == 0, resumed.stderr
    assert summary_of(resumed)["job_id"] == 1
    assert summary_of(resumed)["job_counts"] == {"archived": 2999, "skipped_newest": 1}
    oracle.assert_each_once(vdb.db, vdb.columns(), original)


def test_lock_held_by_another_session_exits_4(vdb: VDb) -> None:
    vdb.seed(500)
    # A job left `running` by a killed process must not be named as the lock's holder.
    first = vdb.cli(["archive", "--ignore-window", "--where", "lead_id <= 10", "--json"])
    assert first.exit_code == 0, first.stderr
    vdb.db.write("UPDATE archiver_jobs SET state = 'running', connection_id = 1")
    other = vdb.connect()
    lock = lock_name(vdb.settings)
    assert other.scalar("SELECT GET_LOCK(:n, 0)", {"n": lock}) == 1
    other_id = other.scalar("SELECT CONNECTION_ID()")
    before = vdb.checksum()
    result = vdb.cli(["archive", "--ignore-window", "--list-id", "101", "--json"])
    assert result.exit_code == 4, result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"Error: another job holds the lock {lock!r}: another session (connection {other_id});"
        " wait for it to finish or stop it, then run again"
    )
    assert vdb.checksum() == before
    assert jobs_count(vdb) == 1
    assert other.scalar("SELECT RELEASE_LOCK(:n)", {"n": lock}) == 1
    other.conn.close()
    result = vdb.cli(["archive", "--ignore-window", "--list-id", "101", "--json"])
    assert result.exit_code == 0, result.stderr
    assert summary_of(result)["counts"] == {"archived": 97, "skipped_newest": 1}


# --- a dialer at work during the job ---------------------------------------------------------


@dataclass
class Dialer:
    """Updates random leads (status, called_count, a case-only change of comments, and a
    distinct modify_date) and inserts new leads, keeping the row each lead must have now."""

    vdb: VDb
    columns: list[str]
    expected: dict[int, tuple[Any, ...]]
    targets: list[int]
    rng: random.Random
    stop: threading.Event = field(default_factory=threading.Event)
    applied: int = 0
    missed: int = 0
    inserted: list[int] = field(default_factory=list)
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self.pos = {c: i for i, c in enumerate(self.columns)}
        self.clock = 0

    def run(self) -> None:
        db = self.vdb.connect()
        try:
            while not self.stop.is_set():
                if self.rng.random() < 0.1:
                    self.insert(db)
                else:
                    self.update(db, self.rng.choice(self.targets))
                time.sleep(0.002)
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            db.conn.close()

    def update(self, db: Db, lead: int) -> None:
        row = list(self.expected[lead])
        comment = row[self.pos["comments"]]
        text = bytes.fromhex(comment).decode() if comment else "call back after 5pm"
        text = text.swapcase() if self.rng.random() < 0.7 else text.upper()
        status = self.rng.choice(["NA", "B", "CALLBK", "SALE", "A", "DROP"])
        called = self.rng.randrange(0, 200)
        self.clock += 1
        modified = (
            f"2030-01-01 {self.clock // 3600 % 24:02d}:{self.clock // 60 % 60:02d}:"
            f"{self.clock % 60:02d}"
        )
        n = db.write(
            f"UPDATE {LIVE} SET status = :s, called_count = :c, comments = :m, modify_date = :d"
            " WHERE lead_id = :l",
            {"s": status, "c": called, "m": text, "d": modified, "l": lead},
        )
        if n == 0:  # archived before this update: nothing changed anywhere
            self.missed += 1
            return
        self.applied += 1
        for col, value in (
            ("status", status),
            ("called_count", str(called)),
            ("comments", text),
            ("modify_date", modified),
        ):
            row[self.pos[col]] = value.encode().hex().upper()
        self.expected[lead] = tuple(row)

    def insert(self, db: Db) -> None:
        result = db.run(
            f"INSERT INTO {LIVE} (entry_date, status, list_id, phone_number, first_name,"
            " comments) VALUES (UTC_TIMESTAMP(), 'NEW', 101, :p, 'Renée', 'new lead')",
            {"p": f"813{self.rng.randrange(10**7):07d}"},
            write=True,
        )
        assert result is not None
        lead = int(result.lastrowid)
        # Read back at once: the running job never reaches leads newer than its start.
        self.expected[lead] = oracle.row_bytes(db, LIVE, self.columns, [lead])[lead]
        self.inserted.append(lead)
        self.targets.append(lead)


def check_no_update_lost(vdb: VDb, dialer: Dialer) -> oracle.Placement:
    where = oracle.placement(vdb.db, dialer.columns)
    assert set(dialer.expected) == where.live | where.archive
    live = oracle.row_bytes(vdb.db, LIVE, dialer.columns)
    arch = oracle.row_bytes(vdb.db, ARCHIVE, dialer.columns)
    lost = [i for i, row in dialer.expected.items() if (live.get(i) or arch.get(i)) != row]
    assert not lost, f"{len(lost)} leads lost an update, e.g. {lost[:10]}"
    return where


def test_dialer_updates_during_a_job_are_never_lost(vdb: VDb) -> None:
    vdb.seed(5000)
    columns = vdb.columns()
    expected = vdb.row_bytes(LIVE)
    selection = ["--list-id", "101", "--list-id", "102", "--list-id", "201"]
    targets = sorted(i for i in expected if i % 5 in (0, 1, 2))  # the selection's leads
    dialer = Dialer(vdb, columns, expected, list(targets), random.Random(f"dialer-{vdb.engine}"))
    args = ["archive", "--ignore-window", *selection, "--chunk-size", "50", "--json"]
    thread = threading.Thread(target=dialer.run)
    # 60 chunks with 50 ms between them: at least 3 s of job for the dialer's updates, however
    # fast the chunks run (at 20 ms a loaded run could end before the dialer's 200th update).
    with hp.Proc(hp.argv(vdb.dsn, [*args, "--sleep", "0.05"])) as proc:
        proc.wait_chunk(1)
        thread.start()
        first = proc.finish(120)
    dialer.stop.set()
    thread.join(30)
    assert dialer.error is None, repr(dialer.error)
    assert first.rc == 0, first.describe()
    assert dialer.applied > 200 and dialer.missed > 0 and len(dialer.inserted) > 20

    where = check_no_update_lost(vdb, dialer)
    job1 = first.summary["job_id"]
    kept = vdb.cli(["jobs", "show", str(job1), "--leads", "kept_changed"]).stdout.split()
    kept_ids = {int(x.split(",")[0]) for x in kept}
    assert first.summary["counts"].get("kept_changed", 0) == len(kept_ids)
    # Copied, then changed: kept live, and the stale copy this job wrote removed (proven).
    assert where.both == set() and kept_ids <= where.live
    if vdb.engine == "InnoDB":  # the chunk's rows are locked: the dialer waits, never slips in
        assert kept_ids == set()
    assert not (set(dialer.inserted) & where.archive)
    assert oracle.total(first.summary["counts"]) == len(targets)

    second = hp.run(vdb.dsn, args)
    assert second.rc == 0, second.describe()
    assert second.summary["job_id"] != job1
    where = check_no_update_lost(vdb, dialer)
    assert not where.both
    newest = max(dialer.expected)
    assert where.archive >= (set(targets) | set(dialer.inserted)) - {newest}
    assert kept_ids <= where.archive  # archived on the next run, with the dialer's change
    assert where.live == (set(expected) - set(targets) - set(dialer.inserted)) | {newest}
    print(
        f"dialer ({vdb.engine}): {dialer.applied} updates applied, {dialer.missed} hit an "
        f"archived lead, {len(dialer.inserted)} leads inserted, {len(kept_ids)} kept_changed "
        f"then archived; 0 updates lost"
    )


def test_lead_changed_after_its_copy_is_kept_then_archived(vdb: VDb) -> None:
    vdb.seed(1000)
    columns = vdb.columns()
    settings = replace(vdb.settings, chunk_size=100)
    changed = [120, 130]  # comments 'call back after 5pm': a change of case only
    dialer = vdb.connect()
    outcome: dict[str, Any] = {}

    def change() -> None:
        outcome["rows"] = dialer.write(
            f"UPDATE {LIVE} SET comments = 'CALL BACK AFTER 5PM' WHERE lead_id IN :ids",
            {"ids": changed},
        )

    def hook(at: str, db: Db, ids: Sequence[int]) -> None:
        if at == "after_insert" and ids and ids[0] == 101 and "thread" not in outcome:
            # On InnoDB the chunk holds these rows locked: the update waits for its commit.
            outcome["thread"] = threading.Thread(target=change)
            outcome["thread"].start()
            if vdb.engine == "MyISAM":
                outcome["thread"].join(10)

    original = vdb.row_bytes(LIVE)
    db = Db(connect(make_engine(settings), settings))
    spec = JobSpec(
        direction="archive",
        selection=Selection(criteria=Criteria(where="lead_id > 0")),
        ignore_window=True,
    )
    first = run_job(db, settings, spec, hook=hook)
    outcome["thread"].join(20)
    where = oracle.placement(vdb.db, columns)
    if vdb.engine == "MyISAM":
        assert outcome["rows"] == 2
        assert dict(first.counts) == {"archived": 997, "kept_changed": 2, "skipped_newest": 1}
        assert where.both == set() and set(changed) <= where.live
        assert (
            vdb.cli(["jobs", "show", "1", "--leads", "kept_changed"]).stdout
            == "120,kept_changed\n130,kept_changed\n"
        )
        for lead in changed:  # live has the change; the stale copy went, proven to be it
            assert where.rows[lead] != original[lead]
            assert oracle.row_bytes(vdb.db, ARCHIVE, columns, [lead]) == {}
        updated = {lead: where.rows[lead] for lead in changed}
    else:
        assert outcome["rows"] == 0  # waited for the chunk, then found the leads archived
        assert dict(first.counts) == {"archived": 999, "skipped_newest": 1}
        assert where.both == set()
        updated = {}
    second = run_job(db, settings, spec)
    db.conn.close()
    dialer.conn.close()
    assert dict(second.counts) == (
        {"archived": 2, "skipped_newest": 1} if updated else {"skipped_newest": 1}
    )
    final = oracle.assert_each_once(vdb.db, columns, {**original, **updated})
    assert final.live == {1000}
    for row in updated.values():
        text = bytes.fromhex(row[columns.index("comments")]).decode()
        assert text == "CALL BACK AFTER 5PM"
        assert re.fullmatch(r"[0-9A-F]+", row[columns.index("modify_date")])


# --- leads deleted by someone else during the job -------------------------------------------


@dataclass
class Deleter:
    """Deletes random leads from either table while jobs run (an admin's "delete lead", an
    erasure request, VICIdial's own lead_dearchive racing), keeping the leads it deleted."""

    vdb: VDb
    pool: list[int]
    rng: random.Random
    tables: tuple[str, ...] = (LIVE, ARCHIVE)
    stop: threading.Event = field(default_factory=threading.Event)
    deleted: dict[int, str] = field(default_factory=dict)  # lead -> the table it left
    error: BaseException | None = None

    def run(self) -> None:
        db = self.vdb.connect()
        try:
            while not self.stop.is_set() and self.pool:
                lead = self.pool.pop(self.rng.randrange(len(self.pool)))
                table = self.rng.choice(self.tables)
                if db.write(f"DELETE FROM {table} WHERE lead_id = :l", {"l": lead}):
                    self.deleted[lead] = table
                time.sleep(0.01)
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            db.conn.close()


@dataclass
class ScanDeleter:
    """A hook for `run_job`: right after the scan of every third chunk, deletes one of its
    leads from `table` on its own connection: the lead the chunk read is gone before its copy
    (MyISAM; on InnoDB the delete waits for the chunk, then finds the lead moved)."""

    vdb: VDb
    table: str
    chunks: int = 0
    deleted: dict[int, str] = field(default_factory=dict)
    threads: list[threading.Thread] = field(default_factory=list)

    def _delete(self, lead: int) -> None:
        db = self.vdb.connect()
        try:
            if db.write(f"DELETE FROM {self.table} WHERE lead_id = :l", {"l": lead}):
                self.deleted[lead] = self.table
        finally:
            hp.close_quietly(db)

    def hook(self, at: str, _db: Db, ids: Sequence[int]) -> None:
        if at != "scan" or len(ids) < 3:
            return
        self.chunks += 1
        if self.chunks % 3:
            return
        thread = threading.Thread(target=self._delete, args=(ids[len(ids) // 2],))
        thread.start()
        self.threads.append(thread)
        if self.vdb.engine == "MyISAM":
            thread.join(10)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(30)


def run_with(vdb: VDb, direction: str, lists: Sequence[int], hook: ScanDeleter) -> Any:
    settings = replace(vdb.settings, chunk_size=40)
    spec = JobSpec(
        direction=direction,
        selection=Selection(criteria=Criteria(list_ids=tuple(lists))),
        ignore_window=True,
    )
    db = Db(connect(make_engine(settings), settings))
    try:
        return run_job(db, settings, spec, hook=hook.hook)
    finally:
        hp.close_quietly(db)
        hook.join()


def check_deletes_kept(vdb: VDb, dialer: Dialer, deleter: Deleter) -> oracle.Placement:
    """Each lead no one deleted in exactly one table with every value the dialer wrote; each
    deleted one gone from the table it was deleted from, and in at most one table (where it
    is, the copy made before the delete: the dialer may have changed the deleted row since)."""
    where = oracle.placement(vdb.db, dialer.columns)
    assert not where.both, f"in both tables: {sorted(where.both)[:10]}"
    kept = set(dialer.expected) - set(deleter.deleted)
    lost = kept - where.live - where.archive
    assert not lost, f"{len(lost)} leads no one deleted are in neither table: {sorted(lost)[:10]}"
    differ = [i for i in kept if where.rows[i] != dialer.expected[i]]
    assert not differ, f"{len(differ)} leads lost a value, e.g. {differ[:10]}"
    for lead, table in deleter.deleted.items():
        assert lead not in (where.live if table == LIVE else where.archive), (lead, table)
    return where


LISTS = (101, 102, 201)


@pytest.mark.slow
def test_leads_deleted_from_either_table_during_killed_runs(vdb: VDb) -> None:
    """The kill/dialer suite with a third actor that deletes leads from either table, on tables
    carrying an allowed trigger (a log), a column both generate alike and an archive-only
    column: archive killed and resumed, then dearchive, while the dialer changes leads and the
    deleter deletes them. End state checked on every column's bytes; a lead counted moved is
    where the count says, and a `gone` one is in neither table."""
    for table in (LIVE, ARCHIVE):
        vdb.db.write(
            f"ALTER TABLE {table} ADD COLUMN phone_area VARCHAR(3)"
            " AS (LEFT(phone_number, 3)) VIRTUAL"
        )
    vdb.db.write("CREATE TABLE va_log (lead_id INT UNSIGNED, at VARCHAR(8))")
    for table, at in ((LIVE, "live"), (ARCHIVE, "archive")):
        vdb.db.write(
            f"CREATE TRIGGER va_log_{at} AFTER INSERT ON {table} FOR EACH ROW"
            f" INSERT INTO va_log VALUES (NEW.lead_id, '{at}')"
        )
    vdb.db.write(f"ALTER TABLE {ARCHIVE} ADD COLUMN back_office VARCHAR(40) NULL DEFAULT 'filed'")
    vdb.seed(3000)
    columns = vdb.columns()
    expected = vdb.row_bytes(LIVE)
    selection = [a for lst in LISTS for a in ("--list-id", str(lst))]
    targets = sorted(i for i in expected if i % 5 in (0, 1, 2))
    rng = random.Random(f"deleter-{vdb.engine}")
    dialer = Dialer(vdb, columns, expected, list(targets), rng)
    deleter = Deleter(vdb, list(targets), random.Random(f"deleter-{vdb.engine}-2"))
    args = ["archive", "--ignore-window", *selection, "--chunk-size", "40", "--json"]
    threads = [threading.Thread(target=dialer.run), threading.Thread(target=deleter.run)]
    with hp.Proc(hp.argv(vdb.dsn, [*args, "--sleep", "0.05"])) as proc:
        proc.wait_chunk(1)
        for t in threads:
            t.start()
        proc.wait_chunk(6)
        proc.kill()
        proc.finish(30)
    hp.wait_lock_free(vdb.db, vdb.settings)
    erase = ScanDeleter(vdb, LIVE)
    resumed = run_with(vdb, "archive", LISTS, erase)
    dialer.stop.set()
    deleter.stop.set()
    for t in threads:
        t.join(30)
    assert dialer.error is None and deleter.error is None, (dialer.error, deleter.error)
    assert resumed.state == "done", resumed.stop_reason
    assert len(deleter.deleted) > 20 and dialer.applied > 50
    deleter.deleted.update(erase.deleted)
    where = check_deletes_kept(vdb, dialer, deleter)
    gone = {
        int(x.split(",")[0])
        for x in vdb.cli(["jobs", "show", str(resumed.job_id), "--leads", "gone"]).stdout.split()
    }
    assert not gone & (where.live | where.archive), sorted(gone & (where.live | where.archive))
    if vdb.engine == "InnoDB":  # the rows a chunk has in hand are locked: nothing goes missing
        assert gone == set() and erase.deleted == {}
    else:  # deleted after the scan, before the copy: not brought back, counted gone
        assert len(erase.deleted) > 5 and set(erase.deleted) <= gone
        assert not set(erase.deleted) & where.archive
    filed = {str(r[0]) for r in vdb.db.rows(f"SELECT DISTINCT back_office FROM {ARCHIVE}")}
    assert filed <= {"filed"}

    # Dearchive (the archive-only column dropped: a restore has nowhere to put it), the
    # deleter still at work on both tables.
    vdb.db.write(f"ALTER TABLE {ARCHIVE} DROP COLUMN back_office")
    restored = sorted(where.archive)
    # A lead deleted from the live table after its copy was made (in the instant between the
    # chunk's read of what is still live and its delete) stays archived, and is restored.
    for lead in where.archive:
        deleter.deleted.pop(lead, None)
    deleter2 = Deleter(vdb, list(restored), random.Random(f"deleter-{vdb.engine}-3"))
    thread = threading.Thread(target=deleter2.run)
    thread.start()
    erase = ScanDeleter(vdb, ARCHIVE)
    done = run_with(vdb, "dearchive", LISTS, erase)
    deleter2.stop.set()
    thread.join(30)
    assert deleter2.error is None, repr(deleter2.error)
    assert done.state == "done", done.stop_reason
    assert len(deleter2.deleted) > 5
    deleter.deleted.update(deleter2.deleted)
    deleter2.deleted.update(erase.deleted)
    deleter.deleted.update(erase.deleted)
    if vdb.engine == "MyISAM":  # gone from the archive after the scan: counted gone
        assert len(erase.deleted) > 5
        assert done.counts.get("gone", 0) >= len(erase.deleted), dict(done.counts)
    final = check_deletes_kept(vdb, dialer, deleter)
    # Left in the archive: only a lead whose restored row the deleter took before the delete
    # (the archive row is then its only copy, and stays).
    taken_live = {i for i, t in deleter2.deleted.items() if t == LIVE}
    assert final.archive <= taken_live, sorted(final.archive - taken_live)[:10]
    # Every restored lead live now was restored by the job; a lead counted dearchived is live
    # unless the deleter deleted it from the live table afterwards.
    moved = done.counts.get("dearchived", 0)
    live_again = len(final.live & set(restored))
    taken = sum(1 for t in deleter2.deleted.values() if t == LIVE)
    assert live_again <= moved <= live_again + taken, (moved, live_again, taken)
    print(
        f"deleter ({vdb.engine}): {len(deleter.deleted)} leads deleted, {len(gone)} gone in the "
        f"archive run, {done.counts.get('gone', 0)} in the dearchive run"
    )
