"""The job loop: chunks, guards, throttle, window, signals and checkpoint calls.

Guarantees by engine:
- InnoDB (both tables): a chunk is one transaction. Its rows are locked first (FOR UPDATE in
  lead_id order), the guards are read inside it, and insert, update, delete and the checkpoint
  rows commit together. A deadlock or lock-wait timeout rolls the chunk back and redoes it.
- MyISAM (either table): nothing is atomic. Each statement is idempotent and the delete carries
  its own proof of equality, so a chunk cut anywhere leaves every lead in at least one table
  with its data intact, and the next run re-derives each lead's state from the two tables. The
  checkpoint is a resume hint only.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import IO, Any

from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from archiver import checkpoint, window
from archiver.checkpoint import ChunkRecord, Job
from archiver.config import Settings
from archiver.db import (
    CONNECTION_LOST,
    RETRYABLE,
    Db,
    classify_error,
    mysql_errno,
    set_statement_timeout,
)
from archiver.errors import (
    ArchiverError,
    BadInput,
    Cancelled,
    Failed,
    JobMismatch,
    LockHeld,
    SchemaChanged,
    Stopped,
)
from archiver.idlist import IdSet, IdSource
from archiver.logging import get_logger
from archiver.schema import (
    Table,
    check_lossless,
    check_overrides,
    describe_change,
    fingerprint,
    reflect,
    require_tables,
)
from archiver.selection import Criteria, JobIds, Selection, Walker
from archiver.steps import (
    ARCHIVE,
    GUARDS,
    SKIPPED_LIVE,
    SKIPPED_NEWEST,
    ChunkSql,
    Flags,
    State,
    is_conflict,
    outcome,
    predict,
    read_states,
    state_of,
)

# Fault injection for tests: ARCHIVER_FAULT=<point>[:<chunk>] kills this process with SIGKILL
# at that point of that chunk (default: the first chunk of the run). Points: after_insert,
# after_update, after_delete, before_checkpoint. A line `FAULT <point> <chunk>` goes to stderr
# first so a test can assert where the kill happened.
# `staging:<n>` kills after the n-th batch of a new job's ids is written (not committed yet).
CHUNK_POINTS = ("after_insert", "after_update", "after_delete", "before_checkpoint")
FAULT_POINTS = (*CHUNK_POINTS, "staging")
STAGE_BATCH = 5000  # ids per INSERT into archiver_job_ids

Hook = Callable[[str, Db, Sequence[int]], None]


@dataclass(frozen=True)
class JobSpec:
    direction: str
    selection: Selection
    flags: Flags = field(default_factory=Flags)
    overrides: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None
    dry_run: bool = False
    report: str | None = None
    ignore_window: bool = False
    resume_id: int | None = None

    def __post_init__(self) -> None:
        # archiver_jobs.job_name is VARCHAR(64): a longer name would be cut and never found
        # again; an all-digit name would be read as a job id by `jobs show/resume`.
        if self.name is not None and (not 1 <= len(self.name) <= 64 or self.name.isdigit()):
            raise BadInput(
                f"invalid --job-name {self.name!r}: use 1 to 64 characters, not only digits"
            )

    def identity(self, chunk_size: int) -> dict[str, Any]:
        return {
            "direction": self.direction,
            "selection": self.selection.canonical(),
            "flags": {
                "insert": self.flags.insert,
                "update": self.flags.update,
                "delete": self.flags.delete,
            },
            "overrides": dict(sorted(self.overrides.items())),
            "chunk_size": chunk_size,
        }


@dataclass
class Summary:
    direction: str
    job_id: int | None
    state: str
    counts: Counter[str]
    job_counts: Counter[str]
    leads: int
    chunks: int
    seconds: float
    dry_run: bool = False
    throttle_slept_s: float = 0.0
    stop_reason: str | None = None
    sql: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    plan: list[str] = field(default_factory=list)
    report_error: str | None = None  # the --report could not be written (the job went on)

    @property
    def rate(self) -> float:
        return self.leads / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "direction": self.direction,
            "job_id": self.job_id,
            "state": self.state,
            "dry_run": self.dry_run,
            "counts": dict(sorted(self.counts.items())),
            "job_counts": dict(sorted(self.job_counts.items())),
            "leads": self.leads,
            "chunks": self.chunks,
            "seconds": round(self.seconds, 3),
            "rate_per_s": round(self.rate, 1),
            "stop_reason": self.stop_reason,
            "throttle_slept_s": round(self.throttle_slept_s, 3),
        }


@dataclass
class _Scan:
    """What a chunk's first read found."""

    ids: list[int]
    cursor: int
    before: dict[int, State] = field(default_factory=dict)
    guarded: set[int] = field(default_factory=set)
    unselected: set[int] = field(default_factory=set)
    newest: int | None = None


