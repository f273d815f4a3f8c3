"""selection: lead ids from arguments, files and API request bodies; criteria → SQL (the raw
--where check: test_where.py). No database."""

from __future__ import annotations

from datetime import datetime

import pytest

from archiver.errors import BadInput
from archiver.idlist import parse_id
from archiver.selection import (
    MAX_LEAD_ID,
    Criteria,
    Cutoff,
    Selection,
    parse_cutoff,
)

RANGE = "lead ids are whole numbers from 1 to 4294967295"

# --- parse_id --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "value"),
    [
        ("1", 1),
        ("42", 42),
        (" 7 ", 7),
        ("\t12\n", 12),
        ("007", 7),
        ("4294967294", 4294967294),
        ("4294967295", MAX_LEAD_ID),
    ],
)
def test_parse_id_accepts_whole_numbers_in_range(token: str, value: int) -> None:
    assert parse_id(token) == value


@pytest.mark.parametrize(
    "token",
    [
        "",
        " ",
        "abc",
        "1a",
        "a1",
        "0",
        "00",
        "-1",
        "-0",
        "+1",
        "1.0",
        "1.5",
        "1e3",
        "0x10",
        "1 2",
        "1,2",
        "4294967296",
        "99999999999999999999999",
        "１２",  # full-width digits: int() takes them, a lead id must not
        "١٢",  # Arabic-Indic digits
        "²",  # superscript two: str.isdigit() is True, int() refuses it
        "1\x00",
    ],
)
def test_parse_id_refuses_anything_else(token: str) -> None:
    with pytest.raises(BadInput) as err:
        parse_id(token)
    assert str(err.value) == f"invalid lead id {token!r}: {RANGE}"


def test_parse_id_names_where_the_id_came_from() -> None:
    with pytest.raises(BadInput, match=r"^invalid lead id on line 3 of ids.txt 'x': "):
        parse_id("x", "lead id on line 3 of ids.txt")


# --- Criteria and Selection ------------------------------------------------------------------


def test_criteria_sql_binds_values_and_quotes_columns() -> None:
    crit = Criteria(
        list_ids=(102, 101, 101),
        statuses=("SALE",),
        campaigns=("SALESA",),
        entry_before="2024-01-31",
        last_call_before="2024-02-01 18:00",
    ).resolve()
    cond, params = crit.sql()
    assert cond == (
        "`list_id` IN :c_list_ids AND `list_id` IN (SELECT `list_id` FROM `vicidial_lists` "
        "WHERE `campaign_id` IN :c_campaigns) AND `status` IN :c_statuses AND `entry_date` < "
        ":c_entry_before AND `last_local_call_time` < :c_last_call_before"
    )
    assert params == {
        "c_list_ids": [101, 102],
        "c_campaigns": ["SALESA"],
        "c_statuses": ["SALE"],
        "c_entry_before": "2024-01-31 00:00:00",
        "c_last_call_before": "2024-02-01 18:00:00",
    }


def test_criteria_ages_resolve_against_now() -> None:
    crit = Criteria(modified_before="90d").resolve(now=datetime(2024, 4, 30, 12, 0, 0))
    assert crit.resolved == {"modified_before": "2024-01-31 12:00:00"}


def test_criteria_resolve_refuses_a_bad_where_or_date() -> None:
    with pytest.raises(BadInput, match="may not hold UNION"):
        Criteria(where="1=1 UNION SELECT 1").resolve()
    with pytest.raises(BadInput, match=r"^--entry-before: expected a date"):
        Criteria(entry_before="2024-13-45").resolve()
    with pytest.raises(
        BadInput, match=r"^--modified-before: '99999999999d' is too long \(at most 100 years\)$"
    ):
        Criteria(modified_before="99999999999d").resolve()


def test_raw_where_colons_are_not_bind_parameters() -> None:
    # SQLAlchemy's text() would read ':x' in "LIKE '%:x%'" as a parameter it has no value for.
    from sqlalchemy import text
    from sqlalchemy.dialects import mysql

    cond, params = Criteria(where="comments LIKE '%:x%' AND entry_date < '2024-01-01 10:30'").sql()
    assert params == {}
    compiled = text(f"SELECT 1 WHERE {cond}").compile(dialect=mysql.dialect())
    assert compiled.params == {}
    sql = str(compiled)  # pyformat doubles '%'; the driver undoes it
    assert "%(x)s" not in sql
    assert "'%%:x%%'" in sql and "'2024-01-01 10:30'" in sql


