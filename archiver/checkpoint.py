"""The archiver_ checkpoint tables and the job lock: create, lock, start or resume a job, mark a
chunk's leads pending, record chunks, list jobs.

Owns: every statement on the archiver_ tables, and the server-side named lock one job holds.
Must not: touch the lead tables, or decide what a chunk does (strategies.py).

Every write checks its row count (CheckpointError otherwise). Writes join the chunk's
transaction when one is open (InnoDB data tables); otherwise they commit in one small
transaction of their own, and on MyISAM they are only a resume hint: a resumed chunk
re-derives each lead's state from the two tables.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from archiver import __version__, claims
from archiver.config import Settings
from archiver.db import Db, mysql_errno, q
from archiver.errors import BadInput, Cancelled, Failed, JobMismatch, LockHeld
from archiver.idlist import whole

UNFINISHED = ("running", "stopped", "failed")
MAX_JOB_ID = 2**64 - 1  # archiver_jobs.job_id is BIGINT UNSIGNED
ER_TABLEACCESS_DENIED = 1142
ER_DUP_FIELDNAME = 1060
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_TABLES_AT = re.compile(r"[0-9: /-]{1,64}")


class CheckpointError(Failed):
    """A checkpoint write did not touch the rows it should have."""


def ddl() -> list[str]:
    text = resources.files("archiver").joinpath("sql/checkpoint.sql").read_text("utf-8")
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def present_tables(db: Db) -> set[str]:
    """The checkpoint tables that exist (lower case). The jobs commands read what is there and
    create nothing: only a run (after its lock) and `schema init` create the tables."""
    return {
        str(r[0]).lower()
        for r in db.rows(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
            " AND TABLE_NAME LIKE 'archiver\\_%'"
        )
    }


def ensure_tables(db: Db) -> None:
    """Create the checkpoint tables that are missing. Everything that can refuse is checked
    before the first CREATE (that this account may create each missing table, that an earlier
    version's archiver_pending can be upgraded), so a refusal leaves no table behind."""
    present = present_tables(db)
    missing = [
        (name, stmt)
        for stmt in ddl()
        if (name := stmt.split("EXISTS", 1)[1].split()[0].lower()) not in present
    ]
    for name, _ in missing:
        _check_may_create(db, name)
    if "archiver_pending" in present:
        _upgrade_pending(db)
    for name, stmt in missing:
        try:
            db.write(stmt)
        except DBAPIError as exc:
            if mysql_errno(exc) != ER_TABLEACCESS_DENIED:
                raise
            raise BadInput(_create_denied(db, name)) from None


def _check_may_create(db: Db, table: str) -> None:
    """BadInput when this account may not create `table`, found by the server's own check
    without creating anything: a definition with a duplicate column passes the privilege
    check (1142 otherwise) and then fails (1060). Roles and every level of grant count."""
    if db.dry_run:
        return
    try:
        db.run(f"CREATE TABLE IF NOT EXISTS {q(table)} (`probe` INT, `probe` INT)")
    except DBAPIError as exc:
        errno = mysql_errno(exc)
        if errno == ER_TABLEACCESS_DENIED:
            raise BadInput(_create_denied(db, table)) from None
        if errno != ER_DUP_FIELDNAME:
            raise
    # No error: someone else created the table meanwhile (IF NOT EXISTS); nothing to refuse.


def _create_denied(db: Db, table: str) -> str:
    """The advice when this account may not create a checkpoint table: an account set up by
    the grants.sql of an earlier version lacks the tables added since (archiver_job_ids)."""
    rows = db.rows("SELECT DATABASE(), CURRENT_USER()")
    schema, account = (str(rows[0][0]), str(rows[0][1])) if rows else ("asterisk", "")
    user, _, host = account.rpartition("@")
    grant = (
        f"GRANT CREATE, SELECT, INSERT, UPDATE, DELETE ON `{schema}`.`{table}` TO '{user}'@'{host}'"
    )
    return (
        f"this account may not create the checkpoint table {table} (new in this version, or "
        f"never created); run `{grant}` as an administrator (sql/grants.sql lists every grant), "
        "then run again"
    )


def _upgrade_pending(db: Db) -> None:
    """Tables made by an earlier version lack archiver_pending.copy_hash. The table only ever
    holds one chunk's leads, so adding the column is instant; it needs ALTER on that table."""
    has = db.scalar(
        "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()"
        " AND TABLE_NAME = 'archiver_pending'"
        " AND COLUMN_NAME IN ('copy_hash', 'prev_hash', 'tables_at')"
    )
    if has == 3:
        return
    alter = (
        "ALTER TABLE archiver_pending ADD COLUMN IF NOT EXISTS copy_hash CHAR(64) NULL,"
        " ADD COLUMN IF NOT EXISTS prev_hash CHAR(64) NULL,"
        " ADD COLUMN IF NOT EXISTS tables_at VARCHAR(64) NULL"
    )
    try:
        db.write(alter)
    except DBAPIError:
        raise BadInput(
            "archiver_pending was made by an earlier version and lacks the columns copy_hash, "
            f"prev_hash and tables_at; run `{alter}` as an administrator, then run again"
        ) from None


LOCK_NAME_MAX = 64  # the server's limit on a GET_LOCK name


def lock_name(settings: Settings) -> str:
    """The job lock of this database: `<lock_name>:<database>`, as it always was when that fits
    the server's 64 characters; longer, a readable prefix and a digest of the whole name, so
    two databases whose names share their first characters never share a lock. Every reader
    of the lock (GET_LOCK, IS_USED_LOCK, RELEASE_LOCK, serve, `jobs cancel`) takes it here."""
    full = f"{settings.lock_name}:{settings.db.database}"
    if len(full) <= LOCK_NAME_MAX:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:20]
    return f"{full[: LOCK_NAME_MAX - len(digest) - 1]}~{digest}"


