"""The promise under change: a table altered, a lead leaving the selection, a resumed job, a
cancel, the newest lead deleted, overrides and a reused id, each while a job runs. Real server,
real CLI process where the reproduction used one; every test on MyISAM and InnoDB."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest

from archiver.commands import outcome_error
from archiver.db import Db, connect, make_engine
from archiver.errors import Failed
from archiver.jobtypes import JobSpec
from archiver.runner import run_job
from archiver.selection import Criteria, Selection
from tests.support import oracle
from tests.support import proc as hp
from tests.support.beside import Beside
from tests.support.db import ARCHIVE, LIVE, VDb


def list_ids(vdb: VDb, table: str, list_id: int) -> list[int]:
    rows = vdb.db.rows(
        f"SELECT lead_id FROM `{table}` WHERE list_id = :l ORDER BY lead_id", {"l": list_id}
    )
    return [int(r[0]) for r in rows]


def status_ids(vdb: VDb, status: str) -> list[int]:
    rows = vdb.db.rows(
        f"SELECT lead_id FROM `{LIVE}` WHERE status = :s ORDER BY lead_id", {"s": status}
    )
    return [int(r[0]) for r in rows]


def dialer_update(vdb: VDb, sql: str, params: dict[str, Any]) -> int:
    db = vdb.connect()
    try:
        return db.write(sql, params)
    finally:
        hp.close_quietly(db)


# --- 1. a column added while a job runs ------------------------------------------------------


@pytest.mark.parametrize("altered", ["both", "live_only"])
def test_column_added_mid_run_loses_no_value(vdb: VDb, altered: str) -> None:
    vdb.seed(400)
    args = ["archive", "--where", "lead_id > 0", "--chunk-size", "100", "--sleep", "3"]
    with hp.Proc(hp.argv(vdb.dsn, [*args, "--ignore-window", "--json"])) as proc:
        proc.wait_chunk(1)  # chunk 1 done; the job sleeps before chunk 2
        vdb.db.write(f"ALTER TABLE {LIVE} ADD COLUMN vip_note VARCHAR(40) NULL")
        if altered == "both":
            vdb.db.write(f"ALTER TABLE {ARCHIVE} ADD COLUMN vip_note VARCHAR(40) NULL")
        vdb.db.write(
            f"UPDATE {LIVE} SET vip_note = CONCAT('precious-', lead_id), "
            "modify_date = modify_date WHERE lead_id BETWEEN 150 AND 399"
        )
        live_now = vdb.row_bytes(LIVE)
        done = proc.finish(60)
    assert done.rc == 1, done.describe()
    assert "vicidial_list: column vip_note added" in done.error
    assert done.summary["state"] == "failed"
    # Every value is still in a live row: nothing that carries one was deleted.
    notes = vdb.db.rows(f"SELECT COUNT(*) FROM {LIVE} WHERE vip_note LIKE 'precious-%'")
    assert int(notes[0][0]) == 250
    assert vdb.row_bytes(LIVE, range(101, 401)) == {i: live_now[i] for i in range(101, 401)}

    # The same job, at full speed (it keeps its --sleep 3 unless given another).
    again = hp.run(vdb.dsn, [*args[:-2], "--sleep", "0", "--ignore-window", "--json"])
    if altered == "live_only":  # the next run reflects again and finds the drift
        assert again.rc == 2, again.describe()
        assert "vip_note" in again.error and "schema sync" in again.error
        return
    assert again.rc == 0, again.describe()
    assert again.summary["job_id"] == 1  # the same job, resumed
    columns = vdb.columns()
    final = oracle.placement(vdb.db, columns)
    assert final.live == {400} and final.both == set()
    assert all(final.rows[i] == live_now[i] for i in range(101, 401))  # vip_note included
    copies = vdb.db.rows(f"SELECT COUNT(*) FROM {ARCHIVE} WHERE vip_note LIKE 'precious-%'")
    assert int(copies[0][0]) == 250


def test_delete_guard_sees_the_columns_of_the_moment(vdb: VDb) -> None:
    """The delete statement itself checks the columns: built before an ALTER, it deletes
    nothing after it."""
    from archiver.jobtypes import ARCHIVE as TO_ARCHIVE
    from archiver.schema import reflect
    from archiver.steps import ChunkSql

    vdb.seed(5)
    vdb.db.write(f"INSERT INTO {ARCHIVE} SELECT * FROM {LIVE}")
    live, archive = reflect(vdb.db, LIVE), reflect(vdb.db, ARCHIVE)
    assert live is not None and archive is not None
    sql = ChunkSql(TO_ARCHIVE, live, archive)
    vdb.db.write(f"ALTER TABLE {ARCHIVE} ADD COLUMN x INT NULL")
    assert vdb.db.write(sql.delete(), {"ids": [1, 2]}) == 0
    vdb.db.write(f"ALTER TABLE {ARCHIVE} DROP COLUMN x")
    assert vdb.db.write(sql.delete(), {"ids": [1, 2]}) == 2


# --- 2. a resumed MyISAM job ends with the whole selection -----------------------------------


def test_resumed_job_after_a_cut_chunk_does_the_rest(vdb: VDb) -> None:
    vdb.seed(750)
    selected = list_ids(vdb, LIVE, 999)
    assert len(selected) == 150
    original = vdb.row_bytes(LIVE)
    args = [
        "archive",
        "--list-id",
        "999",
        "--chunk-size",
        "100",
        "--ignore-window",
        "--json",
        "--no-safe-auto-increment",
    ]
    cut = hp.run(vdb.dsn, args, env={"ARCHIVER_FAULT": "after_delete:1"})
    assert cut.rc == -9
    again = hp.run(vdb.dsn, args)
    assert again.rc == 0, again.describe()
    assert again.summary["job_id"] == 1 and again.summary["state"] == "done"
    assert again.summary["job_counts"] == {"archived": 150}
    assert list_ids(vdb, LIVE, 999) == []
    assert list_ids(vdb, ARCHIVE, 999) == selected
    oracle.assert_each_once(vdb.db, vdb.columns(), original)


# --- 3. a lead that leaves the selection -----------------------------------------------------


def test_lead_leaving_the_selection_after_a_cut_stays_live_alone(vdb: VDb) -> None:
    vdb.seed(1000)
    args = ["archive", "--status", "NI", "--ignore-window", "--json", "--job-name", "n1"]
    cut = hp.run(vdb.dsn, args, env={"ARCHIVER_FAULT": "after_insert"})
    assert cut.rc == -9
    ni = status_ids(vdb, "NI")
    lead = ni[5]
    n = dialer_update(
        vdb,
        f"UPDATE {LIVE} SET status = 'SALE', called_count = called_count + 1 WHERE lead_id = :l",
        {"l": lead},
    )
    assert n == 1
    sold = vdb.row_bytes(LIVE, [lead])[lead]
    again = hp.run(vdb.dsn, args)
    assert again.rc == 0, again.describe()
    counts = again.summary["job_counts"]
    if vdb.engine == "MyISAM":  # the cut chunk had copied it
        assert counts == {"archived": len(ni) - 1, "left_selection": 1}
        out = vdb.cli(["jobs", "show", "n1", "--leads", "left_selection"]).stdout
        assert out == f"{lead},left_selection\n"
    else:  # the cut chunk rolled back: the lead simply is not selected any more
        assert counts == {"archived": len(ni) - 1}
    assert vdb.ids(ARCHIVE).count(lead) == 0
    assert vdb.row_bytes(LIVE, [lead]) == {lead: sold}
    verify = vdb.cli(["verify", str(lead), "--json"])
    assert verify.exit_code == 0, verify.output


def test_lead_leaving_the_selection_mid_chunk_keeps_only_its_live_row(vdb: VDb) -> None:
    vdb.seed(300)
    settings = vdb.settings
    lead = status_ids(vdb, "NI")[3]
    sell = Beside(vdb, f"UPDATE {LIVE} SET status = 'SALE' WHERE lead_id = :l", {"l": lead})

    spec = JobSpec(
        direction="archive",
        selection=Selection(criteria=Criteria(statuses=("NI",))),
        ignore_window=True,
    )
    db = Db(connect(make_engine(settings), settings))
    try:
        first = run_job(db, settings, spec, hook=sell.hook)
        sell.join()
        second = run_job(db, settings, spec)
    finally:
        hp.close_quietly(db)
    if vdb.engine == "MyISAM":
        assert sell.rows == 1
        assert first.counts["left_selection"] == 1 and "kept_changed" not in first.counts
        assert vdb.ids(ARCHIVE).count(lead) == 0 and lead in vdb.ids(LIVE)
    else:
        assert sell.rows == 0  # waited for the chunk, then found the lead archived
        assert "left_selection" not in first.counts
    assert dict(second.counts) == {}
    both = set(vdb.ids(LIVE)) & set(vdb.ids(ARCHIVE))
    assert both == set()


# --- 4. a dearchive cut once, then the dialer touches a restored lead ------------------------


def test_dearchive_cut_then_dialer_touches_a_restored_lead(vdb: VDb) -> None:
    vdb.seed(200)
    assert hp.run(vdb.dsn, ["archive", "--list-id", "999", "--ignore-window"]).rc == 0
    restored = list_ids(vdb, ARCHIVE, 999)
    args = ["dearchive", "--list-id", "999", "--ignore-window", "--json"]
    cut = hp.run(vdb.dsn, args, env={"ARCHIVER_FAULT": "after_insert"})
    assert cut.rc == -9
    lead = restored[0]
    touched = dialer_update(
        vdb,
        f"UPDATE {LIVE} SET called_since_last_reset = 'Y', called_count = called_count + 1,"
        " status = 'NA' WHERE lead_id = :l",
        {"l": lead},
    )
    assert touched == (1 if vdb.engine == "MyISAM" else 0)
    live_row = vdb.row_bytes(LIVE, [lead]).get(lead)
    again = hp.run(vdb.dsn, args)
    assert again.rc == 0, again.describe()
    assert again.summary["job_counts"] == {"dearchived": len(restored)}
    assert list_ids(vdb, ARCHIVE, 999) == []
    assert list_ids(vdb, LIVE, 999) == restored
    if live_row is not None:  # the dialer's change is the lead now
        assert vdb.row_bytes(LIVE, [lead]) == {lead: live_row}
    third = hp.run(vdb.dsn, args)
    assert third.rc == 0 and third.summary["counts"] == {}


def test_dearchive_dialer_touches_a_restored_lead_mid_chunk(vdb: VDb) -> None:
    vdb.seed(100)
    assert hp.run(vdb.dsn, ["archive", "--list-id", "999", "--ignore-window"]).rc == 0
    restored = list_ids(vdb, ARCHIVE, 999)
    lead = restored[2]
    touch = Beside(vdb, f"UPDATE {LIVE} SET status = 'NA' WHERE lead_id = :l", {"l": lead})

    spec = JobSpec(
        direction="dearchive",
        selection=Selection(criteria=Criteria(list_ids=(999,))),
        ignore_window=True,
    )
    settings = vdb.settings
    db = Db(connect(make_engine(settings), settings))
    try:
        summary = run_job(db, settings, spec, hook=touch.hook)
        touch.join()
    finally:
        hp.close_quietly(db)
    assert dict(summary.counts) == {"dearchived": len(restored)}
    assert touch.rows == 1  # MyISAM at once; InnoDB once the chunk committed
    assert list_ids(vdb, ARCHIVE, 999) == []
    status = vdb.db.scalar(f"SELECT status FROM {LIVE} WHERE lead_id = :l", {"l": lead})
    assert status == "NA"


# --- 5. dearchive overrides never widen equality ---------------------------------------------


def test_dearchive_overrides_do_not_hide_a_conflict(vdb: VDb) -> None:
    vdb.seed(20)
    vdb.db.write(f"INSERT INTO {ARCHIVE} SELECT * FROM {LIVE} WHERE lead_id IN (5, 6)")
    vdb.db.write(
        f"UPDATE {LIVE} SET status = 'SALE', called_count = 7, called_since_last_reset = 'Y3',"
        " modify_date = modify_date WHERE lead_id IN (5, 6)"
    )
    vdb.db.write(
        f"UPDATE {ARCHIVE} SET status = 'NI', called_count = 2, called_since_last_reset = 'Y',"
        " modify_date = modify_date WHERE lead_id IN (5, 6)"
    )
    before = vdb.checksum()
    args = [
        "dearchive",
        "5",
        "6",
        "--set-status",
        "NEW",
        "--reset-called",
        "--set-called-count",
        "0",
    ]
    result = vdb.cli([*args, "--ignore-window", "--json"])
    assert result.exit_code == 0, result.output
    assert '"counts": {"conflict": 2}' in result.stdout
    assert vdb.checksum() == before


# --- 6. archive never overwrites another lead's archived record ------------------------------


@pytest.mark.parametrize("same_lead", [True, False])
def test_archive_refreshes_the_same_lead_and_refuses_another(vdb: VDb, same_lead: bool) -> None:
    vdb.seed(10)
    vdb.db.write(f"INSERT INTO {ARCHIVE} SELECT * FROM {LIVE} WHERE lead_id = 4")
    entry = "" if same_lead else ", entry_date = '2019-01-02 03:04:05'"
    vdb.db.write(
        f"UPDATE {ARCHIVE} SET first_name = 'Archived', last_name = 'Person',"
        f" phone_number = '5550001111', status = 'SALE'{entry} WHERE lead_id = 4"
    )
    before = vdb.checksum()
    live_row = vdb.row_bytes(LIVE, [4])[4]
    verify = vdb.cli(["verify", "4"])
    assert verify.exit_code == 1
    result = vdb.cli(["archive", "4", "--ignore-window", "--json"])
    assert result.exit_code == 0, result.output
    if same_lead:  # update-if-different, as the Lead Archive API asks
        assert '"counts": {"archived": 1}' in result.stdout
        assert vdb.row_bytes(ARCHIVE, [4]) == {4: live_row}
    else:
        assert '"counts": {"conflict": 1}' in result.stdout
        assert vdb.checksum() == before
    assert "the same lead" in verify.output and "another lead" in verify.output


# --- 7. the newest-lead rule with the newest lead deleted mid-run ----------------------------


def test_newest_lead_deleted_mid_run_keeps_the_new_newest(vdb: VDb) -> None:
    vdb.seed(100)
    args = ["archive", "--where", "1=1", "--chunk-size", "50", "--sleep", "3"]
    with hp.Proc(hp.argv(vdb.dsn, [*args, "--ignore-window", "--json"])) as proc:
        proc.wait_chunk(1)
        vdb.db.write(f"DELETE FROM {LIVE} WHERE lead_id = 100")
        done = proc.finish(60)
    assert done.rc == 0, done.describe()
    assert done.summary["counts"] == {"archived": 98, "skipped_newest": 1}
    assert vdb.ids(LIVE) == [99]


# --- 10. jobs cancel on a running job is final -----------------------------------------------


def test_cancel_of_a_running_job_is_final(vdb: VDb) -> None:
    vdb.seed(1000)
    args = ["archive", "--list-id", "999", "--chunk-size", "50", "--ignore-window", "--json"]
    with hp.Proc(hp.argv(vdb.dsn, [*args, "--sleep", "2"])) as proc:
        proc.wait_chunk(1)
        cancel = vdb.cli(["jobs", "cancel", "1"])
        assert cancel.exit_code == 0, cancel.output
        done = proc.finish(60)
    assert done.rc == 3, done.describe()
    assert done.summary["state"] == "cancelled"
    assert done.error == "" and done.summary["resume"] is None
    state = vdb.db.scalar("SELECT state FROM archiver_jobs WHERE job_id = 1")
    assert state == "cancelled"
    moved = len(list_ids(vdb, ARCHIVE, 999))
    assert done.summary["counts"]["archived"] == moved  # counts describe what happened
    nxt = hp.run(vdb.dsn, args)
    assert nxt.rc == 0, nxt.describe()
    assert nxt.summary["job_id"] == 2  # a new job: the cancelled one is never resumed
    assert list_ids(vdb, LIVE, 999) == []
    assert vdb.db.scalar("SELECT state FROM archiver_jobs WHERE job_id = 1") == "cancelled"


# --- 12. counts describe what happened -------------------------------------------------------


def test_no_delete_on_an_equal_lead_writes_nothing_and_says_so(vdb: VDb) -> None:
    vdb.seed(10)
    vdb.db.write(f"INSERT INTO {ARCHIVE} SELECT * FROM {LIVE} WHERE lead_id IN (3, 4)")
    vdb.db.write(
        f"UPDATE {LIVE} SET first_name = 'changed', modify_date = modify_date WHERE lead_id = 4"
    )
    args = ["archive", "2", "3", "4", "--no-delete", "--ignore-window", "--json"]
    result = vdb.cli([*args, "--no-safe-auto-increment"])
    assert result.exit_code == 0, result.output
    assert '"counts": {"already_copied": 1, "refreshed": 2}' in result.stdout
    again = vdb.cli([*args, "--no-safe-auto-increment"])
    assert '"counts": {"already_copied": 3}' in again.stdout


def test_resume_after_cut_counts_each_lead_once(vdb: VDb) -> None:
    """A cut chunk's redo and the walk after it never meet the same lead twice."""
    vdb.seed(600)
    args = ["archive", "--where", "lead_id > 0", "--chunk-size", "100", "--ignore-window"]
    cut = hp.run(vdb.dsn, [*args, "--json"], env={"ARCHIVER_FAULT": "after_insert:2"})
    assert cut.rc == -9
    time.sleep(0.1)
    again = hp.run(vdb.dsn, [*args, "--json"])
    assert again.rc == 0, again.describe()
    assert sum(again.summary["job_counts"].values()) == 600
    assert again.summary["job_counts"] == {"archived": 599, "skipped_newest": 1}


