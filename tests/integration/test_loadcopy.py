"""The copy by LOAD DATA LOCAL INFILE (archiver/loadcopy.py), on MyISAM and on InnoDB, in both
directions: every hostile value arrives byte for byte (judged by the oracle's exact bytes and by
the delete step's own proof), the lead data never rests on disk even when the process is killed
mid-copy, the connection sends no file but the one its statement named, and a refusal of LOCAL
INFILE is reported, with nothing written, so the caller can copy the other way."""

from __future__ import annotations

import glob
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pymysql
import pytest
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError

from archiver.db import Db, connect, make_engine
from archiver.jobtypes import ARCHIVE as ARCHIVE_DIR
from archiver.jobtypes import DEARCHIVE as DEARCHIVE_DIR
from archiver.loadcopy import (
    CopyConnection,
    LoadCopy,
    LoadUnavailable,
    LocalInfileRefused,
    availability,
    make_copy_engine,
    spool,
)
from archiver.schema import reflect
from archiver.steps import ChunkSql, State, state_of
from tests.integration.test_hostile_data import DATE_COLS, DATES, FILLS, TEXT_VALUES, insert_lead
from tests.support import oracle
from tests.support.db import ARCHIVE, LIVE, VDb
from tests.support.proc import Proc, close_quietly, wait_blocked


def read_states(db: Db, sql: ChunkSql, ids: list[int]) -> dict[int, State]:
    """Each id's state by the chunk's own comparison (`classify`, then `in_dst`)."""
    states = {int(r[0]): state_of(True, r[1]) for r in db.rows(sql.classify(), {"ids": ids})}
    for r in db.rows(sql.in_dst(), {"ids": ids}):
        states.setdefault(int(r[0]), State(False, True, False))
    return states


DIRECTIONS = {ARCHIVE_DIR: (LIVE, ARCHIVE), DEARCHIVE_DIR: (ARCHIVE, LIVE)}

# Values LOAD DATA's format could confuse: its NULL marker, its escapes, its terminators.
LOAD_TRAPS = [
    "\\N",
    "\\n",
    "\\t",
    "\\0",
    "\\Z",
    "\\\\N",
    "N",
    "NULL",
    "",
    "a\tb",
    "\t",
    "\t\t",
    "end\\",
    "\\",
    "\r",
    "a\rb\n",
    "\x00",
    "\x1a",
    "\\\t\\\n",
]


@pytest.fixture
def cdb(vdb: VDb) -> Iterator[Db]:
    """The one connection that copies: LOCAL INFILE on, for its own files only."""
    db = Db(connect(make_copy_engine(vdb.settings), vdb.settings))
    try:
        yield db
    finally:
        close_quietly(db)


def loadcopy(vdb: VDb, direction: str, overrides: Mapping[str, Any] | None = None) -> LoadCopy:
    src, dst = DIRECTIONS[direction]
    s, d = reflect(vdb.db, src), reflect(vdb.db, dst)
    assert s is not None and d is not None
    return LoadCopy(s, d, overrides or {})


def copy_in_chunks(
    lc: LoadCopy, read_db: Db, copy_db: Db, ids: Sequence[int], chunk: int = 500, **kw: Any
) -> int:
    loaded = 0
    for k in range(0, len(ids), chunk):
        loaded += lc.load(copy_db, lc.read(read_db, ids[k : k + chunk]), **kw)
    return loaded


