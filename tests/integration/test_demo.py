"""`make demo` runs end to end and exits 0, on the stock engine and on InnoDB."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.db import TEST_DSN

ROOT = Path(__file__).resolve().parents[2]
STEPS = (
    "## What would an archive of campaign OLDLEADS called before 2023 do?",
    "## Archive it (a job named demo-archive; resumable if stopped)",
    "## Find archived leads by phone, as VICIdial's lead_search API prints them",
    "## Bring one lead back, as VICIdial's lead_dearchive API prints it",
    "## Bring back the archived SALE leads, ready to dial again (--reset)",
    "## Check live and archive agree for the campaign",
    "## The archive job, from the checkpoint tables",
)


def check_output(out: str) -> None:
    for step in STEPS:
        assert step in out
    assert "SUCCESS: lead_dearchive LEAD DE-ARCHIVED: demo|" in out
    assert "search_key|records_found|lead_ids" in out
    assert "OK: no lead is in both tables with different data" in out
    assert "(exit " not in out  # no step failed
    assert "# dropped database vicidial_demo_" in out


def run_demo(argv: list[str], env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    check_output(proc.stdout)


def test_make_demo_exits_0() -> None:
    run_demo(["make", "-s", "demo"], env={**os.environ, "ARCHIVER_DSN": TEST_DSN})


@pytest.mark.slow
def test_demo_on_innodb() -> None:
    run_demo(
        [
            sys.executable,
            "-m",
            "archiver",
            "--dsn",
            TEST_DSN,
            "demo",
            "--engine",
            "InnoDB",
            "--leads",
            "20000",
        ]
    )
