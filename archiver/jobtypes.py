"""The plain types of a job: what is asked (JobSpec, Flags), how it ends (Summary) and the words
both use (Direction, JobState, Outcome).

Owns: these types and their invariants (a job name fits its column; a direction is one of two).
Must not: touch the database, log, or import anything of the archiver at run time but its
errors: every other module may import this one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, Literal, get_args

from archiver.errors import BadInput

if TYPE_CHECKING:  # types only: request.py imports Flags from here, and selection imports it
    from archiver.db import Db
    from archiver.selection import Selection

Direction = Literal["archive", "dearchive"]
ARCHIVE: Final = "archive"
DEARCHIVE: Final = "dearchive"
DIRECTIONS: tuple[Direction, ...] = get_args(Direction)

# A job's state in archiver_jobs.state, in reports and in the JSON summary.
JobState = Literal["running", "done", "stopped", "failed", "cancelled"]


class Outcome(StrEnum):
    """What a chunk did with one lead. The values are stored (archiver_leads, counts_json),
    printed and served: they never change."""

    ARCHIVED = "archived"
    DEARCHIVED = "dearchived"
    REFRESHED = "refreshed"
    KEPT_CHANGED = "kept_changed"
    ALREADY_ARCHIVED = "already_archived"
    ALREADY_LIVE = "already_live"
    MISSING = "missing"
    NOT_COPIED = "not_copied"
    CONFLICT = "conflict"
    SKIPPED_LIVE = "skipped_live"
    SKIPPED_NEWEST = "skipped_newest"
    # In both tables and equal already; --no-delete kept the source row: nothing was written.
    ALREADY_COPIED = "already_copied"
    # Archive: the lead stopped matching the selection while the job had it in hand (the
    # dialer changed it). It stays live; the copy this job wrote of it is removed (proven to
    # be that copy).
    LEFT_SELECTION = "left_selection"
    # Another job (a restore or an API request of a few ids) was working on the lead when
    # this chunk reached it (archiver.claims): not touched; a later run takes it.
    SKIPPED_BUSY = "skipped_busy"
    # In the source when the chunk read it, gone from it before the chunk moved it (deleted by
    # someone else): not moved, and no copy this job wrote of it is left in the target.
    GONE = "gone"


# The outcomes as plain strings (click choices, JSON schema enums).
OUTCOMES: tuple[str, ...] = tuple(o.value for o in Outcome)
MOVED = frozenset({Outcome.ARCHIVED, Outcome.DEARCHIVED})
# Not in the source table when the chunk read it: there was nothing to move or keep.
NOT_IN_SOURCE = frozenset({Outcome.ALREADY_ARCHIVED, Outcome.ALREADY_LIVE, Outcome.MISSING})

# The settings a job keeps across runs (its throttle and tuning), by flag name → the settings
# path (`section.key`). --max-runtime is per run, not per job; --chunk-size is in the identity.
TUNING: Final = {
    "sleep": "throttle.sleep",
    "sleep-coef": "throttle.sleep_coef",
    "max-threads-running": "throttle.max_threads_running",
    "max-replica-lag": "throttle.max_replica_lag",
    "max-wait": "throttle.max_wait",
    "chunk-time": "throttle.chunk_time_ms",
    "delete-batch": "delete_batch",
}

# Called at each named point of a chunk: (point, the job's connection, the leads in hand).
Hook = Callable[[str, "Db", Sequence[int]], None]


def as_direction(value: str) -> Direction:
    for direction in DIRECTIONS:
        if value == direction:
            return direction
    raise ValueError(f"not a direction: {value!r}")


@dataclass(frozen=True)
class Flags:
    insert: bool = True
    update: bool = True
    delete: bool = True


@dataclass(frozen=True)
class JobSpec:
    """One job as asked. `direction` is a str at this boundary (callers pass what they parsed)
    and checked to be a Direction here. `dry_run` is the only switch of a dry run."""

    direction: str
    selection: Selection
    flags: Flags = field(default_factory=Flags)
    overrides: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None
    dry_run: bool = False
    report: str | None = None
    ignore_window: bool = False
    resume_id: int | None = None
    # The API key that asked for the job (serve), kept with the job: it decides who sees it.
    client: str | None = None
    # The tuning flags given for this run (TUNING keys → values, already in the settings):
    # a new job keeps them, and a resumed one takes those it was started with unless given.
    tuning: Mapping[str, Any] = field(default_factory=dict)
    # Per run: stop at the next chunk boundary once this file exists (refused if it does).
    sentinel: str | None = None
    statistics: bool = False  # time per statement kind in the summary
    optimize_min: int | None = None  # OPTIMIZE (ANALYZE) the source after more moved leads

    def __post_init__(self) -> None:
        as_direction(self.direction)
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
    direction: Direction
    job_id: int | None
    state: JobState
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
    # Before anything was written: each cut-off resolved (ISO-8601 with its offset), the leads
    # the selection held, and both as lines for a person.
    cutoffs: dict[str, str] = field(default_factory=dict)
    selected: int | None = None
    # The tuning in force: flag name → {"value", "from": "flag" | "job" | "settings"}.
    tuning: dict[str, dict[str, Any]] = field(default_factory=dict)
    # --statistics: {"total_ms", "kinds": {kind: {"count", "ms", "share"}}}; None when not asked.
    statistics: dict[str, Any] | None = None

    @property
    def rate(self) -> float:
        return self.leads / self.seconds if self.seconds > 0 else 0.0

    @property
    def moved(self) -> int:
        """Leads this run moved (archived or dearchived)."""
        return sum(n for k, n in self.counts.items() if k in MOVED)

    @property
    def kept(self) -> dict[str, int]:
        """Leads this run examined in the source table and left there, by outcome."""
        return {
            k: n
            for k, n in sorted(self.counts.items())
            if k not in MOVED and k not in NOT_IN_SOURCE and n
        }

    @property
    def not_in_source(self) -> dict[str, int]:
        """Leads selected that were not in the source table (already moved, or in neither)."""
        return {k: n for k, n in sorted(self.counts.items()) if k in NOT_IN_SOURCE and n}

    @property
    def resume_command(self) -> str | None:
        """The command that resumes this job, when it can be resumed."""
        if self.job_id is None or self.dry_run or self.state not in ("stopped", "failed"):
            return None
        return f"vicidial-archiver jobs resume {self.job_id}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "direction": self.direction,
            "job_id": self.job_id,
            "state": self.state,
            "dry_run": self.dry_run,
            "counts": dict(sorted(self.counts.items())),
            "job_counts": dict(sorted(self.job_counts.items())),
            "leads": self.leads,
            "moved": self.moved,
            "kept": sum(self.kept.values()),
            "not_in_source": sum(self.not_in_source.values()),
            "examined": self.leads,
            "chunks": self.chunks,
            "seconds": round(self.seconds, 3),
            "rate_per_s": round(self.rate, 1),
            "stop_reason": self.stop_reason,
            "resume": self.resume_command,
            "throttle_slept_s": round(self.throttle_slept_s, 3),
            "cutoffs": dict(self.cutoffs),
            "selected": self.selected,
            "warnings": list(self.warnings),
            "tuning": self.tuning,
            **({"statistics": self.statistics} if self.statistics is not None else {}),
        }
