"""One measured run: a fresh copy, the tool's process with the dialer probe beside it, the
byte-exact check of what it archived; and what its logs say about its chunks."""

from __future__ import annotations

import itertools
import re
import shlex
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.db import (
    ARCHIVE,
    LIVE,
    RUN_DB,
    Checksum,
    Selection,
    Server,
    checksum,
    fresh_copy,
    live_columns,
    q1,
)
from bench.probe import Probe, percentile, pick_targets, stats
from bench.tools import Run, Tool, last_json_object, parse_json_lines, run_child


@dataclass(frozen=True)
class DataSet:
    """A template and what every run on a copy of it must end with."""

    template: str
    leads: int
    selection: Selection
    columns: list[str]
    expected: Checksum  # of the selected rows in the template

    @staticmethod
    def read(server: Server, template: str, leads: int, selection: Selection) -> DataSet:
        conn = server.connect(template)
        try:
            columns = live_columns(conn, template)
            expected = checksum(conn, LIVE, columns, selection.where)
        finally:
            conn.close()
        return DataSet(template, leads, selection, columns, expected)

    def probe_targets(self, server: Server) -> list[tuple[int, str]]:
        return pick_targets(server, self.template, self.selection.where, self.leads)


@dataclass(frozen=True)
class Options:
    log_dir: Path
    timeout: float
    probe_interval_ms: float


def verify(server: Server, data: DataSet) -> dict[str, Any]:
    """The run's end state against the template: the selected rows all in the archive, byte
    for byte, none of them live, every other lead live."""
    where = data.selection.where
    conn = server.connect(RUN_DB)
    try:
        archived = int(q1(conn, f"SELECT COUNT(*) FROM {ARCHIVE}"))
        live = int(q1(conn, f"SELECT COUNT(*) FROM {LIVE}"))
        live_selected = int(q1(conn, f"SELECT COUNT(*) FROM {LIVE} WHERE {where}"))
        got = checksum(conn, ARCHIVE, data.columns, where)
    finally:
        conn.close()
    expected = data.expected
    problems = []
    if archived != expected[0]:
        problems.append(f"archive holds {archived} rows, expected {expected[0]}")
    if live_selected:
        problems.append(f"{live_selected} selected rows still live")
    if live != data.leads - expected[0]:
        problems.append(f"live holds {live} rows, expected {data.leads - expected[0]}")
    if got != expected:
        problems.append("archived rows differ from the originals (checksum mismatch)")
    return {
        "archived": archived,
        "live": live,
        "live_selected": live_selected,
        "checksum_equal": got == expected,
        "ok": not problems,
        "problems": problems,
    }


