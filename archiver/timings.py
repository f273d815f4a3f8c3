"""`--statistics`: where a run's wall time went, per statement kind (pt-archiver's --statistics).

Owns: the kind of each named statement, the clock of each kind, and the table a person reads.
Must not: run or build a statement (runner.py times each one where it runs it).

Every statement a chunk strategy yields is timed by its name in the runner's one execute
helper; the scan, the checkpoint writes, the waits between chunks and OPTIMIZE TABLE are timed
where the runner makes them. `other` is the rest of the wall time (checks, the lock, Python's
own work), so the kinds add up to the run's wall time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

# The statement names of strategies.py and the kind each is counted under; a name not here
# (a new statement) counts as `other` until it is added.
KIND_OF: Final = {
    "scan": "scan",
    "classify": "scan",
    "in_dst": "scan",
    "selected": "scan",
    "fingerprint": "scan",
    "triggers": "scan",
    "tables_at": "scan",
    "present": "scan",
    "copy": "copy",
    "copy_rows": "copy",
    "update": "update",
    "delete": "delete",
    "delete_stale_copy": "delete",
    "delete_superseded": "delete",
    "pending": "pending",
    "pending_altered": "pending",
    "hold": "pending",
    "checkpoint": "checkpoint",
    "wait": "wait",
    "optimize": "optimize",
}
# In the order shown; `wait` is the sleep and the throttle's waits between chunks.
KINDS: Final = (
    "scan",
    "copy",
    "update",
    "delete",
    "pending",
    "checkpoint",
    "wait",
    "optimize",
    "other",
)
LABELS: Final = {"wait": "sleep/throttle wait", "optimize": "optimize table"}


class Timings:
    """Count and seconds per kind; `statistics` adds `other` up to the wall time."""

    def __init__(self) -> None:
        self.count: dict[str, int] = {}
        self.seconds: dict[str, float] = {}

    def add(self, name: str, seconds: float) -> None:
        kind = KIND_OF.get(name, "other")
        self.count[kind] = self.count.get(kind, 0) + 1
        self.seconds[kind] = self.seconds.get(kind, 0.0) + seconds

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.add(name, time.monotonic() - started)

    def statistics(self, wall_s: float) -> dict[str, Any]:
        """The typed object of the JSON summary: total and, per kind met, count, ms, share."""
        timed = sum(self.seconds.values())
        other = max(0.0, wall_s - timed)
        seconds = {**self.seconds, "other": self.seconds.get("other", 0.0) + other}
        total = max(wall_s, timed)
        kinds = {
            kind: {
                "count": self.count.get(kind, 0),
                "ms": round(seconds[kind] * 1000, 1),
                "share": round(seconds[kind] / total, 4) if total > 0 else 0.0,
            }
            for kind in KINDS
            if kind in seconds
        }
        return {"total_ms": round(total * 1000, 1), "kinds": kinds}


def lines(stats: dict[str, Any]) -> list[str]:
    """The statistics as a person reads them (on stderr, at the end of the run)."""
    out = [f"{'statistics':<22} {'count':>9} {'total ms':>12} {'share':>7}"]
    for kind, row in stats["kinds"].items():
        count = f"{row['count']:,}" if kind != "other" else "-"
        out.append(
            f"  {LABELS.get(kind, kind):<20} {count:>9} {row['ms']:>12,.1f} {row['share']:>7.1%}"
        )
    out.append(f"  {'total':<20} {'':>9} {stats['total_ms']:>12,.1f} {1:>7.1%}")
    return out
