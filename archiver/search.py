"""`search`: lead ids by phone number, printed exactly as VICIdial's `lead_search` prints them.

The output lines are VICIdial's (vicidial-facts.md), with two deliberate differences:
- the header line has its separators (`search_key|records_found|lead_ids`); VICIdial's code
  prints `search_keyrecords_foundlead_ids` because its delimiter variable is unset;
- `records` caps the ids of each number; VICIdial applies it as one LIMIT over the whole query,
  so with several numbers its later numbers can come back short or as `|0|`.

One statement per batch of distinct numbers, `phone_number IN (…)` on the phone_number index,
never one statement per number. The number each row belongs to is decided by the server with
`FIELD()` under the column's own collation, so a row matches exactly the numbers VICIdial's
`phone_number IN (…)` would match it with (utf8_unicode_ci: trailing spaces and other scripts'
digits compare equal), and the per-number cap is applied on the server with ROW_NUMBER().

`search_method=VENDOR_LEAD_CODE` is the same lookup over `vendor_lead_code` (no index in the
stock schema: one scan per batch of 500 codes, not one per code), except that two distinct codes
can be equal under the collation (`CRM9X` and `crm9x`, `ünï` and `UNI`, `T1` and `T1 `), which
FIELD() would give only to the first: the codes are a derived table under the column's character
set and collation, joined to the rows with `=`, so each code gets every row equal to it, whatever
batch it is in. A code the column cannot hold (an emoji in utf8mb3) matches nothing and is not
sent. Phone numbers are digits only, so two distinct ones are never equal. `search_location`
(`--list-id`, `--campaign`) one more condition inside it. `ERROR:` lines echo the input as
VICIdial does, after its input filter: phone numbers keep only digits and commas; vendor lead
codes lose `;`, `#` and `"`, and `+` is a space (URL decoding).

The other VICIdial answer, `lead_dearchive`'s line, is `commands.lead_dearchive`: a job like
any other, answered in VICIdial's words.

`locate` is the tool's own search, for a person or a program (`--json`): the same keys,
matched the same way, in both tables (or the archive alone). Each batch of phone numbers is
one statement over both tables (a UNION ALL), so a lead a concurrent run moves between them is
found in one or the other (vendor lead codes, scanned, take one statement per table); then
each batch of lead ids is one statement over both tables that says where the lead is (live,
archived, both) with its list, campaign, status and last call.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from archiver.db import Db, q
from archiver.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, BadInput, SchemaDrift
from archiver.logging import get_logger
from archiver.selection import Criteria, check_scope, column_charset, holds

MIN_DIGITS = 6
MAX_DIGITS = 18
DEFAULT_RECORDS = 1000
BATCH = 500  # distinct numbers per statement: bounds the statement's size, not the ids returned
HEADER = "search_key|records_found|lead_ids"
PHONE_NUMBER = "PHONE_NUMBER"
VENDOR_LEAD_CODE = "VENDOR_LEAD_CODE"
COLUMNS = {PHONE_NUMBER: "phone_number", VENDOR_LEAD_CODE: "vendor_lead_code"}


@dataclass(frozen=True)
class SearchResult:
    """The exact stdout lines and the exit code."""

    lines: list[str]
    exit_code: int


def parse_numbers(text: str) -> list[str]:
    """The numbers to search, in the order given (duplicates kept): every non-digit stripped,
    numbers of 6–18 digits kept, others skipped without a line, as VICIdial does."""
    out = []
    for token in text.split(","):
        digits = re.sub(r"[^0-9]", "", token)
        if MIN_DIGITS <= len(digits) <= MAX_DIGITS:
            out.append(digits)
    return out


def phone_echo(text: str) -> str:
    """The phone_number parameter as VICIdial's input filter leaves it: digits and commas."""
    return re.sub(r"[^0-9,]", "", text)


def clean_codes(text: str) -> str:
    """The vendor_lead_code parameter as VICIdial's input filter leaves it."""
    return re.sub(r'[;#"]', "", text).replace("+", " ")


def parse_codes(text: str) -> list[str]:
    """The codes to search, in the order given (duplicates kept); empty ones skipped."""
    return [code for code in clean_codes(text).split(",") if code]


def no_valid_line(user: str, text: str) -> str:
    echo = phone_echo(text)
    return f"ERROR: lead_search NO VALID SEARCH METHOD - {user}|PHONE_NUMBER|(0)|(0)|{echo}(0)"


