"""Runs that keep their settings and say where the time went: a resumed job keeps the throttle
and tuning it was started with (a flag given again wins, and the plan says which is which);
SIGHUP stops a job as SIGTERM does; a sentinel file stops a job at the next chunk and keeps a
new one from starting; --statistics accounts for the run's wall time per statement kind;
--optimize gives a MyISAM table its free space back (ANALYZE on InnoDB) after a large run.
Every test runs through the real CLI, on MyISAM and on InnoDB."""

from __future__ import annotations

import fcntl
import itertools
import os
import pty
import select
import signal
import subprocess
import termios
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from tests.support import proc as hp
from tests.support.cli import invoke, summary_of
from tests.support.db import ARCHIVE, LIVE, VDb

LIST_999 = ["archive", "--list-id", "999", "--chunk-size", "50", "--ignore-window", "--json"]


def events(stderr: str, name: str) -> list[dict[str, Any]]:
    return [e for e in hp.parse_events(stderr.splitlines()) if e.get("event") == name]


def chunk_gaps(stderr: str) -> list[float]:
    """Seconds between one chunk event and the next, from their timestamps."""
    times = [datetime.fromisoformat(e["timestamp"]) for e in events(stderr, "chunk")]
    return [(b - a).total_seconds() for a, b in itertools.pairwise(times)]


def stopped_message(lines: list[str]) -> str:
    """What a planned stop says, with JSON logs: the message of its `stopped` event."""
    said = [e["message"] for e in hp.parse_events(lines) if e.get("event") == "stopped"]
    assert len(said) == 1, lines[-5:]
    return str(said[0])


def job_row(vdb: VDb, job_id: int) -> tuple[str, str | None, int]:
    state, reason, runs = vdb.db.rows(
        "SELECT state, stop_reason, runs FROM archiver_jobs WHERE job_id = :j", {"j": job_id}
    )[0]
    return str(state), reason, int(runs)


# --- a resumed job keeps its tuning ---------------------------------------------------------


def test_a_resumed_job_keeps_its_sleep_and_a_flag_overrides_it(vdb: VDb) -> None:
    """Started with --sleep 0.3 and cut by --max-runtime: the same command run again without
    --sleep, and `jobs resume`, sleep 0.3 s between chunks as the first run did; `jobs resume
    --sleep 0` runs at full speed. The plan (dry run) and the summary say where each value of
    the tuning came from."""
    vdb.seed(4000)  # 800 leads in list 999: sixteen chunks
    first = vdb.cli([*LIST_999, "--sleep", "0.3", "--max-runtime", "0.5"])
    assert first.exit_code == 3, first.stderr
    s1 = summary_of(first)
    job_id = s1["job_id"]
    assert s1["tuning"]["sleep"] == {"value": 0.3, "from": "flag"}
    assert s1["tuning"]["max-wait"] == {"value": 600, "from": "settings"}
    assert [e["tuning"]["sleep"] for e in events(first.stderr, "job_started")] == [
        {"value": 0.3, "from": "flag"}
    ]

    # A dry run of the same command shows the tuning the resume would run with.
    plan = vdb.cli([*LIST_999[:-1], "--dry-run"])
    assert plan.exit_code == 0, plan.stderr
    assert "plan: tuning: from the job: sleep 0.3; from the settings: " in plan.stdout

    # The same command again, without --sleep: the job's own sleep.
    again = vdb.cli([*LIST_999, "--max-runtime", "1.2"])
    assert again.exit_code == 3, again.stderr
    s2 = summary_of(again)
    assert s2["job_id"] == job_id
    assert s2["tuning"]["sleep"] == {"value": 0.3, "from": "job"}
    assert s2["chunks"] >= 2, s2
    assert s2["throttle_slept_s"] >= 0.3 * (s2["chunks"] - 1) * 0.9, s2
    assert min(chunk_gaps(again.stderr)) >= 0.27, chunk_gaps(again.stderr)
    resumed_events = events(again.stderr, "job_resumed")
    assert resumed_events[0]["tuning"]["sleep"] == {"value": 0.3, "from": "job"}

    # `jobs resume`: the job's sleep again, this time with the throttle flags listed.
    assert "--sleep" in vdb.cli(["jobs", "resume", "--help"]).stdout
    third = vdb.cli(["jobs", "resume", str(job_id), "--max-runtime", "0.7", "--json"])
    assert third.exit_code == 3, third.stderr
    s3 = summary_of(third)
    assert s3["tuning"]["sleep"] == {"value": 0.3, "from": "job"}
    assert s3["chunks"] >= 2 and min(chunk_gaps(third.stderr)) >= 0.27, s3

    # A flag given to `jobs resume` wins, for this run.
    last = vdb.cli(["jobs", "resume", str(job_id), "--sleep", "0", "--json"])
    assert last.exit_code == 0, last.stderr
    s4 = summary_of(last)
    assert s4["state"] == "done"
    assert s4["tuning"]["sleep"] == {"value": 0, "from": "flag"}
    assert s4["throttle_slept_s"] == 0
    moved = sum(s.get("counts", {}).get("archived", 0) for s in (s1, s2, s3, s4))
    assert (
        moved
        == vdb.count(ARCHIVE)
        == int(vdb.db.scalar(f"SELECT COUNT(*) FROM {ARCHIVE} WHERE list_id = 999"))
    )
    assert moved > 0
    assert not vdb.db.scalar(f"SELECT COUNT(*) FROM {LIVE} WHERE list_id = 999")


