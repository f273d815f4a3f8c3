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
    "## 1/7 Dry run: the plan, the counts and one chunk's statements; nothing is written",
    "## 2/7 Archive: the same leads move in verified chunks, as job demo-archive (resumable)",
    "## 3/7 Search: archived leads by phone, as VICIdial's lead_search API prints them",
    "## 4/7 Dearchive one lead, as VICIdial's lead_dearchive API prints it",
    "## 5/7 Dearchive the archived SALE leads, ready to dial again (--reset-called)",
    "## 6/7 Verify: no lead of the campaign is in both tables with different data",
    "## 7/7 Jobs: the archive job as the checkpoint tables recorded it",
)
SCREEN = 50  # lines a step's output may take: one terminal screen
WIDTH = 200  # characters a line may take


def check_output(out: str) -> None:
    lines = out.splitlines()
    # Each step opens with one line saying what it shows, then the command it runs.
    heads = [i for i, line in enumerate(lines) if line.startswith("## ")]
    assert [lines[i] for i in heads] == list(STEPS), out
    assert all(lines[i + 1].startswith("$ vicidial-archiver ") for i in heads)
    for start, end in zip(heads, [*heads[1:], len(lines)], strict=True):
        assert end - start <= SCREEN, "\n".join(lines[start:end])
    too_long = [line for line in lines if len(line) > WIDTH]
    assert not too_long, too_long
    # The dry run shows one chunk's statements, their column lists shortened.
    dry = "\n".join(lines[heads[0] : heads[1]])
    assert "SQL of the first chunk, lists shortened (--json shows every statement whole):" in dry
    assert "(`lead_id`, … 34 more)" in dry
    assert "CAST(s.`lead_id` AS BINARY) <=> CAST(d.`lead_id` AS BINARY) AND … 34 more)" in dry
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
