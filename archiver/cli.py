"""click commands: parse into option objects, load settings, call one function of
archiver.commands, print its result; map every error kind to its exit code in one place.

No other module imports click. Every error a user can cause is an ArchiverError and ends as one
`Error: …` line on stderr with its exit code (a report command's failed check ends with its
exit code alone); `--debug` re-raises with the traceback. A job stopped on purpose (exit 3) is
no error: its line says `stopped …` (with JSON logs: the runner's `summary` event, or one
`stopped` event); a closed stdout pipe (`| head`) ends the command quietly, exit 0.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import click
from sqlalchemy.exc import DBAPIError

from archiver import commands, config, sqlshow, timings
from archiver import logging as alog
from archiver.checkpoint import describe_job
from archiver.db import classify_error
from archiver.doctor import Report as DoctorReport
from archiver.errors import (
    EXIT_CODES,
    EXIT_STOPPED,
    REPORT_EXIT_CODE,
    ArchiverError,
    BadInput,
    ChecksFailed,
)
from archiver.jobtypes import MOVED, OUTCOMES, Summary
from archiver.options import (
    OPTIMIZE_MIN,
    ControlArgs,
    RestoreArgs,
    ResumeArgs,
    RunArgs,
    SearchArgs,
    SelectionArgs,
    StepsArgs,
    TuningArgs,
    VerifyArgs,
)
from archiver.proctitle import hide_password_in_process_title


@dataclass
class Ctx:
    config_path: str | None
    dsn: str | None
    astguiclient: str | None
    log_format: str | None
    verbose: bool
    debug: bool

    def settings(self, **overrides: Any) -> config.Settings:
        return config.load_settings(
            config_path=self.config_path,
            dsn=self.dsn,
            astguiclient=self.astguiclient,
            overrides={"log_format": self.log_format, **overrides},
        )


def not_utf8(argv: list[str], environ: Mapping[str, str]) -> str | None:
    """What is not UTF-8 text among the arguments and the ARCHIVER_* environment, if any.

    Python decodes bytes that are not UTF-8 as lone surrogates, which fail later wherever the
    text is encoded (SQL, logs, the process title): such input is refused before anything is
    done."""
    for i, arg in enumerate(argv, 1):
        if _has_surrogate(arg):
            name = ""
            if arg.startswith("-") and "=" in arg:
                name = f" ({arg.split('=', 1)[0]})"
            elif i > 1 and argv[i - 2].startswith("-") and "=" not in argv[i - 2]:
                name = f" (the value of {argv[i - 2]})"
            return f"argument {i}{name} is not valid UTF-8 text; give every argument as UTF-8"
    for key, value in sorted(environ.items()):
        if not key.startswith("ARCHIVER_"):
            continue
        if _has_surrogate(key):
            return "the name of an ARCHIVER_* environment variable is not valid UTF-8 text"
        if _has_surrogate(value):
            return f"environment variable {key} is not valid UTF-8 text; give it as UTF-8"
    return None


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class OutputClosed(Exception):
    """stdout's reader went away (`… | head -1`): the command ends quietly, exit 0."""


def _out(text: str = "") -> None:
    try:
        click.echo(text)
    except BrokenPipeError:
        _stdout_to_devnull()
        raise OutputClosed from None


