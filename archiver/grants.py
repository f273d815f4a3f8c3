"""What each command needs granted, and what this account lacks.

Owns: the privileges each command needs on each table (the list `sql/grants.sql` grants), the
reading of this account's privileges from `information_schema`, and the exact GRANT statement
for each one that is missing. Must not: write anything, or decide whether a command runs (the
caller does, with what `missing` returns).

The views USER_PRIVILEGES, SCHEMA_PRIVILEGES and TABLE_PRIVILEGES list what the connected
account holds, globally, per database and per table (an ALL PRIVILEGES grant as each privilege
it contains). A privilege held through a role is not in them: an account that works through a
role is reported as missing what its role holds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from archiver.config import Settings
from archiver.db import Db
from archiver.steps import GUARDS

LEAD_TABLE = ("SELECT", "INSERT", "UPDATE", "DELETE")
CHECKPOINT_TABLES = (
    "archiver_jobs",
    "archiver_chunks",
    "archiver_leads",
    "archiver_pending",
    "archiver_job_ids",
)
CHECKPOINT = ("CREATE", "SELECT", "INSERT", "UPDATE", "DELETE")
# Read by archive when they exist: a guard that cannot be read would let a lead in a call go.
GUARD_TABLES = (
    "vicidial_hopper",
    "vicidial_auto_calls",
    "vicidial_live_agents",
    "vicidial_callbacks",
)
COMMANDS = ("archive", "dearchive", "verify", "search")


@dataclass(frozen=True)
class Need:
    table: str
    privileges: tuple[str, ...]
    why: str


def needs(settings: Settings, command: str) -> list[Need]:
    """What `command` needs. A table this account holds no privilege on is hidden from it in
    information_schema, so every table is named whether it is seen or not: every VICIdial
    database has the guard tables, vicidial_lists and vicidial_admin_log."""
    live, archive = settings.live_table, settings.archive_table
    if command == "--admin-log":
        return [Need("vicidial_admin_log", ("INSERT",), command)]
    if command in ("verify", "search"):
        return [Need(live, ("SELECT",), "read leads"), Need(archive, ("SELECT",), "read leads")]
    if command not in ("archive", "dearchive"):
        raise ValueError(command)
    out = [
        Need(live, LEAD_TABLE, "the chunk's statements"),
        Need(archive, LEAD_TABLE, "the chunk's statements"),
    ]
    out += [Need(t, CHECKPOINT, "checkpoint (created on the first run)") for t in CHECKPOINT_TABLES]
    if command == "archive":
        on = {t for name, t, _ in GUARDS if getattr(settings.guards, name)}
        out += [Need(t, ("SELECT",), "live-lead guard") for t in GUARD_TABLES if t in on]
    out.append(Need("vicidial_lists", ("SELECT",), "--campaign"))
    return out


@dataclass(frozen=True)
class Account:
    user: str
    host: str
    database: str
    privileges: dict[str, set[str]]  # "*" (global), "db" (this database) or a table name

    def holds(self, table: str, privilege: str) -> bool:
        return any(privilege in self.privileges.get(k, set()) for k in ("*", "db", table))

    def grant(self, table: str, privileges: Iterable[str]) -> str:
        return (
            f"GRANT {', '.join(privileges)} ON `{self.database}`.`{table}` "
            f"TO '{self.user}'@'{self.host}';"
        )


def _like(pattern: str, name: str) -> bool:
    """A database name of a grant matches `name` (`_` and `%` are wildcards, `\\` escapes)."""
    parts = re.split(r"(\\.|%|_)", pattern)
    regex = "".join(
        ".*" if p == "%" else "." if p == "_" else re.escape(p[1:] if p.startswith("\\") else p)
        for p in parts
    )
    return re.fullmatch(regex, name, re.S) is not None


def account(db: Db) -> Account:
    """The connected account and what it holds on this database."""
    row = db.rows("SELECT CURRENT_USER(), DATABASE()")[0]
    user, _, host = str(row[0]).rpartition("@")
    database = str(row[1])
    grantee = f"'{user}'@'{host}'"
    held: dict[str, set[str]] = {}
    for (priv,) in db.rows(
        "SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = :g",
        {"g": grantee},
    ):
        held.setdefault("*", set()).add(str(priv))
    for schema, priv in db.rows(
        "SELECT TABLE_SCHEMA, PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES"
        " WHERE GRANTEE = :g",
        {"g": grantee},
    ):
        if _like(str(schema), database):
            held.setdefault("db", set()).add(str(priv))
    for table, priv in db.rows(
        "SELECT TABLE_NAME, PRIVILEGE_TYPE FROM information_schema.TABLE_PRIVILEGES"
        " WHERE GRANTEE = :g AND TABLE_SCHEMA = DATABASE()",
        {"g": grantee},
    ):
        held.setdefault(str(table), set()).add(str(priv))
    return Account(user, host, database, held)


def present_tables(db: Db) -> set[str]:
    return {
        str(r[0])
        for r in db.rows(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
        )
    }


def missing(acct: Account, wanted: Iterable[Need]) -> list[str]:
    """The GRANT statements that would give `acct` what `wanted` lists, one per table."""
    out = []
    for need in wanted:
        lacking = [p for p in need.privileges if not acct.holds(need.table, p)]
        if lacking:
            out.append(acct.grant(need.table, lacking))
    return out
