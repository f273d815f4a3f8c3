"""Faults on the server side: the job's connection killed mid-chunk, lock-wait timeouts and a
deadlock provoked from another session, and a MariaDB restart or crash during a job (on a
server this module starts for itself). The chunk is redone, or the job stops resumable (exit 1)
without a chunk half-applied on InnoDB, and a re-run always converges. Every test runs on
MyISAM and on InnoDB, except the deadlock, which only InnoDB has."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from archiver import config, synthetic
from archiver.commands import outcome_error
from archiver.db import Db, connect, make_engine
from archiver.errors import Failed
from archiver.jobtypes import JobSpec
from archiver.runner import run_job
from archiver.selection import Criteria, Selection
from archiver.strategies import CHUNK_POINTS
from tests.support import oracle
from tests.support import proc as hp
from tests.support.api import free_port
from tests.support.db import LIVE, VDb
from tests.support.hostile import HostileDb, InfileProxy

N = 1000
CHUNK1, CHUNK2, REST = set(range(1, 101)), set(range(101, 201)), set(range(201, N + 1))


def spec(name: str = "srv") -> JobSpec:
    return JobSpec(
        direction="archive",
        selection=Selection(criteria=Criteria(where="lead_id > 0")),
        name=name,
        ignore_window=True,
    )


def open_with(vdb: VDb, **changes: Any) -> tuple[Db, config.Settings]:
    """The job's own connection, its session set up from settings with `changes`."""
    settings = replace(vdb.settings, chunk_size=100, **changes)
    return Db(connect(make_engine(settings), settings)), settings


def job_state(vdb: VDb) -> tuple[str, int, str | None]:
    row = vdb.db.rows(
        "SELECT state, chunks, stop_reason FROM archiver_jobs ORDER BY job_id LIMIT 1"
    )[0]
    return str(row[0]), int(row[1]), row[2]


def finish_and_check(vdb: VDb, original: dict[int, Any], **changes: Any) -> None:
    """Re-run the job to the end; then every lead is in one table, byte-identical, and the
    job's counts add up to the number of leads."""
    db, settings = open_with(vdb, **changes)
    try:
        summary = run_job(db, settings, spec())
    finally:
        db.conn.close()
    assert summary.state == "done"
    assert dict(summary.job_counts) == {"archived": N - 1, "skipped_newest": 1}
    where = oracle.assert_each_once(vdb.db, vdb.columns(), original)
    assert where.live == {N}
    assert vdb.db.scalar("SELECT COUNT(*) FROM archiver_pending") == 0


def in_chunk2(ids: Sequence[int]) -> bool:
    return bool(ids) and 101 <= ids[0] <= 200


# --- the job's connection killed ---------------------------------------------------------


@pytest.mark.parametrize("point", CHUNK_POINTS)
def test_connection_killed_mid_chunk(vdb: VDb, point: str) -> None:
    vdb.seed(N)
    original = vdb.row_bytes(LIVE)
    killer = vdb.connect()
    killed: list[int] = []

    def hook(at: str, db: Db, ids: Sequence[int]) -> None:
        if at == point and in_chunk2(ids) and not killed:
            cid = int(db.scalar("SELECT CONNECTION_ID()"))
            killer.write(f"KILL CONNECTION {cid}")
            killed.append(cid)

    db, settings = open_with(vdb)
    summary = run_job(db, settings, spec(), hook=hook)  # a job that ran returns its summary
    failed = outcome_error(summary)
    assert killed
    assert isinstance(failed, Failed)
    assert failed.exit_code == 1
    assert str(failed).startswith("the database connection was lost (MySQL error 20")
    assert "job 1 is resumable" in str(failed)
    assert summary.state == "failed"
    assert job_state(vdb)[:2] in (("running", 1), ("failed", 1))
    where = oracle.placement(vdb.db, vdb.columns())
    if vdb.engine == "InnoDB":  # never half-applied: the chunk rolled back as a whole
        assert (where.live, where.archive) == (CHUNK2 | REST, CHUNK1)
    elif point == "after_insert":
        assert (where.live, where.archive) == (CHUNK2 | REST, CHUNK1 | CHUNK2)
    elif point == "after_update":  # the update had nothing to refresh; the delete ran
        assert (where.live, where.archive) in (
            (CHUNK2 | REST, CHUNK1 | CHUNK2),
            (REST, CHUNK1 | CHUNK2),
        )
    else:
        assert (where.live, where.archive) == (REST, CHUNK1 | CHUNK2)
    assert all(where.rows[i] == original[i] for i in original)
    killer.conn.close()
    hp.close_quietly(db)  # killed: never leave it to the garbage collector
    finish_and_check(vdb, original)