def _stdout_to_devnull() -> None:
    """What is still buffered for the closed pipe goes nowhere, also at exit (no `Exception
    ignored … BrokenPipeError` there)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real file (click's test runner)
        pass


class ArchiverGroup(click.Group):
    """Maps every error a user can cause to one `Error:` line and its exit code."""

    def main(self, args: Any = None, *a: Any, **kw: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        problem = not_utf8(argv, os.environ)
        if problem:  # before click parses anything: there is no context to exit through yet
            refused = BadInput(problem)
            click.echo(f"Error: {refused}", err=True)
            sys.exit(refused.exit_code)
        return super().main(argv, *a, **kw)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OutputClosed:  # the reader has what it wanted: not a failure
            ctx.exit(0)
        except ArchiverError as exc:
            self._fail(ctx, exc, str(exc))
        except DBAPIError as exc:
            kind = classify_error(exc)
            self._fail(
                ctx, kind, f"database error: {kind.detail}; run again with --debug for details"
            )

    @staticmethod
    def _fail(ctx: click.Context, kind: ArchiverError, message: str) -> None:
        """The one place an error kind becomes an exit code."""
        if kind.silent:  # the report printed says it all; --debug has no traceback to show
            ctx.exit(kind.exit_code)
        obj = ctx.obj
        if isinstance(obj, Ctx) and obj.debug and kind.exit_code != EXIT_STOPPED:
            raise  # a planned stop has no traceback worth showing
        if kind.exit_code == EXIT_STOPPED and not alog.console_format():
            # Stopped on purpose, with JSON logs: one more event, not a plain line.
            alog.get_logger().warning("stopped", message=message)
            ctx.exit(kind.exit_code)
        click.echo(f"{kind.prefix}{message}", err=True)
        ctx.exit(kind.exit_code)


def _exit_codes_epilog() -> str:
    lines = [f"  {code}  {words}" for code, words in EXIT_CODES]
    return "\b\nExit codes:\n" + "\n".join(lines) + f"\n  {REPORT_EXIT_CODE}"


@click.group(
    cls=ArchiverGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=_exit_codes_epilog(),
)
@click.option(
    "--config",
    "config_path",
    metavar="PATH",
    help="TOML settings (default ./vicidial-archiver.toml, then /etc/…).",
)
@click.option(
    "--dsn",
    envvar="ARCHIVER_DSN",
    metavar="URL",
    show_envvar=True,
    help="mysql://user:pass@host:3306/asterisk (prefer ARCHIVER_DB_PASSWORD for the password).",
)
@click.option(
    "--astguiclient",
    metavar="PATH",
    help="Read VARDB_* connection settings from VICIdial's /etc/astguiclient.conf.",
)
@click.option(
    "--log-format",
    type=click.Choice(["console", "json"]),
    help="Log format on stderr (default: console on a TTY, JSON otherwise). On a TTY with "
    "console logs a progress bar is drawn and only warnings, errors and the summary are logged.",
)
@click.option(
    "-v", "--verbose", is_flag=True, help="Log every SQL statement and every chunk (no bar)."
)
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(package_name="vicidial-archiver")
@click.pass_context
def cli(
    ctx: click.Context,
    config_path: str | None,
    dsn: str | None,
    astguiclient: str | None,
    log_format: str | None,
    verbose: bool,
    debug: bool,
) -> None:
    """Move VICIdial leads between vicidial_list and vicidial_list_archive, verified."""
    # ARCHIVER_DSN is read by click here and again by config (same value, same precedence).
    ctx.obj = Ctx(config_path, dsn, astguiclient, log_format, verbose, debug)
    alog.configure(log_format or "auto", verbose)


# --- selection and job options -----------------------------------------------------------


def selection_options(f: Callable[..., Any]) -> Callable[..., Any]:
    return _apply_selection(f)


# Old spellings, refused with the new one named: never read with another meaning.
RENAMED = {
    "--with-status": (
        "--with-status is now --status: --status selects leads by status in every command "
        "(archive, dearchive, verify); comma lists and repetition both work"
    ),
    "--called-count": (
        "--called-count is now --set-called-count N (it sets called_count on every restored lead)"
    ),
    "--reset": ("--reset is now --reset-called (restored leads get called_since_last_reset='N')"),
}


def _renamed(old: str, *, flag: bool = False) -> Callable[..., Any]:
    def refuse(_ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        if value:
            raise BadInput(RENAMED[old])
        return value

    return click.option(
        old,
        "renamed_" + old.strip("-").replace("-", "_"),
        is_flag=flag,
        multiple=not flag,
        hidden=True,
        expose_value=False,
        callback=refuse,
    )


def _apply_selection(f: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.argument("lead_ids", nargs=-1),
        click.option(
            "--ids-file",
            metavar="PATH",
            help="One lead id a line, or a CSV/TSV export with a header; - reads stdin.",
        ),
        click.option(
            "--ids-column",
            metavar="NAME",
            multiple=True,
            help="The --ids-file header's column of lead ids (default lead_id).",
        ),
        click.option(
            "--request",
            "request_path",
            metavar="PATH",
            help="A Lead Archive API JSON body (lead_ids + step booleans); - reads stdin.",
        ),
        click.option(
            "--list-id",
            "list_ids",
            multiple=True,
            metavar="ID[,ID…]",
            help="Leads of these lists. Repeatable, or comma-separated.",
        ),
        click.option(
            "--campaign",
            "campaigns",
            multiple=True,
            metavar="ID[,ID…]",
            help="The campaign's lists (vicidial_lists.campaign_id). Repeatable, or "
            "comma-separated.",
        ),
        click.option(
            "--status",
            "statuses",
            multiple=True,
            metavar="S[,S…]",
            help="Leads with this status (selects, in every command). Repeatable, or "
            "comma-separated.",
        ),
        _renamed("--with-status"),
        click.option(
            "--entry-before",
            metavar="DATE|AGE",
            help="entry_date before: a date (2024-01-01, 2024-01-01 18:00, today, yesterday) or "
            "an age (90d, 12w, 6mo, 1y, 12h).",
        ),
        click.option(
            "--last-call-before",
            metavar="DATE|AGE",
            help="last_local_call_time before (as --entry-before); NULL never matches.",
        ),
        click.option(
            "--modified-before", metavar="DATE|AGE", help="modify_date before (as --entry-before)."
        ),
        click.option("--where", metavar="SQL", help="A raw condition on the source table (DBAs)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def job_options(f: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option("--insert/--no-insert", "do_insert", default=True, help="Copy missing leads."),
        click.option(
            "--delete/--no-delete",
            "do_delete",
            default=True,
            help="Delete source rows that have an equal copy.",
        ),
        click.option("--chunk-size", type=int, metavar="N", help="Leads per chunk, 1–500 (500)."),
        _delete_batch_option(),
        click.option("--dry-run", is_flag=True, help="Show the plan and counts; write nothing."),
        click.option(
            "--report", metavar="PATH", help="CSV of every lead not moved, with its outcome."
        ),
        click.option(
            "--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout."
        ),
        click.option("--job-name", metavar="NAME", help="Resume the unfinished job of this name."),
        click.option("--ignore-window", is_flag=True, help="Run outside the off-hours window."),
        click.option("--max-runtime", metavar="DURATION", help="Stop cleanly after e.g. 2h."),
        *_throttle_options(),
        click.option(
            "--metrics-file",
            metavar="PATH",
            help="Write a Prometheus textfile (node_exporter) at the end.",
        ),
        click.option(
            "--admin-log",
            is_flag=True,
            help="Write one vicidial_admin_log row for the run, as VICIdial does.",
        ),
        *_control_options(),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


# The job's tuning (--delete-batch and the throttle): kept with a new job and used again
# when it resumes (by `jobs resume`, or by the same command run again), unless given again.
def _delete_batch_option() -> Callable[..., Any]:
    return click.option(
        "--delete-batch",
        type=int,
        metavar="N",
        help="MyISAM: delete a chunk in statements of at most N leads (100; 0: one).",
    )


def _throttle_options() -> list[Callable[..., Any]]:
    return [
        click.option(
            "--sleep", metavar="S", help="Seconds to sleep between chunks (at most 3600)."
        ),
        click.option(
            "--sleep-coef", type=float, metavar="C", help="Sleep C × last chunk time (C ≤ 100)."
        ),
        click.option(
            "--max-threads-running",
            type=int,
            metavar="N",
            help="Wait while Threads_running is above N.",
        ),
        click.option("--max-replica-lag", metavar="S", help="Wait while a replica lags more."),
        click.option("--max-wait", metavar="DURATION", help="Give up waiting after this (exit 3)."),
        click.option(
            "--chunk-time",
            type=int,
            metavar="MS",
            help="Size chunks (≤ 500) to this statement time.",
        ),
    ]


def _control_options() -> list[Callable[..., Any]]:
    """Per run, never kept with the job."""
    return [
        click.option(
            "--sentinel",
            metavar="PATH",
            help="Stop at the next chunk (exit 3, resumable) once this file exists; "
            "refuse to start while it does.",
        ),
        click.option(
            "--statistics",
            is_flag=True,
            help="At the end, time per statement kind (count, ms, share): on stderr, and in "
            "the --json summary.",
        ),
        click.option(
            "--optimize",
            is_flag=True,
            help="After a run that moved more than --optimize-min leads, OPTIMIZE TABLE the "
            "source (ANALYZE TABLE on InnoDB); inside the window only: it locks the table.",
        ),
        click.option(
            "--optimize-min",
            type=int,
            metavar="N",
            help=f"The leads a run must move for --optimize (default {OPTIMIZE_MIN:,}).",
        ),
    ]


def _control(kw: Mapping[str, Any]) -> ControlArgs:
    return ControlArgs(
        sentinel=kw["sentinel"],
        statistics=kw["statistics"],
        optimize=kw["optimize"],
        optimize_min=kw["optimize_min"],
    )


def _selection(kw: Mapping[str, Any]) -> SelectionArgs:
    return SelectionArgs(
        lead_ids=tuple(kw["lead_ids"]),
        ids_file=kw["ids_file"],
        ids_column=tuple(kw["ids_column"]),
        request_path=kw["request_path"],
        list_ids=tuple(kw["list_ids"]),
        campaigns=tuple(kw["campaigns"]),
        statuses=tuple(kw["statuses"]),
        entry_before=kw["entry_before"] or "",
        last_call_before=kw["last_call_before"] or "",
        modified_before=kw["modified_before"] or "",
        where=kw["where"] or "",
    )


def _tuning(kw: Mapping[str, Any]) -> TuningArgs:
    return TuningArgs(
        chunk_size=kw["chunk_size"],
        delete_batch=kw["delete_batch"],
        max_runtime=kw["max_runtime"],
        sleep=kw["sleep"],
        sleep_coef=kw["sleep_coef"],
        max_threads_running=kw["max_threads_running"],
        max_replica_lag=kw["max_replica_lag"],
        max_wait=kw["max_wait"],
        chunk_time=kw["chunk_time"],
        safe_auto_increment=kw.get("safe_auto_increment"),
        no_guard=tuple(kw.get("no_guard") or ()),
    )


def _run_args(kw: Mapping[str, Any]) -> RunArgs:
    return RunArgs(
        job_name=kw["job_name"],
        dry_run=kw["dry_run"],
        report=kw["report"],
        ignore_window=kw["ignore_window"],
        metrics_file=kw["metrics_file"],
        admin_log=kw["admin_log"],
        user=kw.get("user"),
        tuning=_tuning(kw).given(),
        control=_control(kw),
    )


@contextmanager
def _bar(keep: tuple[str, ...]) -> Iterator[commands.Progress]:
    """A progress bar on stderr for the job's run; under it only warnings and errors are
    logged, and the events named in `keep`."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TextColumn("{task.fields[rate]:>8.0f} leads/s"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
        redirect_stdout=False,  # stdout carries results only, never the bar's console
    )
    task = bar.add_task("moving", total=1.0, rate=0.0)

    def update(done: float, rate: float, _eta: float | None, counts: Any) -> None:
        bar.update(task, completed=done, rate=rate)

    with bar, alog.through_bar(bar.console, keep):
        yield update