def no_match_line(user: str, text: str, method: str = PHONE_NUMBER) -> str:
    if method == VENDOR_LEAD_CODE:
        return f"ERROR: lead_search NO MATCHES FOUND IN THE SYSTEM: |{user}||{clean_codes(text)}|"
    return f"ERROR: lead_search NO MATCHES FOUND IN THE SYSTEM: |{user}|||{phone_echo(text)}"


def format_lines(
    numbers: Sequence[str],
    found: dict[str, list[int]],
    *,
    user: str,
    text: str,
    header: bool = False,
    method: str = PHONE_NUMBER,
) -> SearchResult:
    """The lines for keys (numbers or codes) already searched; `found` maps a key to its ids,
    highest first."""
    if not numbers:
        return SearchResult([no_valid_line(user, text)], EXIT_BAD_INPUT)
    if not any(found.get(n) for n in numbers):
        return SearchResult([no_match_line(user, text, method)], EXIT_FAILED)
    lines = [HEADER] if header else []
    for number in numbers:
        ids = found.get(number, [])
        lines.append(f"{number}|{len(ids)}|{'-'.join(map(str, ids))}")
    return SearchResult(lines, EXIT_OK)


def search_sql(
    table: str, count: int, column: str = "phone_number", scope: str = "", prefix: str = "n"
) -> str:
    """The statement for `count` distinct keys bound as :n0 … :n{count-1}, and :cap; `scope`
    is a further condition on the table's own columns (search_location)."""
    names = ", ".join(f":{prefix}{i}" for i in range(count))
    col = q(column)
    extra = f" AND {scope}" if scope else ""
    return (
        f"SELECT FIELD(m.{col}, {names}) AS k, m.`lead_id`\n"
        f"FROM (SELECT {col}, `lead_id`, ROW_NUMBER() OVER"
        f" (PARTITION BY {col} ORDER BY `lead_id` DESC) AS rn\n"
        f"      FROM {q(table)} WHERE {col} IN ({names}){extra}) AS m\n"
        f"WHERE m.rn <= :cap\n"
        f"ORDER BY k, m.`lead_id` DESC"
    )


def codes_sql(
    table: str,
    count: int,
    column: str,
    charset: str,
    collation: str,
    scope: str = "",
    prefix: str = "n",
) -> str:
    """The statement for `count` distinct codes bound as :n0 … :n{count-1}, and :cap. Each row
    is joined to every code its column's collation calls equal to it (`CRM9X` and `crm9x`
    both get the lead of `Crm9x`), as VICIdial's `IN (…)` per code would return it: the codes
    are a derived table under the column's own character set and collation."""
    col = q(column)
    extra = f" AND {scope}" if scope else ""
    names = ", ".join(f":{prefix}{i}" for i in range(count))
    keys = " UNION ALL ".join(
        f"SELECT {i} AS i, CONVERT(:{prefix}{i} USING {charset}) COLLATE {collation} AS k"
        for i in range(count)
    )
    return (
        f"SELECT c.i, m.`lead_id`\n"
        f"FROM (SELECT {col}, `lead_id`, ROW_NUMBER() OVER"
        f" (PARTITION BY {col} ORDER BY `lead_id` DESC) AS rn\n"
        f"      FROM {q(table)} WHERE {col} IN ({names}){extra}) AS m\n"
        f"JOIN ({keys}) AS c ON m.{col} = c.k\n"
        f"WHERE m.rn <= :cap\n"
        f"ORDER BY c.i, m.`lead_id` DESC"
    )


