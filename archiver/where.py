"""What a raw `--where` may hold: one condition that reads and nothing else.

A condition is accepted only when it is made of tokens this module understands, by MariaDB's
lexical rules under the session's sql_mode (`db.SESSION_SQL_MODE`: no ANSI_QUOTES, so "…" is a
string; no NO_BACKSLASH_ESCAPES, so `\\'` escapes a quote in a string), and when

- every function it calls is on `FUNCTIONS`: side-effect-free builtins. Any name followed by
  `(`, with whitespace or a comment in between or not, is a call. A call by a quoted name
  (`` `SLEEP`(1) ``) or a qualified one (`db.f(1)`) is refused whatever the name: MariaDB may
  resolve it to a stored function, which can do anything;
- every keyword it holds is on `KEYWORDS` (operators, `CASE`, `IN`, `BETWEEN`, `IS`, subquery
  clauses…); a reserved word off that list (`FOR` of `NEXT VALUE FOR`/`FOR UPDATE`, `INTO`,
  `LOCK`, `UNION`, `WITH`, `SET`…) is refused. Any other word is a column, a table or an alias;
- every table a subquery reads is one of VICIdial's own (`TABLES`), unqualified;
- it holds no comment (executable ones, `/*! … */` and `/*M! … */`, run their content), no
  variable (`@x`, `@@x`), no `;`, no `?`, no `:=`, and no character outside ASCII but in a
  string or a backquoted name;
- every string it can build is short (`_Cost`): the server evaluates a function call in one
  go, which neither max_statement_time nor KILL interrupts, and some of them (REGEXP_REPLACE,
  REPLACE, LOCATE, LIKE…) cost the product of their strings' lengths. So REPEAT and SPACE
  (a string of any length from one number) are refused, LPAD and RPAD take a length of at most
  `MAX_PAD` written as a number, a literal holds at most `MAX_CHARS` characters, and each
  call's result, bounded from its arguments (a column counts as one column value, a literal as
  its length), may hold at most `MAX_COLUMNS` column values and `MAX_CHARS` characters more;
  all calls together may read or build at most `TOTAL_CHARS` characters.

This is an allow-list on purpose: a list of forbidden words loses to every name nobody thought of.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from archiver.errors import BadInput

# Side-effect-free builtins. Refused on purpose, though harmless to the data: RAND, UUID,
# UUID_SHORT and SYS_GUID (a selection that changes from one evaluation to the next makes the
# re-check of each chunk select other leads; UUID_SHORT also advances a server counter),
# LAST_INSERT_ID (with an argument it sets the session's value), and everything that waits,
# locks, reads files, the server or the session (SLEEP, BENCHMARK, GET_LOCK, LOAD_FILE,
# MASTER_GTID_WAIT, NEXTVAL, DATABASE, USER…). The integration tests check each name here is a
# builtin of the server, so it can never resolve to a stored function of the same name.
FUNCTIONS = frozenset(
    {
        # comparison and control flow
        "COALESCE", "GREATEST", "IF", "IFNULL", "INTERVAL", "ISNULL", "LEAST", "NULLIF", "STRCMP",
        # string
        "ASCII", "BIN", "BIT_LENGTH", "CAST", "CHAR", "CHAR_LENGTH", "CHARACTER_LENGTH",
        "CONCAT", "CONCAT_WS", "CONVERT", "CRC32", "ELT", "FIELD", "FIND_IN_SET", "FORMAT",
        "HEX", "INSTR", "LCASE", "LEFT", "LENGTH", "LOCATE", "LOWER", "LPAD", "LTRIM", "MD5",
        "MID", "OCT", "OCTET_LENGTH", "ORD", "POSITION", "QUOTE", "REGEXP_INSTR",
        "REGEXP_REPLACE", "REGEXP_SUBSTR", "REPLACE", "REVERSE", "RIGHT", "RPAD",
        "RTRIM", "SHA1", "SHA2", "SOUNDEX", "SUBSTR", "SUBSTRING", "SUBSTRING_INDEX",
        "TRIM", "UCASE", "UNHEX", "UPPER",
        # math
        "ABS", "ACOS", "ASIN", "ATAN", "ATAN2", "CEIL", "CEILING", "CONV", "COS", "COT",
        "DEGREES", "EXP", "FLOOR", "LN", "LOG", "LOG10", "LOG2", "MOD", "PI", "POW", "POWER",
        "RADIANS", "ROUND", "SIGN", "SIN", "SQRT", "TAN", "TRUNCATE",
        # date and time
        "ADDDATE", "ADDTIME", "CONVERT_TZ", "CURDATE", "CURRENT_DATE", "CURRENT_TIME",
        "CURRENT_TIMESTAMP", "CURTIME", "DATE", "DATE_ADD", "DATE_FORMAT", "DATE_SUB",
        "DATEDIFF", "DAY", "DAYNAME", "DAYOFMONTH", "DAYOFWEEK", "DAYOFYEAR", "EXTRACT",
        "FROM_DAYS", "FROM_UNIXTIME", "HOUR", "LAST_DAY", "LOCALTIME", "LOCALTIMESTAMP",
        "MAKEDATE", "MAKETIME", "MICROSECOND", "MINUTE", "MONTH", "MONTHNAME", "NOW",
        "PERIOD_ADD", "PERIOD_DIFF", "QUARTER", "SEC_TO_TIME", "SECOND", "STR_TO_DATE",
        "SUBDATE", "SUBTIME", "SYSDATE", "TIME", "TIME_FORMAT", "TIME_TO_SEC", "TIMEDIFF",
        "TIMESTAMP", "TIMESTAMPADD", "TIMESTAMPDIFF", "TO_DAYS", "TO_SECONDS", "UNIX_TIMESTAMP",
        "UTC_DATE", "UTC_TIME", "UTC_TIMESTAMP", "WEEK", "WEEKDAY", "WEEKOFYEAR", "YEAR",
        "YEARWEEK",
        # aggregates, for subqueries
        "AVG", "COUNT", "MAX", "MIN", "SUM",
    }
)  # fmt: skip

# Keywords a condition may hold. Those that are reserved words may also stand before `(`
# without being a call (`IN (`, `AND (`, `EXISTS (`, `AS DECIMAL(10, 2)`…): a reserved word
# cannot name a stored function unless quoted.
KEYWORDS = frozenset(
    {
        "AND", "OR", "NOT", "XOR", "IS", "NULL", "TRUE", "FALSE", "UNKNOWN", "IN", "BETWEEN",
        "LIKE", "ESCAPE", "REGEXP", "RLIKE", "SOUNDS", "CASE", "WHEN", "THEN", "ELSE", "END",
        "DIV", "MOD", "INTERVAL", "BINARY", "COLLATE", "EXISTS", "ALL",
        # subqueries
        "SELECT", "DISTINCT", "FROM", "AS", "WHERE", "JOIN", "INNER", "LEFT", "RIGHT", "OUTER",
        "CROSS", "NATURAL", "ON", "USING", "GROUP", "BY", "HAVING", "ORDER", "ASC", "DESC",
        "LIMIT", "OFFSET",
        # CAST and CONVERT types, TRIM and interval units
        "CHAR", "SIGNED", "UNSIGNED", "INT", "INTEGER", "DECIMAL", "DOUBLE", "FLOAT", "LEADING",
        "TRAILING", "BOTH", "DAY_HOUR", "DAY_MICROSECOND", "DAY_MINUTE", "DAY_SECOND",
        "HOUR_MICROSECOND", "HOUR_MINUTE", "HOUR_SECOND", "MINUTE_MICROSECOND", "MINUTE_SECOND",
        "SECOND_MICROSECOND", "YEAR_MONTH",
        # the clock, written without parentheses
        "CURRENT_DATE", "CURRENT_TIME", "CURRENT_TIMESTAMP", "LOCALTIME", "LOCALTIMESTAMP",
        "UTC_DATE", "UTC_TIME", "UTC_TIMESTAMP",
    }
)  # fmt: skip

# MariaDB's reserved words (10.11), and the words that, unquoted, are not a column but the
# server's own value (CURRENT_USER…): none can be a column name as written, so a reserved word
# off KEYWORDS is refused without loss. A test checks the list against the server.
_RESERVED_WORDS = """
    ACCESSIBLE ADD ALL ALTER ANALYZE AND AS ASC ASENSITIVE BEFORE BETWEEN BIGINT BINARY BLOB
    BOTH BY CALL CASCADE CASE CHANGE CHAR CHARACTER CHECK COLLATE COLUMN CONDITION CONSTRAINT
    CONTINUE CONVERT CREATE CROSS CURRENT_DATE CURRENT_ROLE CURRENT_TIME CURRENT_TIMESTAMP
    CURRENT_USER CURSOR DATABASE DATABASES DAY_HOUR DAY_MICROSECOND DAY_MINUTE DAY_SECOND DEC
    DECIMAL DECLARE DEFAULT DELAYED DELETE DELETE_DOMAIN_ID DESC DESCRIBE DETERMINISTIC DISTINCT
    DISTINCTROW DIV DOUBLE DO_DOMAIN_IDS DROP DUAL EACH ELSE ELSEIF ENCLOSED ESCAPED EXCEPT
    EXISTS EXIT EXPLAIN FALSE FETCH FLOAT FLOAT4 FLOAT8 FOR FORCE FOREIGN FROM FULLTEXT GENERAL
    GRANT GROUP HAVING HIGH_PRIORITY HOUR_MICROSECOND HOUR_MINUTE HOUR_SECOND IF IGNORE
    IGNORE_DOMAIN_IDS IGNORE_SERVER_IDS IN INDEX INFILE INNER INOUT INSENSITIVE INSERT INT INT1
    INT2 INT3 INT4 INT8 INTEGER INTERSECT INTERVAL INTO IS ITERATE JOIN KEY KEYS KILL LEADING
    LEAVE LEFT LIKE LIMIT LINEAR LINES LOAD LOCALTIME LOCALTIMESTAMP LOCK LONG LONGBLOB LONGTEXT
    LOOP LOW_PRIORITY MASTER_DEMOTE_TO_REPLICA MASTER_DEMOTE_TO_SLAVE MASTER_HEARTBEAT_PERIOD
    MASTER_SSL_VERIFY_SERVER_CERT MATCH MAXVALUE MEDIUMBLOB MEDIUMINT MEDIUMTEXT MIDDLEINT
    MINUTE_MICROSECOND MINUTE_SECOND MOD MODIFIES NATURAL NOT NO_WRITE_TO_BINLOG NULL NUMERIC
    OFFSET ON OPTIMIZE OPTION OPTIONALLY OR ORDER OUT OUTER OUTFILE OVER PAGE_CHECKSUM
    PARSE_VCOL_EXPR PARTITION PORTION PRECISION PRIMARY PROCEDURE PURGE RANGE READ READS
    READ_WRITE REAL RECURSIVE REFERENCES REF_SYSTEM_ID REGEXP RELEASE RENAME REPEAT REPLACE
    REQUIRE RESIGNAL RESTRICT RETURN RETURNING REVOKE RIGHT RLIKE ROW_NUMBER ROWS SCHEMA SCHEMAS
    SECOND_MICROSECOND SELECT SENSITIVE SEPARATOR SET SHOW SIGNAL SLOW SMALLINT SPATIAL SPECIFIC
    SQL SQLEXCEPTION SQLSTATE SQLWARNING SQL_BIG_RESULT SQL_BUFFER_RESULT SQL_CACHE
    SQL_CALC_FOUND_ROWS SQL_NO_CACHE SQL_SMALL_RESULT SSL STARTING STATS_AUTO_RECALC
    STATS_PERSISTENT STATS_SAMPLE_PAGES STRAIGHT_JOIN TABLE TERMINATED THEN TINYBLOB TINYINT
    TINYTEXT TO TRAILING TRIGGER TRUE UNDO UNION UNIQUE UNLOCK UNSIGNED UPDATE USAGE USE USING
    UTC_DATE UTC_TIME UTC_TIMESTAMP VALUES VARBINARY VARCHAR VARCHARACTER VARYING WHEN WHERE
    WHILE WITH WRITE XOR YEAR_MONTH ZEROFILL
