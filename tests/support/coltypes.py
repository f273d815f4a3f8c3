"""The column types a site adds to vicidial_list (a flag as BIT, a hash as BINARY, a JSON
payload, a YEAR, a signed duration as TIME, money as DECIMAL, counters unsigned or ZEROFILL),
each filled with the values at its edges: every copy path must write them back byte for byte.
`add_columns` adds them to both tables; `fill` writes `VALUES` over the first leads (the others
keep NULL in every one of them)."""

from __future__ import annotations

from archiver.db import Db
from tests.support.oracle import ARCHIVE, LIVE

COLUMNS = (
    "va_bit1 BIT(1) NULL",
    "va_bit12 BIT(12) NULL",
    "va_bit64 BIT(64) NULL",
    "va_bin BINARY(6) NULL",
    "va_vbin VARBINARY(40) NULL",
    "va_blob BLOB NULL",
    "va_text TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NULL",
    "va_json JSON NULL",
    "va_set SET('x','y','z') NULL",
    "va_enum ENUM('a','b,c','') NULL",
    "va_year YEAR NULL",
    "va_time TIME NULL",
    "va_time6 TIME(6) NULL",
    "va_dec DECIMAL(12,4) NULL",
    "va_decz DECIMAL(8,2) UNSIGNED ZEROFILL NULL",
    "va_float FLOAT NULL",
    "va_double DOUBLE NULL",
    "va_uint INT UNSIGNED NULL",
    "va_ubig BIGINT UNSIGNED NULL",
    "va_zint INT(6) ZEROFILL NULL",
    "va_tinyz TINYINT UNSIGNED ZEROFILL NULL",
    "va_dt6 DATETIME(6) NULL",
)

ALL_BYTES = "X'" + bytes(range(256)).hex().upper() + "00'"

# Per lead (1, 2, …): column -> SQL literal.
VALUES: list[dict[str, str]] = [
    {
        "va_bit1": "b'1'",
        "va_bit12": "b'101000000001'",
        "va_bit64": "X'FFFFFFFFFFFFFFFF'",
        "va_bin": "X'610000'",  # BINARY pads with zero bytes: 610000000000
        "va_vbin": "X'6100000000'",
        "va_blob": ALL_BYTES,
        "va_text": "'😀 it''s a \\\\ back, slash'",
        "va_json": '\'{"a": [1, "é", 2.50], "b": null}\'',
        "va_set": "'x,z'",
        "va_enum": "'b,c'",
        "va_year": "1901",
        "va_time": "'-838:59:59'",
        "va_time6": "'-00:00:00.500000'",
        "va_dec": "-99999999.9999",
        "va_decz": "1.5",
        "va_float": "1.1",
        "va_double": "1e300",
        "va_uint": "4294967295",
        "va_ubig": "18446744073709551615",
        "va_zint": "42",
        "va_tinyz": "7",
        "va_dt6": "'9999-12-31 23:59:59.999999'",
    },
    {
        "va_bit1": "b'0'",
        "va_bit12": "b'0'",
        "va_bit64": "0",
        "va_bin": "X'000000000000'",
        "va_vbin": "X'00'",
        "va_blob": "X''",
        "va_text": "''",
        "va_json": "'[]'",
        "va_set": "''",
        "va_enum": "''",
        "va_year": "0",
        "va_time": "'838:59:59'",
        "va_time6": "'838:59:58.999999'",
        "va_dec": "0.0001",
        "va_decz": "0",
        "va_float": "-0.000123",
        "va_double": "-2.2250738585072014e-308",
        "va_uint": "0",
        "va_ubig": "0",
        "va_zint": "0",
        "va_tinyz": "255",
        "va_dt6": "'0000-00-00 00:00:00.000000'",
    },
    {
        "va_bit1": "1",
        "va_bit12": "b'111111111111'",
        "va_bit64": "b'1'",
        "va_bin": "'ab c'",
        "va_vbin": "'NULL'",
        "va_blob": "'NULL'",
        "va_text": "'NULL'",
        "va_json": "'\"x,y\"'",
        "va_set": "'x,y,z'",
        "va_enum": "'a'",
        "va_year": "2155",
        "va_time": "'-00:00:01'",
        "va_time6": "'12:34:56.000001'",
        "va_dec": "99999999.9999",
        "va_decz": "999999.99",
        "va_float": "3.40282e38",
        "va_double": "0.1",
        "va_uint": "1",
        "va_ubig": "9223372036854775808",
        "va_zint": "999999",
        "va_tinyz": "0",
        "va_dt6": "'2024-02-29 12:00:00.000001'",
    },
]

# The floating-point columns' values, exactly (their CAST AS BINARY is rounded text).
EXACT = {"va_float": "CAST(va_float AS DOUBLE)", "va_double": "CAST(va_double AS DOUBLE)"}


def add_columns(db: Db, tables: tuple[str, ...] = (LIVE, ARCHIVE)) -> None:
    for table in tables:
        db.write(f"ALTER TABLE `{table}` " + ", ".join(f"ADD COLUMN {c}" for c in COLUMNS))


def fill(db: Db, table: str = LIVE) -> None:
    """Lead k (1, 2, …) gets VALUES[k-1]; the row must exist already."""
    for lead, values in enumerate(VALUES, start=1):
        sets = ", ".join(f"`{c}` = {v}" for c, v in values.items())
        assert db.write(f"UPDATE `{table}` SET {sets} WHERE lead_id = {lead}") == 1


# (column, live type, archive type, a value): columns whose archive type differs from the live
# one in a way schema.check_lossless allows (every live value stored with the same bytes), and
# one BIT of the same type, whose copy on MyISAM made the tuple binary.
WIDER = (
    ("va_int", "INT NULL", "BIGINT NULL", "-2147483648"),
    ("va_uint", "INT UNSIGNED NULL", "BIGINT NULL", "4294967295"),
    ("va_dec", "DECIMAL(8,2) NULL", "DECIMAL(12,2) NULL", "-999999.99"),
    ("va_zf", "TINYINT(3) UNSIGNED ZEROFILL NULL", "SMALLINT(3) UNSIGNED ZEROFILL NULL", "7"),
    ("va_enum", "ENUM('a','b') NULL", "ENUM('c','b','a') NULL", "'b'"),
    ("va_set", "SET('x','y','z') NULL", "SET('w','x','y','z','v') NULL", "'x,z'"),
    ("va_enumvc", "ENUM('a','bb') NULL", "VARCHAR(5) NULL", "'bb'"),
    ("va_text", "TEXT NULL", "MEDIUMTEXT NULL", "'t,ext'"),
    (
        "va_json",
        "JSON NULL",
        "LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL",
        '\'{"a": [1, "é"]}\'',
    ),
    ("va_vbin", "VARBINARY(8) NULL", "VARBINARY(40) NULL", "X'6100000000'"),
    ("va_blob", "BLOB NULL", "MEDIUMBLOB NULL", "X'00FF0000'"),
    ("va_vblob", "VARBINARY(10) NULL", "BLOB NULL", "X'0000'"),
    ("va_bit", "BIT(12) NULL", "BIT(12) NULL", "b'101000000001'"),
)


def add_wider(db: Db, upto: int) -> None:
    """The WIDER columns in both tables, each filled on leads 1..`upto`."""
    for name, live, archive, value in WIDER:
        db.write(f"ALTER TABLE `{LIVE}` ADD COLUMN `{name}` {live}")
        db.write(f"ALTER TABLE `{ARCHIVE}` ADD COLUMN `{name}` {archive}")
        db.write(f"UPDATE `{LIVE}` SET `{name}` = {value} WHERE lead_id <= {upto}")
