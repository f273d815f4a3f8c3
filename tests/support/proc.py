"""Running `vicidial-archiver` as a real process (signals, kill -9, memory), and waiting on the
server's locks. The checks of the rows themselves are in oracle.py."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archiver.checkpoint import lock_name
from archiver.config import Settings
from archiver.db import Db
from tests.support.cli import json_summary

BIN = str(Path(sys.executable).with_name("vicidial-archiver"))


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
        return json_summary(self.stdout, self.stderr, self.rc)

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


def wait_lock_free(db: Db, settings: Settings, timeout: float = 15.0) -> None:
    """After a kill -9 the server frees the job's lock when it notices the dead connection;
    a resumed run started before that exits 4, as it should. Wait for it."""
    deadline = time.monotonic() + timeout
    while db.scalar("SELECT IS_USED_LOCK(:n)", {"n": lock_name(settings)}) is not None:
        if time.monotonic() > deadline:
            dbname = settings.db.database
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
