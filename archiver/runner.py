"""The job loop: one job from its row to its summary.

Owns: the job row (start, resume, claim, end), the job lock, the walk's cursor and the redo of a
cut chunk, the off-hours window, the throttle, signals, retries, the report, the progress and
the summary; the one helper that executes (or, in a dry run, renders) every statement a chunk
strategy yields, and fires the hook and fault points by name. Must not: hold chunk SQL (steps.py)
or decide which statements a chunk runs (strategies.py: one transaction per chunk on InnoDB,
autocommit idempotent statements on MyISAM, chosen once per run).
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import signal
import stat
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from errno import EISDIR
from typing import IO, Any, TypeVar

from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from archiver import checkpoint, claims, config, window
from archiver.checkpoint import ChunkRecord, Job
from archiver.config import Settings
from archiver.db import (
    CONNECTION_LOST,
    ER_STATEMENT_TIMEOUT,
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
    SchemaChanged,
    Stopped,
)
from archiver.faults import fault
from archiver.idlist import IdSet, IdSource
from archiver.jobtypes import (
    ARCHIVE,
    MOVED,
    TUNING,
    Flags,
    Hook,
    JobSpec,
    JobState,
    Outcome,
    Summary,
    as_direction,
)
from archiver.logging import get_logger
from archiver.schema import (
    Table,
    check_lossless,
    check_overrides,
    check_triggers,
    describe_change,
    reflect,
    require_tables,
)
from archiver.selection import Criteria, JobIds, Selection, Walker
from archiver.steps import GUARDS, ChunkSql
from archiver.strategies import (
    Chunk,
    ChunkStrategy,
    Pending,
    Point,
    Steps,
    Stmt,
    TablesChanged,
    choose,
)
from archiver.timings import Timings

# Fault injection for tests: ARCHIVER_FAULT=<point>[:<chunk>] kills this process with SIGKILL
# at that point of that chunk (default: the first chunk of the run). Points: the chunk's
# (strategies.CHUNK_POINTS: after_insert, after_update, after_delete, before_checkpoint) and
# the name of any of its statements, fired after it ran (scan, copy, delete, checkpoint…). A
# line `FAULT <point> <chunk>` goes to stderr first so a test can assert where the kill happened.
# `staging:<n>` kills after the n-th batch of a new job's ids is written (not committed yet).
STAGE_BATCH = 5000  # ids per INSERT into archiver_job_ids

T = TypeVar("T")


class _Report:
    """The --report CSV, one line per lead not moved. A write that fails (a full disk, EIO)
    does not stop the job, which goes on writing data: the first error is kept and reported
    once the job has ended, with its summary.

    The lines go to a hidden temporary file beside the report (`.NAME.<pid>.<random>.tmp`),
    renamed over it when the job ends: until then the report of the last run stays as it was,
    whatever refuses or kills this one (a report that could not be written in full is left
    out, the old one kept). A report that is not a regular file (/dev/stdout, a FIFO) is
    written directly."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.error: str | None = None
        self.fh: IO[str] | None = None
        self.tmp: str | None = None
        self.target = ""
        if path:
            self._try(lambda: self._open(path))

    def _open(self, path: str) -> None:
        if _in_place(path):
            self.fh = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115
        else:
            self.target = os.path.realpath(path)  # a symlink stays one: its target is replaced
            fd, self.tmp = _temp_beside(self.target)
            try:
                if os.path.exists(self.target):
                    os.fchmod(fd, stat.S_IMODE(os.stat(self.target).st_mode))
                self.fh = os.fdopen(fd, "w", newline="", encoding="utf-8")
            except OSError:
                os.close(fd)
                raise
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
        if self.tmp is not None:
            tmp, self.tmp = self.tmp, None
            if self.error is None:
                self._try(lambda: os.replace(tmp, self.target))
            if self.error is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass


