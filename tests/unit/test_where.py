"""The raw `--where` check (issue 14, finding 1): an allow-list over MariaDB's tokens. Every
condition below goes through `validate_where`, the call the CLI makes. No database."""

from __future__ import annotations

import re

import pytest

from archiver import where
from archiver.db import SESSION_SQL_MODE
from archiver.errors import BadInput
from archiver.selection import validate_where

ACCEPTED = [
    "lead_id <= 1200",
    "list_id IN (101, 102) AND status = 'SALE'",
    "`rank` < 0",
    "entry_date < '2024-01-01 10:30:00'",
    # forbidden words, calls, comments and quotes inside a string literal are data
    "comments = 'SLEEP(1)'",
    "comments = '`SLEEP`(2)=0 AND `RELEASE_ALL_LOCKS`() >= 0'",
    "comments = 'please DELETE me; -- UNION SELECT SLEEP(1) /* x */ # /*! 1 */ @x'",
    "comments = 'NEXT VALUE FOR seq' OR comments = 'FOR UPDATE'",
    "comments = 'it''s'",
    "comments = 'a\\'b' AND comments <> 'c\\\\'",
    'comments = "double ; quoted `SLEEP`(1)"',
    'comments = "say ""hi"" \\" "',
    "first_name = N'Zoë' AND last_name = _utf8mb4'Ünal'",
    # quoted names may be anything when they are not called
    "`update` = 1",
    "`SLEEP` = 1 AND `BENCHMARK` IS NULL",
    "`naïve column` IS NULL",
    "(status = 'A' OR (status = 'B' AND called_count > 3))",
    "status LIKE 'Jo%' AND phone_number NOT LIKE '555\\_%' ESCAPE '\\\\'",
    "lead_id IN (SELECT lead_id FROM vicidial_list WHERE list_id = 999)",
    "entry_date < NOW() - INTERVAL 90 DAY",
    "DATE(entry_date) BETWEEN '2024-01-01' AND '2024-01-31'",
    "last_local_call_time IS NULL OR called_count IS NOT NULL",
    "CASE WHEN status = 'A' THEN 1 WHEN status = 'B' THEN 2 ELSE 0 END = 1",
    "COALESCE(owner, '') = '' AND IFNULL(`rank`, 0) = 0",
    "IF(called_count > 3, 'x', 'y') = 'x' AND NULLIF(status, '') IS NULL",
    "LOWER(first_name) = 'ann' AND UPPER (last_name) LIKE 'S%'",  # a space before ( is a call
    "list_id IN (SELECT list_id FROM vicidial_lists WHERE campaign_id = 'SALESA')",
    "EXISTS (SELECT 1 FROM vicidial_hopper h WHERE h.lead_id = s.lead_id)",
    "NOT EXISTS(SELECT 1 FROM `vicidial_callbacks` c WHERE c.lead_id = s.lead_id)",
    "phone_code = 0x31 OR phone_code = X'31' OR called_count = b'101' OR called_count = 0b11",
    "called_count DIV 2 = 1 OR called_count MOD 2 = 0 OR called_count % 3 = 1 OR MOD(lead_id, 7)",
    "lead_id = (SELECT MAX(lead_id) FROM vicidial_list_archive)",
    "CAST(vendor_lead_code AS UNSIGNED) > 100 AND CONVERT(title USING utf8mb4) = 'Mr'",
    "CAST(called_count AS DECIMAL(10, 2)) > 1.5e0 AND gmt_offset_now < .5",
    "TIMESTAMPDIFF(DAY, entry_date, NOW()) > 90 AND modify_date < CURRENT_TIMESTAMP",
    "EXTRACT(YEAR FROM entry_date) = 2023 AND TRIM(LEADING '0' FROM phone_number) <> ''",
    "SUBSTRING(phone_number, 1, 3) = '555' AND LEFT(postal_code, 2) = RIGHT(postal_code, 2)",
    "vicidial_list.list_id = 101",
    "status COLLATE utf8mb3_bin = 'sale'",
    "lead_id IN (SELECT l.lead_id FROM vicidial_list l JOIN vicidial_lists ls ON ls.list_id = "
    "l.list_id LEFT OUTER JOIN vicidial_campaigns c USING (campaign_id) WHERE c.active = 'N')",
    "list_id IN (SELECT list_id FROM (SELECT list_id, COUNT(*) AS n FROM vicidial_list GROUP "
    "BY list_id HAVING n > 10) AS big)",
    "lead_id IN (SELECT c.lead_id FROM vicidial_callbacks c, vicidial_lists l WHERE c.list_id "
    "= l.list_id ORDER BY c.lead_id DESC)",
    "phone_number REGEXP '^555' AND NOT (status <=> 'DNC') AND !(called_count > 9)",
    "status IN ('NEW', 'NA') XOR called_count = 0 || owner = 'x' && user = 'y'",
    "lead_id--1 > 0",  # `--` not followed by a space is two minus signs, not a comment
    "GREATEST(called_count, 1) < LEAST(5, 9) AND ABS(gmt_offset_now) <= ROUND(5.5)",
    "lead_id > 0\n  AND\tlist_id = 101\r\n",
    # string functions whose result stays short (issue 21, finding 11)
    "LPAD(phone_number, 10, '0') = '0005551234' AND RPAD(postal_code, 255, ' ') <> ''",
    "REPLACE(REPLACE(phone_number, '-', ''), ' ', '') = '5551234'",
    "LENGTH(REGEXP_REPLACE(phone_number, '[^0-9]', '')) = 10",
    "CONCAT(first_name, ' ', last_name) LIKE 'Ann S%' AND LOCATE('x', comments) > 0",
    "HEX(HEX(first_name)) <> '' AND QUOTE(comments) <> ''",
    "DATE_FORMAT(entry_date, '%Y-%m') = '2024-01' AND COALESCE(a, b, c, d, e, f, g, h, i) = ''",
    "IF(LENGTH(a) + LENGTH(b) + LENGTH(c) + LENGTH(d) + LENGTH(e) > 5, first_name, '') = ''",
    "phone_number IN (" + ", ".join(f"'{n:010d}'" for n in range(4000)) + ")",
]