def _progress(ctx: Ctx) -> AbstractContextManager[commands.Progress] | None:
    # The bar is for a person reading console logs; JSON logs (asked for, or under cron) and
    # `-v` keep one event per chunk and draw no bar.
    if not (sys.stderr.isatty() and alog.console_format() and not ctx.verbose):
        return None
    # Under the bar the `summary` event is logged only when stdout, where the summary is
    # printed, is not this terminal: a person reads the summary once. The `selection` event
    # (the cut-offs resolved, the leads selected) is shown before anything is written.
    return _bar(("selection",) if sys.stdout.isatty() else ("selection", "summary"))


def summary_line(summary: Summary, zone: str, now: datetime | None = None) -> str:
    """The end of a run as a person reads it, every count with its outcome named:
    `archive: done — 2,912 archived, 11 kept (3 kept_changed, 8 skipped_live), 2,923 leads
    examined in 6 chunks, 12.3 s (237 leads/s); job 12, ended 2026-12-05 03:12:44 EST`."""
    moved = [f"{n:,} {k}" for k, n in sorted(summary.counts.items()) if k in MOVED and n]
    kept = summary.kept
    parts = [", ".join(moved) if moved else f"0 {summary.direction}d"]
    parts.append(f"{sum(kept.values()):,} kept" + _outcomes(kept))
    absent = summary.not_in_source
    if absent:
        parts.append(f"{sum(absent.values()):,} not in the source table" + _outcomes(absent))
    examined = f"{_count(summary.leads, 'lead')} examined in {_count(summary.chunks, 'chunk')}"
    took = f"{summary.seconds:,.1f} s ({summary.rate:,.0f} leads/s)"
    local = (now or datetime.now(UTC)).astimezone(ZoneInfo(zone))
    when = local.strftime("%Y-%m-%d %H:%M:%S ") + (local.tzname() or zone)
    job = f"job {summary.job_id}" if summary.job_id else "no job recorded"
    head = "DRY RUN — nothing written; what a run would do: " if summary.dry_run else ""
    return (
        f"{head}{summary.direction}: {summary.state} — {', '.join(parts)}, {examined}, "
        f"{took}; {job}, ended {when}"
    )


def _outcomes(counts: Mapping[str, int]) -> str:
    """` (3 kept_changed, 8 skipped_live)`, or nothing when there are none."""
    if not counts:
        return ""
    return " (" + ", ".join(f"{n:,} {k}" for k, n in counts.items()) + ")"


def print_summary(summary: Summary, as_json: bool, zone: str = "UTC") -> None:
    """The job's end on stdout: the `--json` summary, or the plain lines for a person. With
    JSON logs (asked for, or no terminal: cron) the plain lines are not printed: the
    runner's `summary` event on stderr is the run's end there, one format per stream."""
    try:
        _print_summary(summary, as_json, zone)
    except OutputClosed:
        pass  # the job has run: its metrics, admin log and exit code still follow


def _print_summary(summary: Summary, as_json: bool, zone: str) -> None:
    if as_json:
        data = summary.as_dict()
        if summary.dry_run:
            data["sql"] = summary.sql
        _out(json.dumps(data))
        return
    if not (summary.dry_run or alog.console_format()):
        return
    if summary.dry_run:
        for line in summary.plan:
            _out(f"plan: {line}")
    _out(summary_line(summary, zone))
    for warning in summary.warnings:
        _out(f"  warning: {warning}")
    if summary.dry_run and summary.sql:
        _out("\nSQL of the first chunk, lists shortened (--json shows every statement whole):")
        for stmt in sqlshow.for_humans(summary.sql):
            _out(stmt)


def _job_settings(ctx: Ctx, kw: Mapping[str, Any]) -> config.Settings:
    base = ctx.settings()
    return _tuning(kw).apply(base)


def _end(summary: Summary) -> None:
    """A job that did not end done (or whose report failed) exits with its kind's code.
    First, with --statistics, the time per statement kind on stderr, for a person (JSON logs
    carry them in the `summary` event)."""
    if summary.statistics is not None and alog.console_format():
        for line in timings.lines(summary.statistics):
            click.echo(line, err=True)
    error = commands.outcome_error(summary)
    if error is None:
        return
    if error.exit_code == EXIT_STOPPED and not summary.report_error and not alog.console_format():
        # With JSON logs the runner's `summary` event (state, stop_reason, resume) already
        # ended the log: no second line says it again.
        click.get_current_context().exit(error.exit_code)
    raise error


