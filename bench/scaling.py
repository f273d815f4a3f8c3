"""Scaling: this tool and pt-archiver alone (no probe) at several table sizes, half of each
archived. Per run: rows/s, peak RSS, and the per-chunk time of the first tenth of the run
against the last tenth (this tool: its `chunk` events; pt-archiver: its --progress intervals,
stamped as they arrive, as time per --limit rows)."""

from __future__ import annotations

import re
from typing import Any

from bench import log
from bench.db import Selection, Server, Templates
from bench.measure import DataSet, Options, measure
from bench.tools import Tool, pt_tool

INTERVALS = 100  # pt-archiver progress lines per run, about


def _pt_with_progress(tool: Tool, selected: int) -> tuple[Tool, int]:
    m = re.fullmatch(r"pt-(bulk|default)-(\d+)", tool.name)
    assert m is not None, tool.name
    limit = int(m.group(2))
    every = limit * max(1, round(selected / limit / INTERVALS))
    return pt_tool(limit, bulk=m.group(1) == "bulk", progress=every), limit


def run_scaling(
    server: Server,
    templates: Templates,
    sizes: list[int],
    engines: list[str],
    tools: list[Tool],
    selection: Selection,
    keep_size: int | None,
    opts: Options,
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for size in sizes:
        data = DataSet.read(server, templates.get(size), size, selection)
        for engine in engines:
            for tool in tools:
                if not tool.runs_on(engine):
                    continue
                run_tool, limit = tool, 0
                if tool.kind == "pt":
                    run_tool, limit = _pt_with_progress(tool, data.expected[0])
                log(f"scaling {engine} {size:,} leads {tool.name} …")
                rec = measure(
                    server, engine, run_tool, data, opts, 1, None, tag="scaling-", pt_limit=limit
                )
                out.append(rec)
                c = rec.get("chunk") or {}
                check = rec["verify"]
                ok = "ok" if check["ok"] else "FAILED: " + "; ".join(check["problems"])
                log(
                    f"scaling {engine} {size:,} {tool.name}: {rec['rows_per_s']:,.0f} rows/s, "
                    f"rss {rec['peak_rss_mb']} MB, per chunk first tenth "
                    f"{c.get('first_tenth_median_ms')} ms, last tenth "
                    f"{c.get('last_tenth_median_ms')} ms, copy {rec['copy_s']} s, verify {ok}"
                )
        if size != keep_size:
            templates.drop(size)
    return out
