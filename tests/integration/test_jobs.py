"""Jobs: stopped (max-runtime, SIGTERM, closing window) and resumed to the state an
uninterrupted run reaches; identity checks on resume; the `jobs` commands; criteria walks over
200,000 leads with flat memory. Every test runs on MyISAM and on InnoDB."""

from __future__ import annotations

import json
import re
import signal
import socket
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from archiver import checkpoint
from tests.support import oracle
from tests.support import proc as hp
from tests.support.cli import summary_of
from tests.support.db import ARCHIVE, LIVE, VDb, temp_db

LISTS = [
    "--list-id",
    "101",
    "--list-id",
    "102",
    "--list-id",
    "201",
    "--list-id",
    "202",
    "--list-id",
    "999",
]  # every synthetic lead
N = 5000
HOPPER = (777, 2345)  # queued to dial: skipped_live
PRECOPIED = range(10, 20)  # already in the archive from an earlier, foreign run
EXPECTED = {"archived": N - len(HOPPER) - 1, "skipped_live": len(HOPPER), "skipped_newest": 1}


def prepare(t: VDb, n: int = N) -> dict[int, tuple[Any, ...]]:
    """n leads, two of them in the hopper, ten already copied to the archive (five of those
    copies stale). Returns the live rows as they were."""
    t.seed(n)
    values = ", ".join(f"({lead}, 'SALESA', 'READY', 101)" for lead in HOPPER)
    t.db.write(
        f"INSERT INTO vicidial_hopper (lead_id, campaign_id, status, list_id) VALUES {values}"
    )
    t.db.write(f"INSERT INTO {ARCHIVE} SELECT * FROM {LIVE} WHERE lead_id BETWEEN 10 AND 19")
    t.db.write(
        f"UPDATE {ARCHIVE} SET comments = UPPER(comments), modify_date = modify_date"
        " WHERE lead_id BETWEEN 10 AND 14"
    )
    return t.row_bytes(LIVE)


REFERENCE = ["archive", "--ignore-window", *LISTS, "--chunk-size", "100", "--json"]
_references: dict[str, tuple[dict[str, Any], dict[int, Any], dict[int, Any]]] = {}


def uninterrupted(engine: str) -> tuple[dict[str, Any], dict[int, Any], dict[int, Any]]:
    """The reference: the same job on an identical database, run once to the end (once per
    engine for this module)."""
    if engine not in _references:
        with temp_db(engine) as ref:
            prepare(ref)
            result = ref.cli(REFERENCE)
            assert result.exit_code == 0, result.stderr
            _references[engine] = (summary_of(result), ref.row_bytes(LIVE), ref.row_bytes(ARCHIVE))
    return _references[engine]


def assert_same_end(
    vdb: VDb,
    ref: tuple[dict[str, Any], dict[int, Any], dict[int, Any]],
    run_counts: list[dict[str, int]],
    final: dict[str, Any],
) -> None:
    ref_summary, ref_live, ref_archive = ref
    assert ref_summary["counts"] == EXPECTED
    live, archive = vdb.row_bytes(LIVE), vdb.row_bytes(ARCHIVE)
    assert sorted(archive) == sorted(ref_archive)
    assert sorted(live) == sorted(ref_live) == sorted([*HOPPER, N])
    assert archive == ref_archive  # byte-identical rows
    assert live == ref_live
    summed: Counter[str] = Counter()
    for counts in run_counts:
        summed.update(counts)
    assert dict(summed) == ref_summary["counts"]
    assert final["job_counts"] == ref_summary["job_counts"] == EXPECTED
    assert final["state"] == "done"


def assert_clean_stop(vdb: VDb, original: dict[int, Any]) -> None:
    """A stop between chunks leaves no lead half-moved: each in one table, intact."""
    where = oracle.assert_each_once(vdb.db, vdb.columns(), original)
    assert where.archive, "the stopped run archived nothing"


# --- stop and resume ---------------------------------------------------------------------