def assert_exact_copies(
    vdb: VDb,
    direction: str,
    ids: Sequence[int],
    overrides: Mapping[str, Any] | None = None,
    converted: Sequence[str] = (),
) -> None:
    """Each lead's target row holds its source row's bytes in every shared column (but the
    overrides, and the `converted` ones, stored in another character set), by the oracle, and
    the delete step's own comparison calls them equal."""
    src, dst = DIRECTIONS[direction]
    skip = {*(overrides or {}), *converted}
    cols = [c for c in oracle.columns_of(vdb.db, LIVE) if c not in skip]
    source = oracle.row_bytes(vdb.db, src, cols, ids)
    assert sorted(source) == sorted(ids)
    target = oracle.row_bytes(vdb.db, dst, cols, ids)
    differ = [i for i in ids if target.get(i) != source[i]]
    assert not differ, f"{len(differ)} copies differ, e.g. lead {differ[0]}"
    s, d = reflect(vdb.db, src), reflect(vdb.db, dst)
    assert s is not None and d is not None
    states = read_states(vdb.db, ChunkSql(direction, s, d, overrides or {}), ids)
    assert sorted(states) == sorted(ids)
    assert all(st.in_src and st.in_dst and st.equal for st in states.values())


def put(vdb: VDb, direction: str, lead: int, **values: Any) -> None:
    insert_lead(vdb.db, DIRECTIONS[direction][0], lead, **values)


# --- byte-exact copies --------------------------------------------------------------------------


@pytest.mark.parametrize("direction", [ARCHIVE_DIR, DEARCHIVE_DIR])
def test_hostile_text_values_arrive_byte_for_byte(vdb: VDb, cdb: Db, direction: str) -> None:
    values: list[str | None] = [*TEXT_VALUES, *LOAD_TRAPS, None]
    widths = {
        "first_name": 30,
        "last_name": 30,
        "comments": 255,
        "email": 70,
        "security_phrase": 100,
        "owner": 20,
        "vendor_lead_code": 20,
        "source_id": 50,
    }
    for n, text in enumerate(values, 1):
        cut = {c: None if text is None else text[:w] for c, w in widths.items()}
        put(vdb, direction, n, **cut, address3=None if text is None else "NULL")
    ids = list(range(1, len(values) + 1))
    src = DIRECTIONS[direction][0]
    stored = dict(vdb.db.rows(f"SELECT lead_id, comments FROM `{src}`"))
    assert [stored[i] for i in ids] == values  # the server kept each value as given
    assert copy_in_chunks(loadcopy(vdb, direction), vdb.db, cdb, ids) == len(ids)
    assert_exact_copies(vdb, direction, ids)
    dst = DIRECTIONS[direction][1]
    copied = dict(vdb.db.rows(f"SELECT lead_id, comments FROM `{dst}`"))
    assert [copied[i] for i in ids] == values


@pytest.mark.parametrize("direction", [ARCHIVE_DIR, DEARCHIVE_DIR])
def test_zero_dates_decimals_enums_and_extremes(vdb: VDb, cdb: Db, direction: str) -> None:
    for n, dates in enumerate(DATES, 1):
        put(vdb, direction, n, **dict(zip(DATE_COLS, dates, strict=True)))
    extremes = [
        {"gmt_offset_now": "-99.99", "rank": -32768, "called_since_last_reset": "Y10"},
        {"gmt_offset_now": "99.99", "rank": 32767, "called_since_last_reset": "D"},
        {"gmt_offset_now": None, "rank": 0, "called_since_last_reset": None, "gender": None},
        {"gmt_offset_now": "0.00", "called_count": 65535, "list_id": 2**64 - 1},
        {"gmt_offset_now": "-0.50", "called_count": None, "entry_list_id": 2**64 - 1},
        # Not a value of the ENUM: a non-strict server stores the empty error value.
        {"called_since_last_reset": "bogus", "gender": "X"},
    ]
    first = len(DATES) + 1
    for k, values in enumerate(extremes):
        put(vdb, direction, first + k, **values)
    put(vdb, direction, 4294967295, first_name="top of INT UNSIGNED")
    ids = [*range(1, first + len(extremes)), 4294967295]
    src = DIRECTIONS[direction][0]
    enum = vdb.db.scalar(
        f"SELECT called_since_last_reset FROM `{src}` WHERE lead_id = :i", {"i": ids[-2]}
    )
    assert enum == ""  # the trap is real
    assert copy_in_chunks(loadcopy(vdb, direction), vdb.db, cdb, ids) == len(ids)
    assert_exact_copies(vdb, direction, ids)
    dst = DIRECTIONS[direction][1]
    exprs = ", ".join(f"CAST(`{c}` AS CHAR)" for c in DATE_COLS)
    copied = vdb.db.rows(
        f"SELECT {exprs} FROM `{dst}` WHERE lead_id < :f ORDER BY lead_id", {"f": first}
    )
    assert [tuple(r) for r in copied] == DATES


