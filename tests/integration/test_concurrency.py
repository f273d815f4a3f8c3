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
    resumed = vdb.cli(args)
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
