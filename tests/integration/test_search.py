"""search: VICIdial's lead_search lines, byte for byte (`--vicidial`, `--user`, `--header`);
the leads of a number in both tables, where each one is (the default, and `--json`). Both
engines."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from archiver import search
from archiver.db import Db
from tests.support.db import ARCHIVE, LIVE, VDb

# lead_id → phone_number, live and archive.
LIVE_LEADS = {
    3: "7275551111",
    5: "8135552222",
    7: "7275551111",
    12: "7275551111",
    14: "123456",
    15: "123456789012345678",
    16: "12345",
    18: "7275554444",
    19: "7275554444 ",
}
ARCHIVED_LEADS = {20: "3055553333", 21: "3055553333", 30: "7275551111"}


def insert(vdb: VDb, table: str, leads: Mapping[int, str]) -> None:
    values = ", ".join(f"({lead}, '{phone}', 101)" for lead, phone in leads.items())
    vdb.db.write(f"INSERT INTO `{table}` (lead_id, phone_number, list_id) VALUES {values}")


@pytest.fixture
def sdb(vdb: VDb) -> VDb:
    insert(vdb, LIVE, LIVE_LEADS)
    insert(vdb, ARCHIVE, ARCHIVED_LEADS)
    return vdb


def run(vdb: VDb, *args: str) -> tuple[int, str]:
    result = vdb.cli(["search", "--user", "admin", *args])
    return result.exit_code, result.stdout


def test_one_number_highest_lead_id_first(sdb: VDb) -> None:
    assert run(sdb, "7275551111") == (0, "7275551111|3|12-7-3\n")


def test_miss_prints_zero_line_in_the_order_given(sdb: VDb) -> None:
    assert run(sdb, "7275551111,9995550000,8135552222") == (
        0,
        "7275551111|3|12-7-3\n9995550000|0|\n8135552222|1|5\n",
    )


def test_header_with_separators(sdb: VDb) -> None:
    assert run(sdb, "--header", "8135552222,9995550000") == (
        0,
        "search_key|records_found|lead_ids\n8135552222|1|5\n9995550000|0|\n",
    )


def test_no_match_at_all(sdb: VDb) -> None:
    assert run(sdb, "999-555-0000,1112223333") == (
        1,
        "ERROR: lead_search NO MATCHES FOUND IN THE SYSTEM: |admin|||9995550000,1112223333\n",
    )
    # the header is part of the results, not of the error line
    assert run(sdb, "--header", "9995550000") == (
        1,
        "ERROR: lead_search NO MATCHES FOUND IN THE SYSTEM: |admin|||9995550000\n",
    )


def test_formatted_input(sdb: VDb) -> None:
    assert run(sdb, "(727) 555-1111") == (0, "7275551111|3|12-7-3\n")
    assert run(sdb, "727-555-1111,813.555.2222") == (0, "7275551111|3|12-7-3\n8135552222|1|5\n")


def test_too_short_and_too_long_are_skipped_silently(sdb: VDb) -> None:
    # 5 and 19 digits are skipped (a lead holds 12345); 6 and 18 digits are searched.
    assert run(sdb, "12345,123456,8135552222,1234567890123456789,123456789012345678") == (
        0,
        "123456|1|14\n8135552222|1|5\n123456789012345678|1|15\n",
    )


def test_no_valid_number(sdb: VDb) -> None:
    assert run(sdb, "12345,abc") == (
        2,
        "ERROR: lead_search NO VALID SEARCH METHOD - admin|PHONE_NUMBER|(0)|(0)|12345,(0)\n",
    )
    assert run(sdb, "") == (
        2,
        "ERROR: lead_search NO VALID SEARCH METHOD - admin|PHONE_NUMBER|(0)|(0)|(0)\n",
    )


def test_a_number_given_twice_prints_twice(sdb: VDb) -> None:
    assert run(sdb, "7275551111,8135552222,727 555 1111") == (
        0,
        "7275551111|3|12-7-3\n8135552222|1|5\n7275551111|3|12-7-3\n",
    )


def test_records_caps_ids_per_number_not_per_query(sdb: VDb) -> None:
    # VICIdial's single LIMIT 2 would leave 8135552222 with nothing; the cap is per number.
    assert run(sdb, "--records", "2", "7275551111,8135552222") == (
        0,
        "7275551111|2|12-7\n8135552222|1|5\n",
    )
    assert run(sdb, "--records", "1", "7275551111") == (0, "7275551111|1|12\n")
    code, _ = run(sdb, "--records", "0", "7275551111")
    assert code == 2


def test_archived_searches_the_archive_only(sdb: VDb) -> None:
    assert run(sdb, "--archived", "3055553333,7275551111,8135552222") == (
        0,
        "3055553333|2|21-20\n7275551111|1|30\n8135552222|0|\n",
    )
    assert run(sdb, "3055553333") == (
        1,
        "ERROR: lead_search NO MATCHES FOUND IN THE SYSTEM: |admin|||3055553333\n",
    )


def test_matches_as_the_column_collation_does(sdb: VDb) -> None:
    # VICIdial's `phone_number IN (…)` under utf8_unicode_ci ignores trailing spaces.
    assert run(sdb, "7275554444") == (0, "7275554444|2|19-18\n")


def test_user_defaults_to_the_os_user(sdb: VDb, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "osuser")
    result = sdb.cli(["search", "--vicidial", "9995550000"])
    assert (result.exit_code, result.stdout) == (
        1,
        "ERROR: lead_search NO MATCHES FOUND IN THE SYSTEM: |osuser|||9995550000\n",
    )


def test_missing_archive_table_is_a_clear_error(sdb: VDb) -> None:
    sdb.db.write(f"DROP TABLE `{ARCHIVE}`")
    result = sdb.cli(["search", "--archived", "7275551111"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Error: table 'vicidial_list_archive' does not exist" in result.stderr


class CountingDb(Db):
    def __init__(self, db: Db) -> None:
        super().__init__(db.conn)
        self.statements: list[str] = []

    def run(self, sql: str, params: Mapping[str, Any] | None = None, *, write: bool = False) -> Any:
        self.statements.append(sql)
        return super().run(sql, params, write=write)


def oracle(vdb: VDb, numbers: Sequence[str]) -> str:
    """The expected lines, one plain query per number (what the tool must not do)."""
    lines = []
    for n in numbers:
        ids = [
            int(r[0])
            for r in vdb.db.rows(
                "SELECT lead_id FROM vicidial_list WHERE phone_number = :p ORDER BY lead_id DESC",
                {"p": n},
            )
        ]
        lines.append(f"{n}|{len(ids)}|{'-'.join(map(str, ids))}\n")
    return "".join(lines)


def test_a_thousand_numbers_in_one_call_set_based(vdb: VDb) -> None:
    vdb.seed(6000)
    # Some numbers shared by several leads, so the ids lists are more than one long.
    vdb.db.write("UPDATE vicidial_list SET phone_number = '8005550100' WHERE lead_id % 500 = 7")
    phones = [
        str(r[0])
        for r in vdb.db.rows(
            "SELECT phone_number FROM vicidial_list WHERE lead_id % 6 = 0"
            " ORDER BY lead_id LIMIT 900"
        )
    ]
    numbers = [*phones, *(f"999{i:07d}" for i in range(97)), "8005550100", phones[0], phones[1]]
    assert len(numbers) == 1000
    text = ",".join(numbers)
    result = vdb.cli(["search", "--user", "admin", text])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == oracle(vdb, numbers)
    assert "8005550100|12|5507-5007-" in result.stdout

    db = CountingDb(vdb.db)
    res = search.search(db, LIVE, text, user="admin")
    assert "".join(line + "\n" for line in res.lines) == result.stdout
    lookups = [s for s in db.statements if "phone_number` IN" in s]
    assert len(set(numbers)) > 500
    assert len(lookups) == 2  # the distinct numbers, 500 a statement


def test_lookup_uses_the_phone_number_index(vdb: VDb) -> None:
    vdb.seed(5000)
    sql = search.search_sql(LIVE, 2)
    rows = vdb.db.rows("EXPLAIN " + sql, {"n0": "7275551111", "n1": "8135552222", "cap": 10})
    keys = {str(r[5]) for r in rows if r[2] == LIVE}
    assert keys & {"phone_number", "phone_list"}, rows


# --- issue 15: vendor lead codes, search_location, VICIdial's echo ---------------------------

# Leads 1–300: vendor_lead_code CRM<n % 50>, phone 727555000<n % 10>, list ELT(1 + n % 4):
# 101, 102 (campaign SALESA), 201 (SURVEY), 104 (no row in vicidial_lists). Leads 57 and 58
# are archived. So CRM7 is 7, 107, 157, 207, 257 live, as in the observed output.
CRM_LISTS = (101, 102, 201, 104)
CRM_ARCHIVED = (57, 58)


def crm_list(n: int) -> int:
    return CRM_LISTS[n % 4]


@pytest.fixture
def crm(vdb: VDb) -> VDb:
    vdb.db.write(
        f"INSERT INTO `{LIVE}` (lead_id, vendor_lead_code, phone_number, list_id)"
        " SELECT seq, CONCAT('CRM', seq % 50), CONCAT('727555000', seq % 10),"
        " ELT(1 + seq % 4, 101, 102, 201, 104) FROM seq_1_to_300"
    )
    vdb.db.write(f"INSERT INTO `{ARCHIVE}` SELECT * FROM `{LIVE}` WHERE lead_id IN (57, 58)")
    vdb.db.write(f"DELETE FROM `{LIVE}` WHERE lead_id IN (57, 58)")
    return vdb


def run_as(vdb: VDb, *args: str) -> tuple[int, str]:
    result = vdb.cli(["search", "--user", "6666", *args])
    return result.exit_code, result.stdout


def test_vendor_lead_code_as_vicidial_printed_it(crm: VDb) -> None:
    assert run_as(crm, "--vendor-lead-code", "CRM7,CRM8,NOPE") == (
        0,
        "CRM7|5|257-207-157-107-7\nCRM8|5|258-208-158-108-8\nNOPE|0|\n",
    )


def test_vendor_lead_code_no_match_at_all(crm: VDb) -> None:
    assert run_as(crm, "--vendor-lead-code", "NOPE1,NOPE2") == (
        1,
        "ERROR: lead_search NO MATCHES FOUND IN THE SYSTEM: |6666||NOPE1,NOPE2|\n",
    )
    # the echo is the codes after VICIdial's filter: `;`, `#`, `"` gone, `+` a space
    assert run_as(crm, "--vendor-lead-code", 'NO"PE;1,NO+PE#2') == (
        1,
        "ERROR: lead_search NO MATCHES FOUND IN THE SYSTEM: |6666||NOPE1,NO PE2|\n",
    )


def test_vendor_lead_code_in_the_archive(crm: VDb) -> None:
    assert run_as(crm, "--archived", "--vendor-lead-code", "CRM7,CRM8,NOPE") == (
        0,
        "CRM7|1|57\nCRM8|1|58\nNOPE|0|\n",
    )
    assert run_as(crm, "--archived", "--vendor-lead-code", "CRM9") == (
        1,
        "ERROR: lead_search NO MATCHES FOUND IN THE SYSTEM: |6666||CRM9|\n",
    )


def test_vendor_lead_code_filtered_as_vicidial_does(crm: VDb) -> None:
    crm.db.write(f"UPDATE `{LIVE}` SET vendor_lead_code = 'A B' WHERE lead_id = 300")
    # order and duplicates kept; `;#"` removed; `+` is a space; an empty code is skipped
    assert run_as(crm, "--vendor-lead-code", 'CRM"8;,A+B,,CRM#8,') == (
        0,
        "CRM8|5|258-208-158-108-8\nA B|1|300\nCRM8|5|258-208-158-108-8\n",
    )


def test_vendor_lead_code_header_and_records_per_code(crm: VDb) -> None:
    assert run_as(crm, "--header", "--records", "2", "--vendor-lead-code", "CRM7,CRM8") == (
        0,
        "search_key|records_found|lead_ids\nCRM7|2|257-207\nCRM8|2|258-208\n",
    )


def test_vendor_lead_code_bad_input(crm: VDb) -> None:
    for args in (
        ["--vendor-lead-code", ";#"],
        ["--vendor-lead-code", "CRM7", "7275550007"],
        [],
        ["--list-id", "101", "--campaign", "SALESA", "7275550007"],
    ):
        result = crm.cli(["search", *args])
        assert result.exit_code == 2, args
        assert result.stdout == ""
        assert [line for line in result.stderr.splitlines() if line.startswith("Error:")], args


def expected(phone_digit: int, keep: Callable[[int], bool], ids: Sequence[int]) -> str:
    found = sorted((n for n in ids if n % 10 == phone_digit and keep(n)), reverse=True)
    return f"727555000{phone_digit}|{len(found)}|{'-'.join(map(str, found))}\n"


LIVE_CRM = [n for n in range(1, 301) if n not in CRM_ARCHIVED]


def test_search_location_list(crm: VDb) -> None:
    code, out = run_as(crm, "--list-id", "104", "7275550007,7275550002")
    assert code == 0
    assert out == expected(7, lambda n: crm_list(n) == 104, LIVE_CRM) + expected(
        2, lambda n: crm_list(n) == 104, LIVE_CRM
    )
    assert out.startswith("7275550007|15|287-267-")
    assert out.endswith("7275550002|0|\n")  # an even n is never on list 104 (n % 4 == 3)
    assert run_as(crm, "--list-id", "104", "--vendor-lead-code", "CRM7") == (
        0,
        "CRM7|3|207-107-7\n",
    )
    assert run_as(crm, "--archived", "--list-id", "102", "7275550007") == (0, "7275550007|1|57\n")
    assert run_as(crm, "--archived", "--list-id", "101", "7275550007") == (
        1,
        "ERROR: lead_search NO MATCHES FOUND IN THE SYSTEM: |6666|||7275550007\n",
    )


def test_search_location_campaign(crm: VDb) -> None:
    salesa = {101, 102}
    code, out = run_as(crm, "--campaign", "SALESA", "7275550007")
    assert (code, out) == (0, expected(7, lambda n: crm_list(n) in salesa, LIVE_CRM))
    assert run_as(crm, "--campaign", "SALESA", "--vendor-lead-code", "CRM7") == (
        0,
        "CRM7|2|257-157\n",
    )
    assert run_as(crm, "--archived", "--campaign", "SALESA", "--vendor-lead-code", "CRM7") == (
        0,
        "CRM7|1|57\n",
    )
    assert run_as(crm, "--campaign", "SURVEY", "--vendor-lead-code", "CRM7") == (
        1,
        "ERROR: lead_search NO MATCHES FOUND IN THE SYSTEM: |6666||CRM7|\n",
    )


def test_error_lines_echo_digits_and_commas_only(crm: VDb) -> None:
    assert run_as(crm, "(813) 555-7107") == (
        1,
        "ERROR: lead_search NO MATCHES FOUND IN THE SYSTEM: |6666|||8135557107\n",
    )
    assert run_as(crm, "abc") == (
        2,
        "ERROR: lead_search NO VALID SEARCH METHOD - 6666|PHONE_NUMBER|(0)|(0)|(0)\n",
    )
    assert run_as(crm, "(813) 555-7107, +1 (999) 555-0000") == (
        1,
        "ERROR: lead_search NO MATCHES FOUND IN THE SYSTEM: |6666|||8135557107,19995550000\n",
    )
    # VICIdial prints nothing at all here (its query fails); the tool says why it searched nothing
    assert run_as(crm, "1234567890123456789") == (
        2,
        "ERROR: lead_search NO VALID SEARCH METHOD - 6666|PHONE_NUMBER|(0)|(0)|"
        "1234567890123456789(0)\n",
    )


def test_a_thousand_codes_in_one_call_set_based(vdb: VDb) -> None:
    vdb.seed(3000)  # vendor_lead_code VL<n>, NULL for every third lead
    vdb.db.write(f"UPDATE `{LIVE}` SET vendor_lead_code = 'SHARED' WHERE lead_id % 500 = 7")
    codes = [f"VL{n}" for n in range(1, 2700, 3)][:900]
    codes += [f"NOPE{i}" for i in range(97)] + ["SHARED", codes[0], codes[1]]
    assert len(codes) == 1000
    text = ",".join(codes)
    result = vdb.cli(["search", "--user", "admin", "--vendor-lead-code", text])
    assert result.exit_code == 0, result.stderr
    lines = []
    for code in codes:
        ids = [
            int(r[0])
            for r in vdb.db.rows(
                f"SELECT lead_id FROM `{LIVE}` WHERE vendor_lead_code = :c ORDER BY lead_id DESC",
                {"c": code},
            )
        ]
        lines.append(f"{code}|{len(ids)}|{'-'.join(map(str, ids))}\n")
    assert result.stdout == "".join(lines)
    assert "SHARED|6|2507-2007-1507-1007-507-7\n" in result.stdout

    db = CountingDb(vdb.db)
    res = search.search(db, LIVE, text, user="admin", method=search.VENDOR_LEAD_CODE)
    assert "".join(line + "\n" for line in res.lines) == result.stdout
    lookups = [s for s in db.statements if "vendor_lead_code` IN" in s]
    assert len(set(codes)) > 500
    assert len(lookups) == 2  # the distinct codes, 500 a statement


# --- review of issue 15: codes the collation calls equal; characters a column cannot hold ----


def test_codes_the_collation_calls_equal_each_get_every_lead(crm: VDb) -> None:
    """Each code gets every lead whose code its column's collation calls equal to it (what
    VICIdial's `IN (…)` per code returns), whether the codes share a statement or not."""
    crm.db.write(f"UPDATE `{LIVE}` SET vendor_lead_code = 'Crm9x' WHERE lead_id = 290")
    crm.db.write(f"UPDATE `{LIVE}` SET vendor_lead_code = 'uni' WHERE lead_id = 291")
    crm.db.write(f"UPDATE `{LIVE}` SET vendor_lead_code = 'T1' WHERE lead_id = 292")
    crm.db.write(f"UPDATE `{LIVE}` SET vendor_lead_code = 'ÜNÏ' WHERE lead_id = 293")
    together = run_as(crm, "--vendor-lead-code", "CRM9X,crm9x,ünï,UNI,T1,T1+")
    assert together == (
        0,
        "CRM9X|1|290\ncrm9x|1|290\nünï|2|293-291\nUNI|2|293-291\nT1|1|292\nT1 |1|292\n",
    )
    for code, line in (("crm9x", "crm9x|1|290\n"), ("UNI", "UNI|2|293-291\n")):
        assert run_as(crm, "--vendor-lead-code", code) == (0, line)
    # In different statements (500 codes a statement): the same answer.
    twins = ["crm9x", *(f"X{i}" for i in range(599)), "CRM9X"]
    code, out = run_as(crm, "--vendor-lead-code", ",".join(twins))
    lines = out.splitlines()
    assert code == 0 and lines[0] == "crm9x|1|290" and lines[-1] == "CRM9X|1|290"
    # A --records cap is per code, twins included.
    assert run_as(crm, "--records", "1", "--vendor-lead-code", "UNI,uni") == (
        0,
        "UNI|1|293\nuni|1|293\n",
    )


