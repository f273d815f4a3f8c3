"""One meaning per flag (issue 22): `--status`, `--list-id`, `--campaign` and the date flags
select in every command; what a restore changes is said by `--set-status`,
`--set-called-count`, `--reset-called`; the old spellings are refused naming the new one.
List flags take commas and repetition alike; ages use units that cannot be misread; the plan
and the summary show each resolved cut-off with its zone and the count selected; a status or
list that exists nowhere is refused naming the closest known ones. Both engines, through the
CLI."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

import pytest

from tests.support.db import ARCHIVE, LIVE, VDb


@pytest.fixture
def leads(vdb: VDb) -> VDb:
    """300 leads: 1–200 live, 201–300 archived."""
    vdb.seed(300)
    vdb.db.write(f"INSERT INTO {ARCHIVE} SELECT * FROM {LIVE} WHERE lead_id > 200")
    vdb.db.write(f"DELETE FROM {LIVE} WHERE lead_id > 200")
    return vdb


def ids_where(vdb: VDb, table: str, cond: str) -> list[int]:
    rows = vdb.db.rows(f"SELECT lead_id FROM {table} WHERE {cond} ORDER BY lead_id")
    return [int(r[0]) for r in rows]


def archiver_tables(vdb: VDb) -> list[str]:
    rows = vdb.db.rows(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
        " AND TABLE_NAME LIKE 'archiver\\_%'"
    )
    return [str(r[0]) for r in rows]


def assert_refused(vdb: VDb, argv: list[str], message: str) -> None:
    """Exit 2, exactly one `Error:` line, nothing written, no job row (no archiver_* table)."""
    before = vdb.checksum()
    result = vdb.cli(argv)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [f"Error: {message}"], result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert vdb.checksum() == before
    assert archiver_tables(vdb) == []


# --- one meaning per flag ----------------------------------------------------------------------


def test_dearchive_status_selects_and_sets_nothing(leads: VDb) -> None:
    """The trap measured on main: `dearchive --list-id 101 --status SALE` set the status SALE on
    every restored lead of list 101. Now it restores the SALE leads of list 101, byte-exact."""
    wanted = ids_where(leads, ARCHIVE, "list_id = 101 AND status = 'SALE'")
    others = ids_where(leads, ARCHIVE, "NOT (list_id = 101 AND status <=> 'SALE')")
    assert wanted and others
    archived = leads.row_bytes(ARCHIVE)
    result = leads.cli(
        ["dearchive", "--list-id", "101", "--status", "SALE", "--ignore-window", "--json"]
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["counts"] == {"dearchived": len(wanted)}
    assert leads.row_bytes(LIVE, wanted) == {i: archived[i] for i in wanted}
    assert leads.ids(ARCHIVE) == others


def test_dearchive_status_with_lead_ids_is_refused_naming_set_status(leads: VDb) -> None:
    assert_refused(
        leads,
        ["dearchive", "250", "--status", "NEW", "--ignore-window"],
        "--status selects leads (as in archive and verify), so it does not go with lead ids, "
        "--ids-file or --request; to set the status of the restored leads, give --set-status",
    )


def test_set_flags_change_the_restored_leads(leads: VDb) -> None:
    result = leads.cli(
        [
            "dearchive",
            "250",
            "251",
            "--set-status",
            "NEW",
            "--set-called-count",
            "0",
            "--reset-called",
            "--ignore-window",
            "--json",
        ]
    )
    assert result.exit_code == 0, result.stderr
    rows = leads.db.rows(
        f"SELECT lead_id, status, called_count, called_since_last_reset FROM {LIVE}"
        " WHERE lead_id IN (250, 251) ORDER BY lead_id"
    )
    assert rows == [(250, "NEW", 0, "N"), (251, "NEW", 0, "N")]


WITH_STATUS = (
    "--with-status is now --status: --status selects leads by status in every command "
    "(archive, dearchive, verify); comma lists and repetition both work"
)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["dearchive", "--list-id", "101", "--with-status", "SALE"], WITH_STATUS),
        (["archive", "--with-status", "NI"], WITH_STATUS),
        (["verify", "--with-status", "NI"], WITH_STATUS),
        (
            ["dearchive", "250", "--reset"],
            "--reset is now --reset-called (restored leads get called_since_last_reset='N')",
        ),
        (
            ["dearchive", "--list-id", "101", "--called-count", "0"],
            "--called-count is now --set-called-count N (it sets called_count on every restored "
            "lead)",
        ),
    ],
    ids=["dearchive-with-status", "archive-with-status", "verify-with-status", "reset", "cc"],
)
def test_old_spellings_are_refused_naming_the_new_one(
    leads: VDb, argv: list[str], message: str
) -> None:
    assert_refused(leads, [*argv, "--ignore-window"] if argv[0] != "verify" else argv, message)


# --- lists: commas and repetition --------------------------------------------------------------


@pytest.mark.parametrize(
    ("spelled", "cond"),
    [
        (["--status", "NI,DNC"], "status IN ('NI', 'DNC')"),
        (["--status", "NI", "--status", "DNC"], "status IN ('NI', 'DNC')"),
        (
            ["--status", "NI, DNC", "--list-id", "101,202"],
            "status IN ('NI','DNC') AND list_id IN (101, 202)",
        ),
        (
            ["--campaign", "SALESA,SURVEY", "--status", "SALE"],
            "list_id IN (101, 102, 201, 202) AND status = 'SALE'",
        ),
    ],
    ids=["status-commas", "status-repeated", "status-and-lists", "campaigns"],
)
def test_list_flags_take_commas_and_repetition(leads: VDb, spelled: list[str], cond: str) -> None:
    selected = ids_where(leads, LIVE, cond)
    wanted = [i for i in selected if i != 200]  # 200: the newest lead, kept live
    assert wanted
    result = leads.cli(["archive", *spelled, "--ignore-window", "--json"])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["selected"] == len(selected)
    assert summary["counts"].get("archived") == len(wanted)
    assert ids_where(leads, ARCHIVE, f"{cond} AND lead_id <= 200") == wanted
    assert ids_where(leads, LIVE, cond) == [i for i in selected if i == 200]


def test_comma_and_repeated_spellings_are_one_selection(leads: VDb) -> None:
    # The second run finds every DNC lead archived: a status the archive holds is known.
    for name, spelled in (("a", ["NI,DNC"]), ("b", ["DNC", "--status", "NI"])):
        result = leads.cli(["archive", "--status", *spelled, "--ignore-window", "--job-name", name])
        assert result.exit_code == 0, result.stderr
    rows = leads.db.rows("SELECT identity_json FROM archiver_jobs ORDER BY job_id")
    selections = [json.loads(r[0])["selection"] for r in rows]
    assert selections == [{"criteria": {"statuses": ["DNC", "NI"]}}] * 2


@pytest.mark.parametrize("value", ["NI,", ",NI", "NI,,DNC", ""])
def test_an_empty_value_in_a_list_is_refused(leads: VDb, value: str) -> None:
    assert_refused(
        leads,
        ["archive", "--status", value, "--ignore-window"],
        f"--status {value!r} holds an empty value; give values separated by commas (NI,DNC) "
        "or repeat --status",
    )


# --- unknown values ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "where"),
    [
        (["archive", "--ignore-window"], f"{LIVE} or {ARCHIVE}"),
        (["archive", "--dry-run"], f"{LIVE} or {ARCHIVE}"),
        (["dearchive", "--ignore-window"], f"{LIVE} or {ARCHIVE}"),
        (["verify"], f"{LIVE} or {ARCHIVE}"),
    ],
    ids=["archive", "archive-dry-run", "dearchive", "verify"],
)
def test_a_status_typo_is_refused_naming_the_closest(
    leads: VDb, command: list[str], where: str
) -> None:
    assert_refused(
        leads,
        [*command, "--status", "SLAE"],
        f"status SLAE is held by no lead of {where}, so it selects no lead; closest known "
        "statuses: SALE",
    )


def test_statuses_named_by_vicidial_tables_are_known(leads: VDb) -> None:
    leads.db.write(
        "CREATE TABLE vicidial_statuses (status VARCHAR(6) NOT NULL PRIMARY KEY,"
        " status_name VARCHAR(30))"
    )
    leads.db.write(
        "CREATE TABLE vicidial_campaign_statuses (status VARCHAR(6) NOT NULL,"
        " campaign_id VARCHAR(8), UNIQUE KEY (status, campaign_id))"
    )
    leads.db.write("INSERT INTO vicidial_statuses VALUES ('XFER', 'Transferred')")
    leads.db.write("INSERT INTO vicidial_campaign_statuses VALUES ('CBHOLD', 'SALESA')")
    result = leads.cli(["archive", "--status", "XFER,CBHOLD", "--ignore-window", "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["selected"] == 0
    before = leads.checksum()
    result = leads.cli(["archive", "--status", "XFR,QQQQ", "--ignore-window"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: statuses QQQQ, XFR are held by no lead of vicidial_list or vicidial_list_archive, "
        "nor named in "
        "vicidial_statuses or vicidial_campaign_statuses, so they select no lead; closest "
        "known statuses: XFER"
    )
    assert leads.checksum() == before


def test_a_status_is_matched_as_the_column_collation_does(leads: VDb) -> None:
    result = leads.cli(["verify", "--json", "--status", "sale"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["counts"]["only_live"] > 0


def test_a_list_that_exists_nowhere_is_refused_naming_the_closest(leads: VDb) -> None:
    assert_refused(
        leads,
        ["archive", "--list-id", "1010", "--ignore-window"],
        "list 1010 has no row in vicidial_lists and no lead in vicidial_list or "
        "vicidial_list_archive, so it selects no lead; closest known lists: 101",
    )
    assert_refused(
        leads,
        ["verify", "--list-id", "101,5,6"],
        "lists 5, 6 have no row in vicidial_lists and no lead in vicidial_list or "
        "vicidial_list_archive, so they select no lead; lists that exist: 101, 102, 201, 202, 999",
    )


# --- ages, dates, the cut-offs shown -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "6m",
            "'6m' could mean minutes or months; write 6mo for months (ages are given in h, "
            "d, w, mo or y)",
        ),
        (
            "30min",
            "'30min' is an age in minutes; give it in h, d, w, mo or y (e.g. 12h, 90d, "
            "12w, 6mo, 1y)",
        ),
        (
            "90s",
            "'90s' is an age in seconds; give it in h, d, w, mo or y (e.g. 12h, 90d, 12w, 6mo, 1y)",
        ),
        ("1.5mo", "'1.5mo': months and years are whole numbers (18mo, 1y)"),
    ],
)
def test_ages_that_could_be_misread_are_refused(leads: VDb, value: str, message: str) -> None:
    assert_refused(
        leads,
        ["archive", "--last-call-before", value, "--ignore-window"],
        f"--last-call-before: {message}",
    )


def server_now(vdb: VDb) -> datetime:
    now = vdb.db.scalar("SELECT CONVERT_TZ(UTC_TIMESTAMP(), '+00:00', @@global.time_zone)")
    assert isinstance(now, datetime)
    return now


def test_the_plan_shows_each_cutoff_with_its_zone_and_the_count(leads: VDb) -> None:
    before = server_now(leads)
    result = leads.cli(
        ["archive", "--last-call-before", "6mo", "--entry-before", "yesterday", "--dry-run"]
    )
    after = server_now(leads)
    assert result.exit_code == 0, result.stderr
    plan = [line for line in result.stdout.splitlines() if line.startswith("plan: ")]
    shown = {
        m.group(1): (m.group(2), m.group(3), m.group(4))
        for line in plan
        if (m := re.fullmatch(r"plan: (\w+_before): (\S+ \S+) (UTC|[+-]\d\d:\d\d) \((.*)\)", line))
    }
    assert set(shown) == {"last_call_before", "entry_before"}, plan
    yesterday = (before - timedelta(days=1)).strftime("%Y-%m-%d 00:00:00")
    assert shown["entry_before"][0] == yesterday and shown["entry_before"][2] == "yesterday"
    six_months = {
        f"{d.year - (d.month <= 6)}-{(d.month - 7) % 12 + 1:02d}-{d.day:02d} {d:%H:%M:%S}"
        for d in (before, after)
    }
    assert shown["last_call_before"][0] in six_months, (shown, six_months)
    assert shown["last_call_before"][2] == "6mo"
    count = leads.db.scalar(
        f"SELECT COUNT(*) FROM {LIVE} WHERE last_local_call_time < :l AND entry_date < :e",
        {"l": shown["last_call_before"][0], "e": yesterday},
    )
    assert f"plan: leads selected now in {LIVE}: {count}" in plan
    assert plan.index(f"plan: leads selected now in {LIVE}: {count}") > plan.index(
        next(line for line in plan if line.startswith("plan: last_call_before:"))
    )


def test_the_json_summary_has_iso_cutoffs_and_the_count(leads: VDb) -> None:
    for extra in (["--dry-run"], ["--ignore-window"]):
        result = leads.cli(
            ["archive", "--last-call-before", "2024-01-01", "--list-id", "101", "--json", *extra]
        )
        assert result.exit_code == 0, result.stderr
        summary = json.loads(result.stdout)
        offset = summary["cutoffs"]["last_call_before"][len("2024-01-01T00:00:00") :]
        assert summary["cutoffs"] == {"last_call_before": f"2024-01-01T00:00:00{offset}"}
        assert re.fullmatch(r"[+-]\d\d:\d\d", offset)
        if extra == ["--dry-run"]:
            expected = leads.db.scalar(
                f"SELECT COUNT(*) FROM {LIVE} WHERE list_id = 101"
                " AND last_local_call_time < '2024-01-01'"
            )
            assert summary["selected"] == expected > 0
        else:
            assert summary["selected"] == expected
            assert summary["counts"]["archived"] == expected - summary["counts"].get(
                "skipped_newest", 0
            )


def test_a_real_run_prints_the_cutoffs_and_count_for_a_person(leads: VDb) -> None:
    result = leads.cli(
        ["archive", "--modified-before", "today", "--status", "NI", "--ignore-window"]
    )
    assert result.exit_code == 0, result.stderr
    # Under JSON logs (cron) the `selection` event says it, before the first chunk's event.
    events = [json.loads(ln) for ln in result.stderr.splitlines() if ln.startswith("{")]
    names = [e.get("event") for e in events]
    sel = events[names.index("selection")]
    assert names.index("selection") < names.index("chunk")
    cutoff = r"\d{4}-\d\d-\d\dT00:00:00(\+00:00|[+-]\d\d:\d\d|Z)"
    assert re.fullmatch(cutoff, sel["cutoffs"]["modified_before"]), sel
    assert isinstance(sel["selected"], int) and sel["selected"] > 0
