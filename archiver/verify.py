"""`verify`: where each selected lead is, and whether its two copies are byte-for-byte equal.

Categories: `both_equal`, `both_different` (a problem to investigate: archive refreshes the
copy of the same lead and refuses another lead's; dearchive refuses both), `only_live`,
`only_archived`, and `neither` (explicit ids only: a lead that matches criteria is in one of
the tables by definition).

Equality is the delete step's own test (`ChunkSql.equal_expr`): every shared column compared
byte-exactly and NULL-safely, so `verify` says `both_equal` exactly when an archive or dearchive
run would be allowed to delete one of the copies.

Each chunk is classified by ONE statement over both tables. On MyISAM a statement holds its
read locks on both tables until it ends, and on InnoDB (READ COMMITTED) a statement reads one
snapshot, so a lead moved by a concurrent run is never seen in both or in neither by mistake.
Criteria are evaluated on both tables (a lead matching in either is selected) and walked by
keyset over the union of the two id sequences: memory stays bounded however many leads match.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from archiver import checkpoint, schema
from archiver.db import Db
from archiver.jobtypes import ARCHIVE
from archiver.logging import get_logger
from archiver.schema import Table
from archiver.selection import Selection, Walker, check_scope
from archiver.steps import ChunkSql

BOTH_EQUAL = "both_equal"
BOTH_DIFFERENT = "both_different"
ONLY_LIVE = "only_live"
ONLY_ARCHIVED = "only_archived"
NEITHER = "neither"
CATEGORIES = (BOTH_EQUAL, BOTH_DIFFERENT, ONLY_LIVE, ONLY_ARCHIVED, NEITHER)
LIST_LIMIT = 1000  # ids listed per category in --json
HUMAN_LIST_LIMIT = 20  # … and in the human report, which a person reads
CHUNK = 500


@dataclass
class VerifyReport:
    """Counts per category and the first `list_limit` lead ids of each, ascending."""

    live_table: str
    archive_table: str
    selection: str  # "ids", "criteria" or "all"
    columns: int
    list_limit: int = LIST_LIMIT
    counts: dict[str, int] = field(default_factory=dict)
    ids: dict[str, list[int]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for cat in self.categories:
            self.counts.setdefault(cat, 0)
            self.ids.setdefault(cat, [])

    @property
    def categories(self) -> tuple[str, ...]:
        # For criteria `neither` cannot happen: a lead that matches is in one of the tables.
        return CATEGORIES if self.selection == "ids" else CATEGORIES[:-1]

    def add(self, category: str, lead_id: int) -> None:
        self.counts[category] += 1
        if len(self.ids[category]) < self.list_limit:
            self.ids[category].append(lead_id)

    @property
    def leads(self) -> int:
        return sum(self.counts.values())

    @property
    def truncated(self) -> dict[str, bool]:
        return {c: self.counts[c] > len(self.ids[c]) for c in self.categories}

    @property
    def ok(self) -> bool:
        return self.counts[BOTH_DIFFERENT] == 0

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "live_table": self.live_table,
            "archive_table": self.archive_table,
            "selection": self.selection,
            "leads": self.leads,
            "columns_compared": self.columns,
            "ok": self.ok,
            "counts": {c: self.counts[c] for c in self.categories},
            "lead_ids": {c: self.ids[c] for c in self.categories},
            "truncated": self.truncated,
            "list_limit": self.list_limit,
            "warnings": self.warnings,
        }


def report_lines(report: VerifyReport) -> list[str]:
    """The human report: counts, then the ids of each non-empty category."""
    what = {
        "ids": "lead ids",
        "all": "every lead, in either table",
    }.get(report.selection, "criteria, matched in either table")
    lines = [
        f"verify {report.live_table} / {report.archive_table}: {report.leads} leads "
        f"({what}), {report.columns} shared columns compared byte-exactly"
    ]
    lines += [f"  {c:<16} {report.counts[c]}" for c in report.categories]
    for c in report.categories:
        if report.ids[c]:
            more = (
                f" (first {len(report.ids[c])} of {report.counts[c]})"
                if report.truncated[c]
                else ""
            )
            lines.append(f"{c}: {','.join(map(str, report.ids[c]))}{more}")
    lines += [f"warning: {w}" for w in report.warnings]
    n = report.counts[BOTH_DIFFERENT]
    if n:
        lines.append(
            f"PROBLEM: {n} lead(s) in both tables with different data; archive refreshes the "
            "archive copy and moves the lead only where both rows have the same entry_date, "
            "a real date (the same lead), and refuses (conflict) where it differs or is NULL "
            "or zero (another lead under the same id, or one that cannot be told from it); "
            "dearchive refuses (conflict) either way"
        )
    else:
        lines.append("OK: no lead is in both tables with different data")
    return lines


def classify_sql(sql: ChunkSql) -> str:
    """One statement: (lead_id, in_live, in_archive, equal) for every id of :ids in either."""
    return (
        f"SELECT s.`lead_id`, 1, d.`lead_id` IS NOT NULL, COALESCE({sql.equal_expr()}, 0)\n"
        f"FROM {sql.s} AS s LEFT JOIN {sql.d} AS d ON d.`lead_id` = s.`lead_id`\n"
        f"WHERE s.`lead_id` IN :ids\n"
        f"UNION ALL\n"
        f"SELECT d.`lead_id`, 0, 1, 0\n"
        f"FROM {sql.d} AS d LEFT JOIN {sql.s} AS s ON s.`lead_id` = d.`lead_id`\n"
        f"WHERE d.`lead_id` IN :ids AND s.`lead_id` IS NULL"
    )


def category(in_live: bool, in_archive: bool, equal: bool) -> str:
    if in_live and in_archive:
        return BOTH_EQUAL if equal else BOTH_DIFFERENT
    return ONLY_LIVE if in_live else ONLY_ARCHIVED


def classify(db: Db, stmt: str, ids: Sequence[int]) -> dict[int, str]:
    """Each id's category; ids in neither table are left out."""
    return {
        int(r[0]): category(bool(r[1]), bool(r[2]), bool(r[3]))
        for r in db.rows(stmt, {"ids": list(ids)})
    }


