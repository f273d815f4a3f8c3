"""The MyISAM copy is made in Python from the bytes the chunk's scan read (`RowCopier`): its
fingerprint must be `ChunkSql.row_hash` to the byte, since the proven-copy deletes
(`delete_stale_copy`, `delete_superseded`) compare the fingerprint stored in archiver_pending
with the server's hash of the target row; and its SQL tuple must write the exact bytes the
delete compares. Both held on hostile data (NULL vs '' vs 'NULL', 4-byte UTF-8, zero and
invalid dates, DECIMAL, ENUM, SET, binary bytes, characters that need escaping, a column whose
character set differs between the tables), in both directions, on both engines."""

from __future__ import annotations

import hashlib
from typing import Any

from archiver.db import Db
from archiver.jobtypes import ARCHIVE, DEARCHIVE
from archiver.schema import reflect
from archiver.steps import ChunkSql
from tests.support import coltypes
from tests.support.db import ARCHIVE as ARCHIVE_T
from tests.support.db import LIVE, VDb

BINARY = bytes(range(256)) + b"',\\\x00\x1a"
ROWS: list[dict[str, Any]] = [
    {},  # defaults and NULLs
    {"email": "", "comments": "", "title": "", "va_bin": b"", "va_set": ""},
    {"email": "NULL", "comments": "NULL", "va_bin": b"NULL"},
    {
        "first_name": "Zoë",
        "last_name": "Nguyễn",
        "comments": "😀 ok 🎉 𝄞",
        "va_mb4": "😀𝄞 four-byte",
        "va_latin1": "Québec ÿ ½",
    },
    {"comments": "it's a \\ back'slash, and \"quotes\"\n\r\t\x00end", "va_bin": BINARY},
    {
        "date_of_birth": "0000-00-00",
        "entry_date": "0000-00-00 00:00:00",
        "last_local_call_time": "2023-02-30 12:00:00",
        "modify_date": "2023-00-00 00:00:00",
    },
    {"gmt_offset_now": "-12.75", "va_dec": "-99999999.9999", "va_double": "1e+300"},
    {"gmt_offset_now": "0.00", "va_dec": "0.0001", "va_double": "-0.000001", "rank": -99},
    {"va_enum": "b,c", "va_set": "x,z", "status": "sale "},
    {"va_enum": "", "va_set": "", "va_latin1": ""},
    {"comments": "Smith   ", "first_name": " smith", "va_latin1": "\x81 cp1252 € gap"},
]
EXTRA = (
    "va_mb4 VARCHAR(40) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NULL",
    "va_bin VARBINARY(600) NULL",
    "va_dec DECIMAL(12,4) NULL",
    "va_double DOUBLE NULL",
    "va_enum ENUM('a','b,c','','ü') NULL",
    "va_set SET('x','y','z') NULL",
)


def _columns(vdb: VDb) -> None:
    for table in (LIVE, ARCHIVE_T):
        vdb.db.write(f"ALTER TABLE `{table}` " + ", ".join(f"ADD COLUMN {c}" for c in EXTRA))
    # latin1 live, utf8mb3 in the archive: the copy converts to the target's character set
    # and the delete compares both in utf8mb4, two different byte strings.
    vdb.db.write(f"ALTER TABLE `{LIVE}` ADD COLUMN va_latin1 VARCHAR(40) CHARACTER SET latin1 NULL")
    vdb.db.write(
        f"ALTER TABLE `{ARCHIVE_T}` ADD COLUMN va_latin1 VARCHAR(40) CHARACTER SET utf8mb3 NULL"
    )


def _insert(db: Db, table: str, lead_id: int, values: dict[str, Any]) -> None:
    row = {"lead_id": lead_id, "phone_number": f"555{lead_id:07d}", **values}
    cols = ", ".join(f"`{c}`" for c in row)
    marks = ", ".join(f":{c}" for c in row)
    db.write(f"INSERT INTO `{table}` ({cols}) VALUES ({marks})", row)


def _check(db: Db, sql: ChunkSql, ids: list[int]) -> None:
    """Python's fingerprint of each source row equals the server's, and its SQL tuple, written
    to the target, is a row the delete proves equal, whose server fingerprint is the same."""
    src, dst = sql.s, sql.d
    copier = sql.copier()
    read = {int(r[0]): tuple(r[1:]) for r in db.rows(sql.read_copies(), {"ids": ids})}
    assert sorted(read) == ids
    server = {
        int(r[0]): str(r[1])
        for r in db.rows(
            f"SELECT s.`lead_id`, {sql.row_hash('s', 'src')} FROM {src} AS s"
            " WHERE s.`lead_id` IN :ids",
            {"ids": ids},
        )
    }
    made = {i: copier.copy(read[i]) for i in ids}
    # Every field is X'…', NULL or a QUOTE()d number or date: the quick split at commas finds
    # them all, as the tokenizer does.
    for i in ids:
        row = str(read[i][0])
        assert row[1:-1].split(",") == copier._tokens(row)
    # A QUOTE()d field that holds a comma (no column type here makes one) is tokenized.
    odd = "(" + ",".join(["'a,b\\'c'"] + ["NULL"] * (copier.width - 1)) + ")"
    first = sql.columns[0].name.lower()
    text = f"{first}:'a,b\\'c'".encode()
    assert copier.copy((odd,)) == (odd, hashlib.sha256(text).hexdigest())
    assert {i: fp for i, (_, fp) in made.items()} == server
    # The scan reads the same bytes in the same order, after its own columns.
    scan = db.rows(sql.scan("s.`lead_id` IN :ids", copies=True), {"ids": ids})
    assert {int(r[0]): tuple(r[3:]) for r in scan} == read

    db.write(f"DELETE FROM {dst} WHERE `lead_id` IN :ids", {"ids": ids})
    assert db.write(sql.insert_literals([lit for lit, _ in made.values()])) == len(ids)
    target = {
        int(r[0]): str(r[1])
        for r in db.rows(
            f"SELECT d.`lead_id`, {sql.row_hash('d', 'dst')} FROM {dst} AS d"
            " WHERE d.`lead_id` IN :ids",
            {"ids": ids},
        )
    }
    assert target == server
    equal = db.rows(
        f"SELECT s.`lead_id` FROM {src} AS s JOIN {dst} AS d ON d.`lead_id` = s.`lead_id`"
        f" WHERE s.`lead_id` IN :ids AND {sql.equal_expr()}",
        {"ids": ids},
    )
    assert sorted(int(r[0]) for r in equal) == ids


