"""A loopback "MySQL server" that completes the handshake and then answers like no MariaDB or
MySQL server does: a LOAD DATA LOCAL request the client did not ask for, or a bare OK to every
query (no result set, even for `SELECT VERSION()`)."""

from __future__ import annotations

import socket
import struct
import threading

from tests.support.silent import greeting


def _packet(seq: int, payload: bytes) -> bytes:
    return struct.pack("<I", len(payload))[:3] + bytes([seq & 255]) + payload


OK = b"\x00\x00\x00\x02\x00\x00\x00"


def _read(conn: socket.socket) -> tuple[int, bytes] | None:
    head = b""
    while len(head) < 4:
        chunk = conn.recv(4 - len(head))
        if not chunk:
            return None
        head += chunk
    size, body = int.from_bytes(head[:3], "little"), b""
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            return None
        body += chunk
    return head[3], body


class _Listener:
    """A loopback listener on a free port, accepting until stopped; `_accepted` takes each
    connection."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self._accepted(conn)
        self.sock.close()

    def _accepted(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


class HostileDb(_Listener):
    """Accepts connections until stopped. With `infile_at` = n, the n-th query of a connection
    is answered with a LOAD DATA LOCAL request for /etc/hostname; every other query with a bare
    OK. `answers` collects the packet the client sent next (the file's bytes, had it sent
    them)."""

    def __init__(self, infile_at: int = 0) -> None:
        self.infile_at = infile_at
        self.answers: list[bytes] = []
        super().__init__()

    def _accepted(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        try:
            self._serve(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def _serve(self, conn: socket.socket) -> None:
        conn.sendall(greeting())
        got = _read(conn)
        if got is None:
            return
        conn.sendall(_packet(got[0] + 1, OK))
        queries = 0
        while (got := _read(conn)) is not None:
            if got[1][:1] != b"\x03":  # not COM_QUERY (COM_QUIT, COM_PING…)
                if got[1][:1] == b"\x01":
                    return
                conn.sendall(_packet(1, OK))
                continue
            queries += 1
            if queries == self.infile_at:
                conn.sendall(_packet(1, b"\xfb/etc/hostname"))
                answer = _read(conn)
                if answer is not None:
                    self.answers.append(answer[1])
                return
            conn.sendall(_packet(1, OK))


class InfileProxy(_Listener):
    """A relay to a real server that, in answer to the first query holding `marker`, sends a
    LOAD DATA LOCAL request for /etc/hostname instead of passing the query on: a server that
    turns hostile in the middle of a session. `answers` as for HostileDb."""

    def __init__(self, port: int, marker: bytes) -> None:
        self.target = port
        self.marker = marker
        self.answers: list[bytes] = []
        self.injected = threading.Event()
        super().__init__()

    def _accepted(self, conn: socket.socket) -> None:
        conn.settimeout(None)
        threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        server = socket.create_connection(("127.0.0.1", self.target))

        def down() -> None:
            try:
                while chunk := server.recv(65536):
                    client.sendall(chunk)
            except OSError:
                pass

        threading.Thread(target=down, daemon=True).start()
        try:
            while (got := _read(client)) is not None:
                seq, body = got
                if not self.injected.is_set() and body[:1] == b"\x03" and self.marker in body:
                    self.injected.set()
                    client.sendall(_packet(1, b"\xfb/etc/hostname"))
                    client.settimeout(5)
                    try:
                        answer = _read(client)
                    except OSError:
                        answer = None
                    if answer is not None:
                        self.answers.append(answer[1])
                    break
                server.sendall(_packet(seq, body))
        except OSError:
            pass
        finally:
            for s in (client, server):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
