"""Running the CLI in-process (click's runner) and reading its `--json` summary."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from click.testing import CliRunner, Result

from archiver.cli import cli


def invoke(
    argv: Sequence[str], input: str | None = None, env: dict[str, str] | None = None
) -> Result:
    runner = CliRunner()
    base = {"ARCHIVER_DSN": "", "ARCHIVER_CONFIG": "", "ARCHIVER_DB_PASSWORD": ""}
    return runner.invoke(
        cli, list(argv), input=input, env={**base, **(env or {})}, catch_exceptions=False
    )


def json_summary(stdout: str, stderr: str = "", code: int | None = None) -> dict[str, Any]:
    """The `--json` summary object: the last JSON line of stdout."""
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line))
    raise AssertionError(f"no JSON summary on stdout (exit {code}):\n{stdout}\n{stderr[-3000:]}")


def summary_of(result: Result) -> dict[str, Any]:
    """The `--json` summary of an in-process run."""
    return json_summary(result.stdout, result.stderr, result.exit_code)
