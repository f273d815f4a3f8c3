"""The lock that parallel test processes share the test server by (tests/support/serverlock.py):
each instance opens its own files, so two instances contend as two processes would."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tests.support.serverlock import ServerLock


def test_alone_waits_for_shared_and_later_shared_wait_for_alone(tmp_path: Path) -> None:
    reader, writer, late = ServerLock(tmp_path), ServerLock(tmp_path), ServerLock(tmp_path)
    events: list[str] = []

    def be_alone() -> None:
        with writer.alone():
            events.append("alone")
            time.sleep(0.2)
            events.append("alone done")

    def start_late() -> None:
        with late.shared():
            events.append("late")

    with reader.shared():
        alone = threading.Thread(target=be_alone)
        alone.start()
        time.sleep(0.2)  # the writer now waits for the reader, its gate closed
        later = threading.Thread(target=start_late)
        later.start()
        time.sleep(0.2)
        assert events == []  # neither the writer nor a test started after it got in
        events.append("reader done")
    alone.join(5)
    later.join(5)
    assert events == ["reader done", "alone", "alone done", "late"]


def test_shared_holders_do_not_wait_for_each_other(tmp_path: Path) -> None:
    a, b = ServerLock(tmp_path), ServerLock(tmp_path)
    with a.shared():
        got = threading.Event()

        def other() -> None:
            with b.shared():
                got.set()

        t = threading.Thread(target=other)
        t.start()
        assert got.wait(2)
        t.join(2)
