"""Tables that write values of their own: triggers and generated columns. A copy that the target
table rewrites differs from its source by what the table did, and no proven removal may take
that difference for an edit: the run refuses what it cannot copy byte for byte (exit 2 naming
the trigger or the column, nothing written, no job row), and a column both tables compute
alike is neither copied nor compared. Both directions, both engines."""

from __future__ import annotations

from typing import Any

import pytest

from archiver.db import Db, connect, make_engine
from archiver.jobtypes import JobSpec
from archiver.runner import run_job
from archiver.selection import Selection
from tests.integration.test_refusals import archiver_tables
from tests.support import oracle
from tests.support import proc as hp
from tests.support.beside import Beside
from tests.support.cli import summary_of
from tests.support.db import ARCHIVE, LIVE, VDb

IDS = ["3", "4", "5"]


def tables_bytes(vdb: VDb) -> dict[str, Any]:
    """Every row of both tables, each with every one of its own table's columns as bytes."""
    return {t: oracle.row_bytes(vdb.db, t, oracle.columns_of(vdb.db, t)) for t in (LIVE, ARCHIVE)}


def archived(vdb: VDb, ids: list[str] = IDS) -> None:
    """The leads archived by the tool, before a trigger or column is added."""
    done = vdb.cli(["archive", *ids, "--ignore-window"])
    assert done.exit_code == 0, done.output


def refused(vdb: VDb, args: list[str], *names: str) -> str:
    """The run exits 2 naming `names`, with nothing written: no row, no checkpoint table."""
    before = tables_bytes(vdb)
    had = archiver_tables(vdb)
    jobs = vdb.count("archiver_jobs") if had else 0
    done = vdb.cli([*args, "--ignore-window"])
    assert done.exit_code == 2, done.output
    error = [ln for ln in done.stderr.splitlines() if ln.startswith("Error:")]
    assert len(error) == 1, done.stderr
    for name in names:
        assert name in error[0], error[0]
    assert "Traceback" not in done.stderr
    assert tables_bytes(vdb) == before
    assert archiver_tables(vdb) == had
    if had:
        assert vdb.count("archiver_jobs") == jobs
    return error[0]


# --- triggers --------------------------------------------------------------------------------


def test_insert_trigger_on_the_live_table_refuses_dearchive_not_archive(vdb: VDb) -> None:
    """The restore would be rewritten (here: source_id) and its archive row then taken for a
    superseded copy: the archived value in neither table. Archive never inserts into
    vicidial_list: the trigger is the table's own business there."""
    vdb.seed(10)
    vdb.db.write(f"UPDATE {LIVE} SET source_id = 'CRM-ORIGINAL-7' WHERE lead_id = 5")
    vdb.db.write(
        f"CREATE TRIGGER va_tag BEFORE INSERT ON {LIVE} FOR EACH ROW SET NEW.source_id = 'web'"
    )
    kept = vdb.row_bytes(LIVE, [3, 4, 5])
    archived(vdb)
    assert vdb.row_bytes(ARCHIVE) == kept
    refused(vdb, ["dearchive", *IDS], "va_tag", "BEFORE INSERT", LIVE, "can set")
    vdb.db.write("DROP TRIGGER va_tag")
    # After the copy, one that writes to the source could change or delete the archive row
    # between the copy and the delete; one that calls a procedure could do anything.
    vdb.db.write(
        f"CREATE TRIGGER va_note AFTER INSERT ON {LIVE} FOR EACH ROW"
        f" UPDATE {ARCHIVE} SET comments = 'restored' WHERE lead_id = NEW.lead_id"
    )
    refused(vdb, ["dearchive", *IDS], "va_note", "AFTER INSERT", f"names {ARCHIVE}")
    vdb.db.write("DROP TRIGGER va_note")
    vdb.db.write("CREATE PROCEDURE va_proc() BEGIN END")
    vdb.db.write(f"CREATE TRIGGER va_call BEFORE INSERT ON {LIVE} FOR EACH ROW CALL va_proc()")
    refused(vdb, ["dearchive", *IDS], "va_call", "calls a procedure")
    vdb.db.write("DROP TRIGGER va_call")
    # One that leaves the row and the lead tables alone (a log) is named, and the run goes on.
    vdb.db.write(
        f"CREATE TRIGGER va_log BEFORE INSERT ON {LIVE} FOR EACH ROW"
        " INSERT INTO vicidial_admin_log (event_date, user, ip_address, event_section,"
        " event_type, record_id, event_code, event_sql, event_notes)"
        " VALUES (NOW(), 'x', '', 'LEADS', 'ADD', NEW.lead_id, '', '', 'NEW.x = 1')"
    )
    done = vdb.cli(["dearchive", *IDS, "--ignore-window"])
    assert done.exit_code == 0, done.output
    assert "trigger 'va_log' (BEFORE INSERT on vicidial_list) fires" in done.stderr
    assert vdb.row_bytes(LIVE, [3, 4, 5]) == kept
    assert vdb.ids(ARCHIVE) == []