"""
RESERVED = frozenset(_RESERVED_WORDS.split())

# Sequence access written as a column (`seq.NEXTVAL` in Oracle mode): refused wherever it stands.
SEQUENCE_WORDS = frozenset({"NEXTVAL", "CURRVAL", "LASTVAL", "SETVAL"})

# The tables a subquery may read: VICIdial's own lead, list, campaign, status, call and
# callback tables, and the archive. Not vicidial_users (passwords), not the server's schemas,
# not MariaDB's sequence tables (`seq_1_to_1000000000`, an endless scan).
TABLES = frozenset(
    {
        "vicidial_list", "vicidial_list_archive", "vicidial_lists", "vicidial_campaigns",
        "vicidial_statuses", "vicidial_campaign_statuses", "vicidial_lists_fields",
        "vicidial_list_alt_phones", "vicidial_hopper", "vicidial_auto_calls",
        "vicidial_live_agents", "vicidial_callbacks", "vicidial_callbacks_archive",
        "vicidial_log", "vicidial_log_extended", "vicidial_closer_log", "vicidial_agent_log",
        "vicidial_carrier_log", "vicidial_dial_log", "vicidial_xfer_log", "vicidial_dnc",
        "vicidial_campaign_dnc", "vicidial_inbound_groups", "vicidial_lead_recycle",
        "vicidial_lead_filters", "call_log", "recording_log",
    }
)  # fmt: skip

# Refused whatever their arguments: one number makes their one evaluation as long as it likes.
UNBOUNDED = {
    "REPEAT": "it builds a string of any length from one number",
    "SPACE": "it builds a string of any length from one number",
}
MAX_PAD = 255  # the largest LPAD/RPAD length, written as a number
MAX_COLUMNS = 8  # column values a built string may hold
MAX_CHARS = 4096  # characters a built string (or a literal) may hold besides those
TOTAL_CHARS = 32768  # characters all calls together may build

ALLOWED = (
    "a condition reads columns and calls side-effect-free functions only "
    "(see `--where` in the README)"
)
FUNCTIONS_HINT = (
    "allowed are side-effect-free built-in functions only (comparison, date/time, string, "
    "math: DATE_SUB, LOWER, ABS…; the list is under `--where` in the README)"
)

_SPACE = " \t\n\r\v\f"
_WORD = re.compile(r"[A-Za-z_$][0-9A-Za-z_$]*|[0-9]+[A-Za-z_$][0-9A-Za-z_$]*")
_NUMBER = re.compile(
    r"(?:0x[0-9A-Fa-f]+|0b[01]+|(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
    r"(?![0-9A-Za-z_$])"
)
_STRING = {
    "'": re.compile(r"'(?:[^'\\]|\\.|'')*'", re.S),
    '"': re.compile(r'"(?:[^"\\]|\\.|"")*"', re.S),
}
_PREFIXED = re.compile(r"[xX]'[0-9A-Fa-f]*'|[bB]'[01]*'|[nN](?=')")
_QUOTED = re.compile(r"`(?:[^`]|``)*`")
_VARIABLE = re.compile(r"@@?[0-9A-Za-z_$.]*")
_OPERATOR_TEXT = "<=> <= >= <> != << >> && || = < > + - * / % & | ^ ~ !"
_OPERATORS = sorted(_OPERATOR_TEXT.split(), key=len, reverse=True)


@dataclass(frozen=True)
class Token:
    kind: str  # word, quoted, string, number, op, (, ), ",", ".", comment, xcomment, var
    text: str
    pos: int

    @property
    def upper(self) -> str:
        return self.text.upper()


def tokenize(text: str) -> list[Token]:
    """The tokens of `text` by MariaDB's lexical rules, whitespace dropped, comments kept."""
    out: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in _SPACE:
            i += 1
            continue
        token, i = _next(text, i, out)
        out.append(token)
    return out


