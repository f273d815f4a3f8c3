"""serve under hostile conditions: a database that accepts TCP and never answers, idle and
slow HTTP connections, X-Forwarded-For from anyone, database error text in answers, the lock
holder's details in a 409, and tables created by a refused request. The process tests start
the real server; the database tests run on MyISAM and InnoDB."""

from __future__ import annotations

import collections
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from archiver import claims, config, serve
from archiver.checkpoint import lock_name
from tests.integration.test_privileges import GRANTS_USER, grants_sql, statements
from tests.support import api
from tests.support.api import free_port
from tests.support.db import ARCHIVE, VDb
from tests.support.silent import DrippingDb, SilentDb

KEY = "hostile-key-5c1e"
KEYS = f"crm:{serve.hash_key(KEY)}"
AUTH = {"Authorization": f"Key={KEY}"}
EXE = Path(sys.executable).with_name("vicidial-archiver")


# --- helpers -----------------------------------------------------------------------------


@pytest.fixture
def silent_db() -> Iterator[SilentDb]:
    db = SilentDb()
    try:
        yield db
    finally:
        db.stop()


class Server:
    """`vicidial-archiver serve` as a child process; its stderr is kept."""

    def __init__(self, dsn: str, conf: str, tmp: Path) -> None:
        path = tmp / "serve.toml"
        path.write_text(conf)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVER_")}
        env["ARCHIVER_API_KEYS"] = KEYS
        self.err = (tmp / "serve.err").open("w+")
        self.proc = subprocess.Popen(
            [
                str(EXE),
                "--config",
                str(path),
                "--dsn",
                dsn,
                "--log-format",
                "json",
                "serve",
                "--listen",
                f"127.0.0.1:{self.port}",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.err,
        )
        for _ in range(200):
            try:
                if call(self.base + "/openapi.json", key=None, timeout=2)[0] == 200:
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        pytest.fail("the server did not come up:\n" + self.stderr())

    def stderr(self) -> str:
        return Path(self.err.name).read_text()

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.stderr().splitlines() if x.startswith("{")]

    def stop(self, timeout: float = 120) -> int:
        """SIGTERM; the server must be gone within `timeout` (a hang detector, not a
        measurement: the documented bound is far below it)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"serve ignored SIGTERM for {timeout}s") from None
        finally:
            self.err.close()


def call(
    url: str,
    body: Any = None,
    key: str | None = KEY,
    timeout: float = 60,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    return api.call(url, body, key, timeout, headers)


def raw_exchange(port: int, data: bytes, timeout: float = 60) -> bytes:
    """Send `data`, then read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        if data:
            s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


# --- 7: a database that accepts TCP and never answers ---------------------------------------

SILENT_CONF = "[database]\nconnect_timeout = 2\n[serve]\nread_timeout = 2\n"


