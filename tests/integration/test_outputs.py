"""What a person (and a log reader) sees at the end of a run: the summary says moved, kept and
examined apart with separators and plurals and the time in the window's zone; a planned stop is
a `stopped` line, not an `Error:`; a closed pipe ends a command quietly; under cron one format
per stream."""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
from pathlib import Path

from tests.support import proc as hp
from tests.support.cli import invoke, summary_of
from tests.support.db import ARCHIVE, LIVE, VDb

ZONE_CONF = '[window]\ntimezone = "America/New_York"\n'
WHEN = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d E[SD]T"  # the window's zone, named


def console(
    vdb: VDb, args: list[str], config: Path | None = None, *more: str
) -> tuple[int, str, str]:
    """An in-process run with console logs, as on a terminal."""
    head = ["--dsn", vdb.dsn, "--log-format", "console", *more]
    if config:
        head += ["--config", str(config)]
    result = invoke([*head, *args])
    return result.exit_code, result.stdout, result.stderr


# --- the summary ------------------------------------------------------------------------


def test_the_summary_says_moved_kept_and_examined_apart(vdb: VDb, tmp_path: Path) -> None:
    vdb.seed(1200)
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"{n}\n" for n in [*range(1, 1201), 99_999]))
    conf = tmp_path / "c.toml"
    conf.write_text(ZONE_CONF)
    args = ["archive", "--ids-file", str(ids), "--ignore-window", "--chunk-size", "500"]
    rc, out, err = console(vdb, args, conf)
    assert rc == 0, err
    lines = out.splitlines()
    assert len(lines) == 1, out
    assert re.fullmatch(
        r"archive: done — 1,199 archived, 1 kept \(1 skipped_newest\), 1 not in the source "
        r"table \(1 missing\), 1,201 leads examined in 3 chunks, [\d,]+\.\d s "
        rf"\([\d,]+ leads/s\); job 1, ended {WHEN}",
        lines[0],
    ), lines[0]
    assert "{" not in out and "'" not in out  # no Python reprs
    assert vdb.count(ARCHIVE) == 1199


def test_one_chunk_reads_singular_and_json_has_typed_counts(vdb: VDb) -> None:
    vdb.seed(10)
    rc, out, err = console(vdb, ["archive", "1", "--ignore-window"])
    assert rc == 0, err
    assert out.startswith("archive: done — 1 archived, 0 kept, 1 lead examined in 1 chunk, "), out
    result = vdb.cli(["archive", "2", "3", "10", "--ignore-window", "--json"])
    summary = summary_of(result)
    assert (summary["moved"], summary["kept"], summary["examined"]) == (2, 1, 3)
    assert (summary["not_in_source"], summary["leads"], summary["resume"]) == (0, 3, None)


def test_a_dry_run_says_what_a_run_would_do_without_reprs(vdb: VDb) -> None:
    vdb.seed(10)
    vdb.cli(["archive", "1", "2", "--ignore-window"])
    args = ["dearchive", "1", "2", "--set-status", "SALE", "--dry-run"]
    rc, out, err = console(vdb, args)
    assert rc == 0, err
    assert "plan: restored leads get: status=SALE" in out.splitlines(), out
    assert "{'status'" not in out
    assert "DRY RUN — nothing written; what a run would do: dearchive: done — 2 dearchived" in out


# --- a planned stop is not an error -------------------------------------------------------


def test_ctrl_c_prints_a_stopped_line_not_an_error(vdb: VDb) -> None:
    vdb.seed(50)
    args = ["archive", "--where", "lead_id <= 40", "--ignore-window", "--chunk-size", "5"]
    argv = [hp.BIN, "--dsn", vdb.dsn, "--log-format", "console", *args, "--sleep", "1"]
    with hp.Proc(argv) as proc:
        proc.wait_for(lambda line: "chunk=1 " in line)
        proc.signal(signal.SIGINT)
        done = proc.finish(60)
    assert done.rc == 3, done.describe()
    assert "Error" not in done.stderr and "Traceback" not in done.stderr
    assert re.fullmatch(
        r"stopped by Ctrl-C \(SIGINT\), after \d chunks? \(\d+ leads? examined\); resume with: "
        r"vicidial-archiver jobs resume 1 \(or run the same command again\)",
        done.lines[-1],
    ), done.describe()
    assert vdb.db.scalar("SELECT state FROM archiver_jobs") == "stopped"