def test_a_trigger_that_sets_the_row_is_refused_whatever_its_text(vdb: VDb) -> None:
    vdb.seed(10)
    archived(vdb)
    for n, body in enumerate(
        (
            "BEGIN IF NEW.status = 'NEW' THEN SET @x = 1; END IF; END",  # taken for a SET
            "SET NEW.`comments` := 'x'",
            "BEGIN /* nothing; */ SET NEW.comments = 'a;b'; END",
            "SET @a = 1, NEW.comments = 'x'",
        )
    ):
        vdb.db.write(f"CREATE TRIGGER va_t{n} BEFORE INSERT ON {LIVE} FOR EACH ROW {body}")
        refused(vdb, ["dearchive", *IDS], f"va_t{n}", "can set")
        vdb.db.write(f"DROP TRIGGER va_t{n}")
    done = vdb.cli(["dearchive", *IDS, "--ignore-window", "--json"])
    assert done.exit_code == 0, done.output
    assert summary_of(done)["counts"] == {"dearchived": 3}


def test_triggers_on_the_archive_table_refuse_archive_and_its_refresh(vdb: VDb) -> None:
    vdb.seed(10)
    vdb.db.write(
        f"CREATE TRIGGER va_stamp BEFORE UPDATE ON {ARCHIVE} FOR EACH ROW"
        " SET NEW.comments = 'refreshed'"
    )
    # The refresh (update-if-different) would be rewritten; --no-update runs no UPDATE.
    refused(vdb, ["archive", *IDS], "va_stamp", "BEFORE UPDATE", ARCHIVE)
    done = vdb.cli(["archive", *IDS, "--no-update", "--ignore-window", "--json"])
    assert done.exit_code == 0, done.output
    assert summary_of(done)["counts"] == {"archived": 3}
    # Dearchive never writes into the archive table.
    done = vdb.cli(["dearchive", "3", "--ignore-window", "--json"])
    assert done.exit_code == 0, done.output
    vdb.db.write(
        f"CREATE TRIGGER va_tag BEFORE INSERT ON {ARCHIVE} FOR EACH ROW SET NEW.comments = 'x'"
    )
    refused(vdb, ["archive", "6", "--no-update"], "va_tag", "BEFORE INSERT", ARCHIVE)
    refused(vdb, ["archive", "6", "--no-update", "--dry-run"], "va_tag")


def test_delete_trigger_is_a_warning(vdb: VDb) -> None:
    """A DELETE trigger cannot change either lead table during the run's deletes (each reads
    both: error 1442), so the run goes on and names it."""
    vdb.seed(10)
    vdb.db.write(
        f"CREATE TRIGGER va_gone AFTER DELETE ON {LIVE} FOR EACH ROW"
        " INSERT INTO vicidial_admin_log (event_date, user, ip_address, event_section,"
        " event_type, record_id, event_code, event_sql, event_notes)"
        " VALUES (NOW(), 'x', '', 'LEADS', 'DELETE', OLD.lead_id, '', '', '')"
    )
    kept = vdb.row_bytes(LIVE, [3, 4, 5])
    done = vdb.cli(["archive", *IDS, "--ignore-window"])
    assert done.exit_code == 0, done.output
    assert "trigger 'va_gone' (AFTER DELETE on vicidial_list)" in done.stderr
    assert vdb.ids(ARCHIVE) == [3, 4, 5]
    assert vdb.row_bytes(ARCHIVE) == kept


def test_insert_trigger_made_during_a_dearchive_never_costs_the_archived_value(
    vdb: VDb,
) -> None:
    """The trigger is created after the run's checks, before its copy: the restore is
    rewritten, and the proven removal of a superseded archive row must not take the
    difference for an edit (it checks for the trigger in the statement)."""
    vdb.seed(10)
    vdb.db.write(f"UPDATE {LIVE} SET source_id = 'CRM-ORIGINAL-7' WHERE lead_id = 5")
    archived(vdb)
    original = oracle.values_of(vdb.db, ARCHIVE, "HEX(source_id)", "lead_id = 5")[5]
    make = Beside(
        vdb,
        f"CREATE TRIGGER va_tag BEFORE INSERT ON {LIVE} FOR EACH ROW SET NEW.source_id = 'web'",
        {},
        point="scan",
    )
    spec = JobSpec(
        direction="dearchive", selection=Selection.from_ids([3, 4, 5]), ignore_window=True
    )
    db = Db(connect(make_engine(vdb.settings), vdb.settings))
    try:
        run_job(db, vdb.settings, spec, hook=make.hook)
    finally:
        hp.close_quietly(db)
    make.join()
    held = [
        *oracle.values_of(vdb.db, LIVE, "HEX(source_id)", "lead_id = 5").values(),
        *oracle.values_of(vdb.db, ARCHIVE, "HEX(source_id)", "lead_id = 5").values(),
    ]
    assert original in held, f"the archived source_id {original} is in neither table: {held}"