def test_silent_database_answers_503_drops_work_of_clients_gone_and_stops_on_sigterm(
    silent_db: SilentDb, tmp_path: Path
) -> None:
    server = Server(f"mysql://u@127.0.0.1:{silent_db.port}/x", SILENT_CONF, tmp_path)
    try:
        status, body = call(server.base + "/healthz", key=None)
        assert (status, body["error"]) == (503, "database_unavailable")
        status, body = call(server.base + serve.JOBS_PATH)
        assert (status, body["error"]) == (503, "database_unavailable")
        status, body = call(server.base + serve.ARCHIVE_PATH, {"lead_ids": [1]})
        assert (status, body["error"]) == (503, "database_unavailable")

        # 40 clients send a request and hang up at once: at most one round of workers starts.
        before = silent_db.accepted
        request = f"GET {serve.JOBS_PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: Key={KEY}\r\n\r\n"
        for _ in range(40):
            with socket.create_connection(("127.0.0.1", server.port)) as s:
                s.sendall(request.encode())
        # The queue is first in, first out: once this one is answered, every earlier request
        # has started or been dropped.
        assert call(server.base + serve.JOBS_PATH)[0] == 503
        started = silent_db.accepted - before - 1
        assert started <= serve.WORKERS, started

        # A full queue answers 503 `busy` at once; every other request its 503 in turn.
        results: list[tuple[int, Any]] = []
        n = serve.WORKERS + serve.QUEUED + 8

        def one() -> None:
            results.append(call(server.base + serve.JOBS_PATH))

        threads = [threading.Thread(target=one) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        errors = [b["error"] for _, b in results]
        assert len(results) == n and {s for s, _ in results} == {503}
        assert set(errors) <= {"busy", "database_unavailable"} and "busy" in errors, errors

        # SIGTERM with requests in flight: the server stops within its bound.
        def hanging_on() -> None:
            try:
                call(server.base + serve.JOBS_PATH)
            except OSError:  # the server closed the connection on its way out
                pass

        inflight = [threading.Thread(target=hanging_on) for _ in range(12)]
        for t in inflight:
            t.start()
        time.sleep(0.3)
    finally:
        rc = server.stop()
    assert rc in (0, -signal.SIGTERM)
    events = server.events()
    gone = [e for e in events if e.get("event") == "request" and e.get("error") == "client_gone"]
    assert gone  # work dropped for a client gone is logged as 499 client_gone
    assert events[-1]["event"] == "stopped"


# --- /healthz, which needs no key, never takes a worker ---------------------------------------


def test_healthz_of_a_dripping_database_is_bounded_and_takes_no_worker(tmp_path: Path) -> None:
    """The database sends its greeting a byte a second (each read well within read_timeout,
    the greeting in 90 s): /healthz answers 503 within the handshake's deadline, and 40
    anonymous callers make one probe between them, not 40 connections on the job workers."""
    dripping = DrippingDb(life=120)
    server = Server(f"mysql://u@127.0.0.1:{dripping.port}/x", SILENT_CONF, tmp_path)
    try:
        started = time.monotonic()
        status, body = call(server.base + "/healthz", key=None)
        assert (status, body["error"]) == (503, "database_unavailable")
        assert time.monotonic() - started < 30  # the greeting alone takes 90 s
        time.sleep(serve.HEALTH_EVERY)

        before = dripping.accepted
        results: list[tuple[int, Any]] = []

        def anonymous() -> None:
            results.append(call(server.base + "/healthz", key=None))

        threads = [threading.Thread(target=anonymous) for _ in range(40)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        # A key holder meanwhile has a worker: the database's answer, not `busy`.
        status, body = call(server.base + serve.JOBS_PATH)
        assert (status, body["error"]) == (503, "database_unavailable"), body
        for t in threads:
            t.join(60)
        probes = dripping.accepted - before - 1  # one connection was the key holder's
    finally:
        server.stop()
        dripping.stop()
    assert [s for s, _ in results] == [503] * 40
    assert probes <= 2, probes


def test_anonymous_healthz_callers_cannot_deny_the_api(vdb: VDb, tmp_path: Path) -> None:
    """48 keep-alive clients asking /healthz as fast as they can (under the 64-connection
    limit): key holders are served all along, never answered 503 `busy`."""
    vdb.seed(10)
    server = Server(vdb.dsn, "", tmp_path)
    stop = time.monotonic() + 6
    anonymous: collections.Counter[int | str] = collections.Counter()
    holders: collections.Counter[int | str] = collections.Counter()

    def flood() -> None:
        conn: http.client.HTTPConnection | None = None
        while time.monotonic() < stop:
            try:
                conn = conn or http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
                conn.request("GET", "/healthz")
                answer = conn.getresponse()
                answer.read()
                anonymous[answer.status] += 1
            except (OSError, http.client.HTTPException) as exc:
                anonymous[type(exc).__name__] += 1
                conn = None

    threads = [threading.Thread(target=flood) for _ in range(48)]
    try:
        for t in threads:
            t.start()
        time.sleep(1.5)
        while time.monotonic() < stop - 0.5:
            status, body = call(server.base + serve.JOBS_PATH + "?limit=1", timeout=30)
            holders[status if status == 200 else body.get("error", status)] += 1
            time.sleep(0.2)
        for t in threads:
            t.join(60)
    finally:
        server.stop()
    assert set(holders) == {200}, holders
    assert set(anonymous) == {200}, anonymous


# --- 8: idle and slow HTTP connections ----------------------------------------------------


def test_idle_partial_and_slow_connections_are_closed(tmp_path: Path) -> None:
    server = Server("mysql://u@127.0.0.1:1/x", "", tmp_path)
    try:
        slow_body = (
            f"POST {serve.ARCHIVE_PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: Key={KEY}\r\n"
            'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"lead_ids"'
        ).encode()
        cases = {
            "nothing": b"",
            "partial headers": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: 1",
            "short body": slow_body,
        }
        answers: dict[str, bytes | str] = {}

        def run(name: str, data: bytes) -> None:
            try:
                answers[name] = raw_exchange(server.port, data)
            except OSError as exc:  # still open when the client gave up
                answers[name] = repr(exc)

        threads = [threading.Thread(target=run, args=item) for item in cases.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert answers["nothing"] == b""
        assert answers["partial headers"] == b""
        short = answers["short body"]
        assert isinstance(short, bytes) and short.startswith(b"HTTP/1.1 408"), short
        assert b'"error":"body_timeout"' in short
        # Unfinished headers beyond the limit are refused at once by uvicorn's parser.
        big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000
        assert raw_exchange(server.port, big).startswith(b"HTTP/1.1 4")
    finally:
        server.stop()


def test_x_forwarded_for_from_a_local_client_is_not_believed(tmp_path: Path) -> None:
    server = Server("mysql://u@127.0.0.1:1/x", "", tmp_path)
    try:
        status, _ = call(
            server.base + serve.ARCHIVE_PATH,
            {"lead_ids": [1]},
            key="wrong",
            headers={"X-Forwarded-For": "203.0.113.9"},
        )
        assert status == 401
    finally:
        server.stop()
    lines = [e for e in server.events() if e.get("event") == "request" and e["method"] == "POST"]
    assert [e["remote"] for e in lines] == ["127.0.0.1"]


# --- 12, 13 and the 409 body, on both engines ------------------------------------------------


def app_settings(vdb: VDb) -> config.Settings:
    return replace(vdb.settings, serve=config.ServeSettings(keys=(KEYS,)))


def archiver_tables(vdb: VDb) -> list[Any]:
    return vdb.db.rows("SHOW TABLES LIKE 'archiver%'")


def test_database_error_text_stays_in_the_server_log(vdb: VDb) -> None:
    vdb.seed(10)
    vdb.db.write(
        "CREATE TRIGGER no_copy BEFORE INSERT ON vicidial_list_archive FOR EACH ROW"
        " SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'table asterisk_prod on db-7.corp'"
    )
    with capture_logs() as logs, TestClient(serve.create_app(app_settings(vdb))) as c:
        r = c.post(serve.ARCHIVE_PATH, json={"lead_ids": [1, 2]}, headers=AUTH)
        body = r.json()
        assert r.status_code == 500 and "job_id" in body, r.text
        listed = c.get(serve.JOBS_PATH, headers=AUTH).json()["jobs"]
        one = c.get(f"{serve.JOBS_PATH}/{body['job_id']}", headers=AUTH).json()
    assert body["error"] == "job_failed" and isinstance(body["job_id"], int)
    assert body["message"] == (
        "the job failed part-way and is resumable: send the same request again; "
        "the server log has the details"
    )
    assert listed[0]["state"] == one["state"] == "failed"
    assert listed[0]["stop_reason"] == one["stop_reason"] == serve.FAILED_REASON
    for text in (r.text, json.dumps(listed), json.dumps(one)):
        assert "asterisk_prod" not in text and "db-7.corp" not in text
    assert "asterisk_prod" in repr([e for e in logs if e["event"] == "request_failed"])
    # The CLI keeps the full text: the job row is unchanged.
    row = vdb.db.scalar(
        "SELECT stop_reason FROM archiver_jobs WHERE job_id = :j", {"j": body["job_id"]}
    )
    assert "asterisk_prod" in row


def test_409_gives_api_clients_the_job_id_only(vdb: VDb) -> None:
    vdb.seed(20)
    with TestClient(serve.create_app(app_settings(vdb))) as c:
        first = c.post(serve.ARCHIVE_PATH, json={"lead_ids": [1]}, headers=AUTH).json()
        holder = vdb.connect()
        conn_id = int(holder.scalar("SELECT CONNECTION_ID()"))
        try:
            assert holder.scalar("SELECT GET_LOCK(:n, 0)", {"n": lock_name(vdb.settings)}) == 1
            # ... and, as a nightly job's chunk would, the claim of the lead asked for.
            busy = f"{claims.prefix(vdb.settings)}2"
            assert holder.scalar("SELECT GET_LOCK(:n, 0)", {"n": busy}) == 1
            # The holder looks like a running job on another machine.
            vdb.db.write(
                "UPDATE archiver_jobs SET state = 'running', connection_id = :c,"
                " host = 'db-7.corp', pid = 4242, heartbeat = NOW(3) WHERE job_id = :j",
                {"c": conn_id, "j": first["job_id"]},
            )
            r = c.post(serve.ARCHIVE_PATH, json={"lead_ids": [2]}, headers=AUTH)
        finally:
            holder.scalar("SELECT RELEASE_LOCK(:n)", {"n": lock_name(vdb.settings)})
            holder.conn.close()
    assert r.status_code == 409, r.text
    body = r.json()
    assert (body["error"], body["job_id"]) == ("locked", first["job_id"])
    assert body["message"] == (
        f"another job is working on leads of this request: job {first['job_id']}; "
        "send the request again in a few seconds"
    )
    assert "db-7.corp" not in r.text and "4242" not in r.text and str(conn_id) not in r.text


def test_refused_post_creates_no_tables(vdb: VDb) -> None:
    """Passes once the runner takes the lock before it creates the checkpoint tables."""
    vdb.seed(5)
    assert archiver_tables(vdb) == []
    holder = vdb.connect()
    try:
        assert holder.scalar("SELECT GET_LOCK(:n, 0)", {"n": lock_name(vdb.settings)}) == 1
        busy = f"{claims.prefix(vdb.settings)}1"
        assert holder.scalar("SELECT GET_LOCK(:n, 0)", {"n": busy}) == 1
        with TestClient(serve.create_app(app_settings(vdb))) as c:
            assert c.get("/healthz").status_code == 200
            assert c.get(serve.JOBS_PATH, headers=AUTH).json() == {"jobs": []}
            r = c.post(serve.ARCHIVE_PATH, json={"lead_ids": [1, 2]}, headers=AUTH)
    finally:
        holder.scalar("SELECT RELEASE_LOCK(:n)", {"n": lock_name(vdb.settings)})
        holder.conn.close()
    assert r.status_code == 409 and r.json()["job_id"] is None, r.text
    assert archiver_tables(vdb) == []


def test_a_missing_grant_is_server_not_ready_and_names_no_account(vdb: VDb) -> None:
    """An account made by the grants.sql of the version before archiver_job_ids: the refusal
    is a set-up problem of the server (500 server_not_ready, its fixed message); the account,
    its host, the schema and the GRANT to run go to the server log only."""
    vdb.seed(5)
    user = f"va_old_{uuid.uuid4().hex[:8]}"
    text = (
        grants_sql()
        .replace("`asterisk`.", f"`{vdb.name}`.")
        .replace(GRANTS_USER, f"'{user}'@'127.0.0.1'")
        .replace("'CHANGE_ME'", "'pw'")
    )
    settings = app_settings(vdb)
    settings = replace(settings, db=replace(settings.db, user=user, password="pw"))
    try:
        for stmt in statements(text):
            if "archiver_job_ids" not in stmt:
                vdb.db.write(stmt)
        with capture_logs() as logs, TestClient(serve.create_app(settings)) as c:
            r = c.post(serve.ARCHIVE_PATH, json={"lead_ids": [1, 2]}, headers=AUTH)
    finally:
        vdb.db.write(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")
    assert r.status_code == 500, r.text
    assert r.json() == {
        "error": "server_not_ready",
        "message": "the server is not set up for archiving; the server log has the details",
    }
    failed = repr([e for e in logs if e["event"] == "request_failed"])
    assert f"`{vdb.name}`.`archiver_job_ids` TO '{user}'@'127.0.0.1'" in failed
    assert vdb.count(ARCHIVE) == 0