def lock(db: Db, settings: Settings) -> None:
    """Take the job lock (one job per database at a time), or raise LockHeld naming its
    holder."""
    name = lock_name(settings)
    got = db.scalar("SELECT GET_LOCK(:n, 0)", {"n": name})
    if got == 1:
        return
    conn_id = db.scalar("SELECT IS_USED_LOCK(:n)", {"n": name})
    # The job whose connection holds the lock: a job left `running` by a killed process
    # has another connection id, so it is not named by mistake.
    try:
        holder = db.rows(
            "SELECT job_id, job_name, host, pid FROM archiver_jobs WHERE state = 'running'"
            " AND connection_id = :c ORDER BY heartbeat DESC LIMIT 1",
            {"c": conn_id},
        )
    except DBAPIError:  # no checkpoint tables yet: the holder is not one of our jobs
        holder = []
    if holder:
        j = holder[0]
        who = f"job {j[0]}" + (f" ({j[1]})" if j[1] else "") + f" on host {j[2]} pid {j[3]}"
    else:
        who = "another session"
    raise LockHeld(
        f"another job holds the lock {name!r}: {who} (connection {conn_id}); "
        "wait for it to finish or stop it, then run again"
    )


def unlock(db: Db, settings: Settings) -> None:
    try:
        db.scalar("SELECT RELEASE_LOCK(:n)", {"n": lock_name(settings)})
    except SQLAlchemyError:  # connection lost: the server released the lock with it
        pass


def identity_of(identity: Mapping[str, Any]) -> tuple[str, str]:
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest(), text


@dataclass
class Job:
    job_id: int
    name: str | None
    direction: str
    identity: dict[str, Any]
    params: dict[str, Any]
    ids: list[int] | None  # explicit ids of a job made before archiver_job_ids (ids_json)
    state: str
    cursor: int
    counts: Counter[str]
    chunks: int
    runs: int
    host: str
    pid: int
    heartbeat: datetime | None
    started_at: datetime
    ended_at: datetime | None
    active_ms: int
    stop_reason: str | None
    version: str

    @property
    def explicit(self) -> bool:
        """A job of explicit ids (its ids in archiver_job_ids, or in ids_json if older)."""
        return "ids_hash" in self.identity.get("selection", {})

    @property
    def client(self) -> str | None:
        """The API key that started the job (serve); None for a CLI job."""
        client = self.params.get("client")
        return client if isinstance(client, str) else None

    @property
    def label(self) -> str:
        return f"job {self.job_id}" + (f" ({self.name})" if self.name else "")


_JOB_COLS = (
    "job_id, job_name, direction, identity_json, params_json, ids_json, state, cursor_lead_id,"
    " counts_json, chunks, runs, host, pid, heartbeat, started_at, ended_at, active_ms,"
    " stop_reason, tool_version"
)