def test_max_runtime_stops_and_resumes_to_the_uninterrupted_state(vdb: VDb) -> None:
    base = ["archive", "--ignore-window", *LISTS, "--chunk-size", "100", "--json"]
    ref = uninterrupted(vdb.engine)
    original = prepare(vdb)
    run_counts: list[dict[str, int]] = []
    job_id = None
    for attempt in range(60):
        if attempt % 2 == 0:  # the same command again …
            result = vdb.cli([*base, "--max-runtime", "0.2", "--sleep", "0.05"])
        else:  # … or `jobs resume ID`
            result = vdb.cli(["jobs", "resume", str(job_id), "--max-runtime", "0.2", "--json"])
        summary = summary_of(result)
        run_counts.append(summary["counts"])
        job_id = job_id or summary["job_id"]
        assert summary["job_id"] == job_id
        if result.exit_code == 0:
            break
        assert result.exit_code == 3, result.stderr
        assert summary["state"] == "stopped"
        assert summary["stop_reason"] == "--max-runtime of 0.2s reached"
        assert summary["chunks"] >= 1
        # A planned stop is no error; with JSON logs the `summary` event ends the log.
        assert "Error:" not in result.stderr
        assert summary["resume"] == f"vicidial-archiver jobs resume {job_id}"
        ends = [e for e in hp.parse_events(result.stderr.splitlines()) if e["event"] == "summary"]
        assert [(e["state"], e["job_id"], e["resume"]) for e in ends] == [
            ("stopped", job_id, summary["resume"])
        ]
        assert_clean_stop(vdb, original)
    else:
        pytest.fail("the job did not finish in 60 runs")
    assert len(run_counts) >= 4, "the job was not stopped by --max-runtime"
    assert_same_end(vdb, ref, run_counts, summary)
    show = json.loads(vdb.cli(["jobs", "show", str(job_id), "--json"]).stdout)
    assert show["runs"] == len(run_counts)
    assert show["chunks"] == 50


def wait_blocked(vdb: VDb, timeout: float = 10.0) -> None:
    """Until a session of this database waits for a lock (a row lock or a table lock)."""
    hp.wait_blocked(vdb.db, vdb.name, timeout)


def block_chunk(vdb: VDb, lead: int) -> Any:
    """Another session that makes the job wait inside a chunk: a row lock on `lead` (InnoDB,
    the chunk's FOR UPDATE waits) or a READ lock on the archive (MyISAM, its INSERT waits)."""
    blocker = vdb.connect()
    if vdb.engine == "InnoDB":
        blocker.run("START TRANSACTION")
        blocker.rows(f"SELECT lead_id FROM {LIVE} WHERE lead_id = :l FOR UPDATE", {"l": lead})
    else:
        blocker.run(f"LOCK TABLES {ARCHIVE} READ")
    return blocker


def release(blocker: Any, engine: str) -> None:
    blocker.run("ROLLBACK" if engine == "InnoDB" else "UNLOCK TABLES")
    blocker.conn.close()


def test_sigterm_finishes_the_chunk_then_resumes_to_the_uninterrupted_state(vdb: VDb) -> None:
    base = ["archive", "--ignore-window", *LISTS, "--chunk-size", "100", "--json"]
    ref = uninterrupted(vdb.engine)
    original = prepare(vdb)
    proc = hp.Proc(hp.argv(vdb.dsn, [*base, "--sleep", "0.5"]))
    first = proc.wait_chunk(1)
    assert (first["first_lead_id"], first["last_lead_id"]) == (1, 100)
    # Chunk 2 (leads 101-200) starts within 0.5 s; make it wait half-way, then SIGTERM it.
    blocker = block_chunk(vdb, 150)
    wait_blocked(vdb)
    proc.signal(signal.SIGTERM)
    time.sleep(0.3)
    assert proc.p.poll() is None, "SIGTERM ended the run without finishing the chunk"
    release(blocker, vdb.engine)
    done = proc.finish(60)
    assert done.rc == 3, done.describe()
    assert [c["chunk"] for c in done.chunks()] == [1, 2]
    summary = done.summary
    assert summary["state"] == "stopped"
    assert summary["stop_reason"] == "stopped by SIGTERM"
    assert summary["chunks"] == 2
    assert done.error == "" and done.lines[-1].startswith("{"), done.describe()
    # Chunk 2 was finished and recorded, not abandoned.
    assert_clean_stop(vdb, original)
    assert vdb.ids(ARCHIVE) == list(range(1, 201))
    show = json.loads(vdb.cli(["jobs", "show", str(summary["job_id"]), "--json"]).stdout)
    assert (show["state"], show["chunks"], show["cursor"]) == ("stopped", 2, 200)
    assert show["stop_reason"] == "stopped by SIGTERM"
    resumed = vdb.cli(["jobs", "resume", str(summary["job_id"]), "--json"])
    assert resumed.exit_code == 0, resumed.stderr
    assert_same_end(
        vdb, ref, [summary["counts"], summary_of(resumed)["counts"]], summary_of(resumed)
    )


