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

from common import TEMPLATE, Server, drop, fresh_copy, quiet_logs, template_leads

from archiver.schema import reflect
from archiver.steps import ARCHIVE, ChunkSql

NAME = "va_bench_dml"
Shape = Callable[[list[int]], str]


def shapes(sql: ChunkSql) -> dict[str, tuple[Shape, Shape]]:
    equal = sql.equal_expr()
    cols = ", ".join(f"`{c.name}`" for c in sql.columns)
    s_cols = ", ".join(f"s.`{c.name}`" for c in sql.columns)

    def id_list(ids: list[int]) -> str:
        return "(" + ",".join(map(str, ids)) + ")"

    def ins_leftjoin(ids: list[int]) -> str:
        return sql.insert().replace(":ids", id_list(ids))

    def ins_plain(ids: list[int]) -> str:
        return (
            f"INSERT INTO `vicidial_list_archive` ({cols}) SELECT {s_cols}"
            f" FROM `vicidial_list` AS s WHERE s.`lead_id` IN {id_list(ids)}"
        )

    def del_join(ids: list[int]) -> str:
        return sql.delete().replace(":ids", id_list(ids))

    def del_exists(ids: list[int]) -> str:
        proof = equal.replace("s.`", "`vicidial_list`.`")
        return (
            f"DELETE FROM `vicidial_list` WHERE `lead_id` IN {id_list(ids)} AND EXISTS"
            " (SELECT 1 FROM `vicidial_list_archive` AS d"
            f" WHERE d.`lead_id` = `vicidial_list`.`lead_id` AND {proof})"
        )

    def del_range(ids: list[int]) -> str:
        return (
            "DELETE s FROM `vicidial_list` AS s JOIN `vicidial_list_archive` AS d"
            f" ON d.`lead_id` = s.`lead_id` WHERE s.`lead_id` BETWEEN {ids[0]} AND {ids[-1]}"
            f" AND {equal}"
        )

    return {
        "leftjoin + join (the tool's)": (ins_leftjoin, del_join),
        "plain + join": (ins_plain, del_join),
        "plain + exists": (ins_plain, del_exists),
        "leftjoin + exists": (ins_leftjoin, del_exists),
        "leftjoin + range": (ins_leftjoin, del_range),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engine", default="InnoDB")
    p.add_argument("--chunks", type=int, default=500)
    args = p.parse_args()
    quiet_logs()
    server = Server()
    if template_leads(server) is None:
        raise SystemExit(f"no template {TEMPLATE}: run bench/run.py --keep-template first")
    fresh_copy(server, args.engine, name=NAME)
    try:
        db = server.archiver_db(NAME)
        live, arch = reflect(db, "vicidial_list"), reflect(db, "vicidial_list_archive")
        assert live is not None and arch is not None
        conn = db.conn
        tx = args.engine.lower() == "innodb"
        times: dict[str, tuple[list[float], list[float]]] = {}
        cursor = 0
        turns = itertools.cycle(shapes(ChunkSql(ARCHIVE, live, arch)).items())
        for _, (name, (insert, delete)) in zip(range(args.chunks), turns, strict=False):
            ids = [
                int(r[0])
                for r in conn.exec_driver_sql(
                    f"SELECT lead_id FROM vicidial_list WHERE lead_id > {cursor}"
                    " ORDER BY lead_id LIMIT 500"
                )
            ]
            if not ids:
                break
            cursor = ids[-1]
            if tx:
                conn.exec_driver_sql("BEGIN")
            t0 = time.perf_counter()
            conn.exec_driver_sql(insert(ids))
            t1 = time.perf_counter()
            deleted = conn.exec_driver_sql(delete(ids)).rowcount
            t2 = time.perf_counter()
            if tx:
                conn.exec_driver_sql("COMMIT")
            if deleted != len(ids):
                raise SystemExit(f"{name}: deleted {deleted} of {len(ids)}")
            ins_ms, del_ms = times.setdefault(name, ([], []))
            ins_ms.append((t1 - t0) * 1000)
            del_ms.append((t2 - t1) * 1000)
        print(f"{'shape':30s} {'insert p50':>10s} {'delete p50':>10s} {'sum of means':>12s}")
        for name, (a, b) in times.items():
            total = statistics.mean(a) + statistics.mean(b)
            print(
                f"{name:30s} {statistics.median(a):10.2f} {statistics.median(b):10.2f}"
                f" {total:12.2f}"
            )
        conn.close()
    finally:
        drop(server, NAME)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
