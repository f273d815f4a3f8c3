"""--statistics: every statement a chunk runs is counted under a kind of its own, and the kinds
add up to the wall time they are given."""

from __future__ import annotations

import re
from pathlib import Path

from archiver import timings

SOURCES = [Path(timings.__file__).with_name(n) for n in ("strategies.py", "runner.py")]


def test_every_statement_name_has_a_kind() -> None:
    """A statement added to a strategy without a kind would be counted as `other`."""
    names = set()
    for path in SOURCES:
        text = path.read_text()
        names |= set(re.findall(r'Stmt\(\s*"(\w+)"', text))
        names |= set(re.findall(r'\(\s*"(delete_\w+)",\s*self\.sql', text))
    assert {"classify", "copy", "delete", "pending", "delete_stale_copy"} <= names
    missing = sorted(n for n in names if n not in timings.KIND_OF)
    assert not missing, f"statements without a --statistics kind: {missing}"


def test_the_kinds_add_up_to_the_wall_time() -> None:
    t = timings.Timings()
    t.add("copy", 0.25)
    t.add("copy_rows", 0.05)
    t.add("wait", 0.5)
    t.add("a_new_statement", 0.1)
    stats = t.statistics(1.0)
    kinds = stats["kinds"]
    assert stats["total_ms"] == 1000.0
    assert kinds["copy"] == {"count": 2, "ms": 300.0, "share": 0.3}
    assert kinds["wait"] == {"count": 1, "ms": 500.0, "share": 0.5}
    assert kinds["other"] == {"count": 1, "ms": 200.0, "share": 0.2}
    assert list(kinds) == ["copy", "wait", "other"]
    lines = timings.lines(stats)
    assert lines[0].split() == ["statistics", "count", "total", "ms", "share"]
    assert lines[2].split() == ["sleep/throttle", "wait", "1", "500.0", "50.0%"]
    assert lines[-1].split() == ["total", "1,000.0", "100.0%"]