# --- found by attacking the fixes above --------------------------------------------------------


def _job_spec(direction: str, **criteria: Any) -> JobSpec:
    return JobSpec(
        direction=direction,
        selection=Selection(criteria=Criteria(**criteria)),
        ignore_window=True,
        name="d1",
    )


def test_dearchive_after_an_alter_that_cut_values_keeps_the_full_copy(vdb: VDb) -> None:
    """An ALTER narrows a column during a dearchive chunk, cutting the restored live values;
    the DBA puts the type back. The redo must not take the cut rows for dialer changes."""
    vdb.seed(300)
    vdb.db.write(
        f"UPDATE {LIVE} SET comments = CONCAT('a long comment for lead ', lead_id)"
        " WHERE list_id = 999"
    )
    assert hp.run(vdb.dsn, ["archive", "--list-id", "999", "--ignore-window"]).rc == 0
    archived = vdb.row_bytes(ARCHIVE)

    def alter() -> None:
        other = vdb.connect()
        try:  # the server cuts every value: ALTER under a non-strict sql_mode
            other.write("SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION'")
            other.write(f"ALTER TABLE {LIVE} MODIFY comments VARCHAR(5)")
        finally:
            hp.close_quietly(other)

    waiter = threading.Thread(target=alter)

    def narrow(at: str, db: Db, ids: Sequence[int]) -> None:
        if at == "after_insert" and not waiter.is_alive():
            waiter.start()  # InnoDB: it waits for the chunk's metadata locks
            if vdb.engine == "MyISAM":
                waiter.join(20)

    settings = vdb.settings
    db = Db(connect(make_engine(settings), settings))
    try:
        if vdb.engine == "MyISAM":
            cut = run_job(db, settings, _job_spec("dearchive", list_ids=(999,)), hook=narrow)
            failed = outcome_error(cut)
            assert isinstance(failed, Failed) and cut.state == "failed"
            assert "column comments changed" in str(failed)
        else:  # the ALTER cannot cut in: the chunk commits first, whole
            first = run_job(db, settings, _job_spec("dearchive", list_ids=(999,)), hook=narrow)
            assert dict(first.counts) == {"dearchived": len(archived)}
        waiter.join(30)
        vdb.db.write(f"ALTER TABLE {LIVE} MODIFY comments VARCHAR(255)")
        again = run_job(db, settings, _job_spec("dearchive", list_ids=(999,)))
    finally:
        hp.close_quietly(db)
    if vdb.engine == "MyISAM":
        assert vdb.row_bytes(ARCHIVE) == archived  # every full comment still there
        assert dict(again.counts) == {"kept_changed": len(archived)}
    else:
        assert dict(again.counts) == {}