def test_a_character_the_column_cannot_hold_matches_nothing(crm: VDb) -> None:
    """An emoji (4 bytes in UTF-8) in a code or campaign: the utf8mb3 columns cannot hold it,
    so it matches nothing, never a raw 1267/1270 from the server."""
    assert run_as(crm, "--vendor-lead-code", "CRM7\U0001f600,CRM8") == (
        0,
        "CRM7\U0001f600|0|\nCRM8|5|258-208-158-108-8\n",
    )
    assert run_as(crm, "--vendor-lead-code", "\U0001f600")[0] == 1
    for cmd in (
        ["search", "--campaign", "SALES\U0001f600", "7275550007"],
        ["archive", "--dry-run", "--ignore-window", "--campaign", "SALES\U0001f600"],
        ["verify", "--campaign", "SALES\U0001f600"],
    ):
        result = crm.cli(cmd)
        assert result.exit_code == 2, (cmd, result.stderr)
        assert "Traceback" not in result.stderr and "1267" not in result.stderr
        assert "campaign SALES\U0001f600 has no list in vicidial_lists" in result.stderr


# --- issue 22: one search for both tables --------------------------------------------------

# (lead_id, phone_number, list_id, status, last_local_call_time)
LIVE_ROWS = [
    (3, "7275551111", 101, "NEW", None),
    (7, "7275551111", 201, "SALE", "2026-11-30 14:05:00"),
    (40, "8135552222", 102, "CALLBK", "2026-12-01 09:00:00"),
]
ARCHIVE_ROWS = [
    (30, "7275551111", 999, "DNC", "2025-01-02 09:00:00"),
    (20, "8130000175", 104, "NI", "2024-06-30 18:30:00"),  # list 104: no vicidial_lists row
]
HEAD = "phone_number  lead_id  where     list_id  campaign  status  last_call\n"


