"""What a person at a terminal sees: the real CLI under a pseudo-terminal (120 x 40), every byte
the terminal receives read back. On a TTY the progress bar is drawn and only warnings, errors and
the end summary are logged, through the bar's own console; without a TTY (cron) and at `-v`
every chunk logs its event."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from tests.support.db import ARCHIVE, LIVE, VDb
from tests.support.proc import BIN, child_env, parse_events

LEADS = 20_000
EVERY_LIST = [arg for lid in (101, 102, 201, 202, 999) for arg in ("--list-id", str(lid))]
CHUNK = 100
CHUNKS = LEADS // CHUNK
ROWS, COLS = 40, 120
RICH_ENV = ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")
CSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>78]")
BAR_FRAME = re.compile(r"moving .*?(\d+\.\d)%\s+\d+ leads/s")
CHUNK_EVENT = re.compile(r"\bchunk\b.*\bchunk=\d+")


@dataclass
class Screen:
    """One run under a pseudo-terminal: exit code, the terminal's bytes, stdout when piped."""

    rc: int
    raw: str
    stdout: str

    @property
    def segments(self) -> list[str]:
        """The text as drawn, cut at every carriage return and newline (a bar redraw starts
        with one), escape sequences removed."""
        return [s for s in re.split(r"[\r\n]+", CSI.sub("", self.raw)) if s.strip()]


