"""The options of each command as frozen, typed objects, built by the click layer.

Past `cli.py` no options travel as a dict: a renamed option fails at once where it is used.
Each object checks what it can check alone, as it is built (a list id that is not a number,
two kinds of selection, a status that is not printable); what needs the database or a file is
checked by `archiver.commands`. Every refusal is a BadInput: exit 2, nothing written.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from archiver import config
from archiver.errors import BadInput
from archiver.idlist import whole
from archiver.jobtypes import Flags
from archiver.selection import Criteria

MAX_LIST_ID = 2**64 - 1  # vicidial_lists.list_id is BIGINT UNSIGNED


def parse_list_id(text: str) -> int:
    if not (text.strip().isascii() and text.strip().isdigit()):  # isdigit alone takes '²'
        raise BadInput(f"invalid --list-id {text!r}: list ids are whole numbers")
    value = whole(text.strip(), MAX_LIST_ID)
    if value is None:
        raise BadInput(
            f"invalid --list-id {text!r}: list ids are whole numbers up to {MAX_LIST_ID}"
        )
    return value


def split_values(values: tuple[str, ...], flag: str) -> tuple[str, ...]:
    """A list flag's values, each given once or several to an occurrence, separated by commas:
    `--status NI,DNC` and `--status NI --status DNC` say the same."""
    out: list[str] = []
    for value in values:
        for item in value.split(","):
            if not item.strip():
                raise BadInput(
                    f"{flag} {value!r} holds an empty value; give values separated by commas "
                    f"(NI,DNC) or repeat {flag}"
                )
            out.append(item.strip())
    return tuple(out)


def _duration(value: str | None, what: str) -> float | None:
    return None if value is None else config.parse_duration(value, what)


@dataclass(frozen=True)
class SelectionArgs:
    """Which leads: ids on the command line, an --ids-file, a --request body, or criteria.

    Lead ids stay as typed (`"1,2"`, `"3"`): `dearchive LEAD_ID` answers a bad one with
    VICIdial's own line, so they are parsed when the selection is built."""

    lead_ids: tuple[str, ...] = ()
    ids_file: str | None = None
    ids_column: tuple[str, ...] = ()  # repeatable on the command line: more than one is refused
    request_path: str | None = None
    list_ids: tuple[str, ...] = ()
    campaigns: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    entry_before: str = ""
    last_call_before: str = ""
    modified_before: str = ""
    where: str = ""

    def __post_init__(self) -> None:
        crit = self.criteria()
        kinds = [bool(self.lead_ids), bool(self.ids_file), bool(self.request_path), not crit.empty]
        if sum(kinds) == 0:
            raise BadInput(
                "nothing selected: give lead ids, --ids-file, --request or criteria "
                "(--list-id, --campaign, --status, --entry-before, …)"
            )
        if sum(kinds) > 1:
            raise BadInput(
                "give one kind of selection: lead ids, --ids-file, --request, or criteria"
            )
        if self.request_path:
            return  # a request body names its own ids; --ids-column plays no part
        if len(self.ids_column) > 1:
            raise BadInput(
                f"--ids-column is given {len(self.ids_column)} times; name one column of lead ids"
            )
        if self.ids_column and not self.ids_file:
            raise BadInput("--ids-column names the column of an --ids-file; give --ids-file too")

    def criteria(self) -> Criteria:
        """The criteria as given (dates not resolved yet); empty for other selections."""
        return Criteria(
            list_ids=tuple(parse_list_id(v) for value in self.list_ids for v in value.split(",")),
            campaigns=split_values(self.campaigns, "--campaign"),
            statuses=split_values(self.statuses, "--status"),
            entry_before=self.entry_before,
            last_call_before=self.last_call_before,
            modified_before=self.modified_before,
            where=self.where,
        )

    @property
    def column(self) -> str | None:
        return self.ids_column[0] if self.ids_column else None


@dataclass(frozen=True)
class StepsArgs:
    """Which steps of a chunk run: copy, refresh (archive only), delete."""

    insert: bool = True
    update: bool = True
    delete: bool = True

    @staticmethod
    def of(flags: Flags) -> StepsArgs:
        return StepsArgs(flags.insert, flags.update, flags.delete)

    def allowed_by(self, request: Flags | None) -> StepsArgs:
        """A step runs only when both these switches and a --request body's flags allow it."""
        if request is None:
            return self
        return StepsArgs(
            self.insert and request.insert,
            self.update and request.update,
            self.delete and request.delete,
        )

    @property
    def flags(self) -> Flags:
        return Flags(self.insert, self.update, self.delete)


