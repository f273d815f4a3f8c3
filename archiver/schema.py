"""Reflect both tables, decide whether rows can travel losslessly, report and repair drift.

A column can travel from a source table to a target when every value the source can hold is
stored in the target with the same bytes, because the delete step compares the two copies
byte-exactly. Anything else blocks the run before a single row is written.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from archiver.db import Db, q
from archiver.errors import BadInput, SchemaDrift

INT_RANK = {"tinyint": 1, "smallint": 2, "mediumint": 3, "int": 4, "bigint": 5}
TEXT_LEN = {"tinytext": 255, "text": 65535, "mediumtext": 16777215, "longtext": 4294967295}
STRING_TYPES = {"char", "varchar", *TEXT_LEN}
# Byte strings without padding, and the most bytes each holds (VARBINARY: its declared length).
VAR_BYTES = {
    "varbinary": 0,
    "tinyblob": 255,
    "blob": 65535,
    "mediumblob": 16777215,
    "longblob": 4294967295,
}
# Character sets whose every character utf8mb4 can hold with the same code point.
UNICODE_SUPERSETS = {"utf8mb4": {"utf8mb3", "utf8", "ascii", "latin1", "utf8mb4"}}
# Bytes per character at most; the UTF-8 family stores a character with the same bytes.
MB_MAXLEN = {"utf8mb4": 4, "utf8mb3": 3, "utf8": 3, "latin1": 1, "ascii": 1}
UTF8_FAMILY = {"utf8mb4", "utf8mb3", "utf8", "ascii"}


def _max_bytes(src: Column, dst: Column) -> int:
    """The most bytes a source value takes once stored in the target's character set."""
    if src.charset == dst.charset or {src.charset, dst.charset} <= UTF8_FAMILY:
        if src.data_type in TEXT_LEN:
            return TEXT_LEN[src.data_type]
        return (src.char_len or 0) * MB_MAXLEN.get(src.charset or "", 4)
    return (src.char_len or 0) * MB_MAXLEN.get(dst.charset or "", 4)


@dataclass(frozen=True)
class Column:
    name: str
    position: int
    data_type: str
    column_type: str
    nullable: bool
    default: str | None
    extra: str
    charset: str | None
    collation: str | None
    char_len: int | None
    num_precision: int | None
    num_scale: int | None
    dt_precision: int | None
    generation: str | None = None  # GENERATION_EXPRESSION of a generated column

    @property
    def generated(self) -> bool:
        """The table computes the column's value (VIRTUAL/STORED/PERSISTENT GENERATED): a
        write cannot set it."""
        return re.search(r"\b(virtual|stored|persistent) generated\b", self.extra) is not None

    @property
    def unsigned(self) -> bool:
        return "unsigned" in self.column_type.lower()

    @property
    def zerofill(self) -> bool:
        return "zerofill" in self.column_type.lower()

    @property
    def display_width(self) -> int | None:
        """The M of INT(M): it decides nothing but the padding of a ZEROFILL column."""
        m = re.search(r"\((\d+)\)", self.column_type)
        return int(m.group(1)) if m else None

    @property
    def enum_values(self) -> list[str]:
        if self.data_type not in ("enum", "set"):
            return []
        inner = self.column_type[self.column_type.index("(") + 1 : self.column_type.rindex(")")]
        return [v.replace("''", "'") for v in re.findall(r"'((?:[^']|'')*)'", inner)]


# A trigger body without its comments and quoted texts (what it does, not what it says).
_QUOTED = re.compile(
    r"'(?:[^'\\]|\\.|'')*'"  # a '…' text
    r'|"(?:[^"\\]|\\.|"")*"'  # a "…" text
    r"|/\*.*?\*/|(?:--\s|#)[^\n]*",  # a comment
    re.S,
)
# NEW.col assigned (SET NEW.col = …, and conservatively any NEW.col followed by `=`), or read
# INTO (SELECT … INTO NEW.col, FETCH … INTO NEW.col).
_SETS_NEW = re.compile(
    r"\bNEW\s*\.\s*(?:`[^`]*`|\w+)\s*:?=|\b(?:SELECT|FETCH)\b[^;]*?\bINTO\b[^;]*?\bNEW\s*\.",
    re.I | re.S,
)