def _in_place(path: str) -> bool:
    """The report is written in place: it is not a regular file (a device, a FIFO), or it is
    one this user may write in a directory where no file can be made beside it."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    if stat.S_ISDIR(mode):
        return False
    if not stat.S_ISREG(mode):
        return True
    folder = os.path.dirname(os.path.realpath(path))
    return not os.access(folder, os.W_OK | os.X_OK) and os.access(path, os.W_OK)


def _temp_beside(target: str) -> tuple[int, str]:
    """A new file (mode 0666 less the umask) in the directory of `target`, for a rename over
    it: its descriptor and its path."""
    if os.path.isdir(target):
        raise IsADirectoryError(EISDIR, os.strerror(EISDIR), target)
    folder, name = os.path.split(target)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp


class _Signals:
    """First SIGTERM/SIGINT/SIGHUP: stop after the current chunk. Second SIGINT: abort at once.

    SIGHUP is what a job started in an SSH session gets when the session drops: it stops as
    for SIGTERM, recorded `stopped` and resumable, instead of dying with its job `running`.
    Its terminal is gone by then, and a write to it fails (EIO): stdout and stderr, if they
    were that terminal, go to /dev/null so the job can end and say so in its row. A SIGHUP
    ignored when the run started (`nohup`) stays ignored."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self._old: dict[signal.Signals, Any] = {}

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.reason is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if signum == signal.SIGHUP:
            _leave_hung_up_terminal()
        self.reason = f"stopped by {signal.Signals(signum).name}"

    @contextmanager
    def installed(self) -> Iterator[None]:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            try:
                if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:
                    continue  # nohup: the run goes on when the session drops
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (a library caller): no signal handling
                pass
        try:
            yield
        finally:
            for sig, handler in self._old.items():
                signal.signal(sig, handler)


def _leave_hung_up_terminal() -> None:
    """Point stdout and stderr at /dev/null when they are a terminal that hung up (a write to
    it fails); a terminal still there (a SIGHUP sent by hand) keeps them."""
    for fd in (1, 2):
        try:
            os.write(fd, b"")
        except OSError:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)