def test_criteria_identity_is_canonical() -> None:
    a = Criteria(list_ids=(102, 101, 101), statuses=("B", "A")).resolve()
    b = Criteria(list_ids=(101, 102), statuses=("A", "B")).resolve()
    assert a.canonical() == b.canonical() == {"list_ids": [101, 102], "statuses": ["A", "B"]}
    assert Criteria().empty and not a.empty


def test_selection_from_ids_is_sorted_and_unique() -> None:
    sel = Selection.from_ids([5, 3, 5, 1])
    assert sel.ids is not None and list(sel.ids.batches(10)) == [[1, 3, 5]]
    assert sel.canonical() == Selection.from_ids([1, 3, 5]).canonical()
    assert sel.canonical() != Selection.from_ids([1, 3, 6]).canonical()


# --- cut-offs: ages and words (issue 22) ------------------------------------------------------

NOW = datetime(2026, 3, 31, 7, 56, 12)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1mo", datetime(2026, 2, 28, 7, 56, 12)),  # no 31 February: the month's last day
        ("6mo", datetime(2025, 9, 30, 7, 56, 12)),
        ("13 months", datetime(2025, 2, 28, 7, 56, 12)),
        ("1y", datetime(2025, 3, 31, 7, 56, 12)),
        ("2 years", datetime(2024, 3, 31, 7, 56, 12)),
        ("2w", datetime(2026, 3, 17, 7, 56, 12)),
        ("3 weeks", datetime(2026, 3, 10, 7, 56, 12)),
        ("90d", datetime(2025, 12, 31, 7, 56, 12)),
        ("1 day", datetime(2026, 3, 30, 7, 56, 12)),
        ("1.5d", datetime(2026, 3, 29, 19, 56, 12)),
        ("12h", datetime(2026, 3, 30, 19, 56, 12)),
        ("today", datetime(2026, 3, 31)),
        ("Yesterday", datetime(2026, 3, 30)),
        ("2024-01-31", datetime(2024, 1, 31)),
        ("2024-01-31 18:00", datetime(2024, 1, 31, 18, 0)),
    ],
)
def test_cutoffs_resolve_by_the_calendar(text: str, expected: datetime) -> None:
    assert parse_cutoff(text, "--entry-before", NOW) == expected


def test_a_year_back_from_a_leap_day_is_the_last_of_february() -> None:
    assert parse_cutoff("1y", "--x", datetime(2024, 2, 29, 12)) == datetime(2023, 2, 28, 12)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("6m", "'6m' could mean minutes or months; write 6mo for months"),
        ("6 M", "'6 M' could mean minutes or months; write 6mo for months"),
        ("5min", "'5min' is an age in minutes"),
        ("10 minutes", "'10 minutes' is an age in minutes"),
        ("30s", "'30s' is an age in seconds"),
        ("1.5y", "months and years are whole numbers"),
        ("101y", "'101y' is too long (at most 100 years)"),
        ("1201mo", "'1201mo' is too long (at most 100 years)"),
        ("90", "expected a date (2024-01-31, today, yesterday)"),
        ("6q", "expected a date"),
        ("tomorrow", "expected a date"),
    ],
)
def test_cutoffs_that_could_be_misread_are_refused(text: str, message: str) -> None:
    with pytest.raises(BadInput) as refused:
        parse_cutoff(text, "--last-call-before", NOW)
    assert str(refused.value).startswith("--last-call-before: ")
    assert message in str(refused.value)


def test_a_cutoff_is_shown_with_its_zone_and_what_was_given() -> None:
    utc = Cutoff("last_call_before", "6mo", "2026-06-05 07:56:12", 0)
    assert utc.line == "last_call_before: 2026-06-05 07:56:12 UTC (6mo)"
    assert utc.iso == "2026-06-05T07:56:12+00:00"
    east = Cutoff("entry_before", "2024-01-01", "2024-01-01 00:00:00", 5 * 3600 + 1800)
    assert east.line == "entry_before: 2024-01-01 00:00:00 +05:30"
    assert east.iso == "2024-01-01T00:00:00+05:30"
    west = Cutoff("entry_before", "yesterday", "2024-01-01 00:00:00", -4 * 3600)
    assert west.line == "entry_before: 2024-01-01 00:00:00 -04:00 (yesterday)"
