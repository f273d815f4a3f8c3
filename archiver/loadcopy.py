"""The copy of a chunk by `LOAD DATA LOCAL INFILE`, as pt-archiver's `--bulk-insert` does it.

The chunk's rows are read once from the source as their exact bytes (`CAST(… AS BINARY)` per
column, an explicit column list), written in LOAD DATA's escaped text format into an anonymous
in-memory file, and loaded into the target with `CHARACTER SET binary`: no character set
conversion anywhere, so the target receives the bytes the delete step compares. The file never
rests on disk: a memfd, or where there is none a 0600 file in a private directory.

LOCAL INFILE lets the server name the file the client sends; PyMySQL opens whatever path it is
asked for. So `local_infile` is on only for the one connection that copies (`make_copy_engine`),
and that connection sends only the file its own statement named, only while that statement
runs: any other request is answered with an empty file and an error (`LocalInfileRefused`).

Where the client or the server refuses LOCAL INFILE, `availability` says so and why, and `load`
raises `LoadUnavailable` having written nothing: the caller copies the way it did before.

Guarantees: the load is one statement, `IGNORE` (insert-if-missing: a row already in the target
is left as it is, as `ChunkSql.insert_literals` does). On InnoDB it belongs to the connection's
transaction; on MyISAM rows are written as they are read and a statement cut short keeps the
rows it wrote. Either way nothing is trusted: the delete proves each copy byte for byte.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pymysql
from pymysql.connections import MySQLResult
from pymysql.constants import CLIENT
from pymysql.converters import escape_item
from pymysql.protocol import LoadLocalPacketWrapper
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from archiver.config import Settings
from archiver.db import Db, make_engine, mysql_errno, q
from archiver.errors import ArchiverError
from archiver.schema import Column, Table, charsets_differ

# The server refuses LOCAL INFILE: MySQL 5.x / MariaDB's generic error, MySQL 8's, MariaDB's.
ER_NOT_ALLOWED_COMMAND = 1148
ER_CLIENT_LOCAL_FILES_DISABLED = 3948
ER_LOAD_INFILE_CAPABILITY_DISABLED = 4166
REFUSED = {
    ER_NOT_ALLOWED_COMMAND,
    ER_CLIENT_LOCAL_FILES_DISABLED,
    ER_LOAD_INFILE_CAPABILITY_DISABLED,
}
# The client refused a file request (libmysqlclient's number for the same refusal).
CR_LOAD_DATA_LOCAL_INFILE_REJECTED = 2068

SPOOL_PREFIX = "vicidial-archiver-"


class LoadUnavailable(ArchiverError):
    """LOAD DATA LOCAL INFILE cannot be used here; nothing was written. Copy another way."""


class LocalInfileRefused(pymysql.err.OperationalError):  # type: ignore[misc]
    """The server asked for a file this connection did not name; nothing was sent."""


# --- the file format --------------------------------------------------------------------------

NULL = b"\\N"
# Backslash first: the escapes that follow add backslashes of their own.
_ESCAPES = ((b"\\", b"\\\\"), (b"\t", b"\\t"), (b"\n", b"\\n"), (b"\r", b"\\r"), (b"\0", b"\\0"))


def escape(value: bytes) -> bytes:
    """A value as LOAD DATA reads it back byte for byte with `ESCAPED BY '\\\\'`, fields ended
    by tab and lines by newline, nothing enclosing: the escape character, the two terminators,
    CR and NUL are escaped. `\\N` alone is NULL, so the text `\\N` goes as `\\\\N`, and the word
    NULL is text (it means NULL only when fields are enclosed)."""
    for raw, escaped in _ESCAPES:
        if raw in value:
            value = value.replace(raw, escaped)
    return value


def encode_rows(rows: Sequence[Sequence[bytes | None]]) -> bytes:
    """Rows of exact bytes (None for NULL) as the file's contents. A row with nothing to
    escape, most of them, is joined as it is: escaping field by field in Python costs more
    than the load itself."""
    lines = []
    for row in rows:
        # TypeError for a decoded value (str): it has lost its bytes, a bug, not data to load.
        line = b"\t".join([NULL if v is None else v for v in row])
        # Nothing to escape: one backslash per NULL marker, one tab per separator, no other
        # byte that needs it.
        if (
            line.count(b"\\") != row.count(None)
            or line.count(b"\t") != len(row) - 1
            or b"\n" in line
            or b"\r" in line
            or b"\0" in line
        ):
            line = b"\t".join([NULL if v is None else escape(v) for v in row])
        lines.append(line)
    return b"\n".join(lines) + b"\n" if lines else b""


def _sql_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


# --- the file that is never on disk -----------------------------------------------------------


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _memfd() -> int | None:
    if not hasattr(os, "memfd_create") or not os.path.isdir("/proc/self/fd"):
        return None
    try:
        return os.memfd_create("vicidial-archiver-chunk", os.MFD_CLOEXEC)
    except OSError:  # ENOSYS on old kernels, EPERM under some sandboxes: use a file
        return None


@contextmanager
def spool(data: bytes, *, kind: str = "auto") -> Iterator[str]:
    """A path to `data` for the length of the `with`.

    `memfd` (the default where the kernel has it): an anonymous in-memory file, named by
    `/proc/self/fd/N`; nothing on any file system, gone with the process however it ends.
    `file`: a 0600 file in a private 0700 directory. Where /proc exists it is unlinked, with
    its directory, before a byte is written and read through `/proc/self/fd/N`, so even a
    SIGKILL leaves nothing; elsewhere it is named, and removed when the `with` ends however
    it ends (only a SIGKILL during the load itself can leave it)."""
    if kind not in ("auto", "memfd", "file"):
        raise ValueError(f"spool kind {kind!r}: use auto, memfd or file")
    fd = _memfd() if kind in ("auto", "memfd") else None
    if kind == "memfd" and fd is None:
        raise OSError("memfd_create is not available here")
    if fd is not None:
        try:
            _write_all(fd, data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    private = tempfile.mkdtemp(prefix=SPOOL_PREFIX)
    path = os.path.join(private, "chunk.tsv")
    fd = -1
    try:
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(path, flags, 0o600)
        if os.path.isdir("/proc/self/fd"):
            os.unlink(path)
            os.rmdir(private)
            path = f"/proc/self/fd/{fd}"
        _write_all(fd, data)
        yield path
    finally:
        if fd >= 0:
            os.close(fd)
        if os.path.isdir(private):
            try:
                os.unlink(os.path.join(private, "chunk.tsv"))
            except FileNotFoundError:
                pass
            os.rmdir(private)


# --- the connection that copies ---------------------------------------------------------------


class _GuardedResult(MySQLResult):  # type: ignore[misc]
    def _read_load_local_packet(self, first_packet: Any) -> None:
        conn = self.connection
        asked = LoadLocalPacketWrapper(first_packet).filename
        asked = asked if isinstance(asked, bytes) else os.fsencode(asked)
        if isinstance(conn, CopyConnection) and conn.sends(asked):
            super()._read_load_local_packet(first_packet)
            return
        # Answer with an empty file, which ends the statement having loaded nothing, and read
        # the server's reply: the connection stays usable.
        conn.write_packet(b"")
        try:
            conn._read_packet()
        except pymysql.err.MySQLError:
            pass  # the server's answer to the empty file; the refusal below is the error
        raise LocalInfileRefused(
            CR_LOAD_DATA_LOCAL_INFILE_REJECTED,
            f"the server asked for the file {asked.decode('utf-8', 'replace')!r}, which this "
            "connection did not name; it was not sent",
        )


class CopyConnection(pymysql.connections.Connection):  # type: ignore[misc]
    """A PyMySQL connection that sends, on a LOCAL INFILE request, only the one file named by
    the statement it is running (`sending`), and at no other time.

    PyMySQL reads every statement's first reply packet in `MySQLResult.read`, which sends the
    file a LOCAL INFILE request names; `_read_query_result` is where a connection makes its
    results, so it is overridden to make guarded ones. PyMySQL's own flag `_local_infile` is
    also held off but while a file is allowed: another path to a file request (SHOW WARNINGS)
    is refused by PyMySQL itself."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._allowed: bytes | None = None
        super().__init__(*args, **kwargs)
        self.local_infile_requested = bool(self.client_flag & CLIENT.LOCAL_FILES)
        self._local_infile = False

    def sends(self, asked: bytes) -> bool:
        return self._allowed is not None and asked == self._allowed

    @contextmanager
    def sending(self, path: str) -> Iterator[None]:
        self._allowed = os.fsencode(path)
        self._local_infile = self.local_infile_requested
        try:
            yield
        finally:
            self._allowed = None
            self._local_infile = False

    def _read_query_result(self, unbuffered: bool = False) -> int:
        # PyMySQL's own body, with the guarded result.
        self._result = None
        result = _GuardedResult(self)
        if unbuffered:
            result.init_unbuffered_query()
        else:
            result.read()
        self._result = result
        if result.server_status is not None:
            self.server_status = result.server_status
        return int(result.affected_rows)


