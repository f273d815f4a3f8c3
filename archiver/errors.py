"""One exception base; each failure a user can meet is a kind: a class that knows its exit
code, its HTTP status and the stable `code` of its JSON answer.

Exit codes, identical in every command:
0 done · 1 failed (resumable) · 2 bad input or usage, nothing written ·
3 stopped early and resumable · 4 another job holds the lock.

The CLI (`cli.ArchiverGroup`) and the server (`serve.api_error`) read these attributes; no
caller tests classes in an order or parses a message. A job that ran is not an exception:
`run_job` returns its Summary, whatever its state, and `commands.outcome_error` names the kind
its state maps to. An exception means the work was refused before it wrote, or a check failed.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_STOPPED = 3
EXIT_LOCKED = 4

# The exit codes as `--help` (the group's epilog) and README list them, word for word: a unit
# test holds the three equal.
EXIT_CODES: tuple[tuple[int, str], ...] = (
    (EXIT_OK, "done"),
    (EXIT_FAILED, "failed (one `Error:` line; the job is resumable)"),
    (EXIT_BAD_INPUT, "bad input or usage (one `Error:` line), nothing written"),
    (
        EXIT_STOPPED,
        "stopped early on purpose (window, --max-runtime, a signal, throttle, jobs cancel): "
        "not an error; resumable unless cancelled",
    ),
    (EXIT_LOCKED, "another job holds the lock (one `Error:` line)"),
)
REPORT_EXIT_CODE = (
    "verify, schema check, search, doctor: 1 = the report found a difference, no match or a "
    "failed check"
)

SERVER_LOG = "the server log has the details"


class ArchiverError(Exception):
    """Base of every error the tool reports as one `Error:` line (or one JSON answer).

    `public` is the message an API client gets: None shows the message itself (it speaks only
    of what the client sent); otherwise a fixed text, filled from the server's own context
    ({host}, {port}, {lock}, {holder}, {window}), so that no database text reaches a client.
    `api_fields` names the context fields the JSON answer carries besides `error` and
    `message`."""

    exit_code: int = EXIT_FAILED
    http_status: int = 500
    code: str = "internal_error"
    public: str | None = f"unexpected server error; {SERVER_LOG}"
    api_fields: tuple[str, ...] = ()
    silent = False  # True: the command's report on stdout says it all; no `Error:` line
    # What the CLI prints before the message. A job stopped on purpose is no error: its
    # message says itself what stopped it (`stopped by Ctrl-C …`, `not started: …`).
    prefix = "Error: "

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class BadInput(ArchiverError):
    """Invalid ids, dates, request bodies, options: nothing was written."""

    exit_code = EXIT_BAD_INPUT
    http_status = 400
    code = "bad_request"
    public: str | None = None


class ConfigError(BadInput):
    """A config file, key or value is wrong."""

    http_status = 500
    code = "server_not_ready"
    public = f"the server is not set up for archiving; {SERVER_LOG}"


class ConnectError(BadInput):
    """The database cannot be reached or refuses the credentials."""

    http_status = 503
    code = "database_unavailable"
    public = f"cannot connect to MariaDB/MySQL at {{host}}:{{port}}; {SERVER_LOG}"


class SchemaDrift(BadInput):
    """The archive table is missing or cannot hold live rows losslessly."""

    http_status = 500
    code = "server_not_ready"
    public = f"the server is not set up for archiving; {SERVER_LOG}"


class NotSetUp(BadInput):
    """The database or the account is not set up for the job (a grant or a table missing, a
    checkpoint table of an earlier version): an administrator's task; nothing was written.
    serve answers every refusal of a job it started with this kind: the request was checked
    before, so what the refusal names (account, host, schema, files) is the server's own."""

    http_status = 500
    code = "server_not_ready"
    public = f"the server is not set up for archiving; {SERVER_LOG}"


class JobMismatch(BadInput):
    """A job name or id refers to a job with another identity or state."""


class LockHeld(ArchiverError):
    """Another job holds the one-job-per-database lock."""

    exit_code = EXIT_LOCKED
    http_status = 409
    code = "locked"
    public = (
        "another job holds the lock {lock!r}{holder}; send the request again when it has finished"
    )
    api_fields = ("job_id",)


class LeadsBusy(LockHeld):
    """Another job works on leads this small job asked for (archiver.claims)."""

    public = (
        "another job is working on leads of this request{holder}; send the request again in a "
        "few seconds"
    )


class Stopped(ArchiverError):
    """The job stopped early on purpose and can be resumed. Raised (rather than returned as a
    stopped Summary), it means the job was refused before it started: outside the window.
    Its message is printed as it is, not as an `Error:` line: nothing went wrong."""

    exit_code = EXIT_STOPPED
    prefix = ""
    http_status = 423
    code = "outside_window"
    public = "outside the off-hours window ({window})"
    api_fields = ("window",)


class Failed(ArchiverError):
    """The job failed part-way; it is left resumable."""

    exit_code = EXIT_FAILED
    http_status = 500
    code = "job_failed"
    public = "the job failed part-way and is resumable: send the same request again; " + SERVER_LOG
    api_fields = ("job_id",)


class Cancelled(Stopped):
    """`jobs cancel` ended the job while it ran: it stopped at its next chunk, for good."""


class SchemaChanged(Failed):
    """A table's columns changed during the run; the next run reflects them again."""


class ChecksFailed(ArchiverError):
    """A report command ran and its report, already printed, says a check failed (`verify`
    found a lead in both tables and different, `schema check` a blocking drift, `search` no
    match, VICIdial's lead_dearchive an ERROR line): only the exit code tells a script so."""

    silent = True
    code = "checks_failed"

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# --- database errors: db.classify_error makes these from the server's error numbers ---------


class DatabaseError(ArchiverError):
    """A statement failed on the server. `message` is what a job records as its stop reason;
    `detail` is the server's own text, `errno` its number (None when it sent none)."""

    exit_code = EXIT_FAILED
    http_status = 500
    code = "database_error"
    public = f"a database error; {SERVER_LOG}"
    api_fields = ("job_id",)

    def __init__(self, message: str, errno: int | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.errno = errno
        self.detail = detail or message


class DatabaseUnavailable(DatabaseError):
    """The server cannot be reached."""

    http_status = 503
    code = "database_unavailable"
    public = f"the database connection was lost; {SERVER_LOG}"


class ConnectionLost(DatabaseUnavailable):
    """The connection went away under a statement (killed, timed out, server gone)."""


class LockContention(DatabaseError):
    """A lock wait timeout or a deadlock: the statement may succeed when tried again."""


class StatementTimeout(DatabaseError):
    """The server stopped a statement at the session's max_statement_time."""


class AccessDenied(DatabaseError):
    """The server refused the user or the database to this user."""


class UnknownDatabase(DatabaseError):
    """The database named in the DSN does not exist."""


class BadDatabaseName(DatabaseError):
    """The database name is not a valid identifier."""


class NoSuchTable(DatabaseError):
    """A statement named a table that does not exist."""


class NoSuchColumn(DatabaseError):
    """A statement named a column the table does not have."""


class NoPrivilege(DatabaseError):
    """The user may not run this statement on this table or column."""
