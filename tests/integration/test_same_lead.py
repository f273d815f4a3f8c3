"""Two rows under one lead_id are refreshed or taken for one another only when they are provably
the same lead: issue 21's lead-safety findings 1-3, through the real CLI on both engines."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.cli import summary_of
from tests.support.db import ARCHIVE, LIVE, VDb

LEAD = 7


def cli_json(vdb: VDb, *args: str) -> dict[str, Any]:
    result = vdb.cli([*args, "--json"])
    assert result.exit_code in (0, 1), result.output
    return summary_of(result)


# --- 1. "same lead" told by a NULL or zero entry_date ---------------------------------------


@pytest.mark.parametrize("entry_date", ["NULL", "'0000-00-00 00:00:00'"])
def test_two_leads_without_an_entry_date_are_a_conflict_in_every_command(
    vdb: VDb, entry_date: str
) -> None:
    vdb.seed(10)
    vdb.db.write(f"UPDATE {LIVE} SET entry_date = {entry_date} WHERE lead_id = {LEAD}")
    vdb.db.write(f"INSERT INTO {ARCHIVE} SELECT * FROM {LIVE} WHERE lead_id = {LEAD}")
    vdb.db.write(
        f"UPDATE {ARCHIVE} SET first_name = 'Alice', phone_number = '3055550100',"
        f" comments = 'paid customer', modify_date = modify_date WHERE lead_id = {LEAD}"
    )
    vdb.db.write(
        f"UPDATE {LIVE} SET first_name = 'Bob', phone_number = '8135550199',"
        f" modify_date = modify_date WHERE lead_id = {LEAD}"
    )
    before = (vdb.row_bytes(LIVE, [LEAD]), vdb.row_bytes(ARCHIVE, [LEAD]))
    ids = [str(LEAD)]
    planned = cli_json(vdb, "archive", *ids, "--ignore-window", "--dry-run")
    assert planned["counts"] == {"conflict": 1}
    for direction in ("archive", "dearchive"):
        done = cli_json(vdb, direction, *ids, "--ignore-window")
        assert done["counts"] == {"conflict": 1}, direction
        assert (vdb.row_bytes(LIVE, [LEAD]), vdb.row_bytes(ARCHIVE, [LEAD])) == before
    result = vdb.cli(["verify", *ids, "--json"])
    assert result.exit_code == 1, result.output
    report = summary_of(result)
    assert report["lead_ids"]["both_different"] == [LEAD]


def test_equal_rows_without_an_entry_date_still_move(vdb: VDb) -> None:
    vdb.seed(10)
    vdb.db.write(f"UPDATE {LIVE} SET entry_date = NULL WHERE lead_id IN (3, {LEAD})")
    vdb.db.write(f"INSERT INTO {ARCHIVE} SELECT * FROM {LIVE} WHERE lead_id = {LEAD}")
    live = vdb.row_bytes(LIVE, [3, LEAD])
    done = cli_json(vdb, "archive", "3", str(LEAD), "--ignore-window")
    assert done["counts"] == {"archived": 2}
    assert vdb.row_bytes(ARCHIVE, [3, LEAD]) == live and vdb.ids(LIVE).count(LEAD) == 0