# --- lock waits and a deadlock -------------------------------------------------------------


def hold_lock(vdb: VDb) -> tuple[Db, str]:
    """Another session takes a lock the chunk needs: the row lock on lead 150 (InnoDB) or a
    WRITE lock on vicidial_list (MyISAM). Returns the session and the statement releasing it."""
    other = vdb.connect()
    if vdb.engine == "InnoDB":
        other.run("START TRANSACTION")
        other.rows(f"SELECT lead_id FROM {LIVE} WHERE lead_id = 150 FOR UPDATE")
        return other, "ROLLBACK"
    other.run(f"LOCK TABLES {LIVE} WRITE")
    return other, "UNLOCK TABLES"


def test_lock_wait_timeout_that_persists_fails_resumable(vdb: VDb) -> None:
    vdb.seed(N)
    original = vdb.row_bytes(LIVE)
    blocker: list[tuple[Db, str]] = []

    def hook(at: str, db: Db, ids: Sequence[int]) -> None:
        # InnoDB: before chunk 2 (its FOR UPDATE waits). MyISAM: after chunk 2's insert (its
        # delete waits; the redo's first read of vicidial_list waits again).
        when = "before_checkpoint" if vdb.engine == "InnoDB" else "after_insert"
        if (
            at == when
            and not blocker
            and (ids[0] <= 100 if vdb.engine == "InnoDB" else in_chunk2(ids))
        ):
            blocker.append(hold_lock(vdb))

    db, settings = open_with(
        vdb, innodb_lock_wait_timeout=1, lock_wait_timeout=1, deadlock_retries=1
    )
    started = time.monotonic()
    with capture_logs() as logs:
        summary = run_job(db, settings, spec(), hook=hook)
    failed = outcome_error(summary)
    assert time.monotonic() - started < 15
    assert isinstance(failed, Failed) and summary.state == "failed"
    assert str(failed).startswith(
        "lock wait timeout or deadlock persisted (MySQL error 1205); job 1 is resumable"
    )
    retries = [e for e in logs if e["event"] == "chunk_retry"]
    assert [(e["chunk"], e["errno"], e["attempt"]) for e in retries] == [(2, 1205, 1)]
    assert job_state(vdb) == ("failed", 1, str(failed).split("; job")[0])
    other, release = blocker[0]
    other.run(release)  # first: on MyISAM the WRITE lock keeps this test from reading too
    other.conn.close()
    db.conn.close()
    where = oracle.placement(vdb.db, vdb.columns())
    if vdb.engine == "InnoDB":
        assert (where.live, where.archive) == (CHUNK2 | REST, CHUNK1)
    else:  # copied, not deleted: every lead still live, none lost
        assert (where.live, where.archive) == (CHUNK2 | REST, CHUNK1 | CHUNK2)
    assert all(where.rows[i] == original[i] for i in original)
    finish_and_check(vdb, original)