# --- generated columns ----------------------------------------------------------------------


def add_area(vdb: VDb, live: str, archive: str) -> None:
    vdb.db.write(f"ALTER TABLE {LIVE} ADD COLUMN phone_area VARCHAR(20) {live}")
    vdb.db.write(f"ALTER TABLE {ARCHIVE} ADD COLUMN phone_area VARCHAR(20) {archive}")


def test_generated_in_the_live_table_only_archives_and_refuses_dearchive(vdb: VDb) -> None:
    """The live table computes phone_area, the archive stores it: archiving copies the
    computed value like any other; a restore could not write the archived value (the live
    table computes its own), so dearchive refuses, naming the column."""
    vdb.seed(10)
    add_area(vdb, "AS (LEFT(phone_number, 3)) VIRTUAL", "NULL")
    kept = oracle.row_bytes(vdb.db, LIVE, oracle.columns_of(vdb.db, LIVE), [3, 4, 5])
    archived(vdb)
    assert oracle.row_bytes(vdb.db, ARCHIVE, oracle.columns_of(vdb.db, LIVE)) == kept
    vdb.db.write(f"UPDATE {ARCHIVE} SET phone_area = 'ORIGINAL-AREA' WHERE lead_id = 5")
    refused(vdb, ["dearchive", *IDS], "phone_area", "generated in vicidial_list")
    refused(vdb, ["dearchive", *IDS, "--dry-run"], "phone_area")


def test_generated_in_the_archive_only_refuses_archive(vdb: VDb) -> None:
    vdb.seed(10)
    add_area(vdb, "NULL", "AS (LEFT(phone_number, 3)) STORED")
    vdb.db.write(f"UPDATE {LIVE} SET phone_area = 'KEEP-ME' WHERE lead_id = 5")
    refused(vdb, ["archive", *IDS], "phone_area", f"generated in {ARCHIVE}")


def test_generated_differently_in_the_two_tables_refuses_both_directions(vdb: VDb) -> None:
    vdb.seed(10)
    add_area(vdb, "AS (LEFT(phone_number, 3)) VIRTUAL", "AS (LEFT(phone_number, 4)) VIRTUAL")
    refused(vdb, ["archive", *IDS], "phone_area", "generated differently")
    vdb.db.write(f"INSERT INTO {ARCHIVE} (lead_id, phone_number) VALUES (77, '5551234')")
    refused(vdb, ["dearchive", "77"], "phone_area", "generated differently")


@pytest.mark.parametrize("kind", ["VIRTUAL", "STORED"])
def test_generated_alike_in_both_tables_round_trips_byte_exact(vdb: VDb, kind: str) -> None:
    """Neither copied nor compared: each table computes it from the columns the copy writes."""
    vdb.seed(30)
    add_area(vdb, f"AS (LEFT(phone_number, 3)) {kind}", "AS (LEFT(phone_number, 3)) VIRTUAL")
    columns = oracle.columns_of(vdb.db, LIVE)
    original = oracle.row_bytes(vdb.db, LIVE, columns)
    done = vdb.cli(["archive", "--list-id", "101", "--ignore-window", "--json"])
    assert done.exit_code == 0, done.output
    moved = set(oracle.ids_of(vdb.db, ARCHIVE))
    assert moved and summary_of(done)["counts"].get("archived") == len(moved)
    assert oracle.row_bytes(vdb.db, ARCHIVE, columns) == {i: original[i] for i in moved}
    done = vdb.cli(["dearchive", "--list-id", "101", "--ignore-window", "--json"])
    assert done.exit_code == 0, done.output
    assert summary_of(done)["counts"] == {"dearchived": len(moved)}
    assert oracle.row_bytes(vdb.db, LIVE, columns) == original
    assert vdb.count(ARCHIVE) == 0


