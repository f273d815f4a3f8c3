"""Error kinds: each one's exit code, HTTP status and code; db.classify_error over the server's
error numbers; the error a job's end maps to; and the server's answer for each kind."""

from __future__ import annotations

from collections import Counter

import pymysql
import pytest
from sqlalchemy.exc import DBAPIError

from archiver import config, errors, serve
from archiver.commands import outcome_error
from archiver.db import classify_error
from archiver.runner import Summary

# Every kind with (exit code, HTTP status, code): the codes are the `error` field of the
# server's JSON answers, which clients rely on.
KINDS = [
    (errors.ArchiverError, 1, 500, "internal_error"),
    (errors.BadInput, 2, 400, "bad_request"),
    (errors.ConfigError, 2, 500, "server_not_ready"),
    (errors.ConnectError, 2, 503, "database_unavailable"),
    (errors.SchemaDrift, 2, 500, "server_not_ready"),
    (errors.JobMismatch, 2, 400, "bad_request"),
    (errors.LockHeld, 4, 409, "locked"),
    (errors.Stopped, 3, 423, "outside_window"),
    (errors.Cancelled, 3, 423, "outside_window"),
    (errors.Failed, 1, 500, "job_failed"),
    (errors.SchemaChanged, 1, 500, "job_failed"),
    (errors.DatabaseError, 1, 500, "database_error"),
    (errors.DatabaseUnavailable, 1, 503, "database_unavailable"),
    (errors.ConnectionLost, 1, 503, "database_unavailable"),
    (errors.LockContention, 1, 500, "database_error"),
    (errors.StatementTimeout, 1, 500, "database_error"),
    (errors.NoSuchTable, 1, 500, "database_error"),
]


@pytest.mark.parametrize(("kind", "exit_code", "status", "code"), KINDS)
def test_each_kind_knows_its_exit_code_status_and_code(
    kind: type[errors.ArchiverError], exit_code: int, status: int, code: str
) -> None:
    exc = kind("what happened")
    assert (exc.exit_code, exc.http_status, exc.code) == (exit_code, status, code)
    assert str(exc) == "what happened" and not exc.silent


def test_a_failed_check_has_its_own_exit_code_and_no_error_line() -> None:
    assert errors.ChecksFailed("no match").exit_code == 1
    checks = errors.ChecksFailed("no valid number", errors.EXIT_BAD_INPUT)
    assert checks.exit_code == 2 and checks.silent


def dbapi(errno: int | None, text: str = "server text") -> DBAPIError:
    orig = pymysql.err.OperationalError(errno, text) if errno else pymysql.err.InterfaceError()
    return DBAPIError.instance("SELECT 1", None, orig, pymysql.err.Error)


@pytest.mark.parametrize(
    ("errno", "kind", "message"),
    [
        (2013, errors.ConnectionLost, "the database connection was lost (MySQL error 2013)"),
        (2006, errors.ConnectionLost, "the database connection was lost (MySQL error 2006)"),
        (1927, errors.ConnectionLost, "the database connection was lost (MySQL error 1927)"),
        (2003, errors.DatabaseUnavailable, "database error: (2003, 'server text')"),
        (1205, errors.LockContention, "lock wait timeout or deadlock persisted (MySQL error 1205)"),
        (1213, errors.LockContention, "lock wait timeout or deadlock persisted (MySQL error 1213)"),
        (1969, errors.StatementTimeout, "a statement ran longer than archive.statement_timeout"),
        (1045, errors.AccessDenied, "database error: (1045, 'server text')"),
        (1049, errors.UnknownDatabase, "database error: (1049"),
        (1102, errors.BadDatabaseName, "database error: (1102"),
        (1146, errors.NoSuchTable, "database error: (1146, 'server text')"),
        (1054, errors.NoSuchColumn, "database error: (1054"),
        (1142, errors.NoPrivilege, "database error: (1142"),
        (3024, errors.DatabaseError, "database error: (3024"),
    ],
)
def test_classify_error_names_the_kind_of_each_error_number(
    errno: int, kind: type[errors.DatabaseError], message: str
) -> None:
    for exc in (dbapi(errno), pymysql.err.OperationalError(errno, "server text")):
        found = classify_error(exc)
        assert type(found) is kind
        assert found.errno == errno and found.detail == f"({errno}, 'server text')"
        assert found.message.startswith(message)


def test_classify_error_cuts_a_long_server_text_and_takes_an_error_without_a_number() -> None:
    long = classify_error(dbapi(1064, "x" * 1000))
    assert long.message == "database error: " + f"(1064, '{'x' * 1000}')"[:300]
    assert len(long.detail) > 1000  # the whole text stays for the log
    bare = classify_error(dbapi(None))
    assert type(bare) is errors.DatabaseError and bare.errno is None


def summary(state: str, reason: str | None = None, **kw: object) -> Summary:
    return Summary(
        direction="archive",
        job_id=kw.pop("job_id", 7),  # type: ignore[arg-type]
        state=state,
        counts=Counter(),
        job_counts=Counter(),
        leads=0,
        chunks=0,
        seconds=0.0,
        stop_reason=reason,
        **kw,  # type: ignore[arg-type]
    )


RESUMABLE = "job 7 is resumable: run the same command again or `jobs resume 7`"
RESUME = "resume with: vicidial-archiver jobs resume 7 (or run the same command again)"
NONE_DONE = "after 0 chunks (0 leads examined)"


