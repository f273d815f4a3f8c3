"""A fixed set of worker threads fed by a bounded queue, for `serve`.

Unlike ThreadPoolExecutor: a full queue refuses work at once (`Busy`, answered 503) instead of
queueing it without end; work still in the queue can be withdrawn (`Future.cancel`) when its
client goes away, so it never starts; and the threads are daemons, so a thread stuck on a dead
database cannot keep the process alive past its shutdown bound (`close` waits a bounded time).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


class Busy(Exception):
    """Every worker is busy and the queue is full, or the pool is closing."""


class Workers:
    def __init__(self, threads: int, queued: int, name: str = "worker") -> None:
        self.threads, self.queued, self.name = threads, queued, name
        self._queue: deque[tuple[Future[Any], Callable[[], Any]]] = deque()
        self._cond = threading.Condition()
        self._started: list[threading.Thread] = []
        self._running = 0
        self._closed = False

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        """Queue `fn`; raises Busy when `queued` items already wait or the pool is closing."""
        future: Future[T] = Future()
        with self._cond:
            if self._closed:
                raise Busy("the server is shutting down")
            self._drop_cancelled()
            if len(self._queue) >= self.queued:
                raise Busy(f"{self.threads} requests are running and {self.queued} are waiting")
            self._queue.append((future, fn))
            if len(self._started) < self.threads and self._running + len(self._queue) > len(
                self._started
            ):
                self._start_thread()
            self._cond.notify()
        return future

    def _drop_cancelled(self) -> None:
        if any(f.cancelled() for f, _ in self._queue):
            self._queue = deque((f, fn) for f, fn in self._queue if not f.cancelled())

    def _start_thread(self) -> None:
        n = len(self._started) + 1
        thread = threading.Thread(target=self._work, name=f"{self.name}-{n}", daemon=True)
        self._started.append(thread)
        thread.start()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                future, fn = self._queue.popleft()
                if not future.set_running_or_notify_cancel():
                    continue  # withdrawn while it waited: its client went away
                self._running += 1
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the awaiting request
                future.set_exception(exc)
            finally:
                with self._cond:
                    self._running -= 1
                    self._cond.notify_all()

    @property
    def busy(self) -> int:
        """Items running or waiting."""
        with self._cond:
            self._drop_cancelled()
            return self._running + len(self._queue)

    def close(self, timeout: float) -> int:
        """Take no more work, withdraw what has not started, wait up to `timeout` seconds for
        what runs. Returns how many items were still running when it gave up (0: all done)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._closed = True
            while self._queue:
                self._queue.popleft()[0].cancel()
            self._cond.notify_all()
            while self._running and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            return self._running
