"""Running `vicidial-archiver` as a real process (signals, kill -9, memory), and the checks the
job and fault tests share: every lead in exactly one table, byte-identical to its original."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archiver.db import Db

BIN = str(Path(sys.executable).with_name("vicidial-archiver"))
LIVE = "vicidial_list"
ARCHIVE = "vicidial_list_archive"
LOCK_PREFIX = "vicidial-archiver"


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child run: nothing from the caller's archiver settings leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVER_")}
    env.update(extra or {})
    return env


def argv(dsn: str, args: Sequence[str], config: str | None = None) -> list[str]:
    head = [BIN, "--dsn", dsn, "--log-format", "json"]
    if config:
        head += ["--config", config]
    return [*head, *args]


def parse_events(lines: Sequence[str]) -> list[dict[str, Any]]:
    out = []
    for line in lines:
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return out


@dataclass
class Done:
    """A finished run: exit code (negative = killed by that signal), stdout, stderr lines."""

    rc: int
    stdout: str
    lines: list[str]
    maxrss_kb: int = 0
    pid: int = 0

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)

    @property
    def events(self) -> list[dict[str, Any]]:
        return parse_events(self.lines)

    def chunks(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == "chunk"]

    @property
    def summary(self) -> dict[str, Any]:
        """The `--json` summary object (the last JSON line of stdout)."""
        for line in reversed(self.stdout.strip().splitlines()):
            if line.startswith("{"):
                return dict(json.loads(line))
        raise AssertionError(
            f"no JSON summary on stdout (rc={self.rc}):\n{self.stdout}\n{self.stderr[-3000:]}"
        )

    @property
    def error(self) -> str:
        errors = [ln for ln in self.lines if ln.startswith("Error:")]
        return errors[-1] if errors else ""

    def describe(self) -> str:
        return f"rc={self.rc}\nstdout:\n{self.stdout[-2000:]}\nstderr:\n{self.stderr[-4000:]}"


class Proc:
    """A running child; its stderr is read line by line as it comes (for `wait_for`)."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        self.args = list(args)
        self.started = time.monotonic()
        self.p = subprocess.Popen(
            self.args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(env),
            bufsize=1,
        )
        self.lines: list[str] = []
        self.stdout = ""
        self._cond = threading.Condition()
        self._err = threading.Thread(target=self._read_err, daemon=True)
        self._out = threading.Thread(target=self._read_out, daemon=True)
        self._err.start()
        self._out.start()

    @property
    def pid(self) -> int:
        return self.p.pid

    def __enter__(self) -> Proc:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.p.poll() is None:  # a failed test leaves no run behind
            self.kill()
            self.p.wait(10)
        self._join()

    def _read_err(self) -> None:
        assert self.p.stderr is not None
        for line in self.p.stderr:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _read_out(self) -> None:
        assert self.p.stdout is not None
        self.stdout = self.p.stdout.read()

    def wait_for(self, pred: Callable[[str], bool] | str, timeout: float = 30.0) -> str:
        """The first stderr line matching `pred` (a regex or a function); fails on timeout or
        when the process ends without printing one."""
        test = (lambda s: re.search(pred, s) is not None) if isinstance(pred, str) else pred
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    if test(line):
                        return line
                seen = len(self.lines)
                if self.p.poll() is not None and not self._err.is_alive():
                    raise AssertionError(
                        f"process ended (rc={self.p.returncode}) before a line "
                        f"matching {pred!r}:\n" + "\n".join(self.lines[-30:])
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"no line matching {pred!r} within {timeout}s:\n"
                        + "\n".join(self.lines[-30:])
                    )
                self._cond.wait(min(left, 0.2))

    def wait_chunk(self, n: int = 1, timeout: float = 30.0) -> dict[str, Any]:
        line = self.wait_for(
            lambda s: s.startswith("{") and '"event": "chunk"' in s and f'"chunk": {n},' in s,
            timeout,
        )
        return dict(json.loads(line))

    def signal(self, sig: int) -> None:
        self.p.send_signal(sig)

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)

    def finish(self, timeout: float = 120.0) -> Done:
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.p.wait(10)
            self._join()
            raise AssertionError(
                f"{self.args} did not finish in {timeout}s:\n" + "\n".join(self.lines[-30:])
            ) from None
        self._join()
        return Done(rc, self.stdout, list(self.lines), pid=self.p.pid)

    def _join(self) -> None:
        self._err.join(10)
        self._out.join(10)