def make_copy_engine(settings: Settings, *, database: str | None = None) -> Engine:
    """An engine like `db.make_engine`'s (same session settings: time zone, sql_mode) whose
    connections are `CopyConnection`s with `local_infile` on. Only the copy uses it."""
    engine = make_engine(settings, database=database)

    @event.listens_for(engine, "do_connect")
    def _connect(_dialect: Any, _record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        return CopyConnection(*cargs, **{**cparams, "local_infile": True})

    return engine


def _raw(db: Db) -> Any:
    return db.conn.connection.dbapi_connection


@dataclass(frozen=True)
class Availability:
    """Whether the copy can use LOAD DATA LOCAL INFILE on a connection, and if not, why."""

    available: bool
    reason: str = ""


def server_refusal(local_infile: Any) -> str | None:
    """Why the server refuses LOCAL INFILE, from its `@@GLOBAL.local_infile`; None if it
    allows it."""
    if str(local_infile).strip().upper() in ("1", "ON"):
        return None
    return (
        "the server refuses LOAD DATA LOCAL INFILE (@@GLOBAL.local_infile is "
        f"{local_infile!r}); SET GLOBAL local_infile = 1 allows it"
    )


def availability(db: Db) -> Availability:
    raw = _raw(db)
    if not isinstance(raw, CopyConnection):
        return Availability(
            False, "this connection does not allow LOCAL INFILE (it was not opened to copy)"
        )
    if not raw.local_infile_requested:
        return Availability(False, "the client refuses LOCAL INFILE on this connection")
    if not raw.server_capabilities & CLIENT.LOCAL_FILES:
        return Availability(False, "the server does not offer LOCAL INFILE")
    refusal = server_refusal(db.scalar("SELECT @@GLOBAL.local_infile"))
    return Availability(refusal is None, refusal or "")


# --- the copy ---------------------------------------------------------------------------------


@dataclass
class Rows:
    """A chunk's rows as read from the source: lead ids, each row's columns as exact bytes (in
    `LoadCopy.columns` order), and the extra expressions asked for, per row."""

    ids: list[int] = field(default_factory=list)
    values: list[tuple[bytes | None, ...]] = field(default_factory=list)
    extra: list[tuple[Any, ...]] = field(default_factory=list)


@dataclass
class LoadCopy:
    """The copy of one direction, built once per run from the reflected tables: `src` rows
    into `dst`, every shared column; the `overrides` (a restore's --set-status,
    --reset-called, --set-called-count) are set by the load itself. A strategy reads a chunk
    (`read`, on any connection of the run, in the same time zone as the load's) and loads it
    (`load`, on a connection of `make_copy_engine`), or does both at once (`copy`)."""

    src: Table
    dst: Table
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        lowered = {k.lower() for k in self.overrides}
        self.set_columns: list[Column] = [
            c for c in self.src.columns if self.dst.column(c.name) and c.name.lower() in lowered
        ]
        self.columns: list[Column] = [
            c for c in self.src.columns if self.dst.column(c.name) and c.name.lower() not in lowered
        ]
        if len(self.set_columns) != len(self.overrides):
            unknown = sorted(lowered - {c.name.lower() for c in self.set_columns})
            raise ValueError(f"overrides name columns the two tables do not share: {unknown}")

    def _read_expr(self, col: Column) -> str:
        expr = f"s.{q(col.name)}"
        other = self.dst.column(col.name)
        if charsets_differ(col, other) and other is not None:
            # The file goes in as binary: bytes of the target's character set, as
            # `RowCopier` converts (schema checks refused a narrower target).
            expr = f"CONVERT({expr} USING {other.charset})"
        return f"CAST({expr} AS BINARY)"

    def read_sql(self, extra: Sequence[str] = ()) -> str:
        """The chunk's source rows (`:ids`), lead_id first; `extra` expressions over the
        source aliased `s` follow the columns (a row's fingerprint, read in the same pass)."""
        exprs = [self._read_expr(c) for c in self.columns] + list(extra)
        return (
            f"SELECT s.`lead_id`, {', '.join(exprs)}\nFROM {q(self.src.name)} AS s\n"
            "WHERE s.`lead_id` IN :ids ORDER BY s.`lead_id`"
        )

    def read(self, db: Db, ids: Sequence[int], extra: Sequence[str] = ()) -> Rows:
        rows = Rows()
        if not ids:
            return rows
        width = len(self.columns)
        for r in db.rows(self.read_sql(extra), {"ids": list(ids)}):
            rows.ids.append(int(r[0]))
            rows.values.append(tuple(r[1 : 1 + width]))
            rows.extra.append(tuple(r[1 + width :]))
        return rows

    def load_sql(self, path: str) -> str:
        names = ", ".join(q(c.name) for c in self.columns)
        sets = ", ".join(
            f"{q(c.name)} = {escape_item(self._override(c), 'utf8mb4')}" for c in self.set_columns
        )
        return (
            f"LOAD DATA LOCAL INFILE {_sql_string(path)} IGNORE INTO TABLE {q(self.dst.name)}\n"
            "CHARACTER SET binary\n"
            "FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\'\n"
            "LINES TERMINATED BY '\\n'\n"
            f"({names})" + (f"\nSET {sets}" if sets else "")
        )

    def _override(self, col: Column) -> Any:
        return next(v for k, v in self.overrides.items() if k.lower() == col.name.lower())

    def load(self, db: Db, rows: Rows, *, spool_kind: str = "auto") -> int:
        """Load the rows into the target; returns how many were inserted (a row whose lead_id
        the target holds already is skipped). `db` must be a `make_copy_engine` connection."""
        if not rows.values:
            return 0
        if not isinstance(_raw(db), CopyConnection):
            raise LoadUnavailable(availability(db).reason)
        shown = self.load_sql("<the chunk's rows, in memory>")
        if db.dry_run:
            return db.write_literal("", shown)
        with spool(encode_rows(rows.values), kind=spool_kind) as path:
            try:
                with _raw(db).sending(path):
                    return db.write_literal(self.load_sql(path), shown)
            except DBAPIError as exc:
                if mysql_errno(exc) in REFUSED:
                    raise LoadUnavailable(
                        f"the server refused LOAD DATA LOCAL INFILE: {exc.orig}"
                    ) from exc
                raise

    def copy(self, db: Db, ids: Sequence[int]) -> int:
        """Read the chunk's rows and load them, on one `make_copy_engine` connection."""
        return self.load(db, self.read(db, ids))
