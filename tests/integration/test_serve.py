"""serve against the real MariaDB, on MyISAM and InnoDB: every status through the ASGI test
client with both tables unchanged on every refusal, the happy path equal to `archive`, the real
server process over HTTP, and a property-based fuzz of the request body."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from starlette.testclient import TestClient
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from archiver import claims, config, serve, window
from archiver.checkpoint import lock_name
from archiver.selection import MAX_LEAD_ID
from tests.support import api
from tests.support.api import free_port
from tests.support.bodies import bodies
from tests.support.db import ARCHIVE, LIVE, VDb, drop_test_db, make_test_db
from tests.support.schema import documented

KEY = "crm-test-key-7f3a9c"
OTHER_KEY = "erp-test-key-11b2"
KEYS = (f"crm:{serve.hash_key(KEY)}", f"erp:{serve.hash_key(OTHER_KEY)}")
AUTH = {"Authorization": f"Key={KEY}"}
PATH = serve.ARCHIVE_PATH
FUZZ_EXAMPLES = int(os.environ.get("ARCHIVER_FUZZ_EXAMPLES", "150"))


def app_settings(vdb: VDb, **changes: Any) -> config.Settings:
    # crm may read every job (CLI jobs too); erp only those it started.
    serve_settings = config.ServeSettings(keys=KEYS, admin_keys=("crm",))
    return replace(vdb.settings, serve=serve_settings, **changes)


def app_client(conf: config.Settings) -> TestClient:
    """The app's test client; every answer is checked against the OpenAPI document."""
    return documented(TestClient(serve.create_app(conf)))


@pytest.fixture
def client(vdb: VDb) -> Iterator[TestClient]:
    with app_client(app_settings(vdb)) as c:
        yield c


def jobs_count(vdb: VDb) -> int:
    present = vdb.db.scalar(
        "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
        " AND TABLE_NAME = 'archiver_jobs'"
    )
    return int(vdb.db.scalar("SELECT COUNT(*) FROM archiver_jobs")) if present else 0


class Unchanged:
    """Asserts that both tables and the job table are as they were."""

    def __init__(self, vdb: VDb) -> None:
        self.vdb = vdb
        self.before = (vdb.checksum(LIVE, ARCHIVE), jobs_count(vdb))

    def check(self) -> None:
        assert (self.vdb.checksum(LIVE, ARCHIVE), jobs_count(self.vdb)) == self.before


def prepare(t: VDb) -> None:
    """Leads in every state an archive run meets, the same on every database it is given."""
    t.seed(200)
    t.db.write(
        "INSERT INTO vicidial_hopper (lead_id, campaign_id, status, list_id)"
        " VALUES (7, 'SALESA', 'READY', 101)"
    )
    t.db.write("INSERT INTO vicidial_callbacks (lead_id, status) VALUES (8, 'ACTIVE')")
    cols = ", ".join(f"`{c}`" for c in t.columns())
    t.db.write(
        f"INSERT INTO {ARCHIVE} ({cols}) SELECT {cols} FROM {LIVE} WHERE lead_id IN (20, 21, 22)"
    )
    # 20: changed after it was copied; 21: only in the archive; 22: copied, unchanged.
    t.db.write(
        f"UPDATE {LIVE} SET comments = 'changed', modify_date = '2024-01-02 03:04:05'"
        " WHERE lead_id = 20"
    )
    t.db.write(f"DELETE FROM {LIVE} WHERE lead_id = 21")


REQUEST_IDS = [*range(1, 121), 150, 150, 200, 9999, MAX_LEAD_ID]


# --- the happy path equals `archive` -------------------------------------------------------


