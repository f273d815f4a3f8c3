"""`demo`: a throwaway database with synthetic leads, and the tool run on it end to end.

Each step runs the real command line in a child process and shows it with its output, so what
the demo prints is exactly what an admin would type and see.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import replace

from archiver import synthetic
from archiver.config import Settings
from archiver.db import Db, connect, make_engine

Out = Callable[[str], None]


def _dsn(settings: Settings, database: str) -> str:
    d = settings.db
    return f"mysql://{d.user}@{d.host}:{d.port}/{database}"


def steps(db_name: str, archived_phones: list[str], one_lead: int) -> list[tuple[str, list[str]]]:
    crit = ["--campaign", "OLDLEADS", "--last-call-before", "2023-01-01"]
    return [
        (
            "Dry run: the plan, the counts and one chunk's statements; nothing is written",
            ["archive", *crit, "--dry-run"],
        ),
        (
            "Archive: the same leads move in verified chunks, as job demo-archive (resumable)",
            ["archive", *crit, "--job-name", "demo-archive"],
        ),
        (
            "Search: archived leads by phone, as VICIdial's lead_search API prints them",
            ["search", "--archived", "--header", ",".join(archived_phones)],
        ),
        (
            "Dearchive one lead, as VICIdial's lead_dearchive API prints it",
            ["dearchive", str(one_lead), "--user", "demo"],
        ),
        (
            "Dearchive the archived SALE leads, ready to dial again (--reset-called)",
            ["dearchive", "--campaign", "OLDLEADS", "--status", "SALE", "--reset-called"],
        ),
        (
            "Verify: no lead of the campaign is in both tables with different data",
            ["verify", "--campaign", "OLDLEADS"],
        ),
        (
            "Jobs: the archive job as the checkpoint tables recorded it",
            ["jobs", "show", "demo-archive"],
        ),
    ]


def run_demo(
    settings: Settings, out: Out, *, leads: int = 50_000, keep: bool = False, engine: str = "MyISAM"
) -> int:
    """Returns the exit code: 0 when every step did what it should."""
    name = f"vicidial_demo_{uuid.uuid4().hex[:8]}"
    server = replace(settings, db=replace(settings.db, database=""))
    admin = Db(connect(make_engine(server, database=""), server))
    out(f"# demo database {name} on {server.db.host}:{server.db.port} ({engine})")
    started = time.monotonic()
    synthetic.create_database(admin, name)
    try:
        demo = replace(settings, db=replace(settings.db, database=name))
        db = Db(connect(make_engine(demo), demo))
        synthetic.create_tables(db, engine)
        synthetic.seed_leads(db, leads)
        out(f"# loaded {leads:,} synthetic leads in {time.monotonic() - started:.1f}s\n")
        phones, one = _samples(db)
        db.conn.close()
        env = {**os.environ, "ARCHIVER_DB_PASSWORD": settings.db.password, "ARCHIVER_CONFIG": ""}
        failures = 0
        todo = steps(name, phones, one)
        for n, (title, args) in enumerate(todo, 1):
            argv = ["vicidial-archiver", "--log-format", "json", *args]
            out(f"## {n}/{len(todo)} {title}\n$ {' '.join(_shown(a) for a in argv)}")
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "archiver",
                    "--dsn",
                    _dsn(settings, name),
                    "--log-format",
                    "json",
                    *args,
                ],
                capture_output=True,
                text=True,
                env=env,
                check=False,
            )
            out(proc.stdout.rstrip())
            if proc.returncode != 0:
                failures += 1
                errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error:")]
                out(f"(exit {proc.returncode}) " + " ".join(errors))
            out("")
        out(
            f"# demo finished in {time.monotonic() - started:.1f}s"
            + (f", {failures} step(s) failed" if failures else "")
        )
        return 1 if failures else 0
    finally:
        if keep:
            out(f"# kept database {name}; drop it with: DROP DATABASE `{name}`")
        else:
            synthetic.drop_database(admin, name)
            out(f"# dropped database {name}")
        admin.conn.close()


def _shown(arg: str) -> str:
    return f"'{arg}'" if any(c in arg for c in " ,*()") else arg


def _samples(db: Db) -> tuple[list[str], int]:
    """Phone numbers of leads the archive step will move, and one lead to bring back."""
    rows = db.rows(
        "SELECT l.phone_number, l.lead_id FROM vicidial_list l JOIN vicidial_lists v"
        " ON v.list_id = l.list_id WHERE v.campaign_id = 'OLDLEADS'"
        " AND l.last_local_call_time < '2023-01-01' AND l.status <> 'SALE'"
        " ORDER BY l.lead_id LIMIT 3"
    )
    return [str(r[0]) for r in rows], int(rows[-1][1])
