"""Connection, session settings, and the one execute helper every statement goes through.

The helper is where statement logging, timing and `--dry-run` live: in a dry run a write
statement is rendered and kept for display instead of being executed.
"""

from __future__ import annotations

import re
import socket
import struct
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pymysql
from pymysql.constants import CR
from pymysql.converters import escape_item
from sqlalchemy import bindparam, create_engine, event, text
from sqlalchemy.engine import Connection, CursorResult, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.pool import NullPool
from sqlalchemy.sql.elements import TextClause

from archiver.config import DbSettings, Settings
from archiver.errors import (
    AccessDenied,
    BadDatabaseName,
    ConnectError,
    ConnectionLost,
    DatabaseError,
    DatabaseUnavailable,
    LockContention,
    NoPrivilege,
    NoSuchColumn,
    NoSuchTable,
    StatementTimeout,
    UnknownDatabase,
)
from archiver.logging import get_logger

# Accepts VICIdial's zero dates whatever the server's GLOBAL sql_mode is; truncation is not an
# error here because every copy is verified byte-for-byte before a source row is deleted.
SESSION_SQL_MODE = "NO_ENGINE_SUBSTITUTION,ALLOW_INVALID_DATES"

# MySQL error numbers. classify_error turns them into kinds (archiver.errors); other modules
# test the kind, not the number.
ER_LOCK_WAIT_TIMEOUT = 1205
ER_LOCK_DEADLOCK = 1213
ER_ACCESS_DENIED = 1045
ER_DBACCESS_DENIED = 1044
ER_BAD_DB = 1049
ER_WRONG_DB_NAME = 1102
ER_NO_SUCH_TABLE = 1146
ER_BAD_FIELD = 1054
ER_TABLEACCESS_DENIED = 1142
ER_COLUMNACCESS_DENIED = 1143
RETRYABLE = {ER_LOCK_WAIT_TIMEOUT, ER_LOCK_DEADLOCK}
ER_STATEMENT_TIMEOUT = 1969
CR_MALFORMED_PACKET = 2027  # what `Db.run` makes of an answer no MariaDB/MySQL server sends
CONNECTION_LOST = {2006, 2013, 2014, 2055, 1927, CR_MALFORMED_PACKET}
UNREACHABLE = {2003, 2005}  # no server at that address, or no such host
CANNOT_CONNECT = UNREACHABLE | {2013}  # at connect time, a lost handshake is no server either


TAG = "vicidial-archiver"


def q(name: str) -> str:
    """Backquote an identifier (`rank` is reserved in MySQL 8)."""
    return "`" + name.replace("`", "``") + "`"


def mysql_errno(exc: BaseException) -> int | None:
    orig = getattr(exc, "orig", exc)
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):
        return args[0]
    return None


_KINDS: tuple[tuple[frozenset[int], type[DatabaseError]], ...] = (
    (frozenset(CONNECTION_LOST), ConnectionLost),
    (frozenset(UNREACHABLE), DatabaseUnavailable),
    (frozenset(RETRYABLE), LockContention),
    (frozenset({ER_STATEMENT_TIMEOUT}), StatementTimeout),
    (frozenset({ER_ACCESS_DENIED, ER_DBACCESS_DENIED}), AccessDenied),
    (frozenset({ER_BAD_DB}), UnknownDatabase),
    (frozenset({ER_WRONG_DB_NAME}), BadDatabaseName),
    (frozenset({ER_NO_SUCH_TABLE}), NoSuchTable),
    (frozenset({ER_BAD_FIELD}), NoSuchColumn),
    (frozenset({ER_TABLEACCESS_DENIED, ER_COLUMNACCESS_DENIED}), NoPrivilege),
)


def classify_error(exc: BaseException) -> DatabaseError:
    """The kind of a database error (a DBAPIError or PyMySQL's own), with the message a job
    records as its stop reason. The one place that reads MySQL error numbers."""
    errno = mysql_errno(exc)
    detail = str(getattr(exc, "orig", exc))
    kind = next((k for numbers, k in _KINDS if errno in numbers), DatabaseError)
    if errno == CR_MALFORMED_PACKET:
        message = (
            f"the database server sent an answer MariaDB/MySQL never sends ({detail[:200]}); "
            "the connection was given up"
        )
    elif kind is ConnectionLost:
        message = f"the database connection was lost (MySQL error {errno})"
    elif kind is LockContention:
        message = f"lock wait timeout or deadlock persisted (MySQL error {errno})"
    elif kind is StatementTimeout:
        message = (
            "a statement ran longer than archive.statement_timeout and was stopped; a costly "
            "--where is the usual cause: make it cheaper, or raise the limit"
        )
    else:
        message = f"database error: {detail[:300]}"
    return kind(message, errno, detail)


