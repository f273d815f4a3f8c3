"""The export file: archived leads as a gzip-compressed CSV, and the manifest beside it.

Owns: the file format (a field's encoding, the header, a row's digest), writing a file under a
temporary name and publishing it with its manifest, reading a file and checking it against its
manifest, and the SQL text that reads a column's exact bytes or compares a column with them
(`bytes_expr`, `literal`, `rows_table`, `equal_to`). Must not: execute a statement or
choose which leads go in a file (archiver.commands does both).

The format (`FORMAT`), byte-exact for every value:

- RFC 4180 CSV in UTF-8, gzip-compressed, one line per row: a header of the archive table's
  columns in the table's order, then `row_sha256`; rows in ascending lead_id order.
- A field is `\\N` for NULL; otherwise the column's exact bytes (`CAST(col AS BINARY)`; a FLOAT
  or DOUBLE as `CAST(CAST(col AS DOUBLE) AS BINARY)`, every digit) written as text with these
  escapes: a backslash as `\\\\`, TAB, LF and CR as `\\t`, `\\n`, `\\r`, any other control
  byte (0x00-0x1F, 0x7F) and any byte that is not part of valid UTF-8 as `\\xHH` (two lowercase
  hex digits). So '' is an empty field, the text `NULL` is `NULL` and the text `\\N` is
  `\\\\N`; a field holding a comma or a double quote is quoted the CSV way.
- `row_sha256` is the SHA-256 of the row's canonical bytes: per column, `N` for NULL, or `V`,
  the value's length as 8 bytes big-endian and the value's bytes.
- The manifest, PATH + ".manifest.json", holds the format, the table and its columns (every
  field of the reflected column), the row count, the first and last lead_id, `rows_sha256` (the
  SHA-256 of every row's 32-byte digest in file order) and `file_sha256` and `file_bytes` of
  the compressed file as written.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import hashlib
import io
import json
import os
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

from archiver.db import q
from archiver.errors import BadInput
from archiver.schema import Column, Table
from archiver.steps import FLOATS, QUOTED_TYPES

FORMAT = "vicidial-archiver-export/1"
DIGEST_COLUMN = "row_sha256"
MANIFEST_SUFFIX = ".manifest.json"
NULL_FIELD = "\\N"

Value = bytes | None

_PLAIN = re.compile(rb"[\x00-\x1f\x7f\\\x80-\xff]")
_ESCAPES = {ord("\\"): "\\\\", ord("\t"): "\\t", ord("\n"): "\\n", ord("\r"): "\\r"}
_UNESCAPE = re.compile(r"\\(x[0-9a-f]{2}|[\\tnr])|\\")
_SIMPLE = {"\\": b"\\", "t": b"\t", "n": b"\n", "r": b"\r"}


# --- a field ---------------------------------------------------------------------------------


def encode_field(value: Value) -> str:
    """A value as its CSV field (before CSV quoting)."""
    if value is None:
        return NULL_FIELD
    if not _PLAIN.search(value):
        return value.decode("ascii")
    text = value.decode("utf-8", "surrogateescape")
    out = []
    for ch in text:
        o = ord(ch)
        if o in _ESCAPES:
            out.append(_ESCAPES[o])
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        elif 0xDC80 <= o <= 0xDCFF:  # a byte that is not valid UTF-8
            out.append(f"\\x{o - 0xDC00:02x}")
        else:
            out.append(ch)
    return "".join(out)


def decode_field(field: str) -> Value:
    """A CSV field back to its value; ValueError for an escape the format does not have."""
    if field == NULL_FIELD:
        return None
    if "\\" not in field:
        return field.encode("utf-8")
    parts: list[bytes] = []
    pos = 0
    for m in _UNESCAPE.finditer(field):
        parts.append(field[pos : m.start()].encode("utf-8"))
        code = m.group(1)
        if code is None:
            raise ValueError(f"a backslash not followed by \\\\, t, n, r or xHH at {m.start()}")
        parts.append(_SIMPLE[code] if len(code) == 1 else bytes([int(code[1:], 16)]))
        pos = m.end()
    parts.append(field[pos:].encode("utf-8"))
    return b"".join(parts)


def row_digest(values: Sequence[Value]) -> bytes:
    canonical = b"".join(
        b"N" if v is None else b"V" + len(v).to_bytes(8, "big") + v for v in values
    )
    return hashlib.sha256(canonical).digest()


# --- SQL text ---------------------------------------------------------------------------------


def bytes_expr(col: Column, alias: str = "") -> str:
    """The column's exact bytes: what a file holds and what a purge or an import compares."""
    expr = f"{alias}.{q(col.name)}" if alias else q(col.name)
    if col.data_type in FLOATS:
        expr = f"CAST({expr} AS DOUBLE)"  # a FLOAT's text has 6 digits, a DOUBLE's all
    return f"CAST({expr} AS BINARY)"


