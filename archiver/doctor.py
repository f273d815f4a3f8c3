"""`doctor`: the settings in force and where each came from, then every check a nightly run
would meet before it writes, each with what to do about it.

Owns: the list of checks and their verdicts (`Report`). Must not: write anything (it opens the
database read-only in spirit: SELECTs of information_schema, IS_USED_LOCK), or print (cli.py
does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from archiver import checkpoint, grants, schema, window
from archiver.config import Settings
from archiver.db import Db
from archiver.errors import ArchiverError

SECRET = {"db.password", "serve.keys", "throttle.replicas"}
# Settings attribute → its TOML section (the origins are keyed by section).
_SECTION = {
    "db": "database",
    "window": "window",
    "guards": "guards",
    "throttle": "throttle",
    "serve": "serve",
}


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: list[str] = field(default_factory=list)
    warning: bool = False  # reported, does not stop a nightly run


@dataclass
class Report:
    settings: list[tuple[str, str, str]]  # (key, value shown, origin)
    checks: list[Check] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return all(c.ok or c.warning for c in self.checks)


def settings_lines(settings: Settings, origins: dict[str, str]) -> list[tuple[str, str, str]]:
    """Every setting as (`section.key`, its value with secrets masked, where it came from)."""
    out = []

    def walk(obj: Any, prefix: str, section: str) -> None:
        for f in fields(obj):
            value = getattr(obj, f.name)
            if is_dataclass(value):
                walk(value, f"{f.name}.", _SECTION.get(f.name, f.name))
                continue
            key = f"{prefix}{f.name}"
            shown = _shown(key, value)
            out.append((key, shown, origins.get(f"{section}.{f.name}", "default")))

    walk(settings, "", "archive")
    return out


def _shown(key: str, value: Any) -> str:
    if key in SECRET:
        if not value:
            return "(none)"
        return "***" if isinstance(value, str) else f"({len(value)} set, not shown)"
    if isinstance(value, tuple):
        return ", ".join(str(v) for v in value) or "(none)"
    return str(value) if value != "" else '""'


def examine(db: Db, settings: Settings, report: Report) -> None:
    """The checks that need the database, in the order a nightly archive meets them."""
    add = report.checks.append
    version = str(db.scalar("SELECT VERSION()"))
    add(Check("connect", True, f"{settings.safe_dsn} (server {version})"))
    _tables(db, settings, add)
    present = grants.present_tables(db)
    acct = grants.account(db)
    who = f"'{acct.user}'@'{acct.host}'"
    for command in (*grants.COMMANDS, "--admin-log"):
        lacking = grants.missing(acct, grants.needs(settings, command))
        if lacking:
            # The nightly job archives; the others are reported, a run of them would refuse.
            nightly = command == "archive"
            detail = f"{who} lacks {len(lacking)} grant(s)"
            add(Check(f"grants for {command}", False, detail, lacking, warning=not nightly))
        else:
            add(Check(f"grants for {command}", True, f"{who} holds every one needed"))
    _checkpoint(present, add)
    _lock(db, settings, add)
    _window(settings, add)


def _tables(db: Db, settings: Settings, add: Callable[[Check], None]) -> None:
    try:
        live, archive = schema.require_tables(db, settings.live_table, settings.archive_table)
    except ArchiverError as exc:
        archive_missing = schema.reflect(db, settings.live_table) is not None
        fix = ["vicidial-archiver schema init"] if archive_missing else []
        add(Check("tables", False, str(exc), fix))
        return
    add(Check("tables", True, f"{live.name} ({live.engine}), {archive.name} ({archive.engine})"))
    for src, dst, what in ((live, archive, "archive"), (archive, live, "dearchive")):
        found = schema.drift(src, dst)
        if found.blocking:
            fix = ["vicidial-archiver schema sync   (prints the ALTER TABLE; --apply runs it)"]
            detail = "; ".join(found.blocking)
            add(Check(f"drift for {what}", False, detail, fix, warning=what == "dearchive"))
        else:
            add(Check(f"drift for {what}", True, "; ".join(found.warnings) or "none"))


def _checkpoint(present: set[str], add: Callable[[Check], None]) -> None:
    made = [t for t in grants.CHECKPOINT_TABLES if t in present]
    if len(made) == len(grants.CHECKPOINT_TABLES):
        add(Check("checkpoint tables", True, "all present"))
        return
    absent = [t for t in grants.CHECKPOINT_TABLES if t not in present]
    add(
        Check(
            "checkpoint tables",
            True,
            f"created on the first run: {', '.join(absent)}",
            warning=True,
        )
    )


def _lock(db: Db, settings: Settings, add: Callable[[Check], None]) -> None:
    name = checkpoint.lock_name(settings)
    holder = db.scalar("SELECT IS_USED_LOCK(:n)", {"n": name})
    if holder is None:
        add(Check("job lock", True, f"{name!r} is free"))
    else:
        add(
            Check(
                "job lock",
                False,
                f"{name!r} is held by connection {holder}: a run now would exit 4",
                ["vicidial-archiver jobs list   (which job runs; wait for it)"],
            )
        )


def _window(settings: Settings, add: Callable[[Check], None]) -> None:
    w = settings.window
    if not w.enabled:
        add(Check("window", True, "none: archive and dearchive run at any time", warning=True))
        return
    where = (
        "inside it now"
        if window.is_open(w)
        else "outside it now: a run started now refuses to start (exit 3)"
    )
    add(Check("window", True, f"{window.describe(w)}; {where}"))
