"""Selections that name nothing (issue 15): an unknown campaign or a missing `vicidial_lists` is
bad input for archive, dearchive, verify and search (exit 2, one `Error:` line, nothing
written, no job row, no archiver_* table); a list id with no row in `vicidial_lists` that still has
leads is allowed and warned about once. Both engines."""

from __future__ import annotations

import json
from typing import Any

import pytest

from archiver.selection import Criteria
from tests.support.db import ARCHIVE, LIVE, VDb

COMMANDS = {
    "archive": ["archive", "--ignore-window"],
    "archive-dry-run": ["archive", "--dry-run"],
    "dearchive": ["dearchive", "--ignore-window"],
    "verify": ["verify"],
    "search": ["search", "7275551111"],
}
SAME = "its leads are selected all the same"
EXISTING = "campaigns that exist: OLDLEADS, SALESA, SURVEY"


def log_events(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def state(vdb: VDb) -> tuple[str, list[str]]:
    """The lead tables' checksum and the archiver_* tables that exist."""
    tables = [
        str(r[0])
        for r in vdb.db.rows(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
            " AND TABLE_NAME LIKE 'archiver\\_%' ORDER BY TABLE_NAME"
        )
    ]
    return vdb.checksum(LIVE, ARCHIVE), tables


@pytest.fixture
def leads(vdb: VDb) -> VDb:
    vdb.seed(300)
    vdb.db.write(f"INSERT INTO {ARCHIVE} SELECT * FROM {LIVE} WHERE lead_id > 200")
    vdb.db.write(f"DELETE FROM {LIVE} WHERE lead_id > 200")
    return vdb


def assert_refused(vdb: VDb, argv: list[str], message: str) -> None:
    before = state(vdb)
    result = vdb.cli(argv)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [f"Error: {message}"], result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert state(vdb) == before
    assert before[1] == []  # no archiver_* table, so no job row either


@pytest.mark.parametrize("command", COMMANDS)
def test_unknown_campaign_is_refused_naming_the_campaigns_that_exist(
    leads: VDb, command: str
) -> None:
    assert_refused(
        leads,
        [*COMMANDS[command], "--campaign", "NOPE"],
        f"campaign NOPE has no list in vicidial_lists, so it selects no lead; {EXISTING}",
    )


def test_several_unknown_campaigns_are_all_named(leads: VDb) -> None:
    assert_refused(
        leads,
        ["archive", "--campaign", "SALESA", "--campaign", "NOPE2", "--campaign", "NOPE1"],
        "campaigns NOPE1, NOPE2 have no list in vicidial_lists, so they select no lead; "
        + EXISTING,
    )


def test_the_campaigns_that_exist_are_named_up_to_20(leads: VDb) -> None:
    values = ", ".join(f"({1000 + i}, 'C{i:02d}')" for i in range(30))
    leads.db.write(f"INSERT INTO vicidial_lists (list_id, campaign_id) VALUES {values}")
    result = leads.cli(["archive", "--campaign", "NOPE"])
    assert result.exit_code == 2
    shown = ", ".join(f"C{i:02d}" for i in range(20))
    assert result.stderr.strip().endswith(
        f"campaigns that exist (the first 20 of 33): {shown}, …"
    ), result.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_campaign_without_a_vicidial_lists_table_is_refused(leads: VDb, command: str) -> None:
    leads.db.write("DROP TABLE vicidial_lists")
    assert_refused(
        leads,
        [*COMMANDS[command], "--campaign", "SALESA"],
        "--campaign needs the table vicidial_lists, which does not exist in this database; "
        "select by --list-id instead, or check --dsn",
    )


def test_campaign_is_matched_as_the_column_collation_does(leads: VDb) -> None:
    # `campaign_id IN (…)` under utf8_unicode_ci: 'salesa' is the campaign SALESA.
    result = leads.cli(["verify", "--json", "--campaign", "salesa"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["counts"]["only_live"] > 0


def test_unknown_list_id_is_allowed_and_warned_about_once(leads: VDb) -> None:
    leads.db.write(f"UPDATE {LIVE} SET list_id = 777 WHERE lead_id <= 5")
    result = leads.cli(["archive", "--ignore-window", "--list-id", "777", "--list-id", "101"])
    assert result.exit_code == 0, result.stderr
    message = f"list 777 has no row in vicidial_lists (a deleted list?); {SAME}"
    assert result.stdout == ""  # JSON logs: the warning is the event below, said once
    assert not set(leads.ids(LIVE)) & {1, 2, 3, 4, 5}  # the leads of list 777 were archived
    warned = [e for e in log_events(result.stderr) if e["event"] == "unknown_list"]
    assert [(e["level"], e["list_ids"], e["warning"]) for e in warned] == [
        ("warning", [777], message)
    ]


def test_unknown_list_id_warning_in_verify_and_search(leads: VDb) -> None:
    # An archived lead of a deleted list: a list with no lead anywhere is refused (test_flags).
    leads.db.write(f"UPDATE {ARCHIVE} SET list_id = 778 WHERE lead_id = 250")
    result = leads.cli(["verify", "--json", "--list-id", "778"])
    assert result.exit_code == 0, result.stderr
    message = f"list 778 has no row in vicidial_lists (a deleted list?); {SAME}"
    assert message in json.loads(result.stdout)["warnings"]
    result = leads.cli(["search", "--list-id", "778", "7275551111"])
    assert result.exit_code == 1
    assert [e["list_ids"] for e in log_events(result.stderr) if e["event"] == "unknown_list"] == [
        [778]
    ]


def test_check_scope_direct(leads: VDb) -> None:
    from archiver.selection import check_scope

    assert check_scope(leads.db, None) == []
    assert check_scope(leads.db, Criteria(statuses=("NEW",))) == []
    assert check_scope(leads.db, Criteria(list_ids=(101, 999), campaigns=("SURVEY",))) == []
    many: Any = Criteria(list_ids=(5, 101, 6))
    assert check_scope(leads.db, many) == [
        "lists 5, 6 have no row in vicidial_lists (deleted lists?); their leads are selected "
        "all the same"
    ]