def _varchars(vdb: VDb) -> dict[str, int]:
    rows = vdb.db.rows(
        "SELECT COLUMN_NAME, CHARACTER_MAXIMUM_LENGTH FROM information_schema.COLUMNS"
        " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t AND DATA_TYPE = 'varchar'",
        {"t": LIVE},
    )
    return {str(r[0]): int(r[1]) for r in rows}


@pytest.mark.parametrize("direction", [ARCHIVE_DIR, DEARCHIVE_DIR])
def test_maximum_length_values_in_every_varchar(vdb: VDb, cdb: Db, direction: str) -> None:
    varchars = _varchars(vdb)
    assert len(varchars) == 23
    fills = {**FILLS, 6: "\\", 7: "\t", 8: "\\N"}  # each escaped to twice its length
    for lead, fill in fills.items():
        put(vdb, direction, lead, **{c: (fill * n)[:n] for c, n in varchars.items()})
    ids = sorted(fills)
    assert copy_in_chunks(loadcopy(vdb, direction), vdb.db, cdb, ids) == len(ids)
    assert_exact_copies(vdb, direction, ids)
    lengths = ", ".join(f"CHAR_LENGTH(`{c}`)" for c in varchars)
    for row in vdb.db.rows(f"SELECT {lengths} FROM `{DIRECTIONS[direction][1]}`"):
        assert list(row) == list(varchars.values())  # nothing was cut