ALLOWED = where.ALLOWED
CALL = "allowed are side-effect-free built-in functions only"
QUOTED = "a function name in backquotes or with a database name may be a stored function"
COMMENT = "--where may not hold comments (#, -- , /* … */); give the condition alone"
EXECUTABLE = "--where may not hold executable comments (/*! … */, /*M! … */)"

# (condition, a part of the refusal that names what was refused)
REFUSED = [
    # the bypasses of the issue
    ("`SLEEP`(2)=0", f"--where may not call `SLEEP`(): {QUOTED}"),
    ("`BENCHMARK`(100000000, MD5(1)) = 0", "--where may not call `BENCHMARK`()"),
    ("`GET_LOCK`('vicidial-archiver', 10) = 1", "--where may not call `GET_LOCK`()"),
    ("list_id = 102 AND `RELEASE_ALL_LOCKS`() >= 0", "--where may not call `RELEASE_ALL_LOCKS`()"),
    ("`LOAD_FILE`('/etc/passwd') IS NULL", "--where may not call `LOAD_FILE`()"),
    ("MASTER_GTID_WAIT('0-1-100', 10) = 0", f"--where may not call MASTER_GTID_WAIT(): {CALL}"),
    ("MASTER_POS_WAIT('bin.000001', 4, 10) = 0", "--where may not call MASTER_POS_WAIT()"),
    ("lead_id < NEXT VALUE FOR seq", f"--where may not hold FOR: {ALLOWED}"),
    ("lead_id < PREVIOUS VALUE FOR seq", "--where may not hold FOR"),
    ("NEXTVAL(seq) > 0", "--where may not call NEXTVAL()"),
    ("SETVAL(seq, 1) > 0", "--where may not call SETVAL()"),
    ("LASTVAL(seq) IS NULL", "--where may not call LASTVAL()"),
    ("lead_id < seq.nextval", "--where may not read a sequence (nextval)"),
    # calls off the allow-list, however written
    ("SLEEP(5) = 0", f"--where may not call SLEEP(): {CALL}"),
    ("lead_id = 1 AND sleep (5) = 0", "--where may not call SLEEP()"),
    ("lead_id = 1 AND sleep\t(5) = 0", "--where may not call SLEEP()"),
    ("SLEEP/**/(1) = 0", "--where may not call SLEEP()"),  # a comment hiding a call
    ("sleep/* x */ (1) = 0", "--where may not call SLEEP()"),
    ("BENCHMARK(1000000, MD5(1)) = 0", "--where may not call BENCHMARK()"),
    ("GET_LOCK('x', 10) = 1", "--where may not call GET_LOCK()"),
    ("RELEASE_LOCK('x') IS NULL", "--where may not call RELEASE_LOCK()"),
    ("RELEASE_ALL_LOCKS() >= 0", "--where may not call RELEASE_ALL_LOCKS()"),
    ("IS_FREE_LOCK('x') = 1", "--where may not call IS_FREE_LOCK()"),
    ("LOAD_FILE('/etc/passwd') IS NULL", "--where may not call LOAD_FILE()"),
    ("RAND() < 0.5", "--where may not call RAND()"),
    ("UUID() <> ''", "--where may not call UUID()"),
    ("lead_id = LAST_INSERT_ID(5)", "--where may not call LAST_INSERT_ID()"),
    ("ROW_NUMBER() OVER () > 1", "--where may not call ROW_NUMBER()"),
    ("lead_id IN (SELECT lead_id FROM vicidial_list WHERE my_udf(lead_id))", "may not call MY_UDF"),
    ("asterisk.my_func(1) = 1", f"--where may not call my_func(): {QUOTED}"),
    ("`LOWER`(first_name) = 'a'", "--where may not call `LOWER`()"),  # quoted: maybe stored
    # comments and variables
    ("1=1 /*!50000 OR SLEEP(1)*/", EXECUTABLE),
    ("1=1 /*M!100000 OR SLEEP(1)*/", EXECUTABLE),
    ("1=1 -- x", COMMENT),
    ("1=1 --\tx", COMMENT),
    ("1=1 # x", COMMENT),
    ("1=1 /* x */", COMMENT),
    ("1=1 /* x", "--where has an unterminated comment ('/*' without '*/')"),
    ("lead_id = @x", f"--where may not use variables (@x): {ALLOWED}"),
    ("@@global.max_connections > 0", "--where may not use variables (@@global.max_connections)"),
    ("lead_id := 1", "--where may not assign (':=')"),
    ("lead_id = ?", "--where may not hold '?' placeholders"),
    # statements, not conditions
    ("1=1; DROP TABLE vicidial_list", "--where must be one condition: ';' ends a statement"),
    ("1=1 UNION SELECT 1", f"--where may not hold UNION: {ALLOWED}"),
    ("lead_id IN (SELECT lead_id FROM vicidial_list FOR UPDATE)", "--where may not hold FOR"),
    ("lead_id IN (SELECT lead_id FROM vicidial_list LOCK IN SHARE MODE)", "may not hold LOCK"),
    ("lead_id IN (SELECT lead_id INTO @x FROM vicidial_list)", "--where may not hold INTO"),
    ("1=1 INTO OUTFILE '/tmp/x'", "--where may not hold INTO"),
    ("lead_id = (DELETE FROM vicidial_list)", "--where may not hold DELETE"),
    ("lead_id IN (WITH RECURSIVE r AS (SELECT 1) SELECT * FROM r)", "--where may not hold WITH"),
    ("lead_id IN (SELECT 1 FROM vicidial_list PROCEDURE ANALYSE())", "may not hold PROCEDURE"),
    ("CURRENT_USER = 'root@localhost'", "--where may not hold CURRENT_USER"),
    # subqueries over other tables
    (
        "lead_id IN (SELECT user_id FROM mysql.user)",
        "--where may read only VICIdial's tables in this database: mysql.… names another "
        "database; write the table name alone",
    ),
    (
        "lead_id IN (SELECT seq FROM seq_1_to_1000000000)",
        "--where may read only VICIdial's tables in a subquery, not seq_1_to_1000000000",
    ),
    ("lead_id IN (SELECT user_id FROM vicidial_users)", "not vicidial_users"),
    ("lead_id IN (SELECT 1 FROM vicidial_list a, information_schema.tables b)", "information_"),
    ("lead_id IN (SELECT 1 FROM vicidial_list a JOIN (mysql.user) ON 1)", "mysql.…"),
    ("lead_id IN (SELECT 1 FROM (SELECT 1 FROM mysql.db) d)", "mysql.…"),
    ("lead_id IN (SELECT 1 FROM DUAL)", "not DUAL"),
    ("lead_id IN (SELECT 1 FROM `seq_1_to_9`)", "not seq_1_to_9"),
    # a string as long as a number says: one evaluation no timeout stops (issue 21, finding 11)
    ("LENGTH(REGEXP_REPLACE(REPEAT('a', 40000), 'a', 'bb')) = 7", "--where may not call REPEAT()"),
    ("SPACE (1000000) = ''", "--where may not call SPACE(): it builds a string of any length"),
    ("LPAD('a', 16000000, 'b') = 'x'", "--where may call LPAD() only with a length written"),
    ("RPAD('a', lead_id * 1000000, 'b') = 'x'", "--where may call RPAD() only with a length"),
    ("LPAD('a', 2e7, 'b') = 'x'", "--where may call LPAD() only with a length written"),
    (
        "REPLACE(REPLACE(LPAD('', 255, 'a'), 'a', LPAD('', 255, 'a')), 'a', 'bb') = ''",
        "--where may not call REPLACE() on these arguments: its result could be longer",
    ),
    ("REPLACE(comments, 'a', comments) = ''", "--where may not call REPLACE() on these"),
    (
        "LOCATE('b', HEX(HEX(HEX(HEX(HEX(HEX(HEX(HEX(HEX(HEX(HEX(HEX(HEX('a')))))))))))))) > 0",
        "--where may not call HEX() on these arguments",
    ),
    (
        "REGEXP_REPLACE(CONCAT(first_name, last_name, comments), '', 'xx') = ''",
        "--where may not call REGEXP_REPLACE() on these arguments",
    ),
    (
        "CONCAT(" + ", ".join([f"LPAD('', 255, '{c}')" for c in "abcdefghijklmnop"]) + ") = ''",
        "--where may not call CONCAT() on these arguments",
    ),
    ("comments = '" + "a" * 5000 + "'", "--where holds a string of 5000 characters"),
    (
        " OR ".join(f"LOCATE('{c * 4000}', comments) > 0" for c in "abcdefghi"),
        "--where builds more than 32768 characters of strings in all",
    ),
    # malformed
    ("1=1) OR (1=1", "--where has unbalanced parentheses; give one condition"),
    ("(1=1", "--where has unbalanced parentheses; give one condition"),
    ("status = 'x", "--where has an unterminated string literal"),
    ('status = "x', "--where has an unterminated string literal"),
    ("`status = 1", "--where has an unterminated quoted name"),
    ("first_name = 'a' AND naïve = 1", "--where holds 'ï' outside a string"),
    ("{fn NOW()} > entry_date", "--where holds '{', which has no place in a condition"),
    ("   ", "--where is empty"),
]