@dataclass(frozen=True)
class Trigger:
    name: str
    table: str
    event: str  # INSERT, UPDATE or DELETE
    timing: str  # BEFORE or AFTER
    body: str | None  # ACTION_STATEMENT; None: this account may not read it

    def __str__(self) -> str:
        return f"trigger {self.name!r} ({self.timing} {self.event} on {self.table})"

    def names(self, table: str) -> bool:
        """The trigger's body names `table` (outside quoted text); False when unreadable."""
        if self.body is None:
            return False
        body = _QUOTED.sub(" ", self.body)
        return re.search(rf"(?<![\w$])`?{re.escape(table)}`?(?![\w$])", body, re.I) is not None

    def changes_copies(self, source: str) -> str | None:
        """How the trigger can change a row the run copies, or None when it cannot."""
        if self.body is None:
            return (
                "has a body this account cannot read (MariaDB shows it only to an account "
                f"holding the TRIGGER privilege on {self.table}), so nothing proves it leaves "
                "the copy alone"
            )
        body = _QUOTED.sub(" ", self.body)
        if re.search(r"\bCALL\b", body, re.I):
            return "calls a procedure"
        if self.timing == "BEFORE" and _SETS_NEW.search(body):
            return "can set the row's values (NEW)"
        if self.names(source):
            return f"names {source}"
        return None


@dataclass(frozen=True)
class Table:
    name: str
    engine: str
    collation: str | None
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    auto_increment: int | None
    triggers: tuple[Trigger, ...] = ()

    def column(self, name: str) -> Column | None:
        for c in self.columns:
            if c.name.lower() == name.lower():
                return c
        return None

    @property
    def transactional(self) -> bool:
        return self.engine.lower() == "innodb"


@dataclass
class Drift:
    """Drift between live and archive; `blocking` items make a run lossy and stop it."""

    blocking: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.blocking and not self.warnings


def charsets_differ(col: Column, other: Column | None) -> bool:
    """Both columns have a character set and they differ: the same text is other bytes."""
    return bool(other and col.charset and other.charset and col.charset != other.charset)


def reflect(db: Db, name: str) -> Table | None:
    meta = db.rows(
        "SELECT ENGINE, TABLE_COLLATION, AUTO_INCREMENT FROM information_schema.TABLES"
        " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t",
        {"t": name},
    )
    if not meta:
        return None
    cols = db.rows(
        "SELECT COLUMN_NAME, ORDINAL_POSITION, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE,"
        " COLUMN_DEFAULT, EXTRA, CHARACTER_SET_NAME, COLLATION_NAME,"
        " CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE, DATETIME_PRECISION,"
        " GENERATION_EXPRESSION FROM information_schema.COLUMNS"
        " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t"
        " ORDER BY ORDINAL_POSITION",
        {"t": name},
    )
    pk = db.rows(
        "SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE()"
        " AND TABLE_NAME = :t AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX",
        {"t": name},
    )
    columns = tuple(
        Column(
            name=r[0],
            position=int(r[1]),
            data_type=str(r[2]).lower(),
            column_type=str(r[3]),  # not lowered: ENUM labels are case-sensitive
            nullable=r[4] == "YES",
            default=r[5],
            extra=str(r[6] or "").lower(),
            charset=r[7],
            collation=r[8],
            char_len=None if r[9] is None else int(r[9]),
            num_precision=None if r[10] is None else int(r[10]),
            num_scale=None if r[11] is None else int(r[11]),
            dt_precision=None if r[12] is None else int(r[12]),
            generation=None if r[13] is None else str(r[13]),
        )
        for r in cols
    )
    # Every trigger is listed; its body (ACTION_STATEMENT) only to an account holding the
    # TRIGGER privilege on its table: NULL otherwise, and such a body cannot be judged.
    trig = db.rows(
        "SELECT TRIGGER_NAME, EVENT_MANIPULATION, ACTION_TIMING, ACTION_STATEMENT"
        " FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = DATABASE()"
        " AND EVENT_OBJECT_TABLE = :t ORDER BY TRIGGER_NAME",
        {"t": name},
    )
    found = tuple(
        Trigger(
            str(r[0]),
            name,
            str(r[1]).upper(),
            str(r[2]).upper(),
            None if r[3] is None else str(r[3]),
        )
        for r in trig
    )
    engine = str(meta[0][0] or "")
    pks = tuple(str(r[0]) for r in pk)
    return Table(name, engine, meta[0][1], columns, pks, meta[0][2], found)


