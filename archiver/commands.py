"""Each command as one typed function: settings and option objects in, a result out.

`cli.py` parses, calls one of these and prints; `serve.py` calls the same ones for the Lead
Archive API. A function that runs a job returns its Summary whatever the job's state, and
`outcome_error` says which error kind that state is (Stopped, Failed, Cancelled) for the
caller to report: the CLI as an exit code, the server as an HTTP answer. An exception means
nothing was done (refused input, the lock held, no database) or a check failed.

A function that needs the database opens one connection from the settings, unless the caller
passes its own (`db=`): the server's connections have its own timeouts.
"""

from __future__ import annotations

import getpass
import io
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, replace
from typing import Any

import pymysql
from sqlalchemy.exc import DBAPIError

from archiver import checkpoint, config, exportfile, request, schema
from archiver import doctor as doctor_checks
from archiver.checkpoint import lock_name
from archiver.db import Db, connect, make_engine, q
from archiver.errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    ArchiverError,
    BadInput,
    Cancelled,
    Failed,
    Stopped,
)
from archiver.faults import fault
from archiver.idlist import IdSet, parse_id, read_ids
from archiver.jobtypes import ARCHIVE, DEARCHIVE, Flags, JobSpec, Summary
from archiver.logging import get_logger
from archiver.options import (
    RestoreArgs,
    ResumeArgs,
    RunArgs,
    SearchArgs,
    SelectionArgs,
    StepsArgs,
    VerifyArgs,
)
from archiver.runner import run_job, spec_from_job
from archiver.schema import Column, Drift, Table
from archiver.search import Located, SearchResult
from archiver.selection import Selection
from archiver.verify import VerifyReport

Progress = Callable[[float, float, float | None, Any], None]
Show = Callable[[Summary], None]


@contextmanager
def open_db(settings: config.Settings, *, dry_run: bool = False) -> Iterator[Db]:
    engine = make_engine(settings)
    conn = connect(engine, settings)
    try:
        yield Db(conn, dry_run=dry_run)
    finally:
        try:
            conn.close()
        except DBAPIError:
            pass
        engine.dispose()


def _connection(
    settings: config.Settings, db: Db | None, dry_run: bool = False
) -> AbstractContextManager[Db]:
    return nullcontext(db) if db is not None else open_db(settings, dry_run=dry_run)


# --- the job's end -----------------------------------------------------------------------


def resume_hint(summary: Summary) -> str:
    if summary.job_id is None:
        return "nothing was written"
    return (
        f"job {summary.job_id} is resumable: run the same command again or "
        f"`jobs resume {summary.job_id}`"
    )


# How a signal's stop reads to the person who sent it.
_SIGNAL_WORDS = {"stopped by SIGINT": "stopped by Ctrl-C (SIGINT)"}


def stop_line(summary: Summary) -> str:
    """A stopped or cancelled job's end, as a person reads it: what stopped it, after how much
    work, and how to go on: `stopped by Ctrl-C (SIGINT) after 7 chunks (2,100 leads examined);
    resume with: vicidial-archiver jobs resume 12`."""
    reason = summary.stop_reason or "stopped"
    reason = _SIGNAL_WORDS.get(reason, reason)
    if summary.state != "cancelled" and not reason.startswith("stopped"):
        reason = f"stopped: {reason}"
    chunks = f"{summary.chunks:,} chunk{'' if summary.chunks == 1 else 's'}"
    leads = f"{summary.leads:,} lead{'' if summary.leads == 1 else 's'} examined"
    done = f"{reason}, after {chunks} ({leads})"
    if summary.state == "cancelled":
        return f"{done}; it stopped for good: a new run starts a new job"
    if summary.job_id is None:
        return f"{done}; nothing was written"
    return (
        f"{done}; resume with: vicidial-archiver jobs resume {summary.job_id} "
        "(or run the same command again)"
    )


def outcome_error(summary: Summary) -> ArchiverError | None:
    """The error kind a job's end maps to, None for a job done (and its report written)."""
    reason = summary.stop_reason
    error: ArchiverError | None = None
    if summary.state == "cancelled":
        error = Cancelled(stop_line(summary))
    elif summary.state == "stopped":
        error = Stopped(stop_line(summary))
    elif summary.state == "failed":
        error = Failed(f"{reason}; {resume_hint(summary)}")
    if summary.report_error:
        if error is None:
            return Failed(f"{summary.report_error}; the job itself is {summary.state}")
        error.message = f"{error.message}; {summary.report_error}"
    return error


# --- selection ---------------------------------------------------------------------------