def run(
    dsn: str,
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    config: str | None = None,
    timeout: float = 180.0,
) -> Done:
    return Proc(argv(dsn, args, config), env).finish(timeout)


def run_measured(dsn: str, args: Sequence[str], timeout: float = 600.0) -> Done:
    """A run whose peak resident memory (VmHWM) is kept. Read from /proc while it runs:
    ru_maxrss from wait4 would also count this test process's memory, which the child's
    fork/exec inherits as its starting high-water mark."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen(argv(dsn, args), stdout=out, stderr=err, env=child_env())
        status = Path(f"/proc/{p.pid}/status")
        peak = 0
        deadline = time.monotonic() + timeout
        while p.poll() is None:
            try:
                m = re.search(r"^VmHWM:\s+(\d+) kB", status.read_text(), re.M)
            except OSError:
                m = None
            if m:
                peak = max(peak, int(m.group(1)))
            if time.monotonic() > deadline:
                p.kill()
                p.wait()
                raise AssertionError(f"measured run did not finish in {timeout}s")
            time.sleep(0.02)
        out.seek(0)
        err.seek(0)
        return Done(int(p.returncode), out.read(), err.read().splitlines(), peak, pid=p.pid)


def close_quietly(db: Db) -> None:
    """Close a connection that may be dead (killed, server restarted). Left to the garbage
    collector, SQLAlchemy would try to roll it back and log the failure with a traceback at
    some random later moment, which CPython 3.11 can turn into a SystemError if it happens
    while pytest is parsing a module."""
    try:
        db.conn.invalidate()
    except Exception:
        pass
    try:
        db.conn.close()
    except Exception:
        pass


def lock_name(dbname: str) -> str:
    return f"{LOCK_PREFIX}:{dbname}"[:64]


def wait_lock_free(db: Db, dbname: str, timeout: float = 15.0) -> None:
    """After a kill -9 the server frees the job's lock when it notices the dead connection;
    a resumed run started before that exits 4, as it should. Wait for it."""
    deadline = time.monotonic() + timeout
    while db.scalar("SELECT IS_USED_LOCK(:n)", {"n": lock_name(dbname)}) is not None:
        if time.monotonic() > deadline:
            raise AssertionError(f"the lock of {dbname} is still held {timeout}s after the kill")
        time.sleep(0.05)


def lock_waiters(db: Db, dbname: str) -> list[int]:
    """Sessions of this database waiting for a row lock (InnoDB) or a table lock."""
    ids = [
        int(r[0])
        for r in db.rows(
            "SELECT ID FROM information_schema.PROCESSLIST"
            " WHERE DB = :db AND ID <> CONNECTION_ID()",
            {"db": dbname},
        )
    ]
    if not ids:
        return []
    rows = db.rows(
        "SELECT trx_mysql_thread_id FROM information_schema.INNODB_TRX"
        " WHERE trx_state = 'LOCK WAIT' AND trx_mysql_thread_id IN :ids",
        {"ids": ids},
    )
    rows += db.rows(
        "SELECT ID FROM information_schema.PROCESSLIST WHERE ID IN :ids"
        " AND (STATE LIKE 'Waiting for table%' OR STATE = 'Locked')",
        {"ids": ids},
    )
    return sorted({int(r[0]) for r in rows})


def wait_blocked(db: Db, dbname: str, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        waiting = lock_waiters(db, dbname)
        if waiting:
            return waiting
        # INNODB_TRX is a cache refreshed only when it was not read for 100 ms: polling it
        # faster would show the same stale picture forever.
        time.sleep(0.15)
    raise AssertionError(
        f"no session of {dbname} waited for a lock within {timeout}s: "
        + repr(
            db.rows(
                "SELECT ID, STATE, LEFT(INFO, 80) FROM information_schema.PROCESSLIST"
                " WHERE DB = :db",
                {"db": dbname},
            )
        )
    )


# --- state checks ------------------------------------------------------------------------


def row_bytes(
    db: Db, table: str, columns: Sequence[str], ids: Sequence[int] | None = None
) -> dict[int, tuple[Any, ...]]:
    """Each row's columns (in `columns` order) as exact bytes, by lead_id."""
    if ids is not None and not ids:
        return {}
    exprs = ", ".join(f"HEX(CAST(`{c}` AS BINARY))" for c in columns)
    where = " WHERE lead_id IN :ids" if ids is not None else ""
    rows = db.rows(
        f"SELECT lead_id, {exprs} FROM `{table}`{where}",
        {"ids": list(ids)} if ids is not None else {},
    )
    return {int(r[0]): tuple(r[1:]) for r in rows}


