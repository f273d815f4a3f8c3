"""What a job works on: explicit ids (arguments, a file, an API request body) or criteria.

Criteria are walked by primary-key keyset in bounded id windows
(`lead_id > :after AND lead_id <= :upto … ORDER BY lead_id LIMIT n`): never OFFSET, never the
whole id set in memory, and never one long scan that would hold a MyISAM read lock.
"""

from __future__ import annotations

import calendar
import difflib
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from archiver.db import Db, q
from archiver.errors import BadInput
from archiver.idlist import MAX_LEAD_ID as MAX_LEAD_ID  # re-exported
from archiver.idlist import IdSet, IdSource
from archiver.logging import get_logger
from archiver.where import check as check_where


def validate_where(where: str) -> str:
    """A raw `--where` may be one condition that only reads (the rules: `archiver.where`)."""
    return check_where(where)


# --- cut-offs: dates and ages -----------------------------------------------------------------

# Units that cannot be misread: `m` (minutes? months?) is refused, and so are minutes and
# seconds, which no lead's age is counted in.
_AGE_UNITS = {
    "h": "hours",
    "hour": "hours",
    "hours": "hours",
    "d": "days",
    "day": "days",
    "days": "days",
    "w": "weeks",
    "week": "weeks",
    "weeks": "weeks",
    "mo": "months",
    "month": "months",
    "months": "months",
    "y": "years",
    "year": "years",
    "years": "years",
}
_TOO_SMALL = ("s", "sec", "secs", "second", "seconds", "min", "mins", "minute", "minutes")
_AGE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]+)\s*")  # not \d: '２d'
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_WORDS = ("today", "yesterday")
MAX_AGE_YEARS = 100
DATE_HINT = (
    "expected a date (2024-01-31, today, yesterday), a datetime (2024-01-31 18:00) or an age "
    "(90d, 12w, 6mo, 1y, 12h)"
)


def is_relative(text: str) -> bool:
    """Whether a cut-off is an age or a word, resolved against the clock (shown beside the
    date it resolved to)."""
    return text.strip().lower() in _WORDS or _AGE.fullmatch(text) is not None


def parse_cutoff(text: str, what: str, now: datetime) -> datetime:
    """A cut-off, naive, in the clock `now` is read on: an ISO date (midnight) or datetime,
    `today` or `yesterday` (midnight), or an age back from `now` in h, d, w, mo or y (or
    the words: hours, days, weeks, months, years; months and years by the calendar)."""
    word = text.strip().lower()
    if word in _WORDS:
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return midnight - timedelta(days=1 if word == "yesterday" else 0)
    m = _AGE.fullmatch(text)
    if m:
        return _age_back(now, m.group(1), m.group(2).lower(), text, what)
    try:
        if _DAY.fullmatch(text.strip()):
            d = datetime.strptime(text.strip(), "%Y-%m-%d")
            return d
        return datetime.fromisoformat(text.strip()).replace(tzinfo=None)
    except ValueError:
        raise BadInput(f"{what}: {DATE_HINT}, got {text!r}") from None


