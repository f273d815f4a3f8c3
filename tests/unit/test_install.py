"""`make install`: one step from a checkout to what the units in contrib/ name."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "/opt/vicidial-archiver"
ANALYZE = shutil.which("systemd-analyze")
LOGROTATE = shutil.which("logrotate") or (
    "/usr/sbin/logrotate" if Path("/usr/sbin/logrotate").exists() else None
)
UNITS = ("vicidial-archiver.service", "vicidial-archiver.timer", "vicidial-archiver-api.service")

pytestmark = pytest.mark.slow  # builds a venv and installs the package into it (~15 s)


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("root")
    proc = subprocess.run(
        ["make", "-C", str(ROOT), "install", f"DESTDIR={root}", f"PY={sys.executable}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return root


def test_install_makes_the_program_the_units_name(staged: Path) -> None:
    program = staged / PREFIX.lstrip("/") / "bin" / "vicidial-archiver"
    proc = subprocess.run([str(program), "--help"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and "Usage: vicidial-archiver" in proc.stdout, proc.stderr
    for name in UNITS:
        installed = staged / "etc/systemd/system" / name
        assert installed.read_text() == (ROOT / "contrib/systemd" / name).read_text()
        if name.endswith(".service"):
            assert f"ExecStart={PREFIX}/bin/vicidial-archiver " in installed.read_text()
    assert (staged / "etc/vicidial-archiver.toml").read_text() == (
        ROOT / "config.example.toml"
    ).read_text()
    assert (staged / "etc/logrotate.d/vicidial-archiver").exists()
    assert (staged / "var/log/vicidial-archiver").is_dir()


def test_install_keeps_an_existing_config(staged: Path) -> None:
    config = staged / "etc/vicidial-archiver.toml"
    config.write_text("# the site's own\n")
    proc = subprocess.run(
        ["make", "-C", str(ROOT), "install", f"DESTDIR={staged}", f"PY={sys.executable}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert config.read_text() == "# the site's own\n"


def test_install_refuses_an_old_python(tmp_path: Path) -> None:
    # A python3 that says it is 3.9 to the version check (the check is the Makefile's code).
    old = tmp_path / "python3"
    pretend = (
        "import sys, collections;"
        " sys.version_info = collections.namedtuple('V', 'major minor')(3, 9)"
    )
    old.write_text(f'#!/bin/sh\nexec {sys.executable} -c "{pretend}\n$2"\n')
    old.chmod(0o755)
    proc = subprocess.run(
        ["make", "-C", str(ROOT), "install", f"DESTDIR={tmp_path / 'root'}", f"PY={old}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    assert "needs Python 3.11 or later" in proc.stderr
    assert not (tmp_path / "root").exists()


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed (the systemd package)")
def test_installed_units_verify_against_the_installed_program(staged: Path, tmp_path: Path) -> None:
    # verify checks that ExecStart's program exists: point the units at the staged root.
    for name in UNITS:
        text = (staged / "etc/systemd/system" / name).read_text()
        (tmp_path / name).write_text(text.replace(PREFIX, str(staged) + PREFIX))
    proc = subprocess.run(
        [str(ANALYZE), "verify", *(str(tmp_path / n) for n in UNITS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


@pytest.mark.skipif(LOGROTATE is None, reason="logrotate not installed")
def test_logrotate_snippet_parses(staged: Path, tmp_path: Path) -> None:
    text = (staged / "etc/logrotate.d/vicidial-archiver").read_text()
    # The user is made by a real install only; the rest is checked as it is.
    conf = tmp_path / "lr.conf"
    conf.write_text(text.replace("su vicidial-archiver vicidial-archiver", "su root root"))
    proc = subprocess.run(
        [str(LOGROTATE), "-d", "-s", str(tmp_path / "state"), str(conf)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "error" not in proc.stderr.lower()