def build_selection(
    settings: config.Settings, args: SelectionArgs
) -> tuple[Selection, Flags | None]:
    """The selection from arguments, file, request or criteria; the request's step flags."""
    limit = settings.id_limit
    if args.request_path:
        raw, name = _read_request(args.request_path, request.body_cap(limit))
        req = request.parse_named(raw, name, limit)
        return Selection.from_ids(req.lead_ids), req.flags
    if args.ids_file:
        return Selection(ids=_read_ids_file(args.ids_file, args.column)), None
    if args.lead_ids:
        # Any number: the limit is the Lead Archive API's (--request, serve).
        ids = (
            parse_id(t)
            for arg in args.lead_ids
            for t in arg.split(",")
            if t.strip() or _bad_empty(arg)
        )
        return Selection.from_ids(ids), None
    return Selection(criteria=args.criteria().resolve()), None


def _read_request(path: str, cap: int) -> tuple[bytes, str]:
    """The bytes of a --request body, read no further than `cap` (a path to /dev/zero ends
    at once with exit 2)."""
    name = "stdin" if path == "-" else path
    try:
        if path == "-":
            return request.read_bounded(sys.stdin.buffer, cap), name
        with open(path, "rb") as fh:
            return request.read_bounded(fh, cap), name
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror}") from None
    except request.RequestError as exc:
        raise BadInput(f"{name}: {exc.message}") from None


def _read_ids_file(path: str, column: str | None) -> IdSet:
    """Every id of the file (or stdin), validated, sorted and de-duplicated in bounded memory."""
    if path == "-":
        stdin = getattr(sys.stdin, "buffer", None) or io.BytesIO(sys.stdin.read().encode())
        return read_ids(stdin, "stdin", column)
    try:
        with open(path, "rb") as fh:
            return read_ids(fh, path, column)
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror}") from None


def _bad_empty(arg: str) -> bool:
    raise BadInput(f"invalid lead id list {arg!r}: lead ids are whole numbers separated by commas")


# --- archive, dearchive ------------------------------------------------------------------


def archive(
    settings: config.Settings,
    selection: Selection,
    steps: StepsArgs,
    run: RunArgs,
    *,
    db: Db | None = None,
    progress: AbstractContextManager[Progress] | None = None,
    show: Show | None = None,
) -> Summary:
    """Move the selected leads into the archive, verified chunk by chunk."""
    spec = _spec(ARCHIVE, selection, steps.flags, run)
    return _run(settings, spec, run, db=db, progress=progress, show=show)


def dearchive(
    settings: config.Settings,
    selection: Selection,
    steps: StepsArgs,
    run: RunArgs,
    restore: RestoreArgs,
    *,
    progress: AbstractContextManager[Progress] | None = None,
    show: Show | None = None,
) -> Summary:
    """Move the selected leads back into vicidial_list (there is nothing to refresh)."""
    flags = Flags(steps.insert, False, steps.delete)
    spec = _spec(DEARCHIVE, selection, flags, run, restore.overrides)
    return _run(settings, spec, run, progress=progress, show=show)


def _spec(
    direction: str,
    selection: Selection,
    flags: Flags,
    run: RunArgs,
    overrides: dict[str, Any] | None = None,
) -> JobSpec:
    return JobSpec(
        direction=direction,
        selection=selection,
        flags=flags,
        overrides=overrides or {},
        name=run.job_name,
        dry_run=run.dry_run,
        report=run.report,
        ignore_window=run.ignore_window,
        client=run.client,
        tuning=run.tuning,
        sentinel=run.control.sentinel,
        statistics=run.control.statistics,
        optimize_min=run.control.optimize_after,
    )


def _run(
    settings: config.Settings,
    spec: JobSpec,
    run: RunArgs,
    *,
    db: Db | None = None,
    progress: AbstractContextManager[Progress] | None = None,
    show: Show | None = None,
) -> Summary:
    """Run the job; then `show` its summary, and write the metrics file and the admin log row
    when asked. Both are checked before the job: a run that cannot write them does not run."""
    from archiver import audit

    if run.metrics_file and not spec.dry_run:
        audit.check_metrics_file(run.metrics_file)
    with _connection(settings, db, spec.dry_run) as conn:
        if run.admin_log and not spec.dry_run:
            audit.check_admin_log(conn)
        if progress is not None:
            with progress as update:
                summary = run_job(conn, settings, spec, progress=update)
        else:
            summary = run_job(conn, settings, spec)
        if show is not None:
            show(summary)
        try:
            _after_run(conn, summary, run)
        except Failed as late:
            if outcome_error(summary) is None:
                raise
            # The job's own error stays the one reported.
            get_logger().error("after_run_failed", error=str(late))
    return summary


