"""Per-lead claims: no two jobs ever work on the same lead at the same time.

Owns: the claim of each lead a job works on, as a user-level lock of the server
(`GET_LOCK('va~<database digest>~<lead_id>')`), taken and released for a whole set of leads in
one statement; which jobs run beside the big one (`small`); the lock a small job takes on its
own identity. Must not: read or write a table.

Two kinds of job share a database:
- a **big job** (criteria, or more ids than the Lead Archive API's limit) holds the job lock of
  the database for its whole run (checkpoint.lock: one big job at a time), and claims each
  chunk's leads right after the chunk's scan, without waiting: a lead another job holds is
  skipped (`skipped_busy`) and taken by a later run;
- a **small job** (at most `id_limit` explicit ids: a `dearchive LEAD_ID`, an API request) does
  not take the job lock. It claims all of its leads before its first statement, waiting for
  each at most `CLAIM_WAIT` seconds (a big job holds a claim for one chunk, milliseconds), and
  holds them to its end; one it cannot claim in that time refuses the run (exit 4) before
  anything is written.
The server releases a connection's locks when it ends, so a killed job leaves no claim behind.
A big job never waits for a claim, and a small one claims in ascending lead_id order holding no
row lock yet, so two jobs never wait for each other in a cycle.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from archiver.config import Settings
from archiver.db import Db
from archiver.errors import LeadsBusy

# Seconds a small job waits for each lead a big job's chunk holds.
CLAIM_WAIT = 5


def prefix(settings: Settings) -> str:
    """The claims' name prefix: the database by digest, so any name fits GET_LOCK's 64."""
    digest = hashlib.sha256(f"{settings.lock_name}:{settings.db.database}".encode()).hexdigest()
    return f"va~{digest[:16]}~"


def job_lock_name(settings: Settings, identity_hash: str) -> str:
    """A small job's own lock: two runs of the same small job never run at once."""
    return f"{prefix(settings)}job~{identity_hash[:32]}"


def small(ids_count: int | None, settings: Settings) -> bool:
    """A job of at most `id_limit` explicit ids runs beside the big job."""
    return ids_count is not None and ids_count <= settings.id_limit


def take(db: Db, settings: Settings, ids: Sequence[int], wait: int) -> set[int]:
    """Claim each lead, in ascending order, in one statement; the leads claimed."""
    ordered = sorted(set(int(i) for i in ids))
    if not ordered:
        return set()
    # Only digits and the prefix's hex enter the text: no value can change the statement.
    head = prefix(settings)
    wait = int(wait)
    row = db.rows("SELECT " + ", ".join(f"GET_LOCK('{head}{i}', {wait})" for i in ordered))[0]
    return {lead for lead, got in zip(ordered, row, strict=True) if got == 1}


def release(db: Db, settings: Settings, ids: Sequence[int]) -> None:
    ordered = sorted(set(int(i) for i in ids))
    if ordered:
        head = prefix(settings)
        db.rows("SELECT " + ", ".join(f"RELEASE_LOCK('{head}{i}')" for i in ordered))


def claim_all(db: Db, settings: Settings, ids: Sequence[int]) -> None:
    """A small job's claim of every one of its leads, or LockHeld naming those another job
    works on (none of them is kept)."""
    got = take(db, settings, ids, CLAIM_WAIT)
    busy = sorted(set(ids) - got)
    if busy:
        release(db, settings, sorted(got))
        shown = ", ".join(str(i) for i in busy[:10]) + (", …" if len(busy) > 10 else "")
        raise LeadsBusy(
            f"another job has been working on lead(s) {shown} for over {CLAIM_WAIT} s; "
            "run again in a moment (`jobs list` shows the jobs)"
        )


def lock_job(db: Db, settings: Settings, identity_hash: str) -> None:
    name = job_lock_name(settings, identity_hash)
    if db.scalar("SELECT GET_LOCK(:n, 0)", {"n": name}) != 1:
        holder = db.scalar("SELECT IS_USED_LOCK(:n)", {"n": name})
        raise LeadsBusy(
            f"the same job (the same leads and flags) is running now (connection {holder}); "
            "wait for it to finish, then run again"
        )


def unlock_job(db: Db, settings: Settings, identity_hash: str) -> None:
    db.scalar("SELECT RELEASE_LOCK(:n)", {"n": job_lock_name(settings, identity_hash)})