def _next(text: str, i: int, before: list[Token]) -> tuple[Token, int]:
    ch = text[i]
    after = text[i + 1 : i + 3]  # the two characters after this one (no copy of the rest)
    if ch == "#" or (after[:1] == "-" == ch and after[1:2] <= " "):
        end = text.find("\n", i)
        end = len(text) if end < 0 else end
        return Token("comment", text[i:end], i), end
    if text.startswith("/*", i):
        end = text.find("*/", i + 2)
        if end < 0:
            raise BadInput("--where has an unterminated comment ('/*' without '*/')")
        executable = text.startswith(("/*!", "/*M!", "/*m!"), i)
        kind = "xcomment" if executable else "comment"
        return Token(kind, text[i : end + 2], i), end + 2
    if ch in _STRING:
        m = _STRING[ch].match(text, i)
        if not m:
            raise BadInput("--where has an unterminated string literal")
        return Token("string", m.group(0), i), m.end()
    m = _PREFIXED.match(text, i)
    if m:  # X'0A', b'01', N'text' (the N is dropped: the string follows as a token)
        if m.group(0) in ("n", "N"):
            return _next(text, i + 1, before)
        return Token("number", m.group(0), i), m.end()
    if ch == "`":
        m = _QUOTED.match(text, i)
        if not m:
            raise BadInput("--where has an unterminated quoted name (` without its closing `)")
        return Token("quoted", m.group(0)[1:-1].replace("``", "`"), i), m.end()
    if ch.isdigit() or (ch == "." and after[:1].isdigit() and not _follows_name(before)):
        m = _NUMBER.match(text, i)
        if m:
            return Token("number", m.group(0), i), m.end()
    m = _WORD.match(text, i)
    if m:
        return Token("word", m.group(0), i), m.end()
    if ch == "@":
        m = _VARIABLE.match(text, i)
        assert m is not None
        return Token("var", m.group(0), i), m.end()
    if ch in "(),.":
        return Token(ch, ch, i), i + 1
    for op in _OPERATORS:
        if text.startswith(op, i):
            return Token("op", op, i), i + len(op)
    raise BadInput(_bad_character(text, i))


