"""The log sink: stderr, or the live progress bar's console with warnings, errors and kept
events only."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

import pytest
import structlog
from rich.console import Console

from archiver import logging as alog


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def _events(text: str) -> list[str]:
    """The event names of console-rendered lines."""
    return [m.group(1) for m in re.finditer(r"\[\w+\s*\] (\w+)", text)]


def _emit() -> None:
    log = alog.get_logger(direction="archive")
    log.info("chunk", chunk=7)
    log.warning("guard_missing", table="vicidial_callbacks")
    log.error("after_run_failed", error="disk full")
    log.debug("sql", sql="SELECT 1")
    log.info("summary", state="done")


def test_under_the_bar_only_warnings_errors_and_kept_events_reach_its_console(
    capsys: pytest.CaptureFixture[str],
) -> None:
    alog.configure("console")
    assert alog.console_format()
    screen = io.StringIO()
    console = Console(file=screen, width=300, color_system=None)
    with alog.through_bar(console, keep=("summary",)):
        _emit()
    assert _events(screen.getvalue()) == ["guard_missing", "after_run_failed", "summary"]
    assert capsys.readouterr().err == ""  # nothing written past the bar's console
    # After the bar: every info event on stderr again.
    _emit()
    assert _events(capsys.readouterr().err) == [
        "chunk",
        "guard_missing",
        "after_run_failed",
        "summary",
    ]


def test_under_the_bar_the_summary_is_dropped_unless_kept(
    capsys: pytest.CaptureFixture[str],
) -> None:
    alog.configure("console")
    screen = io.StringIO()
    with alog.through_bar(Console(file=screen, width=300, color_system=None)):
        _emit()
    assert _events(screen.getvalue()) == ["guard_missing", "after_run_failed"]


def test_json_logs_every_chunk_and_are_not_console(capsys: pytest.CaptureFixture[str]) -> None:
    alog.configure("auto")  # stderr is no terminal here: JSON
    assert not alog.console_format()
    _emit()
    lines = capsys.readouterr().err.splitlines()
    assert [line[:10] for line in lines] == ['{"directio'] * 4
    assert '"event": "chunk"' in lines[0] and '"chunk": 7' in lines[0]