@pytest.mark.parametrize(
    "flags",
    [(True, True, True), (True, True, False), (False, True, True)],
    ids=["all", "no-delete", "no-insert"],
)
def test_happy_path_equals_archive_command(vdb: VDb, flags: tuple[bool, bool, bool]) -> None:
    twin = make_test_db(vdb.engine)
    try:
        prepare(vdb)
        prepare(twin)
        assert vdb.checksum() == twin.checksum()
        body = {
            "insert_leads": flags[0],
            "update_leads": flags[1],
            "delete_leads": flags[2],
            "lead_ids": REQUEST_IDS,
        }
        with (
            capture_logs(processors=[merge_contextvars]) as logs,
            app_client(app_settings(vdb)) as c,
        ):
            r = c.post(PATH, json=body, headers=AUTH)
        assert r.status_code == 200, [e for e in logs if e["log_level"] == "error"]
        answer = r.json()

        names = ("insert", "update", "delete")
        opts = [f"--{'' if on else 'no-'}{n}" for n, on in zip(names, flags, strict=True)]
        cli = twin.cli(["archive", ",".join(map(str, REQUEST_IDS)), *opts, "--json"])
        assert cli.exit_code == 0, cli.stderr
        summary = json.loads(cli.stdout)

        assert vdb.checksum() == twin.checksum()
        assert answer["counts"] == summary["counts"]
        assert answer["state"] == summary["state"] == "done"
        shown = twin.cli(["jobs", "show", str(summary["job_id"]), "--leads", "all"])
        not_moved = [
            f"{x['lead_id']},{x['outcome']}" for x in answer["leads"] if x["outcome"] != "archived"
        ]
        assert not_moved == shown.stdout.split()

        outcomes = {x["lead_id"]: x["outcome"] for x in answer["leads"]}
        assert list(outcomes) == sorted(set(REQUEST_IDS))
        assert Counter(outcomes.values()) == answer["counts"]
        assert outcomes[7] == outcomes[8] == "skipped_live"
        assert outcomes[200] == "skipped_newest"
        assert outcomes[9999] == outcomes[MAX_LEAD_ID] == "missing"
        assert outcomes[21] == "already_archived"
        live = set(vdb.ids(LIVE))
        archive = set(vdb.ids(ARCHIVE))
        moved = {i for i, o in outcomes.items() if o == "archived"}
        kept = {i for i, o in outcomes.items() if o == "refreshed"}
        assert moved if flags[2] else kept, "nothing moved: the test proves nothing"
        assert not moved & live and moved <= archive
        assert kept <= live & archive
        assert answer["flags"] == {k: v for k, v in body.items() if k != "lead_ids"}

        line = next(e for e in logs if e["event"] == "request")
        assert (line["client"], line["status"], line["ids"], line["counts"]) == (
            "crm",
            200,
            len(REQUEST_IDS),
            answer["counts"],
        )
        assert line["job_id"] == answer["job_id"] and line["duration_ms"] > 0
        assert all(e.get("client") == "crm" for e in logs if e["event"] in ("chunk", "summary"))
        assert KEY not in repr(logs) and serve.hash_key(KEY) not in repr(logs)
    finally:
        drop_test_db(twin)


def test_job_endpoints(vdb: VDb, client: TestClient) -> None:
    vdb.seed(30)
    r = client.post(PATH, json={"lead_ids": [3, 1, 2], "delete_leads": False}, headers=AUTH)
    assert r.status_code == 200, r.text
    posted = r.json()
    assert posted["counts"] == {"refreshed": 3}
    r = client.get(
        f"{serve.JOBS_PATH}/{posted['job_id']}", headers={"Authorization": f"Key={OTHER_KEY}"}
    )
    assert r.status_code == 404  # another key's job (test_secrets_visibility has the rule)
    r = client.get(f"{serve.JOBS_PATH}/{posted['job_id']}", headers=AUTH)
    assert r.status_code == 200
    got = r.json()
    assert got == {k: v for k, v in posted.items() if k not in ("warnings", "seconds")}
    assert got["leads"] == [{"lead_id": i, "outcome": "refreshed"} for i in (1, 2, 3)]
    listed = client.get(serve.JOBS_PATH, headers=AUTH).json()["jobs"]
    assert [j["job_id"] for j in listed] == [posted["job_id"]] and "leads" not in listed[0]
    assert client.get(f"{serve.JOBS_PATH}/{posted['job_id'] + 1}", headers=AUTH).status_code == 404
    assert client.get(f"{serve.JOBS_PATH}/99999999999999999999999", headers=AUTH).status_code == 404
    assert client.get(f"{serve.JOBS_PATH}/{posted['job_id']}").status_code == 401
    assert client.get("/healthz").json()["status"] == "ok"


def test_job_endpoints_before_any_job_write_nothing(vdb: VDb, client: TestClient) -> None:
    # No archiver_ table yet: reading jobs must not create them.
    assert client.get(f"{serve.JOBS_PATH}/1", headers=AUTH).status_code == 404
    assert client.get(serve.JOBS_PATH, headers=AUTH).json() == {"jobs": []}
    tables = vdb.db.rows("SHOW TABLES LIKE 'archiver%'")
    assert tables == []