def tenths(ms: list[float]) -> dict[str, Any]:
    """Medians of the first and the last tenth of a run's per-chunk times, and their ratio."""
    tenth = max(1, len(ms) // 10)
    first, last = statistics.median(ms[:tenth]), statistics.median(ms[-tenth:])
    return {
        "first_tenth_median_ms": round(first, 2),
        "last_tenth_median_ms": round(last, 2),
        "last_over_first": round(last / first, 3) if first > 0 else None,
    }


def chunk_stats(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Per-chunk times from this tool's (or an experiment's) `chunk` log events."""
    chunks = [e for e in events if e.get("event") == "chunk" and "ms" in e]
    if not chunks:
        return None
    ms = [float(e["ms"]) for e in chunks]
    leads = [int(e.get("leads", 0)) for e in chunks]
    return {
        "chunks": len(ms),
        "leads_per_chunk_mean": round(statistics.mean(leads), 1),
        "p50_ms": round(percentile(ms, 50), 2),
        "p90_ms": round(percentile(ms, 90), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(max(ms), 2),
        **tenths(ms),
    }


PROGRESS_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\s+(\d+)\s+(\d+)$")


def progress_stats(lines: list[tuple[float, str]], limit: int) -> dict[str, Any] | None:
    """pt-archiver's --progress lines (stamped on arrival) as time per `limit` rows, per
    interval: its equivalent of this tool's per-chunk time.

    In bulk mode a line is printed when the count reaches a multiple, after the chunk's SELECT
    and before its LOAD DATA and DELETE; so every interval holds the same work (the bulk
    writes of the chunk before the line that opens it, the SELECT of the one that closes it)
    except the first (from the start: no bulk writes) and the last line's repeat at the end
    (the last bulk writes alone, no new rows): both are left out."""
    points = [(t, int(m.group(2))) for t, line in lines if (m := PROGRESS_LINE.match(line))]
    per_chunk: list[float] = []
    for (t0, n0), (t1, n1) in itertools.pairwise(points):
        if n0 > 0 and n1 > n0:
            per_chunk.append((t1 - t0) * 1000 * limit / (n1 - n0))
    if not per_chunk:
        return None
    return {
        "intervals": len(per_chunk),
        "rows_per_interval": points[1][1] - points[0][1],
        "p50_ms": round(percentile(per_chunk, 50), 2),
        "p99_ms": round(percentile(per_chunk, 99), 2),
        "max_ms": round(max(per_chunk), 2),
        **tenths(per_chunk),
        "points": [(round(t - points[0][0], 3), n) for t, n in points],
    }


def pt_statistics(stdout: str) -> dict[str, Any]:
    """pt-archiver's --statistics: rows per action and seconds per action."""
    out: dict[str, Any] = {}
    for line in stdout.splitlines():
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if m and m.group(1).upper() in {"SELECT", "INSERT", "DELETE"}:
            out[m.group(1).lower()] = int(m.group(2))
        m = re.match(r"^(\w+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)$", line.strip())
        if m:
            out[f"{m.group(1)}_s"] = float(m.group(3))
    return out


def _record(tool: Tool, engine: str, rep: int, run: Run, moved: int) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "engine": engine,
        "tool": tool.name,
        "family": tool.family,
        "setting": tool.setting,
        "label": tool.label,
        "kind": tool.kind,
        "rep": rep,
        "command": shlex.join(run.argv),
        "rc": run.rc,
        "wall_s": round(run.wall_s, 3),
        "rows": moved,
        "rows_per_s": round(moved / run.wall_s, 1) if run.wall_s > 0 else 0.0,
        "peak_rss_mb": round(run.maxrss_kb / 1024, 1),
        "log": str(run.stderr_path),
    }
    if tool.kind == "pt":
        rec["pt_statistics"] = pt_statistics(run.stdout)
    if tool.kind in ("ours", "exp"):
        rec["summary"] = last_json_object(run.stdout)
        rec["chunk"] = chunk_stats(parse_json_lines(run.stderr_path))
    if run.rc != 0:
        err = run.stderr_path.read_text(errors="replace").strip().splitlines()[-3:]
        rec["error"] = " | ".join(err)
    return rec


def measure(
    server: Server,
    engine: str,
    tool: Tool,
    data: DataSet,
    opts: Options,
    rep: int,
    targets: list[tuple[int, str]] | None,
    *,
    tag: str = "",
    pt_limit: int = 0,
) -> dict[str, Any]:
    """One run of `tool` on a fresh copy: with the dialer probe when `targets` are given; with
    `pt_limit`, pt-archiver's progress lines are stamped and read per `pt_limit` rows."""
    copy_s = fresh_copy(server, engine, data.template)
    argv, env = tool.build(server, RUN_DB, data.selection)
    probe = Probe(server, RUN_DB, targets, opts.probe_interval_ms).start() if targets else None
    if probe is not None:
        time.sleep(0.3)
    name = f"{tag}{engine}-{tool.name}-{rep}"
    run = run_child(argv, env, opts.log_dir, name, opts.timeout, timestamp_stdout=pt_limit > 0)
    result = probe.stop() if probe is not None else None
    check = verify(server, data)
    rec = _record(tool, engine, rep, run, check["archived"])
    rec.update(leads=data.leads, where=data.selection.where, copy_s=round(copy_s, 1))
    rec["verify"] = check
    rec["probe"] = stats(result.window(run.started, run.ended)) if result is not None else None
    if pt_limit:
        rec["chunk"] = progress_stats(run.lines, pt_limit)
    summary = rec.get("summary") or {}
    archived = (summary.get("counts") or {}).get("archived")
    if tool.kind == "ours" and archived != data.expected[0]:
        check["ok"] = False
        check["problems"].append(f"summary says {archived} archived, expected {data.expected[0]}")
    return rec


def idle_probe(
    server: Server,
    engine: str,
    data: DataSet,
    targets: list[tuple[int, str]],
    seconds: float,
    interval_ms: float,
) -> dict[str, Any]:
    """The probe alone on a fresh copy: the dialer's latency with no tool running."""
    fresh_copy(server, engine, data.template)
    probe = Probe(server, RUN_DB, targets, interval_ms).start()
    time.sleep(seconds)
    res = probe.stop()
    return {
        "engine": engine,
        "tool": "idle",
        "family": "no tool",
        "setting": "probe alone",
        "label": "no tool (probe alone)",
        "kind": "idle",
        "leads": data.leads,
        "probe": stats(res.samples),
    }