def columns_of(db: Db, table: str = LIVE) -> list[str]:
    rows = db.rows(
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA ="
        " DATABASE() AND TABLE_NAME = :t ORDER BY ORDINAL_POSITION",
        {"t": table},
    )
    return [str(r[0]) for r in rows]


def ids_of(db: Db, table: str) -> set[int]:
    return {int(r[0]) for r in db.rows(f"SELECT lead_id FROM `{table}`")}


def digest(rows: Mapping[int, tuple[Any, ...]]) -> str:
    h = hashlib.sha256()
    for lead in sorted(rows):
        h.update(f"{lead}|{rows[lead]!r}\n".encode())
    return h.hexdigest()


@dataclass
class Placement:
    """Where every lead is now: live only, archive only, in both; and the union of the rows."""

    live: set[int]
    archive: set[int]
    rows: dict[int, tuple[Any, ...]] = field(repr=False)

    @property
    def both(self) -> set[int]:
        return self.live & self.archive


def placement(db: Db, columns: Sequence[str]) -> Placement:
    live = row_bytes(db, LIVE, columns)
    arch = row_bytes(db, ARCHIVE, columns)
    return Placement(set(live), set(arch), {**arch, **live})


def assert_each_once(
    db: Db, columns: Sequence[str], original: Mapping[int, tuple[Any, ...]]
) -> Placement:
    """Every original lead in exactly one table, byte-identical to its original row; nothing
    else in either table. Returns where they are."""
    where = placement(db, columns)
    assert not where.both, f"{len(where.both)} leads in both tables, e.g. {sorted(where.both)[:10]}"
    lost = set(original) - where.live - where.archive
    assert not lost, f"{len(lost)} leads in neither table, e.g. {sorted(lost)[:10]}"
    extra = (where.live | where.archive) - set(original)
    assert not extra, f"{len(extra)} unexpected leads, e.g. {sorted(extra)[:10]}"
    differ = sorted(i for i in original if where.rows[i] != original[i])
    assert not differ, f"{len(differ)} leads differ from their original, e.g. {differ[:10]}"
    assert digest(where.rows) == digest(original)
    return where


def snapshot(db: Db, name: str = "va_snapshot") -> str:
    """A server-side copy of vicidial_list as it is now (same column types), for comparing
    large tables without reading them into the test."""
    db.write(f"DROP TABLE IF EXISTS `{name}`")
    db.write(f"CREATE TABLE `{name}` LIKE `{LIVE}`")
    db.write(f"INSERT INTO `{name}` SELECT * FROM `{LIVE}`")
    return name


def compare_to_snapshot(db: Db, snap: str, columns: Sequence[str]) -> dict[str, int]:
    """Counts of leads of the snapshot in both tables, in neither, not byte-identical to the
    snapshot where they are, and of leads in the tables that the snapshot does not hold."""

    def same(alias: str) -> str:
        return " AND ".join(
            f"CAST({alias}.`{c}` AS BINARY) <=> CAST(o.`{c}` AS BINARY)" for c in columns
        )

    row = db.rows(
        f"SELECT SUM(l.lead_id IS NOT NULL AND a.lead_id IS NOT NULL),"
        f" SUM(l.lead_id IS NULL AND a.lead_id IS NULL),"
        f" SUM(CASE WHEN l.lead_id IS NOT NULL THEN NOT ({same('l')})"
        f"          WHEN a.lead_id IS NOT NULL THEN NOT ({same('a')}) ELSE 0 END)"
        f" FROM `{snap}` o LEFT JOIN `{LIVE}` l ON l.lead_id = o.lead_id"
        f" LEFT JOIN `{ARCHIVE}` a ON a.lead_id = o.lead_id"
    )[0]
    extra = db.scalar(
        f"SELECT (SELECT COUNT(*) FROM `{LIVE}` x WHERE NOT EXISTS (SELECT 1 FROM `{snap}` o"
        f" WHERE o.lead_id = x.lead_id)) + (SELECT COUNT(*) FROM `{ARCHIVE}` x WHERE NOT EXISTS"
        f" (SELECT 1 FROM `{snap}` o WHERE o.lead_id = x.lead_id))"
    )
    return {
        "both": int(row[0] or 0),
        "neither": int(row[1] or 0),
        "differ": int(row[2] or 0),
        "extra": int(extra or 0),
    }


def total(counts: Mapping[str, int]) -> int:
    return sum(Counter(counts).values())