def not_started(stderr: str) -> bool:
    """The refusal outside the window is, with JSON logs, one `stopped` event and no `Error:`."""
    events = hp.parse_events(stderr.splitlines())
    said = [e["message"] for e in events if e["event"] == "stopped"]
    return (
        "Error:" not in stderr
        and len(said) == 1
        and said[0].startswith("not started: outside the off-hours window")
    )


def window_config(path: Path, tz: str, opens: timedelta, closes: timedelta) -> str:
    now = datetime.now(ZoneInfo(tz))
    start = (now + opens).strftime("%H:%M:%S")
    end = (now + closes).strftime("%H:%M:%S")
    path.write_text(f'[window]\nstart = "{start}"\nend = "{end}"\ntimezone = "{tz}"\n')
    return str(path)


def test_closing_window_stops_and_next_window_resumes(vdb: VDb, tmp_path: Path) -> None:
    base = ["archive", *LISTS, "--chunk-size", "100", "--json"]
    ref = uninterrupted(vdb.engine)
    original = prepare(vdb)
    tz = "America/New_York"
    # Open now, closing in two seconds; the job (50 chunks, 0.1 s apart) needs over five.
    conf = window_config(tmp_path / "closing.toml", tz, timedelta(minutes=-5), timedelta(seconds=2))
    started = time.monotonic()
    first = vdb.cli(["--config", conf, *base, "--sleep", "0.1"])
    assert first.exit_code == 3, first.stderr
    s1 = summary_of(first)
    assert s1["state"] == "stopped"
    assert re.fullmatch(
        r"the off-hours window \(\S+–\S+ America/New_York, every day\) closed", s1["stop_reason"]
    ), s1["stop_reason"]
    assert 1 <= s1["chunks"] < 50
    assert time.monotonic() - started < 5
    assert_clean_stop(vdb, original)
    # Outside the window a run refuses to start and writes nothing.
    before = vdb.checksum()
    refused = vdb.cli(["--config", conf, *base, "--sleep", "0.1"])
    assert refused.exit_code == 3
    assert not_started(refused.stderr)
    assert vdb.checksum() == before
    show = json.loads(vdb.cli(["jobs", "show", str(s1["job_id"]), "--json"]).stdout)
    assert (show["state"], show["chunks"], show["runs"]) == ("stopped", s1["chunks"], 1)
    # The next night's window: the same command resumes the same job.
    conf2 = window_config(tmp_path / "open.toml", tz, timedelta(minutes=-5), timedelta(hours=1))
    second = vdb.cli(["--config", conf2, *base])
    assert second.exit_code == 0, second.stderr
    s2 = summary_of(second)
    assert s2["job_id"] == s1["job_id"]
    assert_same_end(vdb, ref, [s1["counts"], s2["counts"]], s2)


# --- identity, lock holder gone, the jobs commands ----------------------------------------


def test_resume_with_other_criteria_or_flags_is_refused(vdb: VDb) -> None:
    vdb.seed(3000)
    common = ["--job-name", "nightly", "--ignore-window", "--json"]
    base = ["archive", "--list-id", "101", "--chunk-size", "100", *common]
    first = vdb.cli([*base, "--max-runtime", "0.1", "--sleep", "0.05"])
    assert first.exit_code == 3, first.stderr
    job_id = summary_of(first)["job_id"]
    before = vdb.checksum()
    shown = vdb.cli(["jobs", "show", "nightly", "--json"]).stdout

    cases = [
        (
            ["archive", "--list-id", "102", "--chunk-size", "100", *common],
            ["selection:", "'list_ids': [101]", "'list_ids': [102]"],
        ),
        (
            ["archive", "--list-id", "101", "--status", "SALE", "--chunk-size", "100", *common],
            ["selection:", "'statuses': ['SALE']"],
        ),
        (
            ["archive", "--list-id", "101", "--chunk-size", "200", *common],
            ["chunk_size: 100 → 200"],
        ),
        (
            ["archive", "--list-id", "101", "--chunk-size", "100", "--no-delete", *common],
            ["flags:", "'delete': True", "'delete': False"],
        ),
    ]
    for args, needles in cases:
        result = vdb.cli(args)
        assert result.exit_code == 2, result.stderr
        error = [ln for ln in result.stderr.splitlines() if ln.startswith("Error:")]
        assert len(error) == 1, result.stderr
        assert error[0].startswith(
            f"Error: job {job_id} (nightly) is unfinished with another selection or flags ("
        )
        for needle in needles:
            assert needle in error[0], error[0]
        assert result.stdout == ""
    assert vdb.checksum() == before  # nothing written, the job untouched
    assert vdb.cli(["jobs", "show", "nightly", "--json"]).stdout == shown
    done = vdb.cli(base)
    assert done.exit_code == 0, done.stderr
    assert summary_of(done)["job_id"] == job_id
    assert sum(summary_of(done)["job_counts"].values()) == 600


