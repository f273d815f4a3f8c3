"""The chunk's statements, both directions. All DML of a chunk lives here.

Every statement is set-based over at most one chunk of ids, names its columns explicitly (taken
from the reflected tables, never a star: the two tables' column orders drift) and backquotes every
identifier. The source row is deleted only by a statement that, in the same statement,
finds an equal target row: every shared column compared byte-exactly and NULL-safely with
`CAST(x AS BINARY) <=> CAST(y AS BINARY)`, because utf8_unicode_ci calls 'smith' and 'Smith ' equal.

Each statement is idempotent (insert-if-missing, update-if-different, delete-if-equal), which is
what makes a MyISAM run, where nothing is atomic, converge when it is killed and run again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from archiver.db import Db, q
from archiver.schema import Column, Table

ARCHIVE = "archive"
DEARCHIVE = "dearchive"

# Outcomes per lead. `moved` is the direction's success outcome.
ARCHIVED = "archived"
DEARCHIVED = "dearchived"
REFRESHED = "refreshed"
KEPT_CHANGED = "kept_changed"
ALREADY_ARCHIVED = "already_archived"
ALREADY_LIVE = "already_live"
MISSING = "missing"
NOT_COPIED = "not_copied"
CONFLICT = "conflict"
SKIPPED_LIVE = "skipped_live"
SKIPPED_NEWEST = "skipped_newest"
OUTCOMES = (
    ARCHIVED,
    DEARCHIVED,
    REFRESHED,
    KEPT_CHANGED,
    ALREADY_ARCHIVED,
    ALREADY_LIVE,
    MISSING,
    NOT_COPIED,
    CONFLICT,
    SKIPPED_LIVE,
    SKIPPED_NEWEST,
)

# Types whose value is its bytes (strings, ENUM/SET labels, binary): copied as X'…' literals.
BYTE_TYPES = {
    "char",
    "varchar",
    "tinytext",
    "text",
    "mediumtext",
    "longtext",
    "enum",
    "set",
    "binary",
    "varbinary",
    "tinyblob",
    "blob",
    "mediumblob",
    "longblob",
}

# The live-lead guard tables: (config name, table, extra condition).
GUARDS = (
    ("hopper", "vicidial_hopper", ""),
    ("auto_calls", "vicidial_auto_calls", ""),
    ("live_agents", "vicidial_live_agents", ""),
    ("callbacks", "vicidial_callbacks", " AND `status` IN ('ACTIVE', 'LIVE')"),
)


@dataclass(frozen=True)
class Flags:
    insert: bool = True
    update: bool = True
    delete: bool = True


@dataclass(frozen=True)
class State:
    """A lead's state in the two tables: in the source, in the target, equal if in both."""

    in_src: bool
    in_dst: bool
    equal: bool