def test_a_resumed_job_keeps_its_delete_batch(vdb: VDb) -> None:
    """--delete-batch is kept too: the resume deletes each chunk of 50 in batches of 20 (three
    DELETE statements a chunk on MyISAM, as --statistics counts them)."""
    vdb.seed(1500)
    first = vdb.cli([*LIST_999, "--delete-batch", "20", "--max-runtime", "0.01", "--sleep", "0.2"])
    s1 = summary_of(first)
    resumed = vdb.cli(["jobs", "resume", str(s1["job_id"]), "--statistics", "--json"])
    assert resumed.exit_code == 0, resumed.stderr
    s2 = summary_of(resumed)
    assert s2["tuning"]["delete-batch"] == {"value": 20, "from": "job"}
    assert s2["tuning"]["sleep"] == {"value": 0.2, "from": "job"}
    deletes = s2["statistics"]["kinds"]["delete"]["count"]
    if vdb.engine == "MyISAM":
        assert deletes >= 3 * s2["chunks"], s2["statistics"]
    else:  # one transaction a chunk: --delete-batch plays no part
        assert deletes >= s2["chunks"], s2["statistics"]


# --- SIGHUP -------------------------------------------------------------------------------


def test_sighup_stops_the_job_as_sigterm_does(vdb: VDb) -> None:
    """An SSH session that drops sends SIGHUP: the job wakes from its sleep, records its
    chunks and ends `stopped` (exit 3, resumable), not killed with its row left `running`."""
    vdb.seed(2500)
    with hp.Proc(hp.argv(vdb.dsn, [*LIST_999, "--sleep", "5"])) as proc:
        proc.wait_chunk(1)
        sent = time.monotonic()
        proc.signal(signal.SIGHUP)
        done = proc.finish(60)
    assert done.rc == 3, done.describe()
    assert time.monotonic() - sent < 3, "the sleep was not woken"
    assert done.summary["state"] == "stopped"
    assert done.summary["stop_reason"] == "stopped by SIGHUP"
    assert [c["chunk"] for c in done.chunks()] == [1]
    assert job_row(vdb, done.summary["job_id"])[:2] == ("stopped", "stopped by SIGHUP")
    assert done.summary["resume"] == "vicidial-archiver jobs resume 1"
    resumed = vdb.cli(["jobs", "resume", "1", "--json"])
    assert resumed.exit_code == 0, resumed.stderr
    assert not vdb.db.scalar(f"SELECT COUNT(*) FROM {LIVE} WHERE list_id = 999")