def _after_run(db: Db, summary: Summary, run: RunArgs) -> None:
    from archiver import audit

    if summary.dry_run:
        return
    late: Failed | None = None
    if run.metrics_file:
        try:
            audit.write_metrics(run.metrics_file, summary, time.time())
        except OSError as exc:
            # The job has run: its work stands and the summary is shown, so this is a
            # failure (exit 1), not bad input. Writability was checked before the job.
            msg = f"cannot write --metrics-file {run.metrics_file}: {exc.strerror}"
            late = Failed(f"{msg}; the job itself ended {summary.state}")
    if run.admin_log:  # written whatever became of the metrics
        audit.write_admin_log(db, summary, run.user or getpass.getuser())
    if late is not None:
        raise late


def lead_dearchive(settings: Callable[[], config.Settings], raw: str, user: str) -> tuple[str, int]:
    """VICIdial's lead_dearchive, line for line, and its exit code: one lead back. The states
    are read first, as VICIdial does; the move is the verified chunk (explicit columns, delete
    only where equal), run as a job like any other. `settings` is loaded only for a lead id
    VICIdial would take."""
    lead = "".join(ch for ch in raw if ch in "0123456789")  # isdigit() also takes '²'
    if not 1 <= len(lead) <= 11:
        return f"ERROR: lead_dearchive INVALID SEARCH PARAMETERS: {user}|{lead}", EXIT_BAD_INPUT
    s = settings()
    with open_db(s) as db:
        return _dearchive_one(db, s, int(lead), user)


def _dearchive_one(db: Db, settings: config.Settings, lead: int, user: str) -> tuple[str, int]:
    live, archive_t = schema.require_tables(db, settings.live_table, settings.archive_table)
    rows = db.rows(f"SELECT `list_id` FROM `{archive_t.name}` WHERE `lead_id` = :l", {"l": lead})
    if not rows:
        return f"ERROR: lead_dearchive ARCHIVED LEAD NOT FOUND: {user}|{lead}||", EXIT_FAILED
    if db.rows(f"SELECT 1 FROM `{live.name}` WHERE `lead_id` = :l", {"l": lead}):
        line = f"ERROR: lead_dearchive NON-ARCHIVED LEAD FOUND: {user}|{lead}|{rows[0][0]}"
        return line, EXIT_FAILED
    spec = JobSpec(
        direction=DEARCHIVE,
        selection=Selection.from_ids([lead]),
        flags=Flags(insert=True, update=False, delete=True),
        ignore_window=True,
    )
    summary = run_job(db, settings, spec)
    error = outcome_error(summary)
    if error is not None:
        raise error
    inserted = (
        0
        if summary.counts.get("already_live")
        else int(sum(summary.counts[k] for k in ("dearchived", "kept_changed", "refreshed")))
    )
    deleted = summary.counts.get("dearchived", 0)
    return f"SUCCESS: lead_dearchive LEAD DE-ARCHIVED: {user}|{lead}|{inserted}|{deleted}", 0


# --- search, verify ----------------------------------------------------------------------


def search(settings: config.Settings, args: SearchArgs) -> SearchResult:
    """VICIdial's lead_search: the lines it prints and its exit code."""
    from archiver import search as lead_search

    method = lead_search.PHONE_NUMBER if args.codes is None else lead_search.VENDOR_LEAD_CODE
    table = settings.archive_table if args.archived else settings.live_table
    with open_db(settings) as db:
        return lead_search.search(
            db,
            table,
            args.text,
            user=args.user or getpass.getuser(),
            records=args.records,
            header=args.header,
            method=method,
            scope=args.scope(),
        )


def every_lead() -> Selection:
    """`verify --all`: no condition, every lead of both tables."""
    from archiver.selection import Criteria

    return Selection(criteria=Criteria())


def locate(settings: config.Settings, args: SearchArgs) -> Located:
    """The leads of each phone number or code in both tables (or the archive alone), and
    where each one is."""
    from archiver import search as lead_search

    method = lead_search.PHONE_NUMBER if args.codes is None else lead_search.VENDOR_LEAD_CODE
    with open_db(settings) as db:
        return lead_search.locate(
            db,
            settings.live_table,
            settings.archive_table,
            args.text,
            archived_only=args.archived,
            records=args.records,
            method=method,
            scope=args.scope(),
        )


def verify(settings: config.Settings, selection: Selection, args: VerifyArgs) -> VerifyReport:
    """Compare live and archive, byte for byte, for a selection. Reads only."""
    from archiver import verify as verify_mod

    with open_db(settings) as db:
        return verify_mod.verify(
            db,
            settings.live_table,
            settings.archive_table,
            selection,
            chunk_size=settings.chunk_size,
            list_limit=args.limit,
        )