def find_ids(
    db: Db,
    table: str,
    numbers: Sequence[str],
    records: int,
    *,
    column: str = "phone_number",
    scope: Criteria | None = None,
) -> dict[str, list[int]]:
    """Each distinct key's lead ids in `table`, highest first, at most `records` each.

    Partitioning by the column groups rows under the column's collation, the same equality
    IN and FIELD use, so each partition is one searched key."""
    cond, scope_params = scope.sql() if scope is not None else ("", {})
    distinct = list(dict.fromkeys(numbers))
    # Phone numbers are ASCII digits: no two distinct ones are equal under any collation, so
    # FIELD() (the first equal key) names the one key of each row. Codes may be equal without
    # being the same text (letter case, accents, trailing spaces): each is joined to its rows.
    cs = column_charset(db, table, column) if column != "phone_number" else None
    if cs is not None:
        if not re.fullmatch(r"\w+", cs[0]) or not re.fullmatch(r"\w+", cs[1]):
            raise SchemaDrift(f"{table}.{column} has an unexpected collation {cs[1]!r}")
        distinct = [n for n in distinct if holds(cs[0], n)]  # the others match nothing
    found: dict[str, list[int]] = {}
    for start in range(0, len(distinct), BATCH):
        batch = distinct[start : start + BATCH]
        params: dict[str, object] = {f"n{i}": n for i, n in enumerate(batch)}
        params["cap"] = records
        params.update(scope_params)
        if cs is not None:
            sql, base = codes_sql(table, len(batch), column, cs[0], cs[1], cond), 0
        else:
            sql, base = search_sql(table, len(batch), column, cond), 1
        for k, lead_id in db.rows(sql, params):
            found.setdefault(batch[int(k) - base], []).append(int(lead_id))
    return found


def table_exists(db: Db, table: str) -> bool:
    return bool(
        db.scalar(
            "SELECT COUNT(*) FROM information_schema.TABLES"
            " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t",
            {"t": table},
        )
    )


def search(
    db: Db,
    table: str,
    text: str,
    *,
    user: str,
    records: int = DEFAULT_RECORDS,
    header: bool = False,
    method: str = PHONE_NUMBER,
    scope: Criteria | None = None,
) -> SearchResult:
    """`lead_search` over `table` (vicidial_list, or the archive for `archived_lead=Y`):
    by phone number or vendor lead code (`method`), in the whole table or only in the list or
    campaign of `scope` (search_location)."""
    if method == VENDOR_LEAD_CODE:
        keys = parse_codes(text)
        if not keys:
            raise BadInput(
                f"--vendor-lead-code {text!r} names no code; give codes separated by commas"
            )
    else:
        keys = parse_numbers(text)
        if not keys:
            return format_lines(keys, {}, user=user, text=text, header=header)
    if records < 1:
        raise BadInput(f"--records must be at least 1, got {records}")
    if not table_exists(db, table):
        raise SchemaDrift(
            f"table {table!r} does not exist in this database; check --dsn "
            "(and `schema init` for the archive)"
        )
    check_scope(db, scope)
    found = find_ids(db, table, keys, records, column=COLUMNS[method], scope=scope)
    result = format_lines(keys, found, user=user, text=text, header=header, method=method)
    get_logger().info(
        "search",
        table=table,
        method=method,
        scope=scope.canonical() if scope is not None else {},
        keys=len(keys),
        matched=sum(1 for n in set(keys) if found.get(n)),
    )
    return result


# --- locate: both tables, where each lead is ------------------------------------------------

LIVE = "live"
ARCHIVED = "archived"
BOTH = "both"
LISTS_TABLE = "vicidial_lists"


@dataclass(frozen=True)
class Lead:
    """One lead found: where it is and what a person asks first about it (the live row's
    values for a lead in both tables)."""

    lead_id: int
    where: str  # live, archived or both
    list_id: int | None  # NOT NULL in VICIdial's schema
    campaign_id: str | None  # None: its list has no row in vicidial_lists
    status: str | None
    last_local_call_time: str | None  # as stored (NULL: None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "lead_id": self.lead_id,
            "where": self.where,
            "list_id": self.list_id,
            "campaign_id": self.campaign_id,
            "status": self.status,
            "last_local_call_time": self.last_local_call_time,
        }


