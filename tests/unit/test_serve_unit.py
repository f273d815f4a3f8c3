"""serve without a database: body validation, API keys, --listen, the OpenAPI file, config."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from archiver import config, serve
from archiver.errors import BadInput, ConfigError
from archiver.jobtypes import Flags
from tests.support.cli import invoke

REPO = Path(__file__).resolve().parents[2]
KEY = "s3cret-key-for-tests"
ENTRY = f"crm:{serve.hash_key(KEY)}"


def body(obj: Any) -> bytes:
    return json.dumps(obj).encode()


# --- the body ------------------------------------------------------------------------------


def test_valid_bodies() -> None:
    req = serve.parse_body(body({"lead_ids": [3, 1, 3]}), 500)
    assert req == serve.ArchiveRequest(Flags(True, True, True), (3, 1, 3))
    req = serve.parse_body(
        b'{"insert_leads": true, "update_leads": false, "delete_leads": false,'
        b' "lead_ids": [4294967295, 1]}',
        2,
    )
    assert req == serve.ArchiveRequest(Flags(True, False, False), (4294967295, 1))


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON"),
        ('\ufeff{"lead_ids": [1]}'.encode(), "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b"null", "must be a JSON object"),
        (b'{"lead_ids": [1], "lead_id": [2]}', 'unknown key(s) "lead_id"'),
        (b'{"lead_ids": [1], "lead_ids": [2]}', 'key "lead_ids" appears twice'),
        (b'{"lead_ids": [1], "insert_leads": 1}', "insert_leads must be true or false, got 1"),
        (b'{"lead_ids": [1], "delete_leads": "false"}', "delete_leads must be true or false"),
        (b'{"lead_ids": [1], "update_leads": null}', "update_leads must be true or false"),
        (b"{}", "lead_ids must be a non-empty array"),
        (b'{"lead_ids": []}', "lead_ids must be a non-empty array"),
        (b'{"lead_ids": "1,2"}', "lead_ids must be a non-empty array"),
        (b'{"lead_ids": ["5"]}', 'lead_ids[0] is "5"'),
        (b'{"lead_ids": [1, 1.0]}', "lead_ids[1] is 1.0"),
        (b'{"lead_ids": [true]}', "lead_ids[0] is true"),
        (b'{"lead_ids": [0]}', "lead_ids[0] is 0"),
        (b'{"lead_ids": [-3]}', "lead_ids[0] is -3"),
        (b'{"lead_ids": [4294967296]}', "lead_ids[0] is 4294967296"),
        (b'{"lead_ids": [NaN]}', "NaN is not a JSON number"),
        (b'{"lead_ids": [Infinity]}', "Infinity is not a JSON number"),
        (b'{"lead_ids": [' + b"9" * 5000 + b"]}", "not valid JSON"),
        (b"[" * 100_000, "nested too deeply"),
    ],
)
def test_bad_bodies_are_400(raw: bytes, fragment: str) -> None:
    with pytest.raises(serve.ApiError) as err:
        serve.parse_body(raw, 500)
    assert err.value.status == 400
    assert fragment in err.value.message


def test_more_ids_than_the_limit_is_413() -> None:
    serve.parse_body(body({"lead_ids": list(range(1, 6))}), 5)
    with pytest.raises(serve.ApiError) as err:
        serve.parse_body(body({"lead_ids": list(range(1, 7))}), 5)
    assert (err.value.status, err.value.code, err.value.extra) == (
        413,
        "too_many_ids",
        {"limit": 5},
    )
    assert "6 ids, more than the limit of 5" in err.value.message


def test_body_cap_fits_the_limit_pretty_printed() -> None:
    ids = [4294967295 - i for i in range(500)]
    pretty = json.dumps({"lead_ids": ids, "insert_leads": True}, indent=4).encode()
    assert len(pretty) < serve.body_cap(500)


# --- API keys -----------------------------------------------------------------------------


def test_parse_keys_and_identify() -> None:
    other = "another-key"
    keys = serve.parse_keys([ENTRY, f"billing.bot:{serve.hash_key(other).upper()}"])
    assert [k.name for k in keys] == ["crm", "billing.bot"]
    assert serve.identify(keys, f"Key={KEY}") == "crm"
    assert serve.identify(keys, f"key= {other} ") == "billing.bot"
    for header in (None, "", "Key=", f"Bearer {KEY}", KEY, f"Key={KEY}x", f"Key {KEY}"):
        assert serve.identify(keys, header) is None, header
    assert KEY not in repr(keys) and serve.hash_key(KEY) not in repr(keys)


def test_every_key_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = serve.parse_keys([f"k{i}:{serve.hash_key(f'key-{i}')}" for i in range(4)])
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(serve.hmac, "compare_digest", spy)
    assert serve.identify(keys, "Key=key-0") == "k0"
    assert len(calls) == 4  # no early exit on the first match
    assert all(b == hashlib.sha256(b"key-0").digest() for _, b in calls)


@pytest.mark.parametrize(
    ("entries", "fragment"),
    [
        (["crm"], "entry 1"),
        (["crm:abc"], "entry 1"),
        ([ENTRY, "plain-raw-key-pasted-here"], "entry 2"),
        (["bad name:" + "0" * 64], "entry 1"),
        ([ENTRY, ENTRY.replace("crm", "crm2")], "repeats the key"),
        ([ENTRY, "crm:" + serve.hash_key("x")], "'crm' is configured twice"),
        (["empty:" + serve.hash_key("")], "empty key"),
    ],
)
def test_bad_key_entries(entries: list[str], fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        serve.parse_keys(entries)
    assert fragment in str(err.value)
    assert "plain-raw-key-pasted-here" not in str(err.value)


def test_keys_from_config_file_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_text(f'[serve]\nkeys = ["{ENTRY}"]\n')
    s = config.load_settings(config_path=str(path), env={})
    assert s.serve.keys == (ENTRY,)
    assert serve.hash_key(KEY) not in repr(s)
    env_entry = f"erp:{serve.hash_key('k2')}"
    s = config.load_settings(
        config_path=str(path), env={"ARCHIVER_API_KEYS": f"{env_entry}, {ENTRY}"}
    )
    assert s.serve.keys == (ENTRY, env_entry)  # the environment adds keys
    path.write_text('[serve]\nkey = "x"\n')
    with pytest.raises(ConfigError, match=r"unknown config key 'serve\.key'"):
        config.load_settings(config_path=str(path), env={})


# --- --listen and the command ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        (":9000", ("127.0.0.1", 9000)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
        ("[::1]:8443", ("::1", 8443)),
        ("localhost:1", ("localhost", 1)),
    ],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert serve.parse_listen(text) == expected


@pytest.mark.parametrize("text", ["8080", "host", "host:", "host:0", "host:70000", "a:b:1"])
def test_parse_listen_refuses(text: str) -> None:
    with pytest.raises(BadInput):
        serve.parse_listen(text)


def test_serve_command_refuses_without_keys_or_with_a_bad_listen() -> None:
    r = invoke(["--dsn", "mysql://root@127.0.0.1:1/x", "serve", "--listen", ":1"])
    assert r.exit_code == 2
    assert "Error: no API keys configured" in r.stderr
    env = {"ARCHIVER_API_KEYS": ENTRY}
    r = invoke(["--dsn", "mysql://root@127.0.0.1:1/x", "serve", "--listen", "nope"], env=env)
    assert r.exit_code == 2
    assert "Error: --listen 'nope': expected HOST:PORT" in r.stderr


def test_serve_openapi_flag_prints_the_repository_file() -> None:
    r = invoke(["serve", "--openapi"])
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout) == json.loads((REPO / "openapi.json").read_text())


# --- the app without a database (refusals come before any connection) -------------------


def app_client(**changes: Any) -> TestClient:
    # Port 1: any attempt to reach a database would answer 503, not the status under test.
    base = config.load_settings(dsn="mysql://root@127.0.0.1:1/x", env={})
    s = config.Settings(
        **{**base.__dict__, "serve": config.ServeSettings(keys=(ENTRY,)), **changes}
    )
    return TestClient(serve.create_app(s))


def test_served_openapi_equals_the_repository_file() -> None:
    with app_client() as client:
        served = client.get("/openapi.json").json()
    assert served == json.loads((REPO / "openapi.json").read_text()), (
        "openapi.json is stale: run `vicidial-archiver serve --openapi > openapi.json`"
    )


def test_openapi_documents_every_route_and_the_configured_limit() -> None:
    with app_client(id_limit=7) as client:
        doc = client.get("/openapi.json").json()
        routes = {getattr(r, "path", None) for r in client.app.routes}  # type: ignore[attr-defined]
    assert {p.replace("{job_id:int}", "{job_id}") for p in routes if p} == set(doc["paths"])
    schema = doc["components"]["schemas"]["ArchiveRequest"]
    assert schema["properties"]["lead_ids"]["maxItems"] == 7
    assert set(schema["properties"]) == serve.REQUEST_KEYS


def test_refusals_and_the_log_line_never_show_the_key() -> None:
    with capture_logs() as logs, app_client(id_limit=3) as client:
        r = client.post(serve.ARCHIVE_PATH, json={"lead_ids": [1]})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Key"
        assert r.json()["error"] == "unauthorized"
        r = client.post(
            serve.ARCHIVE_PATH, json={"lead_ids": [1]}, headers={"Authorization": "Key=wrong"}
        )
        assert r.status_code == 401
        auth = {"Authorization": f"Key={KEY}"}
        r = client.post(serve.ARCHIVE_PATH, content=b"{nope", headers=auth)
        assert r.status_code == 400 and r.json()["error"] == "bad_request"
        r = client.post(serve.ARCHIVE_PATH, json={"lead_ids": [1, 2, 3, 4]}, headers=auth)
        assert r.status_code == 413 and r.json()["limit"] == 3
        r = client.post(serve.ARCHIVE_PATH, content=b" " * (serve.body_cap(3) + 1), headers=auth)
        assert r.status_code == 413 and r.json()["error"] == "body_too_large"
        r = client.get(serve.ARCHIVE_PATH, headers=auth)
        assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"
        assert client.get("/nothing").json()["error"] == "not_found"
        r = client.get(serve.JOBS_PATH + "?limit=0", headers=auth)
        assert r.status_code == 400
    lines = [e for e in logs if e["event"] == "request"]
    assert [(e["client"], e["status"]) for e in lines] == [
        (None, 401),
        (None, 401),
        ("crm", 400),
        ("crm", 413),
        ("crm", 413),
        ("crm", 400),
    ]  # 404/405 are answered by the router, before any endpoint
    assert all(isinstance(e["duration_ms"], float) for e in lines)
    text = repr(logs)
    assert KEY not in text and serve.hash_key(KEY) not in text and "wrong" not in text
