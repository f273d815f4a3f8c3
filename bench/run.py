"""Benchmark: vicidial-archiver against VICIdial's own way and pt-archiver, with a dialer probe.

    make bench                                   # 1M leads, MyISAM and InnoDB, every tool
    make bench BENCH_ARGS="--leads 50000"        # a quick run
    .venv/bin/python bench/run.py --help

For each engine and each tool, on a fresh copy of one seeded template database, the tool
archives the selection (`lead_id <= leads × archive-fraction` by default) while a dialer probe
(bench/probe.py) updates and looks up other leads every 5 ms. Reported per run: rows/s (rows
archived / wall time of the tool's process), probe latency p50/p99/max, the tool's peak RSS,
ratios to pt-archiver, and whether the archived rows are byte-for-byte the originals.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import (
    ARCHIVE,
    LIVE,
    ROOT,
    RUN_DB,
    TEMPLATE,
    Server,
    checksum,
    create_run_db,
    drop,
    exec_,
    fresh_copy,
    live_columns,
    q1,
    quiet_logs,
    rows,
    seed_template,
    settle,
    template_leads,
)
from probe import Probe, percentile, pick_targets, stats
from tools import (
    BASE_TOOLS,
    OUR_VARIANTS,
    Tool,
    ensure_pt_archiver,
    exp_tool,
    last_json_object,
    our_tool,
    ours,
    parse_json_lines,
    run_child,
)

from archiver import synthetic

RESULTS = ROOT / "bench" / "results"
DEFAULT_TOOLS = ("vicidial", "pt-bulk", "pt-default", *OUR_VARIANTS)


def log(msg: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


# --- arguments --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/run.py",
        description="vicidial-archiver vs VICIdial's way vs pt-archiver, with a dialer probe.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--dsn",
        default="mysql://root@127.0.0.1:3306",
        help="server to run on (the database part is ignored)",
    )
    p.add_argument("--leads", type=int, default=1_000_000, help="leads seeded into the template")
    p.add_argument(
        "--archive-fraction",
        type=float,
        default=0.5,
        help="fraction of leads selected: --where defaults to lead_id <= leads×this",
    )
    p.add_argument("--where", help="selection condition instead of the lead_id cut")
    p.add_argument("--engines", default="MyISAM,InnoDB", help="comma-separated")
    p.add_argument(
        "--tools",
        default=",".join(DEFAULT_TOOLS),
        help="comma-separated: vicidial, pt-bulk, pt-default, ours and its variants "
        f"({', '.join(OUR_VARIANTS)}), variants from --variant, exp-<name> "
        "experiments (see bench/experiments.py), or 'none'",
    )
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=FLAGS",
        help="an extra variant of this tool, e.g. ours-c250='--chunk-size 250'",
    )
    p.add_argument(
        "--repeat", type=int, default=1, help="runs per tool and engine; the table shows medians"
    )
    p.add_argument("--probe-interval-ms", type=float, default=5.0)
    p.add_argument(
        "--idle-probe-s",
        type=float,
        default=3.0,
        help="seconds of probe with no tool running, per engine (0 = skip)",
    )
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per tool run")
    p.add_argument(
        "--scaling",
        action="store_true",
        help="also run the scaling check (RSS and per-chunk time vs table size)",
    )
    p.add_argument("--scaling-only", action="store_true", help="only the scaling check")
    p.add_argument("--scaling-sizes", default="100000,2000000")
    p.add_argument("--scaling-engines", help="engines for the scaling check (default --engines)")
    p.add_argument(
        "--scaling-tools",
        default="ours,ours-ct50",
        help="variants of this tool for the scaling check",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="also run this tool with -v and break its chunk time down per statement",
    )
    p.add_argument("--profile-only", action="store_true", help="only the profile")
    p.add_argument(
        "--profile-probe", action="store_true", help="run the dialer probe beside the profiled run"
    )
    p.add_argument(
        "--breakdown",
        nargs="+",
        metavar="LOG",
        help="only print the per-statement breakdown of existing -v JSON logs",
    )
    p.add_argument(
        "--keep-template",
        action="store_true",
        help="keep the seeded template database (and reuse one of the same size)",
    )
    p.add_argument(
        "--install-pt",
        action="store_true",
        help="apt-get install percona-toolkit when pt-archiver is missing (root)",
    )
    p.add_argument("--results-dir", default=str(RESULTS))
    return p.parse_args(argv)


def resolve_tools(spec: str, variants: list[str]) -> list[Tool]:
    extra: dict[str, tuple[str, ...]] = dict(OUR_VARIANTS)
    for item in variants:
        name, _, flags = item.partition("=")
        if not name.startswith("ours"):
            name = f"ours-{name}"
        extra[name] = tuple(shlex.split(flags))
    names = [t.strip() for t in spec.split(",") if t.strip() and t.strip() != "none"]
    for item in variants:  # a variant given with --variant runs even when --tools omits it
        name = item.partition("=")[0]
        name = name if name.startswith("ours") else f"ours-{name}"
        if name not in names:
            names.append(name)
    tools: list[Tool] = []
    for name in names:
        if name in BASE_TOOLS:
            tools.append(BASE_TOOLS[name])
        elif name in extra:
            tools.append(our_tool(name, extra[name]))
        elif name.startswith("exp-"):
            tools.append(exp_tool(name[4:]))
        else:
            raise SystemExit(
                f"unknown tool {name!r}; known: {', '.join([*BASE_TOOLS, *extra])}, exp-<variant>"
            )
    return tools


# --- machine facts --------------------------------------------------------------------------


def machine(server: Server) -> dict[str, Any]:
    conn = server.connect()
    try:
        variables = {
            str(r[0]): str(r[1])
            for r in rows(
                conn,
                "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('version', 'key_buffer_size',"
                " 'innodb_buffer_pool_size', 'innodb_flush_log_at_trx_commit', 'concurrent_insert',"
                " 'low_priority_updates', 'local_infile', 'innodb_log_file_size', 'sync_binlog',"
                " 'log_bin', 'performance_schema')",
            )
        }
    finally:
        conn.close()
    free = subprocess.run(["free", "-h"], capture_output=True, text=True).stdout.strip()
    git = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "archiver"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    digest = hashlib.sha256()
    for path in sorted((ROOT / "archiver").rglob("*")):
        if path.is_file() and path.suffix in (".py", ".sql"):
            digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(),
        "nproc": os.cpu_count(),
        "free_h": free,
        "mariadb": variables,
        "python": platform.python_version(),
        "git_head": git,
        "archiver_dirty": bool(dirty),
        # The tool's sources as measured (the working tree may hold uncommitted changes).
        "archiver_sha256": digest.hexdigest()[:16],
    }


# --- one measured run ---------------------------------------------------------------------


def verify(
    server: Server, columns: list[str], where: str, expected: tuple[int, str, int], leads: int
) -> dict[str, Any]:
    conn = server.connect(RUN_DB)
    try:
        archived = int(q1(conn, f"SELECT COUNT(*) FROM {ARCHIVE}"))
        live = int(q1(conn, f"SELECT COUNT(*) FROM {LIVE}"))
        live_selected = int(q1(conn, f"SELECT COUNT(*) FROM {LIVE} WHERE {where}"))
        got = checksum(conn, ARCHIVE, columns, where)
    finally:
        conn.close()
    problems = []
    if archived != expected[0]:
        problems.append(f"archive holds {archived} rows, expected {expected[0]}")
    if live_selected:
        problems.append(f"{live_selected} selected rows still live")
    if live != leads - expected[0]:
        problems.append(f"live holds {live} rows, expected {leads - expected[0]}")
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


def chunk_stats(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    ms = [float(e["ms"]) for e in events if e.get("event") == "chunk" and "ms" in e]
    if not ms:
        return None
    leads = [int(e.get("leads", 0)) for e in events if e.get("event") == "chunk"]
    tenth = max(1, len(ms) // 10)
    return {
        "chunks": len(ms),
        "leads_per_chunk_mean": round(statistics.mean(leads), 1) if leads else None,
        "p50_ms": round(percentile(ms, 50), 2),
        "p90_ms": round(percentile(ms, 90), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(max(ms), 2),
        "first_decile_median_ms": round(statistics.median(ms[:tenth]), 2),
        "last_decile_median_ms": round(statistics.median(ms[-tenth:]), 2),
        "per_lead_ms_median": round(
            statistics.median(m / max(1, n) for m, n in zip(ms, leads, strict=False)), 4
        )
        if leads
        else None,
    }


def pt_statistics(stdout: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for line in stdout.splitlines():
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if m and m.group(1).upper() in {"SELECT", "INSERT", "DELETE"}:
            out[m.group(1).lower()] = int(m.group(2))
        m = re.match(r"^(\w+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)$", line.strip())
        if m:
            out[f"{m.group(1)}_s"] = float(m.group(3))
    return out


def measure(
    server: Server,
    engine: str,
    tool: Tool,
    where: str,
    leads: int,
    columns: list[str],
    expected: tuple[int, str, int],
    targets: list[tuple[int, str]],
    log_dir: Path,
    args: argparse.Namespace,
    rep: int,
    probe_on: bool = True,
) -> dict[str, Any]:
    copy_s = fresh_copy(server, engine)
    argv, env = tool.build(server, RUN_DB, where)
    probe = Probe(server, RUN_DB, targets, args.probe_interval_ms).start() if probe_on else None
    time.sleep(0.3)
    run = run_child(argv, env, log_dir, f"{engine}-{tool.name}-{rep}", args.timeout)
    result = probe.stop() if probe is not None else None
    samples = result.window(run.started, run.ended) if result is not None else []
    check = verify(server, columns, where, expected, leads)
    moved = check["archived"]
    rec: dict[str, Any] = {
        "engine": engine,
        "tool": tool.name,
        "label": tool.label,
        "kind": tool.kind,
        "rep": rep,
        "command": shlex.join(argv),
        "rc": run.rc,
        "wall_s": round(run.wall_s, 3),
        "rows": moved,
        "rows_per_s": round(moved / run.wall_s, 1) if run.wall_s > 0 else 0.0,
        "peak_rss_mb": round(run.maxrss_kb / 1024, 1),
        "probe": stats(samples) if probe_on else None,
        "verify": check,
        "copy_s": round(copy_s, 1),
        "log": str(run.stderr_path),
    }
    if tool.kind == "pt":
        rec["pt_statistics"] = pt_statistics(run.stdout)
    if tool.kind in ("ours", "exp"):
        rec["summary"] = last_json_object(run.stdout)
        rec["chunk"] = chunk_stats(parse_json_lines(run.stderr_path))
        summary = rec["summary"] or {}
        archived = (summary.get("counts") or {}).get("archived")
        if tool.kind == "ours" and archived is not None and archived != expected[0]:
            check["ok"] = False
            check["problems"].append(f"summary says {archived} archived, expected {expected[0]}")
    if run.rc != 0:
        err = run.stderr_path.read_text(errors="replace").strip().splitlines()[-3:]
        rec["error"] = " | ".join(err)
    return rec


def idle_probe(
    server: Server, engine: str, targets: list[tuple[int, str]], seconds: float, interval_ms: float
) -> dict[str, Any]:
    fresh_copy(server, engine)
    probe = Probe(server, RUN_DB, targets, interval_ms).start()
    time.sleep(seconds)
    res = probe.stop()
    return {
        "engine": engine,
        "tool": "idle",
        "label": "no tool (probe alone)",
        "kind": "idle",
        "probe": stats(res.samples),
    }


# --- the main comparison ------------------------------------------------------------------


def ensure_template(server: Server, leads: int, keep: bool) -> None:
    have = template_leads(server)
    if have == leads and keep:
        log(f"reusing template {TEMPLATE} with {leads} leads")
        return
    log(f"seeding {leads} leads into template {TEMPLATE} …")
    took = seed_template(server, leads)
    log(f"seeded in {took:.1f}s")


def compare(
    server: Server, args: argparse.Namespace, tools: list[Tool], engines: list[str], log_dir: Path
) -> list[dict[str, Any]]:
    leads = args.leads
    where = args.where or f"lead_id <= {int(leads * args.archive_fraction)}"
    ensure_template(server, leads, args.keep_template)
    conn = server.connect(TEMPLATE)
    try:
        columns = live_columns(conn, TEMPLATE)
        expected = checksum(conn, LIVE, columns, where)
    finally:
        conn.close()
    log(f"selection: {where} → {expected[0]} of {leads} leads")
    targets = pick_targets(server, TEMPLATE, where, leads)
    records: list[dict[str, Any]] = []
    for engine in engines:
        if args.idle_probe_s > 0:
            rec = idle_probe(server, engine, targets, args.idle_probe_s, args.probe_interval_ms)
            rec["leads"] = leads
            records.append(rec)
            p = rec["probe"]
            log(f"{engine:6} idle probe: p50 {p['p50_ms']} p99 {p['p99_ms']} max {p['max_ms']} ms")
        for rep in range(1, args.repeat + 1):
            for tool in tools:
                log(f"{engine:6} {tool.name:12} run {rep}/{args.repeat} …")
                rec = measure(
                    server,
                    engine,
                    tool,
                    where,
                    leads,
                    columns,
                    expected,
                    targets,
                    log_dir,
                    args,
                    rep,
                )
                rec["leads"], rec["where"] = leads, where
                records.append(rec)
                p = rec["probe"] or {}
                ok = (
                    "ok"
                    if rec["verify"]["ok"]
                    else "FAILED: " + "; ".join(rec["verify"]["problems"])
                )
                log(
                    f"{engine:6} {tool.name:12} {rec['rows_per_s']:>9,.0f} rows/s "
                    f"wall {rec['wall_s']:.1f}s probe p50 {p.get('p50_ms')} p99 {p.get('p99_ms')}"
                    f" max {p.get('max_ms')} ms rss {rec['peak_rss_mb']} MB verify {ok}"
                    + (f" rc={rec['rc']} {rec.get('error', '')}" if rec["rc"] else "")
                )
    return records


# --- scaling ------------------------------------------------------------------------------------


def scaling(
    server: Server, args: argparse.Namespace, engines: list[str], log_dir: Path
) -> list[dict[str, Any]]:
    """This tool alone at several table sizes: peak RSS and per-chunk time should stay flat."""
    tools = [t for t in resolve_tools(args.scaling_tools, args.variant) if t.kind == "ours"]
    out = []
    for engine in engines:
        for size in [int(s) for s in args.scaling_sizes.split(",") if s.strip()]:
            where = f"lead_id <= {int(size * args.archive_fraction)}"
            for tool in tools:
                log(f"scaling {engine} {size} leads {tool.name}: seeding …")
                seed_s = seed_run_db(server, engine, size)
                argv, env = tool.build(server, RUN_DB, where)
                run = run_child(
                    argv, env, log_dir, f"scaling-{engine}-{size}-{tool.name}", args.timeout
                )
                conn = server.connect(RUN_DB)
                try:
                    moved = int(q1(conn, f"SELECT COUNT(*) FROM {ARCHIVE}"))
                    left = int(q1(conn, f"SELECT COUNT(*) FROM {LIVE} WHERE {where}"))
                finally:
                    conn.close()
                rec: dict[str, Any] = {
                    "engine": engine,
                    "leads": size,
                    "tool": tool.name,
                    "where": where,
                    "rc": run.rc,
                    "rows": moved,
                    "selected_left_live": left,
                    "wall_s": round(run.wall_s, 2),
                    "rows_per_s": round(moved / run.wall_s, 1),
                    "peak_rss_mb": round(run.maxrss_kb / 1024, 1),
                    "chunk": chunk_stats(parse_json_lines(run.stderr_path)),
                    "seed_s": round(seed_s, 1),
                    "command": shlex.join(argv),
                }
                out.append(rec)
                c = rec["chunk"] or {}
                log(
                    f"scaling {engine} {size} {tool.name}: {rec['rows_per_s']:,.0f} rows/s rss "
                    f"{rec['peak_rss_mb']} MB chunk p50 {c.get('p50_ms')} ms (first decile "
                    f"{c.get('first_decile_median_ms')}, last {c.get('last_decile_median_ms')})"
                    f" p99 {c.get('p99_ms')} ms, {c.get('chunks')} chunks"
                )
    return out


def seed_run_db(server: Server, engine: str, size: int) -> float:
    """Seed `size` leads straight into the run database (no template)."""
    started = time.monotonic()
    db = create_run_db(server, RUN_DB, engine)
    if engine.lower() == "myisam":
        db.write("ALTER TABLE vicidial_list DISABLE KEYS")
    synthetic.seed_leads(db, size, batch=200_000)
    if engine.lower() == "myisam":
        db.write("ALTER TABLE vicidial_list ENABLE KEYS")
    db.conn.close()
    settle(server, RUN_DB, engine)
    return time.monotonic() - started


# --- profile: where a chunk's time goes ----------------------------------------------------------

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
    server: Server, args: argparse.Namespace, engines: list[str], log_dir: Path
) -> list[dict[str, Any]]:
    leads = args.leads
    where = args.where or f"lead_id <= {int(leads * args.archive_fraction)}"
    ensure_template(server, leads, True)
    conn = server.connect(TEMPLATE)
    try:
        columns = live_columns(conn, TEMPLATE)
        expected = checksum(conn, LIVE, columns, where)
    finally:
        conn.close()
    targets = pick_targets(server, TEMPLATE, where, leads)
    out = []
    for engine in engines:
        tool = Tool("ours-v", "vicidial-archiver -v (profile)", "ours", ours(verbose=True))
        log(f"profile {engine}: running this tool with -v …")
        rec = measure(
            server,
            engine,
            tool,
            where,
            leads,
            columns,
            expected,
            targets,
            log_dir,
            args,
            1,
            probe_on=args.profile_probe,
        )
        rec["breakdown"] = breakdown(parse_json_lines(Path(rec["log"])))
        out.append(rec)
        log(f"profile {engine}: {rec['rows_per_s']:,.0f} rows/s (with -v logging)")
    return out


# --- tables -------------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (engine, tool): medians over repeats, ratios to pt-archiver in the same run."""
    rows_: list[dict[str, Any]] = []
    engines = list(dict.fromkeys(r["engine"] for r in records))
    for engine in engines:
        recs = [r for r in records if r["engine"] == engine]
        tools = list(dict.fromkeys(r["tool"] for r in recs))

        def med(tool: str, key: str, sub: str | None = None, _recs: Any = recs) -> float | None:
            vals = []
            for r in _recs:
                if r["tool"] != tool:
                    continue
                v = r.get(key) if sub is None else (r.get(key) or {}).get(sub)
                if v is not None:
                    vals.append(float(v))
            return _median(vals) if vals else None

        bulk = med("pt-bulk", "rows_per_s")
        default = med("pt-default", "rows_per_s")
        for tool in tools:
            sample = next(r for r in recs if r["tool"] == tool)
            rate = med(tool, "rows_per_s")
            row = {
                "engine": engine,
                "tool": tool,
                "label": sample["label"],
                "rows_per_s": rate,
                "p50_ms": med(tool, "probe", "p50_ms"),
                "p99_ms": med(tool, "probe", "p99_ms"),
                "max_ms": med(tool, "probe", "max_ms"),
                "rss_mb": med(tool, "peak_rss_mb"),
                "x_pt_bulk": rate / bulk if rate and bulk else None,
                "x_pt_default": rate / default if rate and default else None,
                "verified": None
                if tool == "idle"
                else all(r["verify"]["ok"] for r in recs if r["tool"] == tool),
                "runs": sum(1 for r in recs if r["tool"] == tool),
            }
            rows_.append(row)
    return rows_