def make_engine(
    settings: Settings,
    *,
    database: str | None = None,
    handshake_timeout: float | None = None,
) -> Engine:
    """An engine whose connections have the session settings below.
    A connection attempt takes at most [database] connect_timeout for TCP, then at most
    `handshake_timeout` (connect_timeout by default) in all for the handshake, the login and
    the session settings, however slowly the server answers (`bound_connections`)."""
    s = settings
    handshake = s.db.connect_timeout if handshake_timeout is None else handshake_timeout
    engine = create_engine(
        s.db.url(database=database),
        poolclass=NullPool,
        connect_args={
            "connect_timeout": s.db.connect_timeout,
            # Each read and write of the handshake too; bound_connections bounds their sum.
            "read_timeout": handshake,
            "write_timeout": handshake,
            "autocommit": True,
            "binary_prefix": True,
            **password_arg(s.db.password),
        },
        isolation_level="AUTOCOMMIT",
        # Chunks of varying size (--chunk-time) expand `IN :ids` to a different statement each
        # time; a cache of every variant would grow with the run. Compiling text is cheap.
        query_cache_size=0,
    )

    @event.listens_for(engine, "connect")
    def _session(dbapi_conn: Any, _record: Any) -> None:
        # Connected: from now on a statement may run long (a chunk, an ALTER of `schema
        # sync`); PyMySQL reads these before every read and write and has no public setter.
        # The session settings below are still bounded by the attempt's deadline.
        dbapi_conn._read_timeout = None
        dbapi_conn._write_timeout = None
        with dbapi_conn.cursor() as cur:
            cur.execute(
                "SET SESSION time_zone = '+00:00', sql_mode = %s,"
                " innodb_lock_wait_timeout = %s, lock_wait_timeout = %s",
                (SESSION_SQL_MODE, s.innodb_lock_wait_timeout, s.lock_wait_timeout),
            )
            # Row locks only on rows read (no gap locks): the dialer keeps inserting new leads.
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
            if "mariadb" in dbapi_conn.get_server_info().lower():
                # The chunk's scan runs one correlated subquery per lead and guard table, each
                # for a different lead_id: MariaDB's subquery cache only adds a lookup to each
                # (about 2 ms per 500-lead chunk). MySQL has no such cache, nor the flag.
                cur.execute("SET SESSION optimizer_switch = 'subquery_cache=off'")

    # Registered after `_session`: the deadline ends once the session settings are made.
    bound_connections(engine, handshake)
    return engine