def _follows_name(before: list[Token]) -> bool:
    return bool(before) and before[-1].kind in ("word", "quoted", ")")


def _bad_character(text: str, i: int) -> str:
    ch = text[i]
    if ch == ";":
        return "--where must be one condition: ';' ends a statement and is not allowed"
    if text.startswith(":=", i):
        return "--where may not assign (':='): " + ALLOWED
    if ch == "?":
        return "--where may not hold '?' placeholders: write the values in the condition"
    if not ch.isascii():
        return (
            f"--where holds {ch!r} outside a string: write names with other than ASCII "
            "letters in backquotes (`…`)"
        )
    return f"--where holds {ch!r}, which has no place in a condition: " + ALLOWED


@dataclass
class _Level:
    """One parenthesis level: whether a SELECT opened here, and whether its FROM clause (where
    a comma or JOIN starts a table reference) is still going on."""

    select: bool = False
    from_clause: bool = False
    want_table: bool = False


_END_OF_FROM = {"WHERE", "GROUP", "HAVING", "ORDER", "LIMIT"}


def check(where: str) -> str:
    """`where`, stripped, if it is a condition by the rules above; BadInput naming the first
    token that is not."""
    tokens = tokenize(where)
    if not tokens:
        raise BadInput("--where is empty")
    levels = [_Level()]
    for i, tok in enumerate(tokens):
        level = levels[-1]
        if level.want_table and not (tok.kind == "word" and tok.upper == "SELECT"):
            level.want_table = False
            if tok.kind == "(":  # a derived table or a parenthesised join
                levels.append(_Level(from_clause=True, want_table=True))
            else:
                _check_table(tokens, i)
            continue
        level.want_table = False
        if tok.kind == "(":
            levels.append(_Level())
        elif tok.kind == ")":
            levels.pop()
            if not levels:
                raise BadInput("--where has unbalanced parentheses; give one condition")
        elif tok.kind == "," and level.from_clause:
            level.want_table = True
        elif tok.kind in ("word", "quoted"):
            _check_name(tokens, i, level)
        else:
            _check_other(tok)
    if len(levels) != 1:
        raise BadInput("--where has unbalanced parentheses; give one condition")
    if levels[0].want_table:
        raise BadInput("--where ends where a table name should be")
    _Cost(tokens).check()
    return where.strip()


