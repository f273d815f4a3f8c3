"""A database that accepts TCP and never answers: a test-owned loopback listener."""

from __future__ import annotations

import socket
import threading
import time


class SilentDb:
    """A loopback listener that accepts TCP and never answers the MySQL handshake. It counts
    the connections it accepted and stops itself after `life` seconds at the latest."""

    def __init__(self, life: float = 180.0) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.sock.settimeout(0.1)
        self.port = int(self.sock.getsockname()[1])
        self.accepted = 0
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._deadline = time.monotonic() + life
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set() and time.monotonic() < self._deadline:
                try:
                    conn, _ = self.sock.accept()
                except TimeoutError:
                    continue
                self._conns.append(conn)
                self.accepted += 1
        finally:
            for c in self._conns:
                c.close()
            self.sock.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