def test_a_terminal_that_hangs_up_stops_the_job_and_it_still_ends(vdb: VDb) -> None:
    """The job runs on a terminal (its controlling one, with the progress bar) and the terminal
    goes away, as when an SSH session drops: SIGHUP, then every write to it fails. The job
    still ends `stopped` with exit 3, its row saying so."""
    vdb.seed(2500)
    master, slave = pty.openpty()

    def own_terminal() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    args = [hp.BIN, "--dsn", vdb.dsn, *LIST_999[:-1], "--sleep", "1"]
    proc = subprocess.Popen(
        args,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=hp.child_env({"TERM": "xterm"}),
        preexec_fn=own_terminal,
        close_fds=True,
    )
    os.close(slave)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until the job has a row and a chunk done
            if select.select([master], [], [], 0.2)[0]:
                os.read(master, 65536)
            if vdb.db.rows("SHOW TABLES LIKE 'archiver\\_jobs'") and vdb.db.scalar(
                "SELECT MAX(chunks) FROM archiver_jobs"
            ):
                break
        os.close(master)  # the session drops
        rc = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert rc == 3
    state, reason, _ = job_row(vdb, 1)
    assert (state, reason) == ("stopped", "stopped by SIGHUP")


def test_under_nohup_sighup_is_ignored(vdb: VDb) -> None:
    """`nohup vicidial-archiver …`: the SIGHUP it was told to ignore does not stop the job."""
    vdb.seed(1000)
    with hp.Proc(["nohup", *hp.argv(vdb.dsn, [*LIST_999, "--sleep", "0.5"])]) as proc:
        proc.wait_chunk(1)
        proc.signal(signal.SIGHUP)
        done = proc.finish(60)
    assert done.rc == 0, done.describe()
    assert done.summary["state"] == "done"
    assert [c["chunk"] for c in done.chunks()] == [1, 2, 3, 4]


# --- --sentinel ---------------------------------------------------------------------------


def test_a_sentinel_file_stops_the_job_at_the_next_chunk(vdb: VDb, tmp_path: Path) -> None:
    """The file appears while the job sleeps between chunks: no other chunk starts, the job
    ends `stopped` naming the file, and it resumes once the file is gone."""
    vdb.seed(2500)
    sentinel = tmp_path / "stop-archiver"
    args = [*LIST_999, "--sleep", "5", "--sentinel", str(sentinel)]
    with hp.Proc(hp.argv(vdb.dsn, args)) as proc:
        proc.wait_chunk(1)
        sentinel.touch()
        touched = time.monotonic()
        done = proc.finish(60)
    assert done.rc == 3, done.describe()
    assert time.monotonic() - touched < 3, "the sleep did not look at the sentinel"
    reason = f"the sentinel file {sentinel} exists (--sentinel)"
    assert done.summary["state"] == "stopped"
    assert done.summary["stop_reason"] == reason
    assert [c["chunk"] for c in done.chunks()] == [1]
    assert job_row(vdb, 1)[:2] == ("stopped", reason)
    assert done.summary["resume"] == "vicidial-archiver jobs resume 1"
    sentinel.unlink()
    resumed = vdb.cli(["jobs", "resume", "1", "--sentinel", str(sentinel), "--json"])
    assert resumed.exit_code == 0, resumed.stderr


def test_a_sentinel_file_present_at_start_refuses_the_run(vdb: VDb, tmp_path: Path) -> None:
    """No job row, no checkpoint table, no lead moved; `jobs resume` of a stopped job is
    refused the same way, and the job is left as it was. A dry run plans, and warns."""
    vdb.seed(1000)
    sentinel = tmp_path / "stop-archiver"
    sentinel.touch()
    before = vdb.checksum()
    refused = vdb.cli([*LIST_999, "--sentinel", str(sentinel)])
    assert refused.exit_code == 3, refused.stderr
    assert stopped_message(refused.stderr.splitlines()) == (
        f"the sentinel file {sentinel} exists (--sentinel): no job starts while it "
        "does; remove it and run again"
    )
    assert vdb.checksum() == before
    assert not vdb.db.rows("SHOW TABLES LIKE 'archiver\\_jobs'")
    dearchive = vdb.cli(["dearchive", "--list-id", "999", "--sentinel", str(sentinel)])
    assert dearchive.exit_code == 3 and "sentinel" in dearchive.stderr
    # One lead back, as VICIdial's lead_dearchive would: with --sentinel it is a job like
    # any other, and the sentinel holds it too.
    one = vdb.cli(["dearchive", "4", "--sentinel", str(sentinel)])
    assert one.exit_code == 3 and "sentinel" in one.stderr, one.output

    dry = vdb.cli([*LIST_999[:-1], "--sentinel", str(sentinel), "--dry-run"])
    assert dry.exit_code == 0, dry.stderr
    assert "DRY RUN — nothing written; what a run would do: archive: done" in dry.stdout
    assert f"warning: the sentinel file {sentinel} exists (--sentinel): a real run" in dry.stdout

    cut = vdb.cli([*LIST_999, "--max-runtime", "0.01"])
    assert summary_of(cut)["state"] == "stopped"
    row = job_row(vdb, 1)
    moved = vdb.checksum()
    again = vdb.cli(["jobs", "resume", "1", "--sentinel", str(sentinel)])
    assert again.exit_code == 3 and str(sentinel) in again.stderr, again.stderr
    assert job_row(vdb, 1) == row
    assert vdb.checksum() == moved