def test_max_runtime_and_the_window_print_stopped_lines(vdb: VDb, tmp_path: Path) -> None:
    vdb.seed(20)
    args = ["archive", "--where", "lead_id <= 15", "--ignore-window", "--chunk-size", "1"]
    rc, out, err = console(vdb, [*args, "--max-runtime", "0.2", "--sleep", "0.1"])
    assert rc == 3, err
    end = err.splitlines()[-1]
    assert end.startswith("stopped: --max-runtime of 0.2s reached, after "), err
    assert end.endswith(
        "; resume with: vicidial-archiver jobs resume 1 (or run the same command again)"
    )
    assert "Error" not in err
    assert re.fullmatch(r"archive: stopped — \d+ archived, .*; job 1, ended .* UTC\n", out), out
    closed = tmp_path / "closed.toml"
    closed.write_text(
        '[window]\nstart = "00:00:00"\nend = "00:00:01"\ntimezone = "Pacific/Kiritimati"\n'
    )
    # Refused outside the window: one line, and no traceback even with --debug.
    rc, out, err = console(vdb, ["archive", "16", "17"], closed, "--debug")
    assert (rc, out) == (3, ""), err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("not started: outside the off-hours window (00:00:00–00:00:01 "), err


# --- a closed pipe ------------------------------------------------------------------------


def first_line_then_close(argv: list[str]) -> tuple[int, bytes, str]:
    """`… | head -1`: read stdout's first line through a 4 KiB pipe, close it, wait."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    child = subprocess.Popen(argv, stdout=write_end, stderr=subprocess.PIPE, env=hp.child_env())
    os.close(write_end)
    line = b""
    while not line.endswith(b"\n"):
        byte = os.read(read_end, 1)
        if not byte:
            break
        line += byte
    os.close(read_end)
    _, err = child.communicate(timeout=120)
    return child.returncode, line, err.decode()


def test_a_closed_pipe_ends_read_commands_quietly(vdb: VDb) -> None:
    vdb.seed(3000)
    vdb.db.write(f"UPDATE `{LIVE}` SET phone_number = '7275550001' WHERE lead_id <= 1000")
    job = summary_of(vdb.cli(["archive", "--where", "lead_id > 1000", "--no-insert", "--json"]))
    assert job["counts"] == {"not_copied": 1999, "skipped_newest": 1}
    commands = [
        ["verify", "--all", "--list-limit", "5000"],
        ["search", "7275550001"],
        ["jobs", "show", str(job["job_id"]), "--leads", "all"],
    ]
    for args in commands:
        whole = subprocess.run(
            hp.argv(vdb.dsn, args), capture_output=True, env=hp.child_env(), timeout=120
        )
        assert len(whole.stdout) > 8192, args  # twice what the pipe holds: a write fails
        rc, line, err = first_line_then_close(hp.argv(vdb.dsn, args))
        assert line and line == whole.stdout.splitlines(keepends=True)[0], args
        assert rc == 0, (args, rc, err)
        assert all(ln.startswith("{") for ln in err.splitlines()), (args, err)  # events only


# --- under cron: one format per stream ----------------------------------------------------


def cron_run(vdb: VDb, log: Path, args: list[str], *head: str) -> int:
    """`vicidial-archiver … >> log 2>&1` with no terminal and a bare environment."""
    with open(log, "ab") as out:
        return subprocess.run(
            [hp.BIN, "--dsn", vdb.dsn, *head, *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            timeout=120,
        ).returncode


def test_under_cron_the_log_is_json_lines_ending_with_the_summary(vdb: VDb, tmp_path: Path) -> None:
    vdb.seed(20)
    log = tmp_path / "archiver.log"
    assert cron_run(vdb, log, ["archive", "1", "2", "3", "--ignore-window"]) == 0
    args = ["archive", "--where", "lead_id BETWEEN 4 AND 15", "--chunk-size", "1"]
    stop = ["--ignore-window", "--max-runtime", "0.2", "--sleep", "0.1"]
    assert cron_run(vdb, log, [*args, *stop]) == 3
    lines = log.read_text().splitlines()
    events = [json.loads(line) for line in lines]  # every line: one JSON event
    ends = [e for e in events if e["event"] == "summary"]
    assert [(e["job_id"], e["state"]) for e in ends] == [(1, "done"), (2, "stopped")]
    assert events[-1] == ends[-1] and ends[0]["moved"] == 3
    assert ends[1]["resume"] == "vicidial-archiver jobs resume 2"
    for e in ends:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", e["timestamp"]), e


def test_with_console_logs_the_end_lines_carry_time_and_job(vdb: VDb, tmp_path: Path) -> None:
    vdb.seed(20)
    log = tmp_path / "archiver.log"
    rc = cron_run(vdb, log, ["archive", "1", "2", "--ignore-window"], "--log-format", "console")
    assert rc == 0
    lines = log.read_text().splitlines()
    assert not [line for line in lines if line.startswith("{")]  # no JSON among plain lines
    assert re.fullmatch(
        r"archive: done — 2 archived, 0 kept, 2 leads examined in 1 chunk, .*; job 1, ended "
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC",
        lines[-1],
    ), lines