@dataclass(frozen=True)
class Located:
    """The leads of each key (distinct, in the order given), highest lead_id first."""

    column: str  # phone_number or vendor_lead_code
    tables: tuple[str, ...]  # the tables searched
    keys: list[str]
    leads: dict[str, list[Lead]]
    warnings: list[str] = field(default_factory=list)

    @property
    def missing(self) -> list[str]:
        return [k for k in self.keys if not self.leads.get(k)]

    @property
    def exit_code(self) -> int:
        return EXIT_OK if len(self.missing) < len(self.keys) else EXIT_FAILED

    def as_dict(self) -> dict[str, Any]:
        return {
            "search": self.column,
            "tables": list(self.tables),
            "keys": [
                {"key": k, "leads": [lead.as_dict() for lead in self.leads.get(k, [])]}
                for k in self.keys
            ],
            "found": len(self.keys) - len(self.missing),
            "not_found": self.missing,
            "warnings": self.warnings,
        }

    def lines(self) -> list[str]:
        """A table, one lead a line; then the keys not found, the leads in both tables, the
        warnings."""
        rows = [[self.column, "lead_id", "where", "list_id", "campaign", "status", "last_call"]]
        both: list[int] = []
        for key in self.keys:
            for lead in self.leads.get(key, []):
                rows.append(
                    [
                        key,
                        str(lead.lead_id),
                        lead.where,
                        _shown(None if lead.list_id is None else str(lead.list_id)),
                        _shown(lead.campaign_id),
                        _shown(lead.status),
                        _shown(lead.last_local_call_time),
                    ]
                )
                if lead.where == BOTH and lead.lead_id not in both:
                    both.append(lead.lead_id)
        out: list[str] = []
        if len(rows) > 1:
            # `where` as wide as its widest word whatever was found: the columns stay put.
            widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
            widths[2] = max(widths[2], len(ARCHIVED))
            out = [
                "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
            ]
        if self.missing:
            where = " or ".join(self.tables)
            out.append(f"not found in {where}: {', '.join(self.missing)}")
        if both:
            ids = ",".join(map(str, sorted(both)))
            out.append(
                f"in both tables: lead(s) {ids}; `verify {ids}` says whether the two copies "
                "are equal"
            )
        out += [f"warning: {w}" for w in self.warnings]
        return out


def _shown(value: str | None) -> str:
    return "-" if value is None or value == "" else value


def find_in(
    db: Db,
    tables: Sequence[str],
    keys: Sequence[str],
    records: int,
    *,
    column: str = "phone_number",
    scope: Criteria | None = None,
) -> dict[str, list[int]]:
    """Each distinct key's lead ids in any of `tables`, highest first, at most `records`
    each.

    Phone numbers: per batch of keys ONE statement over every table (a UNION ALL of
    `search_sql`, each table with its own bound keys, on the phone_number index), so a lead
    moved from one table to the other while it runs is seen in one of them. Vendor lead codes
    have no index in the stock schema: each table is scanned by a statement of its own (the
    live table first), so on MyISAM the live table's read lock is never held through a scan
    of the archive; a lead a concurrent dearchive moves between the two can be missed."""
    cond, scope_params = scope.sql() if scope is not None else ("", {})
    charsets: list[tuple[str, str] | None] = []
    for table in tables:
        cs = column_charset(db, table, column) if column != "phone_number" else None
        if cs is not None and not (re.fullmatch(r"\w+", cs[0]) and re.fullmatch(r"\w+", cs[1])):
            raise SchemaDrift(f"{table}.{column} has an unexpected collation {cs[1]!r}")
        charsets.append(cs)
    indexed = column == "phone_number"
    groups = [list(range(len(tables)))] if indexed else [[ti] for ti in range(len(tables))]
    distinct = list(dict.fromkeys(keys))
    found: dict[str, set[int]] = {}
    for start in range(0, len(distinct), BATCH):
        batch = distinct[start : start + BATCH]
        for group in groups:
            params: dict[str, object] = {"cap": records, **scope_params}
            parts: list[str] = []
            subsets: dict[int, list[str]] = {}
            for ti in group:
                table, cs = tables[ti], charsets[ti]
                # A key the column cannot hold matches nothing there and is not sent.
                subset = subsets[ti] = [k for k in batch if cs is None or holds(cs[0], k)]
                if not subset:
                    continue
                prefix = f"t{ti}n"
                params.update({f"{prefix}{i}": k for i, k in enumerate(subset)})
                if cs is not None:
                    sql = codes_sql(table, len(subset), column, cs[0], cs[1], cond, prefix)
                else:
                    sql = search_sql(table, len(subset), column, cond, prefix)
                parts.append(f"SELECT {ti} AS t, x.* FROM ({sql}) AS x")
            if not parts:
                continue
            for ti, k, lead_id in db.rows("\nUNION ALL\n".join(parts), params):
                base = 1 if charsets[int(ti)] is None else 0  # FIELD() counts from 1
                found.setdefault(subsets[int(ti)][int(k) - base], set()).add(int(lead_id))
    return {k: sorted(ids, reverse=True)[:records] for k, ids in found.items()}