def hex_literal(value: bytes) -> str:
    return "X'" + value.hex().upper() + "'"


def literal(col: Column, value: Value) -> str:
    """The value for an INSERT into `col`: numbers, dates and times as the text they are
    (a hex literal in a number's place would be read as a number), anything else as X'…'."""
    if value is None:
        return "NULL"
    if col.data_type in QUOTED_TYPES:
        return f"CONVERT({hex_literal(value)} USING ascii)"
    return hex_literal(value)


# The longest value a derived table of literals holds exactly: past it MariaDB 10.11 sizes the
# UNION's column modulo 65,536 and cuts the value, silently (`rows_table`).
LONGEST = 65_535


def too_long(row: Sequence[Value]) -> bool:
    """A value of the row is longer than `rows_table` can hold: it cannot be compared."""
    return any(v is not None and len(v) > LONGEST for v in row)


def rows_table(columns: Sequence[Column], rows: Sequence[Sequence[Value]]) -> str:
    """The rows as a derived table of literals: `lid` (the lead id, a number, to join on the
    primary key) then `c0`, `c1`, … (each column's bytes as X'…', or NULL), one SELECT per
    row joined by UNION ALL."""
    lead = next(i for i, c in enumerate(columns) if c.name.lower() == "lead_id")
    selects = []
    for n, row in enumerate(rows):
        lead_value = row[lead]
        assert lead_value is not None
        values = [str(int(lead_value))] + ["NULL" if v is None else hex_literal(v) for v in row]
        if n == 0:
            values = [
                f"{v} AS {name}"
                for v, name in zip(
                    values, ["lid", *(f"c{i}" for i in range(len(row)))], strict=True
                )
            ]
        selects.append("SELECT " + ", ".join(values))
    return "(" + "\n  UNION ALL ".join(selects) + ")"


def equal_to(columns: Sequence[Column], alias: str, rows_alias: str) -> str:
    """`alias`'s row is the derived table's row (`rows_table`): the same lead, every column
    equal byte for byte and NULL-safely."""
    parts = [f"{alias}.`lead_id` = {rows_alias}.lid"] + [
        f"{bytes_expr(c, alias)} <=> {rows_alias}.c{i}" for i, c in enumerate(columns)
    ]
    return "\n  AND ".join(parts)


# --- the manifest -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    table: str
    columns: tuple[Column, ...]
    row_count: int
    first_lead_id: int | None
    last_lead_id: int | None
    rows_sha256: str
    file_sha256: str
    file_bytes: int
    created_at: str = ""
    database: str = ""

    @property
    def lead_index(self) -> int:
        return next(i for i, c in enumerate(self.columns) if c.name.lower() == "lead_id")

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "encoding": (
                "gzip CSV (RFC 4180, UTF-8); field \\N is NULL; otherwise the value's bytes "
                "with \\\\, \\t, \\n, \\r and \\xHH (control bytes, bytes not valid UTF-8) "
                "escaped; row_sha256 = SHA-256 per column of N, or V + 8-byte length + bytes"
            ),
            "database": self.database,
            "table": self.table,
            "created_at": self.created_at,
            "columns": [dataclasses.asdict(c) for c in self.columns],
            "row_count": self.row_count,
            "first_lead_id": self.first_lead_id,
            "last_lead_id": self.last_lead_id,
            "rows_sha256": self.rows_sha256,
            "file_sha256": self.file_sha256,
            "file_bytes": self.file_bytes,
        }


def manifest_path(path: str) -> str:
    return path + MANIFEST_SUFFIX


