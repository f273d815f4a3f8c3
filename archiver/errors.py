"""One exception base; each failure a user can meet has its own class and exit code.

Exit codes, identical in every command:
0 done · 1 failed (resumable) · 2 bad input or usage, nothing written ·
3 stopped early and resumable · 4 another job holds the lock.
"""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_STOPPED = 3
EXIT_LOCKED = 4


class ArchiverError(Exception):
    """Base of every error the tool reports as one `Error:` line.

    `summary` carries what a job did before it stopped or failed, for the caller to print."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, summary: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.summary = summary

    def __str__(self) -> str:
        return self.message


class BadInput(ArchiverError):
    """Invalid ids, dates, request bodies, options: nothing was written."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(BadInput):
    """A config file, key or value is wrong."""


class ConnectError(BadInput):
    """The database cannot be reached or refuses the credentials."""


class SchemaDrift(BadInput):
    """The archive table is missing or cannot hold live rows losslessly."""


class JobMismatch(BadInput):
    """A job name or id refers to a job with another identity or state."""


class LockHeld(ArchiverError):
    """Another job holds the one-job-per-database lock."""

    exit_code = EXIT_LOCKED


class Stopped(ArchiverError):
    """The job stopped early on purpose and can be resumed."""

    exit_code = EXIT_STOPPED


class Failed(ArchiverError):
    """The job failed part-way; it is left resumable."""

    exit_code = EXIT_FAILED


class Cancelled(Stopped):
    """`jobs cancel` ended the job while it ran: it stopped at its next chunk, for good."""


class SchemaChanged(Failed):
    """A table's columns changed during the run; the next run reflects them again."""