def test_a_job_stopped_early_is_resumed_by_the_same_request(vdb: VDb) -> None:
    # max_runtime stops a job after its first chunk, as a closing window does.
    vdb.seed(40)
    body = {"lead_ids": list(range(1, 26))}
    stopping = app_settings(vdb, chunk_size=10, max_runtime=0.001)
    answers = []
    with app_client(stopping) as c:
        for _ in range(5):
            r = c.post(PATH, json=body, headers=AUTH)
            assert r.status_code == 200, r.text
            answers.append(r.json())
            if answers[-1]["state"] == "done":
                break
    first = answers[0]
    assert first["state"] == "stopped" and "max-runtime" in first["stop_reason"]
    outcomes = Counter(x["outcome"] for x in first["leads"])
    assert outcomes == {"archived": 10, "pending": 15}
    assert {a["job_id"] for a in answers} == {first["job_id"]}  # one job, resumed
    assert answers[-1]["state"] == "done"
    assert answers[-1]["counts"] == {"archived": 25}
    assert vdb.ids(ARCHIVE) == list(range(1, 26))


# --- every refusal writes nothing -----------------------------------------------------------


def test_400_and_413_write_nothing(vdb: VDb) -> None:
    vdb.seed(20)
    bodies: list[tuple[bytes, int]] = [
        (b"not json", 400),
        (b'{"lead_ids": ["1", "2"]}', 400),
        (b'{"lead_ids": [1, 2], "insert_leads": "yes"}', 400),
        (b'{"lead_ids": [1, 2], "limit": 5}', 400),
        (b'{"lead_ids": [1, 0]}', 400),
        (b'{"lead_ids": [1, 4294967296]}', 400),
        (json.dumps({"lead_ids": list(range(1, 502))}).encode(), 413),
    ]
    unchanged = Unchanged(vdb)
    with app_client(app_settings(vdb)) as c:
        for raw, status in bodies:
            r = c.post(PATH, content=raw, headers={**AUTH, "Content-Type": "application/json"})
            assert r.status_code == status, (raw[:60], r.text)
            assert r.json()["message"]
            unchanged.check()
        # The same limit from the config: 5 ids is one too many at id_limit = 4.
        with app_client(app_settings(vdb, id_limit=4)) as c4:
            r = c4.post(PATH, json={"lead_ids": [1, 2, 3, 4, 5]}, headers=AUTH)
            assert r.status_code == 413 and "limit of 4" in r.json()["message"]
    unchanged.check()


def test_401_writes_nothing(vdb: VDb, client: TestClient) -> None:
    vdb.seed(20)
    unchanged = Unchanged(vdb)
    for headers in (
        {},
        {"Authorization": "Key=nope"},
        {"Authorization": f"Bearer {KEY}"},
        {"Authorization": "Key="},
        {"Authorization": f"Key={KEY[:-1]}"},
    ):
        r = client.post(PATH, json={"lead_ids": [1, 2]}, headers=headers)
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        unchanged.check()


def test_a_request_runs_beside_the_big_job_and_409_when_its_lead_stays_claimed(
    vdb: VDb, client: TestClient
) -> None:
    """A request of a few ids does not wait for the nightly job (its lock); it waits a few
    seconds for a lead that job's chunk holds, and answers 409 when it stays held."""
    vdb.seed(20)
    holder = vdb.connect()
    assert holder.scalar("SELECT GET_LOCK(:n, 0)", {"n": lock_name(vdb.settings)}) == 1
    try:
        r = client.post(PATH, json={"lead_ids": [1, 2]}, headers=AUTH)
        assert r.status_code == 200 and r.json()["counts"] == {"archived": 2}, r.text
        unchanged = Unchanged(vdb)
        claim = f"{claims.prefix(vdb.settings)}3"
        assert holder.scalar("SELECT GET_LOCK(:n, 0)", {"n": claim}) == 1
        r = client.post(PATH, json={"lead_ids": [3, 4]}, headers=AUTH)
        assert r.status_code == 409, r.text
        assert r.json()["error"] == "locked"
        unchanged.check()
    finally:
        holder.conn.close()
    r = client.post(PATH, json={"lead_ids": [3, 4]}, headers=AUTH)
    assert r.status_code == 200 and r.json()["counts"] == {"archived": 2}


def closed_window() -> config.WindowSettings:
    now = datetime.now(UTC)
    start, end = ((now + timedelta(hours=h)).strftime("%H:%M") for h in (2, 3))
    return config.WindowSettings(start=start, end=end, timezone="UTC")


