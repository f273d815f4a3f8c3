"""Between chunks: sleep, wait for a quiet server and caught-up replicas, size the next chunk.

Every wait here wakes within NAP_SLICE of a stop request (a signal, --max-runtime, the
window's end, `jobs cancel`): `should_stop` is asked between slices, and a wait it ends ends
the pause, so no chunk starts after it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pymysql
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from archiver.config import MAX_CHUNK, MAX_SLEEP, DbSettings, ThrottleSettings, replica_settings
from archiver.db import Db, bound_connections, mysql_errno, password_arg
from archiver.errors import Stopped
from archiver.logging import get_logger

NAP_SLICE = 0.2  # seconds: the longest a wait goes without asking whether to stop


class Throttle:
    def __init__(
        self,
        db: Db,
        settings: ThrottleSettings,
        chunk_size: int,
        should_stop: Callable[[], str | None],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.db = db
        self.s = settings
        self.chunk_size = chunk_size
        self.should_stop = should_stop
        self.sleep = sleep
        self.log = get_logger()
        self.slept_s = 0.0
        # Parsed as the main DSN is; each was checked when the settings were loaded.
        self.replicas = [replica_settings(dsn) for dsn in settings.replicas]

    def next_size(self, last_size: int, last_ms: float) -> int:
        """With `chunk_time_ms`, aim the next chunk at that statement time (at most 500)."""
        target = self.s.chunk_time_ms
        if not target or last_ms <= 0 or last_size <= 0:
            return self.chunk_size
        per_lead = last_ms / last_size
        wanted = int(target / per_lead)
        # Move at most ×2 / ÷2 a chunk so one slow chunk does not swing the size wildly.
        size = max(last_size // 2, min(last_size * 2, wanted))
        return max(1, min(MAX_CHUNK, self.chunk_size, size))

    def pause(self, last_ms: float) -> None:
        """The wait between two chunks; it ends early on a stop request (the caller asks
        `should_stop` again before the next chunk)."""
        wait = min(MAX_SLEEP, self.s.sleep + self.s.sleep_coef * last_ms / 1000)
        if wait > 0:
            self.log.info("throttle_sleep", reason="sleep", seconds=round(wait, 3))
            if not self._nap(wait):
                return
        if self.s.max_threads_running:
            self._wait_until("threads_running", self._threads_ok)
        if self.s.max_replica_lag and self.s.replicas:
            self._wait_until("replica_lag", self._replicas_ok)

    def _nap(self, seconds: float) -> bool:
        """Sleep `seconds` in slices, asking `should_stop` between them; False when a stop
        request cut the nap short."""
        end = time.monotonic() + seconds
        while True:
            if self.should_stop():
                return False
            left = end - time.monotonic()
            if left <= 0:
                return True
            step = min(NAP_SLICE, left)
            self.slept_s += step
            self.sleep(step)

    def _wait_until(self, reason: str, ok: Callable[[], tuple[bool, object]]) -> None:
        started = time.monotonic()
        step = 0.05
        while True:
            good, value = ok()
            if good:
                return
            waited = time.monotonic() - started
            if waited >= self.s.max_wait:
                raise Stopped(
                    f"throttle gave up: {reason} stayed too high ({value}) for "
                    f"{waited:.0f}s (--max-wait); the job is resumable"
                )
            stop = self.should_stop()
            if stop:
                raise Stopped(stop)
            self.log.info("throttle_wait", reason=reason, value=value, waited_s=round(waited, 2))
            self._nap(min(step, max(0.0, self.s.max_wait - waited)))
            step = min(step * 2, 2.0)

    def _threads_ok(self) -> tuple[bool, object]:
        row = self.db.rows("SHOW GLOBAL STATUS LIKE 'Threads_running'")
        running = int(row[0][1]) if row else 0
        return running <= self.s.max_threads_running, running

    def _replicas_ok(self) -> tuple[bool, object]:
        lags = [replica_lag(replica) for replica in self.replicas]
        # An unknown lag (replica down, replication stopped) counts as too much.
        good = all(lag is not None and lag <= self.s.max_replica_lag for lag in lags)
        return good, lags


def replica_lag(replica: DbSettings) -> float | None:
    """Seconds_Behind_Master of a replica; None when it is unknown (unreachable, refused, not
    a replica or replication stopped), with the reason logged."""
    log = get_logger(replica=replica.safe())
    engine = create_engine(
        replica.url(),
        poolclass=NullPool,
        connect_args={
            "connect_timeout": replica.connect_timeout,
            # A replica that accepts TCP and never answers is given up after connect_timeout
            # (the handshake's reads and SHOW SLAVE STATUS), as an unknown lag.
            "read_timeout": replica.connect_timeout,
            "write_timeout": replica.connect_timeout,
            **password_arg(replica.password),
        },
    )
    bound_connections(engine, replica.connect_timeout)
    try:
        with engine.connect() as conn:
            row = conn.execute(text("SHOW SLAVE STATUS")).mappings().first()
    except DBAPIError as exc:
        log.info("replica_lag_unknown", reason=f"MySQL error {mysql_errno(exc)}")
        return None
    except (OSError, pymysql.err.MySQLError) as exc:  # a socket or protocol failure
        log.info("replica_lag_unknown", reason=type(exc).__name__)
        return None
    finally:
        engine.dispose()
    if row is None:
        log.info("replica_lag_unknown", reason="not a replica (SHOW SLAVE STATUS is empty)")
        return None
    if row.get("Seconds_Behind_Master") is None:
        log.info("replica_lag_unknown", reason="replication is not running")
        return None
    return float(row["Seconds_Behind_Master"])