# --- schema ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SchemaCheck:
    live: Table
    archive: Table
    drift: Drift


def schema_check(settings: config.Settings) -> SchemaCheck:
    with open_db(settings) as db:
        live, archive_t = schema.require_tables(db, settings.live_table, settings.archive_table)
        return SchemaCheck(live, archive_t, schema.drift(live, archive_t))


@dataclass(frozen=True)
class SchemaInit:
    existed: bool
    planned: list[str]  # the statements, when only printed


def schema_init(settings: config.Settings, *, print_only: bool = False) -> SchemaInit:
    """Create the archive table (LIKE the live one) and the checkpoint tables."""
    with open_db(settings, dry_run=print_only) as db:
        exists = schema.reflect(db, settings.archive_table) is not None
        if schema.reflect(db, settings.live_table) is None:
            raise BadInput(f"table {settings.live_table!r} does not exist; check --dsn")
        statements = (
            [] if exists else schema.init_archive_ddl(settings.live_table, settings.archive_table)
        )
        for stmt in statements:
            db.write(stmt)
        checkpoint.ensure_tables(db)
        return SchemaInit(exists, list(db.planned))


def schema_sync(
    settings: config.Settings, *, apply: bool, show: Callable[[list[str]], None]
) -> list[str]:
    """The ALTER TABLE statements that let the archive hold every live column; `show` sees
    them before they run (with `apply`). Never drops or narrows anything."""
    with open_db(settings) as db:
        live, archive_t = schema.require_tables(db, settings.live_table, settings.archive_table)
        statements = schema.sync_ddl(live, archive_t)
        show(statements)
        if apply:
            for stmt in statements:
                db.write(stmt)
    return statements


# --- doctor ------------------------------------------------------------------------------


def doctor(settings: config.Settings, origins: dict[str, str]) -> doctor_checks.Report:
    """The settings in force with their origins, then each check a nightly run meets."""
    report = doctor_checks.Report(doctor_checks.settings_lines(settings, origins))
    try:
        with open_db(settings) as db:
            doctor_checks.examine(db, settings, report)
    except ArchiverError as exc:  # cannot connect: the one check that says why
        report.checks.append(doctor_checks.Check("connect", False, str(exc)))
    return report


# --- jobs --------------------------------------------------------------------------------


def jobs_list(
    settings: config.Settings, limit: int, *, db: Db | None = None, client: str | None = None
) -> list[checkpoint.Job]:
    """The newest jobs first (none without the checkpoint tables); with `client`, only the
    jobs that API key started."""
    with _connection(settings, db) as conn:
        return checkpoint.list_jobs(conn, limit, client=client)


def jobs_overview(settings: config.Settings, limit: int) -> list[dict[str, Any]]:
    """The newest jobs first, each as `jobs show` describes it (without its chunks); a
    `running` job says whether its process still holds the job lock."""
    with open_db(settings) as db:
        return [
            checkpoint.describe_job(j, [], alive=checkpoint.holds_lock(db, settings, j))
            for j in checkpoint.list_jobs(db, limit)
        ]


def job(settings: config.Settings, ref: str | int, *, db: Db | None = None) -> checkpoint.Job:
    """One job by id or name; BadInput when there is none."""
    with _connection(settings, db) as conn:
        return checkpoint.get_job(conn, ref)


def job_details(settings: config.Settings, ref: str) -> dict[str, Any]:
    """What `jobs show` prints: state, counts, rate, the last chunks."""
    with open_db(settings) as db:
        found = checkpoint.get_job(db, ref)
        chunks = checkpoint.chunks_of(db, found.job_id, 5)
        alive = checkpoint.holds_lock(db, settings, found)
    return checkpoint.describe_job(found, chunks, alive=alive)


def job_leads(
    settings: config.Settings, ref: str, outcome: str | None
) -> Iterator[tuple[int, str]]:
    """Every lead of a job not moved (with `outcome`, or any), a page at a time."""
    with open_db(settings) as db:
        found = checkpoint.get_job(db, ref)
        yield from checkpoint.iter_leads(db, found.job_id, outcome)


def jobs_resume(settings: config.Settings, args: ResumeArgs) -> Summary:
    """Resume an unfinished job with the selection, flags and tuning it was started with
    (tuning flags given here win, for this run)."""
    if args.max_runtime_s is not None:
        settings = config.with_overrides(settings, max_runtime=args.max_runtime_s)
    settings = args.tuning.apply(settings)
    with open_db(settings) as db:
        found = checkpoint.get_job(db, args.ref)
        spec = spec_from_job(db, found, ignore_window=args.ignore_window, report=args.report)
        control = args.control
        spec = replace(
            spec,
            tuning=args.tuning.given(),
            sentinel=control.sentinel,
            statistics=control.statistics,
            optimize_min=control.optimize_after,
        )
        settings = config.with_overrides(settings, chunk_size=found.identity["chunk_size"])
        return run_job(db, settings, spec)


