"""verify: each category, byte-exact equality, criteria on both tables, exit codes, --json."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from archiver import verify as verify_mod
from archiver.selection import Criteria, Selection
from tests.support.db import ARCHIVE, LIVE, VDb


def copy_to_archive(vdb: VDb, ids: Sequence[int]) -> None:
    cols = ", ".join(f"`{c}`" for c in vdb.columns())
    vdb.db.write(
        f"INSERT INTO `{ARCHIVE}` ({cols}) SELECT {cols} FROM `{LIVE}` WHERE lead_id IN :ids",
        {"ids": list(ids)},
    )


def change_archive(vdb: VDb, lead: int, assignment: str) -> None:
    """Change archive columns, keeping modify_date (ON UPDATE would move it)."""
    n = vdb.db.write(
        f"UPDATE `{ARCHIVE}` SET {assignment}, modify_date = modify_date WHERE lead_id = :id",
        {"id": lead},
    )
    assert n == 1


def delete_live(vdb: VDb, ids: Sequence[int]) -> None:
    vdb.db.write(f"DELETE FROM `{LIVE}` WHERE lead_id IN :ids", {"ids": list(ids)})


@pytest.fixture
def states(vdb: VDb) -> VDb:
    """1 both equal; 2-5 both, one difference each; 6-8 only archived; 9-20 only live."""
    vdb.seed(20)
    vdb.db.write(
        f"UPDATE `{LIVE}` SET last_name = 'Smith', first_name = 'José', email = NULL"
        " WHERE lead_id IN (2, 3, 4)"
    )
    copy_to_archive(vdb, range(1, 9))
    change_archive(vdb, 2, "last_name = 'Smith '")  # one trailing space: '=' calls it equal
    change_archive(vdb, 3, "first_name = 'Jose'")  # accent: '=' calls it equal
    change_archive(vdb, 4, "email = ''")  # NULL vs ''
    vdb.db.write(
        f"UPDATE `{ARCHIVE}` SET modify_date = modify_date + INTERVAL 1 SECOND WHERE lead_id = 5"
    )
    delete_live(vdb, [6, 7, 8])
    # The tests' premise: the collation calls 2 and 3 equal, only bytes tell them apart.
    assert (
        vdb.db.scalar(
            f"SELECT COUNT(*) FROM `{LIVE}` l JOIN `{ARCHIVE}` a USING (lead_id)"
            " WHERE l.last_name = a.last_name AND l.first_name = a.first_name"
            " AND l.lead_id IN (2, 3)"
        )
        == 2
    )
    return vdb


EXPECTED = {
    "both_equal": [1],
    "both_different": [2, 3, 4, 5],
    "only_live": [9, 10],
    "only_archived": [6, 7, 8],
    "neither": [99, 100],
}
IDS = "1,2,3,4,5,6,7,8,9,10,99,100"


def test_each_category_human_output(states: VDb) -> None:
    result = states.cli(["verify", IDS])
    assert result.exit_code == 1, result.stderr
    assert result.stdout == (
        "verify vicidial_list / vicidial_list_archive: 12 leads (lead ids), 35 shared columns "
        "compared byte-exactly\n"
        "  both_equal       1\n"
        "  both_different   4\n"
        "  only_live        2\n"
        "  only_archived    3\n"
        "  neither          2\n"
        "both_equal: 1\n"
        "both_different: 2,3,4,5\n"
        "only_live: 9,10\n"
        "only_archived: 6,7,8\n"
        "neither: 99,100\n"
        "PROBLEM: 4 lead(s) in both tables with different data; archive refreshes the archive "
        "copy and moves the lead only where both rows have the same entry_date, a real date "
        "(the same lead), and refuses (conflict) where it differs or is NULL or zero (another "
        "lead under the same id, or one that cannot be told from it); dearchive refuses "
        "(conflict) either way\n"
    )


def test_json(states: VDb) -> None:
    result = states.cli(["verify", "--json", *IDS.split(",")])
    assert result.exit_code == 1, result.stderr
    assert result.stdout.count("\n") == 1
    assert json.loads(result.stdout) == {
        "live_table": LIVE,
        "archive_table": ARCHIVE,
        "selection": "ids",
        "leads": 12,
        "columns_compared": 35,
        "ok": False,
        "counts": {k: len(v) for k, v in EXPECTED.items()},
        "lead_ids": EXPECTED,
        "truncated": {k: False for k in EXPECTED},
        "list_limit": 1000,
        "warnings": [],
    }


def test_exit_0_when_nothing_differs(states: VDb) -> None:
    result = states.cli(["verify", "1,6,9,99"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.endswith(
        "neither: 99\nOK: no lead is in both tables with different data\n"
    )
    result = states.cli(["verify", "--json", "1", "6"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["ok"] is True
    assert data["counts"] == {
        "both_equal": 1,
        "both_different": 0,
        "only_live": 0,
        "only_archived": 1,
        "neither": 0,
    }


def test_lists_are_capped_and_flagged(states: VDb) -> None:
    result = states.cli(["verify", "--json", "--list-limit", "2", IDS])
    data = json.loads(result.stdout)
    assert data["counts"]["both_different"] == 4
    assert data["lead_ids"]["both_different"] == [2, 3]
    assert data["truncated"] == {
        "both_equal": False,
        "both_different": True,
        "only_live": False,
        "only_archived": True,
        "neither": False,
    }
    human = states.cli(["verify", "--list-limit", "2", IDS]).stdout
    assert "both_different: 2,3 (first 2 of 4)\n" in human


def test_human_report_lists_20_ids_by_default(vdb: VDb) -> None:
    vdb.seed(30)
    result = vdb.cli(["verify", ",".join(map(str, range(1, 31)))])
    assert result.exit_code == 0, result.stderr
    first = ",".join(map(str, range(1, 21)))
    assert f"\nonly_live: {first} (first 20 of 30)\n" in result.stdout
    data = json.loads(vdb.cli(["verify", "--json", ",".join(map(str, range(1, 31)))]).stdout)
    assert data["list_limit"] == 1000
    assert data["lead_ids"]["only_live"] == list(range(1, 31))


def test_ids_file_and_request(states: VDb) -> None:
    result = states.cli(["verify", "--json", "--ids-file", "-"], input="2\n6\n# c\n99\n")
    assert json.loads(result.stdout)["lead_ids"] == {
        "both_equal": [],
        "both_different": [2],
        "only_live": [],
        "only_archived": [6],
        "neither": [99],
    }
    body = json.dumps({"lead_ids": [1, 9], "delete_leads": False})
    result = states.cli(["verify", "--json", "--request", "-"], input=body)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["lead_ids"]["only_live"] == [9]


def test_bad_selection_is_exit_2(states: VDb) -> None:
    result = states.cli(["verify"])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: nothing selected")
    assert states.cli(["verify", "1,x"]).exit_code == 2


def test_all_checks_every_lead_of_both_tables(states: VDb) -> None:
    """`verify --all`: every lead, live or archived (it used to need `--where "1=1"`)."""
    result = states.cli(["verify", "--all", "--json"])
    assert result.exit_code == 1, result.stderr
    data = json.loads(result.stdout)
    assert data["selection"] == "all"
    assert data["lead_ids"] == {
        "both_equal": [1],
        "both_different": [2, 3, 4, 5],
        "only_live": list(range(9, 21)),
        "only_archived": [6, 7, 8],
    }
    human = states.cli(["verify", "--all"])
    assert human.exit_code == 1
    assert human.stdout.startswith(
        "verify vicidial_list / vicidial_list_archive: 20 leads (every lead, in either table),"
    )
    where = json.loads(states.cli(["verify", "--json", "--where", "1=1"]).stdout)
    assert where["lead_ids"] == data["lead_ids"]


def test_no_selection_names_all_and_all_goes_alone(states: VDb) -> None:
    before = states.checksum()
    for args in ([], ["--json"], ["--entry-before", ""]):
        result = states.cli(["verify", *args])
        assert result.exit_code == 2, args
        assert result.stdout == ""
        assert result.stderr == (
            "Error: nothing selected: give lead ids, --ids-file, --request or criteria "
            "(--list-id, --campaign, --status, --entry-before, …), or --all to check every "
            "lead\n"
        )
    for args in (["1"], ["--list-id", "101"], ["--ids-file", "-"]):
        result = states.cli(["verify", "--all", *args], input="1\n")
        assert result.exit_code == 2, args
        assert result.stderr == (
            "Error: --all checks every lead; give it alone, without lead ids, --ids-file, "
            "--request or criteria\n"
        )
    assert states.checksum() == before


def test_verify_writes_nothing(states: VDb) -> None:
    before = states.checksum()
    states.cli(["verify", IDS])
    states.cli(["verify", "--list-id", "101"])
    assert states.checksum() == before


def test_criteria_match_in_either_table(vdb: VDb) -> None:
    vdb.seed(30)
    vdb.db.write(f"UPDATE `{LIVE}` SET list_id = 777 WHERE lead_id <= 6")
    copy_to_archive(vdb, [1, 2, 3, 4, 7, 8])
    delete_live(vdb, [3, 4])
    change_archive(vdb, 2, "comments = 'changed'")
    change_archive(vdb, 7, "list_id = 777")  # matches only through its archive copy
    result = vdb.cli(["verify", "--json", "--list-id", "777"])
    assert result.exit_code == 1, result.stderr
    data = json.loads(result.stdout)
    assert data["selection"] == "criteria"
    assert data["lead_ids"] == {
        "both_equal": [1],
        "both_different": [2, 7],
        "only_live": [5, 6],
        "only_archived": [3, 4],
    }
    assert data["counts"] == {
        "both_equal": 1,
        "both_different": 2,
        "only_live": 2,
        "only_archived": 2,
    }
    human = vdb.cli(["verify", "--list-id", "777"]).stdout
    assert human.startswith(
        "verify vicidial_list / vicidial_list_archive: 7 leads (criteria, "
        "matched in either table), 35 shared columns compared byte-exactly\n"
    )
    assert "  neither" not in human


def oracle(vdb: VDb, matching: set[int]) -> dict[str, list[int]]:
    """Categories from the exact bytes of every column, computed apart from the tool."""
    live, arch = vdb.row_bytes(LIVE), vdb.row_bytes(ARCHIVE)
    out: dict[str, list[int]] = {c: [] for c in verify_mod.CATEGORIES[:-1]}
    for lead in sorted(matching):
        if lead in live and lead in arch:
            out["both_equal" if live[lead] == arch[lead] else "both_different"].append(lead)
        elif lead in live or lead in arch:
            out["only_live" if lead in live else "only_archived"].append(lead)
    return out


@pytest.mark.parametrize("chunk", [7, 500])
def test_criteria_walk_by_keyset_over_both_tables(vdb: VDb, chunk: int) -> None:
    vdb.seed(3000)
    copy_to_archive(vdb, [i for i in range(1, 3001) if i % 3 == 0])
    delete_live(vdb, [i for i in range(1, 3001) if i % 6 == 0])
    vdb.db.write(
        f"UPDATE `{ARCHIVE}` SET city = UPPER(city), modify_date = modify_date"
        " WHERE lead_id % 9 = 0"
    )
    # Archive-only leads above and far above every live id.
    copy_to_archive(vdb, [1, 2])
    vdb.db.write(f"UPDATE `{ARCHIVE}` SET lead_id = lead_id + 4000 WHERE lead_id IN (1, 2)")
    copy_to_archive(vdb, [5])
    vdb.db.write(f"UPDATE `{ARCHIVE}` SET lead_id = 90000 WHERE lead_id = 5")
    crit = Criteria(list_ids=(101, 102)).resolve()
    matching = {
        int(r[0])
        for t in (LIVE, ARCHIVE)
        for r in vdb.db.rows(f"SELECT lead_id FROM `{t}` WHERE list_id IN (101, 102)")
    }
    assert {4001, 90000} <= matching and 4002 not in matching  # lists 102, 101; 201
    report = verify_mod.verify(
        vdb.db, LIVE, ARCHIVE, Selection(criteria=crit), chunk_size=chunk, list_limit=10_000
    )
    expected = oracle(vdb, matching)
    assert report.ids == expected
    assert report.counts == {k: len(v) for k, v in expected.items()}
    assert all(expected.values())  # every category is exercised


def test_ids_in_chunks_match_the_oracle(vdb: VDb) -> None:
    vdb.seed(1200)
    copy_to_archive(vdb, range(1, 1201, 2))
    delete_live(vdb, range(1, 1201, 4))
    vdb.db.write(
        f"UPDATE `{ARCHIVE}` SET `rank` = `rank` + 1, modify_date = modify_date"
        " WHERE lead_id % 7 = 0"
    )
    ids = list(range(1, 1301))
    report = verify_mod.verify(
        vdb.db, LIVE, ARCHIVE, Selection.from_ids(ids), chunk_size=13, list_limit=10_000
    )
    expected = oracle(vdb, set(ids))
    expected["neither"] = list(range(1201, 1301))
    assert report.ids == expected
    assert report.leads == 1300


def test_columns_missing_in_the_archive_are_reported(vdb: VDb) -> None:
    vdb.seed(3)
    copy_to_archive(vdb, [1])
    vdb.db.write(f"ALTER TABLE `{ARCHIVE}` DROP COLUMN owner")
    result = vdb.cli(["verify", "--json", "1"])
    data = json.loads(result.stdout)
    assert data["columns_compared"] == 34
    assert data["lead_ids"]["both_equal"] == [1]
    assert data["warnings"] == [
        "live column(s) owner missing in vicidial_list_archive: not compared "
        "(`schema check` / `schema sync`)"
    ]