def union_chunks(
    db: Db, selection: Selection, tables: Sequence[str], size: int
) -> Iterator[list[int]]:
    """Ascending chunks of the ids that match the criteria in any of `tables`, by keyset.

    A walker that returns a full chunk has proven every match only up to its last id; the
    chunk is cut at the lowest such bound, and the walk goes on from there."""
    walkers = [Walker(db, selection, t) for t in tables]
    after = 0
    while True:
        bound: int | None = None
        found: set[int] = set()
        for walker in walkers:
            ids, cursor = walker.next_chunk(after, size)
            found.update(ids)
            if len(ids) >= size:
                bound = cursor if bound is None else min(bound, cursor)
        chunk = sorted(i for i in found if bound is None or i <= bound)
        for start in range(0, len(chunk), size):
            yield chunk[start : start + size]
        if bound is None:
            return
        after = bound


def _warnings(live: Table, archive: Table) -> list[str]:
    out = []
    missing = [c.name for c in live.columns if archive.column(c.name) is None]
    if missing:
        out.append(
            f"live column(s) {', '.join(missing)} missing in {archive.name}: not compared "
            "(`schema check` / `schema sync`)"
        )
    extra = [c.name for c in archive.columns if live.column(c.name) is None]
    if extra:
        out.append(f"column(s) {', '.join(extra)} exist only in {archive.name}: not compared")
    return out


def _kind(selection: Selection) -> str:
    if selection.ids is not None:
        return "ids"
    return "all" if selection.criteria is None or selection.criteria.empty else "criteria"


def _held(db: Db, sql: ChunkSql, states: dict[int, str]) -> list[int]:
    """The leads of `states` in both tables, different, that a run holds (`held_expr`)."""
    ids = sorted(i for i, cat in states.items() if cat == BOTH_DIFFERENT)
    if not ids or not sql.holds:
        return []
    rows = db.rows(
        f"SELECT s.`lead_id` FROM {sql.s} AS s JOIN {sql.d} AS d ON d.`lead_id` = s.`lead_id`"
        f" WHERE s.`lead_id` IN :ids AND {sql.held_expr()} ORDER BY s.`lead_id`",
        {"ids": ids},
    )
    return [int(r[0]) for r in rows]


def verify(
    db: Db,
    live_table: str,
    archive_table: str,
    selection: Selection,
    *,
    chunk_size: int = CHUNK,
    list_limit: int = LIST_LIMIT,
) -> VerifyReport:
    """Compare live and archive for the selection; reads only."""
    live, archive = schema.require_tables(db, live_table, archive_table)
    scope_warnings = check_scope(db, selection.criteria, (live.name, archive.name))
    sql = ChunkSql(ARCHIVE, live, archive)
    stmt = classify_sql(sql)
    report = VerifyReport(
        live.name,
        archive.name,
        _kind(selection),
        len(sql.compared),
        list_limit,
        warnings=_warnings(live, archive) + scope_warnings,
    )
    sql.holds = "archiver_pending" in checkpoint.present_tables(db)
    held: list[int] = []
    if selection.ids is not None:
        for part in selection.ids.batches(chunk_size):
            states = classify(db, stmt, part)
            for lead in part:
                report.add(states.get(lead, NEITHER), lead)
            held += _held(db, sql, states)
            del held[list_limit + 1 :]
    else:
        for chunk in union_chunks(db, selection, (live.name, archive.name), chunk_size):
            states = classify(db, stmt, chunk)
            for lead, cat in sorted(states.items()):
                report.add(cat, lead)
            held += _held(db, sql, states)
            del held[list_limit + 1 :]
    if held:
        shown = ",".join(map(str, held[:list_limit]))
        more = f" (the first {list_limit})" if len(held) > list_limit else ""
        report.warnings.append(
            f"leads in both tables with different data are held: {shown}"
            f"{more}; a run left them there after an ALTER that may have cut the live row's "
            "values, and archive and dearchive refuse them (conflict) until you decide which "
            "row is right (README: a lead held after an ALTER)"
        )
    get_logger().info("verify", selection=report.selection, leads=report.leads, **report.counts)
    return report