def _age_back(now: datetime, number: str, unit: str, text: str, what: str) -> datetime:
    if unit == "m":
        raise BadInput(
            f"{what}: {text!r} could mean minutes or months; write {number}mo for months "
            "(ages are given in h, d, w, mo or y)"
        )
    if unit in _TOO_SMALL:
        raise BadInput(
            f"{what}: {text!r} is an age in {'seconds' if unit.startswith('s') else 'minutes'}; "
            "give it in h, d, w, mo or y (e.g. 12h, 90d, 12w, 6mo, 1y)"
        )
    kind = _AGE_UNITS.get(unit)
    if kind is None:
        raise BadInput(f"{what}: {DATE_HINT}, got {text!r}")
    value = float(number)
    years = value * {"hours": 1 / 8766, "days": 1 / 365.25, "weeks": 7 / 365.25}.get(kind, 0)
    if kind in ("months", "years"):
        if value != int(value):
            raise BadInput(f"{what}: {text!r}: months and years are whole numbers (18mo, 1y)")
        years = value / 12 if kind == "months" else value
    if years > MAX_AGE_YEARS:
        raise BadInput(f"{what}: {text!r} is too long (at most {MAX_AGE_YEARS} years)")
    if kind in ("months", "years"):
        months = int(value) * (12 if kind == "years" else 1)
        total = now.year * 12 + now.month - 1 - months
        year, month = divmod(total, 12)
        if year < 1:
            raise BadInput(f"{what}: the age {text!r} is too large")
        day = min(now.day, calendar.monthrange(year, month + 1)[1])
        back = now.replace(year=year, month=month + 1, day=day)
    else:
        hours = value * {"hours": 1, "days": 24, "weeks": 168}[kind]
        try:
            back = now - timedelta(hours=hours)
        except OverflowError:  # an age that reaches back before year 1
            raise BadInput(f"{what}: the age {text!r} is too large") from None
    return back.replace(microsecond=0)


CUTOFF_COLUMNS = {
    "entry_before": "entry_date",
    "last_call_before": "last_local_call_time",
    "modified_before": "modify_date",
}


@dataclass(frozen=True)
class Cutoff:
    """One resolved cut-off as shown: the server's wall-clock time and its UTC offset."""

    key: str
    raw: str
    local: str  # 'YYYY-MM-DD HH:MM:SS', as bound in the SQL
    offset_s: int

    @property
    def zone(self) -> str:
        if self.offset_s == 0:
            return "UTC"
        sign = "-" if self.offset_s < 0 else "+"
        hours, rest = divmod(abs(self.offset_s), 3600)
        return f"{sign}{hours:02d}:{rest // 60:02d}"

    @property
    def iso(self) -> str:
        """ISO-8601 with its offset (JSON)."""
        zone = "+00:00" if self.offset_s == 0 else self.zone
        return self.local.replace(" ", "T") + zone

    @property
    def line(self) -> str:
        """`last_call_before: 2026-06-05 07:56:00 UTC (6mo)` (human output)."""
        given = f" ({self.raw.strip()})" if is_relative(self.raw) else ""
        return f"{self.key}: {self.local} {self.zone}{given}"


def cutoffs(db: Db, criteria: Criteria | None) -> list[Cutoff]:
    """The resolved cut-offs of `criteria`, each with the UTC offset of the server's time zone
    at that date (a date in summer and one in winter may differ)."""
    if criteria is None:
        return []
    out = []
    for key in CUTOFF_COLUMNS:
        local = criteria.resolved.get(key)
        if not local:
            continue
        offset = db.scalar(
            "SELECT COALESCE(TIMESTAMPDIFF(SECOND, CONVERT_TZ(:t, @@global.time_zone, '+00:00'),"
            " :t), TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(),"
            " CONVERT_TZ(UTC_TIMESTAMP(), '+00:00', @@global.time_zone)))",
            {"t": local},
        )
        out.append(Cutoff(key, getattr(criteria, key), local, int(offset or 0)))
    return out


COUNT_SPAN = 20000  # rows per statement: as the walker's window


def count_selected(db: Db, selection: Selection, table: str) -> int:
    """How many leads of `table` the selection holds now. Read in bounded statements (at most
    COUNT_SPAN rows each, by primary-key keyset, or 1000 explicit ids), so that no one
    statement holds a MyISAM read lock over the whole table."""
    src = q(table)
    if selection.ids is not None:
        total, after = 0, 0
        while batch := selection.ids.after(after, 1000):
            total += int(
                db.scalar(f"SELECT COUNT(*) FROM {src} WHERE `lead_id` IN :ids", {"ids": batch})
            )
            after = batch[-1]
        return total
    assert selection.criteria is not None
    cond, params = selection.criteria.sql()
    where = f" AND ({cond})" if cond else ""
    total, after = 0, 0
    while True:
        upto = db.scalar(
            f"SELECT MAX(`lead_id`) FROM (SELECT `lead_id` FROM {src} WHERE `lead_id` > :after"
            " ORDER BY `lead_id` LIMIT :n) AS w",
            {"after": after, "n": COUNT_SPAN},
        )
        if upto is None:
            return total
        total += int(
            db.scalar(
                # The primary key, whatever the criteria: an index on status or list_id would
                # be read whole for each window.
                f"SELECT COUNT(*) FROM {src} AS s FORCE INDEX (PRIMARY) WHERE s.`lead_id` > :after"
                f" AND s.`lead_id` <= :upto{where}",
                {"after": after, "upto": int(upto), **params},
            )
        )
        after = int(upto)


