"""What a job works on: explicit ids (arguments, a file, an API request body) or criteria.

Criteria are walked by primary-key keyset in bounded id windows
(`lead_id > :after AND lead_id <= :upto … ORDER BY lead_id LIMIT n`): never OFFSET, never the
whole id set in memory, and never one long scan that would hold a MyISAM read lock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from archiver.config import parse_before
from archiver.db import Db, q
from archiver.errors import BadInput
from archiver.idlist import MAX_LEAD_ID as MAX_LEAD_ID  # re-exported
from archiver.idlist import IdSet, IdSource
from archiver.logging import get_logger
from archiver.request import parse_named
from archiver.where import check as check_where


@dataclass(frozen=True)
class Request:
    """The Lead Archive API body: the three step booleans and the ids."""

    insert: bool
    update: bool
    delete: bool
    lead_ids: tuple[int, ...]


def parse_request(text: str, name: str, limit: int) -> Request:
    """The Lead Archive API body, by the one parser `serve` uses (archiver.request)."""
    req = parse_named(text.encode("utf-8"), name, limit)
    flags = req.flags
    return Request(flags.insert, flags.update, flags.delete, req.lead_ids)


def check_limit(ids: Sequence[int], limit: int, source: str) -> None:
    if len(set(ids)) > limit:
        raise BadInput(
            f"{source} gives {len(set(ids))} lead ids, more than the Lead Archive API's limit of "
            f"{limit}; split the request, raise archive.id_limit in the config, or give the ids "
            "with --ids-file, which takes any number"
        )


def validate_where(where: str) -> str:
    """A raw `--where` may be one condition that only reads (the rules: `archiver.where`)."""
    return check_where(where)


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
                resolved[key] = parse_before(raw, flag, now).strftime("%Y-%m-%d %H:%M:%S")
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
        columns = {
            "entry_before": "entry_date",
            "last_call_before": "last_local_call_time",
            "modified_before": "modify_date",
        }
        for key, column in columns.items():
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


def check_scope(db: Db, criteria: Criteria | None) -> list[str]:
    """Refuse criteria that name nothing; warn about list ids with no row in vicidial_lists.

    A campaign is its lists, so a campaign without a list (a typo, most likely) selects no lead
    ever: bad input, named along with the campaigns that exist. A list id without a row stays
    allowed, since leads of a deleted list are real; the warning is logged here, once, and
    returned for the caller's summary. Reads only, before anything is written."""
    if criteria is None or not (criteria.campaigns or criteria.list_ids):
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
    names = ", ".join(map(str, missing))
    if len(missing) == 1:
        msg = f"list {names} has no row in {LISTS_TABLE} (a deleted list?); its leads"
    else:
        msg = f"lists {names} have no row in {LISTS_TABLE} (deleted lists?); their leads"
    msg += " are selected all the same"
    get_logger().warning("unknown_list", list_ids=missing, warning=msg)
    return [msg]


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
    cs = column_charset(db, LISTS_TABLE, "campaign_id")
    charset = cs[0] if cs else None
    missing = [
        c
        for c in campaigns
        if not holds(charset, c)
        or not db.rows(f"SELECT 1 FROM {q(LISTS_TABLE)} WHERE `campaign_id` = :c LIMIT 1", {"c": c})
    ]
    if not missing:
        return
    if len(missing) == 1:
        head = f"campaign {missing[0]} has no list in {LISTS_TABLE}, so it selects no lead"
    else:
        head = (
            f"campaigns {', '.join(missing)} have no list in {LISTS_TABLE}, so they select no lead"
        )
    known = "campaign_id IS NOT NULL AND campaign_id <> ''"
    total = int(
        db.scalar(f"SELECT COUNT(DISTINCT `campaign_id`) FROM {q(LISTS_TABLE)} WHERE {known}")
    )
    shown = [
        str(r[0])
        for r in db.rows(
            f"SELECT DISTINCT `campaign_id` FROM {q(LISTS_TABLE)} WHERE {known}"
            " ORDER BY `campaign_id` LIMIT :n",
            {"n": CAMPAIGNS_SHOWN},
        )
    ]
    if not shown:
        raise BadInput(f"{head}; {LISTS_TABLE} names no campaign at all")
    if total > len(shown):
        tail = f"campaigns that exist (the first {len(shown)} of {total}): {', '.join(shown)}, …"
    else:
        tail = f"campaigns that exist: {', '.join(shown)}"
    raise BadInput(f"{head}; {tail}")


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
