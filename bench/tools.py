"""The tools under test: how each is started, and how a run is timed and its peak RSS read.

Every tool runs as a child process (the mysql client for VICIdial's way, Perl for pt-archiver,
Python for this tool and the experiments), so wall time and peak RSS are measured the same way
for all of them.

Tool names (`--tools`): `vicidial`; `pt-bulk-N` (pt-archiver --bulk-insert --bulk-delete
--limit N) and `pt-default-N` (row by row, committed every N); `ours` (this tool at its
defaults) and `ours-<setting>` (the settings in OUR_SETTINGS, or given with --variant);
`exp-<variant>` (bench/experiments/loops.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import ROOT
from bench.db import ARCHIVE, LIVE, Selection, Server, env_without_archiver

VENV_BIN = ROOT / ".venv" / "bin"
TOOL = VENV_BIN / "vicidial-archiver"
PT = "pt-archiver"

Build = Callable[[Server, str, Selection], tuple[list[str], dict[str, str]]]


@dataclass(frozen=True)
class Tool:
    name: str
    family: str  # the tool, as the table and the plot name it
    setting: str  # what this run sets (the flags that differ from the tool's defaults)
    kind: str  # vicidial | pt | ours | exp
    build: Build
    engines: tuple[str, ...] = ()  # only on these engines (empty: every engine)

    @property
    def label(self) -> str:
        return f"{self.family} {self.setting}".strip()

    def runs_on(self, engine: str) -> bool:
        return not self.engines or engine.lower() in (e.lower() for e in self.engines)


def _mysql_env(server: Server) -> dict[str, str]:
    env = dict(os.environ)
    if server.password:
        env["MYSQL_PWD"] = server.password
    return env


def vicidial_way(server: Server, db: str, sel: Selection) -> tuple[list[str], dict[str, str]]:
    sql = (
        f"INSERT INTO {ARCHIVE} SELECT * FROM {LIVE} WHERE {sel.where}; "
        f"DELETE FROM {LIVE} WHERE {sel.where};"
    )
    argv = ["mysql", "-h", server.host, "-P", str(server.port), "-u", server.user, db, "-e", sql]
    return argv, _mysql_env(server)


def _pt_source(server: Server, db: str) -> str:
    src = f"h={server.host},P={server.port},u={server.user},D={db},t={LIVE},L=1"
    if server.password:
        src += f",p={server.password}"
    return src


# --charset utf8: without it pt-archiver talks latin1 to a utf8 table and writes '?' for every
# accented letter; in --bulk-insert mode the LOAD DATA file then also shifts columns. Measured
# by the bench's byte-exact check; with it, both modes copy every row exactly.
# --no-safe-auto-increment: the newest lead may go, as it may for this tool (which gets the
# same flag).
PT_COMMON = (
    "--commit-each",
    "--charset",
    "utf8",
    "--no-check-charset",
    "--no-safe-auto-increment",
    "--statistics",
    "--no-version-check",
)


def pt_tool(limit: int, bulk: bool = True, progress: int = 0) -> Tool:
    """pt-archiver at --limit `limit`, bulk (LOAD DATA + one range DELETE per chunk) or row by
    row; with `progress`, a progress line every that many rows (--progress)."""

    def build(server: Server, db: str, sel: Selection) -> tuple[list[str], dict[str, str]]:
        argv = [
            PT,
            "--source",
            _pt_source(server, db),
            "--dest",
            f"t={ARCHIVE}",
            "--where",
            sel.where,
            "--limit",
            str(limit),
            *PT_COMMON,
        ]
        if bulk:
            argv += ["--bulk-insert", "--bulk-delete"]
        if progress:
            argv += ["--progress", str(progress)]
        return argv, dict(os.environ)

    if bulk:
        return Tool(f"pt-bulk-{limit}", "pt-archiver bulk", f"--limit {limit}", "pt", build)
    family = "pt-archiver per row"
    return Tool(f"pt-default-{limit}", family, f"--limit {limit}", "pt", build)


def ours(*extra: str, verbose: bool = False) -> Build:
    def build(server: Server, db: str, sel: Selection) -> tuple[list[str], dict[str, str]]:
        argv = [str(TOOL), "--dsn", server.dsn(db), "--log-format", "json"]
        if verbose:
            argv.append("-v")
        argv += [
            "archive",
            *sel.ours,
            "--no-safe-auto-increment",
            "--ignore-window",
            "--json",
            *extra,
        ]
        return argv, env_without_archiver()

    return build


# This tool's settings that trade speed for dialer impact: name → (flags, engines).
OUR_SETTINGS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "ours": ((), ()),
    # one DELETE per chunk instead of statements of 100 leads (MyISAM only: InnoDB deletes a
    # chunk in one statement whatever the setting)
    "ours-db0": (("--delete-batch", "0"), ("MyISAM",)),
    "ours-c250": (("--chunk-size", "250"), ()),
    "ours-c100": (("--chunk-size", "100"), ()),
    "ours-ct50": (("--chunk-time", "50"), ()),
    "ours-sc1": (("--sleep-coef", "1"), ()),
}


def our_tool(
    name: str, extra: tuple[str, ...], engines: tuple[str, ...] = (), verbose: bool = False
) -> Tool:
    setting = shlex.join(extra) if extra else "default"
    return Tool(name, "vicidial-archiver", setting, "ours", ours(*extra, verbose=verbose), engines)


def experiment(variant: str) -> Build:
    def build(server: Server, db: str, sel: Selection) -> tuple[list[str], dict[str, str]]:
        argv = [
            sys.executable,
            "-m",
            "bench.experiments.loops",
            "--dsn",
            server.dsn(db),
            "--where",
            sel.where,
            "--variant",
            variant,
        ]
        return argv, env_without_archiver()

    return build


def exp_tool(variant: str) -> Tool:
    from bench.experiments.loops import parse_variant

    parse_variant(variant)  # an unknown variant stops the bench before any run
    return Tool(f"exp-{variant}", "experiment", variant, "exp", experiment(variant))


VICIDIAL = Tool(
    "vicidial", "VICIdial's way", "1 INSERT…SELECT + 1 DELETE", "vicidial", vicidial_way
)

FRONTIER_TOOLS = (
    "pt-bulk-100",
    "pt-bulk-250",
    "pt-bulk-500",
    "ours",
    "ours-db0",
    "ours-c250",
    "ours-c100",
    "ours-ct50",
    "ours-sc1",
)


def resolve_tools(spec: str, variants: list[str]) -> list[Tool]:
    """The tools named in `spec` (comma-separated) and the --variant NAME=FLAGS ones."""
    settings = dict(OUR_SETTINGS)
    names = [t.strip() for t in spec.split(",") if t.strip() and t.strip() != "none"]
    for item in variants:  # a variant given with --variant runs even when --tools omits it
        name, _, text = item.partition("=")
        name = name if name.startswith("ours") else f"ours-{name}"
        settings[name] = (tuple(shlex.split(text)), ())
        if name not in names:
            names.append(name)
    tools: list[Tool] = []
    for name in names:
        pt = re.fullmatch(r"pt-(bulk|default)-(\d+)", name)
        if name == "vicidial":
            tools.append(VICIDIAL)
        elif pt:
            tools.append(pt_tool(int(pt.group(2)), bulk=pt.group(1) == "bulk"))
        elif name in settings:
            flags, engines = settings[name]
            tools.append(our_tool(name, flags, engines))
        elif name.startswith("exp-"):
            tools.append(exp_tool(name[4:]))
        else:
            raise SystemExit(
                f"unknown tool {name!r}; known: vicidial, pt-bulk-N, pt-default-N, "
                f"{', '.join(settings)}, exp-<variant>"
            )
    return tools


# --- running one child --------------------------------------------------------------------


@dataclass
class Run:
    argv: list[str]
    rc: int
    wall_s: float
    maxrss_kb: int
    started: float
    ended: float
    stdout: str
    stderr_path: Path
    lines: list[tuple[float, str]]  # with timestamp_stdout: (monotonic arrival, stdout line)


GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


def run_child(
    argv: list[str],
    env: dict[str, str],
    log_dir: Path,
    name: str,
    timeout: float,
    timestamp_stdout: bool = False,
) -> Run:
    """Start, wait, kill the process group after `timeout`.

    Peak RSS: ru_maxrss of a child forked from this (Python) process counts the pages it
    shared with the parent before exec, so the child is started through GNU time (`%M`, the
    exec'd program's own high-water mark) when /usr/bin/time exists; otherwise VmHWM is polled
    from /proc.

    With `timestamp_stdout` the child's stdout is a terminal (so Perl flushes every line) and
    each line is stamped with the monotonic time it arrived (pt-archiver's --progress lines)."""
    out_path = log_dir / f"{name}.stdout"
    err_path = log_dir / f"{name}.stderr"
    rss_path = log_dir / f"{name}.maxrss"
    wrapped = [GNU_TIME, "-q", "-f", "%M", "-o", str(rss_path), *argv] if GNU_TIME else argv
    hwm = [0]
    lines: list[tuple[float, str]] = []
    reader: threading.Thread | None = None
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        master = -1
        stdout_target: Any = out
        if timestamp_stdout:
            master, slave = pty.openpty()
            stdout_target = slave
        started = time.monotonic()
        proc = subprocess.Popen(
            wrapped, stdout=stdout_target, stderr=err, env=env, cwd=ROOT, start_new_session=True
        )
        if timestamp_stdout:
            os.close(slave)
            reader = threading.Thread(target=_read_lines, args=(master, out, lines), daemon=True)
            reader.start()
        poller = None
        if not GNU_TIME:
            poller = threading.Thread(target=_poll_hwm, args=(proc.pid, hwm), daemon=True)
            poller.start()
        timer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        ended = time.monotonic()
        proc.returncode = os.waitstatus_to_exitcode(status)
        if reader is not None:
            reader.join(10)
            os.close(master)
    maxrss_kb = hwm[0]
    if GNU_TIME:
        try:
            maxrss_kb = int(rss_path.read_text().split()[-1])
        except (OSError, ValueError, IndexError):
            maxrss_kb = int(usage.ru_maxrss)
    return Run(
        argv,
        proc.returncode,
        ended - started,
        maxrss_kb,
        started,
        ended,
        out_path.read_text(errors="replace"),
        err_path,
        lines,
    )


def _read_lines(fd: int, out: Any, lines: list[tuple[float, str]]) -> None:
    """Copy a pty's output to `out`, stamping each complete line on arrival."""
    buf = b""
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the last writer closed the terminal
            data = b""
        if not data:
            break
        now = time.monotonic()
        out.write(data)
        buf += data
        *complete, buf = buf.split(b"\n")
        for raw in complete:
            lines.append((now, raw.rstrip(b"\r").decode(errors="replace")))
    if buf:
        lines.append((time.monotonic(), buf.rstrip(b"\r").decode(errors="replace")))
    out.flush()


def _poll_hwm(pid: int, hwm: list[int]) -> None:
    while True:
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        hwm[0] = max(hwm[0], int(line.split()[1]))
        except OSError:
            return
        time.sleep(0.02)


def pt_version() -> str | None:
    if shutil.which(PT) is None:
        return None
    try:
        out = subprocess.run([PT, "--version"], capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    return out.stdout.strip() or out.stderr.strip() or None


def require_pt_archiver() -> str:
    """pt-archiver's version line; stops the bench with what to do when it is missing
    (`make bench` installs it first)."""
    version = pt_version()
    if version:
        return version
    raise SystemExit(
        "pt-archiver (Percona Toolkit) is not installed; the benchmark compares against it.\n"
        "`make bench` installs it (Debian package percona-toolkit), or:\n"
        "  sudo apt-get update && sudo apt-get install -y percona-toolkit\n"
        "or leave the pt-archiver rows out with --tools ours,ours-c100,…"
    )


def parse_json_lines(path: Path) -> list[dict[str, Any]]:
    events = []
    with open(path, errors="replace") as fh:
        for line in fh:
            line = line.strip()
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    value = json.loads(line)
                    if isinstance(value, dict):
                        events.append(value)
    return events


def last_json_object(text: str) -> dict[str, Any] | None:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