@dataclass(frozen=True)
class Criteria:
    """Criteria as given (raw, for the job identity) and resolved (for the SQL)."""

    list_ids: tuple[int, ...] = ()
    campaigns: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    entry_before: str = ""
    last_call_before: str = ""
    modified_before: str = ""
    where: str = ""
    resolved: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def empty(self) -> bool:
        return not any(
            (
                self.list_ids,
                self.campaigns,
                self.statuses,
                self.entry_before,
                self.last_call_before,
                self.modified_before,
                self.where,
            )
        )

    def canonical(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("resolved")
        d["list_ids"] = sorted(set(self.list_ids))
        d["campaigns"] = sorted(set(self.campaigns))
        d["statuses"] = sorted(set(self.statuses))
        return {k: v for k, v in d.items() if v}

    def with_resolved(self, resolved: dict[str, str]) -> Criteria:
        return Criteria(**{**self.__dict__, "resolved": dict(resolved)})

    def resolve(self, now: datetime | None = None) -> Criteria:
        resolved = {}
        for key in ("entry_before", "last_call_before", "modified_before"):
            raw = getattr(self, key)
            if raw:
                flag = "--" + key.replace("_", "-")
                when = parse_cutoff(raw, flag, now or datetime.now(UTC).replace(tzinfo=None))
                resolved[key] = when.strftime("%Y-%m-%d %H:%M:%S")
        if self.where:
            validate_where(self.where)
        return Criteria(**{**self.__dict__, "resolved": resolved})

    def sql(self) -> tuple[str, dict[str, Any]]:
        """A condition over the source table's own columns, with bound parameters."""
        parts: list[str] = []
        params: dict[str, Any] = {}
        if self.list_ids:
            parts.append("`list_id` IN :c_list_ids")
            params["c_list_ids"] = sorted(set(self.list_ids))
        if self.campaigns:
            parts.append(
                "`list_id` IN (SELECT `list_id` FROM `vicidial_lists` WHERE `campaign_id` IN "
                ":c_campaigns)"
            )
            params["c_campaigns"] = sorted(set(self.campaigns))
        if self.statuses:
            parts.append("`status` IN :c_statuses")
            params["c_statuses"] = sorted(set(self.statuses))
        for key, column in CUTOFF_COLUMNS.items():
            if key in self.resolved:
                # NULL never matches a date criterion, as in VICIdial. Cut-offs are the server's
                # wall-clock time; modify_date is a TIMESTAMP, read in this session's UTC.
                value = f":c_{key}"
                if column == "modify_date":
                    value = f"CONVERT_TZ({value}, @@global.time_zone, '+00:00')"
                parts.append(f"{q(column)} < {value}")
                params[f"c_{key}"] = self.resolved[key]
        if self.where:
            # Escape ':' so SQLAlchemy's text() does not read `'%:x%'` as a bind parameter.
            parts.append("(" + self.where.replace(":", "\\:") + ")")
        return " AND ".join(parts), params


LISTS_TABLE = "vicidial_lists"
CAMPAIGNS_SHOWN = 20


def check_scope(db: Db, criteria: Criteria | None, tables: Sequence[str] = ()) -> list[str]:
    """Refuse criteria that name nothing; warn about list ids with no row in vicidial_lists.

    A campaign is its lists, so a campaign without a list (a typo, most likely) selects no lead
    ever: bad input, named along with the closest campaigns that exist. With `tables` (the lead
    tables, live and archive: a status whose every lead is archived is still a status), a
    status or list id found nowhere is bad input too: in no lead of those tables (one indexed
    probe per value, never a scan), nor in vicidial_statuses / vicidial_campaign_statuses, nor
    in vicidial_lists. A list
    id without a row that still has leads stays allowed, since leads of a deleted list are
    real; the warning is logged here, once, and returned for the caller's summary. Reads only,
    before anything is written."""
    if criteria is None:
        return []
    if criteria.statuses and tables:
        _check_statuses(db, sorted(set(criteria.statuses)), tables)
    if not (criteria.campaigns or criteria.list_ids):
        return []
    has_lists = _has_table(db, LISTS_TABLE)
    if criteria.campaigns:
        if not has_lists:
            raise BadInput(
                f"--campaign needs the table {LISTS_TABLE}, which does not exist in this "
                "database; select by --list-id instead, or check --dsn"
            )
        _check_campaigns(db, sorted(set(criteria.campaigns)))
    if not criteria.list_ids:
        return []
    wanted = sorted(set(criteria.list_ids))
    found = set()
    if has_lists:
        rows = db.rows(
            f"SELECT `list_id` FROM {q(LISTS_TABLE)} WHERE `list_id` IN :l", {"l": wanted}
        )
        found = {int(r[0]) for r in rows}
    missing = [lid for lid in wanted if lid not in found]
    if not missing:
        return []
    if tables:
        _check_lists(db, missing, tables, has_lists)
    names = ", ".join(map(str, missing))
    if len(missing) == 1:
        msg = f"list {names} has no row in {LISTS_TABLE} (a deleted list?); its leads"
    else:
        msg = f"lists {names} have no row in {LISTS_TABLE} (deleted lists?); their leads"
    msg += " are selected all the same"
    get_logger().warning("unknown_list", list_ids=missing, warning=msg)
    return [msg]


STATUS_TABLES = ("vicidial_statuses", "vicidial_campaign_statuses")
KNOWN_READ = 1000  # known values read per table to find the closest ones


def _check_statuses(db: Db, statuses: list[str], tables: Sequence[str]) -> None:
    status_tables = [t for t in STATUS_TABLES if _has_table(db, t)]
    where_known = (*status_tables, *tables)
    missing = [s for s in statuses if not any(_probe(db, t, "status", s) for t in where_known)]
    if not missing:
        return
    known: list[str] = []
    for table in where_known:
        known += _known(db, table, "status")
    where = " or ".join(tables)
    named = f", nor named in {' or '.join(status_tables)}" if status_tables else ""
    if len(missing) == 1:
        head = f"status {missing[0]} is held by no lead of {where}{named}, so it selects no lead"
    else:
        head = (
            f"statuses {', '.join(missing)} are held by no lead of {where}{named}, so they "
            "select no lead"
        )
    raise BadInput(f"{head}; {_known_tail('statuses', missing, known, len(set(known)))}")


def _check_lists(db: Db, missing: list[int], tables: Sequence[str], has_lists: bool) -> None:
    nowhere = [lid for lid in missing if not any(_probe(db, t, "list_id", lid) for t in tables)]
    if not nowhere:
        return
    known: list[str] = []
    for table in ((LISTS_TABLE,) if has_lists else ()) + tuple(tables):
        known += _known(db, table, "list_id")
    names = ", ".join(map(str, nowhere))
    where = f"no row in {LISTS_TABLE} and " if has_lists else ""
    if len(nowhere) == 1:
        head = f"list {names} has {where}no lead in {' or '.join(tables)}, so it selects no lead"
    else:
        head = f"lists {names} have {where}no lead in {' or '.join(tables)}, so they select no lead"
    tail = _known_tail("lists", [str(n) for n in nowhere], known, len(set(known)))
    raise BadInput(f"{head}; {tail}")


def _probe(db: Db, table: str, column: str, value: str | int) -> bool:
    """Whether a row of `table` has `value` in `column`, compared as the column's collation
    does; one indexed lookup when the column has an index. A value the column's character set
    cannot hold equals none of its values."""
    if isinstance(value, str):
        cs = column_charset(db, table, column)
        if not holds(cs[0] if cs else None, value):
            return False
    found = db.rows(f"SELECT 1 FROM {q(table)} WHERE {q(column)} = :v LIMIT 1", {"v": value})
    return bool(found)


def _known(db: Db, table: str, column: str, *, need_index: bool = True) -> list[str]:
    """Up to KNOWN_READ distinct values of a column, read only where an index starts with it
    (a loose index scan: one seek per value); a lead table without one is not read at all."""
    indexed = not need_index or db.scalar(
        "SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE()"
        " AND TABLE_NAME = :t AND COLUMN_NAME = :c AND SEQ_IN_INDEX = 1",
        {"t": table, "c": column},
    )
    if not indexed:
        return []
    rows = db.rows(
        f"SELECT DISTINCT {q(column)} FROM {q(table)} WHERE {q(column)} IS NOT NULL"
        f" ORDER BY {q(column)} LIMIT :n",
        {"n": KNOWN_READ},
    )
    return [str(r[0]) for r in rows if str(r[0]) != ""]


def _known_tail(plural: str, missing: Sequence[str], known: Sequence[str], total: int) -> str:
    """The values to name after a refusal: those closest to what was given, else the first
    CAMPAIGNS_SHOWN that exist."""
    by_upper: dict[str, str] = {}
    for value in known:
        by_upper.setdefault(value.upper(), value)
    close: list[str] = []
    for value in missing:
        for match in difflib.get_close_matches(value.upper(), list(by_upper), n=5, cutoff=0.6):
            if by_upper[match] not in close:
                close.append(by_upper[match])
    if close:
        return f"closest known {plural}: {', '.join(close)}"
    shown = sorted(by_upper.values(), key=lambda v: (len(v) if v.isdigit() else 0, v))
    shown = shown[:CAMPAIGNS_SHOWN]
    if not shown:
        return f"no {plural} known at all"
    if total > len(shown):
        return f"{plural} that exist (the first {len(shown)} of {total}): {', '.join(shown)}, …"
    return f"{plural} that exist: {', '.join(shown)}"


def column_charset(db: Db, table: str, column: str) -> tuple[str, str] | None:
    """(character set, collation) of a text column of this database's table; None when the
    column is missing or not text."""
    rows = db.rows(
        "SELECT CHARACTER_SET_NAME, COLLATION_NAME FROM information_schema.COLUMNS"
        " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t AND COLUMN_NAME = :c",
        {"t": table, "c": column},
    )
    if not rows or rows[0][0] is None or rows[0][1] is None:
        return None
    return str(rows[0][0]), str(rows[0][1])


def holds(charset: str | None, text: str) -> bool:
    """Whether a column of `charset` can hold `text`. One that cannot (an emoji in a utf8mb3
    column) equals no value of the column, and is never sent to compare with it: the server
    would refuse the comparison (1267/1270 illegal mix of collations)."""
    cs = (charset or "").lower()
    if cs in ("utf8", "utf8mb3"):
        return all(ord(ch) <= 0xFFFF for ch in text)
    if cs == "ascii":
        return text.isascii()
    if cs in ("latin1", "cp1252"):
        try:
            text.encode("cp1252")
        except UnicodeEncodeError:
            return False
    return True


def _check_campaigns(db: Db, campaigns: list[str]) -> None:
    # One lookup per campaign (a handful at most), each under the column's own collation: the
    # equality the selection's `campaign_id IN (…)` uses. A campaign the column cannot hold
    # names no list.
    missing = [c for c in campaigns if not _probe(db, LISTS_TABLE, "campaign_id", c)]
    if not missing:
        return
    if len(missing) == 1:
        head = f"campaign {missing[0]} has no list in {LISTS_TABLE}, so it selects no lead"
    else:
        head = (
            f"campaigns {', '.join(missing)} have no list in {LISTS_TABLE}, so they select no lead"
        )
    known = _known(db, LISTS_TABLE, "campaign_id", need_index=False)
    if not known:
        raise BadInput(f"{head}; {LISTS_TABLE} names no campaign at all")
    raise BadInput(f"{head}; {_known_tail('campaigns', missing, known, len(set(known)))}")


def _has_table(db: Db, table: str) -> bool:
    return bool(
        db.scalar(
            "SELECT COUNT(*) FROM information_schema.TABLES"
            " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t",
            {"t": table},
        )
    )


@dataclass(frozen=True)
class Selection:
    """Explicit ids (sorted, unique) or criteria; exactly one of them."""

    ids: IdSource | None = None
    criteria: Criteria | None = None

    @staticmethod
    def from_ids(ids: Iterable[int]) -> Selection:
        return Selection(ids=IdSet.from_ints(ids))

    def canonical(self) -> dict[str, Any]:
        if self.ids is not None:
            return {"ids_count": self.ids.count, "ids_hash": self.ids.digest}
        assert self.criteria is not None
        return {"criteria": self.criteria.canonical()}


class JobIds:
    """The ids of a job, staged in archiver_job_ids: read by keyset on the primary key, so a
    resumed job needs neither the original input nor memory for the whole list."""

    def __init__(self, db: Db, job_id: int, count: int, digest: str) -> None:
        self.db = db
        self.job_id = job_id
        self.count = count
        self.digest = digest

    def after(self, after: int, n: int) -> list[int]:
        rows = self.db.rows(
            "SELECT lead_id FROM archiver_job_ids WHERE job_id = :j AND lead_id > :a"
            " ORDER BY lead_id LIMIT :n",
            {"j": self.job_id, "a": after, "n": n},
        )
        return [int(r[0]) for r in rows]

    def through(self, after: int, upto: int) -> list[int]:
        rows = self.db.rows(
            "SELECT lead_id FROM archiver_job_ids WHERE job_id = :j AND lead_id > :a"
            " AND lead_id <= :u ORDER BY lead_id",
            {"j": self.job_id, "a": after, "u": upto},
        )
        return [int(r[0]) for r in rows]

    def batches(self, n: int) -> Iterator[list[int]]:
        after = 0
        while chunk := self.after(after, n):
            yield chunk
            after = chunk[-1]

    def bounds(self) -> tuple[int, int]:
        row = self.db.rows(
            "SELECT MIN(lead_id), MAX(lead_id) FROM archiver_job_ids WHERE job_id = :j",
            {"j": self.job_id},
        )[0]
        return int(row[0] or 0), int(row[1] or 0)


class Walker:
    """Yields the next chunk after a cursor, in ascending lead_id order.

    `select` turns a WHERE clause over the source table aliased `s` into the statement that
    reads the chunk (by default its ids alone); the runner passes one that reads, in the same
    statement, each row's state in the target and its live-lead guards, and locks the rows on
    InnoDB."""

    def __init__(self, db: Db, selection: Selection, src_table: str, span: int = 20000) -> None:
        self.db = db
        self.selection = selection
        self.src = q(src_table)
        self.span = span
        self.max_id: int | None = None
        self.more = True
        if selection.criteria is not None:
            self.cond, self.params = selection.criteria.sql()
        else:
            self.cond, self.params = "", {}

    def bounds(self) -> tuple[int, int]:
        """The id range a progress estimate can use: (first, last)."""
        if self.selection.ids is not None:
            return self.selection.ids.bounds()
        row = self.db.rows(f"SELECT MIN(`lead_id`), MAX(`lead_id`) FROM {self.src}")[0]
        return int(row[0] or 0), int(row[1] or 0)

    def ids_select(self, where: str) -> str:
        return f"SELECT s.`lead_id` FROM {self.src} AS s WHERE {where}"

    def next_chunk(self, after: int, size: int) -> tuple[list[int], int]:
        """(ids, new cursor). An empty id list means the walk is over."""
        if self.selection.ids is not None:
            chunk = self._ids_after(after, size)
            return chunk, (chunk[-1] if chunk else after)
        rows, cursor = self._walk(after, size, self.ids_select)
        return [int(r[0]) for r in rows], cursor

    def next_rows(
        self, after: int, size: int, select: Callable[[str], str]
    ) -> tuple[list[int], list[tuple[Any, ...]], int]:
        """(the chunk's ids, the rows `select` read for them, new cursor). With explicit ids,
        the chunk holds ids `select` found no row for; with criteria it is the rows' ids."""
        if self.selection.ids is not None:
            chunk = self._ids_after(after, size)
            if not chunk:
                return [], [], after
            return chunk, self.db.rows(select("s.`lead_id` IN :ids"), {"ids": chunk}), chunk[-1]
        rows, cursor = self._walk(after, size, select)
        return [int(r[0]) for r in rows], rows, cursor

    def rows_through(
        self, after: int, upto: int, select: Callable[[str], str], limit: int
    ) -> tuple[list[int], list[tuple[Any, ...]]]:
        """The first `limit` ids the selection holds in (after, upto], with the rows `select`
        read for them: the redo of a chunk cut part-way. The walk goes on after them."""
        self.more = True
        if self.selection.ids is not None:
            chunk = [i for i in self.selection.ids.after(after, limit) if i <= upto]
            if not chunk:
                return [], []
            return chunk, self.db.rows(select("s.`lead_id` IN :ids"), {"ids": chunk})
        where = f" AND ({self.cond})" if self.cond else ""
        rows = self.db.rows(
            select(
                f"s.`lead_id` > :after AND s.`lead_id` <= :upto{where}"
                " ORDER BY s.`lead_id` LIMIT :n"
            ),
            {"after": after, "upto": upto, "n": limit, **self.params},
        )
        return [int(r[0]) for r in rows], rows

    def _ids_after(self, after: int, size: int) -> list[int]:
        assert self.selection.ids is not None
        # One id past the chunk tells whether the walk goes on, without another statement.
        chunk = self.selection.ids.after(after, size + 1)
        self.more = len(chunk) > size
        return chunk[:size]

    def exhausted(self) -> bool:
        """True when the last chunk read was the walk's last: the walk reads one row past a
        chunk, so it knows without another statement (and a throttle does not sleep for
        nothing after the last chunk)."""
        return not self.more

    def _walk(
        self, after: int, size: int, select: Callable[[str], str]
    ) -> tuple[list[tuple[Any, ...]], int]:
        if self.max_id is None:
            self.max_id = self.bounds()[1]
        found: list[tuple[Any, ...]] = []
        cursor = after
        where = f" AND ({self.cond})" if self.cond else ""
        while len(found) <= size and cursor < self.max_id:
            upto = min(cursor + self.span, self.max_id)
            rows = self.db.rows(
                select(
                    f"s.`lead_id` > :after AND s.`lead_id` <= :upto{where}"
                    " ORDER BY s.`lead_id` LIMIT :n"
                ),
                {"after": cursor, "upto": upto, "n": size + 1 - len(found), **self.params},
            )
            found.extend(rows)
            cursor = upto
            if not rows and cursor < self.max_id:
                # Jump an empty window to just before the next id (one primary-key lookup):
                # sparse ids, e.g. leads near 4294967295, would cost one query per window.
                nxt = self.db.scalar(
                    f"SELECT MIN(`lead_id`) FROM {self.src} WHERE `lead_id` > :upto", {"upto": upto}
                )
                cursor = self.max_id if nxt is None else max(cursor, int(nxt) - 1)
        self.more = len(found) > size
        if self.more:
            found = found[:size]
            cursor = int(found[-1][0])
        return found, cursor
