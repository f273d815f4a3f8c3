"""Statement-shape experiments: minimal verified chunk loops, to measure one idea at a time.

These are NOT the tool. They are the smallest loops that keep the tool's safety rule (a live
row is deleted only by a statement that finds a byte-equal archive row: `DELETE s FROM live s
JOIN archive d … WHERE <every column CAST AS BINARY <=> …>`), without checkpoint tables, guards
or classification, so that the cost of each statement shape, and what it does to the dialer
probe, can be measured on its own. Run by the bench (`python -m bench`) as tools named
`exp-<variant>`:

    .venv/bin/python -m bench --engines MyISAM --tools pt-bulk-500,exp-plain,exp-stage+split100

A variant is a base shape plus options joined with `+`, and an optional `:N` chunk size:

  plain       INSERT … SELECT … LEFT JOIN … IS NULL (reads vicidial_list under its table lock
              while the archive's 13 indexes are updated), then the DELETE JOIN byte-equal.
  fetch       SELECT the chunk's rows (as bytes), INSERT IGNORE … VALUES them into the archive
              (vicidial_list is not locked during the archive insert), then the DELETE JOIN.
  load        like fetch, but the archive insert is LOAD DATA LOCAL INFILE (as pt-archiver does).
  stage       copy the chunk server-side into a session TEMPORARY table (ENGINE=MEMORY, no
              indexes: vicidial_list is read-locked for ~1 ms per 500 rows), then INSERT IGNORE
              … SELECT from it into the archive (only the archive is locked while its indexes
              are updated; no row crosses the network), then the DELETE JOIN.
  +range      select and delete by `lead_id BETWEEN first AND last AND (criteria)` instead of
              `lead_id IN (500 ids)`.
  +splitK     run the DELETE JOIN as several statements of K ids each, so the dialer can take the
              table lock between them.
  +lowprio    DELETE LOW_PRIORITY (MyISAM: wait while readers want the table).
  +quick      DELETE QUICK (MyISAM: do not merge index leaves while deleting).
  +nocompare  DELETE by id only, no byte-equal proof (UNSAFE; only to measure the proof's cost).
  +nocheck    no pre-check SELECT of the ids already archived (the tool does one per chunk).
  +pipe       two connections: while one deletes chunk N from vicidial_list, the other copies
              chunk N+1 into the archive (the two statements lock different MyISAM tables,
              so the server runs them on both cores). The delete still proves equality.
  +dkwa       ALTER TABLE vicidial_list_archive DELAY_KEY_WRITE=1 first (MyISAM: the archive's
              changed index blocks stay in the key cache instead of being written out at the
              end of every statement; a crash then needs REPAIR TABLE on the archive).
  +dkwl       the same on vicidial_list (shorter DELETEs under its write lock; same crash
              caveat, on the live table: a DBA decision, measured here only as a knob).
  +dka        ALTER TABLE vicidial_list_archive DISABLE KEYS before the run and ENABLE KEYS
              after it (timed): MyISAM then maintains only the archive's PRIMARY KEY per chunk
              and rebuilds the other 12 indexes once, by sort, at the end. The archive's
              non-unique indexes are unusable while the job runs, and ENABLE KEYS rebuilds
              them for the WHOLE archive (old rows too).
  +tx         InnoDB: one transaction per chunk whose walk locks the rows it returns
              (`… ORDER BY lead_id LIMIT n FOR UPDATE`), then insert and delete, then COMMIT.
  +bufres     SELECT SQL_BUFFER_RESULT for the fetch: the server copies the result into a temp
              table and drops vicidial_list's read lock before sending rows to the (slow,
              pure-Python) client.

Prints one JSON summary on stdout and one JSON `chunk` event per chunk on stderr (with the
milliseconds of every statement), in the tool's log shape so the bench reads both the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

from bench.db import ARCHIVE, LIVE, Server, live_columns

BASES = ("plain", "fetch", "load", "stage")
OPTIONS = (
    "range",
    "lowprio",
    "quick",
    "nocompare",
    "nocheck",
    "bufres",
    "pipe",
    "tx",
    "dkwa",
    "dkwl",
    "dka",
)


@dataclass(frozen=True)
class Variant:
    name: str
    base: str
    chunk: int
    range_: bool = False
    split: int = 0
    lowprio: bool = False
    quick: bool = False
    nocompare: bool = False
    nocheck: bool = False
    bufres: bool = False
    pipe: bool = False
    tx: bool = False
    dkwa: bool = False
    dkwl: bool = False
    dka: bool = False


def parse_variant(text: str) -> Variant:
    name = text
    chunk = 500
    if ":" in text:
        text, _, size = text.partition(":")
        chunk = int(size)
    base, *opts = text.split("+")
    if base not in BASES:
        raise SystemExit(f"unknown experiment base {base!r}; one of {', '.join(BASES)}")
    kw: dict[str, Any] = {}
    for opt in opts:
        if opt.startswith("split") and opt[5:].isdigit():
            kw["split"] = int(opt[5:])
        elif opt in OPTIONS:
            kw["range_" if opt == "range" else opt] = True
        else:
            raise SystemExit(
                f"unknown experiment option {opt!r}; one of splitK, " + ", ".join(OPTIONS)
            )
    return Variant(name=name, base=base, chunk=chunk, **kw)


def describe(v: Variant) -> str:
    parts = {
        "plain": "INSERT…SELECT LEFT JOIN IS NULL + DELETE JOIN byte-equal",
        "fetch": "SELECT rows, INSERT IGNORE … VALUES, DELETE JOIN byte-equal",
        "load": "SELECT rows, LOAD DATA LOCAL INFILE, DELETE JOIN byte-equal",
        "stage": "INSERT…SELECT into a TEMPORARY MEMORY table, INSERT IGNORE…SELECT into the"
        " archive, DELETE JOIN byte-equal",
    }[v.base]
    extra = []
    if v.range_:
        extra.append("range predicates")
    if v.split:
        extra.append(f"DELETE in statements of {v.split}")
    if v.lowprio:
        extra.append("DELETE LOW_PRIORITY")
    if v.quick:
        extra.append("DELETE QUICK")
    if v.nocompare:
        extra.append("DELETE by id only (UNSAFE)")
    if v.nocheck:
        extra.append("no pre-check")
    if v.bufres:
        extra.append("SQL_BUFFER_RESULT")
    if v.dkwa:
        extra.append("archive DELAY_KEY_WRITE=1")
    if v.dkwl:
        extra.append("vicidial_list DELAY_KEY_WRITE=1")
    if v.dka:
        extra.append("archive DISABLE KEYS … ENABLE KEYS")
    if v.tx:
        extra.append("one transaction per chunk, walk FOR UPDATE")
    if v.pipe:
        extra.append("copy of chunk N+1 overlapped with delete of chunk N (2 connections)")
    return f"{parts}, chunk {v.chunk}" + (f"; {', '.join(extra)}" if extra else "")


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _tsv(value: Any) -> bytes:
    """One field of a LOAD DATA file (default FIELDS ESCAPED BY '\\')."""
    if value is None:
        return b"\\N"
    raw = value if isinstance(value, bytes) else str(value).encode()
    return (
        raw.replace(b"\\", b"\\\\")
        .replace(b"\t", b"\\t")
        .replace(b"\n", b"\\n")
        .replace(b"\0", b"\\0")
    )


class Loop:
    """One connection's share of the work; `prepare` copies a chunk, `delete` removes it."""

    def __init__(self, server: Server, database: str, v: Variant, where: str) -> None:
        self.v, self.where = v, where
        self.conn = server.connect(database, binary_prefix=True, local_infile=(v.base == "load"))
        self.cur = self.conn.cursor()
        self.cur.execute(
            "SET SESSION time_zone = '+00:00',"
            " sql_mode = 'NO_ENGINE_SUBSTITUTION,ALLOW_INVALID_DATES'"
        )
        self.cols = live_columns(self.conn, database)
        self.names = ", ".join(_q(c) for c in self.cols)
        self.equal = " AND ".join(
            f"CAST(s.{_q(c)} AS BINARY) <=> CAST(d.{_q(c)} AS BINARY)" for c in self.cols
        )
        self.low = (" LOW_PRIORITY" if v.lowprio else "") + (" QUICK" if v.quick else "")
        self.timings: dict[str, float] = {}
        self.cursor = 0
        self.file: str | None = None
        if v.base == "stage":
            self.cur.execute(
                f"CREATE TEMPORARY TABLE bench_stage ENGINE=MEMORY SELECT"
                f" {self.names} FROM {LIVE} WHERE 0"
            )
        if v.base == "load":
            fd, self.file = tempfile.mkstemp(prefix="va-exp-", suffix=".tsv")
            os.close(fd)

    def close(self) -> None:
        if self.file:
            os.unlink(self.file)
        self.conn.close()

    def run(self, kind: str, sql: str, params: Any = None, many: bool = False) -> int:
        t0 = time.perf_counter()
        n = self.cur.executemany(sql, params) if many else self.cur.execute(sql, params)
        self.timings[kind] = self.timings.get(kind, 0.0) + (time.perf_counter() - t0) * 1000
        return int(n or 0)

    def ids_pred(self, alias: str, ids: list[int]) -> tuple[str, list[Any]]:
        col = f"{alias}.`lead_id`" if alias else "`lead_id`"
        if self.v.range_:
            # In a join the criteria's bare column names would be ambiguous; the DELETE JOIN
            # needs none (only rows with a byte-equal archive copy go, and only chunk rows
            # were copied).
            crit = "" if alias else f" AND ({self.where})"
            return f"{col} BETWEEN %s AND %s{crit}", [ids[0], ids[-1]]
        return f"{col} IN ({', '.join(['%s'] * len(ids))})", list(ids)

    def prepare(self) -> list[int]:
        """Walk to the next chunk and copy its rows into the archive; [] when done."""
        v, cur, names, cols = self.v, self.cur, self.names, self.cols
        lock = ""
        if v.tx:
            self.run("begin", "START TRANSACTION")
            lock = " FOR UPDATE"
        self.run(
            "walk",
            f"SELECT `lead_id` FROM {LIVE} WHERE `lead_id` > %s AND ({self.where})"
            f" ORDER BY `lead_id` LIMIT %s{lock}",
            (self.cursor, v.chunk),
        )
        ids = [int(r[0]) for r in cur.fetchall()]
        if not ids:
            if v.tx:
                self.run("commit", "COMMIT")
            return []
        self.cursor = ids[-1]
        todo = ids
        if not v.nocheck:
            pred, params = self.ids_pred("", ids)
            self.run("check", f"SELECT `lead_id` FROM {ARCHIVE} WHERE {pred}", params)
            have = {int(r[0]) for r in cur.fetchall()}
            todo = [i for i in ids if i not in have]
        if not todo:
            return ids
        if v.base == "plain":
            pred, params = self.ids_pred("s", todo)
            self.run(
                "insert_select",
                f"INSERT INTO {ARCHIVE} ({names}) SELECT"
                f" {', '.join('s.' + _q(c) for c in cols)} FROM {LIVE} AS s LEFT JOIN"
                f" {ARCHIVE} AS d ON d.`lead_id` = s.`lead_id` WHERE {pred}"
                " AND d.`lead_id` IS NULL",
                params,
            )
            return ids
        pred, params = self.ids_pred("", todo)
        if v.base == "stage":
            self.run("stage_clear", "TRUNCATE TABLE bench_stage")
            self.run(
                "stage_fill",
                f"INSERT INTO bench_stage ({names}) SELECT {names} FROM {LIVE} WHERE {pred}",
                params,
            )
            self.run(
                "insert_from_stage",
                f"INSERT IGNORE INTO {ARCHIVE} ({names}) SELECT {names} FROM bench_stage",
            )
            return ids
        buf = " SQL_BUFFER_RESULT" if v.bufres else ""
        self.run(
            "fetch",
            f"SELECT{buf} {', '.join(f'CAST({_q(c)} AS BINARY)' for c in cols)}"
            f" FROM {LIVE} WHERE {pred}",
            params,
        )
        data = cur.fetchall()
        if v.base == "fetch":
            marks = ", ".join(["%s"] * len(cols))
            self.run(
                "insert_values",
                f"INSERT IGNORE INTO {ARCHIVE} ({names}) VALUES ({marks})",
                data,
                many=True,
            )
            return ids
        assert self.file is not None
        t0 = time.perf_counter()
        with open(self.file, "wb") as out:
            for row in data:
                out.write(b"\t".join(_tsv(x) for x in row) + b"\n")
        self.timings["write_file"] = (time.perf_counter() - t0) * 1000
        self.run(
            "load_data",
            f"LOAD DATA LOCAL INFILE %s IGNORE INTO TABLE {ARCHIVE} CHARACTER SET binary ({names})",
            (self.file,),
        )
        return ids

    def delete(self, ids: list[int]) -> int:
        v, moved = self.v, 0
        parts = (
            [ids] if not v.split else [ids[i : i + v.split] for i in range(0, len(ids), v.split)]
        )
        for part in parts:
            if v.nocompare:
                pred, params = self.ids_pred("", part)
                moved += self.run("delete", f"DELETE{self.low} FROM {LIVE} WHERE {pred}", params)
            else:
                pred, params = self.ids_pred("s", part)
                moved += self.run(
                    "delete",
                    f"DELETE{self.low} s FROM {LIVE} AS s JOIN {ARCHIVE}"
                    f" AS d ON d.`lead_id` = s.`lead_id` WHERE {pred}"
                    f" AND {self.equal}",
                    params,
                )
        if v.tx:
            self.run("commit", "COMMIT")
        return moved

    def take(self) -> dict[str, float]:
        out, self.timings = self.timings, {}
        return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--dsn", required=True)
    p.add_argument("--where", required=True)
    p.add_argument("--variant", required=True)
    args = p.parse_args(argv)
    v = parse_variant(args.variant)
    if v.tx and v.pipe:
        raise SystemExit(
            "+tx and +pipe do not go together (a chunk's transaction is one connection)"
        )
    server = Server.from_dsn(args.dsn)
    database = args.dsn.rsplit("/", 1)[1]
    copier = Loop(server, database, v, args.where)
    for flag, table in ((v.dkwa, ARCHIVE), (v.dkwl, LIVE)):
        if flag:  # a table option: instant, no rebuild
            copier.run("alter", f"ALTER TABLE {table} DELAY_KEY_WRITE = 1")
    if v.dka:
        copier.run("disable_keys", f"ALTER TABLE {ARCHIVE} DISABLE KEYS")
    deleter = Loop(server, database, v, args.where) if v.pipe else copier
    moved, chunks, started = 0, 0, time.monotonic()
    totals: dict[str, float] = {}
    last = time.perf_counter()

    def done(ids: list[int], timings: dict[str, float]) -> None:
        nonlocal chunks, last
        chunks += 1
        now = time.perf_counter()
        for k, t in timings.items():
            totals[k] = totals.get(k, 0.0) + t
        print(
            json.dumps(
                {
                    "event": "chunk",
                    "chunk": chunks,
                    "leads": len(ids),
                    "ms": round((now - last) * 1000, 2),
                    "stmts": {k: round(t, 2) for k, t in timings.items()},
                }
            ),
            file=sys.stderr,
            flush=True,
        )
        last = now

    try:
        if not v.pipe:
            while ids := copier.prepare():
                moved += copier.delete(ids)
                done(ids, copier.take())
        else:
            chunks_q: queue.Queue[tuple[list[int], dict[str, float]] | BaseException | None] = (
                queue.Queue(maxsize=1)
            )

            def produce() -> None:
                try:
                    while ids := copier.prepare():
                        chunks_q.put((ids, copier.take()))
                    chunks_q.put(None)
                except BaseException as exc:  # handed to the consumer, which re-raises
                    chunks_q.put(exc)

            worker = threading.Thread(target=produce, daemon=True)
            worker.start()
            while (item := chunks_q.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                ids, timings = item
                moved += deleter.delete(ids)
                done(ids, {**timings, **deleter.take()})
            worker.join()
        if v.dka:
            copier.run("enable_keys", f"ALTER TABLE {ARCHIVE} ENABLE KEYS")
            totals["enable_keys"] = copier.take().get("enable_keys", 0.0)
    finally:
        copier.close()
        if deleter is not copier:
            deleter.close()
    seconds = time.monotonic() - started
    print(
        json.dumps(
            {
                "variant": v.name,
                "doc": describe(v),
                "counts": {"archived": moved},
                "chunks": chunks,
                "seconds": round(seconds, 3),
                "rate_per_s": round(moved / seconds, 1) if seconds else 0,
                "statement_ms_per_chunk": {
                    k: round(t / max(1, chunks), 3) for k, t in totals.items()
                },
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