class DeadlineSocket(socket.socket):
    """A TCP socket whose every read and write ends by `deadline` (time.monotonic()) while one
    is set. PyMySQL's timeouts bound each read, not the handshake: a server that sends its
    greeting a byte a second would keep a connection attempt going for ever."""

    deadline: float | None = None
    _asked: float | None = None  # the timeout PyMySQL last set

    def settimeout(self, value: float | None) -> None:
        self._asked = value
        super().settimeout(value)

    def clear_deadline(self) -> None:
        self.deadline = None
        super().settimeout(self._asked)

    def _bound(self) -> None:
        if self.deadline is None:
            return
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the connection attempt ran out of time")
        super().settimeout(left if self._asked is None else min(left, self._asked))

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        self._bound()
        return super().recv_into(buffer, nbytes, flags)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        self._bound()
        return super().recv(bufsize, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        self._bound()
        super().sendall(data, flags)

    def send(self, data: Any, flags: int = 0) -> int:
        self._bound()
        return super().send(data, flags)


def open_connection(cargs: Any, cparams: dict[str, Any], seconds: float) -> Any:
    """A PyMySQL connection over a DeadlineSocket: TCP within its connect_timeout, then the
    handshake and login within `seconds` in all. A server too slow is PyMySQL's usual error
    for a lost handshake (2013), or 2003 when TCP fails, as without the deadline."""
    conn = pymysql.connections.Connection(*cargs, **{**cparams, "defer_connect": True})
    try:
        tcp = socket.create_connection((conn.host, conn.port), conn.connect_timeout)
    except OSError as exc:
        raise pymysql.err.OperationalError(
            CR.CR_CONN_HOST_ERROR, f"Can't connect to MySQL server on {conn.host!r} ({exc})"
        ) from None
    tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock = DeadlineSocket(fileno=tcp.detach())
    sock.deadline = time.monotonic() + seconds
    conn.connect(sock)  # closes the socket if it fails
    conn.host_info = f"socket {conn.host}:{conn.port}"
    return conn


def end_deadline(dbapi_conn: Any) -> None:
    sock = getattr(dbapi_conn, "_sock", None)
    if isinstance(sock, DeadlineSocket):
        sock.clear_deadline()


def bound_connections(engine: Engine, seconds: float) -> None:
    """Make every connection of `engine` by `open_connection`: the handshake, the login and
    the engine's `connect` listeners registered before this call end within `seconds` of the
    TCP connection, whatever pace the server sends its bytes at."""

    @event.listens_for(engine, "do_connect")
    def _open(_dialect: Any, _rec: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        return open_connection(cargs, cparams, seconds)

    @event.listens_for(engine, "connect")
    def _connected(dbapi_conn: Any, _rec: Any) -> None:
        end_deadline(dbapi_conn)


def password_arg(password: str) -> dict[str, Any]:
    """The password as UTF-8 bytes, as the mysql client sends it: PyMySQL would encode a str as
    latin-1 (a traceback for 'пароль', the wrong bytes for 'pässwörd')."""
    return {"password": password.encode("utf-8")} if password else {}


def set_statement_timeout(db: Db, seconds: int) -> None:
    """Bound every statement of this connection (MariaDB's max_statement_time; MySQL has no
    equivalent for writes) and the client's wait for an answer a minute beyond it."""
    if not seconds or "mariadb" not in str(db.scalar("SELECT VERSION()")).lower():
        return
    db.run("SET SESSION max_statement_time = :t", {"t": seconds})
    raw = db.conn.connection.dbapi_connection
    if raw is not None:
        raw._read_timeout = seconds + 60
        raw._write_timeout = seconds + 60


def describe_connect_error(exc: BaseException, db: DbSettings) -> str:
    kind = classify_error(exc)
    where = db.safe()
    if isinstance(kind, AccessDenied) and kind.errno == ER_DBACCESS_DENIED:
        # The password was right: the server knows the user but not this database for it
        # (MariaDB answers the same for a database that does not exist).
        return (
            f"user {db.user!r} has no access to database {db.database!r} on {db.hostport} "
            "(the password is right); check the database name (--dsn, VARDB_database in "
            "astguiclient.conf, [database] database) or grant the account access to it"
        )
    if isinstance(kind, AccessDenied):
        return (
            f"access denied for user {db.user!r} on {db.hostport}; check the user and "
            "password (--dsn, ARCHIVER_DB_PASSWORD or --astguiclient)"
        )
    if isinstance(kind, UnknownDatabase):
        return f"database {db.database!r} does not exist on {db.hostport}; check --dsn"
    if isinstance(kind, BadDatabaseName):
        return f"{db.database!r} is not a valid database name; check --dsn"
    if kind.errno in CANNOT_CONNECT:
        return (
            f"cannot connect to MariaDB/MySQL at {db.hostport} ({where}); "
            "check that the server is running and the host and port are right"
        )
    return f"cannot connect to {where}: MySQL error {kind.errno}; check the connection settings"


# What PyMySQL and SQLAlchemy raise, besides DB-API errors, on an answer a MariaDB/MySQL server
# never sends: a LOAD DATA LOCAL request the client did not ask for (RuntimeError), a bare OK
# to `SELECT VERSION()` (TypeError), a truncated or garbled packet (struct.error, IndexError,
# ValueError, UnicodeDecodeError, KeyError for an unknown charset id, AssertionError).
PROTOCOL_ERRORS: tuple[type[BaseException], ...] = (
    RuntimeError,
    TypeError,
    ValueError,
    IndexError,
    KeyError,
    AttributeError,
    AssertionError,
    struct.error,
)


def protocol_error(sql: str, exc: BaseException) -> DBAPIError:
    """`exc`, raised while reading the server's answer, as the DB-API error of a malformed
    packet: every caller that handles database errors handles it (a job fails resumable)."""
    why = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
    orig = pymysql.err.OperationalError(CR_MALFORMED_PACKET, f"malformed answer: {why}")
    error: DBAPIError = DBAPIError.instance(sql, None, orig, pymysql.err.Error)
    return error


def _read_from_the_server(exc: BaseException) -> bool:
    """`exc` was raised by PyMySQL reading a packet (not by this tool or a parameter's
    conversion): the innermost frame of its traceback is PyMySQL's protocol code."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    module = str(tb.tb_frame.f_globals.get("__name__", "")) if tb is not None else ""
    return module in ("pymysql.connections", "pymysql.protocol", "pymysql.charset")


def connect(engine: Engine, settings: Settings) -> Connection:
    try:
        return engine.connect()
    except (DBAPIError, pymysql.err.MySQLError) as exc:
        raise ConnectError(describe_connect_error(exc, settings.db)) from None
    except PROTOCOL_ERRORS as exc:  # the server's answer, not this tool: exit 2, one line
        why = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        raise ConnectError(
            f"the server at {settings.db.hostport} ({settings.db.safe()}) answered the "
            f"connection as no MariaDB/MySQL server does ({why}); check the host and port"
        ) from None


class Db:
    """One connection for one run, with the execute helper.

    Everything the tool sends to the server goes through `run`; `write=True` marks a statement
    that changes data, which a dry run renders instead of executing.
    """

    def __init__(self, conn: Connection, *, dry_run: bool = False) -> None:
        self.conn = conn
        self.dry_run = dry_run
        self.planned: list[str] = []
        self.log = get_logger()
        self.in_tx = False
        # Leads every statement sent, so SHOW PROCESSLIST and the slow log name this tool
        # (and the job and chunk) as the holder of a lock: `tag_job`.
        self.tag = f"/* {TAG} */ "

    def tag_job(self, job_id: int | None, chunk_no: int | None = None) -> None:
        """Name the job (and its chunk) in the tag of the statements sent from now on. Only
        numbers enter the comment: no user text can end it."""
        parts = [TAG]
        if job_id is not None:
            parts.append(f"job {int(job_id)}")
        if chunk_no is not None:
            parts.append(f"chunk {int(chunk_no)}")
        self.tag = "/* " + " ".join(parts) + " */ "

    def _clause(self, sql: str, params: Mapping[str, Any]) -> TextClause:
        clause = text(sql)
        expanding = [k for k, v in params.items() if isinstance(v, list | tuple)]
        if expanding:
            clause = clause.bindparams(*(bindparam(k, expanding=True) for k in expanding))
        return clause

    def render(self, sql: str, params: Mapping[str, Any] | None = None) -> str:
        """The statement with its values inlined, for display only (never executed)."""
        params = dict(params or {})

        def literal(value: Any) -> str:
            if isinstance(value, list | tuple):
                return "(" + ", ".join(literal(v) for v in value) + ")"
            return str(escape_item(value, "utf8mb4"))

        def swap(m: re.Match[str]) -> str:
            name = m.group(1)
            return literal(params[name]) if name in params else m.group(0)

        return re.sub(r"(?<![:\w]):(\w+)", swap, sql).strip()

    def run(
        self, sql: str, params: Mapping[str, Any] | None = None, *, write: bool = False
    ) -> CursorResult[Any] | None:
        params = dict(params or {})
        if write and self.dry_run:
            self.planned.append(self.render(sql, params))
            return None
        started = time.perf_counter()
        try:
            result = self.conn.execute(self._clause(self.tag + sql, params), params)
        except SQLAlchemyError:
            raise
        except PROTOCOL_ERRORS as exc:
            if not _read_from_the_server(exc):
                raise
            raise protocol_error(sql, exc) from exc
        ms = (time.perf_counter() - started) * 1000
        self.log.debug(
            "sql",
            sql=" ".join(sql.split())[:300],
            ms=round(ms, 2),
            rows=result.rowcount if write else None,
        )
        return result

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        result = self.run(sql, params)
        assert result is not None
        return [tuple(r) for r in result.fetchall()]

    def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        result = self.run(sql, params)
        assert result is not None
        return result.scalar()

    def write(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        """Run a data-changing statement; returns its row count (0 in a dry run)."""
        result = self.run(sql, params, write=True)
        return 0 if result is None else int(result.rowcount)

    def write_literal(self, sql: str, shown: str) -> int:
        """A statement whose values are SQL literals already (built by the server): sent as it
        is, not parsed for bind parameters. `shown` stands for it in a dry run."""
        if self.dry_run:
            self.planned.append(shown)
            return 0
        started = time.perf_counter()
        cursor = self.conn.connection.cursor()
        try:
            cursor.execute(self.tag + sql)
            count = int(cursor.rowcount)
        except pymysql.err.Error as exc:
            # The raw cursor bypasses SQLAlchemy: wrap its error as `run` would, so callers
            # that handle DBAPIError (retry, fail resumable) see this one too.
            raise DBAPIError.instance(shown, None, exc, pymysql.err.Error) from exc
        except PROTOCOL_ERRORS as exc:
            if not _read_from_the_server(exc):
                raise
            raise protocol_error(shown, exc) from exc
        finally:
            cursor.close()
        ms = round((time.perf_counter() - started) * 1000, 2)
        self.log.debug("sql", sql=sql[:300], ms=ms, rows=count)
        return count

    @contextmanager
    def transaction(self, enabled: bool = True) -> Iterator[None]:
        """BEGIN … COMMIT when `enabled` (InnoDB); a no-op otherwise (MyISAM autocommit)."""
        if not enabled or self.dry_run:
            yield
            return
        self.run("START TRANSACTION")
        self.in_tx = True
        try:
            yield
        except BaseException:
            self.in_tx = False
            try:
                self.run("ROLLBACK")
            except SQLAlchemyError:
                # The connection is gone (after a lost connection SQLAlchemy refuses any
                # statement with PendingRollbackError); the server rolls back on its own.
                pass
            raise
        self.in_tx = False
        self.run("COMMIT")