def _charset_ok(src: Column, dst: Column) -> bool:
    if src.charset is None or dst.charset is None or src.charset == dst.charset:
        return src.charset is None or dst.charset is not None
    return src.charset in UNICODE_SUPERSETS.get(dst.charset, set())


def lossless_problem(src: Column, dst: Column) -> str | None:
    """Why `dst` cannot hold every value of `src` byte-exactly, or None when it can."""
    if src.nullable and not dst.nullable:
        return "is NULL-able in the source but NOT NULL in the target"
    s, d = src.data_type, dst.data_type
    if s in INT_RANK:
        rs, rd = INT_RANK[s], INT_RANK.get(d, 0)
        if src.unsigned == dst.unsigned:
            ok = rd >= rs
        else:  # unsigned fits a signed type only one size up; signed never fits unsigned
            ok = src.unsigned and rd > rs
        if not ok:
            return _type_msg(src, dst)
        return _zerofill_problem(src, dst, src.display_width, dst.display_width)
    if s == "decimal":
        if (
            d != "decimal"
            or dst.num_scale != src.num_scale
            or (src.unsigned != dst.unsigned and dst.unsigned)
            or (
                (dst.num_precision or 0) - (dst.num_scale or 0)
                < (src.num_precision or 0) - (src.num_scale or 0)
            )
        ):
            return _type_msg(src, dst)
        return _zerofill_problem(src, dst, src.num_precision, dst.num_precision)
    if s in ("enum", "set"):
        if d == s:
            missing = [v for v in src.enum_values if v not in dst.enum_values]
            if missing:
                vals = ", ".join(repr(v) for v in missing)
                return f"lacks {s.upper()} value(s) {vals} in the target"
            if s == "set" and [v for v in dst.enum_values if v in src.enum_values] != (
                src.enum_values
            ):
                # A SET value lists its labels in the column's order: 'x,y' in SET('x','y')
                # is stored 'y,x' in SET('y','x'), other bytes, never proven a copy.
                return f"{_type_msg(src, dst)}, which lists a value's labels in another order"
        elif d in STRING_TYPES:
            longest = max((len(v) for v in src.enum_values), default=0)
            if s == "set":  # a SET value is every label at once, joined by commas
                labels = src.enum_values
                longest = sum(len(v) for v in labels) + max(len(labels) - 1, 0)
            if (dst.char_len or 0) < longest:
                return f"is {src.column_type} in the source but {dst.column_type} in the target"
        else:
            return f"is {src.column_type} in the source but {dst.column_type} in the target"
        return None if _charset_ok(src, dst) else _charset_msg(src, dst)
    if s in STRING_TYPES:
        if d not in STRING_TYPES or (dst.char_len or 0) < (src.char_len or 0):
            return (
                f"is {src.column_type} in the source but narrower {dst.column_type} in the target"
            )
        if d in TEXT_LEN and _max_bytes(src, dst) > TEXT_LEN[d]:
            # TEXT types are limited in bytes, not characters: VARCHAR(255) utf8 needs 765.
            return (
                f"is {src.column_type} in the source but {dst.column_type} in the target, "
                f"which holds only {TEXT_LEN[d]} bytes"
            )
        if (s == "char") != (d == "char"):
            return f"is {src.column_type} in the source but {dst.column_type} in the target"
        return None if _charset_ok(src, dst) else _charset_msg(src, dst)
    if s in VAR_BYTES:
        # A VARBINARY or BLOB value is its bytes, stored as they are in any longer one (a
        # BINARY pads to its width, a BIT to its bytes: those must match exactly, below).
        if d not in VAR_BYTES or _byte_len(dst) < _byte_len(src):
            return _type_msg(src, dst)
        return None
    if s in ("date", "datetime", "timestamp", "time", "year"):
        if {s, d} == {"timestamp", "datetime"}:
            # A TIMESTAMP is converted from and to the session's time zone, a DATETIME is not:
            # the tool's session runs at +00:00 and VICIdial's in the server's zone, so a copy
            # between them reads back shifted by the server's UTC offset.
            return (
                f"{_type_msg(src, dst)}: a TIMESTAMP is read in each session's time zone and "
                "a DATETIME is not, so values would shift by the server's UTC offset"
            )
        ok = s == d and src.dt_precision == dst.dt_precision
        return None if ok else _type_msg(src, dst)
    return None if src.column_type == dst.column_type else _type_msg(src, dst)