class _Report:
    """The --report CSV, one line per lead not moved. A write that fails (a full disk, EIO)
    does not stop the job, which goes on writing data: the first error is kept and reported
    once the job has ended, with its summary."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.error: str | None = None
        self.fh: IO[str] | None = None
        if path:
            self._try(lambda: self._open(path))

    def _open(self, path: str) -> None:
        self.fh = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115
        self.writer = csv.writer(self.fh)
        self.writer.writerow(["lead_id", "outcome"])

    def _try(self, action: Callable[[], Any]) -> None:
        if self.error is not None:
            return
        try:
            action()
        except OSError as exc:
            self.error = f"cannot write the report {self.path}: {exc.strerror or exc}"

    def writerow(self, row: list[Any]) -> None:
        if self.fh is not None:
            self._try(lambda: self.writer.writerow(row))

    def close(self) -> None:
        if self.fh is not None:
            fh, self.fh = self.fh, None
            self._try(fh.close)
            if not fh.closed:
                try:
                    fh.close()
                except OSError:  # already reported
                    pass


class _Signals:
    """First SIGTERM/SIGINT: stop after the current chunk. Second SIGINT: abort at once."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self._old: dict[signal.Signals, Any] = {}

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.reason is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.reason = f"stopped by {signal.Signals(signum).name}"

    @contextmanager
    def installed(self) -> Iterator[None]:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (a library caller): no signal handling
                pass
        try:
            yield
        finally:
            for sig, handler in self._old.items():
                signal.signal(sig, handler)


def lock_name(settings: Settings) -> str:
    return f"{settings.lock_name}:{settings.db.database}"[:64]


def _fault(point: str, chunk_no: int) -> None:
    spec = os.environ.get("ARCHIVER_FAULT")
    if not spec:
        return
    name, _, when = spec.partition(":")
    if name == point and int(when or "1") == chunk_no:
        os.write(2, f"FAULT {point} {chunk_no}\n".encode())
        os.kill(os.getpid(), signal.SIGKILL)