def test_the_error_of_each_end_of_a_job() -> None:
    assert outcome_error(summary("done")) is None
    stopped = outcome_error(summary("stopped", "--max-runtime of 60s reached"))
    assert type(stopped) is errors.Stopped and stopped.exit_code == 3
    assert str(stopped) == f"stopped: --max-runtime of 60s reached, {NONE_DONE}; {RESUME}"
    assert stopped.prefix == ""  # a planned stop is not printed as an `Error:` line
    failed = outcome_error(summary("failed", "the database connection was lost (MySQL error 2013)"))
    assert type(failed) is errors.Failed and failed.exit_code == 1
    assert str(failed) == f"the database connection was lost (MySQL error 2013); {RESUMABLE}"
    cancelled = outcome_error(summary("cancelled", "job 7 was cancelled (`jobs cancel`)"))
    assert type(cancelled) is errors.Cancelled and cancelled.exit_code == 3
    assert str(cancelled) == (
        f"job 7 was cancelled (`jobs cancel`), {NONE_DONE}; it stopped for good: a new run "
        "starts a new job"
    )
    dry = outcome_error(summary("stopped", "stopped by SIGINT", job_id=None))
    assert str(dry) == f"stopped by Ctrl-C (SIGINT), {NONE_DONE}; nothing was written"
    assert failed.prefix == "Error: "


def test_a_report_that_failed_is_added_to_the_end_of_the_job() -> None:
    full = "cannot write the report /dev/full: No space left on device"
    done = outcome_error(summary("done", report_error=full))
    assert type(done) is errors.Failed and done.exit_code == 1
    assert str(done) == f"{full}; the job itself is done"
    stopped = outcome_error(summary("stopped", "stopped by SIGTERM", report_error=full))
    assert type(stopped) is errors.Stopped
    assert str(stopped) == f"stopped by SIGTERM, {NONE_DONE}; {RESUME}; {full}"


# --- the server's answer for each kind ------------------------------------------------------

SETTINGS = config.load_settings(dsn="mysql://root@db.example:3307/asterisk", env={})
LOCK = "'vicidial-archiver:asterisk'"
WINDOW = "20:00–06:00 UTC, every day"


@pytest.mark.parametrize(
    ("exc", "job_id", "answer"),
    [
        (
            errors.BadInput("lead_ids: 0 is not a lead id"),
            None,
            (400, "bad_request", "lead_ids: 0 is not a lead id", {}),
        ),
        (
            errors.ConnectError("access denied for user 'root' on db.example:3307; …"),
            None,
            (
                503,
                "database_unavailable",
                "cannot connect to MariaDB/MySQL at db.example:3307; the server log has the "
                "details",
                {},
            ),
        ),
        (
            errors.LockHeld("another job holds the lock … (connection 12)"),
            5,
            (
                409,
                "locked",
                f"another job holds the lock {LOCK}: job 5; send the request again when it "
                "has finished",
                {"job_id": 5},
            ),
        ),
        (
            errors.LockHeld("another session"),
            None,
            (
                409,
                "locked",
                f"another job holds the lock {LOCK}; send the request again when it has finished",
                {"job_id": None},
            ),
        ),
        (
            errors.Stopped("outside the off-hours window (…); run inside it"),
            None,
            (423, "outside_window", f"outside the off-hours window ({WINDOW})", {"window": WINDOW}),
        ),
        (
            errors.SchemaDrift("table 'vicidial_list_archive' does not exist"),
            None,
            (
                500,
                "server_not_ready",
                "the server is not set up for archiving; the server log has the details",
                {},
            ),
        ),
        (
            errors.ConfigError("config key …"),
            None,
            (
                500,
                "server_not_ready",
                "the server is not set up for archiving; the server log has the details",
                {},
            ),
        ),
        (
            errors.Failed("the database connection was lost (MySQL error 2013); job 3 …"),
            3,
            (
                500,
                "job_failed",
                "the job failed part-way and is resumable: send the same request again; the "
                "server log has the details",
                {"job_id": 3},
            ),
        ),
        (
            dbapi(2013),
            9,
            (
                503,
                "database_unavailable",
                "the database connection was lost; the server log has the details",
                {"job_id": 9},
            ),
        ),
        (
            dbapi(2003),
            None,
            (
                503,
                "database_unavailable",
                "the database connection was lost; the server log has the details",
                {"job_id": None},
            ),
        ),
        (
            dbapi(1064),
            None,
            (
                500,
                "database_error",
                "a database error; the server log has the details",
                {"job_id": None},
            ),
        ),
    ],
)
def test_api_error_answers_each_kind_with_its_status_code_and_public_message(
    exc: Exception, job_id: int | None, answer: tuple[int, str, str, dict[str, object]]
) -> None:
    window = config.WindowSettings(start="20:00", end="06:00", timezone="UTC")
    settings = config.Settings(**{**SETTINGS.__dict__, "window": window})
    api = serve.api_error(exc, settings, job_id)
    assert (api.status, api.code, api.message, api.extra) == answer
    assert "server text" not in api.message


def test_api_error_reraises_what_is_not_an_error_kind() -> None:
    with pytest.raises(ZeroDivisionError):
        serve.api_error(ZeroDivisionError("a bug"), SETTINGS)
