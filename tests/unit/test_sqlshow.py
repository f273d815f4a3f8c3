"""The dry run's SQL as a person reads it: id and column lists shortened, long lines broken."""

from __future__ import annotations

from archiver.sqlshow import elide_columns, for_humans, shorten_ids, wrap

COLS = ["lead_id", "entry_date", "status", "phone_number", "comments"]


def cols(fmt: str, sep: str = ", ") -> str:
    return sep.join(fmt.format(c=c) for c in COLS)


def test_shorten_ids_keeps_short_lists_and_counts_long_ones() -> None:
    assert shorten_ids("IN (1, 2, 3)") == "IN (1, 2, 3)"
    long = ", ".join(str(i) for i in range(10, 510))
    assert shorten_ids(f"WHERE x IN ({long})") == "WHERE x IN (10, 11, 12, …, 509 /* 500 ids */)"


def test_column_list_keeps_its_first_column() -> None:
    stmt = f"INSERT INTO `t` ({cols('`{c}`')}) SELECT {cols('s.`{c}`')} FROM `s`"
    assert (
        elide_columns(stmt)
        == "INSERT INTO `t` (`lead_id`, … 4 more) SELECT s.`lead_id`, … 4 more FROM `s`"
    )


def test_set_list_and_conjunction_across_lines() -> None:
    sets = cols("d.`{c}` = s.`{c}`", ",\n    ")
    same = cols("CAST(s.`{c}` AS BINARY) <=> CAST(d.`{c}` AS BINARY)", "\n   AND ")
    stmt = (
        "UPDATE `t` AS d JOIN `s` AS s ON s.`lead_id` = d.`lead_id`\n"
        f"SET {sets}\n"
        f"WHERE d.`lead_id` IN (1, 2) AND NOT ({same})"
    )
    assert elide_columns(stmt) == (
        "UPDATE `t` AS d JOIN `s` AS s ON s.`lead_id` = d.`lead_id`\n"
        "SET d.`lead_id` = s.`lead_id`, … 4 more\n"
        "WHERE d.`lead_id` IN (1, 2) AND NOT"
        " (CAST(s.`lead_id` AS BINARY) <=> CAST(d.`lead_id` AS BINARY) AND … 4 more)"
    )


def test_a_literal_between_columns_stays_in_sight() -> None:
    # dearchive --reset-called writes 'N' into called_since_last_reset: the reader must see it.
    items = ["s.`a`", "s.`b`", "s.`c`", "'N'", "s.`d`", "s.`e`", "s.`f`", "s.`g`"]
    assert elide_columns(f"SELECT {', '.join(items)} FROM x") == (
        "SELECT s.`a`, … 2 more, 'N', s.`d`, … 3 more FROM x"
    )


def test_items_alike_up_to_their_first_column_make_one_run() -> None:
    # QUOTE for numbers and dates, HEX for strings: still one list of per-column expressions.
    stmt = (
        "SELECT CONCAT_WS(',', IF(`a` IS NULL, 'NULL', QUOTE(`a`)),"
        " IF(`b` IS NULL, 'NULL', CONCAT('X''', HEX(`b`), '''')),"
        " IF(`c` IS NULL, 'NULL', QUOTE(`c`))) FROM x"
    )
    assert elide_columns(stmt) == (
        "SELECT CONCAT_WS(',', IF(`a` IS NULL, 'NULL', QUOTE(`a`)), … 2 more) FROM x"
    )


def test_short_lists_other_lists_and_quotes_are_left_alone() -> None:
    for stmt in (
        "SELECT `a`, `b` FROM `t`",  # two items: nothing to gain
        "WHERE `lead_id` IN (1, 2, 3, 4) AND `status` = 'A, B, C'",
        "SELECT 'x`, `y`, `z' FROM t",  # the backquotes are inside a string
        "SELECT `a`, `b`, `c` FROM (unbalanced",
    ):
        assert elide_columns(stmt) == stmt


def test_a_long_deeply_nested_group_shows_as_an_ellipsis() -> None:
    inner = "SHA2(CONCAT_WS(X'09', COLUMN_NAME, COLUMN_TYPE, IFNULL(CHARACTER_SET_NAME, '')), 256)"
    stmt = (
        f"AND (SELECT CONCAT(COUNT(*), '/', BIT_XOR(CAST(CONV({inner}) AS UNSIGNED))) FROM c) = '1'"
    )
    assert elide_columns(stmt) == (
        "AND (SELECT CONCAT(COUNT(*), '/', BIT_XOR(CAST(…))) FROM c) = '1'"
    )


def test_wrap_breaks_long_lines_outside_parentheses_and_quotes() -> None:
    cond = "(SELECT COUNT(*) FROM information_schema.COLUMNS WHERE A = 1 AND B = 'x AND y') = 35"
    line = f"WHERE `lead_id` IN (1, 2) AND {cond} AND {cond}"
    assert wrap(line, width=80).split("\n") == [
        "WHERE `lead_id` IN (1, 2)",
        f"  AND {cond[:16]}",
        f"      {cond[17:]}",
        f"  AND {cond[:16]}",
        f"      {cond[17:]}",
    ]
    assert wrap(line, width=len(line)) == line


def test_for_humans_counts_batches_that_differ_only_in_ids() -> None:
    def delete(ids: range) -> str:
        return f"DELETE s FROM `t` AS s WHERE s.`lead_id` IN ({', '.join(map(str, ids))})"

    stmts = [
        f"INSERT INTO `a` ({cols('`{c}`')}) SELECT 1",
        *(delete(range(k, k + 100)) for k in range(0, 500, 100)),
        "SELECT 1",
    ]
    assert for_humans(stmts) == [
        "INSERT INTO `a` (`lead_id`, … 4 more) SELECT 1;",
        "DELETE s FROM `t` AS s WHERE s.`lead_id` IN (0, 1, 2, …, 99 /* 100 ids */);",
        "-- 4 more like the one above, each on the chunk's next ids",
        "SELECT 1;",
    ]