class Runner:
    def __init__(
        self,
        db: Db,
        settings: Settings,
        spec: JobSpec,
        hook: Hook | None = None,
        progress: Any = None,
    ) -> None:
        self.db = db
        self.s = settings
        self.spec = spec
        self.hook = hook
        self.progress = progress
        self.log = get_logger(direction=spec.direction)
        self.signals = _Signals()
        self.warnings: list[str] = []
        self.guard_tables: list[str] = []
        self.pending: set[int] = set()
        self.started = time.monotonic()
        self.transactional = False
        self.pending_written = False
        self.cursor = 0

    # --- set-up --------------------------------------------------------------------------

    def tables(self) -> tuple[Table, Table]:
        live, archive = require_tables(self.db, self.s.live_table, self.s.archive_table)
        src, dst = (live, archive) if self.spec.direction == ARCHIVE else (archive, live)
        check_lossless(src, dst)
        self.transactional = live.transactional and archive.transactional
        return src, dst

    def _check_where(self, sql: ChunkSql) -> None:
        """Refuse a `--where` the server rejects, before any checkpoint table or job row exists:
        first by EXPLAIN, then by evaluating it on one row. Some errors only show when the
        condition is evaluated (a scalar subquery that returns more than one row, 1242, passes
        EXPLAIN); this reads rows until the first one that matches, so it raises whatever the
        first chunk would. It is bounded by max_statement_time: a table where no row matches
        can take long to read in full, and a check that runs out of time is skipped with a
        warning, not taken for a failure."""
        crit = self.spec.selection.criteria
        if crit is None or not crit.where:
            return
        cond, params = crit.sql()

        def complaint(exc: DBAPIError) -> str:
            args: tuple[Any, ...] = tuple(getattr(exc.orig, "args", ()))
            text = str(args[1]) if len(args) > 1 else str(exc.orig)
            return text if len(text) <= 200 else text[:199] + "…"

        try:
            self.db.rows(
                f"EXPLAIN SELECT s.`lead_id` FROM {sql.s} AS s WHERE {cond} LIMIT 0", params
            )
        except DBAPIError as exc:
            if mysql_errno(exc) in CONNECTION_LOST:
                raise
            raise BadInput(f"--where is not a valid condition: {complaint(exc)}") from None
        seconds = 5
        probe = f"SELECT 1 FROM {sql.s} AS s WHERE {cond} LIMIT 1"
        if "mariadb" in str(self.db.scalar("SELECT VERSION()")).lower():
            probe = f"SET STATEMENT max_statement_time = {seconds} FOR {probe}"
        else:  # MySQL: an optimizer hint, in milliseconds
            probe = probe.replace(
                "SELECT", f"SELECT /*+ MAX_EXECUTION_TIME({seconds * 1000}) */", 1
            )
        try:
            self.db.rows(probe, params)
        except DBAPIError as exc:
            errno = mysql_errno(exc)
            if errno in CONNECTION_LOST:
                raise
            if errno in (1969, 3024):  # max_statement_time (MariaDB), MAX_EXECUTION_TIME (MySQL)
                msg = f"--where was not tried on a row: no matching row within {seconds}s"
                self.warnings.append(msg)
                self.log.warning("where_unchecked", seconds=seconds)
                return
            raise BadInput(
                f"--where fails when the server runs it: {complaint(exc)}; "
                "fix the condition and run again"
            ) from None

    def _find_guards(self) -> None:
        if self.spec.direction != ARCHIVE:
            return
        wanted = [(n, t) for n, t, _ in GUARDS if getattr(self.s.guards, n)]
        present = {
            str(r[0]).lower()
            for r in self.db.rows(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
                " AND TABLE_NAME IN :t",
                {"t": [t for _, t in wanted] or [""]},
            )
        }
        for _, table in wanted:
            if table in present:
                self.guard_tables.append(table)
            else:
                msg = f"guard table {table} does not exist; its guard is off for this run"
                self.warnings.append(msg)
                self.log.warning("guard_missing", table=table)

    def _lock(self) -> None:
        name = lock_name(self.s)
        got = self.db.scalar("SELECT GET_LOCK(:n, 0)", {"n": name})
        if got == 1:
            return
        conn_id = self.db.scalar("SELECT IS_USED_LOCK(:n)", {"n": name})
        # The job whose connection holds the lock: a job left `running` by a killed process
        # has another connection id, so it is not named by mistake.
        try:
            holder = self.db.rows(
                "SELECT job_id, job_name, host, pid FROM archiver_jobs WHERE state = 'running'"
                " AND connection_id = :c ORDER BY heartbeat DESC LIMIT 1",
                {"c": conn_id},
            )
        except DBAPIError:  # no checkpoint tables yet: the holder is not one of our jobs
            holder = []
        if holder:
            j = holder[0]
            who = f"job {j[0]}" + (f" ({j[1]})" if j[1] else "") + f" on host {j[2]} pid {j[3]}"
        else:
            who = "another session"
        raise LockHeld(
            f"another job holds the lock {name!r}: {who} (connection {conn_id}); "
            "wait for it to finish or stop it, then run again"
        )

    def _unlock(self) -> None:
        try:
            self.db.scalar("SELECT RELEASE_LOCK(:n)", {"n": lock_name(self.s)})
        except SQLAlchemyError:  # connection lost: the server released the lock with it
            pass

    def _job(self) -> Job:
        spec = self.spec
        identity = spec.identity(self.s.chunk_size)
        digest, _ = checkpoint.identity_of(identity)
        if spec.resume_id is not None:
            job: Job | None = checkpoint.get_job(self.db, spec.resume_id)
        else:
            job = checkpoint.find_unfinished(self.db, spec.name, digest)
        if job is not None:
            if job.identity != identity:
                raise JobMismatch(
                    f"{job.label} is unfinished with another selection or flags "
                    f"({checkpoint.describe_difference(job.identity, identity)}); resume it "
                    "with the same options, cancel it (`jobs cancel`), or use another --job-name"
                )
            if job.state not in checkpoint.UNFINISHED:
                raise JobMismatch(f"{job.label} is {job.state}; nothing to resume")
            checkpoint.claim(self.db, job)
            self.pending = checkpoint.pending(self.db, job.job_id, self._pending_ids(job))
            self.log.info("job_resumed", job_id=job.job_id, cursor=job.cursor, chunks=job.chunks)
            return self._walk_job_ids(checkpoint.get_job(self.db, job.job_id))
        crit = spec.selection.criteria
        params = {"criteria": crit.resolved} if crit is not None else {}
        ids = spec.selection.ids
        # The checkpoint tables are InnoDB whatever the lead tables are: the job row and all of
        # its ids commit together, so a run killed while staging leaves neither, and the next
        # run starts the job afresh.
        with self.db.transaction(ids is not None):
            job_id = checkpoint.create_job(
                self.db,
                name=spec.name,
                direction=spec.direction,
                identity=identity,
                params=params,
            )
            if ids is not None:
                for n, batch in enumerate(ids.batches(STAGE_BATCH), 1):
                    checkpoint.stage_ids(self.db, job_id, batch)
                    _fault("staging", n)
        self.log.info("job_started", job_id=job_id, name=spec.name)
        return self._walk_job_ids(checkpoint.get_job(self.db, job_id))

    def _walk_job_ids(self, job: Job) -> Job:
        """From here on an id-list job walks its ids from the checkpoint (not from the input,
        which a resumed job may no longer have)."""
        if job.explicit:
            self.spec = replace(self.spec, selection=Selection(ids=job_ids(self.db, job)))
        return job

    def _pending_ids(self, job: Job) -> list[int]:
        rows = self.db.rows(
            "SELECT lead_id FROM archiver_pending WHERE job_id = :j", {"j": job.job_id}
        )
        return [int(r[0]) for r in rows]

    # --- one chunk -----------------------------------------------------------------------

    def _at(self, point: str, chunk_no: int, ids: Sequence[int]) -> None:
        if self.hook is not None:
            self.hook(point, self.db, ids)
        _fault(point, chunk_no)

    def chunk(
        self,
        sql: ChunkSql,
        walker: Walker,
        job: Job | None,
        chunk_no: int,
        size: int,
    ) -> tuple[list[int], dict[int, str]]:
        """Read and run the next chunk; returns its ids and each id's outcome (no ids: the
        walk is over). On InnoDB all of it is one transaction, from the read that locks the
        chunk's rows to the checkpoint rows."""
        db, flags, direction = self.db, self.spec.flags, self.spec.direction
        with db.transaction(self.transactional):
            scan = self._scan(sql, walker, size)
            if not scan.ids:
                self.cursor = max(self.cursor, scan.cursor)
                return [], {}
            ours = set(self.pending)  # leads a killed attempt of this chunk had in hand
            skipped = self._skipped(scan)
            act = sorted(
                i
                for i, st in scan.before.items()
                if st.in_src
                and i not in skipped
                and i not in scan.unselected
                and not is_conflict(st, direction, ours=i in ours)
            )
            after = self._apply(sql, act, job, chunk_no, scan.before)
            left, withdrawn = self._settle(sql, job, act, scan, after)
            result = {}
            for lead in scan.ids:
                if lead in skipped:
                    result[lead] = skipped[lead]
                    continue
                st = scan.before.get(lead)
                if st is not None and not st.in_src and lead in ours:
                    st = State(True, True, True)  # moved by the killed attempt of this chunk
                result[lead] = outcome(
                    st,
                    after.get(lead),
                    flags,
                    direction,
                    left=lead in left,
                    ours=lead in ours,
                    withdrawn=lead in withdrawn,
                    overrides=bool(self.spec.overrides),
                )
            self._at("before_checkpoint", chunk_no, scan.ids)
            self._record(job, chunk_no, scan.ids, result, scan.cursor)
        self.cursor = scan.cursor
        return scan.ids, result

    def _scan(self, sql: ChunkSql, walker: Walker, size: int) -> _Scan:
        """The next chunk's ids, each one's state before the chunk, the ids a live-lead guard
        holds, the newest lead, and the new cursor. One statement reads the selection (criteria
        evaluated on the rows themselves), the target's copies with the byte-exact comparison,
        the guards and the source's highest lead_id; on InnoDB it also locks the source rows,
        so nothing it read can change before the chunk commits."""
        db, archive = self.db, self.spec.direction == ARCHIVE
        guards = self.guard_tables if archive else []
        lock = self.transactional and not db.dry_run
        newest = archive and self.s.guards.safe_auto_increment

        def select(where: str) -> str:
            return sql.scan(where, guards, lock=lock, newest=newest)

        if self.pending:
            # A MyISAM chunk cut part-way is redone first: its leads, with every lead the
            # selection now holds among them, in chunks of the usual size (moved leads are no
            # longer in the source; one that left the selection is read below). The walk goes
            # on after the last of them.
            top = max(self.pending)
            ids, rows = walker.rows_through(self.cursor, top, select, limit=size)
            upto = ids[-1] if len(ids) >= size else top
            ids = sorted(set(ids) | {i for i in self.pending if i <= upto})
            cursor = max(upto, self.cursor)
        else:
            ids, rows, cursor = walker.next_rows(self.cursor, size, select)
        scan = _Scan(ids, cursor)
        wanted = set(ids)
        for row in rows:
            lead = int(row[0])
            if lead in scan.before or lead not in wanted:
                continue
            scan.before[lead] = state_of(True, row[1])
            if row[2]:
                scan.guarded.add(lead)
            if newest and row[3] is not None:
                scan.newest = int(row[3])
        absent = [i for i in ids if i not in scan.before]
        if absent:
            for lead, st in read_states(db, sql, absent).items():
                scan.before[lead] = st
                if st.in_src and archive:
                    # A lead of the cut attempt that the selection no longer holds (the
                    # dialer changed it). Dearchive redoes its own leads whatever they match:
                    # their copies are already half made.
                    scan.unselected.add(lead)
        return scan

    def _skipped(self, scan: _Scan) -> dict[int, str]:
        if self.spec.direction != ARCHIVE:
            return {}
        skipped = dict.fromkeys(sorted(scan.guarded), SKIPPED_LIVE)
        newest, before = scan.newest, scan.before
        if newest in before and before[newest].in_src and newest not in scan.unselected:
            skipped.setdefault(newest, SKIPPED_NEWEST)
        return skipped

    def _apply(
        self,
        sql: ChunkSql,
        act: list[int],
        job: Job | None,
        chunk_no: int,
        before: dict[int, State],
    ) -> dict[int, State]:
        if not act:
            return {}
        db, flags, direction = self.db, self.spec.flags, self.spec.direction
        show = db.dry_run and not db.planned  # a dry run shows the SQL of its first chunk
        if db.dry_run and not show:
            return {i: predict(before[i], flags, direction) for i in act}
        missing = [i for i in act if not before[i].in_dst]
        differ = [i for i in act if before[i].in_dst and not before[i].equal]
        literals = self._remember(sql, act, before, missing, differ, job)
        if flags.insert and (missing or show):
            self._insert(sql, missing or act, literals)
        self._at("after_insert", chunk_no, act)
        if flags.update and direction == ARCHIVE and (differ or show):
            db.write(sql.update(), {"ids": differ or act})
        self._at("after_update", chunk_no, act)
        deleted = self._delete(sql, act) if flags.delete else 0
        self._at("after_delete", chunk_no, act)
        if db.dry_run:
            return {i: predict(before[i], flags, direction) for i in act}
        if flags.delete and deleted == len(act):
            # Each deleted row had an equal copy in the target at that instant.
            return dict.fromkeys(act, State(False, True, True))
        if flags.delete:
            self._check_columns(sql)
        return read_states(db, sql, act)

    def _remember(
        self,
        sql: ChunkSql,
        act: list[int],
        before: dict[int, State],
        missing: list[int],
        differ: list[int],
        job: Job | None,
    ) -> list[str] | None:
        """MyISAM: mark the chunk's leads pending, with the fingerprint of each copy about to
        be written or found equal, before writing any (the job tells its own copies by them,
        in this chunk or in the redo of a cut one). The archive's copy rows are read here,
        once, with their fingerprints: they are the values the insert writes. Returns those
        rows as SQL tuples (None when not read here)."""
        if job is None or self.transactional or self.db.dry_run:
            return None
        db, flags, direction = self.db, self.spec.flags, self.spec.direction
        hashes: dict[int, str] = {}
        literals: list[str] | None = None
        copies = list(missing) if flags.insert else []
        if direction == ARCHIVE and copies:
            rows = db.rows(sql.fetch_literals(), {"ids": copies})
            literals = [str(r[0]) for r in rows]
            hashes.update((int(r[1]), str(r[2])) for r in rows)
            copies = []
        if direction == ARCHIVE and flags.update:
            copies += differ
        copies += [i for i in act if i not in hashes and before[i].in_dst and before[i].equal]
        if copies:
            hashes.update((int(r[0]), str(r[1])) for r in db.rows(sql.hashes(), {"ids": copies}))
        checkpoint.set_pending(db, job.job_id, act, hashes, self.tables_at)
        self.pending_written = True
        # Also in memory: if this chunk is redone in this run (a lock wait while recording
        # it), the leads it already moved still count as moved, not as found moved.
        self.pending.update(act)
        return literals

    def _settle(
        self, sql: ChunkSql, job: Job | None, act: list[int], scan: _Scan, after: dict[int, State]
    ) -> tuple[set[int], set[int]]:
        """MyISAM: leads a call changed after this job copied them (or found them equal).
        Archive: the lead stays live and the copy goes (`delete_stale_copy`), so no stale copy
        outlives the chunk; one still selected is kept_changed, for a later run, one that left
        the selection is left_selection. Dearchive: a restored lead keeps its live row and the
        archive row this job copied goes (`delete_superseded`). Each delete proves the row it
        removes is the job's own copy and differs only in what a call changes; where it cannot,
        both rows stay. Returns (the leads that left the selection, those whose copy went)."""
        if job is None or self.transactional or self.db.dry_run or not self.spec.flags.delete:
            return set(), set()
        db, archive = self.db, self.spec.direction == ARCHIVE
        changed = {i for i in act if (st := after.get(i)) and st.in_src and st.in_dst}
        left = set(scan.unselected)
        crit = self.spec.selection.criteria
        if archive and changed and crit is not None:
            cond, params = crit.sql()
            ids = sorted(changed)
            held = {int(r[0]) for r in db.rows(sql.selected(cond), {"ids": ids, **params})}
            left |= changed - held
        pool = (left | changed) if archive else changed
        targets = sorted(
            i for i in pool if (st := after.get(i) or scan.before.get(i)) and st.in_dst
        )
        if targets:
            stmt = sql.delete_stale_copy() if archive else sql.delete_superseded()
            if db.write(stmt, {"ids": targets, "job": job.job_id}) < len(targets):
                self._check_columns(sql)
            after.update(read_states(db, sql, targets))
        for lead in left:
            if lead not in after:
                after[lead] = scan.before[lead]
        withdrawn = {i for i in targets if i in after and not after[i].in_dst}
        return left, withdrawn

    def _check_columns(self, sql: ChunkSql) -> None:
        """A delete that spared leads may have met a table changed since the run began (its
        schema guard): stop the job, resumable, naming the change. The next run reflects the
        tables again and checks them before it writes."""
        now = {str(r[0]): str(r[1]) for r in self.db.rows(sql.fingerprint_now())}
        changes = []
        for table in (sql.src, sql.dst):
            if now.get(table.name) == fingerprint(table):
                continue
            current = reflect(self.db, table.name)
            changes.append(f"{table.name}: {describe_change(table, current)}")
        if changes:
            if self.job is not None and not self.transactional:
                # The leads in hand were copied before the change: from now on a proven-copy
                # delete of theirs accepts only differences a call makes (an ALTER may have
                # cut values, and a later ALTER may have put the old type back).
                self.db.write(
                    "UPDATE archiver_pending SET tables_at = 'altered' WHERE job_id = :j",
                    {"j": self.job.job_id},
                )
            raise SchemaChanged(
                f"a table changed during the run ({'; '.join(changes)}); the statements that "
                "met the change deleted nothing. Run the same command again: it reads the "
                "tables again and checks them before it goes on"
            )

    def _delete(self, sql: ChunkSql, act: list[int]) -> int:
        """Delete-if-equal. Archiving from a MyISAM vicidial_list, the chunk's delete runs in
        statements of at most `delete_batch` leads: a DELETE holds the table's write lock, which
        stops every dialer read and write, for ~45 µs per lead at 1M leads (13 indexes), so
        short statements keep the dialer's waits short. Each statement is the whole proof for
        the leads it deletes."""
        batch = self.s.delete_batch
        if self.transactional or self.spec.direction != ARCHIVE or not batch:
            batch = len(act)
        return sum(
            self.db.write(sql.delete(), {"ids": act[k : k + batch]})
            for k in range(0, len(act), batch)
        )

    def _insert(self, sql: ChunkSql, ids: list[int], literals: list[str] | None) -> None:
        """Insert-if-missing. On MyISAM, archiving reads the rows first and inserts them as
        values: an INSERT … SELECT would hold vicidial_list's table lock, and so stall the
        dialer's writes, for as long as the archive's indexes take to update."""
        db = self.db
        if self.transactional or self.spec.direction != ARCHIVE:
            db.write(sql.insert(), {"ids": ids, **sql.override_params()})
            return
        if db.dry_run:
            db.planned.append(db.render(sql.fetch_literals(), {"ids": ids}))
            db.planned.append(sql.insert_literals(["/* the rows read above, as literals */"]))
            return
        if literals is None:
            literals = [str(r[0]) for r in db.rows(sql.fetch_literals(), {"ids": ids})]
        if literals:
            db.write_literal(sql.insert_literals(literals), "")

    def _record(
        self, job: Job | None, chunk_no: int, ids: list[int], result: dict[int, str], cursor: int
    ) -> None:
        counts = Counter(result.values())
        moved = {"archived", "dearchived"}
        not_moved = {i: o for i, o in result.items() if o not in moved}
        if job is not None:
            rec = ChunkRecord(
                chunk_no=chunk_no,
                first=ids[0],
                last=ids[-1],
                cursor=cursor,
                leads=len(ids),
                counts=counts,
                not_moved=not_moved,
                ms=int(self.chunk_ms()),
            )
            try:
                checkpoint.record_chunk(
                    self.db,
                    job,
                    rec,
                    self.totals + counts,
                    clear_pending=self.pending_written or bool(self.pending),
                )
            except Cancelled:
                if not self.transactional:  # MyISAM: the chunk's statements did happen
                    self.run_counts.update(counts)
                raise
            self.pending = {i for i in self.pending if i > cursor}
            self.pending_written = False
        # Counted (and reported) only once recorded: a chunk whose checkpoint write failed
        # with a lock wait or deadlock is redone, and must not count its leads twice.
        self.totals.update(counts)
        self.run_counts.update(counts)
        if self.report_writer is not None:
            for lead, out in sorted(not_moved.items()):
                self.report_writer.writerow([lead, out])

    def chunk_ms(self) -> float:
        return (time.monotonic() - self.chunk_started) * 1000

    # --- the loop ------------------------------------------------------------------------

    def stop_reason(self) -> str | None:
        if self.signals.reason:
            return self.signals.reason
        if self.s.max_runtime and time.monotonic() - self.started >= self.s.max_runtime:
            return f"--max-runtime of {self.s.max_runtime:g}s reached"
        if not self.spec.ignore_window and not window.is_open(self.s.window):
            return f"the off-hours window ({window.describe(self.s.window)}) closed"
        return None

    def run(self) -> Summary:
        from archiver import selection
        from archiver.throttle import Throttle

        src, dst = self.tables()
        check_overrides(dst, self.spec.overrides)
        self._resolve_criteria(None)
        self.warnings += selection.check_scope(self.db, self.spec.selection.criteria)
        spec = self.spec
        sql = ChunkSql(spec.direction, src, dst, spec.overrides)
        self._check_where(sql)
        if not spec.dry_run and not spec.ignore_window and not window.is_open(self.s.window):
            raise Stopped(
                f"outside the off-hours window ({window.describe(self.s.window)}); "
                "run inside it or pass --ignore-window for a one-off run"
            )
        self._find_guards()
        if spec.report:  # an unwritable report is bad input: refuse it before any write
            try:
                with open(spec.report, "w", encoding="utf-8"):
                    pass
            except OSError as exc:
                raise BadInput(f"cannot write the report {spec.report}: {exc.strerror}") from None
        self.plan = self._plan(src, dst)
        self.tables_at: str | None = None
        self.job: Job | None = None
        if not self.transactional and not spec.dry_run:
            self.tables_at = self.db.scalar(f"SELECT {sql.tables_at()}")
        self.totals: Counter[str] = Counter()
        self.run_counts: Counter[str] = Counter()
        self.report_writer: _Report | None = None
        job: Job | None = None
        # A statement that runs on (a costly --where) fails the job instead of holding the job
        # lock for hours; the server ends it even if this process is killed.
        set_statement_timeout(self.db, self.s.statement_timeout)
        if not spec.dry_run:
            self._lock()  # first: a run refused by the lock writes nothing, DDL included
        try:
            if not spec.dry_run:
                checkpoint.ensure_tables(self.db)
                job = self.job = self._job()
                self.totals.update(job.counts)
                self._resolve_criteria(job)
            report = self.report_writer = _Report(spec.report)
            try:
                summary = self._loop(
                    sql,
                    job,
                    Throttle(self.db, self.s.throttle, self.s.chunk_size, self.stop_reason),
                )
            except ArchiverError as exc:
                report.close()
                if report.error:
                    exc.message = f"{exc.message}; {report.error}"
                raise
            report.close()
            summary.report_error = report.error
            return summary
        finally:
            if not spec.dry_run:
                self._unlock()

    def _resolve_criteria(self, job: Job | None) -> dict[str, Any]:
        """Pin the date cut-offs: a job keeps those it started with, whenever it resumes; a new
        one takes ages (90d) back from the server's own clock."""
        crit = self.spec.selection.criteria
        if crit is None:
            return {}
        if job is not None and "criteria" in job.params:
            crit = crit.with_resolved(job.params["criteria"])
        else:
            now = self.db.scalar("SELECT CONVERT_TZ(UTC_TIMESTAMP(), '+00:00', @@global.time_zone)")
            crit = crit.resolve(now)
        self.spec = replace(self.spec, selection=Selection(criteria=crit))
        return crit.sql()[1]

    def _plan(self, src: Table, dst: Table) -> list[str]:
        spec, flags = self.spec, self.spec.flags
        steps = [
            n
            for n, on in (
                ("insert", flags.insert),
                ("update", flags.update and spec.direction == ARCHIVE),
                ("delete", flags.delete),
            )
            if on
        ]
        guarantee = (
            "InnoDB: each chunk is one transaction (rows locked first; steps and checkpoint "
            "commit together)"
            if self.transactional
            else "MyISAM: each step is one idempotent statement; the delete proves equality in the "
            "same statement; a cut run converges when re-run"
        )
        lines = [
            f"{spec.direction}: {src.name} ({src.engine}) → {dst.name} ({dst.engine})",
            guarantee,
            f"selection: {json.dumps(spec.selection.canonical(), sort_keys=True)}",
            f"steps: {', '.join(steps) or 'none'}; chunk size {self.s.chunk_size}",
        ]
        if spec.overrides:
            lines.append(f"restored leads get: {dict(spec.overrides)}")
        if spec.direction == ARCHIVE:
            lines.append(
                f"guards: {', '.join(self.guard_tables) or 'none'}; newest lead kept: "
                f"{'yes' if self.s.guards.safe_auto_increment else 'no'}"
            )
        return lines

    def _loop(self, sql: ChunkSql, job: Job | None, throttle: Any) -> Summary:
        walker = Walker(self.db, self.spec.selection, sql.src.name)
        self.cursor = job.cursor if job else 0
        first_chunk = chunk_no = job.chunks if job else 0
        first_id, last_id = walker.bounds()
        leads, size = 0, self.s.chunk_size
        state, reason = "done", None
        planned: list[str] = []
        try:
            with self.signals.installed():
                last_ms: float | None = None
                while True:
                    if last_ms is not None:  # between chunks only, never after the last one
                        throttle.pause(last_ms)
                    self.chunk_started = time.monotonic()
                    ids, result = self._retrying(sql, walker, job, chunk_no + 1, size)
                    if not ids:
                        break
                    chunk_no += 1
                    ms = self.chunk_ms()
                    leads += len(ids)
                    if self.db.dry_run and not planned:
                        planned = list(self.db.planned)
                    self._log_chunk(chunk_no, ids, result, ms, leads, first_id, last_id)
                    reason = self.stop_reason()
                    if reason:
                        state = "stopped"
                        break
                    if walker.exhausted() and not self.pending:
                        break
                    size = throttle.next_size(len(ids), ms)
                    last_ms = ms
        except Cancelled as exc:
            state, reason = "cancelled", str(exc)
        except Stopped as exc:
            state, reason = "stopped", str(exc)
        except KeyboardInterrupt:
            state, reason = "stopped", "aborted by a second SIGINT"
        except Failed as exc:
            state, reason = "failed", str(exc)
        except DBAPIError as exc:
            state, reason = "failed", _db_failure(exc)
        if job is not None:
            self._end(job, state, reason)
        summary = Summary(
            direction=self.spec.direction,
            job_id=job.job_id if job else None,
            state=state,
            counts=self.run_counts,
            job_counts=self.totals,
            leads=leads,
            chunks=chunk_no - first_chunk,
            seconds=time.monotonic() - self.started,
            dry_run=self.db.dry_run,
            stop_reason=reason,
            sql=planned,
            warnings=self.warnings,
            plan=self.plan,
            throttle_slept_s=getattr(throttle, "slept_s", 0.0),
        )
        self.log.info("summary", **summary.as_dict())
        return summary

    def _end(self, job: Job, state: str, reason: str | None) -> None:
        try:
            if self.db.in_tx or state == "cancelled":
                return
            checkpoint.finish(self.db, job.job_id, state, reason)
        except SQLAlchemyError:  # DBAPIError, or PendingRollbackError after a lost connection
            # The connection is gone: the job stays `running` with an old heartbeat, and the
            # next run, which gets the lock, resumes it.
            pass

    def _retrying(
        self, sql: ChunkSql, walker: Walker, job: Job | None, chunk_no: int, size: int
    ) -> tuple[list[int], dict[int, str]]:
        attempt = 0
        while True:
            try:
                return self.chunk(sql, walker, job, chunk_no, size)
            except DBAPIError as exc:
                errno = mysql_errno(exc)
                if errno in RETRYABLE and attempt < self.s.deadlock_retries:
                    attempt += 1
                    self.log.warning("chunk_retry", chunk=chunk_no, errno=errno, attempt=attempt)
                    time.sleep(min(0.1 * 2**attempt, 2.0))
                    continue
                raise

    def _log_chunk(
        self,
        chunk_no: int,
        ids: list[int],
        result: dict[int, str],
        ms: float,
        leads: int,
        first_id: int,
        last_id: int,
    ) -> None:
        elapsed = time.monotonic() - self.started
        rate = leads / elapsed if elapsed > 0 else 0.0
        span = max(1, last_id - first_id)
        done = min(1.0, max(0.0, (self.cursor - first_id) / span))
        eta = (elapsed / done - elapsed) if done > 0 else None
        self.log.info(
            "chunk",
            chunk=chunk_no,
            first_lead_id=ids[0],
            last_lead_id=ids[-1],
            leads=len(ids),
            counts=dict(Counter(result.values())),
            ms=round(ms, 1),
            rate_per_s=round(rate, 1),
            progress=round(done, 4),
            eta_s=None if eta is None else round(eta, 1),
        )
        if self.progress is not None:
            self.progress(done, rate, eta, Counter(self.run_counts))