def test_job_whose_holder_was_killed_is_resumable(vdb: VDb) -> None:
    vdb.seed(2000)
    original = vdb.row_bytes(LIVE)
    args = ["archive", "--ignore-window", "--where", "lead_id > 0", "--chunk-size", "100", "--json"]
    killed = hp.run(vdb.dsn, args, env={"ARCHIVER_FAULT": "after_delete:3"})
    assert killed.rc == -9, killed.describe()
    assert "FAULT after_delete 3" in killed.lines
    listing = vdb.cli(["jobs", "list"])
    assert listing.exit_code == 0
    line = listing.stdout.splitlines()[1]
    # Left `running` by a process that is gone: flagged in the list and in show.
    assert re.match(r"\s*1\s+-\s+archive\s+running!\s+2\s", line), line
    assert "running! = left running by a process that is gone" in listing.stdout
    show = json.loads(vdb.cli(["jobs", "show", "1", "--json"]).stdout)
    assert (show["state"], show["process"]) == ("running", "gone")
    assert (show["host"], show["pid"]) == (socket.gethostname(), killed.pid)
    text = vdb.cli(["jobs", "show", "1"]).stdout
    assert "state:        running, but its process is gone" in text
    hp.wait_lock_free(vdb.db, vdb.settings)
    resumed = vdb.cli(["jobs", "resume", "1", "--json"])
    assert resumed.exit_code == 0, resumed.stderr
    summary = summary_of(resumed)
    assert summary["job_counts"] == {"archived": 1999, "skipped_newest": 1}
    assert "job_resumed" in resumed.stderr
    oracle.assert_each_once(vdb.db, vdb.columns(), original)
    show = json.loads(vdb.cli(["jobs", "show", "1", "--json"]).stdout)
    assert (show["state"], show["runs"]) == ("done", 2)