def _significant(tokens: list[Token], i: int, step: int) -> Token | None:
    """The nearest token before (step -1) or after (step 1) `i` that is not a comment."""
    i += step
    while 0 <= i < len(tokens):
        if tokens[i].kind not in ("comment", "xcomment"):
            return tokens[i]
        i += step
    return None


def _check_name(tokens: list[Token], i: int, level: _Level) -> None:
    tok = tokens[i]
    prev, nxt = _significant(tokens, i, -1), _significant(tokens, i, 1)
    called = nxt is not None and nxt.kind == "("
    qualified = prev is not None and prev.kind == "."
    if called and (tok.kind == "quoted" or qualified):
        shown = f"`{tok.text}`" if tok.kind == "quoted" else tok.text
        raise BadInput(
            f"--where may not call {shown}(): a function name in backquotes or with a "
            f"database name may be a stored function; {FUNCTIONS_HINT}"
        )
    if tok.kind == "quoted" or qualified:
        if qualified and tok.upper in SEQUENCE_WORDS:
            raise BadInput(f"--where may not read a sequence ({tok.text}): {ALLOWED}")
        return  # a column, table or alias, whatever its name
    word = tok.upper
    if called and word in UNBOUNDED:
        raise BadInput(
            f"--where may not call {word}(): {UNBOUNDED[word]}, and the server cannot stop "
            "one evaluation of it (no statement timeout, no KILL); write the string itself"
        )
    if called and word in FUNCTIONS:
        return
    if called and not (word in KEYWORDS and word in RESERVED):
        raise BadInput(f"--where may not call {word}(): {FUNCTIONS_HINT}")
    if (word in RESERVED and word not in KEYWORDS) or word in SEQUENCE_WORDS:
        raise BadInput(f"--where may not hold {word}: {ALLOWED}")
    if word == "SELECT":
        level.select, level.from_clause = True, False
    elif word == "FROM" and level.select:
        level.from_clause = level.want_table = True
    elif word == "JOIN" and level.from_clause:
        level.want_table = True
    elif word in _END_OF_FROM:
        level.from_clause = False