def _db_failure(exc: DBAPIError) -> str:
    return classify_error(exc).message


def run_job(
    db: Db, settings: Settings, spec: JobSpec, hook: Hook | None = None, progress: Any = None
) -> Summary:
    """Run (or resume) one job. A job that ran returns its summary, whatever its state (done,
    stopped, failed, cancelled; `stop_reason` says why, `report_error` what the --report
    could not write): `commands.outcome_error` maps it to an error kind. An exception
    (LockHeld, BadInput, Stopped outside the window…) means the job was refused before it
    wrote."""
    return Runner(db, settings, spec, hook, progress).run()


def job_ids(db: Db, job: Job) -> IdSource:
    """An id-list job's ids: staged in archiver_job_ids, or, for a job made by an earlier
    version, the JSON list in its row. Staged ids that do not add up to the job's identity
    (rows deleted by hand) fail the job rather than walk part of it."""
    sel = job.identity["selection"]
    count, digest = int(sel["ids_count"]), str(sel["ids_hash"])
    if job.ids is not None:
        return IdSet.from_ints(job.ids)
    staged = checkpoint.staged_count(db, job.job_id)
    if staged != count:
        reason = f"{job.label} should have {count} lead ids in archiver_job_ids and has {staged}"
        # A run that has just claimed the job ends it `failed` (no other run can walk it).
        db.write(
            "UPDATE archiver_jobs SET state = 'failed', stop_reason = :r, ended_at = NOW(3)"
            " WHERE job_id = :j AND state = 'running' AND connection_id = CONNECTION_ID()",
            {"r": reason[:255], "j": job.job_id},
        )
        raise checkpoint.CheckpointError(
            f"{reason}; cancel it (`jobs cancel {job.job_id} --force`; then check its leads "
            "with `verify`) and run the command again"
        )
    return JobIds(db, job.job_id, count, digest)


def spec_from_job(
    db: Db, job: Job, *, ignore_window: bool = False, report: str | None = None
) -> JobSpec:
    """The spec a job was started with, from the checkpoint alone (no original input)."""
    ident = job.identity
    if job.explicit:
        selection = Selection(ids=job_ids(db, job))
    else:
        raw = dict(ident["selection"]["criteria"])
        for key in ("list_ids", "campaigns", "statuses"):
            raw[key] = tuple(raw.get(key, ()))
        resolved = job.params.get("criteria", {})
        selection = Selection(criteria=Criteria(**raw, resolved=resolved))
    return JobSpec(
        direction=job.direction,
        selection=selection,
        flags=Flags(**ident["flags"]),
        overrides=ident.get("overrides", {}),
        name=job.name,
        ignore_window=ignore_window,
        report=report,
        resume_id=job.job_id,
    )