def generated_alike(src: Column, dst: Column) -> bool:
    """Both tables compute the column, the same way into the same type: its value follows from
    the row's other columns, which the copy writes and the delete compares, so it is neither
    copied nor compared."""
    return (
        src.generated
        and dst.generated
        and src.generation == dst.generation
        and (src.column_type, src.charset, src.collation)
        == (dst.column_type, dst.charset, dst.collation)
    )


def generated_problem(src: Column, dst: Column, src_name: str, dst_name: str) -> str | None:
    """Why a generated column keeps rows of `src_name` from being copied into `dst_name` as
    they are, or None. A column the target computes cannot be written: the copy would hold the
    target's value, not the source's, unless both compute it alike (`generated_alike`). A
    column only the source computes is copied as a plain value."""
    if not dst.generated:
        return None
    if not src.generated:
        return (
            f"is generated in {dst_name} (AS ({dst.generation})) but holds stored values in "
            f"{src_name}: a copy cannot write them, so it would not be byte-exact; make the "
            "column alike in both tables (generated the same way, or plain in both)"
        )
    if generated_alike(src, dst):
        return None
    return (
        f"is generated differently in {src_name} ({src.column_type} AS ({src.generation})) and "
        f"{dst_name} ({dst.column_type} AS ({dst.generation})): a copy would not hold the "
        "source's values; make the two columns alike"
    )


def _zerofill_problem(
    src: Column, dst: Column, src_width: int | None, dst_width: int | None
) -> str | None:
    """ZEROFILL pads a number's digits to the column's width, and the delete compares those
    padded bytes: both sides must pad, to the same width, or a copy never equals its source."""
    if not (src.zerofill or dst.zerofill):
        return None
    if src.zerofill == dst.zerofill and src_width == dst_width:
        return None
    return (
        f"{_type_msg(src, dst)}: ZEROFILL pads the digits to the column's width, so the copy's "
        "bytes would never equal the source's"
    )


def _byte_len(col: Column) -> int:
    return (col.char_len or 0) if col.data_type == "varbinary" else VAR_BYTES[col.data_type]


def _type_msg(src: Column, dst: Column) -> str:
    return f"is {src.column_type} in the source but {dst.column_type} in the target"


def _charset_msg(src: Column, dst: Column) -> str:
    return (
        f"is character set {src.charset} in the source but {dst.charset} in the target, "
        "which cannot hold every character"
    )


def drift(src: Table, dst: Table) -> Drift:
    """What keeps rows of `src` from being stored in `dst` losslessly, and softer differences."""
    out = Drift()
    fix = "run `vicidial-archiver schema sync` to see the ALTER TABLE that fixes it"
    if tuple(c.lower() for c in dst.primary_key) != ("lead_id",):
        out.blocking.append(f"{dst.name} has no PRIMARY KEY (lead_id); {fix}")
    for col in src.columns:
        other = dst.column(col.name)
        if other is None:
            out.blocking.append(
                f"column {col.name!r} of {src.name} is missing in {dst.name}; {fix}"
            )
            continue
        generated = generated_problem(col, other, src.name, dst.name)
        if generated:
            out.blocking.append(f"column {col.name!r} {generated}")
            continue
        problem = lossless_problem(col, other)
        if problem:
            out.blocking.append(f"column {col.name!r} {problem} ({src.name} → {dst.name}); {fix}")
        elif col.column_type != other.column_type:
            out.warnings.append(
                f"column {col.name!r} is {col.column_type} in {src.name}, "
                f"{other.column_type} in {dst.name} (holds every value)"
            )
        elif col.collation != other.collation:
            out.warnings.append(
                f"column {col.name!r} collation {col.collation} in {src.name}, "
                f"{other.collation} in {dst.name}"
            )
    for col in dst.columns:
        if src.column(col.name) is None:
            out.warnings.append(f"column {col.name!r} exists only in {dst.name}")
    shared = [c.name.lower() for c in src.columns if dst.column(c.name)]
    dst_order = [c.name.lower() for c in dst.columns if src.column(c.name)]
    if shared != dst_order:
        out.warnings.append(f"column order differs between {src.name} and {dst.name}")
    if src.engine.lower() != dst.engine.lower():
        out.warnings.append(f"engine is {src.engine} for {src.name}, {dst.engine} for {dst.name}")
    if src.collation != dst.collation:
        out.warnings.append(
            f"table collation is {src.collation} for {src.name}, {dst.collation} for {dst.name}"
        )
    return out