def test_jobs_list_show_cancel_prune(vdb: VDb) -> None:
    vdb.seed(2000)
    vdb.db.write(
        "INSERT INTO vicidial_hopper (lead_id, campaign_id, status, list_id)"
        " VALUES (150, 'SALESA', 'READY', 101), (251, 'SALESA', 'QUEUE', 102)"
    )
    first = vdb.cli(
        [
            "archive",
            "--ignore-window",
            "--list-id",
            "101",
            "--list-id",
            "102",
            "--chunk-size",
            "100",
            "--job-name",
            "first",
            "--json",
        ]
    )
    assert first.exit_code == 0, first.stderr
    j1 = summary_of(first)["job_id"]
    assert summary_of(first)["counts"] == {"archived": 797, "skipped_live": 2, "skipped_newest": 1}
    second = vdb.cli(
        [
            "archive",
            "--ignore-window",
            "--list-id",
            "201",
            "--chunk-size",
            "50",
            "--job-name",
            "second",
            "--max-runtime",
            "0.1",
            "--sleep",
            "0.05",
            "--json",
        ]
    )
    assert second.exit_code == 3, second.stderr
    j2, s2 = summary_of(second)["job_id"], summary_of(second)
    third_args = [
        "archive",
        "--ignore-window",
        "--list-id",
        "202",
        "--chunk-size",
        "50",
        "--max-runtime",
        "0.1",
        "--sleep",
        "0.05",
        "--json",
    ]
    third = vdb.cli(third_args)
    assert third.exit_code == 3, third.stderr
    j3 = summary_of(third)["job_id"]

    listing = vdb.cli(["jobs", "list"]).stdout.splitlines()
    assert listing[0].split() == ["job", "name", "direction", "state", "chunks", "started"]
    assert [int(ln.split()[0]) for ln in listing[1:]] == [j3, j2, j1]
    assert re.match(
        rf"\s*{j1}\s+first\s+archive\s+done\s+8\s+\S+ \S+ UTC\s+"
        r"archived=797,skipped_live=2,skipped_newest=1$",
        listing[3],
    ), listing[3]
    assert re.match(rf"\s*{j2}\s+second\s+archive\s+stopped\s+{s2['chunks']}\s", listing[2]), (
        listing[2]
    )
    assert re.match(rf"\s*{j3}\s+-\s+archive\s+stopped\s", listing[1]), listing[1]

    by_id = vdb.cli(["jobs", "show", str(j1)])
    by_name = vdb.cli(["jobs", "show", "first"])
    assert by_id.exit_code == by_name.exit_code == 0
    assert by_id.stdout == by_name.stdout
    text = by_id.stdout
    for line in (
        f"job:          {j1}",
        "name:         first",
        "state:        done",
        "chunks:       8 in 1 run",
        "leads:        800",
        "stop reason:  -",
        "  archived                 797",
        "  skipped_live               2",
        "  skipped_newest             1",
        "last chunks:",
    ):
        assert line in text.splitlines(), f"{line!r} not in:\n{text}"
    assert re.search(r"^rate:\s+[\d,]+ leads/s over \d+\.\d s of chunk time$", text, re.M), text
    assert re.search(r"^started:\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$", text, re.M), text
    doc = json.loads(vdb.cli(["jobs", "show", "first", "--json"]).stdout)
    assert doc["selection"] == {"criteria": {"list_ids": [101, 102]}}
    assert isinstance(doc["rate"]["leads_per_second"], float) and doc["leads"] == 800
    assert doc["started"].endswith("+00:00") and doc["process"] is None
    listed = json.loads(vdb.cli(["jobs", "list", "--json"]).stdout)
    assert [j["job"] for j in listed] == [j3, j2, j1] and listed[2]["counts"] == doc["counts"]
    assert re.findall(r"^  #(\d+) leads ", text, re.M) == ["4", "5", "6", "7", "8"]
    shown2 = vdb.cli(["jobs", "show", "second"]).stdout
    assert f"stop reason:  {s2['stop_reason']}" in shown2.splitlines()
    assert s2["stop_reason"] == "--max-runtime of 0.1s reached"

    leads = vdb.cli(["jobs", "show", "first", "--leads", "skipped_live"])
    assert leads.stdout == "150,skipped_live\n251,skipped_live\n"
    assert (
        vdb.cli(["jobs", "show", str(j1), "--leads", "skipped_newest"]).stdout
        == "2000,skipped_newest\n"
    )
    assert (
        vdb.cli(["jobs", "show", "first", "--leads", "all"]).stdout
        == "150,skipped_live\n251,skipped_live\n2000,skipped_newest\n"
    )
    assert vdb.cli(["jobs", "show", "first", "--leads", "archived"]).stdout == ""
    missing = vdb.cli(["jobs", "show", "nosuchjob"])
    assert missing.exit_code == 2
    assert "Error: no job 'nosuchjob'" in missing.stderr

    cancelled = vdb.cli(["jobs", "cancel", str(j3)])
    assert (cancelled.exit_code, cancelled.stdout) == (0, f"cancelled job {j3}\n")
    show3 = json.loads(vdb.cli(["jobs", "show", str(j3), "--json"]).stdout)
    assert (show3["state"], show3["stop_reason"]) == ("cancelled", "cancelled by jobs cancel")
    again = vdb.cli(["jobs", "cancel", "first"])
    assert (
        again.exit_code == 2 and "is done; only an unfinished job can be cancelled" in again.stderr
    )
    refused = vdb.cli(["jobs", "resume", str(j3)])
    assert refused.exit_code == 2 and f"job {j3} is cancelled; nothing to resume" in refused.stderr
    before = vdb.checksum()
    rerun = vdb.cli([a for a in third_args if a not in ("--max-runtime", "0.1")])
    assert rerun.exit_code == 0, rerun.stderr
    j4 = summary_of(rerun)["job_id"]
    assert j4 not in (j1, j2, j3)  # a cancelled job is never resumed: a new job starts
    assert vdb.checksum() != before

    kept = vdb.cli(["jobs", "prune", "--older-than", "1h"])
    assert (kept.exit_code, kept.stdout) == (0, "pruned 0 job(s)\n")
    time.sleep(1.2)
    pruned = vdb.cli(["jobs", "prune", "--older-than", "1s"])
    assert (pruned.exit_code, pruned.stdout) == (0, "pruned 3 job(s)\n")  # done, cancelled, done
    listing = vdb.cli(["jobs", "list"]).stdout.splitlines()
    assert [int(ln.split()[0]) for ln in listing[1:]] == [j2]
    for table in ("archiver_chunks", "archiver_leads", "archiver_pending"):
        left = {int(r[0]) for r in vdb.db.rows(f"SELECT DISTINCT job_id FROM {table}")}
        assert left <= {j2}, (table, left)
    assert (
        vdb.db.scalar("SELECT COUNT(*) FROM archiver_chunks WHERE job_id = :j", {"j": j2})
        == s2["chunks"]
    )
    assert vdb.cli(["jobs", "show", "first"]).exit_code == 2


