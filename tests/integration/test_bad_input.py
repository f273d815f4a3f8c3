"""Bad input, through the CLI, on MyISAM and on InnoDB (issue 3, and the hostile-input table of
issue 7): every case exits 2 with exactly one `Error:` line on stderr, no traceback, and changes
no row of vicidial_list or vicidial_list_archive, nor of the checkpoint tables, and creates no
table (a refusal writes nothing, DDL included; the jobs commands never create the checkpoint
tables).

Each case is data: the arguments after the global `--dsn … --log-format json`, the expected
`Error:` message (a trailing `…` makes it a prefix), optional files and an optional set-up.
Placeholders: `{file:NAME}` (a file the case writes), `{db}`, `{tmp}`, `{user}`, `{password}`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support import oracle
from tests.support.cli import invoke
from tests.support.db import ARCHIVE, LIVE, VDb, open_db, server_settings

Setup = Callable[[VDb], None]
RANGE = "lead ids are whole numbers from 1 to 4294967295"
FIX = "run `vicidial-archiver schema sync` to see the ALTER TABLE that fixes it"
JSON_RANGE = "lead ids are JSON whole numbers from 1 to 4294967295"
DATE_HINT = (
    "expected a date (2024-01-31, today, yesterday), a datetime (2024-01-31 18:00) or an age "
    "(90d, 12w, 6mo, 1y, 12h), got "
)
DUR_HINT = "expected a duration such as 90s, 30m, 2h or 1d, got "
LIMIT_HINT = (
    "more than the Lead Archive API's limit of 500; split the request, raise archive.id_limit "
    "in the config, or give the ids with --ids-file, which takes any number"
)
IDS_501 = [str(i) for i in range(1, 502)]
WHERE_RULE = (
    "a condition reads columns and calls side-effect-free functions only (see `--where` in the "
    "README)"
)
WHERE_COMMENT = "--where may not hold comments (#, -- , /* … */); give the condition alone"


@dataclass
class Case:
    id: str
    args: list[str]
    error: str
    files: dict[str, str | bytes] = field(default_factory=dict)
    setup: Setup | None = None
    dsn: str | None = None  # replaces the test database's DSN
    env: dict[str, str] = field(default_factory=dict)
    stdin: str | None = None


def _drop_archive(vdb: VDb) -> None:
    vdb.db.write(f"DROP TABLE {ARCHIVE}")


def _drop_live(vdb: VDb) -> None:
    vdb.db.write(f"DROP TABLE {LIVE}")


def _alter_archive(sql: str) -> Setup:
    def setup(vdb: VDb) -> None:
        vdb.db.write(f"ALTER TABLE {ARCHIVE} {sql}")

    return setup


def _a_job(state: str) -> Setup:
    """A finished or unfinished job that changed nothing: it archived a lead that is nowhere."""

    def setup(vdb: VDb) -> None:
        result = vdb.cli(["archive", "999999"])
        assert result.exit_code == 0, result.stderr
        if state != "done":
            vdb.db.write("UPDATE archiver_jobs SET state = :s", {"s": state})

    return setup


# --- the cases ----------------------------------------------------------------------------------

ISSUE_3 = [
    Case("archive-id-not-a-number", ["archive", "abc"], f"invalid lead id 'abc': {RANGE}"),
    Case("archive-id-zero", ["archive", "0"], f"invalid lead id '0': {RANGE}"),
    Case("archive-id-negative", ["archive", "--", "-5"], f"invalid lead id '-5': {RANGE}"),
    Case("archive-id-negative-as-option", ["archive", "-5"], "No such option '-5'."),
    Case("archive-id-too-big", ["archive", "4294967296"], f"invalid lead id '4294967296': {RANGE}"),
    Case(
        "archive-request-over-limit",
        ["archive", "--request", "{file:r.json}"],
        "{file:r.json}: lead_ids holds 501 ids, more than the limit of 500 per request; "
        "split the list",
        files={"r.json": '{"lead_ids": [' + ", ".join(IDS_501) + "]}"},
    ),
    Case(
        "archive-request-malformed",
        ["archive", "--request", "{file:r.json}"],
        "{file:r.json}: the body is not valid JSON: Expecting property name enclosed in "
        "double quotes",
        files={"r.json": '{"lead_ids": [1],'},
    ),
    Case(
        "archive-request-string-boolean",
        ["archive", "--request", "{file:r.json}"],
        '{file:r.json}: insert_leads must be true or false, got "true"',
        files={"r.json": '{"lead_ids": [1], "insert_leads": "true"}'},
    ),
    Case(
        "archive-request-float-id",
        ["archive", "--request", "{file:r.json}"],
        f"{{file:r.json}}: lead_ids[0] is 1.5: {JSON_RANGE}",
        files={"r.json": '{"lead_ids": [1.5]}'},
    ),
    Case(
        "archive-request-nested-list",
        ["archive", "--request", "{file:r.json}"],
        f"{{file:r.json}}: lead_ids[0] is [1, 2]: {JSON_RANGE}",
        files={"r.json": '{"lead_ids": [[1, 2]]}'},
    ),
    Case(
        "archive-request-unknown-key",
        ["archive", "--request", "{file:r.json}"],
        '{file:r.json}: unknown key(s) "archive_now"; known keys: delete_leads, insert_leads, '
        "lead_ids, update_leads",
        files={"r.json": '{"lead_ids": [1], "archive_now": true}'},
    ),
    Case(
        "archive-config-unknown-key",
        ["--config", "{file:c.toml}", "archive", "1"],
        "unknown config key 'archive.chunksize' in {file:c.toml}; known keys in [archive]: …",
        files={"c.toml": "[archive]\nchunksize = 100\n"},
    ),
    Case(
        "archive-config-wrong-type",
        ["--config", "{file:c.toml}", "archive", "1"],
        "config key 'archive.chunk_size' must be a whole number, got '100'",
        files={"c.toml": "[archive]\nchunk_size = '100'\n"},
    ),
    Case(
        "archive-chunk-size-0",
        ["archive", "--chunk-size", "0", "1"],
        "chunk size must be between 1 and 500, got 0",
    ),
    Case(
        "archive-chunk-size-501",
        ["archive", "--chunk-size", "501", "1"],
        "chunk size must be between 1 and 500, got 501",
    ),
    Case(
        "archive-delete-batch-501",
        ["archive", "--delete-batch", "501", "1"],
        "delete batch must be between 0 and 500 (0: one statement per chunk), got 501",
    ),
    Case(
        "archive-delete-batch-negative",
        ["archive", "--delete-batch", "-1", "1"],
        "delete batch must be between 0 and 500 (0: one statement per chunk), got -1",
    ),
    Case(
        "archive-entry-before-month-13",
        ["archive", "--entry-before", "2024-13-45"],
        f"--entry-before: {DATE_HINT}'2024-13-45'",
    ),
    Case(
        "archive-entry-before-feb-30",
        ["archive", "--entry-before", "2024-02-30"],
        f"--entry-before: {DATE_HINT}'2024-02-30'",
    ),
    Case(
        "archive-entry-before-word",
        ["archive", "--entry-before", "tomorrow"],
        f"--entry-before: {DATE_HINT}'tomorrow'",
    ),
    Case(
        "archive-max-runtime-bad-unit",
        ["archive", "--max-runtime", "2x", "1"],
        f"--max-runtime: {DUR_HINT}'2x'",
    ),
    Case(
        "archive-max-runtime-negative",
        ["archive", "--max-runtime", "-1h", "1"],
        f"--max-runtime: {DUR_HINT}'-1h'",
    ),
    Case(
        "archive-unreachable-server",
        ["archive", "1"],
        "cannot connect to MariaDB/MySQL at 127.0.0.1:1 (mysql://root@127.0.0.1:1/{db}); check "
        "that the server is running and the host and port are right",
        dsn="mysql://root@127.0.0.1:1/{db}",
    ),
    Case(
        "archive-wrong-password",
        ["archive", "1"],
        "access denied for user '{user}' on 127.0.0.1:3306; check the user and password "
        "(--dsn, ARCHIVER_DB_PASSWORD or --astguiclient)",
        dsn="mysql://{user}:wrong-{password}@127.0.0.1:3306/{db}",
    ),
    Case(
        "archive-archive-table-missing",
        ["archive", "1"],
        "archive table 'vicidial_list_archive' does not exist; create it with "
        "`vicidial-archiver schema init` (or --print to see the SQL)",
        setup=_drop_archive,
    ),
    Case(
        "archive-archive-missing-column",
        ["archive", "1"],
        f"column 'owner' of vicidial_list is missing in vicidial_list_archive; {FIX}",
        setup=_alter_archive("DROP COLUMN owner"),
    ),
    Case(
        "archive-archive-enum-missing-value",
        ["archive", "1"],
        "column 'called_since_last_reset' lacks ENUM value(s) 'D' in the target "
        f"(vicidial_list → vicidial_list_archive); {FIX}",
        setup=_alter_archive(
            "MODIFY called_since_last_reset ENUM('Y','N','Y1','Y2','Y3','Y4',"
            "'Y5','Y6','Y7','Y8','Y9','Y10') DEFAULT 'N'"
        ),
    ),
    Case(
        "archive-archive-narrower-varchar",
        ["archive", "1"],
        "column 'first_name' is varchar(30) in the source but narrower varchar(20) in the "
        f"target (vicidial_list → vicidial_list_archive); {FIX}",
        setup=_alter_archive("MODIFY first_name VARCHAR(20)"),
    ),
    Case(
        "archive-where-syntax-error",
        ["archive", "--where", "lead_id <"],
        "--where is not a valid condition: You have an error in your SQL syntax; …",
    ),
    Case(
        "archive-where-write",
        ["archive", "--where", "lead_id = 1 OR DELETE"],
        f"--where may not hold DELETE: {WHERE_RULE}",
    ),
    Case(
        "archive-where-semicolon",
        ["archive", "--where", "1=1; DROP TABLE vicidial_list"],
        "--where must be one condition: ';' ends a statement and is not allowed",
    ),
    Case(
        "archive-where-union",
        ["archive", "--where", "1=1 UNION SELECT 1"],
        f"--where may not hold UNION: {WHERE_RULE}",
    ),
    Case(
        "archive-where-sleep",
        ["archive", "--where", "SLEEP(5) = 0"],
        "--where may not call SLEEP(): allowed are side-effect-free built-in functions only …",
    ),
    Case(
        "archive-where-comment",
        ["archive", "--where", "1=1 -- AND lead_id < 5"],
        WHERE_COMMENT,
    ),
    Case(
        "archive-where-block-comment",
        ["archive", "--where", "1=1 /* x */"],
        WHERE_COMMENT,
    ),
    Case(
        "archive-two-selection-kinds",
        ["archive", "1", "--list-id", "101"],
        "give one kind of selection: lead ids, --ids-file, --request, or criteria",
    ),
    Case(
        "archive-no-selection",
        ["archive"],
        "nothing selected: give lead ids, --ids-file, --request or criteria (--list-id, "
        "--campaign, --status, --entry-before, …)",
    ),
]

HOSTILE_ARCHIVE = [
    Case(
        "archive-id-empty-in-list",
        ["archive", "1,,2"],
        "invalid lead id list '1,,2': lead ids are whole numbers separated by commas",
    ),
    Case(
        "archive-id-blank",
        ["archive", " "],
        "invalid lead id list ' ': lead ids are whole numbers separated by commas",
    ),
    Case("archive-id-decimal", ["archive", "1.5"], f"invalid lead id '1.5': {RANGE}"),
    Case("archive-id-hex", ["archive", "0x10"], f"invalid lead id '0x10': {RANGE}"),
    Case("archive-id-exponent", ["archive", "1e3"], f"invalid lead id '1e3': {RANGE}"),
    Case("archive-id-plus-sign", ["archive", "+1"], f"invalid lead id '+1': {RANGE}"),
    Case("archive-id-fullwidth-digits", ["archive", "１２"], f"invalid lead id '１２': {RANGE}"),
    Case("archive-id-superscript", ["archive", "²"], f"invalid lead id '²': {RANGE}"),
    Case("archive-id-sql", ["archive", "1 OR 1=1"], f"invalid lead id '1 OR 1=1': {RANGE}"),
    Case("archive-id-huge", ["archive", "9" * 40], f"invalid lead id '{'9' * 40}': {RANGE}"),
    Case(
        "archive-list-id-word",
        ["archive", "--list-id", "abc"],
        "invalid --list-id 'abc': list ids are whole numbers",
    ),
    Case(
        "archive-list-id-negative",
        ["archive", "--list-id", "-1"],
        "invalid --list-id '-1': list ids are whole numbers",
    ),
    Case(
        "archive-list-id-superscript",
        ["archive", "--list-id", "²"],
        "invalid --list-id '²': list ids are whole numbers",
    ),
    Case(
        "archive-list-id-empty",
        ["archive", "--list-id", ""],
        "invalid --list-id '': list ids are whole numbers",
    ),
    Case(
        "archive-chunk-size-word",
        ["archive", "--chunk-size", "x", "1"],
        "Invalid value for '--chunk-size': 'x' is not a valid integer.",
    ),
    Case(
        "archive-chunk-size-negative",
        ["archive", "--chunk-size", "-1", "1"],
        "chunk size must be between 1 and 500, got -1",
    ),
    Case("archive-entry-before-empty", ["archive", "--entry-before", ""], "nothing selected: …"),
    Case(
        "archive-last-call-before-zero-date",
        ["archive", "--last-call-before", "0000-00-00"],
        f"--last-call-before: {DATE_HINT}'0000-00-00'",
    ),
    Case(
        "archive-modified-before-huge-age",
        ["archive", "--modified-before", "99999999999d"],
        "--modified-before: '99999999999d' is too long (at most 100 years)",
    ),
    Case(
        "archive-entry-before-hour-25",
        ["archive", "--entry-before", "2024-01-01T25:00"],
        f"--entry-before: {DATE_HINT}'2024-01-01T25:00'",
    ),
    Case(
        "archive-max-runtime-empty",
        ["archive", "--max-runtime", "", "1"],
        f"--max-runtime: {DUR_HINT}''",
    ),
    Case(
        "archive-max-runtime-fullwidth",
        ["archive", "--max-runtime", "２h", "1"],
        f"--max-runtime: {DUR_HINT}'２h'",
    ),
    Case("archive-sleep-word", ["archive", "--sleep", "abc", "1"], f"--sleep: {DUR_HINT}'abc'"),
    Case(
        "archive-sleep-too-long",
        ["archive", "--sleep", "300000d", "--chunk-size", "1", "1", "2"],
        "--sleep: '300000d' is too long (at most 100 years)",
    ),
    Case(
        "archive-sleep-over-an-hour",
        ["archive", "--sleep", "2h", "1"],
        "--sleep (throttle.sleep) must be at most 3600 seconds (1h), got 7200",
    ),
    Case(
        "archive-sleep-coef-over-100",
        ["archive", "--sleep-coef", "101", "1"],
        "--sleep-coef (throttle.sleep_coef) must be at most 100, got 101.0",
    ),
    Case(
        "archive-max-runtime-endless",
        ["archive", "--max-runtime", "99999999999999999999d", "1"],
        "--max-runtime: '99999999999999999999d' is too long (at most 100 years)",
    ),
    Case(
        "archive-sleep-coef-infinite",
        ["archive", "--sleep-coef", "inf", "1"],
        "--sleep-coef (throttle.sleep_coef) must be at most 100, got inf",
    ),
    Case(
        "archive-sleep-coef-nan",
        ["archive", "--sleep-coef", "nan", "1"],
        "--sleep-coef (throttle.sleep_coef) must be at most 100, got nan",
    ),
    Case(
        "archive-sleep-coef-negative",
        ["archive", "--sleep-coef", "-1", "1"],
        "throttle values must not be negative",
    ),
    Case(
        "archive-max-threads-negative",
        ["archive", "--max-threads-running", "-1", "1"],
        "throttle values must not be negative",
    ),
    Case(
        "archive-chunk-time-negative",
        ["archive", "--chunk-time", "-5", "1"],
        "throttle values must not be negative",
    ),
    Case(
        "archive-max-replica-lag-negative",
        ["archive", "--max-replica-lag", "-1", "1"],
        f"--max-replica-lag: {DUR_HINT}'-1'",
    ),
    Case(
        "archive-max-wait-word", ["archive", "--max-wait", "x", "1"], f"--max-wait: {DUR_HINT}'x'"
    ),
    Case(
        "archive-no-guard-unknown",
        ["archive", "--no-guard", "dialer", "1"],
        "Invalid value for '--no-guard': 'dialer' is not one of 'hopper', 'auto_calls', "
        "'live_agents', 'callbacks'.",
    ),
    Case(
        "archive-job-name-too-long",
        ["archive", "--job-name", "n" * 65, "1"],
        f"invalid --job-name '{'n' * 65}': use 1 to 64 characters, not only digits",
    ),
    Case(
        "archive-job-name-empty",
        ["archive", "--job-name", "", "1"],
        "invalid --job-name '': use 1 to 64 characters, not only digits",
    ),
    Case(
        "archive-job-name-digits",
        ["archive", "--job-name", "42", "1"],
        "invalid --job-name '42': use 1 to 64 characters, not only digits",
    ),
    Case(
        "archive-report-unwritable",
        ["archive", "--report", "{tmp}/no/such/dir/r.csv", "1"],
        "cannot write the report {tmp}/no/such/dir/r.csv: No such file or directory",
    ),
    Case(
        "archive-report-is-a-directory",
        ["archive", "--report", "{tmp}", "1"],
        "cannot write the report {tmp}: Is a directory",
    ),
    Case(
        "archive-ids-file-missing",
        ["archive", "--ids-file", "{tmp}/nope.txt"],
        "cannot read {tmp}/nope.txt: No such file or directory",
    ),
    Case(
        "archive-ids-file-directory",
        ["archive", "--ids-file", "{tmp}"],
        "cannot read {tmp}: Is a directory",
    ),
    Case(
        "archive-ids-file-empty",
        ["archive", "--ids-file", "{file:ids.txt}"],
        "{file:ids.txt} holds no lead ids",
        files={"ids.txt": "\n# none\n\n"},
    ),
    Case(
        "archive-ids-file-bad-line",
        ["archive", "--ids-file", "{file:ids.txt}"],
        f"{{file:ids.txt}} line 3: 'three' is not a lead id; {RANGE}",
        files={"ids.txt": "1\n2\nthree\n"},
    ),
    Case(
        "archive-ids-file-not-utf8",
        ["archive", "--ids-file", "{file:ids.txt}"],
        "{file:ids.txt} line 2: not UTF-8 text",
        files={"ids.txt": b"1\n\xe9\n"},
    ),
    Case(
        "archive-ids-stdin-bad",
        ["archive", "--ids-file", "-"],
        f"stdin line 1: 'DROP TABLE x' is not a lead id; {RANGE}",
        stdin="DROP TABLE x\n",
    ),
    Case(
        "archive-ids-file-line-too-long",
        ["archive", "--ids-file", "{file:ids.txt}"],
        "{file:ids.txt} line 2: longer than 64 KiB; give one lead id a line, or a CSV export "
        "with a header line",
        files={"ids.txt": "1\n" + "9" * 70000 + "\n"},
    ),
    Case(
        "archive-ids-file-header-without-column",
        ["archive", "--ids-file", "{file:export.csv}"],
        "{file:export.csv} line 1: the header has no column 'lead_id' (columns found: "
        "'phone_number', 'list_id'); name the column with --ids-column",
        files={"export.csv": '"phone_number","list_id"\n"5551234","101"\n'},
    ),
    Case(
        "archive-ids-column-without-file",
        ["archive", "--ids-column", "old_id", "1"],
        "--ids-column names the column of an --ids-file; give --ids-file too",
    ),
    Case(
        "archive-request-missing",
        ["archive", "--request", "{tmp}/nope.json"],
        "cannot read {tmp}/nope.json: No such file or directory",
    ),
    Case(
        "archive-request-stdin-bad",
        ["archive", "--request", "-"],
        "stdin: the body is not valid JSON: Expecting value",
        stdin="lead_ids=1",
    ),
    Case(
        "archive-request-not-utf8",
        ["archive", "--request", "{file:r.json}"],
        "{file:r.json}: the body is not valid JSON: 'utf-8' codec can't decode byte 0xe9 in "
        "position 15: invalid continuation byte",
        files={"r.json": b'{"lead_ids": ["\xe9"]}'},
    ),
    Case(
        "archive-request-bom",
        ["archive", "--request", "{file:r.json}"],
        "{file:r.json}: the body is not valid JSON: Unexpected UTF-8 BOM …",
        files={"r.json": '\ufeff{"lead_ids": [1]}'},
    ),
    Case(
        "archive-request-array",
        ["archive", "--request", "{file:r.json}"],
        "{file:r.json}: the body must be a JSON object: "
        '{"lead_ids": [1, 2], "insert_leads": true, …}',
        files={"r.json": "[1, 2]"},
    ),
    Case(
        "archive-request-empty-ids",
        ["archive", "--request", "{file:r.json}"],
        "{file:r.json}: lead_ids must be a non-empty array of lead ids",
        files={"r.json": '{"lead_ids": []}'},
    ),
    Case(
        "archive-request-ids-string",
        ["archive", "--request", "{file:r.json}"],
        "{file:r.json}: lead_ids must be a non-empty array of lead ids",
        files={"r.json": '{"lead_ids": "1,2"}'},
    ),
    Case(
        "archive-request-boolean-id",
        ["archive", "--request", "{file:r.json}"],
        f"{{file:r.json}}: lead_ids[0] is true: {JSON_RANGE}",
        files={"r.json": '{"lead_ids": [true]}'},
    ),
    Case(
        "archive-request-null-id",
        ["archive", "--request", "{file:r.json}"],
        f"{{file:r.json}}: lead_ids[0] is null: {JSON_RANGE}",
        files={"r.json": '{"lead_ids": [null]}'},
    ),
    Case(
        "archive-request-nan-id",
        ["archive", "--request", "{file:r.json}"],
        "{file:r.json}: the body is not valid JSON: NaN is not a JSON number",
        files={"r.json": '{"lead_ids": [NaN]}'},
    ),
    Case(
        "archive-request-negative-id",
        ["archive", "--request", "{file:r.json}"],
        f"{{file:r.json}}: lead_ids[0] is -1: {JSON_RANGE}",
        files={"r.json": '{"lead_ids": [-1]}'},
    ),
    Case(
        "archive-request-zero-id",
        ["archive", "--request", "{file:r.json}"],
        f"{{file:r.json}}: lead_ids[0] is 0: {JSON_RANGE}",
        files={"r.json": '{"lead_ids": [0]}'},
    ),
    Case(
        "archive-request-sql-id",
        ["archive", "--request", "{file:r.json}"],
        f'{{file:r.json}}: lead_ids[0] is "1; DROP TABLE x": {JSON_RANGE}',
        files={"r.json": '{"lead_ids": ["1; DROP TABLE x"]}'},
    ),
    Case(
        "archive-request-null-boolean",
        ["archive", "--request", "{file:r.json}"],
        "{file:r.json}: delete_leads must be true or false, got null",
        files={"r.json": '{"lead_ids": [1], "delete_leads": null}'},
    ),
    Case(
        "archive-request-number-boolean",
        ["archive", "--request", "{file:r.json}"],
        "{file:r.json}: update_leads must be true or false, got 0",
        files={"r.json": '{"lead_ids": [1], "update_leads": 0}'},
    ),
    Case(
        "archive-request-plus-ids",
        ["archive", "1", "--request", "{file:r.json}"],
        "give one kind of selection: lead ids, --ids-file, --request, or criteria",
        files={"r.json": '{"lead_ids": [1]}'},
    ),
    Case(
        "archive-request-plus-where",
        ["archive", "--where", "1=1", "--request", "{file:r.json}"],
        "give one kind of selection: lead ids, --ids-file, --request, or criteria",
        files={"r.json": '{"lead_ids": [1]}'},
    ),
    Case(
        "archive-ids-plus-ids-file",
        ["archive", "1", "--ids-file", "{file:ids.txt}"],
        "give one kind of selection: lead ids, --ids-file, --request, or criteria",
        files={"ids.txt": "2\n"},
    ),
    Case(
        "archive-where-limit",
        ["archive", "--where", "lead_id = 1 LIMIT 1"],
        "--where is not a valid condition: You have an error in your SQL syntax; …",
    ),
    Case(
        "archive-where-unknown-column",
        ["archive", "--where", "nosuchcol = 1"],
        "--where is not a valid condition: Unknown column 'nosuchcol' in 'WHERE…",
    ),
    Case(
        "archive-where-unknown-table",
        ["archive", "--where", "lead_id IN (SELECT lead_id FROM nosuchtable)"],
        "--where may read only VICIdial's tables in a subquery, not nosuchtable …",
    ),
    Case(
        "archive-where-bind-name",
        ["archive", "--where", "status = :c_statuses"],
        f"--where holds ':', which has no place in a condition: {WHERE_RULE}",
    ),
    Case(
        "archive-where-qmark",
        ["archive", "--where", "status = ?"],
        "--where may not hold '?' placeholders: write the values in the condition",
    ),
    Case(
        "archive-where-hash-comment",
        ["archive", "--where", "1=1 # x"],
        WHERE_COMMENT,
    ),
    Case(
        "archive-where-versioned-comment",
        ["archive", "--where", "1=1 /*!50000 OR 1*/"],
        "--where may not hold executable comments (/*! … */, /*M! … */): the server runs what "
        "they hold",
    ),
    Case(
        "archive-where-benchmark",
        ["archive", "--where", "BENCHMARK(10000000, MD5(1)) = 0"],
        "--where may not call BENCHMARK(): allowed are side-effect-free built-in functions only …",
    ),
    Case(
        "archive-where-into-outfile",
        ["archive", "--where", "1=1 INTO OUTFILE '/tmp/x'"],
        f"--where may not hold INTO: {WHERE_RULE}",
    ),
    Case(
        "archive-where-for-update",
        ["archive", "--where", "1=1 FOR UPDATE"],
        f"--where may not hold FOR: {WHERE_RULE}",
    ),
    Case(
        "archive-where-get-lock",
        ["archive", "--where", "GET_LOCK('vicidial-archiver', 9)"],
        "--where may not call GET_LOCK(): allowed are side-effect-free built-in functions only …",
    ),
    Case(
        "archive-where-load-file",
        ["archive", "--where", "LOAD_FILE('/etc/passwd') IS NULL"],
        "--where may not call LOAD_FILE(): allowed are side-effect-free built-in functions only …",
    ),
    Case(
        "archive-where-drop",
        ["archive", "--where", "(DROP TABLE vicidial_list)"],
        f"--where may not hold DROP: {WHERE_RULE}",
    ),
    Case(
        "archive-where-unbalanced",
        ["archive", "--where", "1=1) OR (1=1"],
        "--where has unbalanced parentheses; give one condition",
    ),
    Case(
        "archive-where-unterminated",
        ["archive", "--where", "status = 'x"],
        "--where has an unterminated string literal",
    ),
    Case("archive-where-blank", ["archive", "--where", "   "], "--where is empty"),
    Case(
        "archive-dry-run-bad-where",
        ["archive", "--dry-run", "--where", "1=1 UNION SELECT 1"],
        f"--where may not hold UNION: {WHERE_RULE}",
    ),
    Case(
        "archive-config-missing",
        ["--config", "{tmp}/none.toml", "archive", "1"],
        "config file {tmp}/none.toml does not exist; check --config",
    ),
    Case(
        "archive-config-not-toml",
        ["--config", "{file:c.toml}", "archive", "1"],
        "config file {file:c.toml} is not valid TOML: …",
        files={"c.toml": "chunk_size ==\n"},
    ),
    Case(
        "archive-config-unknown-section",
        ["--config", "{file:c.toml}", "archive", "1"],
        "unknown config section [archiver] in {file:c.toml}; known sections: …",
        files={"c.toml": "[archiver]\nchunk_size = 1\n"},
    ),
    Case(
        "archive-config-id-limit-0",
        ["--config", "{file:c.toml}", "archive", "1"],
        "config key 'archive.id_limit' must be at least 1, got 0",
        files={"c.toml": "[archive]\nid_limit = 0\n"},
    ),
    Case(
        "archive-config-table-injection",
        ["--config", "{file:c.toml}", "archive", "1"],
        "table name 'vicidial_list`; DROP TABLE x' must be letters, digits and _ only",
        files={"c.toml": "[archive]\narchive_table = 'vicidial_list`; DROP TABLE x'\n"},
    ),
    Case(
        "archive-config-bad-window",
        ["--config", "{file:c.toml}", "archive", "1"],
        "window.start: expected a time of day such as 20:00, got '8pm'",
        files={"c.toml": "[window]\nstart = '8pm'\nend = '06:00'\n"},
    ),
    Case(
        "archive-config-bad-timezone",
        ["--config", "{file:c.toml}", "archive", "1"],
        "window.timezone: unknown time zone '../../etc/passwd'",
        files={"c.toml": "[window]\ntimezone = '../../etc/passwd'\n"},
    ),
    Case(
        "archive-config-bad-replica",
        ["--config", "{file:c.toml}", "archive", "1"],
        "throttle.replicas entry '***@replica:port/x' is not a URL; …",
        files={"c.toml": "[throttle]\nreplicas = ['mysql://u:{password}@replica:port/x']\n"},
    ),
    Case(
        "archive-config-numeric-password",
        ["--config", "{file:c.toml}", "archive", "1"],
        "config key 'database.password' must be a string, got a value of type int",
        files={"c.toml": "[database]\npassword = 271828182\n"},
    ),
    Case(
        "archive-dsn-scheme",
        ["archive", "1"],
        "--dsn scheme 'postgresql' is not supported; use mysql:// or mysql+pymysql://",
        dsn="postgresql://root:{password}@127.0.0.1/{db}",
    ),
    Case(
        "archive-dsn-port-word",
        ["archive", "1"],
        "--dsn '***@127.0.0.1:port/{db}' is not a URL; use mysql://user:password@host:3306/"
        "asterisk",
        dsn="mysql://root:{password}@127.0.0.1:port/{db}",
    ),
    Case(
        "archive-dsn-one-slash",
        ["archive", "1"],
        "--dsn '***@127.0.0.1/{db}' is not a URL; use mysql://user:password@host:3306/asterisk",
        dsn="mysql:/root:{password}@127.0.0.1/{db}",
    ),
    Case(
        "archive-dsn-unknown-database",
        ["archive", "1"],
        "database 'no_such_db_{db}' does not exist on 127.0.0.1:3306; check --dsn",
        dsn="mysql://root@127.0.0.1:3306/no_such_db_{db}",
    ),
    Case(
        "archive-astguiclient-missing",
        ["--astguiclient", "{tmp}/astguiclient.conf", "archive", "1"],
        "cannot read {tmp}/astguiclient.conf: No such file or directory; check the path and its "
        "permissions",
    ),
    Case(
        "archive-astguiclient-bad-port",
        ["--astguiclient", "{file:a.conf}", "archive", "1"],
        "{file:a.conf}: VARDB_port is not a number",
        files={"a.conf": "VARDB_pass => {password}\nVARDB_port => {password}\n"},
    ),
    Case(
        "archive-env-port",
        ["archive", "1"],
        "ARCHIVER_DB_PORT must be a port number (1–65535), got '33o6'",
        env={"ARCHIVER_DB_PORT": "33o6"},
    ),
    Case(
        "archive-log-format",
        ["--log-format", "xml", "archive", "1"],
        "Invalid value for '--log-format': 'xml' is not one of 'console', 'json'.",
    ),
    Case("archive-unknown-option", ["archive", "--force", "1"], "No such option '--force'."),
    Case(
        "archive-live-table-missing",
        ["archive", "1"],
        "table 'vicidial_list' does not exist in this database; check --dsn points at the "
        "VICIdial database",
        setup=_drop_live,
    ),
    Case(
        "archive-archive-tinytext",
        ["archive", "1"],
        "column 'comments' is varchar(255) in the source but tinytext in the target, which "
        f"holds only 255 bytes (vicidial_list → vicidial_list_archive); {FIX}",
        setup=_alter_archive("MODIFY comments TINYTEXT"),
    ),
    Case(
        "archive-archive-char",
        ["archive", "1"],
        "column 'last_name' is varchar(30) in the source but char(30) in the target "
        f"(vicidial_list → vicidial_list_archive); {FIX}",
        setup=_alter_archive("MODIFY last_name CHAR(30)"),
    ),
    Case(
        "archive-archive-not-null",
        ["archive", "1"],
        "column 'email' is NULL-able in the source but NOT NULL in the target "
        f"(vicidial_list → vicidial_list_archive); {FIX}",
        setup=_alter_archive("MODIFY email VARCHAR(70) NOT NULL DEFAULT ''"),
    ),
    Case(
        "archive-archive-unsigned-rank",
        ["archive", "1"],
        "column 'rank' is smallint(5) in the source but smallint(5) unsigned in the target "
        f"(vicidial_list → vicidial_list_archive); {FIX}",
        setup=_alter_archive("MODIFY `rank` SMALLINT(5) UNSIGNED NOT NULL DEFAULT 0"),
    ),
    Case(
        "archive-archive-decimal-scale",
        ["archive", "1"],
        "column 'gmt_offset_now' is decimal(4,2) in the source but decimal(5,3) in the target "
        f"(vicidial_list → vicidial_list_archive); {FIX}",
        setup=_alter_archive("MODIFY gmt_offset_now DECIMAL(5,3) DEFAULT '0.000'"),
    ),
    Case(
        "archive-archive-no-primary-key",
        ["archive", "1"],
        f"vicidial_list_archive has no PRIMARY KEY (lead_id); {FIX}",
        setup=_alter_archive("DROP PRIMARY KEY"),
    ),
    Case(
        "archive-archive-latin1",
        ["archive", "1"],
        "column 'status' is character set utf8mb3 in the source but latin1 in the target, which "
        f"cannot hold every character (vicidial_list → vicidial_list_archive); {FIX} (and …",
        setup=_alter_archive("CONVERT TO CHARACTER SET latin1"),
    ),
]

HOSTILE_SCHEMA = [
    Case(
        "schema-check-unknown-option", ["schema", "check", "--bogus"], "No such option '--bogus'."
    ),
    Case(
        "schema-sync-extra-argument",
        ["schema", "sync", "now"],
        "Got unexpected extra argument (now)",
    ),
    Case("schema-unknown-subcommand", ["schema", "drop"], "No such command 'drop'."),
    Case(
        "schema-check-archive-missing",
        ["schema", "check"],
        "archive table 'vicidial_list_archive' does not exist; create it with "
        "`vicidial-archiver schema init` (or --print to see the SQL)",
        setup=_drop_archive,
    ),
    Case(
        "schema-sync-archive-missing",
        ["schema", "sync", "--apply"],
        "archive table 'vicidial_list_archive' does not exist; create it with "
        "`vicidial-archiver schema init` (or --print to see the SQL)",
        setup=_drop_archive,
    ),
    Case(
        "schema-check-live-missing",
        ["schema", "check"],
        "table 'vicidial_list' does not exist in this database; check --dsn points at the "
        "VICIdial database",
        setup=_drop_live,
    ),
    Case(
        "schema-init-live-missing",
        ["schema", "init"],
        "table 'vicidial_list' does not exist; check --dsn",
        setup=_drop_live,
    ),
    Case(
        "schema-init-print-live-missing",
        ["schema", "init", "--print"],
        "table 'vicidial_list' does not exist; check --dsn",
        setup=_drop_live,
    ),
    Case(
        "schema-check-unreachable",
        ["schema", "check"],
        "cannot connect to MariaDB/MySQL at 127.0.0.1:1 (mysql://root@127.0.0.1:1/{db}); check "
        "that the server is running and the host and port are right",
        dsn="mysql://root@127.0.0.1:1/{db}",
    ),
    Case(
        "schema-sync-wrong-password",
        ["schema", "sync", "--apply"],
        "access denied for user '{user}' on 127.0.0.1:3306; check the user and password "
        "(--dsn, ARCHIVER_DB_PASSWORD or --astguiclient)",
        dsn="mysql://{user}:x{password}@127.0.0.1:3306/{db}",
    ),
    Case(
        "schema-check-config-unknown-key",
        ["--config", "{file:c.toml}", "schema", "check"],
        "unknown config key 'database.hostname' in {file:c.toml}; known keys in [database]: …",
        files={"c.toml": "[database]\nhostname = 'x'\n"},
    ),
    Case(
        "schema-init-bad-dsn",
        ["schema", "init"],
        "--dsn '***@127.0.0.1:x/{db}' is not a URL; use mysql://user:password@host:3306/asterisk",
        dsn="mysql://root:{password}@127.0.0.1:x/{db}",
    ),
]

HOSTILE_JOBS = [
    Case(
        "jobs-show-no-such-id",
        ["jobs", "show", "999"],
        "no job '999'; `vicidial-archiver jobs list` shows the jobs",
    ),
    Case(
        "jobs-show-no-such-name",
        ["jobs", "show", "nightly"],
        "no job 'nightly'; `vicidial-archiver jobs list` shows the jobs",
    ),
    Case(
        "jobs-show-empty",
        ["jobs", "show", ""],
        "no job ''; `vicidial-archiver jobs list` shows the jobs",
    ),
    Case(
        "jobs-show-superscript",
        ["jobs", "show", "²"],
        "no job '²'; `vicidial-archiver jobs list` shows the jobs",
    ),
    Case(
        "jobs-show-huge-id",
        ["jobs", "show", "9" * 30],
        f"no job '{'9' * 30}'; `vicidial-archiver jobs list` shows the jobs",
    ),
    Case(
        "jobs-show-sql",
        ["jobs", "show", "1' OR '1'='1"],
        "no job \"1' OR '1'='1\"; `vicidial-archiver jobs list` shows the jobs",
        setup=_a_job("done"),
    ),
    Case("jobs-show-negative", ["jobs", "show", "-1"], "No such option '-1'."),
    Case("jobs-show-missing-argument", ["jobs", "show"], "Missing argument 'REF'."),
    Case(
        "jobs-show-unknown-outcome",
        ["jobs", "show", "1", "--leads", "kept-changed"],
        "Invalid value for '--leads': 'kept-changed' is not one of …",
        setup=_a_job("done"),
    ),
    Case(
        "jobs-resume-no-such-id",
        ["jobs", "resume", "999"],
        "no job '999'; `vicidial-archiver jobs list` shows the jobs",
    ),
    Case(
        "jobs-resume-done",
        ["jobs", "resume", "1"],
        "job 1 is done; nothing to resume",
        setup=_a_job("done"),
    ),
    Case(
        "jobs-resume-cancelled",
        ["jobs", "resume", "1"],
        "job 1 is cancelled; nothing to resume",
        setup=_a_job("cancelled"),
    ),
    Case(
        "jobs-resume-bad-runtime",
        ["jobs", "resume", "1", "--max-runtime", "later"],
        f"--max-runtime: {DUR_HINT}'later'",
        setup=_a_job("stopped"),
    ),
    Case(
        "jobs-resume-report-unwritable",
        ["jobs", "resume", "1", "--report", "{tmp}/no/dir/r.csv"],
        "cannot write the report {tmp}/no/dir/r.csv: No such file or directory",
        setup=_a_job("stopped"),
    ),
    Case(
        "jobs-cancel-no-such-id",
        ["jobs", "cancel", "999"],
        "no job '999'; `vicidial-archiver jobs list` shows the jobs",
    ),
    Case(
        "jobs-cancel-done",
        ["jobs", "cancel", "1"],
        "job 1 is done; only an unfinished job can be cancelled",
        setup=_a_job("done"),
    ),
    Case(
        "jobs-prune-bad-age",
        ["jobs", "prune", "--older-than", "xyz"],
        f"--older-than: {DUR_HINT}'xyz'",
    ),
    Case(
        "jobs-prune-negative-age",
        ["jobs", "prune", "--older-than", "-5d"],
        f"--older-than: {DUR_HINT}'-5d'",
    ),
    Case(
        "jobs-prune-empty-age", ["jobs", "prune", "--older-than", ""], f"--older-than: {DUR_HINT}''"
    ),
    Case(
        "jobs-list-limit-word",
        ["jobs", "list", "--limit", "abc"],
        "Invalid value for '--limit': 'abc' is not a valid integer range.",
    ),
    Case(
        "jobs-list-limit-negative",
        ["jobs", "list", "--limit", "-1"],
        "Invalid value for '--limit': -1 is not in the range x>=1.",
    ),
    Case(
        "jobs-list-limit-zero",
        ["jobs", "list", "--limit", "0"],
        "Invalid value for '--limit': 0 is not in the range x>=1.",
    ),
    Case("jobs-unknown-subcommand", ["jobs", "delete", "1"], "No such command 'delete'."),
    Case(
        "jobs-list-unreachable",
        ["jobs", "list"],
        "cannot connect to MariaDB/MySQL at 127.0.0.1:1 (mysql://root@127.0.0.1:1/{db}); check "
        "that the server is running and the host and port are right",
        dsn="mysql://root@127.0.0.1:1/{db}",
    ),
    Case(
        "jobs-show-wrong-password",
        ["jobs", "show", "1"],
        "access denied for user '{user}' on 127.0.0.1:3306; check the user and password "
        "(--dsn, ARCHIVER_DB_PASSWORD or --astguiclient)",
        dsn="mysql://{user}:{password}X@127.0.0.1:3306/{db}",
        setup=_a_job("done"),
    ),
]

# Bytes that are not UTF-8 reach Python as lone surrogates ('\udcff' for 0xff): refused before
# anything is done, the option named (the arguments count from the global `--dsn`).
NOT_UTF8 = "is not valid UTF-8 text; give every argument as UTF-8"
HOSTILE_BYTES = [
    Case(
        "archive-where-not-utf8",
        ["archive", "--where", "first_name = '\udcff'", "--ignore-window"],
        f"argument 7 (the value of --where) {NOT_UTF8}",
    ),
    Case(
        "archive-job-name-not-utf8",
        ["archive", "5", "--job-name", "j\udcff", "--ignore-window"],
        f"argument 8 (the value of --job-name) {NOT_UTF8}",
    ),
    Case(
        "archive-status-not-utf8",
        ["archive", "--status=A\udcff", "--ignore-window"],
        f"argument 6 (--status) {NOT_UTF8}",
    ),
    Case(
        "archive-campaign-not-utf8",
        ["archive", "--campaign", "C\udcff", "--dry-run", "--ignore-window"],
        f"argument 7 (the value of --campaign) {NOT_UTF8}",
    ),
    Case(
        "archive-report-path-not-utf8",
        ["archive", "5", "--report", "{tmp}/r\udcff.csv", "--ignore-window"],
        f"argument 8 (the value of --report) {NOT_UTF8}",
    ),
    Case(
        "archive-id-not-utf8",
        ["archive", "5\udcff", "--ignore-window"],
        f"argument 6 {NOT_UTF8}",
    ),
    Case(
        "archive-dsn-database-not-utf8",
        ["archive", "5", "--ignore-window"],
        f"argument 2 (the value of --dsn) {NOT_UTF8}",
        dsn="mysql://root@127.0.0.1:3306/{db}\udcff",
    ),
    Case(
        "jobs-list-env-password-not-utf8",
        ["jobs", "list"],
        "environment variable ARCHIVER_DB_PASSWORD is not valid UTF-8 text; give it as UTF-8",
        env={"ARCHIVER_DB_PASSWORD": "p\udcff"},
    ),
    Case(
        "jobs-cancel-env-db-name-not-utf8",
        ["jobs", "cancel", "1"],
        "environment variable ARCHIVER_DB_NAME is not valid UTF-8 text; give it as UTF-8",
        env={"ARCHIVER_DB_NAME": "x\udcff"},
        setup=_a_job("stopped"),
    ),
]


def _sql(statement: str) -> Setup:
    def setup(vdb: VDb) -> None:
        vdb.db.write(statement)

    return setup


# --admin-log is checked before the job: the table, the columns it writes and INSERT on it.
ADMIN_LOG = [
    Case(
        "archive-admin-log-no-table",
        ["archive", "5", "--admin-log", "--ignore-window"],
        "--admin-log: there is no table vicidial_admin_log in {db}; run without --admin-log, "
        "or against VICIdial's database",
        setup=_sql("DROP TABLE vicidial_admin_log"),
    ),
    Case(
        "archive-admin-log-missing-column",
        ["archive", "5", "--admin-log", "--ignore-window"],
        "--admin-log: vicidial_admin_log cannot take the row VICIdial writes (Unknown column "
        "'event_notes' in 'INSERT INTO'); run without --admin-log, or check the table",
        setup=_sql("ALTER TABLE vicidial_admin_log DROP COLUMN event_notes"),
    ),
]

# Numbers too long for int(), which raises ValueError past 4300 digits: each one is refused as
# the shorter bad number is, never a traceback.
LONG = "9" * 5000
LONG_NUMBERS = [
    Case("archive-id-5000-digits", ["archive", LONG], f"invalid lead id '{LONG}': {RANGE}"),
    Case(
        "archive-id-5000-digits-in-a-list",
        ["archive", f"1,{LONG}"],
        f"invalid lead id '{LONG}': {RANGE}",
    ),
    Case(
        "archive-ids-file-5000-digits",
        ["archive", "--ids-file", "{file:ids.txt}"],
        f"{{file:ids.txt}} line 2: '{LONG}' is not a lead id; {RANGE}",
        files={"ids.txt": f"1\n{LONG}\n"},
    ),
    Case(
        "archive-ids-file-csv-5000-digits",
        ["archive", "--ids-file", "{file:ids.csv}"],
        f"{{file:ids.csv}} line 2: '{LONG}' is not a lead id; {RANGE}",
        files={"ids.csv": f"lead_id,phone\n{LONG},555\n"},
    ),
    Case(
        "archive-list-id-5000-digits",
        ["archive", "--list-id", LONG, "--ignore-window"],
        f"invalid --list-id '{LONG}': list ids are whole numbers up to 18446744073709551615",
    ),
    Case(
        "archive-dsn-port-5000-digits",
        ["archive", "1"],
        f"--dsn: port {LONG} is not a TCP port (1–65535)",
        dsn=f"mysql://root@127.0.0.1:{LONG}/{{db}}",
    ),
    Case(
        "archive-env-port-5000-digits",
        ["archive", "1"],
        f"ARCHIVER_DB_PORT must be a port number (1–65535), got '{LONG}'",
        env={"ARCHIVER_DB_PORT": LONG},
    ),
    Case(
        "archive-astguiclient-port-5000-digits",
        ["--astguiclient", "{file:a.conf}", "archive", "1"],
        f"{{file:a.conf}}: VARDB_port must be a TCP port (1–65535), got {LONG}",
        files={"a.conf": f"VARDB_port => {LONG}\n"},
    ),
    Case(
        "archive-config-5000-digits",
        ["--config", "{file:c.toml}", "archive", "1"],
        "config file {file:c.toml} is not valid TOML: Exceeds the limit (4300 digits) for "
        "integer string conversion: value has 5000 digits",
        files={"c.toml": f"[archive]\nchunk_size = {LONG}\n"},
    ),
    Case(
        "jobs-show-5000-digits",
        ["jobs", "show", LONG],
        f"no job '{LONG}'; `vicidial-archiver jobs list` shows the jobs",
        setup=_a_job("done"),
    ),
    Case(
        "jobs-resume-5000-digits",
        ["jobs", "resume", LONG],
        f"no job '{LONG}'; `vicidial-archiver jobs list` shows the jobs",
        setup=_a_job("stopped"),
    ),
    Case(
        "jobs-cancel-5000-digits",
        ["jobs", "cancel", LONG],
        f"no job '{LONG}'; `vicidial-archiver jobs list` shows the jobs",
        setup=_a_job("stopped"),
    ),
]

CASES = (
    ISSUE_3
    + HOSTILE_ARCHIVE
    + HOSTILE_SCHEMA
    + HOSTILE_JOBS
    + HOSTILE_BYTES
    + ADMIN_LOG
    + LONG_NUMBERS
)


def test_case_ids_are_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert all(c.id.split("-")[0] in ("archive", "schema", "jobs") for c in CASES)


# --- running a case --------------------------------------------------------------------------


@pytest.fixture
def throwaway_user(vdb: VDb) -> Iterator[dict[str, str]]:
    """A user with a password and rights on the test database, to be refused a wrong one."""
    user = f"va_bad_{uuid.uuid4().hex[:8]}"
    password = f"Pw{uuid.uuid4().hex[:12]}"
    vdb.db.write(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'")
    vdb.db.write(f"GRANT ALL ON `{vdb.name}`.* TO '{user}'@'%'")
    try:
        yield {"user": user, "password": password}
    finally:
        admin = open_db(server_settings())
        admin.write(f"DROP USER IF EXISTS '{user}'@'%'")
        admin.conn.close()


def snapshot(vdb: VDb) -> dict[str, list[tuple[Any, ...]]]:
    """Every row, byte-exact, of the lead tables and the checkpoint tables that exist (each
    table read with its own columns, so a drifted archive can be read too)."""
    tables = [
        str(r[0])
        for r in vdb.db.rows(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND "
            "(TABLE_NAME IN :t OR TABLE_NAME LIKE 'archiver\\_%') ORDER BY TABLE_NAME",
            {"t": [LIVE, ARCHIVE]},
        )
    ]
    out = {}
    for table in tables:
        out[table] = oracle.table_rows(vdb.db, table, oracle.columns_of(vdb.db, table))
    return out


def _fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


def run_case(vdb: VDb, tmp_path: Path, case: Case, extra: dict[str, str]) -> tuple[Any, str]:
    values = {"db": vdb.name, "tmp": str(tmp_path), **extra}
    for name in case.files:
        values[f"file:{name}"] = str(tmp_path / name)
    for name, content in case.files.items():
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(_fill(content, values), encoding="utf-8")
    dsn = _fill(case.dsn, values) if case.dsn else vdb.dsn
    argv = ["--dsn", dsn, "--log-format", "json", *(_fill(a, values) for a in case.args)]
    result = invoke(argv, input=case.stdin, env=case.env)
    return result, _fill(case.error, values)


def seed_both_tables(vdb: VDb) -> None:
    vdb.seed(20)
    vdb.db.write(f"INSERT INTO {ARCHIVE} SELECT * FROM {LIVE} WHERE lead_id <= 5")
    vdb.db.write(f"DELETE FROM {LIVE} WHERE lead_id <= 5")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_exits_2_with_one_error_line_and_changes_nothing(
    vdb: VDb, tmp_path: Path, case: Case, request: pytest.FixtureRequest
) -> None:
    seed_both_tables(vdb)
    extra: dict[str, str] = {}
    if "{user}" in (case.dsn or "") or "{password}" in case.error + str(case.files) + (
        case.dsn or ""
    ):
        extra = request.getfixturevalue("throwaway_user")
    if case.setup is not None:
        case.setup(vdb)
    before = snapshot(vdb)
    result, expected = run_case(vdb, tmp_path, case, extra)

    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    message = errors[0][len("Error: ") :]
    if expected.endswith("…"):
        assert message.startswith(expected[:-1]), message
    else:
        assert message == expected
    if extra.get("password"):  # neither the right password nor the wrong one is ever shown
        assert extra["password"] not in result.stderr + result.stdout
    if case.args[:1] == ["archive"] or "archive" in case.args[2:3]:
        assert result.stdout == ""  # nothing ran: no summary
    after = snapshot(vdb)
    for table, rows in before.items():
        assert after.get(table) == rows, f"{table} changed"
    assert set(after) == set(before), "a refusal created tables"  # no DDL either


# --- bytes that are not UTF-8, through a real process --------------------------------------------


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            [b"archive", b"--where", b"first_name = '\xff\xfe'", b"--ignore-window"],
            f"argument 7 (the value of --where) {NOT_UTF8}",
        ),
        (
            [b"archive", b"5", b"--job-name", b"j\xff", b"--ignore-window", b"--no-delete"],
            f"argument 8 (the value of --job-name) {NOT_UTF8}",
        ),
        ([b"jobs", b"show", b"\xff"], f"argument 7 {NOT_UTF8}"),
    ],
    ids=["where", "job-name", "jobs-show"],
)
def test_argument_bytes_not_utf8_are_refused_before_anything(
    vdb: VDb, args: list[bytes], error: str
) -> None:
    """Python decodes such bytes as surrogates, which failed later with a UnicodeEncodeError
    traceback, some after the checkpoint tables were created."""
    import subprocess

    from tests.support.proc import BIN, child_env

    seed_both_tables(vdb)
    before = snapshot(vdb)
    head = [BIN.encode(), b"--dsn", vdb.dsn.encode(), b"--log-format", b"json"]
    p = subprocess.run([*head, *args], capture_output=True, env=child_env(), timeout=60)
    stderr = p.stderr.decode("utf-8", "replace")
    assert p.returncode == 2, stderr
    assert "Traceback" not in stderr
    assert [line for line in stderr.splitlines() if line.startswith("Error:")] == [
        f"Error: {error}"
    ], stderr
    assert p.stdout == b""
    assert snapshot(vdb) == before