def _job(row: Sequence[Any]) -> Job:
    return Job(
        job_id=int(row[0]),
        name=row[1],
        direction=row[2],
        identity=json.loads(row[3]),
        params=json.loads(row[4]),
        ids=None if row[5] is None else json.loads(row[5]),
        state=row[6],
        cursor=int(row[7]),
        counts=Counter(json.loads(row[8])),
        chunks=int(row[9]),
        runs=int(row[10]),
        host=row[11],
        pid=int(row[12]),
        heartbeat=row[13],
        started_at=row[14],
        ended_at=row[15],
        active_ms=int(row[16]),
        stop_reason=row[17],
        version=row[18],
    )


def get_job(db: Db, ref: str | int) -> Job:
    """A job by id or by name (the newest of that name); without the checkpoint tables there
    is none (they are not created to find that out)."""
    text = str(ref).strip()
    if "archiver_jobs" not in present_tables(db):
        raise BadInput(f"no job {text!r}; `vicidial-archiver jobs list` shows the jobs")
    if text.isascii() and text.isdigit():  # isdigit alone takes '²', which int() refuses
        job_id = whole(text, MAX_JOB_ID)  # past BIGINT UNSIGNED: no such job
        rows = (
            db.rows(f"SELECT {_JOB_COLS} FROM archiver_jobs WHERE job_id = :r", {"r": job_id})
            if job_id is not None
            else []
        )
    else:
        rows = db.rows(
            f"SELECT {_JOB_COLS} FROM archiver_jobs WHERE job_name = :r"
            " ORDER BY job_id DESC LIMIT 1",
            {"r": text},
        )
    if not rows:
        raise BadInput(f"no job {text!r}; `vicidial-archiver jobs list` shows the jobs")
    return _job(rows[0])


def find_unfinished(db: Db, name: str | None, identity_hash: str) -> Job | None:
    """The job a run resumes: the newest unfinished job of that name, or, for an unnamed run,
    the newest unfinished unnamed job of the same identity."""
    if name:
        rows = db.rows(
            f"SELECT {_JOB_COLS} FROM archiver_jobs WHERE job_name = :n"
            " ORDER BY job_id DESC LIMIT 1",
            {"n": name},
        )
    else:
        rows = db.rows(
            f"SELECT {_JOB_COLS} FROM archiver_jobs WHERE job_name IS NULL AND identity_hash = :h"
            " ORDER BY job_id DESC LIMIT 1",
            {"h": identity_hash},
        )
    if not rows:
        return None
    job = _job(rows[0])
    return job if job.state in UNFINISHED else None


