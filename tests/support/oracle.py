"""The byte-exact oracle the tests and the bench judge the tool by: every column of a row as its
exact bytes (`HEX(CAST(col AS BINARY))`), by lead_id over explicit columns; a digest of such
rows; the checks the job and fault tests share (every lead in exactly one table, byte-identical
to its original); and the bench's order-independent table checksum. Written apart from the
tool's own verify, so a mistake there cannot hide here. Imports nothing of tests/ and no
pytest: bench/db.py imports it too."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from archiver.db import Db

LIVE = "vicidial_list"
ARCHIVE = "vicidial_list_archive"


def hex_bytes(column: str) -> str:
    """The SQL expression of a column's exact bytes (NULL stays NULL)."""
    return f"HEX(CAST(`{column}` AS BINARY))"


def columns_of(db: Db, table: str = LIVE) -> list[str]:
    rows = db.rows(
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA ="
        " DATABASE() AND TABLE_NAME = :t ORDER BY ORDINAL_POSITION",
        {"t": table},
    )
    return [str(r[0]) for r in rows]


def row_bytes(
    db: Db, table: str, columns: Sequence[str], ids: Sequence[int] | None = None
) -> dict[int, tuple[Any, ...]]:
    """Each row's columns (in `columns` order) as exact bytes, by lead_id."""
    if ids is not None and not ids:
        return {}
    exprs = ", ".join(hex_bytes(c) for c in columns)
    where = " WHERE lead_id IN :ids" if ids is not None else ""
    rows = db.rows(
        f"SELECT lead_id, {exprs} FROM `{table}`{where}",
        {"ids": list(ids)} if ids is not None else {},
    )
    return {int(r[0]): tuple(r[1:]) for r in rows}


def table_rows(db: Db, table: str, columns: Sequence[str]) -> list[tuple[Any, ...]]:
    """Every row of any table (no lead_id needed) as exact bytes, sorted."""
    exprs = ", ".join(hex_bytes(c) for c in columns)
    return sorted(tuple(r) for r in db.rows(f"SELECT {exprs} FROM `{table}`"))


def values_of(db: Db, table: str, expr: str, where: str) -> dict[int, object]:
    """One SQL expression per lead (e.g. a column read exactly: `HEX(col)`), by lead_id."""
    return {
        int(r[0]): r[1] for r in db.rows(f"SELECT lead_id, {expr} FROM `{table}` WHERE {where}")
    }


def lost_values(
    before: Mapping[int, object], source: Mapping[int, object], target: Mapping[int, object]
) -> dict[int, tuple[object, object]]:
    """The leads whose value (`before`, read from the source before a run) neither table holds
    after it, each with (its value, what the target holds instead)."""
    return {
        lead: (value, target.get(lead))
        for lead, value in before.items()
        if source.get(lead, object()) != value and target.get(lead, object()) != value
    }


def ids_of(db: Db, table: str) -> set[int]:
    return {int(r[0]) for r in db.rows(f"SELECT lead_id FROM `{table}`")}


def _feed(h: Any, rows: Mapping[int, tuple[Any, ...]], prefix: str = "") -> None:
    for lead in sorted(rows):
        h.update(f"{prefix}{lead}|{rows[lead]!r}\n".encode())


def digest(rows: Mapping[int, tuple[Any, ...]]) -> str:
    h = hashlib.sha256()
    _feed(h, rows)
    return h.hexdigest()


def tables_digest(db: Db, columns: Sequence[str], tables: Iterable[str]) -> str:
    """A digest of every row of the tables, byte-exact (each row named by table and lead)."""
    h = hashlib.sha256()
    for table in tables:
        _feed(h, row_bytes(db, table, columns), f"{table}|")
    return h.hexdigest()


@dataclass
class Placement:
    """Where every lead is now: live only, archive only, in both; and the union of the rows."""

    live: set[int]
    archive: set[int]
    rows: dict[int, tuple[Any, ...]] = field(repr=False)

    @property
    def both(self) -> set[int]:
        return self.live & self.archive


def placement(db: Db, columns: Sequence[str]) -> Placement:
    live = row_bytes(db, LIVE, columns)
    arch = row_bytes(db, ARCHIVE, columns)
    return Placement(set(live), set(arch), {**arch, **live})