def _check_table(tokens: list[Token], i: int) -> None:
    tok = tokens[i]
    nxt = _significant(tokens, i, 1)
    _check_other(tok)
    if tok.kind not in ("word", "quoted"):
        raise BadInput(f"--where has {tok.text!r} where a table name should be")
    if nxt is not None and nxt.kind == ".":
        raise BadInput(
            f"--where may read only VICIdial's tables in this database: {tok.text}.… names "
            "another database; write the table name alone"
        )
    if tok.text.lower() not in TABLES:
        raise BadInput(
            f"--where may read only VICIdial's tables in a subquery, not {tok.text} "
            "(vicidial_list, vicidial_lists, vicidial_campaigns…; the list is under `--where` "
            "in the README)"
        )


def _check_other(tok: Token) -> None:
    if tok.kind == "xcomment":
        raise BadInput(
            "--where may not hold executable comments (/*! … */, /*M! … */): the server runs "
            "what they hold"
        )
    if tok.kind == "comment":
        raise BadInput("--where may not hold comments (#, -- , /* … */); give the condition alone")
    if tok.kind == "var":
        raise BadInput(f"--where may not use variables ({tok.text}): {ALLOWED}")


@dataclass(frozen=True)
class _Len:
    """An upper bound of a string's length: `columns` column values and `chars` characters
    more. None stands for no bound (a column value times a column value)."""

    columns: int
    chars: int

    def __add__(self, other: _Len) -> _Len:
        return _Len(self.columns + other.columns, self.chars + other.chars)

    def times(self, n: int) -> _Len:
        return _Len(self.columns * n, self.chars * n)

    def most(self, other: _Len) -> _Len:
        return _Len(max(self.columns, other.columns), max(self.chars, other.chars))


