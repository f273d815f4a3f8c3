"""Where this tool's chunk time goes: run it with -v (every statement logged with its time) and
add the statements up per kind. The kinds are recognised by their SQL text (the -v log cuts
statements at 300 characters)."""

from __future__ import annotations

import re
import statistics
from pathlib import Path
from typing import Any

from bench import log
from bench.db import Server
from bench.measure import DataSet, Options, measure
from bench.probe import percentile
from bench.tools import our_tool, parse_json_lines

# (label, pattern, touches vicidial_list). The -v log cuts statements at 300 characters, so
# whether a statement reads or writes vicidial_list is known per kind, not searched for. On
# MyISAM such a statement holds vicidial_list's table lock: a read lock blocks the dialer's
# UPDATEs, a write lock blocks everything.
STATEMENT_KINDS = (
    (
        "walk (keyset SELECT of ids)",
        r"^SELECT `lead_id` FROM `vicidial_list` WHERE `lead_id` >",
        True,
    ),
    (
        "scan (walk + target state + guards; FOR UPDATE on InnoDB)",
        r"^SELECT s\.`lead_id`, \(SELECT",
        True,
    ),
    ("newest (MAX lead_id)", r"^SELECT MAX\(`lead_id`\)", True),
    ("lock live rows FOR UPDATE", r"^SELECT `lead_id` FROM `vicidial_list` .*FOR UPDATE$", True),
    ("lock archive rows FOR UPDATE", r"FOR UPDATE$", False),
    (
        "classify (LEFT JOIN + byte compare)",
        r"^SELECT s\.`lead_id`, d\.`lead_id` IS NOT NULL",
        True,
    ),
    (
        "equal_ids (JOIN + byte compare)",
        r"^SELECT s\.`lead_id` FROM `vicidial_list` AS s JOIN",
        True,
    ),
    (
        "in_src (ids live + criteria)",
        r"^SELECT `lead_id` FROM `vicidial_list` WHERE `lead_id` IN",
        True,
    ),
    ("in_dst (ids in archive)", r"^SELECT `lead_id` FROM `vicidial_list_archive` WHERE", False),
    ("fetch (SELECT rows as bytes)", r"^SELECT CAST\(", True),
    ("fetch literals (SELECT CONCAT tuples)", r"^SELECT CONCAT\('\('", True),
    ("guards (UNION of 4 tables)", r"^SELECT `lead_id` FROM `vicidial_hopper`", False),
    ("pending (INSERT archiver_pending)", r"^INSERT IGNORE INTO archiver_pending", False),
    (
        "insert values (INSERT IGNORE … VALUES)",
        r"^INSERT IGNORE INTO `vicidial_list_archive`",
        False,
    ),
    ("insert (INSERT…SELECT LEFT JOIN)", r"^INSERT INTO `vicidial_list_archive`", True),
    ("update (UPDATE JOIN NOT equal)", r"^UPDATE `vicidial_list_archive` AS d JOIN", True),
    ("delete (DELETE JOIN byte-equal)", r"^DELETE s FROM `vicidial_list`", True),
    (
        "checkpoint (chunks/pending/jobs)",
        r"archiver_chunks|archiver_pending|archiver_jobs"
        r"|archiver_leads",
        False,
    ),
    ("BEGIN/COMMIT", r"^(START TRANSACTION|COMMIT|ROLLBACK)", False),
)


def kind_of(sql: str) -> tuple[str, bool]:
    for name, pattern, live in STATEMENT_KINDS:
        if re.search(pattern, sql):
            return name, live
    return "other", bool(re.search(r"`vicidial_list`(?!_)", sql))


def breakdown(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Per statement kind: count, total, mean and p99 ms, share of the chunks' time; plus the
    time per chunk spent in statements that lock vicidial_list (MyISAM table locks)."""
    per: dict[str, list[float]] = {}
    chunk_ms: list[float] = []
    live_ms: list[float] = []
    delete_seen = False
    pending_sql: list[tuple[str, float, bool]] = []
    for e in events:
        if e.get("event") == "sql":
            sql, ms = str(e.get("sql", "")), float(e.get("ms", 0.0))
            kind, touches_live = kind_of(sql)
            if kind.startswith(("classify", "in_dst", "in_src", "equal_ids")):
                kind += " — after" if delete_seen else " — before"
            if kind.startswith("delete"):
                delete_seen = True
            pending_sql.append((kind, ms, touches_live))
        elif e.get("event") == "chunk":
            chunk_ms.append(float(e.get("ms", 0.0)))
            live = 0.0
            for kind, ms, touches_live in pending_sql:
                per.setdefault(kind, []).append(ms)
                if touches_live:
                    live += ms
            live_ms.append(live)
            pending_sql, delete_seen = [], False
    total_chunk = sum(chunk_ms) or 1.0
    kinds = {
        k: {
            "n": len(v),
            "per_chunk": round(len(v) / max(1, len(chunk_ms)), 2),
            "total_ms": round(sum(v), 1),
            "mean_ms": round(statistics.mean(v), 3),
            "p99_ms": round(percentile(v, 99), 2),
            "share": round(sum(v) / total_chunk, 4),
        }
        for k, v in sorted(per.items(), key=lambda kv: -sum(kv[1]))
    }
    sql_total = sum(sum(v) for v in per.values())
    return {
        "chunks": len(chunk_ms),
        "chunk_ms_mean": round(statistics.mean(chunk_ms), 2) if chunk_ms else None,
        "statements": kinds,
        "outside_sql_share": round(1 - sql_total / total_chunk, 4),
        "live_locking_ms_per_chunk_mean": round(statistics.mean(live_ms), 2) if live_ms else None,
        "statements_per_chunk": round(sum(len(v) for v in per.values()) / max(1, len(chunk_ms)), 1),
    }


def profile(
    server: Server, data: DataSet, engines: list[str], with_probe: bool, opts: Options
) -> list[dict[str, Any]]:
    """This tool at its defaults with -v on each engine; the per-statement breakdown of each."""
    targets = data.probe_targets(server) if with_probe else None
    tool = our_tool("ours-v", (), verbose=True)
    out = []
    for engine in engines:
        log(f"profile {engine}: running this tool with -v …")
        rec = measure(server, engine, tool, data, opts, 1, targets, tag="profile-")
        rec["breakdown"] = breakdown(parse_json_lines(Path(rec["log"])))
        out.append(rec)
        log(f"profile {engine}: {rec['rows_per_s']:,.0f} rows/s (with -v logging)")
    return out