@dataclass
class ChunkSql:
    """The statements of one direction, built once per run from the reflected tables."""

    direction: str
    src: Table
    dst: Table
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.columns: list[Column] = [c for c in self.src.columns if self.dst.column(c.name)]
        lowered = {k.lower() for k in self.overrides}
        self.compared = [c for c in self.columns if c.name.lower() not in lowered]
        self.s, self.d = q(self.src.name), q(self.dst.name)

    @property
    def moved(self) -> str:
        return ARCHIVED if self.direction == ARCHIVE else DEARCHIVED

    def _bin(self, alias: str, col: Column, other: Column | None) -> str:
        expr = f"{alias}.{q(col.name)}"
        if other is not None and col.charset and other.charset and col.charset != other.charset:
            # Different character sets store the same text as different bytes; compare both
            # in utf8mb4 (schema checks already refused a target that cannot hold the source).
            expr = f"CONVERT({expr} USING utf8mb4)"
        return f"CAST({expr} AS BINARY)"

    def equal_expr(self) -> str:
        parts = []
        for col in self.compared:
            other = self.dst.column(col.name)
            assert other is not None
            parts.append(f"{self._bin('s', col, other)} <=> {self._bin('d', other, col)}")
        return "(" + "\n   AND ".join(parts) + ")"

    # --- reads ---------------------------------------------------------------------------

    def in_dst(self) -> str:
        return f"SELECT `lead_id` FROM {self.d} WHERE `lead_id` IN :ids"

    def classify(self) -> str:
        return (
            f"SELECT s.`lead_id`, d.`lead_id` IS NOT NULL, COALESCE({self.equal_expr()}, 0)\n"
            f"FROM {self.s} AS s LEFT JOIN {self.d} AS d ON d.`lead_id` = s.`lead_id`\n"
            f"WHERE s.`lead_id` IN :ids"
        )

    def scan(self, where: str, guards: Sequence[str] = (), *, lock: bool = False) -> str:
        """The chunk's source rows and, in the same statement, each one's state: column 2 is
        NULL when the target has no row, else 1 when the two rows are byte-equal, 0 when not;
        column 3 is 1 when a live-lead guard table holds the lead. `where` is over the source
        aliased `s` (its own columns unqualified: the target is only read in subqueries).
        `lock` adds FOR UPDATE: on InnoDB the source rows are locked in lead_id order, and the
        subqueries' rows (target, guard tables) are read without locks, so the dialer's own
        tables are never locked."""
        live = " OR ".join(
            f"EXISTS(SELECT 1 FROM {q(table)} AS g WHERE g.`lead_id` = s.`lead_id`"
            f"{extra.replace('`status`', 'g.`status`')})"
            for _, table, extra in GUARDS
            if table in guards
        )
        return (
            f"SELECT s.`lead_id`,\n  (SELECT {self.equal_expr()}\n"
            f"   FROM {self.d} AS d WHERE d.`lead_id` = s.`lead_id`) AS `_state`,\n"
            f"  {'(' + live + ')' if live else '0'} AS `_live`\n"
            f"FROM {self.s} AS s\nWHERE {where}" + ("\nFOR UPDATE" if lock else "")
        )

    # --- writes --------------------------------------------------------------------------

    def insert(self) -> str:
        names = ", ".join(q(c.name) for c in self.columns)
        values = ", ".join(self._value(c) for c in self.columns)
        return (
            f"INSERT INTO {self.d} ({names})\n"
            f"SELECT {values}\n"
            f"FROM {self.s} AS s LEFT JOIN {self.d} AS d ON d.`lead_id` = s.`lead_id`\n"
            f"WHERE s.`lead_id` IN :ids AND d.`lead_id` IS NULL"
        )

    def _value(self, col: Column) -> str:
        for key in self.overrides:
            if key.lower() == col.name.lower():
                return f":ov_{key.lower()}"
        return f"s.{q(col.name)}"

    def fetch_literals(self) -> str:
        """Each source row as one SQL tuple literal, built by the server: strings as X'…' of
        their bytes (in the target's character set where the two differ), other values quoted
        in their text form: the same bytes the delete step compares."""
        exprs = []
        for col in self.columns:
            other = self.dst.column(col.name)
            expr = q(col.name)
            if col.data_type in BYTE_TYPES:
                differs = (
                    other is not None
                    and col.charset
                    and other.charset
                    and (col.charset != other.charset)
                )
                if differs and other is not None:
                    expr = f"CONVERT({expr} USING {other.charset})"
                literal = "CONCAT('X''', HEX(" + expr + "), '''')"
            else:
                literal = f"QUOTE({expr})"
            exprs.append(f"IF({q(col.name)} IS NULL, 'NULL', {literal})")
        return (
            f"SELECT CONCAT('(', CONCAT_WS(',', {', '.join(exprs)}), ')') FROM {self.s}"
            " WHERE `lead_id` IN :ids"
        )

    def insert_literals(self, tuples: Sequence[str]) -> str:
        # IGNORE: a row already there is left as it is (insert-if-missing); a value that does
        # not convert exactly is caught by the byte-exact delete, never lost.
        names = ", ".join(q(c.name) for c in self.columns)
        return f"INSERT IGNORE INTO {self.d} ({names}) VALUES " + ",".join(tuples)

    def update(self) -> str:
        # modify_date is set explicitly like every column, so ON UPDATE does not overwrite it.
        sets = ",\n    ".join(
            f"d.{q(c.name)} = s.{q(c.name)}" for c in self.columns if c.name.lower() != "lead_id"
        )
        return (
            f"UPDATE {self.d} AS d JOIN {self.s} AS s ON s.`lead_id` = d.`lead_id`\n"
            f"SET {sets}\n"
            f"WHERE d.`lead_id` IN :ids AND NOT {self.equal_expr()}"
        )

    def delete(self) -> str:
        # The proof and the delete are one statement: no change can slip in between.
        return (
            f"DELETE s FROM {self.s} AS s JOIN {self.d} AS d ON d.`lead_id` = s.`lead_id`\n"
            f"WHERE s.`lead_id` IN :ids AND {self.equal_expr()}"
        )

    def override_params(self) -> dict[str, Any]:
        return {f"ov_{k.lower()}": v for k, v in self.overrides.items()}


def read_states(db: Db, sql: ChunkSql, ids: Sequence[int]) -> dict[int, State]:
    """Each id's state, read from the two tables (ids in neither are left out)."""
    states: dict[int, State] = {}
    for row in db.rows(sql.classify(), {"ids": list(ids)}):
        states[int(row[0])] = State(True, bool(row[1]), bool(row[2]))
    for row in db.rows(sql.in_dst(), {"ids": list(ids)}):
        lead = int(row[0])
        if lead not in states:
            states[lead] = State(False, True, False)
    return states


def predict(state: State, flags: Flags, direction: str) -> State:
    """The state a lead would reach, for `--dry-run` (nothing else changes it in between)."""
    if not state.in_src:
        return state
    in_dst, equal = state.in_dst, state.equal
    if not in_dst and flags.insert:
        in_dst, equal = True, True
    elif in_dst and not equal and flags.update and direction == ARCHIVE:
        equal = True
    if in_dst and equal and flags.delete:
        return State(False, True, True)
    return State(True, in_dst, equal)


def outcome(before: State | None, after: State | None, flags: Flags, direction: str) -> str:
    """A lead's outcome from its state before the chunk and after it."""
    if before is None:
        return MISSING
    if not before.in_src:
        return ALREADY_ARCHIVED if direction == ARCHIVE else ALREADY_LIVE
    if direction == DEARCHIVE and before.in_dst and not before.equal:
        return CONFLICT
    if after is None or not after.in_src:
        return ARCHIVED if direction == ARCHIVE else DEARCHIVED
    if not after.in_dst:
        return NOT_COPIED
    if after.equal and not flags.delete:
        return REFRESHED
    return KEPT_CHANGED