_NONE = _Len(0, 0)
_COLUMN = _Len(1, 0)
_CALL_EXTRA = 64  # what a call adds on its own: a number or a date written out
_FACTOR = {"HEX": 2, "QUOTE": 2}
_FORMATS = {"DATE_FORMAT", "TIME_FORMAT"}  # each 2-character %W may write "Wednesday"
# Calls whose result is a number, a date or a time, however long their arguments.
_NUMERIC = frozenset(
    {
        "ABS", "ACOS", "ASCII", "ASIN", "ATAN", "ATAN2", "AVG", "BIT_LENGTH", "CEIL", "CEILING",
        "CHAR_LENGTH", "CHARACTER_LENGTH", "COS", "COT", "COUNT", "CRC32", "CURDATE",
        "CURRENT_DATE", "CURRENT_TIME", "CURRENT_TIMESTAMP", "CURTIME", "DATE", "DATEDIFF",
        "DAY", "DAYOFMONTH", "DAYOFWEEK", "DAYOFYEAR", "DEGREES", "EXP", "EXTRACT", "FIELD",
        "FIND_IN_SET", "FLOOR", "HOUR", "INSTR", "INTERVAL", "ISNULL", "LENGTH", "LN", "LOCATE",
        "LOG", "LOG10", "LOG2", "MICROSECOND", "MINUTE", "MOD", "MONTH", "OCTET_LENGTH", "ORD",
        "PERIOD_ADD", "PERIOD_DIFF", "PI", "POSITION", "POW", "POWER", "QUARTER", "RADIANS",
        "REGEXP_INSTR", "ROUND", "SECOND", "SIGN", "SIN", "SQRT", "STRCMP", "SUM", "TAN",
        "TIME_TO_SEC", "TIMESTAMPDIFF", "TO_DAYS", "TO_SECONDS", "TRUNCATE", "UNIX_TIMESTAMP",
        "WEEK", "WEEKDAY", "WEEKOFYEAR", "YEAR", "YEARWEEK",
    }
)  # fmt: skip
# Calls whose result is one of their arguments (which ones: from the first index given).
_PICK = {"COALESCE": 0, "GREATEST": 0, "LEAST": 0, "IFNULL": 0, "NULLIF": 0, "IF": 1, "ELT": 1}


@dataclass
class _Arg:
    tokens: list[Token]
    length: _Len = _NONE

    def number(self) -> int | None:
        """The argument's value when it is one whole number written as such."""
        if len(self.tokens) == 1 and re.fullmatch(r"[0-9]+", self.tokens[0].text):
            return int(self.tokens[0].text)
        return None

    def literal(self) -> str | None:
        if len(self.tokens) == 1 and self.tokens[0].kind == "string":
            return self.tokens[0].text[1:-1]
        return None