# --- criteria walks over 200,000 leads -----------------------------------------------------

# Every kind of criterion at once (the SQL below says the same thing independently).
COMBINATION = [
    "--campaign",
    "SALESA",
    "--list-id",
    "101",
    "--list-id",
    "102",
    "--list-id",
    "999",
    "--status",
    "NEW",
    "--status",
    "SALE",
    "--status",
    "NI",
    "--status",
    "DNC",
    "--status",
    "CALLBK",
    "--status",
    "B",
    "--status",
    "NA",
    "--status",
    "A",
    "--status",
    "DROP",
    "--entry-before",
    "2024-01-01",
    "--last-call-before",
    "2024-01-01",
    "--modified-before",
    "400d",
    "--where",
    "called_count BETWEEN 0 AND 11 AND last_name IS NOT NULL",
]
COMBINATION_SQL = (
    "list_id IN (SELECT list_id FROM vicidial_lists WHERE campaign_id = 'SALESA')"
    " AND list_id IN (101, 102, 999)"
    " AND status IN ('NEW', 'SALE', 'NI', 'DNC', 'CALLBK', 'B', 'NA', 'A', 'DROP')"
    " AND entry_date < '2024-01-01' AND last_local_call_time < '2024-01-01'"
    " AND modify_date < UTC_TIMESTAMP() - INTERVAL 400 DAY"
    " AND called_count BETWEEN 0 AND 11 AND last_name IS NOT NULL"
)


def selected(vdb: VDb, cond: str) -> set[int]:
    return {int(r[0]) for r in vdb.db.rows(f"SELECT lead_id FROM {LIVE} WHERE {cond}")}


def _checkpoint_tables(vdb: VDb) -> list[str]:
    return [
        str(r[0])
        for r in vdb.db.rows(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
            " AND TABLE_NAME LIKE 'archiver\\_%'"
        )
    ]


def test_jobs_commands_create_no_tables(vdb: VDb) -> None:
    """The jobs commands read the checkpoint tables and never create them: on a database with
    none, a refusal writes nothing (DDL included) and the others answer that there is no job."""
    vdb.seed(20)
    assert _checkpoint_tables(vdb) == []
    no_job = "Error: no job '99'; `vicidial-archiver jobs list` shows the jobs"
    for args in (
        ["jobs", "show", "99"],
        ["jobs", "show", "99", "--leads", "all"],
        ["jobs", "cancel", "99"],
        ["jobs", "resume", "99", "--ignore-window"],
    ):
        result = vdb.cli(args)
        assert result.exit_code == 2, (args, result.stdout, result.stderr)
        assert result.stderr.strip().splitlines() == [no_job], args
        assert _checkpoint_tables(vdb) == [], args
    listing = vdb.cli(["jobs", "list"])
    assert listing.exit_code == 0, listing.stderr
    assert listing.stdout == "no jobs\n"
    pruned = vdb.cli(["jobs", "prune", "--older-than", "1s"])
    assert pruned.exit_code == 0, pruned.stderr
    assert pruned.stdout == "pruned 0 job(s)\n"
    assert _checkpoint_tables(vdb) == []
    assert vdb.count(LIVE) == 20 and vdb.count(ARCHIVE) == 0
    # A run creates them (after its lock); then the jobs commands read them.
    assert vdb.cli(["archive", "3", "--ignore-window"]).exit_code == 0
    assert len(_checkpoint_tables(vdb)) == 5
    assert vdb.cli(["jobs", "show", "1"]).exit_code == 0