def jobs_cancel(settings: config.Settings, ref: str, *, force: bool = False) -> checkpoint.Job:
    """Mark an unfinished job cancelled; a running job stops at its next chunk."""
    with open_db(settings) as db:
        found = checkpoint.get_job(db, ref)
        holder = db.scalar("SELECT IS_USED_LOCK(:n)", {"n": lock_name(settings)})
        conn = db.scalar(
            "SELECT connection_id FROM archiver_jobs WHERE job_id = :j", {"j": found.job_id}
        )
        running = found.state == "running" and holder is not None and holder == conn
        checkpoint.cancel(db, found, running=running, force=force)
    return found


def jobs_prunable(
    settings: config.Settings, older_than_s: float
) -> tuple[Any, list[checkpoint.Job]]:
    """The cut-off and the finished jobs `jobs_prune` would delete; reads only."""
    with open_db(settings) as db:
        return checkpoint.prunable(db, older_than_s)


def jobs_prune(
    settings: config.Settings, older_than_s: float, job_ids: list[int] | None = None
) -> int:
    """Delete finished jobs older than the cut-off (only `job_ids` of them, when given), with
    their rows; how many."""
    with open_db(settings) as db:
        return checkpoint.prune(db, older_than_s, job_ids)


# --- export, import, purge (the file format: archiver/exportfile.py) ---------------------


@dataclass
class FileResult:
    """What `export`, `import` and `purge` did: counts by outcome, leads, time."""

    command: str
    path: str
    counts: dict[str, int]
    leads: int
    seconds: float
    file_bytes: int = 0
    dry_run: bool = False
    sql: list[str] | None = None
    state: str = "done"
    stop_reason: str | None = None

    @property
    def rate(self) -> float:
        return self.leads / self.seconds if self.seconds > 0 else 0.0

    @property
    def exit_error(self) -> ArchiverError | None:
        if self.stop_reason:
            return Stopped(self.stop_reason)
        failed = self.counts.get("failed", 0)
        if failed:
            return Failed(
                f"{failed} lead(s) were written to the table but do not read back equal to the "
                "file (a column that cannot hold the value?); the file is unchanged"
            )
        return None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "command": self.command,
            "file": self.path,
            "dry_run": self.dry_run,
            "counts": dict(sorted(self.counts.items())),
            "leads": self.leads,
            "seconds": round(self.seconds, 3),
            "rate_per_s": round(self.rate, 1),
            "state": self.state,
            "stop_reason": self.stop_reason,
        }
        if self.command == "export":
            out["file_bytes"] = self.file_bytes
            out["manifest"] = exportfile.manifest_path(self.path)
        if self.sql is not None:
            out["sql"] = self.sql
        return out


def _bytes_select(table: Table) -> Callable[[str], str]:
    exprs = ", ".join(exportfile.bytes_expr(c, "s") for c in table.columns)

    def select(where: str) -> str:
        return f"SELECT s.`lead_id`, {exprs} FROM {q(table.name)} AS s WHERE {where}"

    return select