# --- --statistics ---------------------------------------------------------------------------


def test_statistics_account_for_the_wall_time(vdb: VDb) -> None:
    """Each statement kind with its count, total time and share: the chunks' statements, the
    checkpoint writes and the sleeps between chunks add up, with `other`, to the run's wall
    time, and nothing is counted twice. Printed on stderr for a person, typed in --json."""
    vdb.seed(1250)  # 250 leads in list 999: five chunks
    result = vdb.cli([*LIST_999, "--sleep", "0.1", "--statistics"])
    assert result.exit_code == 0, result.stderr
    summary = summary_of(result)
    stats = summary["statistics"]
    kinds = stats["kinds"]
    chunks = summary["chunks"]
    assert chunks == 5
    assert set(kinds) <= {
        "scan", "copy", "update", "delete", "pending", "checkpoint", "wait", "other"
    }  # fmt: skip
    for kind in ("scan", "copy", "delete", "checkpoint"):
        assert kinds[kind]["count"] >= chunks, (kind, kinds)
    if vdb.engine == "MyISAM":  # the archiver_pending marks before each chunk's writes
        assert kinds["pending"]["count"] == chunks
    assert kinds["wait"]["count"] == chunks - 1
    assert kinds["wait"]["ms"] >= 0.1 * 1000 * (chunks - 1) * 0.95
    total = stats["total_ms"]
    assert abs(total - summary["seconds"] * 1000) <= 2, (total, summary["seconds"])
    assert abs(sum(k["ms"] for k in kinds.values()) - total) <= 1
    assert abs(sum(k["share"] for k in kinds.values()) - 1) <= 0.002
    assert all(isinstance(k["count"], int) and k["ms"] >= 0 for k in kinds.values())
    # Without --statistics, no statistics.
    vdb.seed(100, first_id=2000)
    plain = vdb.cli(["archive", "--list-id", "999", "--ignore-window", "--json"])
    assert "statistics" not in summary_of(plain)


def test_statistics_are_printed_for_a_person(vdb: VDb) -> None:
    """With console logs, a table on stderr after the summary: one line per kind met, then
    the total (100%)."""
    vdb.seed(500)
    args = ["--dsn", vdb.dsn, "--log-format", "console", *LIST_999[:-1], "--statistics"]
    result = invoke(args)
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("statistics "))
    end = next(i for i, line in enumerate(lines) if line.split()[:1] == ["total"])
    assert lines[head].split() == ["statistics", "count", "total", "ms", "share"]
    names = [line[:22].strip() for line in lines[head + 1 : end]]
    assert names[:2] == ["scan", "copy"] and "delete" in names and names[-1] == "other"
    assert lines[end].endswith("100.0%"), "\n".join(lines[head : end + 1])


# --- --optimize -----------------------------------------------------------------------------


def data_free(vdb: VDb, table: str) -> int:
    return int(
        vdb.db.scalar(
            "SELECT DATA_FREE FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
            " AND TABLE_NAME = :t",
            {"t": table},
        )
    )


