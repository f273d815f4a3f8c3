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
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

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


def search_sql(table: str, count: int, column: str = "phone_number", scope: str = "") -> str:
    """The statement for `count` distinct keys bound as :n0 … :n{count-1}, and :cap; `scope`
    is a further condition on the table's own columns (search_location)."""
    names = ", ".join(f":n{i}" for i in range(count))
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
    table: str, count: int, column: str, charset: str, collation: str, scope: str = ""
) -> str:
    """The statement for `count` distinct codes bound as :n0 … :n{count-1}, and :cap. Each row
    is joined to every code its column's collation calls equal to it (`CRM9X` and `crm9x`
    both get the lead of `Crm9x`), as VICIdial's `IN (…)` per code would return it: the codes
    are a derived table under the column's own character set and collation."""
    col = q(column)
    extra = f" AND {scope}" if scope else ""
    names = ", ".join(f":n{i}" for i in range(count))
    keys = " UNION ALL ".join(
        f"SELECT {i} AS i, CONVERT(:n{i} USING {charset}) COLLATE {collation} AS k"
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
