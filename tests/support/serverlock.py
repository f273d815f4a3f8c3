"""Sharing the test server between parallel test processes (pytest -n, pytest-xdist).

Every integration test holds the server shared for its whole length; a test marked
`server_global` (it changes a GLOBAL variable, which every new session of every other test
would inherit) holds it alone. The lock is a pair of flock(2) files in the run's own temporary
folder, which all workers of one run share: `main` is the readers–writer lock; `gate` is a
turnstile that a test waiting to be alone closes, so that tests starting after it wait for it
instead of keeping it waiting for ever. Without workers there is no lock: tests run one at a
time anyway."""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

_alone = False  # whether the running test holds the server alone (or runs without workers)


class ServerLock:
    def __init__(self, folder: Path) -> None:
        self.gate: IO[str] = open(folder / "server-gate.lock", "a")  # noqa: SIM115
        self.main: IO[str] = open(folder / "server-main.lock", "a")  # noqa: SIM115

    @contextmanager
    def shared(self) -> Iterator[None]:
        fcntl.flock(self.gate, fcntl.LOCK_SH)  # waits while a test waits to be alone
        fcntl.flock(self.main, fcntl.LOCK_SH)
        fcntl.flock(self.gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(self.main, fcntl.LOCK_UN)

    @contextmanager
    def alone(self) -> Iterator[float]:
        """Yields the seconds it waited for the tests running elsewhere to end."""
        started = time.monotonic()
        fcntl.flock(self.gate, fcntl.LOCK_EX)
        fcntl.flock(self.main, fcntl.LOCK_EX)
        try:
            yield time.monotonic() - started
        finally:
            fcntl.flock(self.main, fcntl.LOCK_UN)
            fcntl.flock(self.gate, fcntl.LOCK_UN)


@contextmanager
def held_alone() -> Iterator[None]:
    global _alone
    _alone = True
    try:
        yield
    finally:
        _alone = False


def assert_alone(what: str) -> None:
    """For the helpers that change a GLOBAL variable: the test must be marked for it."""
    assert _alone, f"{what} changes the whole server: mark the test @pytest.mark.server_global"