def test_423_outside_the_window(vdb: VDb) -> None:
    vdb.seed(20)
    w = closed_window()
    assert not window.is_open(w)
    unchanged = Unchanged(vdb)
    with app_client(app_settings(vdb, window=w)) as c:
        r = c.post(PATH, json={"lead_ids": [1, 2]}, headers=AUTH)
    assert r.status_code == 423, r.text
    desc = window.describe(w)
    assert r.json()["window"] == desc and desc in r.json()["message"]
    unchanged.check()


def test_503_when_the_database_is_unreachable(vdb: VDb) -> None:
    vdb.seed(20)
    unchanged = Unchanged(vdb)
    down = app_settings(vdb, db=replace(vdb.settings.db, port=1))
    with app_client(down) as c:
        r = c.post(PATH, json={"lead_ids": [1, 2]}, headers=AUTH)
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "database_unavailable"
        assert "cannot connect to MariaDB/MySQL at 127.0.0.1:1" in r.json()["message"]
        assert c.get("/healthz").status_code == 503
        assert c.get(f"{serve.JOBS_PATH}/1", headers=AUTH).status_code == 503
    unchanged.check()


# --- the real server process ---------------------------------------------------------------


def call(url: str, body: Any = None, key: str | None = KEY, timeout: float = 10) -> tuple[int, Any]:
    return api.call(url, body, key, timeout)


