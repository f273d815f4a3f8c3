"""Live-lead guards, throttles, the metrics textfile and the admin-log row."""

from __future__ import annotations

import json
import threading

from prometheus_client.parser import text_string_to_metric_families

from tests.support.db import ARCHIVE, LIVE, VDb


def test_each_guard_skips_its_lead(vdb: VDb) -> None:
    vdb.seed(20)
    vdb.db.write(
        "INSERT INTO vicidial_hopper (lead_id, campaign_id, status, list_id)"
        " VALUES (2, 'X', 'READY', 101)"
    )
    vdb.db.write("INSERT INTO vicidial_auto_calls (lead_id, status) VALUES (3, 'LIVE')")
    vdb.db.write(
        "INSERT INTO vicidial_live_agents (user, lead_id, status) VALUES ('a1', 4, 'INCALL')"
    )
    vdb.db.write(
        "INSERT INTO vicidial_callbacks (lead_id, status) VALUES (5, 'ACTIVE'), (6, 'LIVE'),"
        " (7, 'INACTIVE')"
    )
    r = vdb.cli(
        ["archive", "--where", "lead_id <= 20", "--json", "--report", f"/tmp/{vdb.name}.csv"]
    )
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["counts"] == {
        "archived": 14,
        "skipped_live": 5,
        "skipped_newest": 1,
    }
    assert vdb.ids(LIVE) == [2, 3, 4, 5, 6, 20]
    with open(f"/tmp/{vdb.name}.csv") as fh:
        assert fh.read().split() == [
            "lead_id,outcome",
            "2,skipped_live",
            "3,skipped_live",
            "4,skipped_live",
            "5,skipped_live",
            "6,skipped_live",
            "20,skipped_newest",
        ]
    r = vdb.cli(
        [
            "archive",
            "--where",
            "lead_id <= 20",
            "--no-safe-auto-increment",
            "--no-guard",
            "hopper",
            "--json",
        ]
    )
    # Criteria walk the live table: the leads archived before are not selected again.
    assert json.loads(r.stdout)["counts"] == {"archived": 2, "skipped_live": 4}
    assert vdb.ids(LIVE) == [3, 4, 5, 6]


def test_missing_guard_table_is_reported_not_fatal(vdb: VDb) -> None:
    vdb.seed(5)
    vdb.db.write("DROP TABLE vicidial_hopper")
    r = vdb.cli(["archive", "1", "2"])
    assert r.exit_code == 0, r.stderr
    assert r.stdout == ""  # with JSON logs stdout has results only; the warning is an event
    events = [json.loads(line) for line in r.stderr.splitlines() if line.startswith("{")]
    assert [e["table"] for e in events if e["event"] == "guard_missing"] == ["vicidial_hopper"]
    assert vdb.ids(ARCHIVE) == [1, 2]


def test_threads_running_wait_then_clean_stop(vdb: VDb) -> None:
    vdb.seed(50)
    busy = vdb.connect()
    sleeper = threading.Thread(target=lambda: busy.rows("SELECT SLEEP(4)"))
    sleeper.start()
    try:
        r = vdb.cli(
            [
                "archive",
                "--where",
                "lead_id <= 40",
                "--chunk-size",
                "10",
                "--max-threads-running",
                "1",
                "--max-wait",
                "0.3",
                "--json",
            ]
        )
    finally:
        sleeper.join()
    assert r.exit_code == 3, r.stderr
    summary = json.loads(r.stdout)
    assert summary["stop_reason"].startswith("throttle gave up: threads_running stayed too high")
    assert "Error:" not in r.stderr  # a planned stop (exit 3) is no error
    assert summary["state"] == "stopped" and summary["chunks"] == 1
    waits = [json.loads(x) for x in r.stderr.splitlines() if '"throttle_wait"' in x]
    assert waits and all(w["reason"] == "threads_running" and w["value"] >= 2 for w in waits)
    # The same command resumes the job, which keeps its throttle: turned off for this run.
    again = ["--max-threads-running", "0"]
    r = vdb.cli(["archive", "--where", "lead_id <= 40", "--chunk-size", "10", "--json", *again])
    assert r.exit_code == 0 and json.loads(r.stdout)["job_counts"] == {"archived": 40}


def test_sleep_settings_applied(vdb: VDb) -> None:
    vdb.seed(40)
    r = vdb.cli(
        [
            "archive",
            "--where",
            "lead_id <= 30",
            "--chunk-size",
            "10",
            "--sleep",
            "0.01",
            "--sleep-coef",
            "0.5",
            "--json",
        ]
    )
    assert r.exit_code == 0, r.stderr
    events = [json.loads(x) for x in r.stderr.splitlines() if x.startswith("{")]
    chunks = [e for e in events if e["event"] == "chunk"]
    sleeps = [e["seconds"] for e in events if e["event"] == "throttle_sleep"]
    assert len(chunks) == 3 and len(sleeps) == 2  # no sleep after the last chunk
    for chunk, slept in zip(chunks, sleeps, strict=False):
        assert abs(slept - (0.01 + 0.5 * chunk["ms"] / 1000)) < 0.002


def test_metrics_file_and_admin_log(vdb: VDb) -> None:
    vdb.seed(30)
    path = f"/tmp/{vdb.name}.prom"
    r = vdb.cli(["archive", "--where", "lead_id <= 20", "--metrics-file", path, "--admin-log"])
    assert r.exit_code == 0, r.stderr
    with open(path) as fh:
        families = {f.name: f for f in text_string_to_metric_families(fh.read())}
    leads = {s.labels["outcome"]: s.value for s in families["vicidial_archiver_leads"].samples}
    assert leads == {"archived": 20.0}
    assert families["vicidial_archiver_last_run_success"].samples[0].value == 1.0
    assert families["vicidial_archiver_last_success_timestamp_seconds"].samples[0].value > 1.7e9
    rows = vdb.db.rows(
        "SELECT event_section, event_type, record_id, event_code, event_notes"
        " FROM vicidial_admin_log"
    )
    assert rows == [
        (
            "LISTS",
            "MODIFY",
            "leads",
            "CAMPAIGN LEAD ARCHIVING",
            "20 vicidial_list leads archived|20 vicidial_list leads deleted|",
        )
    ]
