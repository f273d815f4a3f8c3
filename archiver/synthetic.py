"""Throwaway databases with synthetic VICIdial leads, for `demo`, the tests and the benchmarks.

Leads are generated on the server from MariaDB's SEQUENCE engine (`seq_1_to_N`) in one
INSERT … SELECT per batch, so a million leads load in seconds. The values are what real
vicidial_list tables hold: VICIdial statuses, several lists and campaigns, NULLs next to '',
zero dates, accents, case and trailing-space variants, negative ranks.
"""

from __future__ import annotations

from archiver.db import Db, q
from archiver.schema import stock_schema_sql

LISTS = ((101, "SALESA"), (102, "SALESA"), (201, "SURVEY"), (202, "SURVEY"), (999, "OLDLEADS"))

_VALUES = {
    "entry_date": "IF(n % 53 = 0, NULL, TIMESTAMP('2019-01-01') + INTERVAL (n * 7919 % 2000) DAY"
    " + INTERVAL (n % 86400) SECOND)",
    "modify_date": "TIMESTAMP('2021-01-01') + INTERVAL (n * 104729 % 1400) DAY"
    " + INTERVAL (n % 80000) SECOND",
    "status": "ELT(1 + n % 11, 'NEW', 'SALE', 'NI', 'DNC', 'CALLBK', 'B', 'NA', 'A', 'DROP',"
    " 'DC', NULL)",
    "user": "ELT(1 + n % 5, 'VDAD', '6666', 'agent01', 'agent02', NULL)",
    "vendor_lead_code": "IF(n % 3 = 0, NULL, CONCAT('VL', n))",
    "source_id": "ELT(1 + n % 3, 'import2023', '', NULL)",
    "list_id": "ELT(1 + n % 5, 101, 102, 201, 202, 999)",
    "gmt_offset_now": "ELT(1 + n % 5, -5.00, -6.00, -7.00, -8.00, -3.50)",
    "called_since_last_reset": "ELT(1 + n % 6, 'Y', 'N', 'Y1', 'Y2', 'Y10', 'D')",
    "phone_code": "'1'",
    "phone_number": "CONCAT(ELT(1 + n % 4, '727', '813', '305', '212'),"
    " LPAD(n * 7 % 9999991, 7, '0'))",
    "title": "ELT(1 + n % 5, 'Mr', 'Ms', 'Dr', '', NULL)",
    "first_name": "ELT(1 + n % 9, 'José', 'Zoë', 'Smith', 'smith', 'Müller', 'Ana',"
    " 'Łukasz', 'O''Brien', 'Renée')",
    "middle_initial": "ELT(1 + n % 3, 'Q', '', NULL)",
    "last_name": "ELT(1 + n % 7, 'García', 'SMITH', 'Smith ', 'Nguyễn', 'Öztürk', 'Lee', NULL)",
    "address1": "CONCAT(n % 9999, ' Main St')",
    "address2": "IF(n % 4 = 0, 'Apt 2', '')",
    "address3": "NULL",
    "city": "ELT(1 + n % 6, 'Tampa', 'São Paulo', 'Montréal', 'Zürich', 'tampa', 'Miami')",
    "state": "ELT(1 + n % 3, 'FL', 'QC', NULL)",
    "province": "ELT(1 + n % 3, '', NULL, 'Québec')",
    "postal_code": "LPAD(n % 99999, 5, '0')",
    "country_code": "ELT(1 + n % 3, 'USA', 'CAN', 'BRA')",
    "gender": "ELT(1 + n % 3, 'M', 'F', 'U')",
    "date_of_birth": "ELT(1 + n % 4, '0000-00-00', '1980-05-17', NULL, '1999-12-31')",
    "alt_phone": "IF(n % 2 = 0, '', LPAD(n % 9999999999, 10, '5'))",
    "email": "ELT(1 + n % 4, CONCAT('lead', n, '@example.com'), '', NULL, 'NULL')",
    "security_phrase": "ELT(1 + n % 3, '', NULL, 'blue')",
    "comments": "ELT(1 + n % 5, 'call back after 5pm', 'Call back after 5pm ', '', NULL,"
    " 'prefers español')",
    "called_count": "n % 13",
    "last_local_call_time": "ELT(1 + n % 4, NULL, '0000-00-00 00:00:00',"
    " TIMESTAMP('2022-06-01') + INTERVAL (n % 500) DAY,"
    " TIMESTAMP('2024-03-10 02:30:00'))",
    "rank": "CAST(n % 7 AS SIGNED) - 3",
    "owner": "ELT(1 + n % 3, '', 'agent01', NULL)",
    "entry_list_id": "IF(n % 10 = 0, 101, 0)",
}


def create_database(db: Db, name: str) -> None:
    db.write(f"CREATE DATABASE {q(name)} CHARACTER SET utf8mb3 COLLATE utf8mb3_unicode_ci")


def drop_database(db: Db, name: str) -> None:
    db.write(f"DROP DATABASE IF EXISTS {q(name)}")


def create_tables(db: Db, engine: str = "MyISAM", *, archive: bool = True) -> None:
    """The stock VICIdial tables, the campaigns' lists, and (by default) the archive table
    made the way VICIdial's docs say."""
    for stmt in stock_schema_sql(engine):
        db.write(stmt)
    values = ", ".join(f"({lid}, 'List {lid}', '{camp}', 'Y')" for lid, camp in LISTS)
    db.write(
        f"INSERT INTO vicidial_lists (list_id, list_name, campaign_id, active) VALUES {values}"
    )
    if archive:
        db.write("CREATE TABLE vicidial_list_archive LIKE vicidial_list")
        db.write("ALTER TABLE vicidial_list_archive MODIFY lead_id INT(9) UNSIGNED NOT NULL")


def seed_leads(db: Db, count: int, *, first_id: int = 1, batch: int = 100_000) -> None:
    """`count` leads with ids first_id … first_id+count-1."""
    cols = ", ".join(q(c) for c in ("lead_id", *_VALUES))
    exprs = ", ".join(_VALUES.values())
    done = 0
    while done < count:
        n = min(batch, count - done)
        start = first_id + done
        db.write(
            f"INSERT INTO vicidial_list ({cols}) SELECT n, {exprs} FROM "
            f"(SELECT seq AS n FROM seq_{start}_to_{start + n - 1}) AS g"
        )
        done += n
