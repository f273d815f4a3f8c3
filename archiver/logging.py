"""structlog, configured once at the entry point: stderr, console on a TTY, JSON otherwise.

While a progress bar is live (`through_bar`), events are printed by the bar's own rich console,
above the bar, and only warnings, errors and the events it keeps (the end `summary`) are
printed: a `chunk` event per chunk would tear the bar and push it off the screen. The `chunk`
events are still there wherever no bar is drawn: JSON under cron, every event at `-v`.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any, TextIO

import structlog

_QUIET_LEVELS = frozenset({"debug", "info"})


class _Sink:
    """The last step of every event: a line to stderr, or to the live bar's console."""

    def __init__(self, file: TextIO) -> None:
        self.file = file
        self.console: Any = None  # a rich Console while a bar is live
        self.keep: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def quiet(
        self, _logger: Any, _method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """A processor: under a live bar, an info or debug event is dropped unless kept."""
        if (
            self.console is not None
            and event.get("level") in _QUIET_LEVELS
            and event.get("event") not in self.keep
        ):
            raise structlog.DropEvent
        return event

    def msg(self, message: str) -> None:
        console = self.console
        if console is not None:
            from rich.text import Text

            # soft_wrap: the terminal wraps a long event, so a copied line stays one line.
            console.print(Text.from_ansi(message), soft_wrap=True)
            return
        with self._lock:
            print(message, file=self.file, flush=True)

    log = debug = info = warn = warning = err = error = critical = exception = fatal = msg


_sink = _Sink(sys.stderr)
_format = "json"


def configure(fmt: str = "auto", verbose: bool = False) -> None:
    global _sink, _format
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    _format = fmt
    _sink = _Sink(sys.stderr)
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    sink = _sink
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            sink.quiet,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.DEBUG if verbose else logging.INFO
        ),
        logger_factory=lambda *_args: sink,
        cache_logger_on_first_use=False,
    )


def console_format() -> bool:
    """Whether events are rendered for a person (console) rather than as JSON lines."""
    return _format == "console"


@contextmanager
def through_bar(console: Any, keep: Iterable[str] = ()) -> Iterator[None]:
    """While inside: events go through `console` (the live bar's), warnings and errors only,
    plus the events named in `keep`."""
    sink = _sink
    sink.console, sink.keep = console, frozenset(keep)
    try:
        yield
    finally:
        sink.console, sink.keep = None, frozenset()


def get_logger(**context: Any) -> Any:
    return structlog.get_logger("vicidial-archiver").bind(**context)