def _id(condition: str) -> str:
    return condition if len(condition) <= 80 else f"{condition[:60]}…({len(condition)})"


def test_the_table_is_big_enough() -> None:
    assert len(ACCEPTED) >= 30 and len(REFUSED) >= 30
    assert len(set(ACCEPTED)) == len(ACCEPTED)
    assert len({w for w, _ in REFUSED}) == len(REFUSED)


@pytest.mark.parametrize("condition", ACCEPTED, ids=[_id(w) for w in ACCEPTED])
def test_accepted(condition: str) -> None:
    assert validate_where(f"  {condition}  ") == condition.strip()


@pytest.mark.parametrize(("condition", "refusal"), REFUSED, ids=[_id(w) for w, _ in REFUSED])
def test_refused(condition: str, refusal: str) -> None:
    with pytest.raises(BadInput) as err:
        validate_where(condition)
    message = str(err.value)
    assert refusal in message
    assert message.startswith("--where ")
    assert "\n" not in message


def test_the_tokenizer_reads_the_session_sql_mode() -> None:
    """The tokenizer assumes "…" is a string, a backslash escapes in strings and `name (` is
    read like `name(`: the session's sql_mode must not change any of that."""
    modes = set(SESSION_SQL_MODE.upper().split(","))
    assert not modes & {"ANSI_QUOTES", "ANSI", "NO_BACKSLASH_ESCAPES", "ORACLE", "MSSQL"}
    assert not modes & {"IGNORE_SPACE", "PIPES_AS_CONCAT", "DB2", "POSTGRESQL", "MAXDB"}


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("a--1", [("word", "a"), ("op", "-"), ("op", "-"), ("number", "1")]),
        ("a-- 1", [("word", "a"), ("comment", "-- 1")]),
        ("'a\\'b''c'", [("string", "'a\\'b''c'")]),
        ("`a``b`(", [("quoted", "a`b"), ("(", "(")]),
        ("x'0A' 0x0a b'1'", [("number", "x'0A'"), ("number", "0x0a"), ("number", "b'1'")]),
        (
            "1e5 .5 t.c",
            [("number", "1e5"), ("number", ".5"), ("word", "t"), (".", "."), ("word", "c")],
        ),
        ("1abc <=>", [("word", "1abc"), ("op", "<=>")]),
        ("/*M! x */ @@v", [("xcomment", "/*M! x */"), ("var", "@@v")]),
    ],
)
def test_tokenize(text: str, tokens: list[tuple[str, str]]) -> None:
    assert [(t.kind, t.text) for t in where.tokenize(text)] == tokens


def test_the_readme_lists_every_allowed_function_and_table() -> None:
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    start = readme.index("**`--where`: what a raw condition may hold.**")
    section = readme[start : readme.index("**Steps**", start)]
    words = set(re.findall(r"[A-Za-z_0-9]+", section))
    assert sorted(where.FUNCTIONS - words) == []
    assert sorted(t for t in where.TABLES if f"`{t}`" not in section) == []