@pytest.fixture
def two(vdb: VDb) -> VDb:
    """Leads in the live table, in the archive, and lead 40 in both."""
    for table, rows in ((LIVE, LIVE_ROWS), (ARCHIVE, ARCHIVE_ROWS)):
        for row in rows:
            vdb.db.write(
                f"INSERT INTO `{table}` (lead_id, phone_number, list_id, status,"
                " last_local_call_time) VALUES (:i, :p, :l, :s, :t)",
                dict(zip("iplst", row, strict=True)),
            )
    vdb.db.write(f"INSERT INTO `{ARCHIVE}` SELECT * FROM `{LIVE}` WHERE lead_id = 40")
    return vdb


def test_an_archived_phone_is_found_without_archived(two: VDb) -> None:
    """The admin no longer has to guess --archived: `search 8130000175` used to answer
    `NO MATCHES FOUND IN THE SYSTEM` for an archived lead."""
    result = two.cli(["search", "8130000175"])
    assert (result.exit_code, result.stdout) == (
        0,
        HEAD + "8130000175    20       archived  104      -         NI      2024-06-30 18:30:00\n",
    )


def test_each_lead_says_where_it_is(two: VDb) -> None:
    result = two.cli(["search", "727-555-1111,9995550000,8135552222,7275551111"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        "phone_number  lead_id  where     list_id  campaign  status  last_call\n"
        "7275551111    30       archived  999      OLDLEADS  DNC     2025-01-02 09:00:00\n"
        "7275551111    7        live      201      SURVEY    SALE    2026-11-30 14:05:00\n"
        "7275551111    3        live      101      SALESA    NEW     -\n"
        "8135552222    40       both      102      SALESA    CALLBK  2026-12-01 09:00:00\n"
        "not found in vicidial_list or vicidial_list_archive: 9995550000\n"
        "in both tables: lead(s) 40; `verify 40` says whether the two copies are equal\n"
    )
    none = two.cli(["search", "9995550000,1112223333"])
    assert (none.exit_code, none.stdout) == (
        1,
        "not found in vicidial_list or vicidial_list_archive: 9995550000, 1112223333\n",
    )


def test_json_has_typed_fields(two: VDb) -> None:
    result = two.cli(["search", "--json", "8135552222,9995550000,8130000175"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.count("\n") == 1
    assert json.loads(result.stdout) == {
        "search": "phone_number",
        "tables": [LIVE, ARCHIVE],
        "keys": [
            {
                "key": "8135552222",
                "leads": [
                    {
                        "lead_id": 40,
                        "where": "both",
                        "list_id": 102,
                        "campaign_id": "SALESA",
                        "status": "CALLBK",
                        "last_local_call_time": "2026-12-01 09:00:00",
                    }
                ],
            },
            {"key": "9995550000", "leads": []},
            {
                "key": "8130000175",
                "leads": [
                    {
                        "lead_id": 20,
                        "where": "archived",
                        "list_id": 104,
                        "campaign_id": None,
                        "status": "NI",
                        "last_local_call_time": "2024-06-30 18:30:00",
                    }
                ],
            },
        ],
        "found": 2,
        "not_found": ["9995550000"],
        "warnings": [],
    }
    none = two.cli(["search", "--json", "9995550000"])
    assert none.exit_code == 1
    assert json.loads(none.stdout)["not_found"] == ["9995550000"]


def test_archived_searches_the_archive_alone_and_still_says_both(two: VDb) -> None:
    result = two.cli(["search", "--archived", "--json", "7275551111,8135552222"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["tables"] == [ARCHIVE]
    assert [[(x["lead_id"], x["where"]) for x in k["leads"]] for k in data["keys"]] == [
        [(30, "archived")],
        [(40, "both")],
    ]
    scoped = two.cli(["search", "--campaign", "SALESA", "7275551111"])
    assert scoped.stdout == HEAD + (
        "7275551111    3        live      101      SALESA    NEW     -\n"
    )
    records = json.loads(two.cli(["search", "--json", "--records", "2", "7275551111"]).stdout)
    assert [x["lead_id"] for x in records["keys"][0]["leads"]] == [30, 7]


def test_vicidial_keeps_the_lead_search_lines(two: VDb, monkeypatch: pytest.MonkeyPatch) -> None:
    """--vicidial, --user and --header keep VICIdial's lines (vicidial_list, or the archive
    with --archived), byte for byte."""
    monkeypatch.setattr("getpass.getuser", lambda: "osuser")
    cases = [
        (["7275551111,9995550000"], 0, "7275551111|2|7-3\n9995550000|0|\n"),
        (
            ["8130000175"],
            1,
            "ERROR: lead_search NO MATCHES FOUND IN THE SYSTEM: |osuser|||8130000175\n",
        ),
        (["--archived", "8130000175"], 0, "8130000175|1|20\n"),
        (
            ["12345"],
            2,
            "ERROR: lead_search NO VALID SEARCH METHOD - osuser|PHONE_NUMBER|(0)|(0)|12345(0)\n",
        ),
    ]
    for args, code, out in cases:
        for form in (["--vicidial"], ["--user", "osuser"], ["--vicidial", "--user", "osuser"]):
            result = two.cli(["search", *form, *args])
            assert (result.exit_code, result.stdout) == (code, out), (form, args)
    header = two.cli(["search", "--header", "8130000175,7275551111"])
    assert (header.exit_code, header.stdout) == (
        0,
        "search_key|records_found|lead_ids\n8130000175|0|\n7275551111|2|7-3\n",
    )


def test_search_bad_input_in_the_new_form(two: VDb) -> None:
    cases = [
        (["12345,abc"], "no phone number of 6 to 18 digits in '12345,abc'; give phone numbers"),
        (["--json", "--vicidial", "7275551111"], "--json prints where each lead is;"),
        (["--json", "--user", "x", "7275551111"], "--json prints where each lead is;"),
        (["--vendor-lead-code", ";#"], "--vendor-lead-code ';#' names no code"),
    ]
    for args, message in cases:
        result = two.cli(["search", *args])
        assert result.exit_code == 2, args
        assert result.stdout == ""
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and errors[0].startswith(f"Error: {message}"), result.stderr


def test_without_the_archive_table_the_live_table_is_searched(two: VDb) -> None:
    two.db.write(f"DROP TABLE `{ARCHIVE}`")
    result = two.cli(["search", "7275551111,8130000175"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == HEAD + (
        "7275551111    7        live      201      SURVEY    SALE    2026-11-30 14:05:00\n"
        "7275551111    3        live      101      SALESA    NEW     -\n"
        "not found in vicidial_list: 8130000175\n"
        "warning: table vicidial_list_archive does not exist (no `schema init`): searched "
        "vicidial_list only\n"
    )
    refused = two.cli(["search", "--archived", "7275551111"])
    assert refused.exit_code == 2
    assert "Error: table 'vicidial_list_archive' does not exist" in refused.stderr


def test_vendor_lead_codes_in_both_tables(crm: VDb) -> None:
    result = crm.cli(["search", "--list-id", "102", "--vendor-lead-code", "CRM7,NOPE"])
    assert (result.exit_code, result.stdout) == (
        0,
        "vendor_lead_code  lead_id  where     list_id  campaign  status  last_call\n"
        "CRM7              257      live      102      SALESA    -       -\n"
        "CRM7              157      live      102      SALESA    -       -\n"
        "CRM7              57       archived  102      SALESA    -       -\n"
        "not found in vicidial_list or vicidial_list_archive: NOPE\n",
    )


def test_both_tables_in_one_statement_per_batch(vdb: VDb) -> None:
    """Each batch of 500 numbers is one statement over both tables (a lead moved between
    them meanwhile is seen in one of them), and each batch of ids one statement too."""
    vdb.seed(1200)
    vdb.db.write(f"INSERT INTO `{ARCHIVE}` SELECT * FROM `{LIVE}` WHERE lead_id > 600")
    vdb.db.write(f"DELETE FROM `{LIVE}` WHERE lead_id > 600")
    phones = [
        str(r[0])
        for t in (LIVE, ARCHIVE)
        for r in vdb.db.rows(f"SELECT phone_number FROM `{t}` ORDER BY lead_id")
    ]
    db = CountingDb(vdb.db)
    found = search.locate(db, LIVE, ARCHIVE, ",".join(phones))
    assert found.missing == []
    leads = {lead.lead_id: lead.where for v in found.leads.values() for lead in v}
    assert leads == {i: "live" if i <= 600 else "archived" for i in range(1, 1201)}
    lookups = [s for s in db.statements if "phone_number` IN" in s]
    distinct = len(set(phones))
    assert len(lookups) == -(-distinct // 500)
    assert all(f"`{LIVE}`" in s and f"`{ARCHIVE}`" in s for s in lookups)
    details = [s for s in db.statements if "`lead_id` IN" in s and "phone_number` IN" not in s]
    assert details and all(f"`{LIVE}`" in s and f"`{ARCHIVE}`" in s for s in details)
    cli = vdb.cli(["search", "--json", ",".join(phones)])
    assert cli.exit_code == 0 and json.loads(cli.stdout)["found"] == distinct
    # Codes are scanned (no index): one statement per table, never the live table's lock
    # held through a scan of the archive.
    db = CountingDb(vdb.db)
    codes = search.locate(db, LIVE, ARCHIVE, "VL1,VL700,NOPE", method=search.VENDOR_LEAD_CODE)
    assert {k: [(x.lead_id, x.where) for x in v] for k, v in codes.leads.items()} == {
        "VL1": [(1, "live")],
        "VL700": [(700, "archived")],
        "NOPE": [],
    }
    scans = [s for s in db.statements if "vendor_lead_code` IN" in s]
    assert len(scans) == 2
    assert [(f"`{LIVE}`" in s, f"`{ARCHIVE}`" in s) for s in scans] == [
        (True, False),
        (False, True),
    ]