def check_triggers(src: Table, dst: Table, *, insert: bool, update: bool) -> list[str]:
    """Refuse a trigger on the target that fires on the rows a run writes into it (INSERT when
    it copies, UPDATE when it refreshes copies: `insert`, `update`) and can change what the
    run copies: a BEFORE trigger that can set NEW (the copy would differ from its source by
    what the table did, and no removal can tell that from an edit), one that names the source
    table (it could change or delete the source row between the copy and the delete, where
    nothing proves what it did), one that calls a procedure (it could do either). Returns a
    warning naming each other trigger that fires on the run's writes: a log, a counter, a
    SIGNAL. The deletes read both lead tables, so a trigger cannot write to them (1442)."""
    warnings = []
    for trig in (*src.triggers, *dst.triggers):
        target = trig.table.lower() == dst.name.lower()
        writes = (trig.event == "INSERT" and insert) or (trig.event == "UPDATE" and update)
        if target and writes:
            why = trig.changes_copies(src.name)
            if why:
                raise SchemaDrift(
                    f"{trig} fires on every row this run writes into {dst.name} and {why}: a "
                    "copy must hold the source row byte for byte; drop the trigger, or make it "
                    "leave the row alone, and run again (SHOW CREATE TRIGGER shows it)"
                )
            warnings.append(f"{trig} fires on the rows this run writes")
        elif trig.event == "DELETE" and (target or trig.table.lower() == src.name.lower()):
            if not target and trig.names(dst.name):
                # The run's deletes read the target: the server refuses any statement of such
                # a trigger on it (1442), so every delete would fail, run after run.
                raise SchemaDrift(
                    f"{trig} writes to {dst.name}, which every delete of this run reads: the "
                    "server refuses each of them (error 1442); drop the trigger, or run the "
                    "archive another way, and run again"
                )
            warnings.append(f"{trig} fires on the rows this run deletes")
    return warnings


def require_tables(db: Db, live_name: str, archive_name: str) -> tuple[Table, Table]:
    live = reflect(db, live_name)
    if live is None:
        raise SchemaDrift(
            f"table {live_name!r} does not exist in this database; check --dsn points at the "
            "VICIdial database"
        )
    archive = reflect(db, archive_name)
    if archive is None:
        raise SchemaDrift(
            f"archive table {archive_name!r} does not exist; create it with "
            "`vicidial-archiver schema init` (or --print to see the SQL)"
        )
    return live, archive


def check_lossless(src: Table, dst: Table) -> None:
    report = drift(src, dst)
    if report.blocking:
        more = f" (and {len(report.blocking) - 1} more)" if len(report.blocking) > 1 else ""
        raise SchemaDrift(report.blocking[0] + more)


# --- restore options ------------------------------------------------------------------------

# The option that sets each column, for the error line.
OVERRIDE_OPTIONS = {
    "status": "--set-status",
    "called_count": "--set-called-count",
    "called_since_last_reset": "--reset-called",
}
# MySQL's latin1 is cp1252 plus the five bytes cp1252 leaves undefined, kept as C1 controls.
_LATIN1_EXTRA = {"\x81", "\x8d", "\x8f", "\x90", "\x9d"}


def check_overrides(target: Table, overrides: Mapping[str, Any]) -> None:
    """Refuse a restore option its column would not store exactly as given.

    The session's sql_mode is not strict (it must accept VICIdial's zero dates), so the server
    would cut an over-long value, clip a number or turn a character into '?' and say nothing;
    and an option is written after the restore, where no comparison sees it."""
    for name, value in overrides.items():
        option = OVERRIDE_OPTIONS.get(name.lower(), f"--{name}")
        shown = f"{option} {value!r}"
        if option == "--reset-called":
            shown = f"--reset-called (sets {name} to {value!r})"
        col = target.column(name)
        if col is None:
            raise BadInput(f"{shown}: {target.name} has no column {name!r}")
        problem = _value_problem(col, value)
        if problem:
            where = f"{target.name}.{col.name} is {col.column_type}"
            raise BadInput(f"{shown}: {where}, {problem}")