def load_manifest(path: str) -> Manifest:
    """The manifest beside `path`; BadInput when it is missing or not one."""
    mpath = manifest_path(path)
    try:
        with open(mpath, "rb") as fh:
            raw = fh.read(64 * 1024 * 1024)
    except FileNotFoundError:
        raise BadInput(
            f"{path} has no manifest ({mpath} is missing); an export file is used only with "
            "the manifest written beside it"
        ) from None
    except OSError as exc:
        raise BadInput(f"cannot read {mpath}: {exc.strerror}") from None
    try:
        data = json.loads(raw)
        if data.get("format") != FORMAT:
            raise ValueError(f"format is {data.get('format')!r}, not {FORMAT!r}")
        # Every field of a column as reflected; one added since (with its default) may be
        # missing from an older manifest.
        fields = {f.name: f for f in dataclasses.fields(Column)}
        required = {n for n, f in fields.items() if f.default is dataclasses.MISSING}
        columns = []
        for c in data["columns"]:
            if not isinstance(c, dict) or not required <= set(c):
                raise ValueError("a column is not described by every field")
            columns.append(Column(**{k: v for k, v in c.items() if k in fields}))
        if not any(c.name.lower() == "lead_id" for c in columns):
            raise ValueError("no lead_id column")
        first, last = data["first_lead_id"], data["last_lead_id"]
        manifest = Manifest(
            table=str(data["table"]),
            columns=tuple(columns),
            row_count=_int(data["row_count"]),
            first_lead_id=None if first is None else _int(first),
            last_lead_id=None if last is None else _int(last),
            rows_sha256=_hex64(data["rows_sha256"]),
            file_sha256=_hex64(data["file_sha256"]),
            file_bytes=_int(data["file_bytes"]),
            created_at=str(data.get("created_at", "")),
            database=str(data.get("database", "")),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BadInput(
            f"{mpath} is not a valid manifest ({exc}); use the manifest written with the file"
        ) from None
    return manifest


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{value!r} is not a count")
    return value


def _hex64(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError(f"{value!r} is not a SHA-256")
    return value


# --- reading ----------------------------------------------------------------------------------


class _HashingReader(io.RawIOBase):
    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        data = self.raw.read(len(buf))
        n = len(data)
        buf[:n] = data
        self.sha.update(data)
        self.size += n
        return n


def read_rows(path: str, manifest: Manifest) -> Iterator[list[Value]]:
    """Every row of the file, decoded and checked against its digest and the manifest, in
    order; BadInput (naming the file and what is wrong) on the first damage. The file's own
    SHA-256 and size, the row count and `rows_sha256` are checked after the last row: a caller
    that must write nothing on a damaged file reads it through once first (`check`)."""
    csv.field_size_limit(2**31 - 1)
    names = [c.name for c in manifest.columns]
    width = len(names)
    rows_sha = hashlib.sha256()
    count = 0
    last_id = -1
    line = 1
    try:
        with open(path, "rb") as fh:
            hashing = _HashingReader(fh)
            buffered = io.BufferedReader(hashing, 1 << 20)
            with gzip.GzipFile(fileobj=buffered, mode="rb") as gz:
                text = io.TextIOWrapper(gz, encoding="utf-8", newline="")
                reader = csv.reader(text, strict=True)
                header = next(reader, None)
                if header != [*names, DIGEST_COLUMN]:
                    raise ValueError("its header is not the manifest's columns")
                for record in reader:
                    line += 1
                    if len(record) != width + 1:
                        raise ValueError(f"line {line} has {len(record)} fields, not {width + 1}")
                    values = [decode_field(f) for f in record[:width]]
                    digest = row_digest(values)
                    if digest.hex() != record[width]:
                        raise ValueError(f"line {line} does not match its row_sha256")
                    lead = values[manifest.lead_index]
                    if lead is None or not lead.isdigit() or int(lead) <= last_id:
                        raise ValueError(f"line {line}: lead ids are not in ascending order")
                    last_id = int(lead)
                    rows_sha.update(digest)
                    count += 1
                    yield values
            # Reading to the end of the gzip stream checked its CRC and length; the bytes
            # after it (none in a file written here) are hashed too.
            while hashing.read(1 << 20):
                pass
    except FileNotFoundError:
        raise BadInput(f"{path} does not exist; give the export file's path") from None
    except IsADirectoryError:
        raise BadInput(f"{path} is a directory, not an export file") from None
    except OSError as exc:
        if isinstance(exc, gzip.BadGzipFile) or exc.errno is None:
            raise _damaged(path, str(exc)) from None
        raise BadInput(f"cannot read {path}: {exc.strerror}") from None
    except (EOFError, zlib.error, UnicodeDecodeError, csv.Error, ValueError) as exc:
        raise _damaged(path, str(exc)) from None
    if hashing.size != manifest.file_bytes or hashing.sha.hexdigest() != manifest.file_sha256:
        raise BadInput(
            f"{path} does not match its manifest (its SHA-256 or size differs: a changed file, "
            "or the manifest of another file); nothing was done"
        )
    if count != manifest.row_count or rows_sha.hexdigest() != manifest.rows_sha256:
        raise _damaged(path, "its rows are not the manifest's")


def _damaged(path: str, what: str) -> BadInput:
    return BadInput(
        f"{path} is damaged or truncated ({what[:200]}); nothing was done: use an intact copy "
        "of the file with its manifest"
    )


def check(path: str) -> Manifest:
    """The manifest, once the whole file has been read and found to be exactly what it says."""
    if os.path.isdir(path):
        raise BadInput(f"{path} is a directory, not an export file")
    if not os.path.exists(path):
        raise BadInput(f"{path} does not exist; give the export file's path")
    manifest = load_manifest(path)
    for _row in read_rows(path, manifest):
        pass
    return manifest


def chunks(rows: Iterator[list[Value]], size: int) -> Iterator[list[list[Value]]]:
    chunk: list[list[Value]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# --- writing ----------------------------------------------------------------------------------


class _HashingWriter(io.RawIOBase):
    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        b = bytes(data)
        self.raw.write(b)
        self.sha.update(b)
        self.size += len(b)
        return len(b)


def check_target(path: str, force: bool) -> None:
    """Refuse a target that exists (without `force`) or that cannot be written."""
    if not path or path.endswith(os.sep):
        raise BadInput(f"--file {path!r} is not a file path; give the path of the file to write")
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise BadInput(f"--file {path} is a directory; give the path of the file to write")
    if not os.path.isdir(folder):
        raise BadInput(f"--file {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise BadInput(f"--file {path}: cannot write in the folder {folder}")
    for p in (path, manifest_path(path)):
        if os.path.lexists(p) and not force:
            raise BadInput(f"{p} exists; give another --file, or --force to replace it")


class Writer:
    """Rows to a temporary file beside the target; `publish` renames it (and its manifest) to
    the target once it is complete, synced and checked; `discard` removes it."""

    def __init__(self, path: str, table: Table) -> None:
        self.path = path
        self.table = table
        folder, name = os.path.split(os.path.abspath(path))
        self.folder = folder
        self.tmp = os.path.join(folder, f".{name}.{os.getpid()}.partial")
        self.tmp_manifest = self.tmp + MANIFEST_SUFFIX
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        self.raw = os.fdopen(fd, "wb")
        self.hashing = _HashingWriter(self.raw)
        self.buffered = io.BufferedWriter(self.hashing, 1 << 20)
        self.gz = gzip.GzipFile(fileobj=self.buffered, mode="wb", compresslevel=6, mtime=0)
        self.text = io.TextIOWrapper(self.gz, encoding="utf-8", newline="")
        self.csv = csv.writer(self.text, lineterminator="\n")
        self.csv.writerow([c.name for c in table.columns] + [DIGEST_COLUMN])
        self.rows_sha = hashlib.sha256()
        self.count = 0
        self.first: int | None = None
        self.last: int | None = None

    def write(self, lead_id: int, values: Sequence[Value]) -> None:
        digest = row_digest(values)
        self.rows_sha.update(digest)
        self.csv.writerow([encode_field(v) for v in values] + [digest.hex()])
        self.count += 1
        if self.first is None:
            self.first = lead_id
        self.last = lead_id

    def close(self, database: str, created_at: str) -> Manifest:
        """Finish and fsync the file; the manifest it will be published with."""
        self.text.flush()
        self.text.detach()
        self.gz.close()
        self.buffered.flush()
        self.raw.flush()
        os.fsync(self.raw.fileno())
        self.raw.close()
        return Manifest(
            table=self.table.name,
            columns=self.table.columns,
            row_count=self.count,
            first_lead_id=self.first,
            last_lead_id=self.last,
            rows_sha256=self.rows_sha.hexdigest(),
            file_sha256=self.hashing.sha.hexdigest(),
            file_bytes=self.hashing.size,
            created_at=created_at,
            database=database,
        )

    def publish(self, manifest: Manifest) -> None:
        """The manifest first, then the file: a file under the target's name always has its
        manifest (a kill between the two leaves the old file, which its new manifest refuses)."""
        with open(self.tmp_manifest, "w", encoding="utf-8") as fh:
            json.dump(manifest.as_dict(), fh, indent=1)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(self.tmp_manifest, manifest_path(self.path))
        os.replace(self.tmp, self.path)
        dfd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def discard(self) -> None:
        try:
            self.raw.close()
        except (OSError, ValueError):
            pass
        for p in (self.tmp, self.tmp_manifest):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