class Runner:
    """One job, from its checks to its summary: `run` checks, locks, starts or resumes the job
    and walks it chunk by chunk; the chunk strategy says what each chunk runs."""

    def __init__(
        self,
        db: Db,
        settings: Settings,
        spec: JobSpec,
        hook: Hook | None = None,
        progress: Any = None,
    ) -> None:
        if db.dry_run and not spec.dry_run:
            raise ValueError("a Db in dry-run mode runs only a dry run: set JobSpec.dry_run")
        self.db = db
        self.s = settings
        self.spec = spec
        self.direction = as_direction(spec.direction)
        # The one switch of a dry run: the statements a chunk yields are rendered, not run.
        self.dry_run = spec.dry_run
        self.planned: list[str] = []
        self.hook = hook
        self.progress = progress
        self.log = get_logger(direction=spec.direction)
        self.signals = _Signals()
        self.warnings: list[str] = []
        self.guard_tables: list[str] = []
        self.pending = Pending()
        self.job: Job | None = None
        # Set when the chunk just recorded found the job cancelled by `jobs cancel`.
        self.cancelled: Cancelled | None = None
        self.started = self.state_read = time.monotonic()
        self.cursor = 0
        ids = spec.selection.ids
        # A job of a few explicit ids runs beside the big one (archiver.claims).
        self.small = not spec.dry_run and claims.small(
            ids.count if ids is not None else None, settings
        )
        self.identity_hash = checkpoint.identity_of(spec.identity(settings.chunk_size))[0]
        self.timings = Timings()
        self.tuning: dict[str, dict[str, Any]] = {}

    # --- set-up --------------------------------------------------------------------------

    def tables(self) -> tuple[Table, Table]:
        live, archive = require_tables(self.db, self.s.live_table, self.s.archive_table)
        src, dst = (live, archive) if self.direction == ARCHIVE else (archive, live)
        check_lossless(src, dst)
        flags = self.spec.flags
        update = flags.update and self.direction == ARCHIVE
        self.warnings += check_triggers(src, dst, insert=flags.insert, update=update)
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
            if mysql_errno(exc) == ER_STATEMENT_TIMEOUT:
                raise BadInput(
                    "--where took longer than archive.statement_timeout "
                    f"({self.s.statement_timeout}s) to plan (EXPLAIN); make it cheaper"
                ) from None
            raise BadInput(f"--where is not a valid condition: {complaint(exc)}") from None
        # The session's statement timeout, when shorter, bounds the evaluation too.
        seconds = min(5, self.s.statement_timeout or 5)
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
        if self.direction != ARCHIVE:
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
            held = checkpoint.pending_ids(self.db, job.job_id)
            self.pending.ids = checkpoint.pending(self.db, job.job_id, held)
            self._use_tuning(job)
            self.log.info(
                "job_resumed",
                job_id=job.job_id,
                cursor=job.cursor,
                chunks=job.chunks,
                tuning=self.tuning,
            )
            return self._walk_job_ids(checkpoint.get_job(self.db, job.job_id))
        crit = spec.selection.criteria
        params: dict[str, Any] = {"criteria": crit.resolved} if crit is not None else {}
        if spec.client is not None:  # the API key that asked for it: who may see the job
            params["client"] = spec.client
        if spec.tuning:  # kept for its resumes, which take them unless given other values
            params["tuning"] = dict(spec.tuning)
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
                    fault("staging", n)
        self._use_tuning(None)
        self.log.info("job_started", job_id=job_id, name=spec.name, tuning=self.tuning)
        return self._walk_job_ids(checkpoint.get_job(self.db, job_id))

    def _use_tuning(self, job: Job | None) -> None:
        """The tuning in force and where each value came from: a flag of this run, the job
        (the flags it was started with, kept in its params), or the settings (defaults, the
        config file, the environment), which are read afresh each run. A resumed job runs
        with its own; the strategy and the throttle are made with the result."""
        kept = job.params.get("tuning", {}) if job is not None else {}
        from_job = {
            TUNING[name]: value
            for name, value in kept.items()
            if name in TUNING and name not in self.spec.tuning
        }
        if from_job:
            self.s = _with_paths(self.s, from_job)
            self.strategy.delete_batch = self.s.delete_batch
        self.tuning = {
            name: {
                "value": _setting(self.s, path),
                "from": "flag"
                if name in self.spec.tuning
                else ("job" if path in from_job else "settings"),
            }
            for name, path in TUNING.items()
        }
        self.plan.append("tuning: " + describe_tuning(self.tuning))

    def _unfinished(self) -> Job | None:
        """A dry run's look (reads only) at the unfinished job a real run would resume, for
        the tuning it would run with."""
        if "archiver_jobs" not in checkpoint.present_tables(self.db):
            return None
        identity = self.spec.identity(self.s.chunk_size)
        job = checkpoint.find_unfinished(
            self.db, self.spec.name, checkpoint.identity_of(identity)[0]
        )
        return job if job is not None and job.identity == identity else None

    def _walk_job_ids(self, job: Job) -> Job:
        """From here on an id-list job walks its ids from the checkpoint (not from the input,
        which a resumed job may no longer have)."""
        if job.explicit:
            self.spec = replace(self.spec, selection=Selection(ids=job_ids(self.db, job)))
        return job

    # --- one chunk -----------------------------------------------------------------------

    def _at(self, point: str, chunk_no: int, ids: Sequence[int]) -> None:
        if self.hook is not None:
            self.hook(point, self.db, ids)
        fault(point, chunk_no)

    def chunk(
        self, walker: Walker, job: Job | None, chunk_no: int, size: int
    ) -> tuple[list[int], dict[int, Outcome]]:
        """Read and run the next chunk; returns its ids and each id's outcome (no ids: the
        walk is over). On InnoDB all of it is one transaction, from the read that locks the
        chunk's rows to the checkpoint rows."""
        self.db.tag_job(job.job_id if job is not None else None, chunk_no)
        held: list[int] = []
        try:
            with self.db.transaction(self.strategy.atomic and not self.dry_run):
                c = self._scan(walker, job, chunk_no, size)
                if not c.ids:
                    self.cursor = max(self.cursor, c.cursor)
                    return [], {}
                held = self._claim(c)
                self._at("scan", chunk_no, c.ids)
                result = self._drive(self.strategy.steps(c), chunk_no, c.ids)
                self._record(job, chunk_no, c.ids, result, c.cursor)
        finally:
            if held:
                self._release(held)
        self.cursor = c.cursor
        return c.ids, result

    def _claim(self, c: Chunk) -> list[int]:
        """A big job claims its chunk's leads after the scan, without waiting: those another
        job holds are left alone (`Chunk.busy`). A small job holds its leads' claims from its
        start (archiver.claims). Returns the claims to release after the chunk."""
        if self.small or self.dry_run:
            return []
        got = claims.take(self.db, self.s, c.ids, 0)
        c.busy = set(c.ids) - got
        if c.busy:
            self.log.info("leads_busy", chunk=c.no, leads=sorted(c.busy)[:20])
        return sorted(got)

    def _release(self, held: list[int]) -> None:
        try:
            claims.release(self.db, self.s, held)
        except SQLAlchemyError:  # the connection is gone, and its locks with it
            pass

    def _scan(self, walker: Walker, job: Job | None, chunk_no: int, size: int) -> Chunk:
        """The next chunk's ids and the new cursor, with what its one read found (each lead's
        state before the chunk, the guards, the newest lead: `ChunkSql.scan`); on InnoDB that
        read also locks the source rows, so nothing it read can change before the chunk
        commits."""
        select = self.strategy.scan_sql
        if self.pending.ids:
            # A MyISAM chunk cut part-way is redone first: its leads, with every lead the
            # selection now holds among them, in chunks of the usual size (moved leads are no
            # longer in the source; one that left the selection is read below). The walk goes
            # on after the last of them.
            top = max(self.pending.ids)
            with self.timings.timed("scan"):
                ids, rows = walker.rows_through(self.cursor, top, select, limit=size)
            upto = ids[-1] if len(ids) >= size else top
            ids = sorted(set(ids) | {i for i in self.pending.ids if i <= upto})
            cursor = max(upto, self.cursor)
        else:
            with self.timings.timed("scan"):
                ids, rows, cursor = walker.next_rows(self.cursor, size, select)
        c = Chunk(
            no=chunk_no,
            ids=ids,
            cursor=cursor,
            job_id=job.job_id if job is not None else None,
            criteria=self.spec.selection.criteria,
            show=self.dry_run and not self.planned,  # a dry run shows its first chunk's SQL
        )
        return self.strategy.read_scan(c, rows)

    def _drive(self, steps: Steps[T], chunk_no: int, ids: Sequence[int]) -> T:
        """Run a strategy's steps: each statement executed (rendered in a dry run) and its
        result sent back; the hook and fault points fired at each point and after each
        statement, by name."""
        reply: Any = None
        try:
            while True:
                item = steps.send(reply)
                if isinstance(item, Point):
                    reply = None
                    self._at(item.name, chunk_no, item.ids)
                    continue
                reply = self._execute(item)
                self._at(item.name, chunk_no, item.params.get("ids", ids))
        except StopIteration as done:
            result: T = done.value
            return result
        except TablesChanged as exc:
            raise self._schema_changed(exc, chunk_no, ids) from None

    def _execute(self, stmt: Stmt) -> Any:
        """The one place a chunk's statements run: rows back for a read, the row count for a
        write, each timed by its name (--statistics). A dry run runs the reads and renders the
        rest into the plan."""
        with self.timings.timed(stmt.name):
            return self._run_stmt(stmt)

    def _run_stmt(self, stmt: Stmt) -> Any:
        db = self.db
        if self.dry_run and stmt.kind != "read":
            shown = stmt.shown if stmt.kind == "literal" else db.render(stmt.sql, stmt.params)
            self.planned.append(shown)
            return 0
        if stmt.kind == "read":
            return db.rows(stmt.sql, stmt.params)
        if stmt.kind == "literal":
            return db.write_literal(stmt.sql, stmt.shown)
        if stmt.kind == "write":
            return db.write(stmt.sql, stmt.params)
        raise ValueError(f"{stmt.name}: a {stmt.kind} statement runs only in a dry run")

    def _schema_changed(
        self, exc: TablesChanged, chunk_no: int, ids: Sequence[int]
    ) -> SchemaChanged:
        """The error that stops a job whose tables changed under it, naming each change."""
        changes = [
            f"{table.name}: {describe_change(table, reflect(self.db, table.name))}"
            for table in exc.tables
        ]
        if exc.then is not None:
            self._execute(exc.then)
            self._at(exc.then.name, chunk_no, ids)
        return SchemaChanged(
            f"a table changed during the run ({'; '.join(changes)}); the statements that "
            "met the change deleted nothing. Run the same command again: it reads the "
            "tables again and checks them before it goes on"
        )

    def _record(
        self,
        job: Job | None,
        chunk_no: int,
        ids: list[int],
        result: dict[int, Outcome],
        cursor: int,
    ) -> None:
        counts = Counter(str(o) for o in result.values())
        not_moved = {i: str(o) for i, o in result.items() if o not in MOVED}
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
            # Recorded even when `jobs cancel` ended the job meanwhile: the chunk ran, its
            # leads moved, and every count shown must say so; the job stops after it.
            with self.timings.timed("checkpoint"):
                cancelled = checkpoint.record_chunk(
                    self.db,
                    job,
                    rec,
                    self.totals + counts,
                    clear_pending=self.pending.written or bool(self.pending.ids),
                )
            if cancelled:
                self.cancelled = Cancelled(f"{job.label} was cancelled (`jobs cancel`)")
            self._at("checkpoint", chunk_no, ids)
            self.pending.ids = {i for i in self.pending.ids if i > cursor}
            self.pending.written = False
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

    def stop_waiting(self) -> str | None:
        """Asked between the slices of every wait between chunks: the stop reason, if any;
        raises Cancelled once `jobs cancel` ended the job (its state read at most once a
        second)."""
        reason = self.stop_reason()
        if reason or self.job is None:
            return reason
        now = time.monotonic()
        if now - self.state_read >= 1.0:
            self.state_read = now
            cancelled = checkpoint.cancelled_meanwhile(self.db, self.job)
            if cancelled is not None:
                raise cancelled
        return None

    def stop_reason(self) -> str | None:
        if self.signals.reason:
            return self.signals.reason
        if self._sentinel() and not self.dry_run:  # a dry run plans, and warns of it
            return f"the sentinel file {self.spec.sentinel} exists (--sentinel)"
        if self.s.max_runtime and time.monotonic() - self.started >= self.s.max_runtime:
            return f"--max-runtime of {self.s.max_runtime:g}s reached"
        # A dry run writes nothing: it plans the whole selection whatever the time.
        if not (self.spec.ignore_window or self.dry_run) and not window.is_open(self.s.window):
            return f"the off-hours window ({window.describe(self.s.window)}) closed"
        return None

    def _sentinel(self) -> bool:
        return self.spec.sentinel is not None and os.path.exists(self.spec.sentinel)

    def run(self) -> Summary:
        from archiver.throttle import Throttle

        sql = self._prepare()
        self.totals: Counter[str] = Counter()
        self.run_counts: Counter[str] = Counter()
        self.report_writer: _Report | None = None
        job: Job | None = None
        # A statement that runs on (a costly --where) fails the job instead of holding the job
        # lock for hours; the server ends it even if this process is killed.
        set_statement_timeout(self.db, self.s.statement_timeout)
        if not self.dry_run:  # first: a run refused by the lock writes nothing, DDL included
            self._lock()
        try:
            if not self.dry_run:
                with self.timings.timed("checkpoint"):
                    checkpoint.ensure_tables(self.db)
            # Held pairs (`ChunkSql.held_expr`) are read wherever the table is.
            sql.holds = "archiver_pending" in checkpoint.present_tables(self.db)
            if not self.dry_run:
                with self.timings.timed("checkpoint"):
                    job = self.job = self._job()
                if not self.strategy.atomic:  # MyISAM: its own copies prove the lead
                    sql.job_id = job.job_id
                self.totals.update(job.counts)
                self._resolve_criteria(job)
            else:
                self._use_tuning(self._unfinished())
            self._announce(sql)
            report = self.report_writer = _Report(self.spec.report)
            try:
                summary = self._loop(
                    sql,
                    job,
                    Throttle(self.db, self.s.throttle, self.s.chunk_size, self.stop_waiting),
                )
            except ArchiverError as exc:
                report.close()
                if report.error:
                    exc.message = f"{exc.message}; {report.error}"
                raise
            report.close()
            summary.report_error = report.error
            summary.cutoffs = {c.key: c.iso for c in self.cutoffs}
            summary.selected = self.selected
            return summary
        finally:
            if not self.dry_run:
                self._unlock()

    def _lock(self) -> None:
        """A big job takes the job lock of the database (one at a time); a small one (a few
        explicit ids) runs beside it, holding its own identity's lock and its leads' claims
        for the whole run (archiver.claims)."""
        if not self.small:
            checkpoint.lock(self.db, self.s)
            return
        ids = self.spec.selection.ids
        assert ids is not None
        claims.lock_job(self.db, self.s, self.identity_hash)
        try:
            claims.claim_all(self.db, self.s, ids.after(0, ids.count))
        except BaseException:
            claims.unlock_job(self.db, self.s, self.identity_hash)
            raise

    def _unlock(self) -> None:
        if not self.small:
            checkpoint.unlock(self.db, self.s)
            return
        try:  # RELEASE_ALL_LOCKS would also release a caller's: name each one
            ids = self.spec.selection.ids
            if ids is not None:
                claims.release(self.db, self.s, ids.after(0, ids.count))
            claims.unlock_job(self.db, self.s, self.identity_hash)
        except SQLAlchemyError:  # the connection is gone, and its locks with it
            pass

    def _prepare(self) -> ChunkSql:
        """Everything checked before the lock, so a refused run writes nothing: the tables,
        the overrides, the selection, the --where, the window, the guards, the report; then
        the strategy for the two tables' engines and the plan."""
        from archiver import selection

        # First: the --where checks below run it (EXPLAIN included), and every statement that
        # carries it must be bounded.
        set_statement_timeout(self.db, self.s.statement_timeout)
        src, dst = self.tables()
        check_overrides(dst, self.spec.overrides)
        self._resolve_criteria(None)
        # A value is known when either lead table holds it: a status the nightly job has
        # archived every lead of is still a status.
        both = (src.name, dst.name) if self.direction == ARCHIVE else (dst.name, src.name)
        self.warnings += selection.check_scope(self.db, self.spec.selection.criteria, both)
        spec = self.spec
        sql = ChunkSql(spec.direction, src, dst, spec.overrides)
        self._check_where(sql)
        if not spec.dry_run and not spec.ignore_window and not window.is_open(self.s.window):
            raise Stopped(
                f"not started: outside the off-hours window ({window.describe(self.s.window)}); "
                "run inside it or pass --ignore-window for a one-off run"
            )
        if self._sentinel():
            held = f"the sentinel file {spec.sentinel} exists (--sentinel)"
            if not spec.dry_run:
                raise Stopped(f"{held}: no job starts while it does; remove it and run again")
            self.warnings.append(f"{held}: a real run would not start")
        self._find_guards()
        if spec.report:  # an unwritable report is bad input: refuse it before any write
            _check_report(spec.report)
        self.strategy: ChunkStrategy = choose(src, dst)(
            sql,
            spec.flags,
            guards=self.guard_tables,
            newest=self.s.guards.safe_auto_increment,
            overrides=bool(spec.overrides),
            delete_batch=self.s.delete_batch,
            dry_run=self.dry_run,
            pending=self.pending,
        )
        self.plan = self._plan(src, dst)
        self._drive(self.strategy.begin(), 0, [])
        return sql

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

    def _announce(self, sql: ChunkSql) -> None:
        """Before any lead is written: every cut-off as the date and time it resolved to, with
        its zone, and how many leads the selection holds now (as VICIdial's
        ADMIN_archive_leads.pl prints `CALL DATE OVERRIDE` and `Leads to be archived`)."""
        from archiver import selection
        from archiver.errors import StatementTimeout

        crit = self.spec.selection.criteria
        self.cutoffs = selection.cutoffs(self.db, crit)
        self.selection_lines = [c.line for c in self.cutoffs]
        self.selected: int | None = None
        try:
            self.selected = selection.count_selected(self.db, self.spec.selection, sql.src.name)
            shown = str(self.selected)
        except DBAPIError as exc:
            if not isinstance(classify_error(exc), StatementTimeout):
                raise
            # A costly --where: the first chunk, which reads the same condition, says so.
            shown = "not counted (a statement ran longer than archive.statement_timeout)"
            self.log.warning("selection_not_counted", table=sql.src.name, reason=shown)
        self.selection_lines.append(f"leads selected now in {sql.src.name}: {shown}")
        self.plan += self.selection_lines
        self.log.info(
            "selection",
            cutoffs={c.key: c.iso for c in self.cutoffs},
            selected=self.selected,
            table=sql.src.name,
        )

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
        lines = [
            f"{spec.direction}: {src.name} ({src.engine}) → {dst.name} ({dst.engine})",
            self.strategy.guarantee,
            f"selection: {json.dumps(spec.selection.canonical(), sort_keys=True)}",
            f"steps: {', '.join(steps) or 'none'}; chunk size {self.s.chunk_size}",
        ]
        if flags.insert:
            lines.append(f"copy: {self.strategy.copy_path()}")
        if spec.overrides:
            given = ", ".join(f"{k}={v}" for k, v in sorted(spec.overrides.items()))
            lines.append(f"restored leads get: {given}")
        if spec.optimize_min is not None:
            op, _ = self.strategy.sql.optimize()
            lines.append(
                f"then: {op} TABLE {src.name} if the run moves more than "
                f"{spec.optimize_min:,} leads (--optimize)"
            )
        if spec.direction == ARCHIVE:
            lines.append(
                f"guards: {', '.join(self.guard_tables) or 'none'}; newest lead kept: "
                f"{'yes' if self.s.guards.safe_auto_increment else 'no'}"
            )
        return lines

    # Over 60 lines: one loop and the one place each way it can end becomes a Summary.
    def _loop(self, sql: ChunkSql, job: Job | None, throttle: Any) -> Summary:
        walker = Walker(self.db, self.spec.selection, sql.src.name)
        self.cursor = job.cursor if job else 0
        first_chunk = chunk_no = job.chunks if job else 0
        first_id, last_id = walker.bounds()
        leads, size = 0, self.s.chunk_size
        state: JobState = "done"
        reason: str | None = None
        planned: list[str] = []
        try:
            with self.signals.installed():
                last_ms: float | None = None
                while True:
                    # No chunk starts after a stop request: a signal before the first one, any
                    # stop (the pause wakes for it) between chunks.
                    if last_ms is not None:  # between chunks only, never after the last one
                        with self.timings.timed("wait"):
                            throttle.pause(last_ms)
                        reason = self.stop_reason()
                    else:
                        reason = self.signals.reason or (
                            self.stop_reason() if self._sentinel() else None
                        )
                    if reason:
                        state = "stopped"
                        break
                    if job is not None:  # no chunk starts once the job is cancelled
                        with self.timings.timed("checkpoint"):
                            cancelled = checkpoint.cancelled_meanwhile(self.db, job)
                        if cancelled is not None:
                            raise cancelled
                    self.chunk_started = time.monotonic()
                    ids, result = self._retrying(walker, job, chunk_no + 1, size)
                    if not ids:
                        break
                    chunk_no += 1
                    ms = self.chunk_ms()
                    leads += len(ids)
                    if self.dry_run and not planned:
                        planned = list(self.planned)
                    self._log_chunk(chunk_no, ids, result, ms, leads, first_id, last_id)
                    if self.cancelled is not None:
                        raise self.cancelled
                    reason = self.stop_reason()
                    if reason:
                        state = "stopped"
                        break
                    if walker.exhausted() and not self.pending.ids:
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
            with self.timings.timed("checkpoint"):
                self._end(job, state, reason)
        if state == "done" and self.spec.optimize_min is not None and not self.dry_run:
            self._optimize(sql, self.run_counts)
        seconds = time.monotonic() - self.started
        summary = Summary(
            direction=self.direction,
            job_id=job.job_id if job else None,
            state=state,
            counts=self.run_counts,
            job_counts=self.totals,
            leads=leads,
            chunks=chunk_no - first_chunk,
            seconds=seconds,
            dry_run=self.dry_run,
            stop_reason=reason,
            sql=planned,
            warnings=self.warnings,
            plan=self.plan,
            throttle_slept_s=getattr(throttle, "slept_s", 0.0),
            tuning=self.tuning,
            statistics=self.timings.statistics(seconds) if self.spec.statistics else None,
        )
        self.log.info("summary", **summary.as_dict())
        return summary

    def _optimize(self, sql: ChunkSql, counts: Counter[str]) -> None:
        """--optimize: after a run that moved more leads than the threshold, OPTIMIZE TABLE
        the source (ANALYZE TABLE on InnoDB: `ChunkSql.optimize`), logged with its duration.
        Only inside the window, whatever --ignore-window says: it locks the table. The leads have
        moved whatever it answers: an error it reports (as rows, or raised) is a warning."""
        moved = sum(n for outcome, n in counts.items() if outcome in MOVED)
        threshold = self.spec.optimize_min
        op, text = sql.optimize()
        table = sql.src.name
        if threshold is None or moved <= threshold:
            self.log.info("optimize_skipped", table=table, moved=moved, threshold=threshold)
            return
        # Even with --ignore-window: the table stays locked until it ends (minutes on a
        # large MyISAM table), which a dialer's day cannot take.
        if not window.is_open(self.s.window):
            msg = (
                f"{op} TABLE {table} skipped: outside the off-hours window "
                f"({window.describe(self.s.window)}), and it locks the table; it runs after "
                "a run inside the window"
            )
            self.warnings.append(msg)
            self.log.warning("optimize_skipped", table=table, reason="outside the off-hours window")
            return
        self.db.tag_job(self.job.job_id if self.job is not None else None)
        started = time.monotonic()
        error: str | None
        try:
            rows = self._execute(Stmt("optimize", text, kind="read"))
        except DBAPIError as exc:
            rows, error = [], _db_failure(exc)
        else:
            bad = [str(r[3]) for r in rows if str(r[2]).lower() == "error"]
            error = "; ".join(bad) or None
        seconds = round(time.monotonic() - started, 3)
        messages = [f"{r[2]}: {r[3]}" for r in rows]
        if error is not None:
            self.warnings.append(f"{op} TABLE {table} failed: {error}")
            self.log.error("optimize_failed", table=table, op=op, seconds=seconds, error=error)
            return
        self.log.info(
            "optimize", table=table, op=op, moved=moved, seconds=seconds, messages=messages
        )

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
        self, walker: Walker, job: Job | None, chunk_no: int, size: int
    ) -> tuple[list[int], dict[int, Outcome]]:
        attempt = 0
        while True:
            try:
                return self.chunk(walker, job, chunk_no, size)
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
        result: dict[int, Outcome],
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
            counts=dict(Counter(str(o) for o in result.values())),
            ms=round(ms, 1),
            rate_per_s=round(rate, 1),
            progress=round(done, 4),
            eta_s=None if eta is None else round(eta, 1),
        )
        if self.progress is not None:
            self.progress(done, rate, eta, Counter(self.run_counts))