def fmt(v: Any, spec: str = ",.0f") -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    return format(v, spec)


def text_table(summary: list[dict[str, Any]]) -> str:
    head = (
        "engine",
        "tool",
        "rows/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "RSS MB",
        "×pt-bulk",
        "×pt-def",
        "verified",
    )
    lines = [head]
    for r in summary:
        lines.append(
            (
                r["engine"],
                r["tool"],
                fmt(r["rows_per_s"]),
                fmt(r["p50_ms"], ".1f"),
                fmt(r["p99_ms"], ".1f"),
                fmt(r["max_ms"], ",.0f"),
                fmt(r["rss_mb"], ".0f"),
                fmt(r["x_pt_bulk"], ".2f"),
                fmt(r["x_pt_default"], ".2f"),
                fmt(r["verified"]),
            )
        )
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    out = []
    for n, line in enumerate(lines):
        out.append(
            "  ".join(
                str(c).rjust(w) if i >= 2 else str(c).ljust(w)
                for i, (c, w) in enumerate(zip(line, widths, strict=True))
            )
        )
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def markdown_table(summary: list[dict[str, Any]]) -> str:
    out = [
        "| engine | tool | rows/s | probe p50 ms | probe p99 ms | probe max ms | peak RSS MB |"
        " × pt-archiver bulk | × pt-archiver default | verified |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in summary:
        out.append(
            f"| {r['engine']} | {r['label']} | {fmt(r['rows_per_s'])} | {fmt(r['p50_ms'], '.1f')}"
            f" | {fmt(r['p99_ms'], '.1f')} | {fmt(r['max_ms'], ',.0f')} | {fmt(r['rss_mb'], '.0f')}"
            f" | {fmt(r['x_pt_bulk'], '.2f')} | {fmt(r['x_pt_default'], '.2f')}"
            f" | {fmt(r['verified'])} |"
        )
    return "\n".join(out)


def scaling_markdown(recs: list[dict[str, Any]]) -> str:
    out = [
        "| engine | leads | tool | archived | rows/s | peak RSS MB | chunks | chunk p50 ms |"
        " first-decile median ms | last-decile median ms | chunk p99 ms | chunk max ms |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in recs:
        c = r.get("chunk") or {}
        out.append(
            f"| {r['engine']} | {r['leads']:,} | {r.get('tool', 'ours')} | {r['rows']:,} |"
            f" {fmt(r['rows_per_s'])} | {fmt(r['peak_rss_mb'], '.0f')} | {c.get('chunks')} |"
            f" {fmt(c.get('p50_ms'), '.1f')} |"
            f" {fmt(c.get('first_decile_median_ms'), '.1f')} |"
            f" {fmt(c.get('last_decile_median_ms'), '.1f')} | {fmt(c.get('p99_ms'), '.1f')} |"
            f" {fmt(c.get('max_ms'), ',.0f')} |"
        )
    return "\n".join(out)


def profile_markdown(recs: list[dict[str, Any]]) -> str:
    out = []
    for r in recs:
        b = r["breakdown"]
        out.append(
            f"**{r['engine']}** — {b['chunks']} chunks, mean {b['chunk_ms_mean']} ms per "
            f"chunk, {b['statements_per_chunk']} statements per chunk; statements on "
            f"vicidial_list (MyISAM: under its table lock): "
            f"{b['live_locking_ms_per_chunk_mean']} ms per chunk; "
            f"outside SQL (Python, logging): {b['outside_sql_share']:.0%}\n"
        )
        out.append("| statement | per chunk | mean ms | p99 ms | share of chunk time |")
        out.append("|---|---:|---:|---:|---:|")
        for k, v in b["statements"].items():
            out.append(
                f"| {k} | {v['per_chunk']} | {v['mean_ms']} | {v['p99_ms']} | {v['share']:.1%} |"
            )
        out.append("")
    return "\n".join(out)


# --- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.breakdown:
        recs = [
            {"engine": path, "breakdown": breakdown(parse_json_lines(Path(path)))}
            for path in args.breakdown
        ]
        print(profile_markdown(recs))
        return 0
    quiet_logs()
    server = Server.from_dsn(args.dsn)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    for e in engines:
        if e.lower() not in ("myisam", "innodb"):
            raise SystemExit(f"unknown engine {e!r}: MyISAM or InnoDB")
    tools = resolve_tools(args.tools, args.variant)
    only = args.scaling_only or args.profile_only
    pt_version = None
    if not only and any(t.kind == "pt" for t in tools):
        pt_version = ensure_pt_archiver(args.install_pt)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    results_dir = Path(args.results_dir)
    log_dir = results_dir / stamp
    log_dir.mkdir(parents=True, exist_ok=True)
    info = machine(server)
    info["pt_archiver"] = pt_version
    data: dict[str, Any] = {
        "machine": info,
        "args": vars(args),
        "runs": [],
        "scaling": [],
        "profile": [],
    }
    out_path = results_dir / f"{stamp}.json"

    conn = server.connect()
    old_infile = str(q1(conn, "SELECT @@GLOBAL.local_infile"))
    try:
        if old_infile != "1" and any(t.name == "pt-bulk" for t in tools):
            log("SET GLOBAL local_infile = 1 for pt-archiver --bulk-insert (restored at the end)")
            exec_(conn, "SET GLOBAL local_infile = 1")
        if not only and tools:
            data["runs"] = compare(server, args, tools, engines, log_dir)
            _save(out_path, data)
        if args.profile or args.profile_only:
            data["profile"] = profile(server, args, engines, log_dir)
            _save(out_path, data)
        if args.scaling or args.scaling_only:
            data["scaling"] = scaling(
                server,
                args,
                [e.strip() for e in (args.scaling_engines or args.engines).split(",") if e.strip()],
                log_dir,
            )
    finally:
        if old_infile != "1":
            exec_(conn, f"SET GLOBAL local_infile = {int(old_infile)}")
        conn.close()
        drop(server, RUN_DB)
        if not args.keep_template:
            drop(server, TEMPLATE)
        _save(out_path, data)

    print(
        f"\n# {info['date']} · {info['nproc']} cores · MariaDB {info['mariadb'].get('version')}"
        f" · {args.leads:,} leads, selection "
        f"{args.where or f'lead_id <= {int(args.leads * args.archive_fraction)}'}"
    )
    if data["runs"]:
        summary = summarize(data["runs"])
        data["summary"] = summary
        print()
        print(text_table(summary))
        print("\nMarkdown:\n")
        print(markdown_table(summary))
    if data["profile"]:
        print("\nWhere a chunk's time goes (this tool with -v):\n")
        print(profile_markdown(data["profile"]))
    if data["scaling"]:
        print("\nScaling (this tool alone):\n")
        print(scaling_markdown(data["scaling"]))
    _save(out_path, data)
    print(f"\nraw results: {out_path}\nlogs: {log_dir}")
    failed = [r for r in data["runs"] if r.get("verify") and not r["verify"]["ok"]]
    return 1 if failed else 0


def _save(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    tmp.replace(path)


if __name__ == "__main__":
    sys.exit(main())
