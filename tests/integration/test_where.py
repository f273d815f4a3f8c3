"""`--where` through the CLI, on MyISAM and on InnoDB (issue 14, findings 1 and 14): a condition
that calls a function off the allow-list, or that fails only when the server evaluates it, is
refused with exit 2 before anything is written: no checkpoint table, no job row, no lead moved."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.support.db import VDb

SEEDED = 20


def checkpoint_tables(vdb: VDb) -> list[str]:
    return [
        str(r[0])
        for r in vdb.db.rows(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
            " AND TABLE_NAME LIKE 'archiver\\_%'"
        )
    ]


def error_lines(result: Any) -> list[str]:
    assert "Traceback" not in result.stderr + result.stdout
    return [line for line in result.stderr.splitlines() if line.startswith("Error:")]


@pytest.mark.parametrize(
    ("args", "refused"),
    [
        (["--where", "`SLEEP`(2)=0", "--dry-run"], "`SLEEP`"),
        (["--where", "list_id = 102 AND `RELEASE_ALL_LOCKS`() >= 0"], "`RELEASE_ALL_LOCKS`"),
        (["--where", "MASTER_GTID_WAIT('0-1-100', 10) = 0"], "MASTER_GTID_WAIT"),
    ],
    ids=["sleep-dry-run", "release-all-locks", "master-gtid-wait"],
)
def test_where_calling_a_function_off_the_allow_list_writes_nothing(
    vdb: VDb, args: list[str], refused: str
) -> None:
    vdb.seed(SEEDED)
    before = vdb.checksum()

    result = vdb.cli(["archive", *args])

    assert result.exit_code == 2, (result.stdout, result.stderr)
    errors = error_lines(result)
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"Error: --where may not call {refused}()"), errors[0]
    assert "allowed" in errors[0]
    assert result.stdout == ""
    assert checkpoint_tables(vdb) == []
    assert vdb.checksum() == before


def test_where_next_value_for_a_sequence_is_refused_and_the_sequence_stays(vdb: VDb) -> None:
    vdb.seed(SEEDED)
    vdb.db.write("CREATE SEQUENCE `seq`")
    before = vdb.checksum()

    result = vdb.cli(["archive", "--dry-run", "--where", "lead_id < NEXT VALUE FOR seq"])

    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert error_lines(result) == [
        "Error: --where may not hold FOR: a condition reads columns and calls side-effect-free "
        "functions only (see `--where` in the README)"
    ]
    assert vdb.db.scalar("SELECT NEXTVAL(`seq`)") == 1  # never advanced
    assert checkpoint_tables(vdb) == []
    assert vdb.checksum() == before


RUNTIME_ERROR = "lead_id = (SELECT lead_id FROM vicidial_lists JOIN vicidial_list USING(list_id))"


@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
def test_where_that_fails_only_when_run_is_refused_before_the_job_row(
    vdb: VDb, dry_run: bool
) -> None:
    vdb.seed(SEEDED)
    before = vdb.checksum()

    result = vdb.cli(["archive", "--where", RUNTIME_ERROR, *(["--dry-run"] if dry_run else [])])

    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert error_lines(result) == [
        "Error: --where fails when the server runs it: Subquery returns more than 1 row; "
        "fix the condition and run again"
    ]
    assert result.stdout == ""
    assert checkpoint_tables(vdb) == []
    assert vdb.checksum() == before


def test_where_that_fails_only_when_run_leaves_no_job_row_beside_earlier_jobs(vdb: VDb) -> None:
    vdb.seed(SEEDED)
    assert vdb.cli(["archive", "999999"]).exit_code == 0  # the checkpoint tables exist now
    jobs = vdb.db.rows("SELECT * FROM archiver_jobs")
    before = vdb.checksum()

    result = vdb.cli(["archive", "--where", RUNTIME_ERROR])

    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert len(error_lines(result)) == 1
    assert vdb.db.rows("SELECT * FROM archiver_jobs") == jobs
    assert vdb.checksum() == before


def test_where_that_selects_nothing_still_runs(vdb: VDb) -> None:
    """The run-time check reads at most one row; a condition matching none is no error."""
    vdb.seed(SEEDED)

    result = vdb.cli(["archive", "--json", "--where", "list_id = 424242 AND status = 'NEW'"])

    assert result.exit_code == 0, result.stderr
    assert vdb.count("vicidial_list") == SEEDED


def test_every_allowed_function_is_a_builtin_of_the_server(vdb: VDb) -> None:
    """A name on the allow-list that the server does not have would resolve to a stored
    function of that name: each must be the server's own (called with no arguments, a
    builtin answers or complains about its arguments; an unknown name is 1305/1630)."""
    from archiver.where import FUNCTIONS

    unknown = []
    for name in sorted(FUNCTIONS):
        try:
            vdb.db.rows(f"SELECT {name}()")
        except Exception as exc:
            if "does not exist" in str(exc):
                unknown.append(name)
    assert unknown == []


def test_every_word_the_server_reserves_is_known_as_reserved(vdb: VDb) -> None:
    """A word that cannot be a bare column name (it is reserved, or it is the server's own
    value, like CURRENT_USER) must be on RESERVED, so a new keyword is refused, not taken for a
    column."""
    from archiver.where import RESERVED

    words = [str(r[0]).upper() for r in vdb.db.rows("SELECT WORD FROM information_schema.KEYWORDS")]
    special = []
    for word in sorted(w for w in set(words) if re.fullmatch(r"[A-Z_][A-Z0-9_]*", w)):
        try:
            value = vdb.db.scalar(f"SELECT {word} FROM (SELECT 'column' AS `{word}`) AS t")
        except Exception:
            value = None
        if value != "column":
            special.append(word)
    assert len(special) > 200
    assert sorted(set(special) - RESERVED) == []


@pytest.mark.parametrize(
    "condition",
    [
        "entry_date < NOW() - INTERVAL 90 DAY AND comments = 'SLEEP(1)'",
        "list_id IN (SELECT list_id FROM vicidial_lists WHERE campaign_id = 'SALESA')",
        "NOT EXISTS (SELECT 1 FROM vicidial_hopper h WHERE h.lead_id = s.lead_id)",
        "lead_id = (SELECT MAX(lead_id) FROM vicidial_list WHERE list_id = 101)",
        "CAST(called_count AS DECIMAL(10, 2)) >= 0 AND EXTRACT(YEAR FROM entry_date) > 1999",
        # string functions whose result stays short (issue 21, finding 11)
        "LPAD(phone_number, 10, '0') <> '' AND REPLACE(REPLACE(phone_number, '-', ''), ' ', '')"
        " <> 'x' AND LENGTH(REGEXP_REPLACE(phone_number, '[^0-9]', '')) >= 0",
        "DATE_FORMAT(entry_date, '%Y-%m') <> '' AND CONCAT(first_name, ' ', last_name) <> 'x'",
    ],
)
def test_where_conditions_on_the_allow_list_run(vdb: VDb, condition: str) -> None:
    vdb.seed(SEEDED)

    result = vdb.cli(["archive", "--dry-run", "--json", "--where", condition])

    assert result.exit_code == 0, result.stderr
    assert error_lines(result) == []


def test_where_check_that_runs_out_of_time_is_skipped_with_a_warning(vdb: VDb) -> None:
    """A condition no row matches makes the check read the whole table; past its bound the
    check gives up and says so, and the run goes on (a table of a billion rows here: a view
    over MariaDB's sequence engine, which no --where could name itself)."""
    from types import SimpleNamespace

    from structlog.testing import capture_logs

    from archiver.jobtypes import ARCHIVE, JobSpec
    from archiver.runner import Runner
    from archiver.selection import Criteria, Selection

    vdb.db.write("CREATE VIEW `big` AS SELECT seq AS lead_id FROM seq_1_to_1000000000")
    crit = Criteria(where="lead_id + 0 < 0").resolve()
    runner = Runner(vdb.db, vdb.settings, JobSpec(ARCHIVE, Selection(criteria=crit)))

    with capture_logs() as logs:
        runner._check_where(SimpleNamespace(s="`big`"))  # type: ignore[arg-type]

    assert runner.warnings == ["--where was not tried on a row: no matching row within 5s"]
    assert [e["event"] for e in logs if e["event"] != "sql"] == ["where_unchecked"]


UNBOUNDED = [
    ("lead_id > 0 AND LENGTH(REGEXP_REPLACE(REPEAT('a', 40000), 'a', 'bb')) = 7", "REPEAT()"),
    ("SPACE(20000000) = ''", "SPACE()"),
    ("LPAD(phone_number, 16000000, '0') <> ''", "LPAD()"),
    ("REPLACE(REPLACE(LPAD('', 255, 'a'), 'a', LPAD('', 255, 'a')), 'a', 'bb') = ''", "REPLACE()"),
]


@pytest.mark.parametrize(("condition", "refused"), UNBOUNDED, ids=[r for _, r in UNBOUNDED])
def test_where_that_can_build_an_unbounded_string_is_refused_before_it_is_sent(
    vdb: VDb, condition: str, refused: str
) -> None:
    """Issue 21, finding 11: one evaluation of such a call runs past max_statement_time and
    KILL; the condition is refused (naming the call) before any statement carries it."""
    vdb.seed(SEEDED)
    before = vdb.checksum()

    result = vdb.cli(["--verbose", "archive", "--dry-run", "--where", condition])

    assert result.exit_code == 2, (result.stdout, result.stderr)
    errors = error_lines(result)
    assert len(errors) == 1 and refused in errors[0], result.stderr
    assert "Error: --where may" in errors[0]
    assert condition[:20] not in result.stderr.replace(errors[0], "")  # never sent
    assert checkpoint_tables(vdb) == []
    assert vdb.checksum() == before


def test_statement_timeout_is_set_before_the_first_statement_that_carries_the_where(
    vdb: VDb,
) -> None:
    """Issue 21, finding 11: the --where check's EXPLAIN ran before max_statement_time was set."""
    vdb.seed(SEEDED)

    result = vdb.cli(["--verbose", "archive", "--dry-run", "--where", "comments <> 'zz'"])

    assert result.exit_code == 0, result.stderr
    sent = [
        str(json.loads(line)["sql"])
        for line in result.stderr.splitlines()
        if line.startswith("{") and '"event": "sql"' in line
    ]
    first_where = next(i for i, s in enumerate(sent) if "'zz'" in s)
    timeout = next(i for i, s in enumerate(sent) if "max_statement_time" in s)
    assert timeout < first_where, sent[: first_where + 1]