def details_sql(live: str, archive: str | None, lists: bool) -> str:
    """ONE statement: (where, lead_id, list_id, campaign_id, status, last_local_call_time) of
    each id of :ids in each table, so a lead moved meanwhile is not seen in neither table."""
    parts = []
    for label, table in ((LIVE, live), (ARCHIVED, archive)):
        if table is None:
            continue
        campaign = "CONVERT(l.`campaign_id` USING utf8mb4)" if lists else "NULL"
        join = f" LEFT JOIN {q(LISTS_TABLE)} AS l ON l.`list_id` = s.`list_id`" if lists else ""
        parts.append(
            f"SELECT '{label}', s.`lead_id`, s.`list_id`, {campaign},"
            " CONVERT(s.`status` USING utf8mb4), CAST(s.`last_local_call_time` AS CHAR)\n"
            f"FROM {q(table)} AS s{join}\nWHERE s.`lead_id` IN :ids"
        )
    return "\nUNION ALL\n".join(parts)


def lead_details(db: Db, live: str, archive: str | None, ids: Sequence[int]) -> dict[int, Lead]:
    """Where each lead is and its row's values (the live row's for a lead in both); a lead
    in neither table (deleted meanwhile) is left out."""
    stmt = details_sql(live, archive, table_exists(db, LISTS_TABLE))
    ordered = sorted(set(ids))
    out: dict[int, Lead] = {}
    for start in range(0, len(ordered), BATCH):
        rows: dict[int, dict[str, tuple[Any, ...]]] = {}
        for row in db.rows(stmt, {"ids": ordered[start : start + BATCH]}):
            rows.setdefault(int(row[1]), {})[str(row[0])] = row
        for lead_id, seen in rows.items():
            where = BOTH if len(seen) == 2 else next(iter(seen))
            r = seen.get(LIVE) or seen[ARCHIVED]
            out[lead_id] = Lead(
                lead_id=lead_id,
                where=where,
                list_id=None if r[2] is None else int(r[2]),
                campaign_id=None if r[3] is None else str(r[3]),
                status=None if r[4] is None else str(r[4]),
                last_local_call_time=None if r[5] is None else str(r[5]),
            )
    return out


def locate(
    db: Db,
    live: str,
    archive: str,
    text: str,
    *,
    archived_only: bool = False,
    records: int = DEFAULT_RECORDS,
    method: str = PHONE_NUMBER,
    scope: Criteria | None = None,
) -> Located:
    """The leads of each phone number (or vendor lead code) in both tables, or in the
    archive alone, and where each one is. Without the archive table it searches the live
    table, with a warning; with `archived_only` that is an error."""
    if method == VENDOR_LEAD_CODE:
        keys = parse_codes(text)
        if not keys:
            raise BadInput(
                f"--vendor-lead-code {text!r} names no code; give codes separated by commas"
            )
    else:
        keys = parse_numbers(text)
        if not keys:
            raise BadInput(
                f"no phone number of {MIN_DIGITS} to {MAX_DIGITS} digits in {text!r}; give "
                "phone numbers separated by commas"
            )
    if records < 1:
        raise BadInput(f"--records must be at least 1, got {records}")
    warnings: list[str] = []
    has_archive = table_exists(db, archive)
    for table in (archive, live) if archived_only else (live,):
        if not (has_archive if table == archive else table_exists(db, table)):
            raise SchemaDrift(
                f"table {table!r} does not exist in this database; check --dsn "
                "(and `schema init` for the archive)"
            )
    if not has_archive:
        warnings.append(f"table {archive} does not exist (no `schema init`): searched {live} only")
    warnings += check_scope(db, scope)
    tables = (archive,) if archived_only else (live, archive) if has_archive else (live,)
    column = COLUMNS[method]
    ids = find_in(db, tables, keys, records, column=column, scope=scope)
    details = lead_details(
        db, live, archive if has_archive else None, [i for v in ids.values() for i in v]
    )
    distinct = list(dict.fromkeys(keys))
    leads = {k: [details[i] for i in ids.get(k, []) if i in details] for k in distinct}
    located = Located(column, tables, distinct, leads, warnings)
    get_logger().info(
        "search",
        tables=list(tables),
        method=method,
        scope=scope.canonical() if scope is not None else {},
        keys=len(distinct),
        matched=len(distinct) - len(located.missing),
    )
    return located