def test_redo_of_a_cut_chunk_keeps_the_chunk_size(vdb: VDb) -> None:
    vdb.seed(3000)
    vdb.db.write(f"UPDATE {LIVE} SET status = IF(lead_id IN (1, 3000), 'NI', 'XX')")
    args = ["archive", "--status", "NI", "--chunk-size", "50", "--ignore-window", "--json"]
    args += ["--no-safe-auto-increment", "--job-name", "r7"]
    cut = hp.run(vdb.dsn, args, env={"ARCHIVER_FAULT": "after_insert:1"})
    assert cut.rc == -9
    vdb.db.write(f"UPDATE {LIVE} SET status = 'NI'")  # every lead between them selected now
    again = hp.run(vdb.dsn, args)
    assert again.rc == 0, again.describe()
    assert max(c["leads"] for c in again.chunks()) <= 100  # the chunk's size, plus its leads
    assert again.summary["job_counts"] == {"archived": 3000}
    assert vdb.count(LIVE) == 0


def test_kept_changed_lead_leaves_no_stale_copy_behind(vdb: VDb) -> None:
    vdb.seed(300)
    lead = status_ids(vdb, "NI")[3]

    def bump(at: str, db: Db, ids: Sequence[int]) -> None:
        if at == "after_update" and lead in ids and vdb.engine == "MyISAM":
            dialer_update(
                vdb,
                f"UPDATE {LIVE} SET called_count = called_count + 1 WHERE lead_id = :l",
                {"l": lead},
            )

    settings = vdb.settings
    db = Db(connect(make_engine(settings), settings))
    try:
        first = run_job(db, settings, _job_spec("archive", statuses=("NI",)), hook=bump)
        dialer_update(vdb, f"UPDATE {LIVE} SET status = 'SALE' WHERE lead_id = :l", {"l": lead})
        run_job(db, settings, replace(_job_spec("archive", statuses=("NI",)), name="later"))
    finally:
        hp.close_quietly(db)
    if vdb.engine == "MyISAM":
        assert first.counts["kept_changed"] == 1
    assert set(vdb.ids(LIVE)) & set(vdb.ids(ARCHIVE)) == set()
    if vdb.engine == "MyISAM":
        assert lead in vdb.ids(LIVE)


