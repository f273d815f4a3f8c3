"""Every column type a site adds to vicidial_list (tests/support/coltypes.py: BIT, BINARY and
VARBINARY with trailing zero bytes, BLOB, TEXT, JSON, SET, ENUM, YEAR, TIME, DECIMAL, FLOAT,
DOUBLE, unsigned and ZEROFILL integers, DATETIME(6)) archived and dearchived through the CLI,
and through a kill in the middle of a chunk and the run that resumes it: each lead ends in one
table, every column's bytes (and each FLOAT and DOUBLE exactly) those it had. On MyISAM the copy
is sent as SQL tuples the server builds, fingerprinted in Python; a BIT column made the tuple
binary and every archive run failed. Also: a lead the dialer calls between its copy and its
delete (its copy proven by fingerprint and removed), archive columns of a wider type than the
live ones as far as schema.check_lossless allows, and the differences it refuses."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from archiver.db import Db, connect, make_engine
from archiver.jobtypes import JobSpec
from archiver.runner import run_job
from archiver.selection import Criteria, Selection
from tests.support import coltypes, oracle
from tests.support import proc as hp
from tests.support.db import ARCHIVE, LIVE, VDb

LEADS = 9  # coltypes.VALUES over the first leads, the others NULL in every added column
ALL = ["--where", "lead_id > 0", "--ignore-window", "--json"]
ARCHIVE_ALL = ["archive", *ALL, "--no-safe-auto-increment"]
DEARCHIVE_ALL = ["dearchive", *ALL]


def _setup(vdb: VDb) -> tuple[list[str], dict[int, tuple[Any, ...]], dict[str, dict[int, object]]]:
    vdb.seed(LEADS)
    coltypes.add_columns(vdb.db)
    coltypes.fill(vdb.db)
    columns = vdb.columns()
    return columns, vdb.row_bytes(LIVE), _exact(vdb, LIVE)


def _exact(vdb: VDb, table: str) -> dict[str, dict[int, object]]:
    """Each FLOAT and DOUBLE column's values read exactly, by lead."""
    return {c: oracle.values_of(vdb.db, table, e, "1") for c, e in coltypes.EXACT.items()}


def _assert_all_in(
    vdb: VDb,
    table: str,
    columns: list[str],
    original: dict[int, tuple[Any, ...]],
    exact: dict[str, dict[int, object]],
) -> None:
    where = oracle.assert_each_once(vdb.db, columns, original)
    assert (where.live if table == LIVE else where.archive) == set(original)
    assert _exact(vdb, table) == exact


def test_every_column_type_archived_and_dearchived_byte_exact(vdb: VDb) -> None:
    columns, original, exact = _setup(vdb)
    done = hp.run(vdb.dsn, ARCHIVE_ALL)
    assert done.rc == 0, done.describe()
    assert done.summary["job_counts"] == {"archived": LEADS}, done.summary
    _assert_all_in(vdb, ARCHIVE, columns, original, exact)

    back = hp.run(vdb.dsn, DEARCHIVE_ALL)
    assert back.rc == 0, back.describe()
    assert back.summary["job_counts"] == {"dearchived": LEADS}, back.summary
    _assert_all_in(vdb, LIVE, columns, original, exact)


@pytest.mark.slow
@pytest.mark.parametrize("direction", ["archive", "dearchive"])
@pytest.mark.parametrize("point", ["after_insert", "after_delete"])
def test_every_column_type_killed_mid_chunk_then_resumed(
    vdb: VDb, direction: str, point: str
) -> None:
    """Killed in chunk 2 (leads 4-6, three a chunk) after its copy or after its delete; then
    the dialer calls lead 5 where it is live. The resumed run ends with every lead in the
    target, lead 5 as the dialer left it: on MyISAM a dearchive cut after its copy left lead 5
    in both tables, and the resumed run removes the archive row only as the copy this job
    wrote, told by its fingerprint (`RowCopier`, `ChunkSql.row_hash`)."""
    columns, original, exact = _setup(vdb)
    if direction == "dearchive":  # moved by hand: the dearchive alone is under test
        names = ", ".join(f"`{c}`" for c in columns)
        vdb.db.write(f"INSERT INTO `{ARCHIVE}` ({names}) SELECT {names} FROM `{LIVE}`")
        vdb.db.write(f"DELETE FROM `{LIVE}`")
    source, target = (LIVE, ARCHIVE) if direction == "archive" else (ARCHIVE, LIVE)
    args = [*(ARCHIVE_ALL if direction == "archive" else DEARCHIVE_ALL), "--chunk-size", "3"]
    args += ["--job-name", "cut"]
    killed = hp.run(vdb.dsn, args, env={"ARCHIVER_FAULT": f"{point}:2"})
    assert killed.rc == -9, killed.describe()
    assert [c["chunk"] for c in killed.chunks()] == [1]
    cut = oracle.placement(vdb.db, columns)
    if vdb.engine == "MyISAM":  # chunk 2 copied: in both tables, or in the target only
        assert cut.both == ({4, 5, 6} if point == "after_insert" else set()), cut
    else:  # its transaction died with the connection
        assert cut.both == set() and {4, 5, 6} <= (cut.live if source == LIVE else cut.archive)
    called = vdb.db.write(
        f"UPDATE `{LIVE}` SET status = 'NA', called_count = called_count + 1 WHERE lead_id = 5"
    )
    expected = dict(original)
    if called:
        expected[5] = vdb.row_bytes(LIVE, [5])[5]

    hp.wait_lock_free(vdb.db, vdb.settings)
    resumed = hp.run(vdb.dsn, args)
    assert resumed.rc == 0, resumed.describe()
    assert any(e.get("event") == "job_resumed" for e in resumed.events)
    where = oracle.assert_each_once(vdb.db, columns, expected)
    assert (where.live if target == LIVE else where.archive) == set(original)
    assert _exact(vdb, target) == exact
    assert not {int(r[0]) for r in vdb.db.rows("SELECT lead_id FROM archiver_pending")}


