"""contrib/: the nightly job's systemd service + timer and cron line, as README shows them."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "contrib" / "systemd"
SERVICE = SYSTEMD / "vicidial-archiver.service"
TIMER = SYSTEMD / "vicidial-archiver.timer"
API = SYSTEMD / "vicidial-archiver-api.service"
CRONTAB = ROOT / "contrib" / "cron" / "vicidial-archiver.crontab"
LOGROTATE = ROOT / "contrib" / "logrotate" / "vicidial-archiver"
ANALYZE = shutil.which("systemd-analyze")
NO_ANALYZE = "systemd-analyze not installed (the systemd package); the unit files are not verified"


def unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections → key → values (a key may repeat); backslash-continued lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def exec_start() -> list[str]:
    (command,) = unit(SERVICE)["Service"]["ExecStart"]
    return shlex.split(command)


def cron_entry() -> tuple[list[str], str]:
    lines = [ln for ln in CRONTAB.read_text().splitlines() if ln.strip()]
    jobs = [ln for ln in lines if not ln.lstrip().startswith("#")]
    assert len(jobs) == 1, jobs
    parts = jobs[0].split(None, 5)
    assert len(parts) == 6, jobs[0]  # five time fields and the command
    return parts[:5], parts[5]


def readme_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"^```[a-z]*\n(.*?)^```$", text, re.M | re.S)


@pytest.mark.parametrize("path", [SERVICE, TIMER, API, CRONTAB, LOGROTATE], ids=lambda p: p.name)
def test_readme_shows_the_file_as_it_is(path: Path) -> None:
    assert path.read_text() in readme_blocks(), f"README's block for {path.name} differs"


def test_service_is_oneshot_and_a_stop_by_the_window_is_success() -> None:
    service = unit(SERVICE)["Service"]
    assert service["Type"] == ["oneshot"]
    assert service["SuccessExitStatus"] == ["3"]  # 4 (lock held) stays a failure, see README
    assert service["User"] == ["vicidial-archiver"]
    assert service["ProtectSystem"] == ["strict"]
    # Optional (-): a set-up whose password is in the TOML or astguiclient.conf has no env file.
    assert service["EnvironmentFile"] == ["-/etc/vicidial-archiver/archive.env"]
    assert "Nice" in service and "IOSchedulingClass" in service
    argv = exec_start()
    assert argv[0].startswith("/") and "archive" in argv and "--job-name" in argv
    assert not any("password" in a.lower() or "@" in a for a in argv)  # no secret on the line


def test_timer_is_persistent_and_fires_daily_at_the_window_start() -> None:
    timer = unit(TIMER)["Timer"]
    assert timer["Persistent"] == ["true"]
    (calendar,) = timer["OnCalendar"]
    assert re.fullmatch(r"\*-\*-\* 20:00:00 UTC", calendar)
    assert unit(TIMER)["Install"]["WantedBy"] == ["timers.target"]


FIELD = re.compile(r"(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*")
RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]


def test_cron_line_parses_and_runs_the_service_command() -> None:
    fields, command = cron_entry()
    for field, (low, high) in zip(fields, RANGES, strict=True):
        assert FIELD.fullmatch(field), field
        assert all(low <= int(n) <= high for n in re.findall(r"\d+", field.split("/")[0]))
    assert "%" not in command  # cron turns % into a newline
    run = re.fullmatch(r"(.*?) >>/\S+ 2>&1", command)  # output to a log, not cron's mail
    assert run, command
    assert shlex.split(run.group(1)) == exec_start()
    # The same hour and minute as the timer.
    (calendar,) = unit(TIMER)["Timer"]["OnCalendar"]
    hour, minute = calendar.split()[1].split(":")[:2]
    assert fields[:2] == [str(int(minute)), str(int(hour))]


def _verifiable(tmp_path: Path) -> Path:
    """The unit files with ExecStart's program replaced by this checkout's own: verify checks
    that the program exists, which /opt/vicidial-archiver does not here."""
    program = Path(sys.executable).with_name("vicidial-archiver")
    assert program.exists(), program
    for src in (SERVICE, TIMER):
        text = src.read_text().replace(exec_start()[0], str(program))
        (tmp_path / src.name).write_text(text)
    return tmp_path


@pytest.mark.skipif(ANALYZE is None, reason=NO_ANALYZE)
def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    d = _verifiable(tmp_path)
    proc = subprocess.run(
        [str(ANALYZE), "verify", str(d / SERVICE.name), str(d / TIMER.name)],
        capture_output=True,
        text=True,
        check=False,
    )
    # Unknown keys and bad values are warnings with exit 0: any output at all fails.
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


@pytest.mark.skipif(ANALYZE is None, reason=NO_ANALYZE)
def test_service_hardening_exposure_stays_low(tmp_path: Path) -> None:
    d = _verifiable(tmp_path)
    argv = [str(ANALYZE), "security", "--offline=true", "--threshold=25", str(d / SERVICE.name)]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if "--offline" in proc.stderr and "unrecognized" in proc.stderr:
        pytest.skip("systemd-analyze security --offline needs systemd 250 or later")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