@pytest.mark.parametrize("direction", [ARCHIVE_DIR, DEARCHIVE_DIR])
def test_four_byte_utf8_in_utf8mb4_tables(vdb: VDb, cdb: Db, direction: str) -> None:
    for table in (LIVE, ARCHIVE):
        vdb.db.write(
            f"ALTER TABLE `{table}` CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        )
    emoji = ["😀", "𝄞 music", "🎉\t🎉", "a😀\\N", "👨‍👩‍👧", "😀" * 255]
    for n, text in enumerate(emoji, 1):
        put(vdb, direction, n, first_name=text[:30], comments=text, owner=text[:20])
    ids = list(range(1, len(emoji) + 1))
    assert copy_in_chunks(loadcopy(vdb, direction), vdb.db, cdb, ids) == len(ids)
    assert_exact_copies(vdb, direction, ids)
    copied = dict(vdb.db.rows(f"SELECT lead_id, comments FROM `{DIRECTIONS[direction][1]}`"))
    assert [copied[i] for i in ids] == emoji


def test_synthetic_leads_there_and_back_in_chunks(vdb: VDb, cdb: Db) -> None:
    vdb.seed(1200)
    ids = vdb.ids(LIVE)
    original = vdb.row_bytes(LIVE)
    assert copy_in_chunks(loadcopy(vdb, ARCHIVE_DIR), vdb.db, cdb, ids, chunk=250) == 1200
    assert_exact_copies(vdb, ARCHIVE_DIR, ids)
    vdb.db.write(f"DELETE FROM {LIVE}")
    back = loadcopy(vdb, DEARCHIVE_DIR)
    assert sum(back.copy(cdb, ids[k : k + 500]) for k in range(0, 1200, 500)) == 1200
    assert vdb.row_bytes(LIVE) == original


# --- what the target holds already, its shape, its character set -----------------------------


def test_a_row_already_in_the_target_is_left_as_it_is(vdb: VDb, cdb: Db) -> None:
    for lead in (1, 2, 3):
        insert_lead(vdb.db, LIVE, lead, first_name=f"live{lead}")
    insert_lead(vdb.db, ARCHIVE, 2, first_name="another copy")
    stale = vdb.row_bytes(ARCHIVE, [2])
    assert loadcopy(vdb, ARCHIVE_DIR).copy(cdb, [1, 2, 3]) == 2
    assert vdb.row_bytes(ARCHIVE, [2]) == stale
    assert_exact_copies(vdb, ARCHIVE_DIR, [1, 3])


def test_column_order_and_columns_only_in_the_target(vdb: VDb, cdb: Db) -> None:
    vdb.db.write(
        f"ALTER TABLE {ARCHIVE} MODIFY `comments` VARCHAR(255) AFTER `lead_id`,"
        " MODIFY `rank` SMALLINT(5) NOT NULL DEFAULT 0 FIRST,"
        " ADD COLUMN `archived_note` VARCHAR(10) DEFAULT 'kept'"
    )
    insert_lead(vdb.db, LIVE, 1, comments="a\tcomment", rank=-7, first_name="Ann")
    insert_lead(vdb.db, LIVE, 2, comments=None, rank=7)
    assert loadcopy(vdb, ARCHIVE_DIR).copy(cdb, [1, 2]) == 2
    assert_exact_copies(vdb, ARCHIVE_DIR, [1, 2])
    assert vdb.db.rows(f"SELECT DISTINCT archived_note FROM {ARCHIVE}") == [("kept",)]


def test_latin1_source_arrives_in_a_utf8mb4_target(vdb: VDb, cdb: Db) -> None:
    vdb.db.write(
        f"ALTER TABLE {LIVE} MODIFY `first_name` VARCHAR(30) CHARACTER SET latin1"
        " COLLATE latin1_swedish_ci"
    )
    vdb.db.write(
        f"ALTER TABLE {ARCHIVE} MODIFY `first_name` VARCHAR(30) CHARACTER SET utf8mb4"
        " COLLATE utf8mb4_unicode_ci"
    )
    names = ["Müller", "€uro", "Žofie", "plain", "\\N\t"]
    for n, name in enumerate(names, 1):
        insert_lead(vdb.db, LIVE, n, first_name=name)
    ids = list(range(1, len(names) + 1))
    assert loadcopy(vdb, ARCHIVE_DIR).copy(cdb, ids) == len(names)
    # The delete compares the two in utf8mb4; the oracle the other columns' bytes.
    assert_exact_copies(vdb, ARCHIVE_DIR, ids, converted=["first_name"])
    copied = vdb.db.rows(f"SELECT first_name, HEX(first_name) FROM {ARCHIVE} ORDER BY lead_id")
    assert [r[0] for r in copied] == names
    assert [r[1] for r in copied] == [n.encode().hex().upper() for n in names]  # UTF-8 now


def test_a_restore_sets_its_overrides_in_the_load(vdb: VDb, cdb: Db) -> None:
    overrides = {"called_since_last_reset": "N", "status": "NEW", "called_count": 0}
    for lead in (1, 2):
        insert_lead(
            vdb.db, ARCHIVE, lead, status="SALE", called_count=9, called_since_last_reset="Y3"
        )
    assert loadcopy(vdb, DEARCHIVE_DIR, overrides).copy(cdb, [1, 2]) == 2
    assert_exact_copies(vdb, DEARCHIVE_DIR, [1, 2], overrides)
    got = vdb.db.rows(f"SELECT status, called_count, called_since_last_reset FROM {LIVE}")
    assert got == [("NEW", 0, "N"), ("NEW", 0, "N")]


def test_the_load_belongs_to_the_connections_transaction(vdb: VDb, cdb: Db) -> None:
    vdb.seed(20)
    lc = loadcopy(vdb, ARCHIVE_DIR)
    rows = lc.read(vdb.db, vdb.ids(LIVE))
    with pytest.raises(RuntimeError), cdb.transaction():
        assert lc.load(cdb, rows) == 20
        raise RuntimeError("the chunk failed after the copy")
    # InnoDB rolls the copy back with the chunk; MyISAM keeps what it wrote (the delete proves
    # each copy before it removes a source row, so a kept copy is only a copy).
    assert vdb.count(ARCHIVE) == (0 if vdb.engine == "InnoDB" else 20)


def test_a_dry_run_shows_the_load_and_writes_nothing(vdb: VDb, cdb: Db) -> None:
    vdb.seed(5)
    lc = loadcopy(vdb, ARCHIVE_DIR)
    cdb.dry_run = True
    assert lc.copy(cdb, vdb.ids(LIVE)) == 0
    assert vdb.count(ARCHIVE) == 0
    (shown,) = cdb.planned
    assert shown.startswith(
        "LOAD DATA LOCAL INFILE '<the chunk\\'s rows, in memory>' IGNORE INTO TABLE"
        " `vicidial_list_archive`\nCHARACTER SET binary\n"
        "FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\'\nLINES TERMINATED BY '\\n'\n"
        "(`lead_id`, `entry_date`, `modify_date`,"
    )
    assert "`rank`" in shown and "*" not in shown


# --- the connection sends only its own file ----------------------------------------------------


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text("root:x:0:0\nanother secret line\n")
    return path


def _ask_for(conn: Any, path: Path) -> None:
    """What a hostile server does: ask, in reply to a statement, for a file it chose."""
    with conn.cursor() as cur:
        cur.execute(f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE `probe` (`line`)")


def test_a_request_for_another_file_is_refused(vdb: VDb, cdb: Db, secret: Path) -> None:
    vdb.db.write(f"CREATE TABLE probe (line TEXT) ENGINE={vdb.engine}")
    raw = cdb.conn.connection.dbapi_connection
    assert isinstance(raw, CopyConnection)
    targets = [secret]
    if os.path.exists("/etc/passwd"):
        targets.append(Path("/etc/passwd"))
    for target in targets:
        with pytest.raises(LocalInfileRefused, match="which this connection did not name"):
            _ask_for(raw, target)  # outside any load
        with (  # during a load of its own file
            spool(b"x\n") as own,
            raw.sending(own),
            pytest.raises(LocalInfileRefused, match=str(target)),
        ):
            _ask_for(raw, target)
    assert vdb.count("probe") == 0
    assert cdb.scalar("SELECT 'still in step'") == "still in step"
    # Through the execute helper the refusal is a database error like any other.
    with pytest.raises(DBAPIError, match="did not name"):
        cdb.write_literal(f"LOAD DATA LOCAL INFILE '{secret}' INTO TABLE probe (line)", "")
    assert vdb.count("probe") == 0
    # The copy still works on the same connection afterwards.
    insert_lead(vdb.db, LIVE, 1)
    assert loadcopy(vdb, ARCHIVE_DIR).copy(cdb, [1]) == 1
    # The probe is real: an unguarded connection with local_infile sends the file.
    d = vdb.settings.db
    plain = pymysql.connect(
        host=d.host,
        port=d.port,
        user=d.user,
        password=d.password,
        database=vdb.name,
        local_infile=True,
    )
    try:
        _ask_for(plain, secret)
        plain.commit()
    finally:
        plain.close()
    assert vdb.count("probe") == 2


# --- refusals: say why, write nothing ----------------------------------------------------------


def test_availability_on_the_copy_connection(cdb: Db) -> None:
    assert availability(cdb).available, availability(cdb).reason


def test_a_connection_not_opened_to_copy_is_refused(vdb: VDb) -> None:
    insert_lead(vdb.db, LIVE, 1)
    found = availability(vdb.db)
    assert not found.available
    assert found.reason == "this connection does not allow LOCAL INFILE (it was not opened to copy)"
    lc = loadcopy(vdb, ARCHIVE_DIR)
    with pytest.raises(LoadUnavailable, match="not opened to copy"):
        lc.load(vdb.db, lc.read(vdb.db, [1]))
    assert vdb.count(ARCHIVE) == 0


def test_the_servers_refusal_is_reported_and_nothing_is_written(vdb: VDb) -> None:
    """A client that does not offer LOCAL INFILE meets the server's own refusal, the error a
    server with local_infile OFF gives: the load says why and writes nothing. (The server's
    GLOBAL switch is left alone: other sessions use this server.)"""
    engine = make_engine(vdb.settings)

    @event.listens_for(engine, "do_connect")
    def _connect(_d: Any, _r: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        return CopyConnection(*cargs, **cparams)  # local_infile not asked for

    db = Db(connect(engine, vdb.settings))
    try:
        assert availability(db).reason == "the client refuses LOCAL INFILE on this connection"
        insert_lead(vdb.db, LIVE, 1)
        lc = loadcopy(vdb, ARCHIVE_DIR)
        with pytest.raises(LoadUnavailable, match="the server refused LOAD DATA LOCAL INFILE"):
            lc.copy(db, [1])
        assert vdb.count(ARCHIVE) == 0
        assert db.scalar("SELECT 1") == 1
    finally:
        close_quietly(db)


# --- kill -9 in the middle of a copy ------------------------------------------------------------

CHILD = """
import sys
from archiver import config
from archiver.db import Db, connect
from archiver.loadcopy import LoadCopy, make_copy_engine
from archiver.schema import reflect

settings = config.load_settings(dsn=sys.argv[1], env={})
db = Db(connect(make_copy_engine(settings), settings))
lc = LoadCopy(reflect(db, "vicidial_list"), reflect(db, "vicidial_list_archive"))
rows = lc.read(db, list(range(1, 201)))
print("read", len(rows.ids), file=sys.stderr, flush=True)
lc.load(db, rows, spool_kind=sys.argv[2])
print("loaded", file=sys.stderr, flush=True)
"""


def _spool_links(pid: int) -> list[str]:
    links = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return [ln for ln in links if "memfd:vicidial-archiver" in ln or "chunk.tsv" in ln]


@pytest.mark.parametrize("kind", ["memfd", "file"])
def test_kill_9_mid_copy_leaves_no_lead_data(vdb: VDb, tmp_path: Path, kind: str) -> None:
    vdb.seed(200)
    vdb.db.write(f"UPDATE {LIVE} SET comments = CONCAT('LEAD-SECRET-', lead_id)")
    child_tmp = tmp_path / "tmp"
    child_tmp.mkdir()
    shared_before = set(glob.glob(os.path.join(tempfile.gettempdir(), "vicidial-archiver-*")))
    holder = vdb.connect()
    holder.run(f"LOCK TABLES {ARCHIVE} WRITE")  # the load waits, its rows in hand
    try:
        env = {"TMPDIR": str(child_tmp), "PYTHONPATH": str(Path(__file__).parents[2])}
        with Proc([sys.executable, "-c", CHILD, vdb.dsn, kind], env=env) as child:
            child.wait_for("^read 200$")
            wait_blocked(vdb.db, vdb.name)
            links = _spool_links(child.pid)
            assert len(links) == 1, links  # caught mid-copy: the chunk's file is open
            if kind == "memfd":
                assert links[0].startswith("/memfd:")
            else:
                assert links[0].endswith("(deleted)")  # no name left on any file system
            assert list(child_tmp.iterdir()) == []
            child.kill()
            done = child.finish()
            assert done.rc == -9
            assert not any("loaded" in ln for ln in done.lines)
    finally:
        holder.run("UNLOCK TABLES")
        close_quietly(holder)
    assert list(child_tmp.iterdir()) == []
    shared_after = set(glob.glob(os.path.join(tempfile.gettempdir(), "vicidial-archiver-*")))
    assert shared_after <= shared_before
    # The server gives up the dead client's load: nothing arrives.
    deadline = time.monotonic() + 15
    while vdb.db.scalar(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = :d AND INFO LIKE 'LOAD%'",
        {"d": vdb.name},
    ):
        assert time.monotonic() < deadline, "the killed client's load is still running"
        time.sleep(0.1)
    assert vdb.count(ARCHIVE) == 0