def test_optimize_after_a_large_run_gives_the_space_back(vdb: VDb) -> None:
    """Above --optimize-min, OPTIMIZE TABLE vicidial_list (MyISAM: its deleted rows' space
    is free again) or ANALYZE TABLE (InnoDB), logged with its duration and the server's
    answer; below it, nothing but a note."""
    vdb.seed(2000)  # 400 leads in list 999
    small = vdb.cli([*LIST_999, "--max-runtime", "0.01", "--optimize", "--optimize-min", "1000"])
    assert small.exit_code == 3, small.stderr  # stopped: no OPTIMIZE after a cut run
    assert not events(small.stderr, "optimize")
    if vdb.engine == "MyISAM":
        assert data_free(vdb, LIVE) > 0  # the deleted rows' space, not given back
    result = vdb.cli([*LIST_999, "--optimize", "--optimize-min", "10", "--statistics"])
    assert result.exit_code == 0, result.stderr
    summary = summary_of(result)
    assert summary["counts"]["archived"] == 350
    done = events(result.stderr, "optimize")
    assert len(done) == 1, result.stderr
    op = "OPTIMIZE" if vdb.engine == "MyISAM" else "ANALYZE"
    assert done[0]["op"] == op and done[0]["table"] == LIVE
    assert done[0]["seconds"] >= 0 and done[0]["moved"] == summary["counts"]["archived"]
    assert any(m.lower().startswith("status:") for m in done[0]["messages"]), done[0]
    assert summary["statistics"]["kinds"]["optimize"]["count"] == 1
    assert not events(result.stderr, "optimize_failed")
    if vdb.engine == "MyISAM":
        assert data_free(vdb, LIVE) == 0
    vdb.seed(100, first_id=3001)  # 20 more: below the threshold, a note only
    below = vdb.cli([*LIST_999, "--optimize", "--optimize-min", "1000"])
    assert below.exit_code == 0, below.stderr
    assert not events(below.stderr, "optimize")
    assert [(e["moved"], e["threshold"]) for e in events(below.stderr, "optimize_skipped")] == [
        (20, 1000)
    ]


def test_optimize_is_skipped_outside_the_window(vdb: VDb, tmp_path: Path) -> None:
    """A one-off run with --ignore-window outside the window moves its leads but leaves the
    table unlocked: OPTIMIZE is skipped with a warning."""
    vdb.seed(500)
    now = datetime.now(ZoneInfo("UTC"))
    start, end = now + timedelta(hours=2), now + timedelta(hours=3)
    conf = tmp_path / "window.toml"
    conf.write_text(f'[window]\nstart = "{start:%H:%M}"\nend = "{end:%H:%M}"\ntimezone = "UTC"\n')
    args = ["--config", str(conf), *LIST_999, "--optimize", "--optimize-min", "0"]
    result = vdb.cli(args)
    assert result.exit_code == 0, result.stderr
    summary = summary_of(result)
    assert (summary["state"], summary["moved"]) == ("done", 100)
    assert vdb.count(ARCHIVE) == 100
    assert not events(result.stderr, "optimize")
    skipped = events(result.stderr, "optimize_skipped")
    assert [(e["level"], e["table"], e["reason"]) for e in skipped] == [
        ("warning", LIVE, "outside the off-hours window")
    ]
    # A person reads the warning under the summary.
    vdb.seed(500, first_id=1001)
    plain = ["--config", str(conf), *LIST_999[:-1], "--optimize", "--optimize-min", "0"]
    shown = invoke(["--dsn", vdb.dsn, "--log-format", "console", *plain])
    assert shown.exit_code == 0, shown.stderr
    op = "OPTIMIZE" if vdb.engine == "MyISAM" else "ANALYZE"
    assert f"warning: {op} TABLE vicidial_list skipped: outside the off-hours window" in (
        shown.stdout
    )


def test_optimize_min_without_optimize_is_refused(vdb: VDb) -> None:
    result = vdb.cli([*LIST_999, "--optimize-min", "10"])
    assert result.exit_code == 2
    assert "give --optimize too" in result.stderr
    assert not vdb.db.rows("SHOW TABLES LIKE 'archiver\\_jobs'")