def on_terminal(args: Sequence[str], *, stdout_tty: bool = True) -> Screen:
    """Run the CLI with stderr (and stdout unless piped) on a new pseudo-terminal."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    env = child_env({"TERM": "xterm-256color"})
    for name in RICH_ENV:
        env.pop(name, None)  # rich reads these; the terminal's own size and kind must decide
    proc = subprocess.Popen(
        [BIN, *args],
        stdin=subprocess.DEVNULL,
        stdout=slave if stdout_tty else subprocess.PIPE,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    chunks: list[bytes] = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: every writer of the terminal has closed it
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    # A piped stdout is read after the terminal closes: it carries one summary, far below
    # what a pipe buffers.
    out = proc.stdout.read().decode() if proc.stdout is not None else ""
    rc = proc.wait(timeout=120)
    return Screen(rc, b"".join(chunks).decode(errors="replace"), out)


def _prepare(vdb: VDb) -> list[str]:
    vdb.seed(LEADS)
    vdb.db.write("DROP TABLE vicidial_callbacks")  # a warning during the run: guard_missing
    return ["--dsn", vdb.dsn, "archive", *EVERY_LIST, "--chunk-size", str(CHUNK), "--ignore-window"]


def test_tty_shows_the_bar_and_no_chunk_events(vdb: VDb) -> None:
    screen = on_terminal(_prepare(vdb))
    assert screen.rc == 0, screen.raw[-2000:]
    segments = screen.segments
    frames = [i for i, s in enumerate(segments) if BAR_FRAME.search(s)]
    # The bar is drawn and redrawn as the job moves (several distinct percentages).
    assert len({BAR_FRAME.search(segments[i]).group(1) for i in frames}) >= 3, segments  # type: ignore[union-attr]
    assert "━" in screen.raw
    # Not one chunk event anywhere: between bar updates or torn into one.
    torn = [s for s in segments if CHUNK_EVENT.search(s)]
    assert torn == [], torn[:3]
    # The run-time warning is logged once, a whole line of its own (not inside a bar frame).
    warned = [s for s in segments if "guard_missing" in s]
    assert len(warned) == 1 and "table=vicidial_callbacks" in warned[0]
    assert not BAR_FRAME.search(warned[0])
    # The summary once, after the last bar frame: stdout is this terminal, so no `summary`
    # event besides it.
    head = (
        "archive: done — 19,999 archived, 1 kept (1 skipped_newest), "
        f"{LEADS:,} leads examined in {CHUNKS} chunks, "
    )
    heads = [i for i, s in enumerate(segments) if s.startswith(head)]
    assert len(heads) == 1, segments[-12:]
    assert heads[0] > frames[-1]
    assert not [s for s in segments if re.search(r"\bsummary\b.*\bstate=", s)]
    # What the selection holds, shown once before the first chunk (issue 22).
    selected = [i for i, s in enumerate(segments) if re.search(r"\bselection\b.*selected=", s)]
    assert len(selected) == 1 and f"selected={LEADS}" in segments[selected[0]]
    assert selected[0] < heads[0]
    tail = segments[heads[0] :]
    assert re.search(r"; job 1, ended \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$", tail[0]), tail[0]
    assert tail[1:] == [
        "  warning: guard table vicidial_callbacks does not exist; its guard is off for this run",
    ]
    assert vdb.count(ARCHIVE) == 19_999 and vdb.ids(LIVE) == [LEADS]


def test_tty_with_stdout_piped_logs_the_summary_event_once(vdb: VDb) -> None:
    screen = on_terminal([*_prepare(vdb), "--json"], stdout_tty=False)
    assert screen.rc == 0, screen.raw[-2000:]
    # stdout carries the result only: one JSON summary.
    assert [ln[:1] for ln in screen.stdout.splitlines()] == ["{"]
    assert '"state": "done"' in screen.stdout
    segments = screen.segments
    assert any(BAR_FRAME.search(s) for s in segments)
    assert not [s for s in segments if CHUNK_EVENT.search(s)]
    # The terminal still ends with the summary, as one `summary` event.
    summaries = [s for s in segments if re.search(r"\bsummary\b.*\bstate=done\b", s)]
    assert len(summaries) == 1
    assert not BAR_FRAME.search(summaries[0])


def test_without_a_tty_every_chunk_logs_one_json_event(vdb: VDb) -> None:
    # Under cron neither stream is a terminal: no --log-format given, JSON all the same.
    args = _prepare(vdb)
    proc = subprocess.run(
        [BIN, *args], capture_output=True, text=True, env=child_env(), timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "━" not in proc.stderr and "leads/s" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert all(ln.startswith("{") for ln in lines), [ln for ln in lines if ln[:1] != "{"][:3]
    events = parse_events(lines)
    chunks = [e["chunk"] for e in events if e["event"] == "chunk"]
    assert chunks == list(range(1, CHUNKS + 1))
    assert [e["event"] for e in events if e["level"] == "warning"] == ["guard_missing"]
    assert [e["event"] for e in events].count("summary") == 1


@pytest.mark.parametrize("engine", ["InnoDB"], indirect=True)
def test_tty_at_verbose_logs_every_chunk_without_a_bar(vdb: VDb) -> None:
    vdb.seed(1_000)
    args = ["--dsn", vdb.dsn, "-v", "archive", *EVERY_LIST, "--chunk-size", str(CHUNK)]
    args.append("--ignore-window")
    screen = on_terminal(args)
    assert screen.rc == 0, screen.raw[-2000:]
    segments = screen.segments
    assert not any(BAR_FRAME.search(s) for s in segments)
    chunks = [int(m.group(1)) for s in segments if (m := re.search(r"\bchunk=(\d+)", s))]
    assert sorted(set(chunks)) == list(range(1, 11))


# --- questions: `jobs prune` asks on a terminal ---------------------------------------------


def answering(args: Sequence[str], answer: bytes | None, timeout: float = 60) -> Screen:
    """Run the CLI with stdin, stdout and stderr on a new pseudo-terminal; when a `[y/N]`
    question is drawn, type `answer`."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    env = child_env({"TERM": "xterm-256color"})
    proc = subprocess.Popen(
        [BIN, *args], stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if not ready:
            continue
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: every writer of the terminal has closed it
            break
        if not data:
            break
        seen += data
        if answer is not None and seen.endswith(b"[y/N]: "):
            os.write(master, answer)
            answer = None
    os.close(master)
    rc = proc.wait(timeout=timeout)
    return Screen(rc, seen.decode(errors="replace"), "")


def _finished_jobs(vdb: VDb, n: int) -> None:
    vdb.seed(n + 1)
    for lead in range(1, n + 1):
        assert vdb.cli(["archive", str(lead), "--ignore-window"]).exit_code == 0
    time.sleep(0.01)


def _jobs(vdb: VDb) -> int:
    return int(vdb.db.scalar("SELECT COUNT(*) FROM archiver_jobs"))


QUESTION = re.compile(
    r"Delete 3 job record\(s\) \(done or cancelled, ended before \S+ \S+ UTC\), jobs 1, 2, 3, with "
    r"their chunks and leads\? \[y/N\]: "
)


def test_prune_on_a_terminal_asks_naming_how_many_job_records_go(vdb: VDb) -> None:
    """On a TTY `jobs prune` asks first, naming how many job records go (it used to delete
    them without a word); no deletes; yes deletes; --yes does not ask."""
    _finished_jobs(vdb, 3)
    prune = ["--dsn", vdb.dsn, "--log-format", "json", "jobs", "prune", "--older-than", "0d"]
    no = answering(prune, b"n\n")
    assert no.rc == 0, no.raw
    assert QUESTION.search(no.raw), no.raw
    assert no.segments[-1] == "nothing pruned"
    assert _jobs(vdb) == 3
    enter = answering(prune, b"\n")  # Enter alone: the default, no
    assert enter.rc == 0 and enter.segments[-1] == "nothing pruned" and _jobs(vdb) == 3
    yes = answering(prune, b"y\n")
    assert yes.rc == 0, yes.raw
    assert QUESTION.search(yes.raw) and yes.segments[-1] == "pruned 3 job(s)"
    assert _jobs(vdb) == 0
    _finished_jobs_again = [
        vdb.cli(["archive", str(lead), "--ignore-window"]).exit_code for lead in (4, 5)
    ]
    assert _finished_jobs_again == [0, 0]
    time.sleep(0.01)
    skip = answering([*prune, "--yes"], None)
    assert skip.rc == 0 and "[y/N]" not in skip.raw
    assert skip.segments[-1] == "pruned 2 job(s)" and _jobs(vdb) == 0
