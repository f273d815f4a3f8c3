from __future__ import annotations

from tests.support.db import ARCHIVE, LIVE, VDb


def test_archive_by_ids_moves_rows_byte_identical(vdb: VDb) -> None:
    vdb.seed(1200)
    original = vdb.row_bytes(LIVE)
    ids = list(range(1, 1101))
    path = f"/tmp/{vdb.name}.ids"
    with open(path, "w") as fh:
        fh.write("\n".join(map(str, ids)))
    result = vdb.cli(
        ["archive", "--ignore-window", "--ids-file", path, "--json"], env={"ARCHIVER_ID_LIMIT": ""}
    )
    # The 500-id limit is the Lead Archive API's (--request, serve): a file takes any number.
    assert result.exit_code == 0, result.output
    assert vdb.row_bytes(ARCHIVE) == {i: original[i] for i in ids}
    assert set(vdb.ids(LIVE)) == set(range(1101, 1201))


def test_session_settings_of_the_tools_connection(vdb: VDb) -> None:
    # The tool's own session, as every statement of a run sees it.
    row = vdb.db.rows(
        "SELECT @@session.time_zone, @@session.tx_isolation, @@session.optimizer_switch"
    )[0]
    assert row[0] == "+00:00"
    assert row[1] == "READ-COMMITTED"
    assert "subquery_cache=off" in row[2]
    # Only the session: the server's global setting is left as it was.
    other = vdb.db.rows("SELECT @@global.optimizer_switch")[0][0]
    assert "subquery_cache=on" in other