def test_lock_wait_timeout_that_clears_redoes_the_chunk(vdb: VDb) -> None:
    vdb.seed(N)
    original = vdb.row_bytes(LIVE)
    timers: list[threading.Timer] = []
    others: list[Db] = []

    def hook(at: str, db: Db, ids: Sequence[int]) -> None:
        when = "before_checkpoint" if vdb.engine == "InnoDB" else "after_insert"
        if (
            at == when
            and not timers
            and (ids[0] <= 100 if vdb.engine == "InnoDB" else in_chunk2(ids))
        ):
            other, release = hold_lock(vdb)
            others.append(other)
            timers.append(threading.Timer(1.6, lambda: other.run(release)))
            timers[0].start()

    db, settings = open_with(
        vdb, innodb_lock_wait_timeout=1, lock_wait_timeout=1, deadlock_retries=5
    )
    with capture_logs() as logs:
        summary = run_job(db, settings, spec(), hook=hook)
    timers[0].join()
    db.conn.close()
    others[0].conn.close()
    retries = [(e["chunk"], e["errno"]) for e in logs if e["event"] == "chunk_retry"]
    assert retries and set(retries) == {(2, 1205)}
    assert summary.state == "done"
    assert dict(summary.job_counts) == {"archived": N - 1, "skipped_newest": 1}
    assert dict(summary.counts) == dict(summary.job_counts)  # one run, each lead counted once
    where = oracle.assert_each_once(vdb.db, vdb.columns(), original)
    assert where.live == {N}


def test_checkpoint_lock_wait_after_the_delete_counts_the_chunk_once(vdb: VDb) -> None:
    """The chunk's leads are deleted, then recording the chunk waits for a lock and times out:
    the redone chunk finds them only in the archive and must still count them as archived by
    this job (not already_archived)."""
    vdb.seed(N)
    original = vdb.row_bytes(LIVE)
    timers: list[threading.Timer] = []
    others: list[Db] = []

    def hook(at: str, db: Db, ids: Sequence[int]) -> None:
        if at == "after_delete" and in_chunk2(ids) and not timers:
            other = vdb.connect()
            others.append(other)
            other.run("START TRANSACTION")
            other.rows("SELECT job_id FROM archiver_jobs WHERE job_id = 1 FOR UPDATE")
            timers.append(threading.Timer(1.6, lambda: other.run("ROLLBACK")))
            timers[0].start()

    db, settings = open_with(vdb, innodb_lock_wait_timeout=1, deadlock_retries=5)
    with capture_logs() as logs:
        summary = run_job(db, settings, spec(), hook=hook)
    timers[0].join()
    db.conn.close()
    others[0].conn.close()
    assert [(e["chunk"], e["errno"]) for e in logs if e["event"] == "chunk_retry"][:1] == [
        (2, 1205)
    ]
    assert dict(summary.job_counts) == {"archived": N - 1, "skipped_newest": 1}
    assert vdb.cli(["jobs", "show", "1", "--leads", "all"]).stdout == f"{N},skipped_newest\n"
    oracle.assert_each_once(vdb.db, vdb.columns(), original)