@dataclass(frozen=True)
class RestoreArgs:
    """What `dearchive` sets on the leads it restores: --reset-called, --set-status,
    --set-called-count (never what it selects: --status selects, as in every command)."""

    reset: bool = False
    status: str | None = None
    called_count: int | None = None

    def __post_init__(self) -> None:
        # Length, characters and range are checked against the live column itself, once the
        # tables are reflected (schema.check_overrides), before anything is written.
        if self.status is not None and (not self.status or not self.status.isprintable()):
            raise BadInput(f"--set-status {self.status!r}: a VICIdial status is printable text")

    @property
    def overrides(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.reset:
            out["called_since_last_reset"] = "N"
        if self.status is not None:
            out["status"] = self.status
        if self.called_count is not None:
            out["called_count"] = self.called_count
        return out


# --optimize: OPTIMIZE TABLE (ANALYZE on InnoDB) only after a run that moved more leads than
# this; fewer leave too little free space to be worth the table lock.
OPTIMIZE_MIN = 100_000


@dataclass(frozen=True)
class ControlArgs:
    """Per run, never kept with the job: a sentinel file that stops it, the time per
    statement kind, OPTIMIZE TABLE after a large run."""

    sentinel: str | None = None
    statistics: bool = False
    optimize: bool = False
    optimize_min: int | None = None  # None: OPTIMIZE_MIN

    def __post_init__(self) -> None:
        if self.sentinel is not None and not self.sentinel.strip():
            raise BadInput("--sentinel is empty; name the file whose presence stops the job")
        if self.optimize_min is not None and not self.optimize:
            raise BadInput("--optimize-min sets the threshold of --optimize; give --optimize too")
        if self.optimize_min is not None and self.optimize_min < 0:
            raise BadInput(f"--optimize-min must be 0 or more leads, got {self.optimize_min}")

    @property
    def optimize_after(self) -> int | None:
        """Moved leads past which the source table is optimized; None: never."""
        if not self.optimize:
            return None
        return OPTIMIZE_MIN if self.optimize_min is None else self.optimize_min


@dataclass(frozen=True)
class RunArgs:
    """How one job runs and what it leaves behind, besides its data."""

    job_name: str | None = None
    dry_run: bool = False
    report: str | None = None
    ignore_window: bool = False
    metrics_file: str | None = None
    admin_log: bool = False
    user: str | None = None  # named in the admin log row (default: the OS user)
    client: str | None = None  # the API key that asked for the job (serve)
    # The tuning flags given (TuningArgs.given): kept with a new job, used again on resume.
    tuning: dict[str, Any] = field(default_factory=dict)
    control: ControlArgs = field(default_factory=ControlArgs)


@dataclass(frozen=True)
class TuningArgs:
    """Flags that override settings for one run: chunking, throttle, run time, guards.

    Durations are given as text (`2h`, `30s`, `1.5`) and parsed as the object is built."""

    chunk_size: int | None = None
    delete_batch: int | None = None
    max_runtime: str | None = None
    sleep: str | None = None
    sleep_coef: float | None = None
    max_threads_running: int | None = None
    max_replica_lag: str | None = None
    max_wait: str | None = None
    chunk_time: int | None = None
    safe_auto_increment: bool | None = None
    no_guard: tuple[str, ...] = ()
    seconds: dict[str, float | None] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parsed = {
            "sleep": _duration(self.sleep, "--sleep"),
            "max_replica_lag": _duration(self.max_replica_lag, "--max-replica-lag"),
            "max_wait": _duration(self.max_wait, "--max-wait"),
            "max_runtime": _duration(self.max_runtime, "--max-runtime"),
        }
        object.__setattr__(self, "seconds", parsed)

    def given(self) -> dict[str, Any]:
        """The job tuning flags given (jobtypes.TUNING names), as parsed: a job keeps them."""
        sec = self.seconds
        values = {
            "sleep": sec["sleep"],
            "sleep-coef": self.sleep_coef,
            "max-threads-running": self.max_threads_running,
            "max-replica-lag": sec["max_replica_lag"],
            "max-wait": sec["max_wait"],
            "chunk-time": self.chunk_time,
            "delete-batch": self.delete_batch,
        }
        return {k: v for k, v in values.items() if v is not None}

    def apply(self, base: config.Settings) -> config.Settings:
        """The settings with these flags over them, validated as a whole."""
        thr, sec = base.throttle, self.seconds
        throttle = config.ThrottleSettings(
            sleep=_pick(sec["sleep"], thr.sleep),
            sleep_coef=_pick(self.sleep_coef, thr.sleep_coef),
            max_threads_running=_pick(self.max_threads_running, thr.max_threads_running),
            max_replica_lag=_pick(sec["max_replica_lag"], thr.max_replica_lag),
            max_wait=_pick(sec["max_wait"], thr.max_wait),
            chunk_time_ms=_pick(self.chunk_time, thr.chunk_time_ms),
            replicas=thr.replicas,
        )
        guards = base.guards
        if self.safe_auto_increment is not None:
            guards = replace(guards, safe_auto_increment=self.safe_auto_increment)
        for name in self.no_guard:
            guards = replace(guards, **{name: False})
        return config.with_overrides(
            base,
            chunk_size=_pick(self.chunk_size, base.chunk_size),
            delete_batch=_pick(self.delete_batch, base.delete_batch),
            max_runtime=_pick(sec["max_runtime"], base.max_runtime),
            throttle=throttle,
            guards=guards,
        )


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value


@dataclass(frozen=True)
class VerifyArgs:
    """How `verify` reports."""

    as_json: bool = False
    list_limit: int | None = None

    def __post_init__(self) -> None:
        if self.list_limit is not None and self.list_limit < 0:
            raise BadInput(f"--list-limit must be 0 or more, got {self.list_limit}")

    @property
    def limit(self) -> int:
        """Lead ids listed per category: 1000 for a program reading JSON, 20 for a person."""
        from archiver.verify import HUMAN_LIST_LIMIT, LIST_LIMIT

        if self.list_limit is not None:
            return self.list_limit
        return LIST_LIMIT if self.as_json else HUMAN_LIST_LIMIT


@dataclass(frozen=True)
class SearchArgs:
    """Phone numbers or vendor lead codes, in a list or campaign or everywhere: in both tables
    (or the archive alone), or as VICIdial's lead_search in one table (`vicidial_form`)."""

    phones: str | None = None
    codes: str | None = None
    archived: bool = False
    list_id: str | None = None
    campaign: str | None = None
    header: bool = False
    records: int = 1000
    user: str | None = None  # named in the lines printed (default: the OS user)
    vicidial: bool = False
    as_json: bool = False

    def __post_init__(self) -> None:
        if (self.phones is None) == (self.codes is None):
            raise BadInput("give phone numbers or --vendor-lead-code CODES (one of the two)")
        if self.as_json and self.vicidial_form:
            raise BadInput(
                "--json prints where each lead is; --vicidial, --user and --header print "
                "VICIdial's lead_search lines: give one or the other"
            )
        if self.list_id is not None and self.campaign is not None:
            raise BadInput(
                "give --list-id or --campaign, not both (VICIdial's one search_location)"
            )
        self.scope()

    def scope(self) -> Criteria | None:
        if self.list_id is not None:
            return Criteria(list_ids=(parse_list_id(self.list_id),))
        if self.campaign is not None:
            return Criteria(campaigns=(self.campaign,))
        return None

    @property
    def vicidial_form(self) -> bool:
        """VICIdial's lines: asked for, or implied by the options only they have."""
        return self.vicidial or self.user is not None or self.header

    @property
    def text(self) -> str:
        text = self.phones if self.codes is None else self.codes
        assert text is not None
        return text


@dataclass(frozen=True)
class ResumeArgs:
    """`jobs resume`: which job, and what may differ from its first run."""

    ref: str
    ignore_window: bool = False
    max_runtime: str | None = None
    report: str | None = None
    # Flags over the tuning the job was started with, for this run (not --chunk-size: the
    # job's identity; not --max-runtime: above).
    tuning: TuningArgs = field(default_factory=TuningArgs)
    control: ControlArgs = field(default_factory=ControlArgs)
    max_runtime_s: float | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # An empty --max-runtime leaves the configured one, as it always has.
        parsed = _duration(self.max_runtime, "--max-runtime") if self.max_runtime else None
        object.__setattr__(self, "max_runtime_s", parsed)