def test_an_allowed_trigger_leaves_the_removal_of_a_superseded_copy_to_work(vdb: VDb) -> None:
    """A logging trigger on vicidial_list (allowed, named): a restored lead the dialer changes
    during the chunk keeps its live row, and the archive row it was copied from still goes
    (MyISAM: the proven removal checks the trigger set is the one the run allowed)."""
    vdb.seed(10)
    archived(vdb)
    vdb.db.write("CREATE TABLE va_log (lead_id INT UNSIGNED)")
    vdb.db.write(
        f"CREATE TRIGGER va_log AFTER INSERT ON {LIVE} FOR EACH ROW"
        " INSERT INTO va_log VALUES (NEW.lead_id)"
    )
    sell = Beside(vdb, f"UPDATE {LIVE} SET status = 'SALE' WHERE lead_id = 4", {})
    spec = JobSpec(
        direction="dearchive", selection=Selection.from_ids([3, 4, 5]), ignore_window=True
    )
    db = Db(connect(make_engine(vdb.settings), vdb.settings))
    try:
        summary = run_job(db, vdb.settings, spec, hook=sell.hook)
    finally:
        hp.close_quietly(db)
    sell.join()
    assert summary.counts["dearchived"] == 3, dict(summary.counts)
    assert vdb.ids(ARCHIVE) == [] and vdb.ids(LIVE) == list(range(1, 11))
    assert vdb.count("va_log") == 3
    if vdb.engine == "MyISAM":
        assert sell.rows == 1
        assert oracle.values_of(vdb.db, LIVE, "status", "lead_id = 4") == {4: "SALE"}


def test_a_trigger_whose_body_this_account_cannot_read_is_refused(vdb: VDb) -> None:
    """The least-privilege account of grants.sql holds no TRIGGER privilege: MariaDB lists the
    trigger but not its body, so nothing proves it leaves the copy alone."""
    from tests.integration.test_privileges import GRANTS_USER, grants_sql, statements

    vdb.seed(10)
    archived(vdb)
    vdb.db.write(
        f"CREATE TRIGGER va_hidden BEFORE INSERT ON {LIVE} FOR EACH ROW SET NEW.source_id = 'x'"
    )
    user = "va_trg_" + vdb.name[-8:]
    text = grants_sql().replace("`asterisk`.", f"`{vdb.name}`.")
    text = text.replace(GRANTS_USER, f"'{user}'@'127.0.0.1'").replace("'CHANGE_ME'", "'pw'")
    try:
        for stmt in statements(text):
            vdb.db.write(stmt)
        dsn = f"mysql://{user}:pw@127.0.0.1:3306/{vdb.name}"
        before = tables_bytes(vdb)
        done = vdb.cli(["--dsn", dsn, "dearchive", *IDS, "--ignore-window"])
        assert done.exit_code == 2, done.output
        assert "va_hidden" in done.stderr and "cannot read" in done.stderr, done.stderr
        assert tables_bytes(vdb) == before
    finally:
        vdb.db.write(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")


def test_a_delete_trigger_on_the_source_that_writes_to_the_target_is_refused(vdb: VDb) -> None:
    """Every delete of the run reads the target, so the server refuses each of them (1442):
    the run would fail, run after run. Refused before anything is written."""
    vdb.seed(10)
    vdb.db.write(
        f"CREATE TRIGGER va_keep AFTER DELETE ON {LIVE} FOR EACH ROW"
        f" INSERT IGNORE INTO {ARCHIVE} (lead_id, status) VALUES (OLD.lead_id, OLD.status)"
    )
    refused(vdb, ["archive", *IDS], "va_keep", ARCHIVE, "1442")


def test_an_insert_trigger_made_during_a_dearchive_holds_the_pair(vdb: VDb) -> None:
    """Review round 3: the dearchive rightly kept both rows when a trigger created after its
    scan cut the restored comments, but nothing held the pair, and the next archive refreshed
    the archive with the cut values. The job now stops, its leads held."""
    full = "customer asked for the premium plan, call Tue"
    vdb.seed(20)
    vdb.db.write(f"UPDATE {LIVE} SET comments = :c WHERE lead_id = 9", {"c": full})
    archived(vdb, ["9"])
    made: list[bool] = []

    def hook(at: str, _db: Db, _ids: Any) -> None:
        if at == "scan" and not made:
            made.append(True)
            other = vdb.connect()
            try:
                other.write(
                    f"CREATE TRIGGER va_cut BEFORE INSERT ON {LIVE} FOR EACH ROW"
                    " SET NEW.comments = LEFT(NEW.comments, 5)"
                )
            finally:
                hp.close_quietly(other)

    db = Db(connect(make_engine(vdb.settings), vdb.settings))
    spec = JobSpec("dearchive", Selection.from_ids([9]), ignore_window=True)
    try:
        summary = run_job(db, vdb.settings, spec, hook=hook)
    finally:
        hp.close_quietly(db)
    if vdb.engine == "MyISAM":  # InnoDB: the CREATE TRIGGER waited for the chunk
        assert summary.state == "failed", summary
    vdb.db.write("DROP TRIGGER IF EXISTS va_cut")
    vdb.cli(["archive", "--where", "lead_id <= 20", "--ignore-window"])
    rows = vdb.db.rows(
        f"SELECT comments FROM {LIVE} WHERE lead_id = 9"
        f" UNION ALL SELECT comments FROM {ARCHIVE} WHERE lead_id = 9"
    )
    assert full in [str(r[0]) for r in rows], "the full comments are in neither table"
