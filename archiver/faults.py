"""Fault points for the kill tests: `ARCHIVER_FAULT=<point>[:<n>]` kills the process with
SIGKILL when it reaches that named point the n-th time (a chunk number; 1 by default).

Owns: the one reading of ARCHIVER_FAULT. Must not: do anything when it is unset.
"""

from __future__ import annotations

import os
import signal


def fault(point: str, n: int) -> None:
    spec = os.environ.get("ARCHIVER_FAULT")
    if not spec:
        return
    name, _, when = spec.partition(":")
    if name == point and int(when or "1") == n:
        os.write(2, f"FAULT {point} {n}\n".encode())
        os.kill(os.getpid(), signal.SIGKILL)