@pytest.mark.parametrize("engine", ["InnoDB"])  # MyISAM takes table locks: no deadlocks
def test_deadlock_redoes_the_chunk(vdb: VDb, tmp_path: Path) -> None:
    vdb.seed(N)
    original = vdb.row_bytes(LIVE)
    # The other session is the heavier transaction (5000 rows written), so InnoDB picks the
    # archiver's chunk as the victim.
    vdb.db.write("CREATE TABLE va_weight (id INT PRIMARY KEY) ENGINE=InnoDB")
    other = vdb.connect()
    other.run("START TRANSACTION")
    other.write("INSERT INTO va_weight SELECT seq FROM seq_1_to_5000")
    other.rows(f"SELECT lead_id FROM {LIVE} WHERE lead_id = 150 FOR UPDATE")
    conf = tmp_path / "a.toml"
    conf.write_text("[archive]\ninnodb_lock_wait_timeout = 30\ndeadlock_retries = 3\n")
    args = ["archive", "--ignore-window", "--where", "lead_id > 0", "--chunk-size", "100", "--json"]
    with hp.Proc(hp.argv(vdb.dsn, args, config=str(conf))) as proc:
        hp.wait_blocked(vdb.db, vdb.name)  # chunk 2 holds 101-149 and waits for 150
        got: dict[str, Any] = {}

        def close_the_cycle() -> None:
            try:
                got["rows"] = other.rows(
                    f"SELECT lead_id FROM {LIVE} WHERE lead_id = 120 FOR UPDATE"
                )
            except Exception as exc:  # the other session was the victim: the test is void
                got["error"] = exc

        t = threading.Thread(target=close_the_cycle)
        t.start()
        t.join(30)
        assert got.get("rows") == [(120,)], got
        other.run("ROLLBACK")
        other.conn.close()
        done = proc.finish(60)
    assert done.rc == 0, done.describe()
    retries = [(e["chunk"], e["errno"]) for e in done.events if e.get("event") == "chunk_retry"]
    assert retries == [(2, 1213)]
    assert done.summary["job_counts"] == {"archived": N - 1, "skipped_newest": 1}
    assert done.summary["counts"] == done.summary["job_counts"]
    where = oracle.assert_each_once(vdb.db, vdb.columns(), original)
    assert where.live == {N}


# --- a MariaDB restart during a job --------------------------------------------------------