# --- archive -----------------------------------------------------------------------------


@cli.command()
@selection_options
@job_options
@click.option(
    "--update/--no-update",
    "do_update",
    default=True,
    help="Refresh archive rows that differ from live.",
)
@click.option(
    "--safe-auto-increment/--no-safe-auto-increment",
    default=None,
    help="Keep the newest lead live (default on).",
)
@click.option(
    "--no-guard",
    multiple=True,
    type=click.Choice(["hopper", "auto_calls", "live_agents", "callbacks"]),
    help="Turn one live-lead guard off for this run. Repeatable.",
)
@click.pass_obj
def archive(ctx: Ctx, /, **kw: Any) -> None:
    """Move leads from vicidial_list into the archive, verified chunk by chunk.

    \b
    Examples:
      vicidial-archiver archive --campaign OLDLEADS --status NI,DNC --last-call-before 6mo --dry-run
      vicidial-archiver archive --list-id 101 --entry-before 2y --job-name nightly --max-runtime 5h
      vicidial-archiver archive 1001 1002 1003
    """
    settings = _job_settings(ctx, kw)
    selection, request_flags = commands.build_selection(settings, _selection(kw))
    steps = StepsArgs(kw["do_insert"], kw["do_update"], kw["do_delete"])
    summary = commands.archive(
        settings,
        selection,
        steps.allowed_by(request_flags),
        _run_args(kw),
        progress=_progress(ctx),
        show=lambda done: print_summary(done, kw["as_json"], settings.window.timezone),
    )
    _end(summary)


# --- dearchive ---------------------------------------------------------------------------


@cli.command()
@selection_options
@job_options
@click.option(
    "--reset-called", is_flag=True, help="Restored leads get called_since_last_reset='N'."
)
@click.option("--set-status", metavar="S", help="Restored leads get this status.")
@click.option(
    "--set-called-count", type=int, metavar="N", help="Restored leads get this called_count."
)
@_renamed("--reset", flag=True)
@_renamed("--called-count")
@click.option(
    "--user",
    default=None,
    metavar="NAME",
    help="The user named in lead_dearchive lines (default: the OS user).",
)
@click.pass_obj
def dearchive(ctx: Ctx, /, **kw: Any) -> None:
    """Move leads back from the archive into vicidial_list, verified.

    `dearchive LEAD_ID` alone prints exactly the line VICIdial's lead_dearchive API prints.

    \b
    Examples:
      vicidial-archiver dearchive 4711
      vicidial-archiver dearchive --list-id 101 --status SALE --dry-run
      vicidial-archiver dearchive --campaign OLDLEADS --set-status NEW --reset-called
    """
    if kw["statuses"] and (kw["lead_ids"] or kw["ids_file"] or kw["request_path"]):
        raise BadInput(
            "--status selects leads (as in archive and verify), so it does not go with lead ids, "
            "--ids-file or --request; to set the status of the restored leads, give --set-status"
        )
    restore = RestoreArgs(kw["reset_called"], kw["set_status"], kw["set_called_count"])
    if _lead_dearchive_call(kw, restore):
        user = kw["user"] or getpass.getuser()
        line, code = commands.lead_dearchive(ctx.settings, kw["lead_ids"][0], user)
        _out(line)
        if code:
            raise ChecksFailed(line, code)
        return
    settings = _job_settings(ctx, kw)
    selection, request_flags = commands.build_selection(settings, _selection(kw))
    steps = StepsArgs(kw["do_insert"], False, kw["do_delete"])
    summary = commands.dearchive(
        settings,
        selection,
        steps.allowed_by(request_flags),
        _run_args(kw),
        restore,
        progress=_progress(ctx),
        show=lambda done: print_summary(done, kw["as_json"], settings.window.timezone),
    )
    _end(summary)


def _lead_dearchive_call(kw: Mapping[str, Any], restore: RestoreArgs) -> bool:
    """`dearchive LEAD_ID` with nothing else that changes the job or its output: VICIdial's
    lead_dearchive call, answered with its line (the selection's options are not checked yet,
    so they are read as given)."""
    selection = (
        "ids_file",
        "ids_column",
        "request_path",
        "list_ids",
        "campaigns",
        "statuses",
        "entry_before",
        "last_call_before",
        "modified_before",
        "where",
    )
    others = ("dry_run", "report", "as_json", "job_name", "sentinel", "statistics", "optimize")
    return (
        len(kw["lead_ids"]) == 1
        and not restore.overrides
        and not any(kw[k] for k in selection)
        and not any(kw[k] for k in others)
    )


# --- schema ------------------------------------------------------------------------------


@cli.group("schema")
def schema_group() -> None:
    """Check, create and repair the archive table."""


@schema_group.command("check")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def schema_check(ctx: Ctx, as_json: bool) -> None:
    """Report drift between vicidial_list and the archive; exit 1 when a run would be refused.

    \b
    Examples:
      vicidial-archiver --astguiclient /etc/astguiclient.conf schema check
      vicidial-archiver --config /etc/vicidial-archiver.toml schema check --json
    """
    check = commands.schema_check(ctx.settings())
    live, archive_t, forward = check.live, check.archive, check.drift
    if as_json:
        _out(
            json.dumps(
                {
                    "blocking": forward.blocking,
                    "warnings": forward.warnings,
                    "engine": {"live": live.engine, "archive": archive_t.engine},
                }
            )
        )
    else:
        _out(
            f"{live.name} ({live.engine}, {live.collation}) → {archive_t.name} "
            f"({archive_t.engine}, {archive_t.collation})"
        )
        if forward.clean:
            _out("no drift: every live column fits the archive exactly")
        for item in forward.blocking:
            _out(f"BLOCKING: {item}")
        for item in forward.warnings:
            _out(f"warning: {item}")
    if forward.blocking:
        raise ChecksFailed(f"{len(forward.blocking)} blocking drift(s)")


@schema_group.command("init")
@click.option("--print", "print_only", is_flag=True, help="Print the SQL instead of running it.")
@click.pass_obj
def schema_init(ctx: Ctx, print_only: bool) -> None:
    """Create the archive table (LIKE vicidial_list, lead_id without AUTO_INCREMENT) and the
    archiver_ checkpoint tables.

    \b
    Examples:
      vicidial-archiver schema init --print
      vicidial-archiver --astguiclient /etc/astguiclient.conf schema init
    """
    settings = ctx.settings()
    done = commands.schema_init(settings, print_only=print_only)
    if print_only:
        for stmt in done.planned:
            _out(stmt + ";")
        return
    if done.existed:
        _out(f"{settings.archive_table} already exists; `schema check` reports its drift")
    else:
        _out(f"created {settings.archive_table}")
    _out("checkpoint tables ready")