def assert_each_once(
    db: Db, columns: Sequence[str], original: Mapping[int, tuple[Any, ...]]
) -> Placement:
    """Every original lead in exactly one table, byte-identical to its original row; nothing
    else in either table. Returns where they are."""
    where = placement(db, columns)
    assert not where.both, f"{len(where.both)} leads in both tables, e.g. {sorted(where.both)[:10]}"
    lost = set(original) - where.live - where.archive
    assert not lost, f"{len(lost)} leads in neither table, e.g. {sorted(lost)[:10]}"
    extra = (where.live | where.archive) - set(original)
    assert not extra, f"{len(extra)} unexpected leads, e.g. {sorted(extra)[:10]}"
    differ = sorted(i for i in original if where.rows[i] != original[i])
    assert not differ, f"{len(differ)} leads differ from their original, e.g. {differ[:10]}"
    assert digest(where.rows) == digest(original)
    return where


def snapshot(db: Db, name: str = "va_snapshot") -> str:
    """A server-side copy of vicidial_list as it is now (same column types), for comparing
    large tables without reading them into the test. Only its primary key is kept: the
    comparisons join on lead_id, and a copy that fills ten secondary indexes takes three
    times as long."""
    db.write(f"DROP TABLE IF EXISTS `{name}`")
    db.write(f"CREATE TABLE `{name}` LIKE `{LIVE}`")
    indexes = db.rows(
        "SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA ="
        " DATABASE() AND TABLE_NAME = :t AND INDEX_NAME <> 'PRIMARY'",
        {"t": name},
    )
    if indexes:
        drops = ", ".join(f"DROP INDEX `{r[0]}`" for r in indexes)
        db.write(f"ALTER TABLE `{name}` {drops}")
    db.write(f"INSERT INTO `{name}` SELECT * FROM `{LIVE}`")
    return name


def compare_to_snapshot(db: Db, snap: str, columns: Sequence[str]) -> dict[str, int]:
    """Counts of leads of the snapshot in both tables, in neither, not byte-identical to the
    snapshot where they are, and of leads in the tables that the snapshot does not hold."""

    def same(alias: str) -> str:
        return " AND ".join(
            f"CAST({alias}.`{c}` AS BINARY) <=> CAST(o.`{c}` AS BINARY)" for c in columns
        )

    row = db.rows(
        f"SELECT SUM(l.lead_id IS NOT NULL AND a.lead_id IS NOT NULL),"
        f" SUM(l.lead_id IS NULL AND a.lead_id IS NULL),"
        f" SUM(CASE WHEN l.lead_id IS NOT NULL THEN NOT ({same('l')})"
        f"          WHEN a.lead_id IS NOT NULL THEN NOT ({same('a')}) ELSE 0 END)"
        f" FROM `{snap}` o LEFT JOIN `{LIVE}` l ON l.lead_id = o.lead_id"
        f" LEFT JOIN `{ARCHIVE}` a ON a.lead_id = o.lead_id"
    )[0]
    extra = db.scalar(
        f"SELECT (SELECT COUNT(*) FROM `{LIVE}` x WHERE NOT EXISTS (SELECT 1 FROM `{snap}` o"
        f" WHERE o.lead_id = x.lead_id)) + (SELECT COUNT(*) FROM `{ARCHIVE}` x WHERE NOT EXISTS"
        f" (SELECT 1 FROM `{snap}` o WHERE o.lead_id = x.lead_id))"
    )
    return {
        "both": int(row[0] or 0),
        "neither": int(row[1] or 0),
        "differ": int(row[2] or 0),
        "extra": int(extra or 0),
    }


def total(counts: Mapping[str, int]) -> int:
    return sum(Counter(counts).values())


def checksum_sql(table: str, columns: list[str], where: str) -> str:
    """COUNT and two order-independent aggregates over every column's exact bytes (NULL is
    its own marker): a sum of 60-bit MD5 prefixes and an XOR of CRC32s, per row. For tables
    too large to read into the caller (the bench)."""
    parts = ", ".join(f"IFNULL({hex_bytes(c)}, 'N')" for c in columns)
    row = f"CONCAT_WS('|', {parts})"
    return (
        f"SELECT COUNT(*), COALESCE(SUM(CAST(CONV(LEFT(MD5({row}), 15), 16, 10) AS UNSIGNED)), 0),"
        f" COALESCE(BIT_XOR(CRC32({row})), 0) FROM {table} WHERE {where}"
    )