def test_cancel_of_a_cut_job_is_refused_without_force(vdb: VDb) -> None:
    vdb.seed(300)
    args = ["archive", "--status", "NI", "--ignore-window", "--json", "--job-name", "c"]
    cut = hp.run(vdb.dsn, args, env={"ARCHIVER_FAULT": "after_insert"})
    assert cut.rc == -9
    refused = vdb.cli(["jobs", "cancel", "c"])
    if vdb.engine == "MyISAM":  # its copies are in the archive; only it can finish them
        assert refused.exit_code == 2
        assert "cut in the middle of a chunk" in refused.output and "--force" in refused.output
        assert vdb.db.scalar("SELECT state FROM archiver_jobs WHERE job_id = 1") == "running"
        again = hp.run(vdb.dsn, args)
        assert again.rc == 0, again.describe()
        assert set(vdb.ids(LIVE)) & set(vdb.ids(ARCHIVE)) == set()
    else:  # the cut chunk rolled back: nothing in hand, the cancel is plain
        assert refused.exit_code == 0, refused.output


def test_dearchive_with_overrides_of_an_identical_live_lead_says_already_live(vdb: VDb) -> None:
    vdb.seed(10)
    vdb.db.write(f"INSERT INTO {ARCHIVE} SELECT * FROM {LIVE} WHERE lead_id = 5")
    args = ["dearchive", "5", "--set-status", "NEW", "--reset-called", "--ignore-window", "--json"]
    result = vdb.cli(args)
    assert result.exit_code == 0, result.output
    assert '"counts": {"already_live": 1}' in result.stdout