def test_python_copy_and_fingerprint_equal_the_servers_on_hostile_data(vdb: VDb) -> None:
    _columns(vdb)
    ids = list(range(1, len(ROWS) + 1))
    for lead, values in zip(ids, ROWS, strict=True):
        _insert(vdb.db, LIVE, lead, values)
    live, archive = reflect(vdb.db, LIVE), reflect(vdb.db, ARCHIVE_T)
    forward = ChunkSql(ARCHIVE, live, archive)
    assert len(forward.copier().exprs) == 1  # the tuple: the fingerprint is made from it
    _check(vdb.db, forward, ids)
    # The other way: the archive's rows (utf8mb3) into a latin1 column.
    vdb.db.write(f"DELETE FROM `{LIVE}`")
    _check(vdb.db, ChunkSql(DEARCHIVE, archive, live), ids)
    # A row of NULLs only (no such lead: lead_id is NOT NULL) hashes as the server's empty text.
    nulls = "(" + ",".join(["NULL"] * len(forward.columns)) + ")"
    assert forward.copier().copy((nulls, None)) == (
        nulls,
        str(vdb.db.scalar("SELECT SHA2('', 256)")),
    )


def test_a_quoted_text_is_one_field_to_the_tokenizer(vdb: VDb) -> None:
    """QUOTE() escapes backslash, quote, NUL and ^Z; whatever a quoted text holds (commas,
    escaped quotes), the tokenizer reads it as one field, verbatim, as the server hashes it."""
    live = reflect(vdb.db, LIVE)
    assert live is not None
    copier = ChunkSql(ARCHIVE, live, live).copier()
    for text in ("plain", "a\\b'c\0d\x1ae", "\\\\0 \\Z", "'", "é😀", "a,b", "',',"):
        quoted = str(vdb.db.scalar("SELECT QUOTE(:t)", {"t": text}))
        assert quoted[0] == quoted[-1] == "'"
        fields = [quoted, "X'2C27'"] + ["NULL"] * (copier.width - 2)
        assert copier._tokens("(" + ",".join(fields) + ")") == fields


def test_python_copy_and_fingerprint_equal_the_servers_on_every_column_type(vdb: VDb) -> None:
    """BIT (whose QUOTE() is a binary string: the tuple came back as bytes), BINARY and
    VARBINARY with trailing zero bytes, BLOB, TEXT, JSON, SET, ENUM, YEAR, TIME (negative,
    fractional), DECIMAL, FLOAT, DOUBLE, unsigned and ZEROFILL integers, DATETIME(6): the
    tuple is text, its fingerprint the server's, and written to the target it is a row the
    delete proves equal. Both directions."""
    coltypes.add_columns(vdb.db)
    ids = list(range(1, len(coltypes.VALUES) + 2))  # the last lead: NULL in every added one
    for lead in ids:
        _insert(vdb.db, LIVE, lead, {})
    coltypes.fill(vdb.db)
    live, archive = reflect(vdb.db, LIVE), reflect(vdb.db, ARCHIVE_T)
    forward = ChunkSql(ARCHIVE, live, archive)
    read = vdb.db.rows(forward.read_copies(), {"ids": ids})
    assert all(isinstance(r[1], str) for r in read), [type(r[1]) for r in read]
    _check(vdb.db, forward, ids)
    vdb.db.write(f"DELETE FROM `{LIVE}`")
    _check(vdb.db, ChunkSql(DEARCHIVE, archive, live), ids)


def test_python_fingerprint_equals_the_servers_where_the_archive_type_differs(
    vdb: VDb,
) -> None:
    """An archive column wider than the live one (BIGINT for INT, DECIMAL(12,2) for (8,2), an
    ENUM's labels in a VARCHAR, a SET with more labels, JSON in LONGTEXT, a longer VARBINARY
    or BLOB): the archive row's
    fingerprint, read with the archive's own types, is the copy's."""
    ids = [1, 2, 3]
    for lead in ids:
        _insert(vdb.db, LIVE, lead, {})
    coltypes.add_wider(vdb.db, 2)
    live, archive = reflect(vdb.db, LIVE), reflect(vdb.db, ARCHIVE_T)
    _check(vdb.db, ChunkSql(ARCHIVE, live, archive), ids)