def test_real_server_process(vdb: VDb, tmp_path: Path) -> None:
    vdb.seed(100)
    conf = tmp_path / "serve.toml"
    # Small chunks with a pause between them: the slow request below outlives its client.
    conf.write_text('[archive]\nchunk_size = 10\n[throttle]\nsleep = "0.25s"\n')
    port = free_port()
    exe = Path(sys.executable).with_name("vicidial-archiver")
    env = {**os.environ, "ARCHIVER_API_KEYS": ",".join(KEYS), "ARCHIVER_DSN": ""}
    proc = subprocess.Popen(
        [
            str(exe),
            "--config",
            str(conf),
            "--dsn",
            vdb.dsn,
            "--log-format",
            "json",
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if call(base + "/healthz", key=None, timeout=1)[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("the server did not come up")
        assert call(base + PATH, {"lead_ids": [1]}, key="wrong")[0] == 401
        status, answer = call(base + PATH, {"lead_ids": [5, 6, 7]})
        assert status == 200, answer
        assert answer["counts"] == {"archived": 3} and answer["state"] == "done"
        assert call(f"{base}{serve.JOBS_PATH}/{answer['job_id']}")[1]["leads"] == answer["leads"]

        # The client gives up long before the 6 chunks are done, and the server is told to
        # stop while the job runs: the job still finishes every chunk.
        slow = list(range(11, 71))
        with pytest.raises(OSError):  # a socket timeout
            call(base + PATH, {"lead_ids": slow}, timeout=0.3)
        jobs = call(base + serve.JOBS_PATH)[1]["jobs"]
        assert [j["job_id"] for j in jobs] == [answer["job_id"] + 1, answer["job_id"]]
        running = call(f"{base}{serve.JOBS_PATH}/{jobs[0]['job_id']}")[1]
        assert running["state"] == "running"
        assert Counter(x["outcome"] for x in running["leads"])["pending"] > 0
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    # uvicorn re-raises the signal after its graceful shutdown.
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert out == ""  # stdout carries results only; the server logs to stderr
    assert set(vdb.ids(ARCHIVE)) == {5, 6, 7, *slow}
    row = vdb.db.rows(
        "SELECT state, chunks, counts_json FROM archiver_jobs WHERE job_id = :j",
        {"j": jobs[0]["job_id"]},
    )
    assert row == [("done", 6, '{"archived": 60}')]

    events = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    assert events[0]["event"] == "serving" and events[0]["clients"] == ["crm", "erp"]
    assert events[-1]["event"] == "stopped"
    posts = [e for e in events if e["event"] == "request" and e["method"] == "POST"]
    assert [(e["client"], e["status"]) for e in posts] == [(None, 401), ("crm", 200), ("crm", 200)]
    assert posts[2]["ids"] == 60 and posts[2]["counts"] == {"archived": 60}
    assert posts[2]["duration_ms"] > 1000
    assert KEY not in err and serve.hash_key(KEY) not in err


# --- fuzz ---------------------------------------------------------------------------------

LONGEST_NUMBER = 20  # digits the server parses; a longer number is refused before it is read


def finite(value: Any) -> bool:
    """Every number is one the parser reads: finite, and an int of at most 20 digits."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return len(str(abs(value))) <= LONGEST_NUMBER
    if isinstance(value, list):
        return all(finite(v) for v in value)
    if isinstance(value, dict):
        return all(finite(v) for v in value.values())
    return True


def expected_status(obj: Any, limit: int) -> int:
    """The oracle, written apart from the server's parser."""
    if not finite(obj) or not isinstance(obj, dict):
        return 400
    if set(obj) - {"insert_leads", "update_leads", "delete_leads", "lead_ids"}:
        return 400
    if any(
        k in obj and not isinstance(obj[k], bool)
        for k in ("insert_leads", "update_leads", "delete_leads")
    ):
        return 400
    ids = obj.get("lead_ids")
    if not isinstance(ids, list) or not ids:
        return 400
    if len(ids) > limit:
        return 413
    if not all(type(i) is int and 0 < i <= MAX_LEAD_ID for i in ids):
        return 400
    return 200


def fuzz(vdb: VDb, examples: int) -> None:
    vdb.seed(40)
    limit = 8
    tried: Counter[int] = Counter()
    with app_client(app_settings(vdb, id_limit=limit)) as c:

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(bodies)
        def one(case: tuple[str, Any]) -> None:
            kind, value = case
            raw = value if kind == "raw" else json.dumps(value).encode()
            unchanged = Unchanged(vdb)
            r = c.post(PATH, content=raw, headers=AUTH)
            tried[r.status_code] += 1
            assert r.status_code in (200, 400, 413), r.text
            if kind == "json":
                assert r.status_code == expected_status(value, limit), (raw, r.text)
            else:
                try:
                    json.loads(raw)
                except ValueError:  # what the standard parser refuses, the server refuses
                    assert r.status_code == 400, (raw, r.text)
            if r.status_code != 200:
                assert r.json()["error"] in ("bad_request", "too_many_ids")
                unchanged.check()
                return
            answer = r.json()
            assert [x["lead_id"] for x in answer["leads"]] == sorted(
                set(json.loads(raw)["lead_ids"])
            )
            live = set(vdb.ids(LIVE))
            assert not {x["lead_id"] for x in answer["leads"] if x["outcome"] == "archived"} & live

        one()
    total = sum(tried.values())
    print(f"\nfuzz {vdb.engine}: {total} requests, by status {dict(sorted(tried.items()))}")
    assert total >= examples and tried[200] > 0 and tried[400] > 0 and tried[413] > 0


def test_fuzz_request_body(vdb: VDb) -> None:
    fuzz(vdb, FUZZ_EXAMPLES)


@pytest.mark.slow
def test_fuzz_request_body_long(vdb: VDb) -> None:
    fuzz(vdb, 10 * FUZZ_EXAMPLES)


def test_job_leads_come_a_page_at_a_time(
    vdb: VDb, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GET of an id-list job answers at most `limit` (default and most 1,000) leads from
    `after`, with the `next` page's cursor: a job of a million ids is never built whole."""
    vdb.seed(30)
    ids = [*range(1, 21), *range(100, 2600)]  # 2,520 ids; those past 30 are missing
    result = vdb.cli(["archive", "--ignore-window", "--chunk-size", "500", *map(str, ids)])
    assert result.exit_code == 0, result.stderr
    url = f"{serve.JOBS_PATH}/1"
    first = client.get(url, headers=AUTH).json()
    assert len(first["leads"]) == 1000 and first["next"] == ids[999]
    seen, after, pages = [], 0, 0
    while after is not None:
        page = client.get(url, params={"after": after, "limit": 700}, headers=AUTH).json()
        assert len(page["leads"]) <= 700
        seen += page["leads"]
        after, pages = page["next"], pages + 1
    assert pages == 4 and [lead["lead_id"] for lead in seen] == ids
    outcomes = Counter(lead["outcome"] for lead in seen)
    assert outcomes == {"archived": 20, "missing": 2500}
    last = client.get(url, params={"after": ids[-1]}, headers=AUTH).json()
    assert last["leads"] == [] and last["next"] is None
    for bad in ({"limit": "0"}, {"limit": "1001"}, {"after": "-1"}, {"after": "x"}):
        r = client.get(url, params=bad, headers=AUTH)
        assert r.status_code == 400 and r.json()["error"] == "bad_request", bad