def export(
    settings: config.Settings, selection: Selection, path: str, *, force: bool = False
) -> FileResult:
    """Write the selected archived leads to `path` (exportfile's format) and its manifest.

    Reads only. The file is written under a temporary name beside the target, synced, then
    read back and compared with the archive row by row; only then are it and its manifest
    renamed to the target. A lead changed or removed in the archive while it was exported
    fails the export (exit 1, naming the lead): nothing is left under the target's name."""
    from archiver.selection import Walker, check_scope

    started = time.monotonic()
    exportfile.check_target(path, force)
    with open_db(settings) as db:
        archive_t = schema.reflect(db, settings.archive_table)
        if archive_t is None:
            raise BadInput(f"table {settings.archive_table!r} does not exist; check --dsn")
        if not any(c.name.lower() == "lead_id" for c in archive_t.columns):
            raise BadInput(f"table {archive_t.name!r} has no lead_id column")
        check_scope(db, selection.criteria, (settings.live_table, archive_t.name))
        select = _bytes_select(archive_t)
        walker = Walker(db, selection, archive_t.name)
        size = settings.chunk_size
        try:
            writer = exportfile.Writer(path, archive_t)
        except OSError as exc:
            raise BadInput(f"cannot write beside {path}: {exc.strerror}") from None
        try:
            after, chunk_no, missing = 0, 0, 0
            while True:
                ids, rows, after = walker.next_rows(after, size, select)
                if not ids:
                    break
                chunk_no += 1
                missing += len(ids) - len(rows)  # explicit ids the archive does not hold
                for row in sorted(rows, key=lambda r: int(r[0])):
                    writer.write(int(row[0]), [_as_bytes(v) for v in row[1:]])
                fault("export_write", chunk_no)
                if selection.criteria is not None and walker.exhausted():
                    break
            created = str(db.scalar("SELECT DATE_FORMAT(UTC_TIMESTAMP(), '%Y-%m-%dT%TZ')"))
            manifest = writer.close(settings.db.database, created)
            _read_back(db, writer.tmp, manifest, size)
            fault("export_publish", 1)
            exportfile.check_target(path, force)  # nothing took the name in the meantime
            writer.publish(manifest)
        except OSError as exc:  # a full disk, EIO
            writer.discard()
            raise Failed(
                f"cannot write {path}: {exc.strerror}; nothing was written under that name"
            ) from None
        except BaseException:
            writer.discard()
            raise
    seconds = time.monotonic() - started
    get_logger().info("exported", file=path, leads=manifest.row_count, bytes=manifest.file_bytes)
    return FileResult(
        "export",
        path,
        {"exported": manifest.row_count, **({"not_archived": missing} if missing else {})},
        manifest.row_count,
        seconds,
        file_bytes=manifest.file_bytes,
    )


