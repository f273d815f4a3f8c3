"""serve against hostile requests, without a database (port 1: any database access would
answer 503, not the status under test): path parameters, slash redirects, X-Forwarded-For."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from archiver import config, serve
from archiver.errors import ConfigError

KEY = "hostile-test-key"
AUTH = {"Authorization": f"Key={KEY}"}


def settings(**serve_changes: Any) -> config.Settings:
    base = config.load_settings(dsn="mysql://root@127.0.0.1:1/x", env={})
    keys = (f"crm:{serve.hash_key(KEY)}",)
    return config.Settings(
        **{**base.__dict__, "serve": config.ServeSettings(keys=keys, **serve_changes)}
    )


def client(peer: str = "testclient", **serve_changes: Any) -> TestClient:
    return TestClient(
        serve.create_app(settings(**serve_changes)),
        raise_server_exceptions=False,
        follow_redirects=False,
        client=(peer, 40000),
    )


def test_job_path_with_4301_digits_is_401_or_404_json_and_logged() -> None:
    huge = "9" * 4301
    with capture_logs() as logs, client() as c:
        r = c.get(f"{serve.JOBS_PATH}/{huge}")
        assert (r.status_code, r.json()["error"]) == (401, "unauthorized")
        r = c.get(f"{serve.JOBS_PATH}/{huge}", headers=AUTH)
        assert (r.status_code, r.json()["error"]) == (404, "not_found")
        for path in ("abc", "-1", "1e3", "18446744073709551616", "%F0%9F%92%A5"):
            r = c.get(f"{serve.JOBS_PATH}/{path}")
            assert (r.status_code, r.json()["error"]) == (401, "unauthorized"), path
            r = c.get(f"{serve.JOBS_PATH}/{path}", headers=AUTH)
            assert (r.status_code, r.json()["error"]) == (404, "not_found"), path
    lines = [e for e in logs if e["event"] == "request"]
    assert [e["status"] for e in lines[:2]] == [401, 404]
    assert all(len(e["path"]) <= 200 for e in lines)


@pytest.mark.parametrize(
    "path", ["/healthz/", "/openapi.json/", serve.ARCHIVE_PATH + "/", serve.JOBS_PATH + "/"]
)
def test_trailing_slash_is_404_not_a_redirect_to_the_host_header(path: str) -> None:
    with client() as c:
        r = c.get(path, headers={"Host": "evil.example"})
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    assert "location" not in r.headers


def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy() -> None:
    xff = {"X-Forwarded-For": "203.0.113.9"}
    with capture_logs() as logs:
        with client("10.0.0.7") as c:  # no proxy configured
            c.post(serve.ARCHIVE_PATH, json={}, headers=xff)
        with client("10.0.0.7", trusted_proxies=("10.0.0.0/24",)) as c:
            c.post(serve.ARCHIVE_PATH, json={}, headers=xff)
            # The right-most address that is not a trusted proxy; the rest is the client's.
            c.post(
                serve.ARCHIVE_PATH,
                json={},
                headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.9, 10.0.0.8"},
            )
            c.post(serve.ARCHIVE_PATH, json={}, headers={"X-Forwarded-For": "not-an-ip"})
        with client("192.0.2.50", trusted_proxies=("10.0.0.0/24",)) as c:  # not a proxy
            c.post(serve.ARCHIVE_PATH, json={}, headers=xff)
    remotes = [e["remote"] for e in logs if e["event"] == "request"]
    assert remotes == ["10.0.0.7", "203.0.113.9", "203.0.113.9", "10.0.0.7", "192.0.2.50"]


def test_serve_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"serve\.trusted_proxies: 'nope'"):
        serve.create_app(settings(trusted_proxies=("nope",)))
    with pytest.raises(ConfigError, match=r"'serve\.read_timeout' must be 1 to 86400"):
        serve.create_app(settings(read_timeout=0))
    with pytest.raises(ConfigError, match=r"'serve\.job_read_timeout' must be 1 to 86400"):
        serve.create_app(settings(job_read_timeout=10**9))


def test_public_reason_keeps_the_tools_own_words_only() -> None:
    own = [
        "--max-runtime of 0.001s reached",
        "the off-hours window (20:00–06:00 UTC, every day) closed",
        "stopped by SIGTERM",
        "the database connection was lost (MySQL error 2013)",
        "lock wait timeout or deadlock persisted (MySQL error 1205)",
    ]
    for reason in own:
        assert serve.public_reason("stopped", reason) == reason
    raw = "database error: (1146, \"Table 'asterisk_prod.x' doesn't exist\") on db-7.corp"
    assert serve.public_reason("failed", raw) == serve.FAILED_REASON
    assert serve.public_reason("stopped", raw) == serve.STOPPED_REASON
    throttle = "throttle gave up: replica lag stayed too high (db-7.corp: 30) for 600s (--max-wait)"
    assert (
        serve.public_reason("stopped", throttle) == "throttle gave up: replica lag stayed too high"
    )
