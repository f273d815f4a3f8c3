"""Times shapes of the chunk's INSERT and verified DELETE, alternating chunk by chunk on one copy.

Every shape keeps the safety rule (the DELETE proves a byte-equal archive row in the same
statement). Shapes take turns on consecutive 500-lead chunks of one fresh copy of the template,
so all see the same table state:

    .venv/bin/python bench/dml_shapes.py --engine InnoDB --chunks 500

insert: `leftjoin` is the tool's INSERT … SELECT … LEFT JOIN … IS NULL, `plain` the same without
the anti-join. delete: `join` is the tool's DELETE s … JOIN d … byte-equal over the id list,
`exists` a single-table DELETE with a correlated EXISTS, `range` the JOIN over BETWEEN first
AND last. It creates and drops the database `va_bench_dml`.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable
from typing import Any

from common import Server, quiet_logs, template_copy

from archiver.db import Db, q
from archiver.steps import ChunkSql

NAME = "va_bench_dml"
# A shape: the chunk's ids → (statement with bind parameters, its parameters).
Shape = Callable[[list[int]], tuple[str, dict[str, Any]]]


def shapes(sql: ChunkSql) -> dict[str, tuple[Shape, Shape]]:
    equal = sql.equal_expr()
    cols = ", ".join(q(c.name) for c in sql.columns)
    s_cols = ", ".join(f"s.{q(c.name)}" for c in sql.columns)
    proof = equal.replace("s.`", "`vicidial_list`.`")

    def by_ids(stmt: str) -> Shape:
        return lambda ids: (stmt, {"ids": ids})

    def by_range(stmt: str) -> Shape:
        return lambda ids: (stmt, {"first": ids[0], "last": ids[-1]})

    ins_leftjoin = by_ids(sql.insert())
    ins_plain = by_ids(
        f"INSERT INTO `vicidial_list_archive` ({cols}) SELECT {s_cols}"
        " FROM `vicidial_list` AS s WHERE s.`lead_id` IN :ids"
    )
    del_join = by_ids(sql.delete())
    del_exists = by_ids(
        "DELETE FROM `vicidial_list` WHERE `lead_id` IN :ids AND EXISTS"
        " (SELECT 1 FROM `vicidial_list_archive` AS d"
        f" WHERE d.`lead_id` = `vicidial_list`.`lead_id` AND {proof})"
    )
    del_range = by_range(
        "DELETE s FROM `vicidial_list` AS s JOIN `vicidial_list_archive` AS d"
        " ON d.`lead_id` = s.`lead_id` WHERE s.`lead_id` BETWEEN :first AND :last"
        f" AND {equal}"
    )
    return {
        "leftjoin + join (the tool's)": (ins_leftjoin, del_join),
        "plain + join": (ins_plain, del_join),
        "plain + exists": (ins_plain, del_exists),
        "leftjoin + exists": (ins_leftjoin, del_exists),
        "leftjoin + range": (ins_leftjoin, del_range),
    }


def timed(db: Db, shape: Shape, ids: list[int]) -> tuple[int, float]:
    stmt, params = shape(ids)
    started = time.perf_counter()
    count = db.write(stmt, params)
    return count, (time.perf_counter() - started) * 1000


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engine", default="InnoDB")
    p.add_argument("--chunks", type=int, default=500)
    args = p.parse_args()
    quiet_logs()
    times: dict[str, tuple[list[float], list[float]]] = {}
    with template_copy(Server(), args.engine, NAME) as (db, sql, _leads):
        cursor = 0
        turns = itertools.cycle(shapes(sql).items())
        for _, (name, (insert, delete)) in zip(range(args.chunks), turns, strict=False):
            ids = [
                int(r[0])
                for r in db.rows(
                    "SELECT lead_id FROM vicidial_list WHERE lead_id > :after"
                    " ORDER BY lead_id LIMIT 500",
                    {"after": cursor},
                )
            ]
            if not ids:
                break
            cursor = ids[-1]
            with db.transaction(args.engine.lower() == "innodb"):
                _, ins_ms = timed(db, insert, ids)
                deleted, del_ms = timed(db, delete, ids)
            if deleted != len(ids):
                raise SystemExit(f"{name}: deleted {deleted} of {len(ids)}")
            ins_times, del_times = times.setdefault(name, ([], []))
            ins_times.append(ins_ms)
            del_times.append(del_ms)
    print(f"{'shape':30s} {'insert p50':>10s} {'delete p50':>10s} {'sum of means':>12s}")
    for name, (a, b) in times.items():
        total = statistics.mean(a) + statistics.mean(b)
        print(f"{name:30s} {statistics.median(a):10.2f} {statistics.median(b):10.2f} {total:12.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