@pytest.mark.slow
def test_criteria_walk_is_exact_and_memory_stays_flat(vdb: VDb) -> None:
    """A criteria walk over 220,000 leads archives exactly what the same SELECT returned
    before the run (about 20,000 leads); a second walk then moves the 200,000 left. Peak RSS
    of the second run is no higher than the first's (+10 MB)."""
    total = 220_000
    vdb.seed(total)
    # Ages against the server clock, far from the 400-day cut-off either way.
    vdb.db.write(
        f"UPDATE {LIVE} SET modify_date = IF(lead_id % 3 = 0,"
        " UTC_TIMESTAMP() - INTERVAL 30 DAY, UTC_TIMESTAMP() - INTERVAL 800 DAY)"
        " - INTERVAL (lead_id % 5000) MINUTE WHERE list_id IN (101, 102)"
    )
    snap = oracle.snapshot(vdb.db)
    want = selected(vdb, COMBINATION_SQL)
    assert 15_000 < len(want) < 25_000 and total not in want
    # NULL last_local_call_time never matches: such leads fit every other criterion.
    null_call = selected(
        vdb,
        COMBINATION_SQL.replace(
            "last_local_call_time < '2024-01-01'", "last_local_call_time IS NULL"
        ),
    )
    assert len(null_call) > 1000
    zero_call = selected(vdb, COMBINATION_SQL + " AND last_local_call_time = 0")
    assert zero_call and zero_call <= want  # VICIdial's zero date is before any date

    small = hp.run_measured(vdb.dsn, ["archive", "--ignore-window", *COMBINATION, "--json"])
    assert small.rc == 0, small.describe()
    assert small.summary["counts"] == {"archived": len(want)}
    assert set(vdb.ids(ARCHIVE)) == want
    assert not null_call & want

    started = time.monotonic()
    large = hp.run_measured(
        vdb.dsn, ["archive", "--ignore-window", "--where", "lead_id > 0", "--json"]
    )
    seconds = time.monotonic() - started
    assert large.rc == 0, large.describe()
    rest = total - len(want)
    assert large.summary["counts"] == {"archived": rest - 1, "skipped_newest": 1}
    assert rest >= 195_000
    assert vdb.ids(LIVE) == [total]
    assert oracle.compare_to_snapshot(vdb.db, snap, vdb.columns()) == {
        "both": 0,
        "neither": 0,
        "differ": 0,
        "extra": 0,
    }
    print(
        f"criteria walk ({vdb.engine}): {len(want)} of {total} matched and archived exactly; "
        f"peak RSS with {len(want)} matching {small.maxrss_kb / 1024:.1f} MB, with {rest} "
        f"matching {large.maxrss_kb / 1024:.1f} MB ({seconds:.0f}s)"
    )
    assert large.maxrss_kb <= small.maxrss_kb + 10 * 1024


def test_jobs_show_leads_reads_a_page_at_a_time(vdb: VDb, monkeypatch: pytest.MonkeyPatch) -> None:
    """`jobs show --leads` reads the leads not moved by keyset pages (memory stays flat on a
    job of a million ids), and prints every one of them once, in order."""
    vdb.seed(10)
    ids = [*range(1, 11), *range(500, 523)]
    assert vdb.cli(["archive", "--ignore-window", *map(str, ids)]).exit_code == 0
    pages: list[int] = []
    leads_of = checkpoint.leads_of

    def paged(*args: Any, **kw: Any) -> list[tuple[int, str]]:
        got = leads_of(*args, **kw)
        pages.append(len(got))
        return got

    monkeypatch.setattr(checkpoint, "LEADS_PAGE", 5)
    monkeypatch.setattr(checkpoint, "leads_of", paged)
    full = vdb.cli(["jobs", "show", "1", "--leads", "missing"])
    assert full.stdout == "".join(f"{i},missing\n" for i in range(500, 523))
    assert pages == [5, 5, 5, 5, 3, 0]
    page = checkpoint.leads_of(vdb.db, 1, "missing", after=504, limit=5)
    assert page == [(i, "missing") for i in range(505, 510)]