def _value_problem(col: Column, value: Any) -> str | None:
    """What keeps `col` from storing `value` as given, and what it takes instead."""
    if col.data_type in INT_RANK:
        size = {1: 1, 2: 2, 3: 3, 4: 4, 5: 8}[INT_RANK[col.data_type]] * 8
        low, high = (0, 2**size - 1) if col.unsigned else (-(2 ** (size - 1)), 2 ** (size - 1) - 1)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            return f"which takes a whole number from {low} to {high}"
        return None
    if not isinstance(value, str):
        return "which takes text"
    if col.data_type in ("enum", "set"):
        allowed = ", ".join(repr(v) for v in col.enum_values)
        parts = value.split(",") if col.data_type == "set" and value else [value]
        if any(p not in col.enum_values for p in parts):
            return f"which does not hold {value!r}: use one of {allowed}"
        return None
    if col.data_type not in STRING_TYPES:
        return "which a restore option cannot set"
    cs = col.charset or ""
    bad = [ch for ch in value if not _charset_holds(cs, ch)]
    if bad:
        return (
            f"character set {cs}, which cannot hold {''.join(dict.fromkeys(bad))!r}: use "
            f"{_charset_allows(cs)}"
        )
    if col.data_type in TEXT_LEN:
        used = len(value.encode("utf-8")) if cs in UTF8_FAMILY else len(value)
        if used > TEXT_LEN[col.data_type]:
            return f"which holds at most {TEXT_LEN[col.data_type]} bytes"
    elif len(value) > (col.char_len or 0):
        return f"which holds at most {col.char_len} characters"
    if col.data_type == "char" and value != value.rstrip(" "):
        return "which drops trailing spaces: leave them out"
    return None


def _charset_holds(charset: str, ch: str) -> bool:
    if 0xD800 <= ord(ch) <= 0xDFFF:  # a lone surrogate: bytes that were not UTF-8 at all
        return False
    if charset in ("utf8mb4", "utf16", "utf16le", "utf32"):
        return True
    if charset in ("utf8mb3", "utf8", "ucs2"):
        return ord(ch) <= 0xFFFF
    if charset == "latin1":
        try:
            ch.encode("cp1252")
        except UnicodeEncodeError:
            return ch in _LATIN1_EXTRA
        return True
    return ord(ch) < 0x80  # another character set: only what every one of them holds


def _charset_allows(charset: str) -> str:
    if charset in ("utf8mb4", "utf16", "utf16le", "utf32"):
        return "valid UTF-8 text"
    if charset in ("utf8mb3", "utf8", "ucs2"):
        return "characters of up to 3 bytes in UTF-8 (no emoji)"
    if charset == "latin1":
        return "Western European (cp1252) characters"
    return "ASCII characters"


# --- DDL -----------------------------------------------------------------------------------


def init_archive_ddl(live_name: str, archive_name: str) -> list[str]:
    """VICIdial's documented way: LIKE the live table, then lead_id without AUTO_INCREMENT."""
    return [
        f"CREATE TABLE {q(archive_name)} LIKE {q(live_name)}",
        f"ALTER TABLE {q(archive_name)} MODIFY {q('lead_id')} INT(9) UNSIGNED NOT NULL",
    ]


def column_ddl(col: Column, *, column_type: str | None = None) -> str:
    parts = [q(col.name), column_type or col.column_type]
    if col.charset and col.data_type in STRING_TYPES | {"enum", "set"}:
        parts.append(f"CHARACTER SET {col.charset} COLLATE {col.collation}")
    parts.append("NULL" if col.nullable else "NOT NULL")
    if col.default is not None:
        d = col.default
        literal = (
            d
            if re.fullmatch(r"(current_timestamp(\(\d*\))?|NULL|-?[\d.]+)", d, re.I)
            else (d if d.startswith("'") else "'" + d.replace("'", "''") + "'")
        )
        parts.append(f"DEFAULT {literal}")
    extra = re.sub(r"auto_increment|default_generated", "", col.extra).strip()
    if extra.startswith("on update"):
        parts.append(extra.upper())
    return " ".join(parts)


