"""search: parsing and line formats, no database."""

from __future__ import annotations

from archiver.search import (
    HEADER,
    SearchResult,
    format_lines,
    no_match_line,
    no_valid_line,
    parse_numbers,
    search_sql,
)


def test_non_digits_are_stripped_and_order_and_duplicates_kept() -> None:
    assert parse_numbers("(727) 555-1111, 813.555.2222 ,+1 727 555 1111,7275551111") == [
        "7275551111",
        "8135552222",
        "17275551111",
        "7275551111",
    ]


def test_only_6_to_18_digits_are_searched() -> None:
    text = "12345,123456,123456789012345678,1234567890123456789,,abc"
    assert parse_numbers(text) == ["123456", "123456789012345678"]
    assert parse_numbers("") == []


def test_lines_one_per_number_in_the_order_given() -> None:
    found = {"7275551111": [12, 7, 3], "8135552222": [5]}
    result = format_lines(
        ["7275551111", "9995550000", "8135552222", "7275551111"], found, user="admin", text="x"
    )
    assert result == SearchResult(
        ["7275551111|3|12-7-3", "9995550000|0|", "8135552222|1|5", "7275551111|3|12-7-3"], 0
    )


def test_header_has_its_separators() -> None:
    result = format_lines(["8135552222"], {"8135552222": [5]}, user="u", text="x", header=True)
    assert result.lines == [HEADER, "8135552222|1|5"]
    assert HEADER == "search_key|records_found|lead_ids"


def test_no_match_at_all_is_vicidials_error_line_exit_1() -> None:
    result = format_lines(
        ["9995550000", "1112223333"], {}, user="admin", text="999-555-0000,1112223333", header=True
    )
    # the input is echoed as VICIdial's filter leaves it: digits and commas only
    assert result == SearchResult(
        ["ERROR: lead_search NO MATCHES FOUND IN THE SYSTEM: |admin|||9995550000,1112223333"], 1
    )
    assert no_match_line("u", "(813) 555-7107") == (
        "ERROR: lead_search NO MATCHES FOUND IN THE SYSTEM: |u|||8135557107"
    )


def test_no_valid_number_is_vicidials_error_line_exit_2() -> None:
    result = format_lines([], {}, user="admin", text="12345,abc")
    assert result == SearchResult(
        ["ERROR: lead_search NO VALID SEARCH METHOD - admin|PHONE_NUMBER|(0)|(0)|12345,(0)"], 2
    )
    assert (
        no_valid_line("6666", "abc")
        == "ERROR: lead_search NO VALID SEARCH METHOD - 6666|PHONE_NUMBER|(0)|(0)|(0)"
    )
    assert (
        no_valid_line("u", "")
        == "ERROR: lead_search NO VALID SEARCH METHOD - u|PHONE_NUMBER|(0)|(0)|(0)"
    )


def test_statement_is_one_in_list_and_a_per_number_cap() -> None:
    sql = search_sql("vicidial_list_archive", 3)
    assert "FROM `vicidial_list_archive` WHERE `phone_number` IN (:n0, :n1, :n2)" in sql
    assert "FIELD(m.`phone_number`, :n0, :n1, :n2)" in sql
    assert "PARTITION BY `phone_number` ORDER BY `lead_id` DESC" in sql
    assert "m.rn <= :cap" in sql