@schema_group.command("sync")
@click.option("--apply", is_flag=True, help="Run the statements after showing them.")
@click.pass_obj
def schema_sync(ctx: Ctx, apply: bool) -> None:
    """Print the ALTER TABLE that lets the archive hold every live column. Never drops or
    narrows anything.

    \b
    Examples:
      vicidial-archiver schema sync
      vicidial-archiver schema sync --apply
    """

    def show(statements: list[str]) -> None:
        if not statements:
            _out("-- nothing to do: the archive holds every live column losslessly")
        for stmt in statements:
            _out(stmt + ";")

    statements = commands.schema_sync(ctx.settings(), apply=apply, show=show)
    if apply and statements:
        _out(f"-- applied {len(statements)} statement(s)")


# --- jobs --------------------------------------------------------------------------------


@cli.group("jobs")
def jobs_group() -> None:
    """The checkpoint tables: list, show, resume, cancel, prune jobs."""


def _count(n: int, noun: str) -> str:
    """`1 run`, `2 runs`, `14,285 leads`."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _when(iso: str | None, zone: str) -> str:
    """An ISO time shown in `zone` (the window's), with the zone named."""
    if iso is None:
        return "-"
    local = datetime.fromisoformat(iso).astimezone(ZoneInfo(zone))
    return local.strftime("%Y-%m-%d %H:%M:%S ") + (local.tzname() or zone)


def _state(job: Mapping[str, Any]) -> str:
    if job["process"] == "gone":
        return "running, but its process is gone (no connection holds the job lock)"
    return str(job["state"])


def _selection_text(selection: Any) -> str:
    """A job's selection as a person reads it: `list_ids=101,102, statuses=NI` or `3 lead ids`."""
    if not isinstance(selection, dict):
        return str(selection)
    if "ids_count" in selection:
        return _count(int(selection["ids_count"]), "lead id")
    parts = []
    for key, value in selection.get("criteria", selection).items():
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        parts.append(f"{key}={value}")
    return ", ".join(parts) or "-"


def _job_line(job: Mapping[str, Any], zone: str) -> str:
    counts = ",".join(f"{k}={v:,}" for k, v in job["counts"].items())
    state = "running!" if job["process"] == "gone" else job["state"]
    return (
        f"{job['job']:>6}  {(job['name'] or '-'):<16} {job['direction']:<9} {state:<9} "
        f"{job['chunks']:>7,}  {_when(job['started'], zone)}  {counts}"
    )


@jobs_group.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON array, each job typed.")
@click.pass_obj
def jobs_list(ctx: Ctx, limit: int, as_json: bool) -> None:
    """The newest jobs first. A `running!` job's process is gone: resume or cancel it.

    \b
    Examples:
      vicidial-archiver jobs list
      vicidial-archiver jobs list --limit 10 --json
    """
    settings = ctx.settings()
    jobs = commands.jobs_overview(settings, limit)
    if as_json:
        _out(json.dumps(jobs))
        return
    if not jobs:
        _out("no jobs")
        return
    zone = settings.window.timezone
    _out(f"{'job':>6}  {'name':<16} {'direction':<9} {'state':<9} {'chunks':>7}  started")
    for job in jobs:
        _out(_job_line(job, zone))
    if any(j["process"] == "gone" for j in jobs):
        _out("running! = left running by a process that is gone: `jobs resume` or `jobs cancel` it")


@jobs_group.command("show")
@click.argument("ref")
@click.option(
    "--leads",
    "outcome",
    metavar="OUTCOME",
    type=click.Choice([*OUTCOMES, "all"]),
    help="List the leads not moved with this outcome (or 'all').",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def jobs_show(ctx: Ctx, ref: str, outcome: str | None, as_json: bool) -> None:
    """One job: state, counts, rate, last chunks, stop reason.

    \b
    Examples:
      vicidial-archiver jobs show 12
      vicidial-archiver jobs show nightly --json
      vicidial-archiver jobs show 12 --leads skipped_live
    """
    settings = ctx.settings()
    if outcome:
        for lead, out in commands.job_leads(settings, ref, None if outcome == "all" else outcome):
            _out(f"{lead},{out}")
        return
    data = commands.job_details(settings, ref)
    if as_json:
        _out(json.dumps(data))
        return
    for line in _job_lines(data, settings.window.timezone):
        _out(line)


def _job_lines(data: Mapping[str, Any], zone: str) -> list[str]:
    rate = data["rate"]
    per_s = rate["leads_per_second"]
    lines = [
        f"{'job:':<14}{data['job']}",
        f"{'name:':<14}{data['name'] or '-'}",
        f"{'direction:':<14}{data['direction']}",
        f"{'state:':<14}{_state(data)}",
        f"{'selection:':<14}{_selection_text(data['selection'])}",
        f"{'flags:':<14}{', '.join(data['flags']) or '-'}",
        f"{'chunk size:':<14}{data['chunk_size']}",
        f"{'cursor:':<14}lead {data['cursor']:,}",
        f"{'chunks:':<14}{data['chunks']:,} in {_count(data['runs'], 'run')}",
        f"{'leads:':<14}{data['leads']:,}",
        f"{'rate:':<14}"
        + (
            f"{per_s:,.0f} leads/s over {rate['chunk_seconds']:,.1f} s of chunk time"
            if per_s
            else "-"
        ),
        f"{'started:':<14}{_when(data['started'], zone)}",
        f"{'ended:':<14}{_when(data['ended'], zone)}",
        f"{'heartbeat:':<14}{_when(data['heartbeat'], zone)}",
        f"{'host:':<14}{data['host']} pid {data['pid']}",
        f"{'stop reason:':<14}{data['stop_reason'] or '-'}",
        f"{'version:':<14}{data['version']}",
        "counts:",
        *(f"  {name:<18} {count:>9,}" for name, count in data["counts"].items()),
    ]
    if data["last_chunks"]:
        lines.append("last chunks:")
    for c in data["last_chunks"]:
        counts = " ".join(f"{k}={v:,}" for k, v in sorted(c["counts"].items()))
        lines.append(
            f"  #{c['chunk']} leads {c['first_lead_id']}–{c['last_lead_id']} "
            f"({c['leads']:,}) {c['ms']:,} ms {counts}"
        )
    return lines


def _resume_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed([_delete_batch_option(), *_throttle_options(), *_control_options()]):
        f = opt(f)
    return f


@jobs_group.command("resume")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True)
@click.option("--ignore-window", is_flag=True)
@click.option("--max-runtime", metavar="DURATION")
@click.option("--report", metavar="PATH")
@_resume_options
@click.pass_obj
def jobs_resume(
    ctx: Ctx,
    /,
    ref: str,
    as_json: bool,
    ignore_window: bool,
    max_runtime: str | None,
    report: str | None,
    **kw: Any,
) -> None:
    """Resume an unfinished job with the selection and flags it was started with, and its
    tuning (--sleep, --delete-batch, …): a tuning flag given here wins for this run.

    \b
    Examples:
      vicidial-archiver jobs resume 12
      vicidial-archiver jobs resume nightly --max-runtime 2h --report /tmp/kept.csv
      vicidial-archiver jobs resume 12 --sleep 0 --sentinel /run/vicidial-archiver.stop
    """
    settings = ctx.settings()
    tuning = TuningArgs(
        delete_batch=kw["delete_batch"],
        sleep=kw["sleep"],
        sleep_coef=kw["sleep_coef"],
        max_threads_running=kw["max_threads_running"],
        max_replica_lag=kw["max_replica_lag"],
        max_wait=kw["max_wait"],
        chunk_time=kw["chunk_time"],
    )
    args = ResumeArgs(
        ref,
        ignore_window=ignore_window,
        max_runtime=max_runtime,
        report=report,
        tuning=tuning,
        control=_control(kw),
    )
    summary = commands.jobs_resume(settings, args)
    print_summary(summary, as_json, settings.window.timezone)
    _end(summary)


@jobs_group.command("cancel")
@click.argument("ref")
@click.option(
    "--force", is_flag=True, help="Cancel even a job cut in the middle of a chunk (MyISAM)."
)
@click.pass_obj
def jobs_cancel(ctx: Ctx, ref: str, force: bool) -> None:
    """Mark an unfinished job cancelled (its leads stay where they are). A running job stops
    at its next chunk.

    \b
    Examples:
      vicidial-archiver jobs cancel 12
      vicidial-archiver jobs cancel nightly --force
    """
    job = commands.jobs_cancel(ctx.settings(), ref, force=force)
    _out(f"cancelled {job.label}")


@jobs_group.command("prune")
@click.option("--older-than", default="30d", show_default=True, metavar="AGE")
@click.option(
    "--dry-run", is_flag=True, help="List the job records that would be deleted; delete nothing."
)
@click.option("--yes", is_flag=True, help="Do not ask first (the question is asked on a TTY only).")
@click.pass_obj
def jobs_prune(ctx: Ctx, older_than: str, dry_run: bool, yes: bool) -> None:
    """Delete finished jobs (done, cancelled) older than AGE, with their chunks and leads.

    On a terminal it first asks, naming how many job records go (--yes: do not ask); without
    a terminal (cron) it does not ask.

    \b
    Examples:
      vicidial-archiver jobs prune --dry-run
      vicidial-archiver jobs prune --older-than 90d --yes
    """
    seconds = config.parse_duration(older_than, "--older-than")
    settings = ctx.settings()
    ask = not (dry_run or yes) and sys.stdin.isatty()
    if not (dry_run or ask):
        _out(f"pruned {commands.jobs_prune(settings, seconds)} job(s)")
        return
    cutoff, jobs = commands.jobs_prunable(settings, seconds)
    ended = f"ended before {cutoff:%Y-%m-%d %H:%M:%S} UTC"
    what = f"{len(jobs)} job record(s) (done or cancelled, {ended})"
    if dry_run:
        _out(f"DRY RUN — nothing deleted. jobs prune would delete {what}")
        if jobs:
            _out(f"{'job':>6}  {'name':<16} {'direction':<9} {'state':<9} {'chunks':>7}  started")
        for job in jobs:
            _out(_job_line(describe_job(job, []), settings.window.timezone))
        return
    if not jobs:
        _out("pruned 0 job(s)")
        return
    ids = [job.job_id for job in jobs]
    shown = ", ".join(map(str, ids[:10])) + (", …" if len(ids) > 10 else "")
    span = f"job {shown}" if len(ids) == 1 else f"jobs {shown}"
    question = f"Delete {what}, {span}, with their chunks and leads?"
    if not click.confirm(question, default=False, err=True):
        _out("nothing pruned")
        return
    _out(f"pruned {commands.jobs_prune(settings, seconds, ids)} job(s)")


# --- demo --------------------------------------------------------------------------------


@cli.command()
@click.option("--leads", type=click.IntRange(1000, 5_000_000), default=50_000, show_default=True)
@click.option(
    "--engine", type=click.Choice(["MyISAM", "InnoDB"]), default="MyISAM", show_default=True
)
@click.option("--keep", is_flag=True, help="Keep the demo database instead of dropping it.")
@click.pass_obj
def demo(ctx: Ctx, leads: int, engine: str, keep: bool) -> None:
    """Throwaway database with synthetic leads; runs archive, search, dearchive, verify.

    \b
    Examples:
      vicidial-archiver --dsn mysql://root@127.0.0.1:3306/ demo
      vicidial-archiver demo --leads 200000 --engine InnoDB --keep
    """
    from archiver.demo import run_demo

    code = run_demo(ctx.settings(), _out, leads=leads, keep=keep, engine=engine)
    if code:
        raise ChecksFailed("a demo step failed", code)


# --- serve (archiver/serve.py) -----------------------------------------------------------


@cli.command()
@click.option(
    "--listen",
    default="127.0.0.1:8080",
    show_default=True,
    metavar="HOST:PORT",
    help="Address to listen on; put a TLS reverse proxy in front of it.",
)
@click.option(
    "--openapi",
    "print_openapi",
    is_flag=True,
    help="Print the OpenAPI description on stdout and exit.",
)
@click.pass_obj
def serve(ctx: Ctx, listen: str, print_openapi: bool) -> None:
    """Serve the Lead Archive API: POST /vicidial/leads/archive with Authorization:
    Key=<api key> runs one archive job. API keys: [serve] keys or ARCHIVER_API_KEYS, as
    name:<sha256 hex>. Needs the extra: pip install 'vicidial-archiver[serve]'.

    \b
    Examples:
      vicidial-archiver --config /etc/vicidial-archiver.toml serve
      vicidial-archiver serve --listen 127.0.0.1:8081
      vicidial-archiver serve --openapi > openapi.json
    """
    try:
        from archiver import serve as server
    except ModuleNotFoundError as exc:
        if exc.name not in {"starlette", "uvicorn"}:
            raise
        raise BadInput(f"serve needs {exc.name}: pip install 'vicidial-archiver[serve]'") from None
    settings = ctx.settings()
    if print_openapi:
        _out(json.dumps(server.openapi_document(settings.id_limit), indent=2))
        return
    server.serve(settings, listen)


# --- search (archiver/search.py) ---------------------------------------------------------


@cli.command()
@click.argument("phones", metavar="[PHONE[,PHONE…]]", required=False)
@click.option(
    "--vendor-lead-code",
    "codes",
    metavar="CODE[,CODE…]",
    help="Search by vendor_lead_code instead of phone number (search_method=VENDOR_LEAD_CODE).",
)
@click.option(
    "--archived",
    is_flag=True,
    help="Search the archive table only (archived_lead=Y); default: both tables (with "
    "--vicidial: vicidial_list only).",
)
@click.option("--list-id", metavar="ID", help="Only leads of this list (search_location=LIST).")
@click.option(
    "--campaign",
    metavar="ID",
    help="Only leads of this campaign's lists (search_location=CAMPAIGN).",
)
@click.option(
    "--records",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    metavar="N",
    help="At most N lead ids per number (VICIdial: over the whole query).",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print where each lead is as one JSON object."
)
@click.option(
    "--vicidial",
    is_flag=True,
    help="Print VICIdial's lead_search lines instead, byte for byte (one table).",
)
@click.option(
    "--header",
    is_flag=True,
    help="VICIdial's lines, first search_key|records_found|lead_ids (implies --vicidial).",
)
@click.option(
    "--user",
    metavar="NAME",
    help="The <user> of VICIdial's lines (default: OS user; implies --vicidial).",
)
@click.pass_obj
def search(
    ctx: Ctx,
    phones: str | None,
    codes: str | None,
    archived: bool,
    list_id: str | None,
    campaign: str | None,
    records: int,
    as_json: bool,
    vicidial: bool,
    header: bool,
    user: str | None,
) -> None:
    """Leads by phone number (or --vendor-lead-code) in vicidial_list and the archive at once:
    one line per lead, highest lead_id first, saying where it is (live, archived, or both)
    with its list, campaign, status and last call.

    --vicidial (or --user, or --header) prints instead exactly what VICIdial's lead_search API
    call prints, from vicidial_list (or the archive with --archived): one
    `<key>|<count>|<id-id-…>` line per number or code.

    Exit 0 when a key matched, 1 when none did, 2 when no number has 6–18 digits.

    \b
    Examples:
      vicidial-archiver search 7275550001
      vicidial-archiver search 7275550001,7275550002 --archived --json
      vicidial-archiver search --vendor-lead-code V1234 --vicidial --header
    """
    args = SearchArgs(
        phones, codes, archived, list_id, campaign, header, records, user, vicidial, as_json
    )
    if not args.vicidial_form:
        located = commands.locate(ctx.settings(), args)
        if as_json:
            _out(json.dumps(located.as_dict()))
        else:
            for line in located.lines():
                _out(line)
        if located.exit_code:
            raise ChecksFailed("no lead found", located.exit_code)
        return
    result = commands.search(ctx.settings(), args)
    for line in result.lines:
        _out(line)
    if result.exit_code:
        raise ChecksFailed(result.lines[-1] if result.lines else "", result.exit_code)


# --- verify (archiver/verify.py) ---------------------------------------------------------


@cli.command()
@selection_options
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option(
    "--list-limit",
    type=click.IntRange(min=0),
    metavar="N",
    help="List at most N lead ids per category (default 1000 with --json, else 20).",
)
@click.option(
    "--all", "every_lead", is_flag=True, help="Every lead of both tables (no other selection)."
)
@click.pass_obj
def verify(ctx: Ctx, /, as_json: bool, list_limit: int | None, every_lead: bool, **kw: Any) -> None:
    """Compare live and archive for a selection: leads in both (equal or different, byte for
    byte on every shared column), only live, only archived, in neither (explicit ids).

    Criteria match in either table; --all checks every lead. Reads only. Exit 1 when a lead
    is in both and different.

    \b
    Examples:
      vicidial-archiver verify --all
      vicidial-archiver verify --list-id 101 --json
      vicidial-archiver verify 4711 4712
    """
    from archiver.verify import report_lines

    # Every other option of this command is a selection option (--ids-column only names a
    # column of --ids-file).
    selected = any(v for k, v in kw.items() if k != "ids_column")
    if every_lead and selected:
        raise BadInput(
            "--all checks every lead; give it alone, without lead ids, --ids-file, --request "
            "or criteria"
        )
    if not every_lead and not selected:
        raise BadInput(
            "nothing selected: give lead ids, --ids-file, --request or criteria (--list-id, "
            "--campaign, --status, --entry-before, …), or --all to check every lead"
        )
    settings = ctx.settings()
    if every_lead:
        selection = commands.every_lead()
    else:
        selection, _flags = commands.build_selection(settings, _selection(kw))
    report = commands.verify(settings, selection, VerifyArgs(as_json, list_limit))
    if as_json:
        _out(json.dumps(report.as_dict()))
    else:
        for line in report_lines(report):
            _out(line)
    if report.exit_code:
        raise ChecksFailed("a lead is in both tables and different", report.exit_code)


# --- export, import, purge (archiver/exportfile.py) ---------------------------------------


def _file_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option("--file", "path", required=True, metavar="PATH", help=help_text)


def _file_path(path: str) -> str:
    if not path.strip():
        raise BadInput("--file is empty; give the path of the export file")
    return path


def _print_file_result(result: commands.FileResult, as_json: bool) -> None:
    if as_json:
        _out(json.dumps(result.as_dict()))
        return
    head = "DRY RUN — nothing deleted. " if result.dry_run else ""
    size = f", {result.file_bytes:,} bytes" if result.command == "export" else ""
    _out(
        f"{head}{result.command}: {result.path}{size}, {result.leads:,} leads in "
        f"{result.seconds:.1f}s ({result.rate:,.0f} leads/s)"
    )
    for name, count in sorted(result.counts.items()):
        _out(f"  {name:<18} {count}")
    for stmt in result.sql or ():
        _out("\nSQL of the first chunk:")
        _out(stmt)


@cli.command("export")
@selection_options
@_file_option("The gzip CSV to write; its manifest is written beside it (PATH.manifest.json).")
@click.option("--force", is_flag=True, help="Replace the file (and manifest) if they exist.")
@click.option("--all", "every_lead", is_flag=True, help="Every archived lead (no other selection).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.pass_obj
def export_cmd(
    ctx: Ctx, /, path: str, force: bool, every_lead: bool, as_json: bool, **kw: Any
) -> None:
    """Write archived leads (chosen by ids or criteria, evaluated on the archive) to a
    gzip-compressed CSV with a manifest, byte-exact; the file is checked against the archive
    before it takes its name. Reads only.

    \b
    Examples:
      vicidial-archiver export --all --file /srv/leads-2025.csv.gz
      vicidial-archiver export --list-id 101 --entry-before 3y --file list101.csv.gz
    """
    path = _file_path(path)
    selected = any(v for k, v in kw.items() if k != "ids_column")
    if every_lead and selected:
        raise BadInput(
            "--all exports every archived lead; give it alone, without lead ids, --ids-file, "
            "--request or criteria"
        )
    if not every_lead and not selected:
        raise BadInput(
            "nothing selected: give lead ids, --ids-file, --request or criteria (--list-id, "
            "--campaign, --status, --entry-before, …), or --all to export every archived lead"
        )
    settings = ctx.settings()
    if every_lead:
        selection = commands.every_lead()
    else:
        selection, _flags = commands.build_selection(settings, _selection(kw))
    result = commands.export(settings, selection, path, force=force)
    _print_file_result(result, as_json)


@cli.command("import")
@_file_option("An export file (with its manifest beside it).")
@click.option(
    "--into",
    type=click.Choice(["archive", "live"]),
    default="archive",
    show_default=True,
    help="The table the leads go back into.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.pass_obj
def import_cmd(ctx: Ctx, path: str, into: str, as_json: bool) -> None:
    """Put the leads of an export file back: each missing one inserted, then every one
    compared with the file byte for byte; a lead present with other data is a conflict and
    is never overwritten. The file is checked whole first (exit 2 on any damage).

    \b
    Examples:
      vicidial-archiver import --file /srv/leads-2025.csv.gz
      vicidial-archiver import --file list101.csv.gz --into live
    """
    path = _file_path(path)
    result = commands.import_file(ctx.settings(), path, into)
    _print_file_result(result, as_json)
    error = result.exit_error
    if error is not None:
        raise error


@cli.command("purge")
@_file_option("The export file that proves the copies (with its manifest beside it).")
@click.option("--dry-run", is_flag=True, help="Say what would be deleted; delete nothing.")
@click.option("--ignore-window", is_flag=True, help="Run outside the off-hours window.")
@click.option("--report", metavar="PATH", help="CSV of every lead not purged, with its outcome.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.pass_obj
def purge_cmd(
    ctx: Ctx, path: str, dry_run: bool, ignore_window: bool, report: str | None, as_json: bool
) -> None:
    """Delete archived leads an export file proves: each row only by a statement comparing
    every column with the file's bytes; a lead changed since the export is kept. The file is
    checked whole first (exit 2 on any damage, nothing deleted). Holds the job lock.

    \b
    Examples:
      vicidial-archiver purge --file /srv/leads-2025.csv.gz --dry-run
      vicidial-archiver purge --file /srv/leads-2025.csv.gz --report kept.csv
    """
    path = _file_path(path)
    if report is not None and not report.strip():
        raise BadInput("--report is empty; give the path of the CSV to write")
    result = commands.purge(
        ctx.settings(), path, dry_run=dry_run, ignore_window=ignore_window, report=report
    )
    _print_file_result(result, as_json)
    error = result.exit_error
    if error is not None:
        raise error


# --- doctor ------------------------------------------------------------------------------


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.pass_obj
def doctor(ctx: Ctx, as_json: bool) -> None:
    """Print the settings in force and where each came from, then check what a nightly run
    needs: the connection, both tables and their drift, every grant each command needs (with
    the GRANT statements to run), the checkpoint tables, the job lock, the window. Writes
    nothing. Exit 0 when a nightly archive would start, 1 when a check failed.

    \b
    Examples:
      vicidial-archiver --config /etc/vicidial-archiver.toml doctor
      vicidial-archiver --astguiclient /etc/astguiclient.conf doctor --json
    """
    root = click.get_current_context().find_root()
    from_env = root.get_parameter_source("dsn") is click.core.ParameterSource.ENVIRONMENT
    origins: dict[str, str] = {}
    settings = config.load_settings(
        config_path=ctx.config_path,
        dsn=None if from_env else ctx.dsn,  # config reads ARCHIVER_DSN itself, and says so
        astguiclient=ctx.astguiclient,
        overrides={"log_format": ctx.log_format},
        origins=origins,
    )
    report = commands.doctor(settings, origins)
    if as_json:
        _out(
            json.dumps(
                {
                    "ready": report.ready,
                    "settings": [{"key": k, "value": v, "from": o} for k, v, o in report.settings],
                    "checks": [
                        {
                            "name": c.name,
                            "ok": c.ok,
                            "warning": c.warning and not c.ok,
                            "detail": c.detail,
                            "fix": c.fix,
                        }
                        for c in report.checks
                    ],
                }
            )
        )
    else:
        _doctor_lines(report)
    if not report.ready:
        raise ChecksFailed("a check failed")


def _doctor_lines(report: DoctorReport) -> None:
    width = max(len(k) for k, _, _ in report.settings)
    vwidth = min(40, max(len(v) for _, v, _ in report.settings))
    _out("Settings in force (secrets masked):")
    for key, value, origin in report.settings:
        _out(f"  {key:<{width}}  {value:<{vwidth}}  {origin}")
    _out("")
    _out("Checks:")
    for c in report.checks:
        mark = "ok  " if c.ok and not (c.warning and c.fix) else ("warn" if c.warning else "FAIL")
        _out(f"  {mark}  {c.name}: {c.detail}")
        if c.fix:
            _out(
                "        run as an administrator:"
                if c.fix[0].startswith("GRANT")
                else "        fix:"
            )
            for line in c.fix:
                _out(f"          {line}")
    _out("")
    failed = [c for c in report.checks if not c.ok and not c.warning]
    if failed:
        names = ", ".join(c.name for c in failed)
        plural = "s" if len(failed) > 1 else ""
        _out(f"Not ready: {len(failed)} check{plural} failed ({names}).")
    else:
        _out("Ready: a nightly archive would start.")


# --- entry point -------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    if argv is None:
        hide_password_in_process_title(sys.argv)
    cli.main(args=argv, prog_name="vicidial-archiver")
