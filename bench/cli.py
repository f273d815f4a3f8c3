"""`python -m bench` (what `make bench` runs): the frontier of rows/s against the dialer's p99
for this tool and pt-archiver at several settings, a scaling run, or a per-statement profile.

    make bench                                        # frontier: 1M leads, both engines, repeat 3
    make bench BENCH_ARGS="--leads 20000 --repeat 1"  # a quick run
    make bench BENCH_ARGS="--mode scaling"            # 100k, 1M, 5M leads: RSS, first/last tenth
    .venv/bin/python -m bench --help

See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import ROOT, log
from bench.breakdown import breakdown, profile
from bench.db import RUN_DB, Selection, Server, Templates, drop, exec_, q1, quiet_logs, rows
from bench.frontier import run_frontier, summarize
from bench.measure import DataSet, Options
from bench.report import (
    frontier_markdown,
    frontier_png,
    frontier_text,
    profile_markdown,
    scaling_markdown,
    scaling_text,
)
from bench.scaling import run_scaling
from bench.tools import (
    FRONTIER_TOOLS,
    OUR_SETTINGS,
    parse_json_lines,
    require_pt_archiver,
    resolve_tools,
)

RESULTS = ROOT / "bench" / "results"
MODES = ("frontier", "scaling", "all", "profile")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="vicidial-archiver against pt-archiver at equal dialer impact: rows/s and "
        "the dialer probe's latency per tool and setting, and how both scale.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--mode",
        choices=MODES,
        default="frontier",
        help="frontier; scaling; all (frontier then scaling); profile (this tool with -v, "
        "time per statement kind)",
    )
    p.add_argument(
        "--dsn",
        default="mysql://root@127.0.0.1:3306",
        help="server to run on (the database part is ignored)",
    )
    p.add_argument(
        "--leads",
        type=int,
        default=1_000_000,
        help="leads in the frontier's (and the profile's) data set; half of them are archived",
    )
    p.add_argument(
        "--where",
        help="archive this condition instead of the archived list (this tool gets --where too)",
    )
    p.add_argument("--engines", default="MyISAM,InnoDB", help="comma-separated")
    p.add_argument(
        "--tools",
        default=",".join(FRONTIER_TOOLS),
        help="frontier tools, comma-separated: pt-bulk-N, pt-default-N, vicidial, ours and its "
        f"settings ({', '.join(OUR_SETTINGS)}), settings from --variant, exp-<variant> "
        "(bench/experiments/loops.py)",
    )
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=FLAGS",
        help="an extra setting of this tool, e.g. ours-c50='--chunk-size 50'",
    )
    p.add_argument(
        "--repeat", type=int, default=3, help="frontier runs per tool and engine; medians shown"
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
        "--scaling-sizes", default="100000,1000000,5000000", help="leads, comma-separated"
    )
    p.add_argument("--scaling-tools", default="ours,pt-bulk-500")
    p.add_argument(
        "--profile-probe", action="store_true", help="run the dialer probe beside the profile"
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
        help="keep the seeded data sets (va_bench_tpl_<leads>) and reuse them next time",
    )
    p.add_argument("--results-dir", default=str(RESULTS))
    args = p.parse_args(argv)
    if args.leads < 2 or args.repeat < 1:
        p.error("--leads must be at least 2 and --repeat at least 1")
    return args


def machine(server: Server) -> dict[str, Any]:
    """The machine, the server's settings that matter here, and the tool's sources as
    measured (git HEAD and a hash of archiver/, which may hold uncommitted changes)."""
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
        "load_average": os.getloadavg(),
        "free_h": free,
        "mariadb": variables,
        "python": platform.python_version(),
        "git_head": git,
        "archiver_dirty": bool(dirty),
        "archiver_sha256": digest.hexdigest()[:16],
    }


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _save(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    tmp.replace(path)


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
    engines = _csv(args.engines)
    for e in engines:
        if e.lower() not in ("myisam", "innodb"):
            raise SystemExit(f"unknown engine {e!r}: MyISAM or InnoDB")
    frontier = args.mode in ("frontier", "all")
    scaling = args.mode in ("scaling", "all")
    tools = resolve_tools(args.tools, args.variant) if frontier else []
    scaling_tools = resolve_tools(args.scaling_tools, []) if scaling else []
    sizes = sorted(int(s) for s in _csv(args.scaling_sizes)) if scaling else []
    selection = Selection.by_where(args.where) if args.where else Selection.by_list()
    every = tools + scaling_tools
    pt_version = require_pt_archiver() if any(t.kind == "pt" for t in every) else None

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    results_dir = Path(args.results_dir)
    log_dir = results_dir / stamp
    log_dir.mkdir(parents=True, exist_ok=True)
    opts = Options(log_dir, args.timeout, args.probe_interval_ms)
    info = machine(server)
    info["pt_archiver"] = pt_version
    data: dict[str, Any] = {"machine": info, "args": vars(args), "runs": [], "scaling": []}
    out_path = results_dir / f"{stamp}.json"
    templates = Templates(server, args.keep_template)

    conn = server.connect()
    old_infile = str(q1(conn, "SELECT @@GLOBAL.local_infile"))
    try:
        if old_infile != "1" and any(t.name.startswith("pt-bulk") for t in every):
            log("SET GLOBAL local_infile = 1 for pt-archiver --bulk-insert (restored at the end)")
            exec_(conn, "SET GLOBAL local_infile = 1")
        if frontier:
            dataset = DataSet.read(server, templates.get(args.leads), args.leads, selection)
            data["runs"] = run_frontier(
                server, dataset, tools, engines, args.repeat, args.idle_probe_s, opts
            )
            data["summary"] = summarize(data["runs"])
            _save(out_path, data)
        if args.mode == "profile":
            dataset = DataSet.read(server, templates.get(args.leads), args.leads, selection)
            data["profile"] = profile(server, dataset, engines, args.profile_probe, opts)
            _save(out_path, data)
        if scaling:
            keep = args.leads if frontier else None
            data["scaling"] = run_scaling(
                server, templates, sizes, engines, scaling_tools, selection, keep, opts
            )
    finally:
        if old_infile != "1":
            exec_(conn, f"SET GLOBAL local_infile = {int(old_infile)}")
        conn.close()
        drop(server, RUN_DB)
        templates.close()
        _save(out_path, data)

    report = _report(data, args, selection, info, results_dir, stamp)
    md_path = results_dir / f"{stamp}.md"
    md_path.write_text(report)
    print(f"\nraw results: {out_path}\ntables: {md_path}")
    if data.get("png"):
        print(f"plot: {data['png']}")
    print(f"logs: {log_dir}")
    _save(out_path, data)
    failed = [
        r for r in data["runs"] + data["scaling"] if r.get("verify") and not r["verify"]["ok"]
    ]
    return 1 if failed else 0


def _report(
    data: dict[str, Any],
    args: argparse.Namespace,
    selection: Selection,
    info: dict[str, Any],
    results_dir: Path,
    stamp: str,
) -> str:
    """Print the tables (plain text) and return them as Markdown; draw the frontier plot."""
    load = ", ".join(f"{x:.1f}" for x in info["load_average"])
    head = (
        f"{info['date']} · {info['host']} · {info['nproc']} cores (load {load}) · MariaDB "
        f"{info['mariadb'].get('version')} · {info['pt_archiver'] or 'no pt-archiver'} · git "
        f"{info['git_head']}{' (archiver/ changed)' if info['archiver_dirty'] else ''}"
    )
    print(f"\n# {head}")
    md = [f"# {head}", ""]
    if data.get("summary"):
        what = (
            f"Frontier: {args.leads:,} leads, archiving {selection.where}, dialer probe every "
            f"{args.probe_interval_ms:g} ms, medians of {args.repeat}"
        )
        print(f"\n{what}\n")
        print(frontier_text(data["summary"]))
        md += [f"## {what}", "", frontier_markdown(data["summary"]), ""]
        png = results_dir / f"{stamp}-frontier.png"
        frontier_png(data["summary"], png, f"{what}\n{head}")
        data["png"] = str(png)
        md += [f"![frontier]({png.name})", ""]
    if data.get("profile"):
        print("\nWhere a chunk's time goes (this tool with -v):\n")
        print(profile_markdown(data["profile"]))
        md += ["## Where a chunk's time goes", "", profile_markdown(data["profile"]), ""]
    if data["scaling"]:
        what = f"Scaling: archiving {selection.where} (half), no probe"
        print(f"\n{what}\n")
        print(scaling_text(data["scaling"]))
        md += [f"## {what}", "", scaling_markdown(data["scaling"]), ""]
    return "\n".join(md)


if __name__ == "__main__":
    sys.exit(main())
