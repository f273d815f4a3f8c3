"""A database that accepts TCP and never answers, or answers a byte at a time: test-owned
loopback listeners."""

from __future__ import annotations

import socket
import struct
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
                self._accepted(conn)
        finally:
            for c in self._conns:
                c.close()
            self.sock.close()

    def _accepted(self, conn: socket.socket) -> None:
        """What is done with a connection once accepted: nothing here (it is never answered)."""

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def greeting() -> bytes:
    """A MariaDB handshake greeting (protocol 10, mysql_native_password), as one packet."""
    caps = 0xF7FF | (0x81BF << 16)
    salt = b"abcdefghijklmnopqrst"
    p = b"\x0a5.5.5-10.11.99-MariaDB\x00" + struct.pack("<I", 7) + salt[:8] + b"\x00"
    p += struct.pack("<H", caps & 0xFFFF) + b"\x21" + struct.pack("<H", 2)
    p += struct.pack("<H", caps >> 16) + bytes([21]) + b"\x00" * 10 + salt[8:] + b"\x00"
    p += b"mysql_native_password\x00"
    return struct.pack("<I", len(p))[:3] + b"\x00" + p


class DrippingDb(SilentDb):
    """A loopback listener that sends the MySQL greeting one byte every `pace` seconds: each
    read of the client gets a byte well within any read timeout, the greeting takes minutes."""

    def __init__(self, life: float = 180.0, pace: float = 1.0) -> None:
        self.pace = pace
        super().__init__(life)

    def _accepted(self, conn: socket.socket) -> None:
        threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        for byte in greeting():
            if self._stop.wait(self.pace):
                return
            try:
                conn.sendall(bytes([byte]))
            except OSError:
                return