class _Cost:
    """Bounds the length of every string a condition builds, call by call, over tokens that
    `check` has accepted (balanced parentheses, no comments)."""

    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.total = 0

    def check(self) -> None:
        self._args(0)

    def _add(self, chars: int, what: str) -> None:
        self.total += chars
        if self.total > TOTAL_CHARS:
            raise BadInput(
                f"--where builds more than {TOTAL_CHARS} characters of strings in all (at "
                f"{what}): the server cannot stop one evaluation of a function once it has "
                "started; write a shorter condition"
            )

    def _args(self, i: int) -> tuple[list[_Arg], int]:
        """The comma-separated arguments from `i` to the `)` that closes them (or the end);
        returns them and the index of that `)`."""
        toks = self.tokens
        args = [_Arg([])]
        while i < len(toks) and toks[i].kind != ")":
            tok = toks[i]
            if tok.kind == ",":
                args.append(_Arg([]))
                i += 1
                continue
            start = i
            length, i = self._atom(i)
            args[-1].tokens.extend(toks[start:i])
            args[-1].length = args[-1].length + length
        return args, i

    def _atom(self, i: int) -> tuple[_Len, int]:
        toks = self.tokens
        tok = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        if tok.kind == "string":
            size = len(tok.text) - 2
            if size > MAX_CHARS:
                raise BadInput(
                    f"--where holds a string of {size} characters; at most {MAX_CHARS} are allowed"
                )
            return _Len(0, size), i + 1
        if tok.kind == "number":
            return _Len(0, len(tok.text)), i + 1
        if tok.kind == "(":
            args, end = self._args(i + 1)
            return sum((a.length for a in args), _NONE), end + 1
        if tok.kind in ("word", "quoted") and nxt is not None and nxt.kind == "(":
            args, end = self._args(i + 2)
            if tok.kind == "word" and tok.upper in FUNCTIONS:
                return self._call(tok.upper, args), end + 1
            return sum((a.length for a in args), _NONE), end + 1  # IN (…), DECIMAL(10, 2)
        if tok.kind == "quoted" or (
            tok.kind == "word" and tok.upper not in KEYWORDS and tok.upper not in RESERVED
        ):
            if nxt is not None and nxt.kind == ".":
                return _NONE, i + 1  # the table of `s.lead_id`
            return _COLUMN, i + 1
        return _NONE, i + 1

    def _call(self, name: str, args: list[_Arg]) -> _Len:
        total = sum((a.length for a in args), _NONE)
        result: _Len | None
        if name in ("LPAD", "RPAD"):
            size = args[1].number() if len(args) > 1 else None
            if size is None or size > MAX_PAD:
                raise BadInput(
                    f"--where may call {name}() only with a length written as a whole number "
                    f"from 0 to {MAX_PAD} ({name}(phone_number, 10, '0')): a longer string "
                    "costs the server without bound"
                )
            result = _Len(0, size)
        elif name in ("REPLACE", "REGEXP_REPLACE") and len(args) == 3:
            subject, search, replacement = (a.length for a in args)
            found = args[1].literal() if name == "REPLACE" else None
            # REPLACE: each match of `search` becomes `replacement`; REGEXP_REPLACE: a match
            # may be empty (one at every character) and `\0` repeats the match.
            step = max(1, len(found or "")) if name == "REPLACE" else 1
            result = _times(subject, replacement, step, name == "REGEXP_REPLACE")
            if result is not None:
                result = result + search
        elif name in _NUMERIC:
            result = _NONE
        elif name in _PICK:
            result = _NONE
            for arg in args[_PICK[name] :]:
                result = result.most(arg.length)
        elif name in _FORMATS:
            result = args[-1].length.times(5)
        elif name in _FACTOR:
            result = total.times(_FACTOR[name])
        elif name == "CONCAT_WS" and args:
            result = total + args[0].length.times(len(args))
        else:
            result = total
        if result is not None:
            result = result + _Len(0, _CALL_EXTRA)
        if result is None or result.columns > MAX_COLUMNS or result.chars > MAX_CHARS:
            raise BadInput(
                f"--where may not call {name}() on these arguments: its result could be longer "
                f"than {MAX_COLUMNS} column values and {MAX_CHARS} characters, and the server "
                "cannot stop one evaluation of a function once it has started; build shorter "
                "strings"
            )
        # What the call reads counts as much as what it builds: LOCATE of two long strings
        # costs their product and returns a number.
        self._add(max(result.chars, total.chars), f"{name}()")
        return result


def _times(subject: _Len, replacement: _Len, step: int, per_char: bool) -> _Len | None:
    """A bound of `subject` with each `step` characters (each character and the whole match,
    for a regular expression) replaced by `replacement`; None when both hold column values."""
    if replacement.columns and subject.columns:
        return None
    if replacement.columns:  # a constant subject: at most `chars` matches
        n = subject.chars + 1 if per_char else subject.chars
        return replacement.times(n * (2 if per_char else 1)) + subject
    factor = max(1, -(-replacement.chars // step))
    if per_char:
        factor = replacement.chars + 2
    return subject.times(factor) + replacement