def sync_ddl(live: Table, archive: Table) -> list[str]:
    """ALTERs that let `archive` hold every `live` column losslessly. Never drops or narrows."""
    clauses: list[str] = []
    previous: str | None = None
    for col in live.columns:
        other = archive.column(col.name)
        where = f" AFTER {q(previous)}" if previous else " FIRST"
        if other is None:
            clauses.append(f"ADD COLUMN {column_ddl(col)}{where}")
        elif lossless_problem(col, other):
            clauses.append(f"MODIFY COLUMN {column_ddl(col, column_type=_widest(col, other))}")
        previous = col.name
    return [f"ALTER TABLE {q(archive.name)} " + ", ".join(clauses)] if clauses else []


def _widest(live: Column, arch: Column) -> str:
    if live.data_type in ("enum", "set") and arch.data_type == live.data_type:
        values = live.enum_values + [v for v in arch.enum_values if v not in live.enum_values]
        quoted = ",".join("'" + v.replace("'", "''") + "'" for v in values)
        return f"{live.data_type}({quoted})"
    if (
        live.data_type in INT_RANK
        and INT_RANK.get(arch.data_type, 0) > INT_RANK[live.data_type]
        and arch.unsigned == live.unsigned
    ):
        # Only the padding differs: keep the archive's wider type, pad as the live column does.
        return re.sub(r"^[a-z]+", arch.data_type, live.column_type.lower())
    same_kind = (live.data_type == "char") == (arch.data_type == "char")
    both_strings = live.data_type in STRING_TYPES and arch.data_type in STRING_TYPES
    if both_strings and same_kind and (arch.char_len or 0) > (live.char_len or 0):
        return arch.column_type
    return live.column_type


def stock_schema_sql(engine: str) -> list[str]:
    """The stock VICIdial tables used by demo, tests and benchmarks."""
    text = resources.files("archiver").joinpath("sql/vicidial_schema.sql").read_text("utf-8")
    body = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
    return [s.strip().replace("{engine}", engine) for s in body.split(";") if s.strip()]


def triggers_print(table: Table, event: str) -> str:
    """The table's triggers for `event` as `<count>/<xor>` of the first 60 bits of SHA-256 over
    each one's name, timing and body, computed the same way by `steps.ChunkSql.untriggered`
    from information_schema inside a statement."""
    acc, count = 0, 0
    for trig in table.triggers:
        if trig.event == event:
            # CONCAT_WS on the server leaves a NULL body (unreadable to this account) out.
            line = "\t".join(p for p in (trig.name, trig.timing, trig.body) if p is not None)
            acc ^= int(hashlib.sha256(line.encode("utf-8")).hexdigest()[:15], 16)
            count += 1
    return f"{count}/{acc}"


def fingerprint(table: Table) -> str:
    """The table's columns as a short order-independent digest: `<count>/<xor>` of the first
    60 bits of SHA-256 over each column's name, type, character set and collation, computed
    the same way by `steps.ChunkSql.schema_guard` from information_schema inside a statement."""
    acc = 0
    for col in table.columns:
        line = "\t".join((col.name, col.column_type, col.charset or "", col.collation or ""))
        acc ^= int(hashlib.sha256(line.encode("utf-8")).hexdigest()[:15], 16)
    return f"{len(table.columns)}/{acc}"


def describe_change(before: Table, now: Table | None) -> str:
    """What changed in a table's columns since `before` was reflected, in a few words."""
    if now is None:
        return "the table is gone"
    old = {c.name.lower(): c for c in before.columns}
    new = {c.name.lower(): c for c in now.columns}
    parts = [f"column {new[k].name} added" for k in new if k not in old]
    parts += [f"column {old[k].name} dropped" for k in old if k not in new]
    for k in old.keys() & new.keys():
        a, b = old[k], new[k]
        if (a.column_type, a.charset, a.collation) != (b.column_type, b.charset, b.collation):
            parts.append(f"column {b.name} changed from {a.column_type} to {b.column_type}")
    return ", ".join(sorted(parts)) or "its columns changed"