def _as_bytes(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")


def _read_back(db: Db, tmp: str, manifest: exportfile.Manifest, size: int) -> None:
    """Each row of the written file equal, byte for byte, to the archive's row now."""
    table = Table(manifest.table, "", None, manifest.columns, (), None)
    select = _bytes_select(table)
    for chunk in exportfile.chunks(exportfile.read_rows(tmp, manifest), size):
        ids = [int(row[manifest.lead_index] or b"0") for row in chunk]
        now = {
            int(r[0]): [_as_bytes(v) for v in r[1:]]
            for r in db.rows(select("s.`lead_id` IN :ids"), {"ids": ids})
        }
        for lead, row in zip(ids, chunk, strict=True):
            if now.get(lead) != row:
                raise Failed(
                    f"lead {lead} changed in {manifest.table} (or left it) while it was "
                    "exported; nothing was written under the target name: run the export again"
                )


def _file_columns(
    manifest: exportfile.Manifest, target: Table, path: str, *, exact: bool
) -> list[Column]:
    """The target's columns in the file's order, each able to hold the file's values with
    the same bytes; with `exact`, the target has exactly the file's columns (a purge)."""
    out: list[Column] = []
    for col in manifest.columns:
        own = target.column(col.name)
        if own is None:
            raise BadInput(
                f"{path} holds column {col.name!r}, which {target.name} does not have; "
                "add it (schema sync) or use a table with every column of the file"
            )
        problem = schema.lossless_problem(col, own)
        if problem is None and (col.charset or None) != (own.charset or None):
            problem = f"is {col.charset} in the file but {own.charset} in the table"
        if exact and problem is None and col.column_type != own.column_type:
            problem = f"is {col.column_type} in the file but {own.column_type} in the table"
        if problem:
            raise BadInput(
                f"column {col.name!r} {problem}; its values would not be the file's bytes"
            )
        out.append(own)
    if exact:
        extra = [
            c.name
            for c in target.columns
            if not any(m.name.lower() == c.name.lower() for m in manifest.columns)
        ]
        if extra:
            raise BadInput(
                f"{target.name} has columns the file does not hold ({', '.join(extra)}); a "
                "purge would delete values no file keeps: export again, then purge"
            )
    return out


def _equal_ids(db: Db, table: str, columns: list[Column], chunk: list[list[Any]]) -> set[int]:
    """The leads of the chunk whose row in `table` equals the file's on every column."""
    sql = (
        f"SELECT t.`lead_id` FROM {q(table)} AS t JOIN {exportfile.rows_table(columns, chunk)}"
        f" AS f ON {exportfile.equal_to(columns, 't', 'f')}"
    )
    # Sent as it is (its values are literals): not parsed for bind parameters, as
    # Db.write_literal does for the INSERT and the DELETE.
    started = time.perf_counter()
    cursor = db.conn.connection.cursor()
    try:
        cursor.execute(sql)
        ids = {int(r[0]) for r in cursor.fetchall()}
    except pymysql.err.Error as exc:
        raise DBAPIError.instance(sql[:300], None, exc, pymysql.err.Error) from exc
    finally:
        cursor.close()
    ms = round((time.perf_counter() - started) * 1000, 2)
    get_logger().debug("sql", sql=sql[:300], ms=ms, rows=len(ids))
    return ids


def _ids_in(db: Db, table: str, ids: list[int]) -> set[int]:
    rows = db.rows(f"SELECT `lead_id` FROM {q(table)} WHERE `lead_id` IN :ids", {"ids": ids})
    return {int(r[0]) for r in rows}


def import_file(settings: config.Settings, path: str, into: str = "archive") -> FileResult:
    """Put an export back: each lead of the file missing from the table (the archive, or
    `into="live"`) is inserted, then every lead is compared with the file by value. A lead
    present with other data is a `conflict` and is never overwritten; a lead in the other
    table stays where it is (`in_live` / `in_archive`). The file and its manifest are
    checked whole before anything is written."""
    started = time.monotonic()
    manifest = exportfile.check(path)
    counts: dict[str, int] = {}
    with open_db(settings) as db:
        live, archive_t = schema.require_tables(db, settings.live_table, settings.archive_table)
        target, other = (live, archive_t) if into == "live" else (archive_t, live)
        columns = _file_columns(manifest, target, path, exact=False)
        # A generated column computes its own value: not written, compared all the same.
        written = [
            i for i, c in enumerate(columns) if "generated" not in c.extra.replace("default_", "")
        ]
        names = ", ".join(q(columns[i].name) for i in written)
        lead_i = manifest.lead_index
        chunk_no = 0
        for chunk in exportfile.chunks(exportfile.read_rows(path, manifest), settings.chunk_size):
            ids = [int(row[lead_i] or b"0") for row in chunk]
            present = _ids_in(db, target.name, ids)
            elsewhere = _ids_in(db, other.name, ids) - present
            missing = [
                row
                for lead, row in zip(ids, chunk, strict=True)
                if lead not in present and lead not in elsewhere
            ]
            if missing:
                values = ",".join(
                    "(" + ", ".join(exportfile.literal(columns[i], row[i]) for i in written) + ")"
                    for row in missing
                )
                # IGNORE: a row that appeared since it was looked up is left as it is; the
                # comparison below tells it apart.
                sql = f"INSERT IGNORE INTO {q(target.name)} ({names}) VALUES {values}"
                db.write_literal(sql, f"INSERT IGNORE INTO {q(target.name)} … {len(missing)} rows")
                chunk_no += 1
                fault("import_insert", chunk_no)
            check = [row for lead, row in zip(ids, chunk, strict=True) if lead not in elsewhere]
            equal = _equal_ids(db, target.name, columns, check) if check else set()
            for lead in ids:
                if lead in elsewhere:
                    outcome = "in_live" if into == "archive" else "in_archive"
                elif lead in equal:
                    outcome = "already_present" if lead in present else "imported"
                else:
                    outcome = "conflict" if lead in present else "failed"
                counts[outcome] = counts.get(outcome, 0) + 1
            get_logger().debug("import_chunk", leads=len(ids), last_lead_id=ids[-1])
    seconds = time.monotonic() - started
    return FileResult("import", path, counts, manifest.row_count, seconds)


def _purge_sql(table: str, columns: list[Column], rows: list[list[Any]], guard: str) -> str:
    """The proof and the delete in one statement: a row goes only where it equals the file's
    row, every column byte for byte, and only while the table has the columns compared."""
    return (
        f"DELETE a FROM {q(table)} AS a JOIN {exportfile.rows_table(columns, rows)} AS f"
        f" ON {exportfile.equal_to(columns, 'a', 'f')}\nWHERE {guard}"
    )


def purge(
    settings: config.Settings,
    path: str,
    *,
    dry_run: bool = False,
    ignore_window: bool = False,
    report: str | None = None,
) -> FileResult:
    """Delete archived leads that the export file proves: each row only by a statement that
    compares every column with the file's bytes (NULL-safe), so a lead changed since the
    export is kept (`kept_changed`) and one already gone is `absent`. The file and its
    manifest are checked whole first; the job lock is held throughout. Outside the off-hours
    window it refuses to start (Stopped) unless `ignore_window`; when the window closes it
    stops after the chunk (`state` "stopped"). It keeps no checkpoint: a run killed or
    stopped anywhere converges when run again (rows deleted are simply absent the next
    time). `report`: a CSV of every lead not purged, with its outcome."""
    from archiver import window
    from archiver.steps import ChunkSql

    started = time.monotonic()
    manifest = exportfile.check(path)
    counts: dict[str, int] = {}
    planned: list[str] = []
    state = "done"
    out: _ReportFile | None = None
    try:
        with open_db(settings) as db:
            archive_t = schema.reflect(db, settings.archive_table)
            if archive_t is None:
                raise BadInput(f"table {settings.archive_table!r} does not exist; check --dsn")
            if archive_t.name != manifest.table:
                raise BadInput(
                    f"{path} is an export of {manifest.table!r}, not of {archive_t.name!r}; "
                    "purge the table it was exported from"
                )
            columns = _file_columns(manifest, archive_t, path, exact=True)
            # The statement deletes nothing once the archive's columns change (an ALTER since).
            guard = ChunkSql(ARCHIVE, archive_t, archive_t).schema_guard()
            closed = not (dry_run or ignore_window or window.is_open(settings.window))
            if closed:
                raise Stopped(
                    f"outside the off-hours window ({window.describe(settings.window)}); "
                    "run inside it or pass --ignore-window for a one-off run"
                )
            if not dry_run:
                checkpoint.lock(db, settings)
            chunk_no = 0
            try:
                if report and not dry_run:
                    out = _open_report(report)
                for chunk in exportfile.chunks(
                    exportfile.read_rows(path, manifest), settings.chunk_size
                ):
                    closing = chunk_no and not (dry_run or ignore_window)
                    if closing and not window.is_open(settings.window):
                        state = "stopped"
                        break
                    chunk_no += 1
                    outcomes = _purge_chunk(
                        db, archive_t.name, columns, manifest, chunk, guard, dry_run, planned
                    )
                    fault("purge_delete", chunk_no)
                    for lead, outcome in outcomes:
                        counts[outcome] = counts.get(outcome, 0) + 1
                        if out is not None and outcome != "purged":
                            out.writerow([lead, outcome])
            finally:
                if not dry_run:
                    checkpoint.unlock(db, settings)
    finally:
        if out is not None:
            out.close()
    seconds = time.monotonic() - started
    return FileResult(
        "purge",
        path,
        counts,
        sum(counts.values()),
        seconds,
        dry_run=dry_run,
        sql=planned if dry_run else None,
        state=state,
        stop_reason=(
            f"the off-hours window ({window.describe(settings.window)}) closed; run the same "
            "purge again in the next window (leads already purged count as absent)"
            if state == "stopped"
            else None
        ),
    )


def _purge_chunk(
    db: Db,
    table: str,
    columns: list[Column],
    manifest: exportfile.Manifest,
    chunk: list[list[Any]],
    guard: str,
    dry_run: bool,
    planned: list[str],
) -> list[tuple[int, str]]:
    """One chunk of the file: its proven rows deleted (or, in a dry run, the statement kept
    for display); each lead's outcome."""
    ids = [int(row[manifest.lead_index] or b"0") for row in chunk]
    present = _ids_in(db, table, ids)
    equal: set[int] = set()
    # A value longer than a derived table of literals holds (MariaDB wraps its length modulo
    # 65,536 bytes, silently) cannot be compared byte for byte: such a row is kept.
    long = {lead for lead, row in zip(ids, chunk, strict=True) if exportfile.too_long(row)}
    proven = [
        row for lead, row in zip(ids, chunk, strict=True) if lead in present and lead not in long
    ]
    left = present
    if proven and dry_run:
        equal = _equal_ids(db, table, columns, proven)
        if not planned:  # the first chunk's statement, two of its rows shown
            planned.append(
                _purge_sql(table, columns, proven[:2], guard)
                + f"\n-- the derived table f holds all {len(proven)} rows of the"
                " chunk; two are shown"
            )
    elif proven:
        sql = _purge_sql(table, columns, proven, guard)
        db.write_literal(sql, f"DELETE … {len(proven)} proven rows")
        left = _ids_in(db, table, ids)
    outcomes = []
    for lead in ids:
        if lead not in present:
            outcome = "absent"
        elif lead in long:
            outcome = "too_long"
        elif dry_run:
            outcome = "would_purge" if lead in equal else "kept_changed"
        else:
            outcome = "kept_changed" if lead in left else "purged"
        outcomes.append((lead, outcome))
    get_logger().debug("purge_chunk", leads=len(ids), last_lead_id=ids[-1])
    return outcomes


class _ReportFile:
    """purge --report: `lead_id,outcome` for every lead not purged, written as it goes."""

    def __init__(self, path: str) -> None:
        import csv

        self.fh = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115
        self.csv = csv.writer(self.fh, lineterminator="\n")
        self.csv.writerow(["lead_id", "outcome"])

    def writerow(self, row: list[Any]) -> None:
        self.csv.writerow(row)

    def close(self) -> None:
        self.fh.close()


def _open_report(path: str) -> _ReportFile:
    try:
        return _ReportFile(path)
    except OSError as exc:
        raise BadInput(f"cannot write --report {path}: {exc.strerror}") from None
