"""The tools under test: how each is started, and how a run is timed and its peak RSS read.

Every tool runs as a child process (the mysql client for VICIdial's way, Perl for pt-archiver,
Python for this tool and the experiments), so wall time and peak RSS (ru_maxrss from wait4)
are measured the same way for all of them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import ARCHIVE, LIVE, ROOT, Server, env_without_archiver

VENV_BIN = ROOT / ".venv" / "bin"
TOOL = VENV_BIN / "vicidial-archiver"
PT = "pt-archiver"


@dataclass(frozen=True)
class Tool:
    name: str
    label: str
    kind: str  # vicidial | pt | ours | exp
    build: Callable[[Server, str, str], tuple[list[str], dict[str, str]]]
    description: str = ""
    args: tuple[str, ...] = field(default=())


def _mysql_env(server: Server) -> dict[str, str]:
    env = dict(os.environ)
    if server.password:
        env["MYSQL_PWD"] = server.password
    return env


def vicidial_way(server: Server, db: str, where: str) -> tuple[list[str], dict[str, str]]:
    sql = (
        f"INSERT INTO {ARCHIVE} SELECT * FROM {LIVE} WHERE {where}; "
        f"DELETE FROM {LIVE} WHERE {where};"
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
PT_COMMON = (
    "--limit",
    "500",
    "--commit-each",
    "--charset",
    "utf8",
    "--no-check-charset",
    "--statistics",
    "--no-version-check",
)


def pt_bulk(server: Server, db: str, where: str) -> tuple[list[str], dict[str, str]]:
    argv = [
        PT,
        "--source",
        _pt_source(server, db),
        "--dest",
        f"t={ARCHIVE}",
        "--where",
        where,
        *PT_COMMON,
        "--bulk-insert",
        "--bulk-delete",
    ]
    return argv, dict(os.environ)


def pt_default(server: Server, db: str, where: str) -> tuple[list[str], dict[str, str]]:
    argv = [
        PT,
        "--source",
        _pt_source(server, db),
        "--dest",
        f"t={ARCHIVE}",
        "--where",
        where,
        *PT_COMMON,
    ]
    return argv, dict(os.environ)


def ours(
    *extra: str, verbose: bool = False
) -> Callable[[Server, str, str], tuple[list[str], dict[str, str]]]:
    def build(server: Server, db: str, where: str) -> tuple[list[str], dict[str, str]]:
        argv = [str(TOOL), "--dsn", server.dsn(db), "--log-format", "json"]
        if verbose:
            argv.append("-v")
        size = [] if "--chunk-size" in extra else ["--chunk-size", "500"]
        argv += [
            "archive",
            "--where",
            where,
            *size,
            "--no-safe-auto-increment",
            "--ignore-window",
            "--json",
            *extra,
        ]
        return argv, env_without_archiver()

    return build


def experiment(variant: str) -> Callable[[Server, str, str], tuple[list[str], dict[str, str]]]:
    def build(server: Server, db: str, where: str) -> tuple[list[str], dict[str, str]]:
        argv = [
            sys.executable,
            str(ROOT / "bench" / "experiments.py"),
            "--dsn",
            server.dsn(db),
            "--where",
            where,
            "--variant",
            variant,
        ]
        return argv, env_without_archiver()

    return build


BASE_TOOLS: dict[str, Tool] = {
    "vicidial": Tool(
        "vicidial",
        "VICIdial's way (1 INSERT…SELECT + 1 DELETE)",
        "vicidial",
        vicidial_way,
        "one INSERT … SELECT * and one DELETE over the whole selection",
    ),
    "pt-bulk": Tool(
        "pt-bulk",
        "pt-archiver bulk 500",
        "pt",
        pt_bulk,
        "--limit 500 --commit-each --bulk-insert --bulk-delete",
    ),
    "pt-default": Tool(
        "pt-default",
        "pt-archiver default (per row) 500",
        "pt",
        pt_default,
        "--limit 500 --commit-each (row-by-row INSERT and DELETE)",
    ),
}

# Variants of this tool: name → extra CLI flags. `--variant NAME=FLAGS` adds more.
OUR_VARIANTS: dict[str, tuple[str, ...]] = {
    "ours": (),
    "ours-db0": ("--delete-batch", "0"),
    "ours-ct50": ("--chunk-time", "50"),
}


def our_tool(name: str, extra: tuple[str, ...], verbose: bool = False) -> Tool:
    shown = " ".join(extra) if extra else "chunk 500"
    return Tool(
        name,
        f"vicidial-archiver {shown}",
        "ours",
        ours(*extra, verbose=verbose),
        "archive --where … --no-safe-auto-increment " + (" ".join(extra) or "--chunk-size 500"),
        extra,
    )


def exp_tool(variant: str) -> Tool:
    from experiments import VARIANTS

    return Tool(
        f"exp-{variant}",
        f"experiment: {VARIANTS[variant].label}",
        "exp",
        experiment(variant),
        VARIANTS[variant].doc,
    )


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


def run_child(
    argv: list[str], env: dict[str, str], log_dir: Path, name: str, timeout: float
) -> Run:
    """Start, wait, kill the process group after `timeout`.

    Peak RSS: ru_maxrss of a child forked from this (Python) process counts the pages it
    shared with the parent before exec, so the child is started through GNU time (`%M`, the
    exec'd program's own high-water mark) when /usr/bin/time exists; otherwise VmHWM is polled
    from /proc."""
    out_path = log_dir / f"{name}.stdout"
    err_path = log_dir / f"{name}.stderr"
    rss_path = log_dir / f"{name}.maxrss"
    wrapped = [GNU_TIME, "-q", "-f", "%M", "-o", str(rss_path), *argv] if GNU_TIME else argv
    hwm = [0]
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        started = time.monotonic()
        proc = subprocess.Popen(
            wrapped, stdout=out, stderr=err, env=env, cwd=ROOT, start_new_session=True
        )
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
    )


GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


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


def ensure_pt_archiver(install: bool) -> str:
    """pt-archiver's version line; installs the Debian package when asked and run as root."""
    version = pt_version()
    if version:
        return version
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        print(
            "pt-archiver not found; installing the Debian package percona-toolkit …",
            file=sys.stderr,
        )
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update"], check=False, env=env)
        subprocess.run(["apt-get", "install", "-y", "percona-toolkit"], check=False, env=env)
        version = pt_version()
        if version:
            return version
    raise SystemExit(
        "pt-archiver (Percona Toolkit) is not installed; the benchmark compares against it.\n"
        "Install it with:  sudo apt-get update && sudo apt-get install -y percona-toolkit\n"
        "(or run the bench as root with --install-pt to let it do that), or leave the pt-archiver\n"
        "rows out with --tools vicidial,ours."
    )


def parse_json_lines(path: Path) -> list[dict[str, Any]]:
    events = []
    with open(path, errors="replace") as fh:
        for line in fh:
            line = line.strip()
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    events.append(json.loads(line))
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
