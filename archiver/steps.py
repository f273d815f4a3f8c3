"""The SQL text of a chunk's statements, both directions, and what their answers mean.

Owns: the text of every statement on the two lead tables (`ChunkSql`), the live-lead guards,
a lead's state as the scan reads it (`State`), and the outcome a lead's states before and
after a chunk make (`outcome`, `predict`). Must not: execute anything, or decide which
statements a chunk runs, in what order or in which batches (strategies.py).

Every statement is set-based over at most one chunk of ids, names its columns explicitly (taken
from the reflected tables, never a star: the two tables' column orders drift) and backquotes every
identifier. The source row is deleted only by a statement that, in the same statement,
finds an equal target row: every shared column compared byte-exactly and NULL-safely with
`CAST(x AS BINARY) <=> CAST(y AS BINARY)`, because utf8_unicode_ci calls 'smith' and 'Smith ' equal.

Each statement is idempotent (insert-if-missing, update-if-different, delete-if-equal), which is
what makes a MyISAM run, where nothing is atomic, converge when it is killed and run again.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from archiver.db import q
from archiver.jobtypes import ARCHIVE, DEARCHIVE, Flags, Outcome
from archiver.schema import (
    Column,
    Table,
    charsets_differ,
    fingerprint,
    generated_alike,
    triggers_print,
)

FLOATS = frozenset({"float", "double"})


def _is_float(col: Column, other: Column | None) -> bool:
    """A floating-point column on either side: its text is rounded to its (M,D) display, or
    for a FLOAT to 6 significant digits; as a DOUBLE it reads back exactly."""
    return col.data_type in FLOATS or (other is not None and other.data_type in FLOATS)


def _lit(value: str) -> str:
    """A string literal for SQL text built here (identifiers' names, fingerprints)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


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

# Types whose QUOTE() is plain text that the target reads back as the same value: numbers,
# dates and times. Every other type is copied as X'…' of its bytes: a byte type as they are
# (`BYTE_TYPES`), any other (BIT, INET6, UUID, geometry) as `CAST(x AS BINARY)`, the bytes the
# delete compares. (QUOTE() of a BIT is its raw bytes, a binary string that makes the whole
# tuple binary; and a quoted number written to a BIT column is stored as its characters.)
QUOTED_TYPES = frozenset(
    {
        "tinyint",
        "smallint",
        "mediumint",
        "int",
        "bigint",
        "decimal",
        "float",
        "double",
        "date",
        "datetime",
        "timestamp",
        "time",
        "year",
    }
)

# The live-lead guard tables: (config name, table, extra condition).
GUARDS = (
    ("hopper", "vicidial_hopper", ""),
    ("auto_calls", "vicidial_auto_calls", ""),
    ("live_agents", "vicidial_live_agents", ""),
    ("callbacks", "vicidial_callbacks", " AND `status` IN ('ACTIVE', 'LIVE')"),
)


# Read again just before a MyISAM archive chunk's copy (`ChunkSql.versions`): a lead whose row
# differs in one of them since the chunk's scan is not copied from the scan's values. They tell
# a lead deleted, or replaced by another lead under the same id, and most calls (modify_date
# has whole seconds only: a call within the scan's second is caught by the equality delete).
VERSION = frozenset(
    {"entry_date", "modify_date", "phone_number", "status", "called_count", "last_local_call_time"}
)

# The columns a call changes on a lead (the dialer, an agent's disposition, a list move): the
# only ones in which the row that stays may differ from the row a proven-copy delete removes.
# A difference anywhere else (a name, a comment cut by an ALTER) keeps both rows.
CALL_STATE = frozenset(
    {
        "status",
        "user",
        "list_id",
        "called_count",
        "called_since_last_reset",
        "last_local_call_time",
        "modify_date",
        "gmt_offset_now",
    }
)


@dataclass(frozen=True)
class State:
    """A lead's state in the two tables: in the source, in the target, and if in both: `equal`
    on the compared columns (every shared column but the dearchive overrides: what the delete
    proves), `exact` on every shared column, and `same_lead` when the two rows are evidently
    the same lead (equal `entry_date`, a real date), so one may refresh the other."""

    in_src: bool
    in_dst: bool
    equal: bool
    exact: bool | None = None
    same_lead: bool = True

    @property
    def identical(self) -> bool:
        return self.equal if self.exact is None else self.exact


# archiver_pending.tables_at of a held pair (job 0), and of a stopped job's leads after an ALTER
# (checkpoint.MARK_ALTERED).
HELD, ALTERED = "held", "altered"

# The scan's `_state` column, from the target's row: NULL when there is none.
EXACT, EQUAL, DIFFERENT, OTHER_LEAD = 2, 1, 0, -1


# A lead in neither table, as a chunk reads it back after its statements.
NEITHER = State(False, False, False)


def state_of(in_src: bool, code: Any) -> State:
    """A State from a row's in-source flag and its `_state` code."""
    if code is None:
        return State(in_src, False, False)
    code = int(code)
    return State(in_src, True, code >= EQUAL, code == EXACT, code != OTHER_LEAD)


@dataclass
class ChunkSql:
    """The statements of one direction, built once per run from the reflected tables."""

    direction: str
    src: Table
    dst: Table
    overrides: Mapping[str, Any] = field(default_factory=dict)
    # The run's job (None: a dry run, verify): its own copies prove the lead (`same_lead_expr`).
    job_id: int | None = None
    # archiver_pending exists: its held pairs (`held_expr`) are conflicts.
    holds: bool = False

    def __post_init__(self) -> None:
        # A column both tables compute alike is neither written nor compared: its value
        # follows from the others (`schema.generated_alike`).
        self.columns: list[Column] = [
            c
            for c in self.src.columns
            if (other := self.dst.column(c.name)) and not generated_alike(c, other)
        ]
        lowered = {k.lower() for k in self.overrides}
        self.compared = [c for c in self.columns if c.name.lower() not in lowered]
        self.s, self.d = q(self.src.name), q(self.dst.name)
        self._copier: RowCopier | None = None

    @property
    def moved(self) -> Outcome:
        return Outcome.ARCHIVED if self.direction == ARCHIVE else Outcome.DEARCHIVED

    def optimize(self) -> tuple[str, str]:
        """The source table's upkeep after a large run (--optimize): OPTIMIZE TABLE gives a
        MyISAM table the space of its deleted rows back; on InnoDB it would rebuild the whole
        table, so ANALYZE TABLE there refreshes the index statistics only. Both answer with
        rows (Table, Op, Msg_type, Msg_text), an error among them rather than raised."""
        op = "ANALYZE" if self.src.transactional else "OPTIMIZE"
        return op, f"{op} TABLE {self.s}"

    def _bin(self, alias: str, col: Column, other: Column | None) -> str:
        expr = f"{alias}.{q(col.name)}"
        if _is_float(col, other):
            # A FLOAT's text has 6 significant digits (123456.7109375 reads '123457'), a
            # DOUBLE(M,D)'s D decimals; as a plain DOUBLE either reads back exactly.
            expr = f"CAST({expr} AS DOUBLE)"
        if charsets_differ(col, other):
            # Different character sets store the same text as different bytes; compare both
            # in utf8mb4 (schema checks already refused a target that cannot hold the source).
            expr = f"CONVERT({expr} USING utf8mb4)"
        return f"CAST({expr} AS BINARY)"

    def _round_trip(self, alias: str, col: Column) -> str:
        """The column's bytes survive the trip through utf8mb4 that the comparison makes: a
        byte its own character set does not define (0x80 in an ascii column) reads as '?',
        as a real '?' does, so without this two different values would compare equal."""
        expr = f"{alias}.{q(col.name)}"
        back = f"CONVERT(CONVERT({expr} USING utf8mb4) USING {col.charset})"
        return f"CAST({back} AS BINARY) <=> CAST({expr} AS BINARY)"

    def equal_expr(self, columns: Sequence[Column] | None = None) -> str:
        parts = []
        for col in self.compared if columns is None else columns:
            other = self.dst.column(col.name)
            assert other is not None
            parts.append(f"{self._bin('s', col, other)} <=> {self._bin('d', other, col)}")
            if charsets_differ(col, other):
                parts.append(self._round_trip("s", col))
                parts.append(self._round_trip("d", other))
        return "(" + "\n   AND ".join(parts) + ")"

    def same_lead_expr(self) -> str:
        """The two rows are provably the same lead: equal `entry_date` (a lead keeps it for
        life; an id handed out again, by a reset AUTO_INCREMENT or a restore, comes with
        another), and a real date: two rows without one (NULL, or the zero date imports leave)
        prove nothing, so they count as another lead under the same id (a conflict) unless
        equal, and neither a refresh nor a proven-copy removal may take one for the other.
        Except for this run's job (`job_id`, MyISAM): a target row that is exactly the copy
        it made of the lead (its fingerprint in archiver_pending) is that lead's."""
        col = self.src.column("entry_date")
        other = self.dst.column("entry_date")
        if col is None or other is None:
            return "1"
        s, d = self._bin("s", col, other), self._bin("d", other, col)
        real = f"CAST(s.{q(col.name)} AS BINARY) NOT LIKE '0000-00-00%'"
        if self.job_id is None:
            return f"({s} = {d} AND {real})"
        own = (
            f"{s} <=> {d} AND EXISTS(SELECT 1 FROM `archiver_pending` AS o"
            f" WHERE o.`job_id` = {int(self.job_id)} AND o.`lead_id` = d.`lead_id`"
            f" AND {self.row_hash('d', 'dst')} IN (o.`copy_hash`, o.`prev_hash`))"
        )
        return f"({s} = {d} AND {real} OR {own})"

    def state_expr(self) -> str:
        """The target row's state code (EXACT, EQUAL, DIFFERENT, OTHER_LEAD) against `s`."""
        exact = (
            ""
            if self.compared == self.columns
            else (f"WHEN {self.equal_expr(self.columns)} THEN {EXACT} ")
        )
        top = EQUAL if exact else EXACT
        held = f" WHEN {self.held_expr()} THEN {OTHER_LEAD}" if self.holds else ""
        return (
            f"CASE {exact}WHEN {self.equal_expr()} THEN {top}{held}"
            f" WHEN {self.same_lead_expr()} THEN {DIFFERENT} ELSE {OTHER_LEAD} END"
        )

    def covered_expr(self) -> str:
        """The archive row holds no value the live row lacks, outside what a call changes
        (`CALL_STATE`): each other column is NULL in the archive row or equal in the two.
        A refresh from the live row then loses nothing (a column added since the copy)."""
        arch = "d" if self.direction == ARCHIVE else "s"
        parts = [
            f"({arch}.{q(c.name)} IS NULL OR {self.equal_expr([c])})"
            for c in self.columns
            if c.name.lower() not in CALL_STATE
        ]
        return "(" + "\n   AND ".join(parts) + ")" if parts else "1"

    def held_expr(self) -> str:
        """The pair is held: a MyISAM job left it in both tables after an ALTER since the job
        fingerprinted its copy (`hold`), or a job stopped by such an ALTER has it in hand (its
        pending row marked `altered`), and the archive row holds values the live row lacks
        (`covered_expr`). An ALTER may have cut the live row's values (MODIFY … VARCHAR(5),
        then back): a refresh would write the cut values over the full ones the archive
        holds, and the delete that follows would leave them in neither table. A held pair is
        a conflict in both directions, never refreshed nor taken for a copy, until an
        operator decides (README: a lead held after an ALTER)."""
        # A pending row whose table versions are not the tables' versions now is a copy a
        # job fingerprinted before an ALTER, cut before it could hold the pair (killed
        # between the ALTER and its `hold`): the same.
        return (
            "(EXISTS(SELECT 1 FROM `archiver_pending` AS h WHERE h.`lead_id` = s.`lead_id`"
            f" AND (h.`tables_at` IN ({_lit(HELD)}, {_lit(ALTERED)})"
            f" OR NOT h.`tables_at` <=> {self.tables_at()}))"
            f"\n   AND NOT {self.covered_expr()})"
        )

    def hold(self) -> str:
        """Hold (`held_expr`) every lead of :ids this job (:job) left in both tables whose copy
        it fingerprinted before an ALTER of either table (its pending row's table versions
        are not the tables' versions now), where the archive row holds values the live row
        lacks: a row under job 0, which no job has, so no checkpoint, resume or prune of a
        job removes it."""
        return (
            "INSERT IGNORE INTO `archiver_pending` (`job_id`, `lead_id`, `tables_at`)\n"
            f"SELECT 0, s.`lead_id`, {_lit(HELD)}\n"
            f"FROM {self.s} AS s JOIN {self.d} AS d ON d.`lead_id` = s.`lead_id`\n"
            "JOIN `archiver_pending` AS p ON p.`job_id` = :job AND p.`lead_id` = s.`lead_id`\n"
            "WHERE s.`lead_id` IN :ids AND p.`copy_hash` IS NOT NULL\n"
            f"  AND NOT (p.`tables_at` <=> {self.tables_at()})\n  AND NOT {self.covered_expr()}"
        )

    def row_hash(self, alias: str, table: str) -> str:
        """SQL for the fingerprint of a row (`alias`) that `archiver_pending` records as the
        fingerprint of a copy this job writes. `table` says which side the alias is: "src" or
        "dst". Each column enters as `name:` and its field of the copy's SQL tuple
        (`copy_field`: X'…' of its bytes, a text's in the target's character set, or a
        number's, date's or time's QUOTE()d text) in name
        order, joined by commas, and a NULL not at all: a nullable column added by an ALTER
        after the fingerprint was taken leaves the fingerprint of a copy that does not hold a
        value in it unchanged. `RowCopier` makes the same text from the tuple the scan read."""
        parts = []
        for col in sorted(self.columns, key=lambda c: c.name.lower()):
            name = _lit(col.name.lower() + ":")
            own = col if table == "src" else self.dst.column(col.name)
            assert own is not None
            field = self.copy_field(alias, col, own, convert=table == "src")
            parts.append(f"IF({alias}.{q(own.name)} IS NULL, NULL, CONCAT({name}, {field}))")
        return f"SHA2(CONCAT_WS(',', {', '.join(parts)}), 256)"

    def copy_field(self, alias: str, col: Column, own: Column, *, convert: bool) -> str:
        """One non-NULL value of `alias` as the copy's SQL tuple holds it, always text. `col`
        is the source's column (its type decides the form: a number, date or time QUOTE()d,
        anything else as X'…' of its bytes), `own` the column under `alias`; `convert`: the
        source's text in the target's character set, the bytes the copy writes where the two
        differ."""
        name = f"{alias}.{q(own.name)}"
        other = self.dst.column(col.name)
        if col.data_type in QUOTED_TYPES:
            if _is_float(col, other):
                return f"QUOTE(CAST({name} AS DOUBLE))"  # every digit: see `_bin`
            return f"QUOTE({name})"
        if col.data_type not in BYTE_TYPES:
            return "CONCAT('X''', HEX(CAST(" + name + " AS BINARY)), '''')"
        if convert and other is not None and charsets_differ(col, other):
            name = f"CONVERT({name} USING {other.charset})"
        return "CONCAT('X''', HEX(" + name + "), '''')"

    def schema_guard(self) -> str:
        """A condition true only while both tables have exactly the columns reflected at the
        start of the run (names, types, character sets, collations): part of every statement
        that deletes, so a column added by an ALTER since then, whose values the statement
        would neither copy nor compare, makes it delete nothing. Evaluated inside the
        statement, after it has opened (and metadata-locked) the tables: no ALTER can complete
        between the check and the delete."""
        checks = []
        for table in (self.src, self.dst):
            checks.append(
                "(SELECT CONCAT(COUNT(*), '/', BIT_XOR(CAST(CONV(SUBSTR(SHA2(CONCAT_WS(X'09',"
                " COLUMN_NAME, COLUMN_TYPE, IFNULL(CHARACTER_SET_NAME, ''),"
                " IFNULL(COLLATION_NAME, '')), 256), 1, 15), 16, 10) AS UNSIGNED)))"
                " FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()"
                f" AND TABLE_NAME = {_lit(table.name)}) = {_lit(fingerprint(table))}"
            )
        return " AND ".join(checks)

    def fingerprint_now(self) -> str:
        """The statement that reads both tables' fingerprints as they are now."""
        return (
            "SELECT TABLE_NAME, CONCAT(COUNT(*), '/', BIT_XOR(CAST(CONV(SUBSTR(SHA2(CONCAT_WS("
            "X'09', COLUMN_NAME, COLUMN_TYPE, IFNULL(CHARACTER_SET_NAME, ''),"
            " IFNULL(COLLATION_NAME, '')), 256), 1, 15), 16, 10) AS UNSIGNED)))"
            " FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()"
            f" AND TABLE_NAME IN ({_lit(self.src.name)}, {_lit(self.dst.name)})"
            " GROUP BY TABLE_NAME"
        )

    # --- reads ---------------------------------------------------------------------------

    def in_dst(self) -> str:
        return f"SELECT `lead_id` FROM {self.d} WHERE `lead_id` IN :ids"

    def classify(self) -> str:
        return (
            f"SELECT s.`lead_id`, IF(d.`lead_id` IS NULL, NULL, {self.state_expr()})\n"
            f"FROM {self.s} AS s LEFT JOIN {self.d} AS d ON d.`lead_id` = s.`lead_id`\n"
            f"WHERE s.`lead_id` IN :ids"
        )

    def selected(self, where: str) -> str:
        """Which of the ids the selection still holds (`where` over the source aliased s)."""
        return f"SELECT s.`lead_id` FROM {self.s} AS s WHERE s.`lead_id` IN :ids AND ({where})"

    def scan(
        self,
        where: str,
        guards: Sequence[str] = (),
        *,
        lock: bool = False,
        newest: bool = False,
        copies: bool = False,
    ) -> str:
        """The chunk's source rows and, in the same statement, each one's state: column 2 is
        NULL when the target has no row, else its state code (`state_expr`); column 3 is 1 when
        a live-lead guard table holds the lead; column 4 (with `newest`) the source's highest
        lead_id now, an index lookup read once per statement; then (with `copies`) the row's
        bytes, `copy_exprs`, from which the copy and its fingerprint are made without another
        read of the source. `where` is over the source
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
        top = f",\n  (SELECT MAX(`lead_id`) FROM {self.s}) AS `_newest`" if newest else ""
        if copies:
            top += ",\n  " + ", ".join(self.copy_exprs())
        return (
            f"SELECT s.`lead_id`,\n  (SELECT {self.state_expr()}\n"
            f"   FROM {self.d} AS d WHERE d.`lead_id` = s.`lead_id`) AS `_state`,\n"
            f"  {'(' + live + ')' if live else '0'} AS `_live`{top}\n"
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

    def copy_exprs(self) -> list[str]:
        """What a read of the source (aliased `s`) adds to copy and fingerprint each row with
        no other read (`RowCopier`): every shared column's bytes as the copy writes them (in
        the target's character set where the two differ), then, for each
        column whose bytes the delete compares in another form (`_bin`: in utf8mb4), those."""
        return self.copier().exprs

    def copier(self) -> RowCopier:
        if self._copier is None:
            self._copier = RowCopier(self)
        return self._copier

    def read_copies(self) -> str:
        """The rows of `:ids` as `copy_exprs` reads them, lead_id first."""
        return (
            f"SELECT s.`lead_id`, {', '.join(self.copy_exprs())} FROM {self.s} AS s"
            " WHERE s.`lead_id` IN :ids"
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
            f"WHERE d.`lead_id` IN :ids AND NOT {self.equal_expr()}\n"
            f"  AND {self.same_lead_expr()}"
            + (f"\n  AND NOT {self.held_expr()}" if self.holds else "")
        )

    def delete(self) -> str:
        # The proof and the delete are one statement: no change can slip in between, and the
        # statement itself checks that the tables still have the columns it compares.
        return (
            f"DELETE s FROM {self.s} AS s JOIN {self.d} AS d ON d.`lead_id` = s.`lead_id`\n"
            f"WHERE s.`lead_id` IN :ids AND {self.equal_expr()}\n  AND {self.schema_guard()}"
        )

    def settled_expr(self) -> str:
        """The two rows are equal on every column a call does not change (`CALL_STATE`)."""
        return self.equal_expr([c for c in self.columns if c.name.lower() not in CALL_STATE])

    def read_tables_at(self) -> str:
        """The tables' versions (`tables_at`, column 2). CREATE_TIME counts whole seconds: when
        a table was created or altered in this very second, an ALTER later in that second
        would leave them unchanged, so the statement first sleeps into the next second
        (column 1; SLEEP runs first, the select list is evaluated in order)."""
        wait = (
            "(SELECT IF(MAX(CREATE_TIME) >= NOW(), 1.01 - MICROSECOND(NOW(6)) / 1000000, 0)"
            " FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
            f" AND TABLE_NAME IN ({_lit(self.src.name)}, {_lit(self.dst.name)}))"
        )
        return f"SELECT SLEEP({wait}), {self.tables_at()}"

    def tables_at(self) -> str:
        """The two tables' versions: their CREATE_TIME, which every ALTER of a MyISAM table
        changes (it rebuilds the table)."""
        return (
            "(SELECT GROUP_CONCAT(IFNULL(CREATE_TIME, '-') ORDER BY TABLE_NAME SEPARATOR '/')"
            " FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
            f" AND TABLE_NAME IN ({_lit(self.src.name)}, {_lit(self.dst.name)}))"
        )

    def unaltered_or_settled(self) -> str:
        """The rows may differ anywhere when no ALTER touched either table since the job
        fingerprinted the copy (a lead edited by an agent); after one, only in what a call
        changes: an ALTER that cut values (MODIFY … VARCHAR(5)) must not pass for an edit."""
        return f"(p.`tables_at` <=> {self.tables_at()} OR {self.settled_expr()})"

    def delete_stale_copy(self) -> str:
        """Archive, MyISAM: a lead changed after this job copied it stays live; its copy in the
        target goes, only where the statement proves the target row is exactly the copy this
        job wrote or found equal (its fingerprint, recorded before the chunk wrote anything,
        and every column only the target has at its default: `dst_only_defaults`), that the
        live row is still there and the same lead, and that no ALTER since can have
        cut a value of the live row (`unaltered_or_settled`): the live row is the newer."""
        return (
            f"DELETE d FROM {self.d} AS d JOIN {self.s} AS s ON s.`lead_id` = d.`lead_id`\n"
            "JOIN `archiver_pending` AS p ON p.`job_id` = :job AND p.`lead_id` = d.`lead_id`\n"
            f"WHERE d.`lead_id` IN :ids\n"
            f"  AND {self.row_hash('d', 'dst')} IN (p.`copy_hash`, p.`prev_hash`)\n"
            f"  AND {self.dst_only_defaults()}\n"
            f"  AND {self.same_lead_expr()}\n  AND {self.unaltered_or_settled()}\n"
            f"  AND {self.schema_guard()}"
        )

    def versions(self) -> str:
        """Archive, MyISAM: the chunk's rows to copy as they are now, read again just before
        the copy: lead_id and the `VERSION` columns, each as the copy's tuple holds it. A row
        gone since the scan (an admin's delete, an erasure) or changed in one of them (a call,
        another lead under the same id) is not copied from the scan's values: a deleted lead
        never comes back from the archive, and nothing is ever withdrawn (a withdrawal cannot
        tell a lead deleted before its copy from one moved after it)."""
        copier = self.copier()
        cols = [self.columns[i] for i in copier.versioned]
        parts = [
            f"IF(s.{q(c.name)} IS NULL, 'NULL', {self.copy_field('s', c, c, convert=True)})"
            for c in cols
        ]
        joined = f"CONCAT_WS('|', {', '.join(parts)})" if parts else "''"
        return f"SELECT s.`lead_id`, {joined} FROM {self.s} AS s WHERE s.`lead_id` IN :ids"

    def dst_only_defaults(self) -> str:
        """Every column only the target has (an archive-only column: a warning, not a refusal)
        holds, in the target row `d`, what a copy writes there: its default. The fingerprint
        covers the shared columns only, so this is what proves the rest of the row is the
        copy's too; a value someone put there (a back-office note) means the row is not the
        job's to remove. A generated column is left out (its value comes from the others);
        a NOT NULL column without a default proves nothing (the row is kept)."""
        parts = []
        for col in self.dst.columns:
            if self.src.column(col.name) is not None or "generated" in col.extra.lower():
                continue
            if not col.nullable and col.default in (None, "NULL"):
                return "0"
            parts.append(f"d.{q(col.name)} <=> DEFAULT(d.{q(col.name)})")
        return "(" + " AND ".join(parts) + ")" if parts else "1"

    def copy_held(self) -> str:
        """The live row (`d`) holds what the archive row (`s`) held in every column whose copy
        can come out different without anyone changing it: where the two character sets differ
        (a byte outside the source's character set becomes '?') and FLOAT/DOUBLE columns (a
        value beyond the column's display is cut): those compared (`equal_expr`, which also
        proves the bytes survive the trip through utf8mb4), except what a call changes, where
        only the archive row's bytes must survive that trip. Every other column is copied
        exactly by INSERT … SELECT, so a difference there is an edit. "1" when no column is
        such (the stock tables)."""
        prone, called = [], []
        for col in self.columns:
            other = self.dst.column(col.name)
            if not (charsets_differ(col, other) or _is_float(col, other)):
                continue
            if col.name.lower() not in CALL_STATE:
                prone.append(col)
            elif charsets_differ(col, other):
                called.append(self._round_trip("s", col))
        parts = ([self.equal_expr(prone)] if prone else []) + called
        return "(" + "\n   AND ".join(parts) + ")" if parts else "1"

    def untriggered(self) -> str:
        """The target's INSERT triggers are those the run's checks allowed (none that can
        change a copy, `schema.check_triggers`): a restore rewritten by one made since differs
        from the archive row by what the table did, not by an edit. information_schema lists
        every trigger; a body only to an account holding the TRIGGER privilege on the table
        (NULL otherwise, and such a trigger on the target is refused before the run)."""
        return (
            "(SELECT CONCAT(COUNT(*), '/', BIT_XOR(CAST(CONV(SUBSTR(SHA2(CONCAT_WS(X'09',"
            " TRIGGER_NAME, ACTION_TIMING, ACTION_STATEMENT), 256), 1, 15), 16, 10) AS UNSIGNED)))"
            " FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = DATABASE()"
            f" AND EVENT_OBJECT_TABLE = {_lit(self.dst.name)} AND EVENT_MANIPULATION = 'INSERT')"
            f" = {_lit(triggers_print(self.dst, 'INSERT'))}"
        )

    def delete_superseded(self) -> str:
        """Dearchive, MyISAM: a lead this job restored and the dialer or an agent has since
        changed in the live table. The restored row is the lead; the archive row goes, only
        where the statement proves it is exactly the row this job copied (its fingerprint,
        recorded before the copy), the same lead, that no ALTER since can have cut a value
        of the live row (`unaltered_or_settled`), and that the copy held every value a copy
        can lose (`copy_held`): a restore whose copy could not hold a value looks like a
        changed lead, and must keep its archive row; nor once the live table's INSERT
        triggers changed since the run's checks (`untriggered`)."""
        return (
            f"DELETE s FROM {self.s} AS s JOIN {self.d} AS d ON d.`lead_id` = s.`lead_id`\n"
            "JOIN `archiver_pending` AS p ON p.`job_id` = :job AND p.`lead_id` = s.`lead_id`\n"
            f"WHERE s.`lead_id` IN :ids\n"
            f"  AND {self.row_hash('s', 'src')} IN (p.`copy_hash`, p.`prev_hash`)\n"
            f"  AND {self.same_lead_expr()}\n  AND {self.unaltered_or_settled()}\n"
            + ("" if (held := self.copy_held()) == "1" else f"  AND {held}\n")
            + f"  AND {self.untriggered()}\n"
            + f"  AND {self.schema_guard()}"
        )

    def override_params(self) -> dict[str, Any]:
        return {f"ov_{k.lower()}": v for k, v in self.overrides.items()}


# One value of a row's SQL tuple as the server builds it (`RowCopier`): NULL, X'HEX' or a
# QUOTE()d text (backslash escapes).
_TOKEN = re.compile(r"NULL|X'[0-9A-F]*'|'(?:[^'\\]|\\.)*'", re.S)


class RowCopier:
    """A source row's copy and fingerprint from one read of the source (`ChunkSql.copy_exprs`,
    read by the chunk's scan), so the source is read once per chunk: on MyISAM every dialer
    write waits for that read's table lock.

    The server builds each row's SQL tuple for `ChunkSql.insert_literals` (strings as X'…' of
    their bytes, in the target's character set where the two differ; numbers, dates and times
    QUOTE()d; any other value, a BIT, as X'…' of its bytes: the tuple is always text):
    one short field per row, quick to send and to parse. The fingerprint is made here from
    that tuple's fields as they are, and is `ChunkSql.row_hash` ("src" side) to the byte:
    SHA-256 of `name:field` per non-NULL column in name order, joined by commas. The
    proven-copy deletes compare the fingerprint on the server with the target row's, so tests
    hold the two equal on hostile data; a difference could only spare a row, never delete
    one. SHA2 over every column on the server would hold the table lock longer."""

    def __init__(self, sql: ChunkSql) -> None:
        parts = []
        for col in sql.columns:
            field = sql.copy_field("s", col, col, convert=True)
            parts.append(f"IF(s.{q(col.name)} IS NULL, 'NULL', {field})")
        self.exprs = [f"CONCAT('(', CONCAT_WS(',', {', '.join(parts)}), ')')"]
        self.width = len(sql.columns)
        # The columns read again just before the copy (`ChunkSql.versions`), by tuple index.
        self.versioned = [i for i, c in enumerate(sql.columns) if c.name.lower() in VERSION]
        # Per column in `row_hash`'s order: (name:, its index in the tuple).
        self.hashed = [
            (c.name.lower() + ":", sql.columns.index(c))
            for c in sorted(sql.columns, key=lambda c: c.name.lower())
        ]

    def copy(self, values: Sequence[Any]) -> tuple[str, str]:
        """(the row's SQL tuple, its fingerprint), from what `exprs` read of the row."""
        row = str(values[0])
        fields = self.fields(row)
        text = ",".join(name + f for name, i in self.hashed if (f := fields[i]) != "NULL")
        return row, hashlib.sha256(text.encode("utf-8")).hexdigest()

    def fields(self, row: str) -> list[str]:
        """The tuple's fields, in the shared columns' order."""
        fields = row[1:-1].split(",")
        if len(fields) != self.width:  # a quoted text holds a comma
            fields = self._tokens(row)
        return fields

    def version(self, values: Sequence[Any]) -> str:
        """The fields `ChunkSql.versions` reads again of a row, from the scan's tuple."""
        fields = self.fields(str(values[0]))
        return "|".join(fields[i] for i in self.versioned)

    def _tokens(self, row: str) -> list[str]:
        """The tuple's fields, read token by token (X'…', a QUOTE()d text, NULL)."""
        fields = [m.group(0) for m in _TOKEN.finditer(row, 1, len(row) - 1)]
        if len(fields) != self.width:  # never: the server built it from `width` values
            raise ValueError(f"a row's tuple has {len(fields)} values, not {self.width}")
        return fields


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


def is_conflict(state: State, direction: str, ours: bool = False) -> bool:
    """In both tables and not to be touched: another lead under the same id (archive), or a
    live row that is not exactly the archived one and was not restored by this job (dearchive:
    --set-status/--reset-called/--set-called-count never widen what counts as equal)."""
    if not (state.in_src and state.in_dst):
        return False
    if direction == ARCHIVE:
        return not state.same_lead
    return not ours and not state.identical


def outcome(
    before: State | None,
    after: State | None,
    flags: Flags,
    direction: str,
    *,
    left: bool = False,
    ours: bool = False,
    withdrawn: bool = False,
    overrides: bool = False,
    gone: bool = False,
) -> Outcome:
    """A lead's outcome from its state before the chunk and after it, as the chunk read it
    back (None: the chunk did not act on it); `left`: the lead left the selection while this
    job had it in hand; `ours`: a cut attempt of this job's chunk had it in hand (its copy may
    be this job's); `withdrawn`: this job removed its own copy of a lead a call changed after
    the copy (it is live only, for a later run); `gone`: the source row was gone before the
    chunk's delete ran (someone else deleted it). A lead in neither table after the chunk was
    not moved by it: `gone`."""
    if before is None:
        return Outcome.MISSING
    if not before.in_src:
        return Outcome.ALREADY_ARCHIVED if direction == ARCHIVE else Outcome.ALREADY_LIVE
    if is_conflict(before, direction, ours):
        return Outcome.CONFLICT
    if gone or (after is not None and not after.in_src and not after.in_dst):
        return Outcome.GONE
    if after is None or not after.in_src:
        if direction == DEARCHIVE and overrides and before.in_dst and not ours:
            # Exactly live already: the copy went, nothing was restored.
            return Outcome.ALREADY_LIVE
        return Outcome.ARCHIVED if direction == ARCHIVE else Outcome.DEARCHIVED
    if left:
        return Outcome.LEFT_SELECTION if not after.in_dst else Outcome.KEPT_CHANGED
    if withdrawn and not after.in_dst:
        return Outcome.KEPT_CHANGED
    if not after.in_dst:
        return Outcome.NOT_COPIED
    if after.equal and not flags.delete:
        # Written only if the copy was missing or different before the chunk.
        return Outcome.ALREADY_COPIED if before.in_dst and before.equal else Outcome.REFRESHED
    return Outcome.KEPT_CHANGED
