"""One parser for the Lead Archive API body: `POST /vicidial/leads/archive` and `--request`
accept and refuse the same bodies with the same message, and every input is bounded (size,
depth, digits). No database: the app and the CLI point at port 1, so a body that passes the
parser ends at the connection (503 / `cannot connect`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from archiver import config, serve
from tests.support.cli import invoke

KEY = "request-test-key"
DSN = "mysql://root@127.0.0.1:1/x"
LIMIT = 5
RANGE = "lead ids are JSON whole numbers from 1 to 4294967295"
CAP = serve.body_cap(LIMIT)
ACCEPTED = None  # the status column of a body both accept

BODIES: list[tuple[bytes, int | None, str]] = [
    (b'{"lead_ids": [1, 2]}', ACCEPTED, ""),
    (b'{"lead_ids": [4294967295, 1, 1], "insert_leads": false}', ACCEPTED, ""),
    (b'{"delete_leads": true, "update_leads": false, "lead_ids": [7]}', ACCEPTED, ""),
    (
        b'{"lead_ids": [1], "lead_ids": [2]}',
        400,
        'the body is not valid JSON: key "lead_ids" appears twice',
    ),
    (b'{"lead_ids": ["5"]}', 400, f'lead_ids[0] is "5": {RANGE}'),
    (b'{"lead_ids": [1, " 6"]}', 400, f'lead_ids[1] is " 6": {RANGE}'),
    (b'{"lead_ids": [1.0]}', 400, f"lead_ids[0] is 1.0: {RANGE}"),
    (b'{"lead_ids": [true]}', 400, f"lead_ids[0] is true: {RANGE}"),
    (b'{"lead_ids": [0]}', 400, f"lead_ids[0] is 0: {RANGE}"),
    (b'{"lead_ids": [4294967296]}', 400, f"lead_ids[0] is 4294967296: {RANGE}"),
    (b'{"lead_ids": [NaN]}', 400, "the body is not valid JSON: NaN is not a JSON number"),
    (b"[" * 10_000, 400, "the body is nested too deeply (more than 32 levels)"),
    (
        b'{"lead_ids": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}',
        400,
        "the body is nested too deeply (more than 32 levels)",
    ),
    (
        b'{"lead_ids": [' + b"9" * 5000 + b"]}",
        400,
        "the body is not valid JSON: a number has more than 20 digits",
    ),
    (
        b'{"lead_ids": [-' + b"1" * 21 + b"]}",
        400,
        "the body is not valid JSON: a number has more than 20 digits",
    ),
    (b"", 400, "the body is not valid JSON: Expecting value"),
    (
        b"\xff{}",
        400,
        "the body is not valid JSON: 'utf-8' codec can't decode byte 0xff in "
        "position 0: invalid start byte",
    ),
    (b"null", 400, 'the body must be a JSON object: {"lead_ids": [1, 2], "insert_leads": true, …}'),
    (
        b'{"x": 1, "lead_ids": [1]}',
        400,
        'unknown key(s) "x"; known keys: delete_leads, insert_leads, lead_ids, update_leads',
    ),
    (b'{"lead_ids": [1], "update_leads": 1}', 400, "update_leads must be true or false, got 1"),
    (b'{"lead_ids": []}', 400, "lead_ids must be a non-empty array of lead ids"),
    (
        b'{"lead_ids": [1, 2, 3, 4, 5, 6]}',
        413,
        "lead_ids holds 6 ids, more than the limit of 5 per request; split the list",
    ),
    (
        b'{"lead_ids": [1, 1, 1, 1, 1, 1]}',
        413,
        "lead_ids holds 6 ids, more than the limit of 5 per request; split the list",
    ),
    (
        b'{"lead_ids": [1, 1, 1, 1, 1, 1, ' + b"1" * 21 + b"]}",
        400,
        "the body is not valid JSON: a number has more than 20 digits",
    ),
    (b" " * (CAP + 1), 413, f"the body is larger than {CAP} bytes"),
    # The first error in reading order is told: the body's type, its keys, the flags in order,
    # lead_ids itself (too many before any bad id), then the first bad id.
    (
        b'{"lead_ids": [1, "x", 1, 1, 1, 1]}',
        413,
        "lead_ids holds 6 ids, more than the limit of 5 per request; split the list",
    ),
    (
        b'{"lead_ids": [1, 2, 3, 4, 5, 6], "delete_leads": 0}',
        400,
        "delete_leads must be true or false, got 0",
    ),
    (
        b'{"x": 1, "update_leads": 1, "lead_ids": [true]}',
        400,
        'unknown key(s) "x"; known keys: delete_leads, insert_leads, lead_ids, update_leads',
    ),
    (
        b'{"g": 1, "f": 1, "e": 1, "d": 1, "c": 1, "b": 1, "lead_ids": [1]}',
        400,
        'unknown key(s) "b", "c", "d", "e", "f"; known keys: delete_leads, insert_leads, '
        "lead_ids, update_leads",
    ),
    (
        b'{"update_leads": 1, "insert_leads": "no", "lead_ids": [0]}',
        400,
        'insert_leads must be true or false, got "no"',
    ),
    (b'{"lead_ids": null, "delete_leads": []}', 400, "delete_leads must be true or false, got []"),
    (b'{"lead_ids": [1, 2.5, "x"]}', 400, f"lead_ids[1] is 2.5: {RANGE}"),
    (b'{"lead_ids": [2, [1]]}', 400, f"lead_ids[1] is [1]: {RANGE}"),
    (b"[1]", 400, 'the body must be a JSON object: {"lead_ids": [1, 2], "insert_leads": true, …}'),
]


@pytest.fixture(scope="module")
def client() -> TestClient:
    base = config.load_settings(dsn=DSN, env={})
    settings = config.Settings(
        **{
            **base.__dict__,
            "id_limit": LIMIT,
            "serve": config.ServeSettings(keys=(f"crm:{serve.hash_key(KEY)}",)),
        }
    )
    with TestClient(serve.create_app(settings)) as c:
        yield c


def cli_request(tmp_path: Path, raw: bytes) -> tuple[int, str]:
    conf = tmp_path / "limit.toml"
    conf.write_text(f"[archive]\nid_limit = {LIMIT}\n")
    body = tmp_path / "body.json"
    body.write_bytes(raw)
    r = invoke(
        ["--config", str(conf), "--dsn", DSN, "archive", "--request", str(body), "--dry-run"]
    )
    return r.exit_code, r.stderr


@pytest.mark.parametrize(("raw", "status", "message"), BODIES, ids=lambda v: repr(v)[:40])
def test_http_and_cli_accept_and_refuse_alike(
    client: TestClient, tmp_path: Path, raw: bytes, status: int | None, message: str
) -> None:
    r = client.post(serve.ARCHIVE_PATH, content=raw, headers={"Authorization": f"Key={KEY}"})
    code, stderr = cli_request(tmp_path, raw)
    if status is ACCEPTED:  # past the parser: both end at the unreachable database
        assert r.status_code == 503 and r.json()["error"] == "database_unavailable", r.text
        assert code == 2 and stderr.startswith("Error: cannot connect to MariaDB/MySQL"), stderr
        return
    assert (r.status_code, r.json()["message"]) == (status, message)
    assert code == 2
    assert stderr == f"Error: {tmp_path / 'body.json'}: {message}\n"


def test_request_from_dev_zero_ends_at_once_with_exit_2() -> None:
    r = invoke(["--dsn", DSN, "archive", "--request", "/dev/zero", "--dry-run"])
    assert r.exit_code == 2
    assert r.stderr == f"Error: /dev/zero: the body is larger than {serve.body_cap(500)} bytes\n"


def test_request_from_stdin_uses_the_same_parser() -> None:
    r = invoke(["--dsn", DSN, "archive", "--request", "-"], input='{"lead_ids": ["5"]}')
    assert r.exit_code == 2
    assert r.stderr == f'Error: stdin: lead_ids[0] is "5": {RANGE}\n'
    body = json.dumps({"lead_ids": [3]})
    r = invoke(["--dsn", DSN, "archive", "--request", "-", "--dry-run"], input=body)
    assert r.stderr.startswith("Error: cannot connect"), r.stderr