def describe_difference(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    keys = sorted(set(old) | set(new))
    diffs = [f"{k}: {old.get(k)!r} → {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]
    return "; ".join(diffs) or "nothing"


def _expect(count: int, expected: int, what: str) -> None:
    if count != expected:
        raise CheckpointError(
            f"checkpoint write {what} changed {count} row(s), expected {expected}; "
            "another process may be writing the archiver_ tables"
        )


def create_job(
    db: Db,
    *,
    name: str | None,
    direction: str,
    identity: Mapping[str, Any],
    params: Mapping[str, Any],
) -> int:
    """The job row. Its explicit ids, if any, go into archiver_job_ids (`stage_ids`), in the
    same transaction: a job row without all its ids never commits."""
    digest, text = identity_of(identity)
    result = db.run(
        "INSERT INTO archiver_jobs (job_name, direction, identity_hash, identity_json,"
        " params_json, state, counts_json, host, pid, connection_id, heartbeat,"
        " started_at, tool_version) VALUES (:name, :dir, :hash, :ident, :params,"
        " 'running', '{}', :host, :pid, CONNECTION_ID(), NOW(3), NOW(3), :ver)",
        {
            "name": name,
            "dir": direction,
            "hash": digest,
            "ident": text,
            "params": json.dumps(params, sort_keys=True),
            "host": socket.gethostname()[:255],
            "pid": os.getpid(),
            "ver": __version__,
        },
        write=True,
    )
    assert result is not None
    _expect(int(result.rowcount), 1, "creating the job")
    return int(result.lastrowid)


def stage_ids(db: Db, job_id: int, ids: Sequence[int]) -> None:
    """One batch of a new job's ids (sorted, unique) into archiver_job_ids: one statement of
    integer literals (thousands of bound parameters would cost more to render than the insert
    costs the server)."""
    if not ids:
        return
    head = "INSERT INTO archiver_job_ids (job_id, lead_id) VALUES "
    values = ",".join(f"({int(job_id)},{int(i)})" for i in ids)
    n = db.write_literal(head + values, f"{head}/* {len(ids)} ids */")
    _expect(n, len(ids), "staging the job's lead ids")


def staged_count(db: Db, job_id: int) -> int:
    return int(db.scalar("SELECT COUNT(*) FROM archiver_job_ids WHERE job_id = :j", {"j": job_id}))


def claim(db: Db, job: Job) -> None:
    """Mark a job as running in this process (a resume)."""
    n = db.write(
        "UPDATE archiver_jobs SET state = 'running', host = :host, pid = :pid,"
        " connection_id = CONNECTION_ID(), heartbeat = NOW(3), runs = runs + 1,"
        " ended_at = NULL, stop_reason = NULL WHERE job_id = :id AND state = :s",
        {"host": socket.gethostname()[:255], "pid": os.getpid(), "id": job.job_id, "s": job.state},
    )
    _expect(n, 1, f"claiming {job.label}")


def pending_statement(
    job_id: int,
    ids: Sequence[int],
    hashes: Mapping[int, str] | None = None,
    tables_at: str | None = None,
) -> tuple[str, str]:
    """The statement marking the chunk's leads pending, each with the fingerprint of the copy
    about to be written of it (NULL: none), and the short text shown for it. One statement of
    literals (500 bound parameters would cost more to render than the insert costs the
    server); the fingerprints are hex digests read from the server, checked here before they
    go into the text. A lead already pending (a redo) keeps its fingerprint unless a new copy
    is about to be written. `tables_at`: the two tables' versions (`ChunkSql.tables_at`) as
    read when the run began, stored with each lead: an ALTER since then makes them differ,
    never match. Run it with `Db.write_literal`; check its count with `check_pending`."""
    hashes = hashes or {}

    def fp(lead: int) -> str:
        h = hashes.get(lead)
        if h is None:
            return "NULL"
        if not _HEX64.fullmatch(h):
            raise ValueError(f"not a SHA-256 hex digest: {h!r}")
        return f"'{h}'"

    if tables_at is not None and not _TABLES_AT.fullmatch(tables_at):
        raise ValueError(f"not a tables version: {tables_at!r}")
    at = "NULL" if tables_at is None else f"'{tables_at}'"
    values = ",".join(f"({int(job_id)},{int(i)},{fp(i)},{at})" for i in ids)
    head = "INSERT INTO archiver_pending (job_id, lead_id, copy_hash, tables_at) VALUES "
    # The one it replaces is kept: a redo cut before its new copy was written leaves the
    # older copy in the target (assignments run left to right: prev_hash reads the old value).
    tail = (
        " ON DUPLICATE KEY UPDATE prev_hash = IF(VALUES(copy_hash) IS NULL"
        " OR VALUES(copy_hash) = copy_hash, prev_hash, copy_hash),"
        " copy_hash = COALESCE(VALUES(copy_hash), copy_hash),"
        " tables_at = IF(VALUES(copy_hash) IS NULL, tables_at, VALUES(tables_at))"
    )
    return head + values + tail, f"{head}/* {len(ids)} leads */{tail}"


def check_pending(count: int, leads: int) -> None:
    """The row count of `pending_statement` (1 per new lead, 2 per lead updated)."""
    if count > 2 * leads:
        _expect(count, leads, "marking the chunk's leads pending")


# After a table changed under a MyISAM job: the leads in hand were copied before the change.
MARK_ALTERED = "UPDATE archiver_pending SET tables_at = 'altered' WHERE job_id = :j"


def pending_ids(db: Db, job_id: int) -> list[int]:
    """Every lead a job has pending (a MyISAM chunk cut part-way)."""
    rows = db.rows("SELECT lead_id FROM archiver_pending WHERE job_id = :j", {"j": job_id})
    return [int(r[0]) for r in rows]


def pending(db: Db, job_id: int, ids: Sequence[int]) -> set[int]:
    if not ids:
        return set()
    rows = db.rows(
        "SELECT lead_id FROM archiver_pending WHERE job_id = :j AND lead_id IN :ids",
        {"j": job_id, "ids": list(ids)},
    )
    return {int(r[0]) for r in rows}


@dataclass
class ChunkRecord:
    chunk_no: int
    first: int
    last: int
    cursor: int
    leads: int
    counts: Counter[str]
    not_moved: dict[int, str]
    ms: int


def record_chunk(
    db: Db, job: Job, rec: ChunkRecord, totals: Counter[str], *, clear_pending: bool = True
) -> bool:
    """The chunk, its leads not moved and the job's new cursor and counts, in one transaction
    (the chunk's own on InnoDB). A chunk that ran is recorded even when `jobs cancel` ended
    the job meanwhile (its leads did move): True then, and the job stops without another
    chunk."""
    with db.transaction(not db.in_tx):
        n = db.write(
            "INSERT INTO archiver_chunks (job_id, chunk_no, first_lead_id, last_lead_id,"
            " cursor_lead_id, leads, counts_json, ms, done_at) VALUES (:j, :no, :first, :last,"
            " :cursor, :leads, :counts, :ms, NOW(3))",
            {
                "j": job.job_id,
                "no": rec.chunk_no,
                "first": rec.first,
                "last": rec.last,
                "cursor": rec.cursor,
                "leads": rec.leads,
                "counts": json.dumps(dict(rec.counts), sort_keys=True),
                "ms": rec.ms,
            },
        )
        _expect(n, 1, f"recording chunk {rec.chunk_no}")
        if rec.not_moved:
            values = ", ".join(f"(:j, :l{i}, :o{i}, :no)" for i in range(len(rec.not_moved)))
            params: dict[str, Any] = {"j": job.job_id, "no": rec.chunk_no}
            for i, (lead, out) in enumerate(sorted(rec.not_moved.items())):
                params[f"l{i}"], params[f"o{i}"] = lead, out
            # A lead met again later in the same job (a re-run chunk) keeps its latest outcome.
            n = db.write(
                "INSERT INTO archiver_leads (job_id, lead_id, outcome, chunk_no) VALUES "
                + values
                + " ON DUPLICATE KEY UPDATE outcome = VALUES(outcome), chunk_no = VALUES(chunk_no)",
                params,
            )
            if not len(rec.not_moved) <= n <= 2 * len(rec.not_moved):
                _expect(n, len(rec.not_moved), "recording the leads not moved")
        if clear_pending:  # the leads of this chunk; a redo's later leads stay pending
            db.write(
                "DELETE FROM archiver_pending WHERE job_id = :j AND lead_id <= :cursor",
                {"j": job.job_id, "cursor": rec.cursor},
            )
        advance = (
            "UPDATE archiver_jobs SET cursor_lead_id = :cursor, counts_json = :counts,"
            " chunks = :no, heartbeat = NOW(3), active_ms = active_ms + :ms"
            " WHERE job_id = :j AND chunks = :prev AND state = :state"
        )
        params = {
            "cursor": rec.cursor,
            "counts": json.dumps(dict(totals), sort_keys=True),
            "no": rec.chunk_no,
            "ms": rec.ms,
            "j": job.job_id,
            "prev": rec.chunk_no - 1,
        }
        n = db.write(advance, {**params, "state": "running"})
        cancelled = n == 0 and _state_of(db, job.job_id) == "cancelled"
        if cancelled:  # the chunk's leads moved: its record stays with the cancelled job
            n = db.write(advance, {**params, "state": "cancelled"})
        _expect(n, 1, f"advancing {job.label}")
        return cancelled


def cancelled_meanwhile(db: Db, job: Job) -> Cancelled | None:
    """The stop of a job that `jobs cancel` ended while it ran (None: not cancelled)."""
    if _state_of(db, job.job_id) == "cancelled":
        return Cancelled(f"{job.label} was cancelled (`jobs cancel`)")
    return None


def _state_of(db: Db, job_id: int) -> str | None:
    rows = db.rows("SELECT state FROM archiver_jobs WHERE job_id = :j", {"j": job_id})
    return str(rows[0][0]) if rows else None


def finish(db: Db, job_id: int, state: str, reason: str | None) -> None:
    """End a running job. A job cancelled meanwhile stays cancelled: a cancel is final."""
    n = db.write(
        "UPDATE archiver_jobs SET state = :s, stop_reason = :r, ended_at = NOW(3),"
        " heartbeat = NOW(3) WHERE job_id = :j AND state = 'running'",
        {"s": state, "r": (reason or "")[:255] or None, "j": job_id},
    )
    if n == 0 and _state_of(db, job_id) == "cancelled":
        return
    _expect(n, 1, f"ending job {job_id}")


def list_jobs(db: Db, limit: int = 50, *, client: str | None = None) -> list[Job]:
    """The newest jobs first; with `client`, only the jobs that API key started."""
    if "archiver_jobs" not in present_tables(db):
        return []
    mine = " WHERE JSON_UNQUOTE(JSON_EXTRACT(params_json, '$.client')) = :c" if client else ""
    rows = db.rows(
        f"SELECT {_JOB_COLS} FROM archiver_jobs{mine} ORDER BY job_id DESC LIMIT :n",
        {"n": limit, "c": client},
    )
    return [_job(r) for r in rows]


def chunks_of(db: Db, job_id: int, limit: int = 20) -> list[dict[str, Any]]:
    if "archiver_chunks" not in present_tables(db):
        return []
    rows = db.rows(
        "SELECT chunk_no, first_lead_id, last_lead_id, leads, counts_json, ms, done_at"
        " FROM archiver_chunks WHERE job_id = :j ORDER BY chunk_no DESC LIMIT :n",
        {"j": job_id, "n": limit},
    )
    return [
        {
            "chunk": int(r[0]),
            "first_lead_id": int(r[1]),
            "last_lead_id": int(r[2]),
            "leads": int(r[3]),
            "counts": json.loads(r[4]),
            "ms": int(r[5]),
            "done_at": _iso(r[6]),
        }
        for r in reversed(rows)
    ]


LEADS_PAGE = 10_000  # leads read at a time by iter_leads


def leads_of(
    db: Db,
    job_id: int,
    outcome: str | None,
    *,
    after: int = 0,
    upto: int | None = None,
    limit: int = LEADS_PAGE,
) -> list[tuple[int, str]]:
    """At most `limit` leads not moved (with `outcome`, or any) in (after, upto], by lead_id:
    one keyset page."""
    if "archiver_leads" not in present_tables(db):
        return []
    cond = " AND outcome = :o" if outcome else ""
    cond += " AND lead_id <= :u" if upto is not None else ""
    rows = db.rows(
        f"SELECT lead_id, outcome FROM archiver_leads WHERE job_id = :j AND lead_id > :a{cond}"
        " ORDER BY lead_id LIMIT :n",
        {"j": job_id, "o": outcome, "a": after, "u": upto, "n": limit},
    )
    return [(int(r[0]), str(r[1])) for r in rows]


def iter_leads(db: Db, job_id: int, outcome: str | None) -> Iterator[tuple[int, str]]:
    """Every lead not moved (with `outcome`, or any), by lead_id, a page at a time: memory
    stays flat whatever the job's size."""
    after = 0
    while page := leads_of(db, job_id, outcome, after=after, limit=LEADS_PAGE):
        yield from page
        after = page[-1][0]


def cut_leads(db: Db, job_id: int) -> int:
    """How many leads a cut chunk of the job left in hand (MyISAM): only this job can prove
    the copies it made of them are its own."""
    if "archiver_pending" not in present_tables(db):
        return 0
    return int(
        db.scalar("SELECT COUNT(*) FROM archiver_pending WHERE job_id = :j", {"j": job_id}) or 0
    )


def cancel(db: Db, job: Job, *, running: bool = False, force: bool = False) -> None:
    """Cancel an unfinished job. A job that is not running and has a cut chunk is refused
    unless `force`: its leads may be in both tables, and only a run of that job finishes them
    (a running job finishes its chunk before it stops)."""
    if job.state not in UNFINISHED:
        raise JobMismatch(f"{job.label} is {job.state}; only an unfinished job can be cancelled")
    cut = 0 if running or force else cut_leads(db, job.job_id)
    if cut:
        raise JobMismatch(
            f"{job.label} was cut in the middle of a chunk of {cut} leads, which may be in "
            f"both tables until it runs again; finish that chunk first (`jobs resume "
            f"{job.job_id}`, then stop it with Ctrl-C or --max-runtime), or cancel with "
            "--force and check the leads with `verify`"
        )
    n = db.write(
        "UPDATE archiver_jobs SET state = 'cancelled', ended_at = NOW(3),"
        " stop_reason = 'cancelled by jobs cancel' WHERE job_id = :j AND state = :s",
        {"j": job.job_id, "s": job.state},
    )
    _expect(n, 1, f"cancelling {job.label}")


_PRUNABLE = "j.state IN ('done', 'cancelled') AND j.ended_at < NOW(3) - INTERVAL :s SECOND"


def prunable(db: Db, older_than_s: float) -> tuple[datetime, list[Job]]:
    """The cut-off (the server's clock, in the session's UTC) and the finished jobs that ended
    before it, oldest first: what `prune` would delete. Reads only."""
    params = {"s": int(older_than_s)}
    cutoff = db.scalar("SELECT NOW() - INTERVAL :s SECOND", params)
    if "archiver_jobs" not in present_tables(db):
        return cutoff, []
    rows = db.rows(
        f"SELECT {_JOB_COLS} FROM archiver_jobs AS j WHERE {_PRUNABLE} ORDER BY j.job_id", params
    )
    return cutoff, [_job(r) for r in rows]


def prune(db: Db, older_than_s: float, job_ids: Sequence[int] | None = None) -> int:
    """Delete finished jobs (done, cancelled) that ended before the cut-off, with their rows;
    with `job_ids`, only those of them (the jobs a person was asked about)."""
    params: dict[str, Any] = {"s": int(older_than_s)}
    cond = _PRUNABLE
    if job_ids is not None:
        if not job_ids:
            return 0
        cond += " AND j.job_id IN :ids"
        params["ids"] = sorted(job_ids)
    present = present_tables(db)
    if "archiver_jobs" not in present:
        return 0
    with db.transaction():
        # archiver_pending stays: a pruned job's pending rows may hold a pair after an ALTER
        # (steps.ChunkSql.held_expr); a done job has none.
        for table in ("archiver_chunks", "archiver_leads", "archiver_job_ids"):
            if table not in present:
                continue
            db.write(
                f"DELETE t FROM {table} AS t JOIN archiver_jobs AS j ON j.job_id = t.job_id"
                f" WHERE {cond}",
                params,
            )
        return db.write(f"DELETE j FROM archiver_jobs AS j WHERE {cond}", params)


def holds_lock(db: Db, settings: Settings, job: Job) -> bool:
    """The job's own connection holds the job lock now: its process is alive and connected
    (wherever it runs). A `running` job whose connection does not hold it was cut off."""
    sel = job.identity.get("selection", {})
    name = lock_name(settings)
    if claims.small(sel.get("ids_count"), settings):  # it ran beside the big job, on its own lock
        name = claims.job_lock_name(settings, identity_of(job.identity)[0])
    holder = db.scalar("SELECT IS_USED_LOCK(:n)", {"n": name})
    if holder is None:
        return False
    conn = db.scalar("SELECT connection_id FROM archiver_jobs WHERE job_id = :j", {"j": job.job_id})
    return conn is not None and int(conn) == int(holder)


def _iso(when: datetime | None) -> str | None:
    """A stored time (UTC, the session's time zone) as ISO 8601 with its offset."""
    return None if when is None else when.replace(tzinfo=UTC).isoformat()


def describe_job(
    job: Job, chunks: list[dict[str, Any]], *, alive: bool | None = None
) -> dict[str, Any]:
    """What `jobs show` prints, in order, typed (numbers as numbers, times as ISO 8601 with
    their offset, the selection as an object). `alive`: whether a `running` job's connection
    holds the job lock (`holds_lock`); `process` is then "running" or "gone"."""
    leads = sum(job.counts.values())
    seconds = job.active_ms / 1000
    process = None
    if job.state == "running" and alive is not None:
        process = "running" if alive else "gone"
    return {
        "job": job.job_id,
        "name": job.name,
        "direction": job.direction,
        "state": job.state,
        "process": process,
        "selection": job.identity.get("selection"),
        "flags": sorted(k for k, v in job.identity.get("flags", {}).items() if v),
        "chunk_size": job.identity.get("chunk_size"),
        "cursor": job.cursor,
        "chunks": job.chunks,
        "runs": job.runs,
        "leads": leads,
        "rate": {
            "leads_per_second": round(leads / seconds, 1) if seconds else None,
            "chunk_seconds": round(seconds, 3),
        },
        "started": _iso(job.started_at),
        "ended": _iso(job.ended_at),
        "heartbeat": _iso(job.heartbeat),
        "host": job.host,
        "pid": job.pid,
        "stop_reason": job.stop_reason,
        "version": job.version,
        "counts": dict(sorted(job.counts.items())),
        "last_chunks": chunks,
    }
