"""Times shapes of the chunk's first statement (the scan) on an InnoDB copy of the template.

The tool reads a chunk with one SELECT: the keyset walk, each lead's state in the archive (a
correlated subquery with the byte-exact comparison) and the live-lead guards (one EXISTS per
guard table), `FOR UPDATE` on InnoDB. This script times that statement against simpler shapes,
each in a transaction that is rolled back, on random 501-row windows of the selection:

    .venv/bin/python bench/scan_shapes.py               # needs run.py --keep-template's template
    .venv/bin/python bench/scan_shapes.py --guard-rows  # with rows in the guard tables
    .venv/bin/python bench/scan_shapes.py --samples 80

It creates the database `va_bench_scan` (a copy of the template) and drops it at the end.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

from common import Server, exec_, quiet_logs, template_copy

from archiver.steps import GUARDS, ChunkSql

NAME = "va_bench_scan"
NO_CACHE = "SET SESSION optimizer_switch = 'subquery_cache=off'"
WITH_CACHE = "SET SESSION optimizer_switch = 'subquery_cache=on'"


def shapes(sql: ChunkSql) -> dict[str, tuple[str, Callable[[str, int, int], str]]]:
    """name → (session setting, statement for a window `where` and its id range)."""
    guards = [table for _, table, _ in GUARDS]
    equal = sql.equal_expr()

    def scan(tables: list[str]) -> Callable[[str, int, int], str]:
        return lambda w, lo, hi: sql.scan(w, tables, lock=True)

    def union(lo: int, hi: int, ranged: bool) -> str:
        r = f" WHERE `lead_id` > {lo} AND `lead_id` <= {hi}" if ranged else " WHERE 1"
        parts = [f"SELECT `lead_id` FROM `{table}`{r}{extra}" for _, table, extra in GUARDS]
        return "(s.`lead_id` IN (" + " UNION ALL ".join(parts) + "))"

    def union_scan(ranged: bool) -> Callable[[str, int, int], str]:
        return lambda w, lo, hi: sql.scan(w, [], lock=True).replace(
            "0 AS `_live`", union(lo, hi, ranged) + " AS `_live`"
        )

    return {
        "walk FOR UPDATE": (
            WITH_CACHE,
            lambda w, lo, hi: f"SELECT s.`lead_id` FROM `vicidial_list` AS s WHERE {w} FOR UPDATE",
        ),
        "walk + LEFT JOIN archive": (
            WITH_CACHE,
            lambda w, lo, hi: (
                f"SELECT s.`lead_id`, IF(d.`lead_id` IS NULL, NULL, {equal})"
                " FROM `vicidial_list` AS s LEFT JOIN `vicidial_list_archive` AS d"
                f" ON d.`lead_id` = s.`lead_id` WHERE {w} FOR UPDATE"
            ),
        ),
        "scan, no guards": (WITH_CACHE, scan([])),
        "scan (the tool's, cache on)": (
            WITH_CACHE,
            scan(guards),
        ),
        "scan, no guards, cache off": (NO_CACHE, scan([])),
        "scan, cache off (the tool's)": (
            NO_CACHE,
            scan(guards),
        ),
        "guards as IN (UNION ALL), cache off": (NO_CACHE, union_scan(False)),
        "guards as ranged IN (UNION ALL), cache off": (NO_CACHE, union_scan(True)),
    }


def fill_guards(server: Server) -> None:
    conn = server.connect(NAME)
    try:
        exec_(conn, "SET SESSION sql_mode = ''")
        for table, n, cols, values in (
            ("vicidial_hopper", 3000, "lead_id", "lead_id"),
            ("vicidial_auto_calls", 200, "lead_id", "lead_id"),
            ("vicidial_live_agents", 100, "lead_id, user", "lead_id, CONCAT('u', lead_id)"),
            (
                "vicidial_callbacks",
                200_000,
                "lead_id, status",
                "lead_id, ELT(1 + FLOOR(RAND() * 5), 'ACTIVE', 'INACTIVE', 'INACTIVE',"
                " 'INACTIVE', 'LIVE')",
            ),
        ):
            exec_(
                conn,
                f"INSERT INTO `{table}` ({cols}) SELECT {values} FROM vicidial_list"
                f" ORDER BY RAND() LIMIT {n}",
            )
    finally:
        conn.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=40)
    p.add_argument("--guard-rows", action="store_true", help="fill the guard tables first")
    args = p.parse_args()
    quiet_logs()
    server = Server()
    with template_copy(server, "InnoDB", NAME) as (db, sql, leads):
        if args.guard_rows:
            fill_guards(server)
        conn = db.conn
        built = shapes(sql)
        times: dict[str, list[float]] = {}
        top = leads // 2
        for _ in range(args.samples):
            lo = random.randrange(0, top - 1000)
            hi = lo + 5000
            where = (
                f"s.`lead_id` > {lo} AND s.`lead_id` <= {hi} AND (s.`lead_id` <= {top})"
                " ORDER BY s.`lead_id` LIMIT 501"
            )
            for name, (setting, build) in built.items():
                conn.exec_driver_sql(setting)
                stmt = build(where, lo, hi)
                # Rolled back, not committed: every shape locks the same untouched rows.
                conn.exec_driver_sql("BEGIN")
                started = time.perf_counter()
                conn.exec_driver_sql(stmt).fetchall()
                times.setdefault(name, []).append((time.perf_counter() - started) * 1000)
                conn.exec_driver_sql("ROLLBACK")
    print(f"{'shape':45s} {'median ms':>10s} {'mean ms':>8s}")
    for name, values in times.items():
        print(f"{name:45s} {statistics.median(values):10.2f} {statistics.mean(values):8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
