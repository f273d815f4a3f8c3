"""The frontier: every tool and setting on the same data, with the dialer probe beside it, on
each engine, `repeat` times (runs interleaved: rep 1 of every tool, then rep 2, …); medians."""

from __future__ import annotations

import statistics
from typing import Any

from bench import log
from bench.db import Server
from bench.measure import DataSet, Options, idle_probe, measure
from bench.tools import Tool


def run_frontier(
    server: Server,
    data: DataSet,
    tools: list[Tool],
    engines: list[str],
    repeat: int,
    idle_probe_s: float,
    opts: Options,
) -> list[dict[str, Any]]:
    log(f"selection: {data.selection.where} → {data.expected[0]:,} of {data.leads:,} leads")
    targets = data.probe_targets(server)
    records: list[dict[str, Any]] = []
    for engine in engines:
        if idle_probe_s > 0:
            rec = idle_probe(server, engine, data, targets, idle_probe_s, opts.probe_interval_ms)
            records.append(rec)
            p = rec["probe"]
            log(f"{engine:6} idle probe: p50 {p['p50_ms']} p99 {p['p99_ms']} max {p['max_ms']} ms")
        for rep in range(1, repeat + 1):
            for tool in tools:
                if not tool.runs_on(engine):
                    continue
                log(f"{engine:6} {tool.name:12} run {rep}/{repeat} …")
                rec = measure(server, engine, tool, data, opts, rep, targets)
                records.append(rec)
                p = rec["probe"] or {}
                check = rec["verify"]
                ok = "ok" if check["ok"] else "FAILED: " + "; ".join(check["problems"])
                log(
                    f"{engine:6} {tool.name:12} {rec['rows_per_s']:>9,.0f} rows/s "
                    f"wall {rec['wall_s']:.1f}s probe p50 {p.get('p50_ms')} p99 {p.get('p99_ms')}"
                    f" max {p.get('max_ms')} ms rss {rec['peak_rss_mb']} MB verify {ok}"
                    + (f" rc={rec['rc']} {rec.get('error', '')}" if rec["rc"] else "")
                )
    return records


BASELINE = "pt-bulk-500"


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (engine, tool): medians over the repeats, rows/s as a ratio to pt-archiver
    bulk --limit 500 on the same engine in the same invocation."""
    out: list[dict[str, Any]] = []
    for engine in dict.fromkeys(r["engine"] for r in records):
        recs = [r for r in records if r["engine"] == engine]

        def med(tool: str, key: str, sub: str | None = None, _recs: Any = recs) -> float | None:
            vals = []
            for r in _recs:
                if r["tool"] != tool:
                    continue
                v = r.get(key) if sub is None else (r.get(key) or {}).get(sub)
                if v is not None:
                    vals.append(float(v))
            return statistics.median(vals) if vals else None

        base = med(BASELINE, "rows_per_s")
        for tool in dict.fromkeys(r["tool"] for r in recs):
            sample = next(r for r in recs if r["tool"] == tool)
            rate = med(tool, "rows_per_s")
            mine = [r for r in recs if r["tool"] == tool]
            out.append(
                {
                    "engine": engine,
                    "tool": tool,
                    "family": sample["family"],
                    "setting": sample["setting"],
                    "label": sample["label"],
                    "kind": sample["kind"],
                    "rows_per_s": rate,
                    "p50_ms": med(tool, "probe", "p50_ms"),
                    "p99_ms": med(tool, "probe", "p99_ms"),
                    "max_ms": med(tool, "probe", "max_ms"),
                    "rss_mb": med(tool, "peak_rss_mb"),
                    "x_baseline": rate / base if rate and base else None,
                    "verified": None if tool == "idle" else all(r["verify"]["ok"] for r in mine),
                    "runs": len(mine),
                }
            )
    return out