def _check_report(path: str) -> None:
    """BadInput unless the report can be written when the job starts, found without touching
    it (a run refused later, by the lock or the window, leaves the last report as it was): a
    file is made and removed where the report's temporary file will be."""
    try:
        if _in_place(path):
            os.close(os.open(path, os.O_WRONLY))  # no O_TRUNC: the file stays as it is
            return
        fd, tmp = _temp_beside(os.path.realpath(path))
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise BadInput(f"cannot write the report {path}: {exc.strerror}") from None


def _setting(settings: Settings, path: str) -> Any:
    section, _, key = path.rpartition(".")
    return getattr(getattr(settings, section) if section else settings, key)


def _with_paths(settings: Settings, values: dict[str, Any]) -> Settings:
    """The settings with these `section.key` values (only throttle.* and top-level keys)."""
    throttle = {k.partition(".")[2]: v for k, v in values.items() if k.startswith("throttle.")}
    top = {k: v for k, v in values.items() if "." not in k}
    return config.with_overrides(settings, throttle=replace(settings.throttle, **throttle), **top)


def describe_tuning(tuning: dict[str, dict[str, Any]]) -> str:
    """`sleep 0.5 (job); max-wait 60 (flag); …`: each value in force and where it came from."""
    parts = []
    for source, label in (("flag", "a flag"), ("job", "the job"), ("settings", "the settings")):
        names = [f"{n} {t['value']:g}" for n, t in tuning.items() if t["from"] == source]
        if names:
            parts.append(f"from {label}: {', '.join(names)}")
    return "; ".join(parts)


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