def test_archive_column_wider_than_the_live_one_archived_byte_exact(vdb: VDb) -> None:
    """Archive columns of other types that hold every live value with the same bytes
    (coltypes.WIDER): archived byte-exact; the way back, narrower, is refused before writing."""
    vdb.seed(LEADS)
    coltypes.add_wider(vdb.db, 5)
    columns = vdb.columns()
    original = vdb.row_bytes(LIVE)
    done = hp.run(vdb.dsn, ARCHIVE_ALL)
    assert done.rc == 0, done.describe()
    assert done.summary["job_counts"] == {"archived": LEADS}, done.summary
    where = oracle.assert_each_once(vdb.db, columns, original)
    assert where.archive == set(original)

    back = hp.run(vdb.dsn, DEARCHIVE_ALL)
    assert back.rc == 2, back.describe()
    assert back.error.startswith("Error: column 'va_int' is bigint(20) in the source but int(11)")
    assert oracle.assert_each_once(vdb.db, columns, original).archive == set(original)


@pytest.mark.parametrize(
    ("live", "archive", "problem"),
    [
        # BIT(16) holds every BIT(8) value, but as two bytes: never the bytes of the source.
        ("BIT(8)", "BIT(16)", "is bit(8) in the source but bit(16) in the target"),
        # 'x,y' in SET('y','x') is stored 'y,x': never the bytes of the source.
        (
            "SET('x','y')",
            "SET('y','x','z')",
            "is set('x','y') in the source but set('y','x','z') in the target, which lists a "
            "value's labels in another order",
        ),
    ],
)
def test_archive_column_that_stores_other_bytes_is_refused(
    vdb: VDb, live: str, archive: str, problem: str
) -> None:
    vdb.seed(3)
    vdb.db.write(f"ALTER TABLE `{LIVE}` ADD COLUMN va_col {live} NULL")
    vdb.db.write(f"ALTER TABLE `{ARCHIVE}` ADD COLUMN va_col {archive} NULL")
    value = "b'1'" if live.startswith("BIT") else "'x,y'"
    vdb.db.write(f"UPDATE `{LIVE}` SET va_col = {value}")
    before = vdb.checksum()
    done = hp.run(vdb.dsn, ARCHIVE_ALL)
    assert done.rc == 2, done.describe()
    assert done.error == (
        f"Error: column 'va_col' {problem} (vicidial_list → vicidial_list_archive); run "
        "`vicidial-archiver schema sync` to see the ALTER TABLE that fixes it"
    )
    assert vdb.checksum() == before
    assert vdb.ids(LIVE) == [1, 2, 3] and vdb.ids(ARCHIVE) == []


def test_every_column_type_lead_called_after_its_copy_leaves_no_stale_copy(vdb: VDb) -> None:
    """MyISAM: the dialer calls lead 2 between the chunk's copy and its delete. The lead stays
    live (`kept_changed`) and the copy this job wrote goes, proven to be it by the archive
    row's fingerprint (`ChunkSql.row_hash`) equal to the copy's (`RowCopier`) over every
    column type; the next run archives the lead as the dialer left it. InnoDB holds the rows
    locked for the chunk: nothing changes in between."""
    columns, original, exact = _setup(vdb)
    called: dict[str, bool] = {}

    def hook(at: str, db: Db, ids: Any) -> None:
        if at == "after_insert" and vdb.engine == "MyISAM" and not called:
            dialer = vdb.connect()
            try:
                rows = dialer.write(
                    f"UPDATE `{LIVE}` SET status = 'NA', called_count = called_count + 1"
                    " WHERE lead_id = 2"
                )
                called["done"] = rows == 1
            finally:
                hp.close_quietly(dialer)

    spec = JobSpec(
        direction="archive",
        selection=Selection(criteria=Criteria(where="lead_id > 0")),
        ignore_window=True,
    )
    settings = replace(vdb.settings, guards=replace(vdb.settings.guards, safe_auto_increment=False))
    db = Db(connect(make_engine(settings), settings))
    try:
        first = run_job(db, settings, spec, hook=hook)
    finally:
        hp.close_quietly(db)
    where = oracle.placement(vdb.db, columns)
    if vdb.engine == "MyISAM":
        assert called == {"done": True}
        assert dict(first.counts) == {"archived": LEADS - 1, "kept_changed": 1}
        assert (where.live, where.both) == ({2}, set()), where
        original[2] = vdb.row_bytes(LIVE, [2])[2]
        again = hp.run(vdb.dsn, ARCHIVE_ALL)
        assert again.rc == 0, again.describe()
        assert again.summary["job_counts"] == {"archived": 1}, again.summary
    else:
        assert dict(first.counts) == {"archived": LEADS}
    _assert_all_in(vdb, ARCHIVE, columns, original, exact)