def test_a_dry_run_outside_the_window_plans_the_whole_selection(vdb: VDb, tmp_path: Path) -> None:
    """A dry run writes nothing, so the window does not stop it: it used to plan one chunk
    and stop with exit 3."""
    vdb.seed(1000)
    before = vdb.checksum()
    tz = "America/New_York"
    conf = window_config(tmp_path / "shut.toml", tz, timedelta(hours=1), timedelta(hours=2))
    done = vdb.cli(
        ["--config", conf, "archive", *LISTS, "--chunk-size", "100", "--dry-run", "--json"]
    )
    assert done.exit_code == 0, done.stderr
    summary = summary_of(done)
    assert (summary["state"], summary["chunks"]) == ("done", 10)
    assert summary["counts"] == {"archived": 999, "skipped_newest": 1}
    assert vdb.checksum() == before
    # A real run in the same window is still refused before anything is written.
    refused = vdb.cli(["--config", conf, "archive", *LISTS, "--chunk-size", "100"])
    assert refused.exit_code == 3 and not_started(refused.stderr)
    assert vdb.checksum() == before


def finished_jobs(vdb: VDb, n: int) -> list[int]:
    """n done jobs, one lead archived by each."""
    vdb.seed(n + 1)
    ids = []
    for lead in range(1, n + 1):
        done = vdb.cli(["archive", str(lead), "--ignore-window", "--json"])
        assert done.exit_code == 0, done.stderr
        ids.append(summary_of(done)["job_id"])
    return ids


def job_ids(vdb: VDb) -> list[int]:
    return [int(r[0]) for r in vdb.db.rows("SELECT job_id FROM archiver_jobs ORDER BY job_id")]


def job_rows(vdb: VDb) -> list[int]:
    tables = ("archiver_jobs", "archiver_chunks", "archiver_leads", "archiver_job_ids")
    return [int(vdb.db.scalar(f"SELECT COUNT(*) FROM {t}")) for t in tables]


def test_prune_dry_run_lists_the_job_records_and_deletes_nothing(vdb: VDb) -> None:
    """`jobs prune --dry-run`: how many job records and which would go; nothing deleted.
    Without a terminal (cron) the prune itself asks nothing, as before."""
    ids = finished_jobs(vdb, 3)
    time.sleep(0.01)
    rows = job_rows(vdb)
    dry = vdb.cli(["jobs", "prune", "--older-than", "0d", "--dry-run"])
    assert dry.exit_code == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert re.fullmatch(
        r"DRY RUN — nothing deleted\. jobs prune would delete 3 job record\(s\) \(done or "
        r"cancelled, ended before \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)",
        lines[0],
    ), lines[0]
    assert lines[1].split() == ["job", "name", "direction", "state", "chunks", "started"]
    assert [int(line.split()[0]) for line in lines[2:]] == ids
    assert all(" archive " in line and " done " in line for line in lines[2:])
    assert job_ids(vdb) == ids
    assert job_rows(vdb) == rows
    none = vdb.cli(["jobs", "prune", "--older-than", "1d", "--dry-run"])
    assert none.stdout.startswith("DRY RUN — nothing deleted. jobs prune would delete 0 job")
    assert len(none.stdout.splitlines()) == 1
    pruned = vdb.cli(["jobs", "prune", "--older-than", "0d"])
    assert (pruned.exit_code, pruned.stdout) == (0, "pruned 3 job(s)\n")
    assert job_ids(vdb) == []


def test_a_jobs_statements_name_the_tool_the_job_and_the_chunk(vdb: VDb) -> None:
    """SHOW PROCESSLIST during a dialer stall shows who holds the lock: each statement of a
    chunk starts with `/* vicidial-archiver job N chunk M */`."""
    prepare(vdb)
    proc = hp.Proc(
        hp.argv(
            vdb.dsn,
            [
                "archive",
                "--ignore-window",
                *LISTS,
                "--chunk-size",
                "100",
                "--sleep",
                "0.5",
                "--json",
            ],
        )
    )
    proc.wait_chunk(1)
    blocker = block_chunk(vdb, 150)
    try:
        waiting = wait_blocked(vdb)
        del waiting
        infos = [
            str(r[0])
            for r in vdb.db.rows(
                "SELECT INFO FROM information_schema.PROCESSLIST WHERE DB = :db"
                " AND INFO LIKE '/* vicidial-archiver job %'",
                {"db": vdb.name},
            )
        ]
    finally:
        release(blocker, vdb.engine)
    proc.signal(signal.SIGTERM)
    proc.finish(60)
    assert infos, "no statement of the job carried the tag"
    assert all(i.startswith("/* vicidial-archiver job 1 chunk 2 */ ") for i in infos), infos