class Server:
    """A throwaway mariadbd in a temporary data directory (root, no password, TCP only)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.data = base / "data"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        # Its own tmpdir: a starting mariadbd deletes every #sql* file of its tmpdir, and in
        # /tmp those are the temporary tables of the server the other tests are using.
        self.tmp = base / "tmp"
        self.tmp.mkdir()
        subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={self.data}",
                f"--tmpdir={self.tmp}",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        self.settings = config.load_settings(
            dsn=f"mysql://root@127.0.0.1:{self.port}/mysql", env={}
        )

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "/usr/sbin/mariadbd",
                "--no-defaults",
                f"--datadir={self.data}",
                f"--tmpdir={self.tmp}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--socket={self.base}/sock",
                f"--pid-file={self.base}/pid",
                "--user=root",
                f"--log-error={self.base}/err.log",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=64M",
                "--myisam-recover-options=BACKUP,FORCE",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("mariadbd did not start:\n" + self.log()) from None
                time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(60)
        self.proc = None

    def log(self) -> str:
        path = self.base / "err.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def vdb(self, engine: str) -> VDb:
        admin = Db(connect(make_engine(self.settings), self.settings))
        name = f"va_test_{uuid.uuid4().hex[:12]}"
        synthetic.create_database(admin, name)
        admin.conn.close()
        settings = replace(self.settings, db=replace(self.settings.db, database=name))
        t = VDb(name, engine, settings, Db(connect(make_engine(settings), settings)))
        synthetic.create_tables(t.db, engine)
        return t


@pytest.fixture(scope="module")
def own_server() -> Iterator[Server]:
    if not (shutil.which("mariadb-install-db") and Path("/usr/sbin/mariadbd").exists()):
        pytest.fail("mariadb-install-db and /usr/sbin/mariadbd are needed (apt mariadb-server)")
    base = Path(tempfile.mkdtemp(prefix="va-mariadbd-"))
    server = Server(base)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["restart", "crash"])
def test_server_restart_during_a_job(own_server: Server, engine: str, how: str) -> None:
    t = own_server.vdb(engine)
    t.seed(3000)
    original = t.row_bytes(LIVE)
    columns = t.columns()
    args = [
        "archive",
        "--ignore-window",
        "--where",
        "lead_id > 0",
        "--chunk-size",
        "100",
        "--job-name",
        "restart",
        "--json",
    ]
    with hp.Proc(hp.argv(t.dsn, [*args, "--sleep", "0.1"])) as proc:
        proc.wait_chunk(3)
        own_server.stop(signal.SIGTERM if how == "restart" else signal.SIGKILL)
        done = proc.finish(60)
        own_server.start()
    assert done.rc in (1, 3), done.describe()
    assert "Traceback" not in done.stderr, done.describe()
    assert [ln for ln in done.lines if ln.startswith("Error:")] == [done.error]
    assert done.error.endswith(
        "job 1 is resumable: run the same command again or `jobs resume 1`"
    ), done.describe()
    print(f"server {how} ({engine}): the job exited {done.rc}: {done.error}")
    hp.close_quietly(t.db)  # the test's own connection died with the server
    t.db = t.connect()
    row = t.db.rows("SELECT state, chunks FROM archiver_jobs WHERE job_name = 'restart'")[0]
    assert row[0] in ("running", "failed") and int(row[1]) >= 3
    where = oracle.placement(t.db, columns)
    assert set(original) <= where.live | where.archive  # nothing lost, even before the re-run
    assert all(where.rows[i] == original[i] for i in original)
    if engine == "InnoDB":
        assert not where.both  # no chunk half-applied
    final = hp.run(t.dsn, args)
    assert final.rc == 0, final.describe()
    assert final.summary["job_counts"] == {"archived": 2999, "skipped_newest": 1}
    where = oracle.assert_each_once(t.db, columns, original)
    assert where.live == {3000}
    synthetic.drop_database(t.db, t.name)
    t.db.conn.close()


# --- a server that answers as no MariaDB/MySQL server does (issue 21, finding 14) -------------


@pytest.mark.parametrize("infile_at", [0, 2, 3], ids=["bare-ok", "infile-query-2", "infile-q-3"])
def test_a_hostile_server_gets_one_error_line_never_a_traceback_nor_a_file(
    vdb: VDb, infile_at: int
) -> None:
    """A LOAD DATA LOCAL request the client did not ask for, or a bare OK to `SELECT
    VERSION()`: exit 2 with one `Error:` line naming the server, and no file sent."""
    hostname = Path("/etc/hostname").read_bytes().strip()
    server = HostileDb(infile_at=infile_at)
    try:
        done = hp.run(
            f"mysql://root@127.0.0.1:{server.port}/{vdb.name}",
            ["archive", "1", "--ignore-window"],
            timeout=60,
        )
    finally:
        server.stop()
    assert done.rc == 2, done.describe()
    assert "Traceback" not in done.stderr
    assert done.error.startswith(f"Error: the server at 127.0.0.1:{server.port} (mysql://root@")
    assert "answered the connection as no MariaDB/MySQL server does" in done.error
    assert not any(hostname and hostname in answer for answer in server.answers)


@pytest.mark.parametrize(
    "marker",
    [b"EXPLAIN SELECT", b"INTO `vicidial_list_archive`"],
    ids=["where-check", "chunk-copy"],
)
def test_a_server_turning_hostile_mid_session_fails_the_job_in_one_line(
    vdb: VDb, marker: bytes
) -> None:
    """The server may ask for a local file in answer to any statement (a relay to the real
    server does, here, at the --where check or at a chunk's copy): exit 1 with one `Error:`
    line, no file sent, and the next run converges."""
    vdb.seed(20)
    hostname = Path("/etc/hostname").read_bytes().strip()
    proxy = InfileProxy(vdb.settings.db.port, marker)
    try:
        done = hp.run(
            f"mysql://root@127.0.0.1:{proxy.port}/{vdb.name}",
            ["archive", "--where", "lead_id <= 10", "--ignore-window"],
            timeout=60,
        )
    finally:
        proxy.stop()
    assert proxy.injected.is_set()
    assert done.rc == 1, done.describe()
    assert "Traceback" not in done.stderr
    assert "malformed answer: RuntimeError" in done.error, done.error
    assert not any(hostname and hostname in answer for answer in proxy.answers)

    again = hp.run(vdb.dsn, ["archive", "--where", "lead_id <= 10", "--ignore-window"])
    assert again.rc == 0, again.describe()
    assert vdb.ids(LIVE) == list(range(11, 21))
