"""`vicidial-archiver serve`: the Lead Archive API over HTTP (Starlette on uvicorn).

`POST /vicidial/leads/archive` runs one archive job per request through `commands.archive`,
as `vicidial-archiver archive` does: same chunk, outcomes, checkpoint, lock and window. Every
check that can refuse a request (API key, body, window) runs before the database is touched;
the lock and the connection are the runner's, which refuse before the job row is written, so a
refused request writes nothing.

Work runs in a fixed set of worker threads (`WORKERS`) fed by a bounded queue (`QUEUED`): a
request that finds the queue full is answered 503 at once, and a request whose client hangs up
before its work starts is dropped. A job that has started is shielded from its client: it
finishes its chunks and can be read back through `GET /vicidial/leads/archive/jobs/{id}`.
Every database connection has a connect, read and write timeout, and its handshake a deadline
(the README's security notes list every timeout and limit), so a database that accepts TCP and
never answers, or answers a byte at a time, costs a worker `read_timeout` seconds, not forever.
`GET /healthz`, which needs no key, never runs on the workers: it is answered from one shared
probe on a thread of its own, made at most every HEALTH_EVERY seconds (`Health`).

API keys are configured as `name:<sha256 hex>`; a presented key is hashed and compared with
every configured digest in constant time. Neither keys nor digests are ever logged.

API answers carry a fixed message per kind of failure (and the job id when there is one),
read from the kind itself (`api_error`, archiver.errors); the details, the database server's
own text included, go to the server log only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import hashlib
import hmac
import ipaddress
import math
import re
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import structlog
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from archiver import __version__, checkpoint, commands, window
from archiver.api import ARCHIVE_PATH, HEALTH_EVERY, JOBS_PATH, OPERATIONS, openapi_document
from archiver.api_models import LEADS_PAGE, MAX_JOB_ID, MAX_LEAD_ID, PENDING, ArchiveRequestBody
from archiver.checkpoint import lock_name
from archiver.config import Settings
from archiver.db import Db, classify_error, connect, make_engine
from archiver.errors import (
    ArchiverError,
    BadInput,
    ConfigError,
    ConnectError,
    LockHeld,
    NoSuchTable,
    NotSetUp,
)
from archiver.jobtypes import ARCHIVE
from archiver.logging import get_logger
from archiver.options import RunArgs, StepsArgs
from archiver.request import ArchiveRequest, RequestError, body_cap, too_large
from archiver.request import parse as parse_request
from archiver.runner import job_ids
from archiver.selection import Selection
from archiver.workers import Busy, Workers

__all__ = [
    "ARCHIVE_PATH",
    "JOBS_PATH",
    "REQUEST_KEYS",
    "ArchiveRequest",
    "body_cap",
    "openapi_document",
]

REQUEST_KEYS = frozenset(ArchiveRequestBody.model_fields)

# Limits and timeouts; README "Security notes" states each of them.
WORKERS = 8  # threads, each with its own database connection while it works
QUEUED = 32  # requests waiting for a worker; one more is answered 503 `busy` at once
HEADER_TIMEOUT = 10  # s from connection open (or the previous answer) to a request's headers
BODY_TIMEOUT = 10  # s to receive a request's whole body
KEEP_ALIVE = 5  # s an idle connection is kept open after an answer
MAX_HEADER_BYTES = 16 * 1024  # request line and headers
MAX_CONNECTIONS = 64  # open connections (and requests in flight) before uvicorn answers 503
SHUTDOWN_GRACE = 60  # s after SIGTERM that requests in flight (and their jobs) may still run
SHUTDOWN_JOBS = 5  # s more for job threads after the requests are given up

T = TypeVar("T")


class ApiError(Exception):
    """An answer other than 2xx: status, a stable code, a message for people, extra fields."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        body = {"error": self.code, "message": self.message, **self.extra}
        return JSONResponse(body, status_code=self.status, headers=headers)


# --- API keys ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiKey:
    name: str
    digest: bytes = field(repr=False)  # sha256 of the key, never the key itself


def hash_key(key: str) -> str:
    """The `<sha256 hex>` to configure for a key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


_EMPTY_DIGEST = hashlib.sha256(b"").digest()


def parse_keys(entries: Sequence[str]) -> tuple[ApiKey, ...]:
    """`name:<64 hex digits>` entries ([serve] keys, ARCHIVER_API_KEYS). Errors name the entry
    by position only: a raw key pasted by mistake must not end up in a log."""
    keys: list[ApiKey] = []
    for n, entry in enumerate(entries, 1):
        name, _, digest = entry.rpartition(":")
        if not re.fullmatch(r"[A-Za-z0-9_.@-]{1,64}", name) or not re.fullmatch(
            r"[0-9a-fA-F]{64}", digest
        ):
            raise ConfigError(
                f"API key entry {n} ([serve] keys or ARCHIVER_API_KEYS) is not "
                'name:<sha256 hex>; make one with: printf %s "$KEY" | sha256sum'
            )
        raw = bytes.fromhex(digest)
        if raw == _EMPTY_DIGEST:
            raise ConfigError(f"API key entry {n} ({name}) is the hash of an empty key")
        if any(k.name == name for k in keys):
            raise ConfigError(f"API key name {name!r} is configured twice")
        if any(k.digest == raw for k in keys):
            raise ConfigError(f"API key entry {n} ({name}) repeats the key of another client")
        keys.append(ApiKey(name, raw))
    return tuple(keys)


def identify(keys: Sequence[ApiKey], header: str | None) -> str | None:
    """The client name for an `Authorization: Key=<api key>` header, or None. Every configured
    digest is compared, in constant time, whichever matches."""
    if not header or header[:4].lower() != "key=":
        return None
    presented = header[4:].strip()
    if not presented:
        return None
    digest = hashlib.sha256(presented.encode("utf-8")).digest()
    found = None
    for key in keys:
        if hmac.compare_digest(key.digest, digest) and found is None:
            found = key.name
    return found


# --- the serve settings ----------------------------------------------------------------------

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_proxies(entries: Sequence[str]) -> tuple[Network, ...]:
    """[serve] trusted_proxies: addresses or networks (`10.0.0.0/24`)."""
    out = []
    for entry in entries:
        try:
            out.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ConfigError(
                f"serve.trusted_proxies: {entry!r} is not an IP address or network "
                "(e.g. 127.0.0.1 or 10.0.0.0/24)"
            ) from None
    return tuple(out)


def check_timeouts(settings: Settings) -> None:
    for key in ("read_timeout", "job_read_timeout"):
        value = getattr(settings.serve, key)
        if not 1 <= value <= 86400:
            raise ConfigError(f"config key 'serve.{key}' must be 1 to 86400 seconds, got {value}")


def _trusted(host: str, proxies: Sequence[Network]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in net for net in proxies)


def remote_address(request: Request, proxies: Sequence[Network]) -> str | None:
    """The client's address for the log: the peer, or, when the peer is a trusted proxy, the
    right-most address of X-Forwarded-For that is not itself a trusted proxy."""
    peer = request.client.host if request.client else None
    if peer is None or not proxies or not _trusted(peer, proxies):
        return peer
    hops = [h.strip() for v in request.headers.getlist("x-forwarded-for") for h in v.split(",")]
    for hop in reversed(hops):
        if not _trusted(hop, proxies):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # a malformed header: the proxy is the last address we know
    return peer


# --- the request body ----------------------------------------------------------------------


def parse_body(raw: bytes, limit: int) -> ArchiveRequest:
    """The Lead Archive API body (archiver.request, which `--request` uses too); ApiError 400
    or 413 otherwise."""
    try:
        return parse_request(raw, limit)
    except RequestError as exc:
        raise ApiError(exc.status, exc.code, exc.message, **exc.extra) from None


async def read_body(request: Request, cap: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and len(declared) < 20 and int(declared) > cap:
        raise _api(too_large(cap))
    parts: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(BODY_TIMEOUT):
            async for part in request.stream():
                size += len(part)
                if size > cap:
                    raise _api(too_large(cap))
                parts.append(part)
    except TimeoutError:
        raise ApiError(
            408, "body_timeout", f"the body did not arrive within {BODY_TIMEOUT} seconds"
        ) from None
    return b"".join(parts)


def _api(exc: RequestError) -> ApiError:
    return ApiError(exc.status, exc.code, exc.message, **exc.extra)


# --- answers -------------------------------------------------------------------------------


def _when(value: datetime | None) -> str | None:
    # The checkpoint's DATETIMEs are written with NOW(3) in the session's UTC.
    return None if value is None else value.isoformat(timespec="milliseconds") + "Z"


# Stop reasons the tool writes itself, shown as they are; any other reason (a database
# server's error text among them) is replaced by a fixed message: it stays in the job row
# (`jobs show`) and the server log.
_OWN_REASONS = re.compile(
    r"--max-runtime of \S+ reached|the off-hours window \(.*\) closed|stopped by SIG[A-Z]+"
    r"|aborted by a second SIGINT|cancelled by jobs cancel"
    r"|lock wait timeout or deadlock persisted \(MySQL error \d+\)"
    r"|the database connection was lost \(MySQL error \d+\)"
)
FAILED_REASON = "the job failed; the server log has the details"
STOPPED_REASON = "the job stopped early; the server log has the details"


def public_reason(state: str, reason: str | None) -> str | None:
    if reason is None or _OWN_REASONS.fullmatch(reason):
        return reason
    if reason.startswith("throttle gave up: "):
        return reason.split(" (", 1)[0]
    return FAILED_REASON if state == "failed" else STOPPED_REASON


def lead_outcomes(
    db: Db, job: checkpoint.Job, after: int = 0, limit: int = LEADS_PAGE
) -> tuple[list[dict[str, Any]] | None, int | None]:
    """One page of an id-list job's leads with their outcomes: at most `limit` of its ids
    greater than `after`, and the cursor of the next page (None after the last). The checkpoint
    stores the leads not moved; every other lead up to the job's cursor was moved; the rest no
    chunk has reached yet."""
    if not job.explicit:
        return None, None
    ids = job_ids(db, job).after(after, limit + 1)
    more, ids = len(ids) > limit, ids[:limit]
    if not ids:
        return [], None
    not_moved = dict(checkpoint.leads_of(db, job.job_id, None, after=after, upto=ids[-1]))
    moved = "archived" if job.direction == ARCHIVE else "dearchived"
    leads = [
        {"lead_id": lead, "outcome": not_moved.get(lead, moved if lead <= job.cursor else PENDING)}
        for lead in ids
    ]
    return leads, ids[-1] if more else None


def job_view(
    db: Db,
    job: checkpoint.Job,
    *,
    leads: bool = True,
    after: int = 0,
    limit: int = LEADS_PAGE,
) -> dict[str, Any]:
    flags = job.identity.get("flags", {})
    view: dict[str, Any] = {
        "job_id": job.job_id,
        "name": job.name,
        "direction": job.direction,
        "state": job.state,
        "stop_reason": public_reason(job.state, job.stop_reason),
        "flags": {f"{k}_leads": bool(flags.get(k)) for k in ("insert", "update", "delete")},
        "counts": dict(sorted(job.counts.items())),
        "chunks": job.chunks,
        "started_at": _when(job.started_at),
        "ended_at": _when(job.ended_at),
        "heartbeat": _when(job.heartbeat),
    }
    if leads:
        view["leads"], view["next"] = lead_outcomes(db, job, after, limit)
    return view


def api_error(exc: Exception, settings: Settings, job_id: int | None = None) -> ApiError:
    """The answer for an error kind (a database error is classified first): its status, its
    code, and its public message filled from the server's context, with the job id when there
    is one. The details go to the server log only. Anything else is not a kind: re-raised."""
    if isinstance(exc, DBAPIError):
        kind: ArchiverError = classify_error(exc)
    elif isinstance(exc, ArchiverError):
        kind = exc
    else:
        raise exc
    context: dict[str, Any] = {
        "host": settings.db.host,
        "port": settings.db.port,
        "lock": lock_name(settings),
        "holder": f": job {job_id}" if job_id is not None else "",
        "window": window.describe(settings.window),
        "job_id": job_id,
    }
    message = str(kind) if kind.public is None else kind.public.format(**context)
    extra = {name: context[name] for name in kind.api_fields}
    api = ApiError(kind.http_status, kind.code, message, **extra)
    get_logger().warning(
        "request_refused" if api.status < 500 else "request_failed",
        error=api.code,
        job_id=job_id,
        detail=str(getattr(exc, "orig", exc))[:500],
    )
    return api


def server_side(exc: Exception) -> Exception:
    """An error raised by a job the server started for a request. The request was checked
    before the job (its body, the window): a refusal that would show its own message (it
    speaks of the input it was given) speaks of the server's config, account or tables, so it
    is a set-up problem, answered with a fixed message; its own goes to the server log."""
    if isinstance(exc, ArchiverError) and exc.public is None:
        return NotSetUp(exc.message)
    return exc


def _holder_job(db: Db, settings: Settings) -> int | None:
    """The job whose connection holds the lock, if the checkpoint names one. Reads only: with
    no checkpoint table there is no job to name."""
    try:
        conn_id = db.scalar("SELECT IS_USED_LOCK(:n)", {"n": lock_name(settings)})
        if conn_id is None:
            return None
        rows = db.rows(
            "SELECT job_id FROM archiver_jobs WHERE state = 'running'"
            " AND connection_id = :c ORDER BY heartbeat DESC LIMIT 1",
            {"c": conn_id},
        )
    except DBAPIError:
        return None
    return int(rows[0][0]) if rows else None


# --- the service ---------------------------------------------------------------------------


def timed_engine(settings: Settings, read_timeout: int, statement_timeout: int) -> Engine:
    """An engine whose connections time out: the TCP connect after [database] connect_timeout,
    the handshake, login and session settings after `read_timeout` in all, and, once
    connected, a statement's answer after `statement_timeout`."""
    engine = make_engine(settings, handshake_timeout=read_timeout)

    @event.listens_for(engine, "connect")
    def _statements(dbapi_conn: Any, _rec: Any) -> None:
        # After the handshake and the session settings (which leave no read timeout).
        # PyMySQL reads these attributes before every read and write; no public setter.
        dbapi_conn._read_timeout = statement_timeout
        dbapi_conn._write_timeout = statement_timeout

    return engine


class Health:
    """The answer of `/healthz`, which needs no key: one database probe (connect, SELECT 1) at
    a time, on a thread of its own, never on the job workers; its result is every caller's
    answer for `every` seconds, so anonymous callers cost the database one connection per
    `every` seconds whatever their number. A caller waits for a running probe at most `wait`
    seconds (then: unreachable); a probe that hangs on does not start another."""

    def __init__(self, probe: Callable[[], None], every: float, wait: float) -> None:
        self._probe, self._every, self._wait = probe, every, wait
        self._lock = threading.Lock()
        self._ok = False
        self._done_at = -math.inf
        self._running: concurrent.futures.Future[bool] | None = None

    def _current(self) -> concurrent.futures.Future[bool] | bool:
        with self._lock:
            if self._running is not None:
                return self._running
            if time.monotonic() - self._done_at < self._every:
                return self._ok
            future: concurrent.futures.Future[bool] = concurrent.futures.Future()
            self._running = future
        ctx = contextvars.copy_context()
        threading.Thread(
            target=ctx.run, args=(self._run, future), name="archiver-health", daemon=True
        ).start()
        return future

    def _run(self, future: concurrent.futures.Future[bool]) -> None:
        ok = False
        try:
            self._probe()
            ok = True
        except (ArchiverError, DBAPIError) as exc:
            get_logger().warning("healthz_failed", reason=str(exc)[:300])
        except Exception:
            get_logger().exception("healthz_failed")
        finally:
            with self._lock:
                self._ok, self._done_at, self._running = ok, time.monotonic(), None
            future.set_result(ok)

    async def ok(self) -> bool:
        """Whether the database answered the latest probe (made now if the last is stale)."""
        current = self._current()
        if isinstance(current, bool):
            return current
        try:
            async with asyncio.timeout(self._wait):
                return await asyncio.shield(asyncio.wrap_future(current))
        except TimeoutError:
            return False


class ClientGone(Exception):
    """The client hung up before its work started: the work was dropped."""


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


class Service:
    """The app's state: settings, keys, two engines (a new connection per use), the workers."""

    def __init__(self, settings: Settings, keys: Sequence[ApiKey] | None = None) -> None:
        self.settings = settings
        self.keys = tuple(keys) if keys is not None else parse_keys(settings.serve.keys)
        self.proxies = parse_proxies(settings.serve.trusted_proxies)
        check_timeouts(settings)
        short, long = settings.serve.read_timeout, settings.serve.job_read_timeout
        self.engine = timed_engine(settings, short, short)  # /healthz and the jobs endpoints
        self.job_engine = timed_engine(settings, short, long)  # jobs
        self.cap = body_cap(settings.id_limit)
        self.workers = Workers(WORKERS, QUEUED, "archiver-job")
        # The probe: TCP, then the handshake and SELECT 1 within read_timeout each.
        wait = settings.db.connect_timeout + 2 * short
        self.health_check = Health(self.health, HEALTH_EVERY, wait)

    def close(self, timeout: float) -> int:
        """Withdraws queued work, waits up to `timeout` s for running work; returns how many
        were still running."""
        left = self.workers.close(timeout)
        self.engine.dispose()
        self.job_engine.dispose()
        return left

    async def in_thread(self, request: Request, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn` in a worker thread with this request's log context. Refused at once (503)
        when the queue is full; dropped, never started, when the client hangs up while it
        waits; once started it runs to its end even if the client goes away."""
        with suppress(TimeoutError):  # a client already gone is seen before any work
            async with asyncio.timeout(0):
                await _disconnected(request)
                raise ClientGone
        ctx = contextvars.copy_context()
        try:
            future = self.workers.submit(functools.partial(ctx.run, fn, *args))
        except Busy:
            raise ApiError(
                503, "busy", "the server is busy; send the request again in a few seconds"
            ) from None
        waiter = asyncio.wrap_future(future)
        gone = asyncio.ensure_future(_disconnected(request))
        either: set[asyncio.Future[Any]] = {waiter, gone}
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not waiter.done() and future.cancel():  # the client left before the work began
            raise ClientGone
        return await asyncio.shield(waiter)

    @contextmanager
    def db(self, engine: Engine | None = None) -> Iterator[Db]:
        conn = connect(engine or self.engine, self.settings)
        try:
            yield Db(conn)
        finally:
            with suppress(DBAPIError):
                conn.close()

    def run_archive(self, req: ArchiveRequest, client: str | None = None) -> dict[str, Any]:
        started = time.monotonic()
        selection, steps = Selection.from_ids(req.lead_ids), StepsArgs.of(req.flags)
        run = RunArgs(client=client)
        try:
            with self.db(self.job_engine) as db:
                try:
                    summary = commands.archive(self.settings, selection, steps, run, db=db)
                except LockHeld as exc:
                    raise api_error(exc, self.settings, _holder_job(db, self.settings)) from exc
                failed = commands.outcome_error(summary)
                if summary.state == "failed" and failed is not None:
                    raise api_error(failed, self.settings, summary.job_id)
                # Stopped (the window closed mid-job) or cancelled: report what was done.
                assert summary.job_id is not None  # only a dry run has no job
                job = commands.job(self.settings, summary.job_id, db=db)
                answer = job_view(db, job)
        except ApiError:
            raise
        except Exception as exc:
            raise api_error(server_side(exc), self.settings) from exc
        answer["warnings"] = list(summary.warnings)
        answer["seconds"] = round(time.monotonic() - started, 3)
        return answer

    def health(self) -> None:
        with self.db() as db:
            db.scalar("SELECT 1")

    def sees_all(self, client: str | None) -> bool:
        """Whether an API key sees every job (CLI jobs included): a key named in
        [serve] admin_keys, or no key (a library caller). Any other key sees only the jobs
        it started; another job is answered as if it did not exist."""
        return client is None or client in self.settings.serve.admin_keys

    def read_job(
        self, job_id: int, after: int = 0, limit: int = LEADS_PAGE, client: str | None = None
    ) -> dict[str, Any]:
        try:
            with self.db() as db:
                job = commands.job(self.settings, job_id, db=db)
                if not self.sees_all(client) and job.client != client:
                    raise BadInput(f"job {job_id} was started by another API key")
                return job_view(db, job, after=after, limit=limit)
        except ConnectError as exc:
            raise api_error(exc, self.settings) from exc
        except BadInput:
            raise ApiError(404, "not_found", f"no job {job_id}") from None
        except checkpoint.CheckpointError as exc:  # its staged ids were deleted by hand
            get_logger().warning("request_failed", error="job_ids_incomplete", detail=str(exc))
            raise ApiError(
                500,
                "job_ids_incomplete",
                f"job {job_id} has lost some of its staged lead ids, so its leads cannot be "
                "listed; the server log has the details",
                job_id=job_id,
            ) from None
        except DBAPIError as exc:
            if isinstance(classify_error(exc), NoSuchTable):  # no job has ever run here
                raise ApiError(404, "not_found", f"no job {job_id}") from None
            raise api_error(exc, self.settings, job_id) from exc

    def list_jobs(self, limit: int, client: str | None = None) -> list[dict[str, Any]]:
        mine = None if self.sees_all(client) else client
        try:
            with self.db() as db:
                jobs = commands.jobs_list(self.settings, limit, db=db, client=mine)
                return [job_view(db, j, leads=False) for j in jobs]
        except DBAPIError as exc:
            if isinstance(classify_error(exc), NoSuchTable):
                return []
            raise api_error(exc, self.settings) from exc
        except ConnectError as exc:
            raise api_error(exc, self.settings) from exc


# --- endpoints -----------------------------------------------------------------------------

Handler = Callable[[Request, dict[str, Any]], Awaitable[Response]]


def _log_request(
    request: Request, remote: str | None, rec: dict[str, Any], status: int, started: float
) -> None:
    fields = {k: v for k, v in rec.items() if k != "client"}
    get_logger().info(
        "request",
        method=request.method,
        path=request.url.path[:200],
        remote=remote,
        client=rec.get("client"),
        status=status,
        duration_ms=round((time.monotonic() - started) * 1000, 1),
        **fields,
    )


def endpoint(
    svc: Service, handler: Handler, *, auth: bool
) -> Callable[[Request], Awaitable[Response]]:
    """Authentication, error answers and the one request log line around a handler."""

    async def run(request: Request) -> Response:
        started = time.monotonic()
        rid = uuid.uuid4().hex[:12]
        rec: dict[str, Any] = {"client": None}
        remote = remote_address(request, svc.proxies)
        with structlog.contextvars.bound_contextvars(request_id=rid):
            try:
                if auth:
                    rec["client"] = identify(svc.keys, request.headers.get("authorization"))
                    if rec["client"] is None:
                        raise ApiError(
                            401,
                            "unauthorized",
                            "missing or wrong API key; send "
                            "the header Authorization: Key=<api key>",
                        )
                    structlog.contextvars.bind_contextvars(client=rec["client"])
                response = await handler(request, rec)
            except ApiError as exc:
                headers = {"WWW-Authenticate": "Key"} if exc.status == 401 else {}
                if exc.status == 503:
                    headers["Retry-After"] = "5"
                if exc.status == 408:
                    headers["Connection"] = "close"
                response = exc.response(headers or None)
                rec["error"] = exc.code
            except ClientGone:
                response = ApiError(499, "client_gone", "the client hung up").response()
                rec["error"] = "client_gone"
            except Exception:
                get_logger().exception("request_failed", path=request.url.path[:200])
                response = ApiError(
                    500, "internal_error", "unexpected server error; the server log has the details"
                ).response()
                rec["error"] = "internal_error"
            finally:
                structlog.contextvars.unbind_contextvars("client")
            response.headers["X-Request-Id"] = rid
            _log_request(request, remote, rec, response.status_code, started)
            return response

    return run


def make_handlers(svc: Service) -> dict[str, Handler]:
    async def archive(request: Request, rec: dict[str, Any]) -> Response:
        req = parse_body(await read_body(request, svc.cap), svc.settings.id_limit)
        rec["ids"] = len(req.lead_ids)
        w = svc.settings.window
        if not window.is_open(w):
            desc = window.describe(w)
            raise ApiError(
                423,
                "outside_window",
                f"outside the off-hours window ({desc}); "
                "archiving runs only inside it, send the request again then",
                window=desc,
            )
        answer = await svc.in_thread(request, svc.run_archive, req, rec["client"])
        rec.update(job_id=answer["job_id"], state=answer["state"], counts=answer["counts"])
        return JSONResponse(answer)

    async def job(request: Request, rec: dict[str, Any]) -> Response:
        raw = request.path_params["job_id"]
        # Bounded before int(): 4,301 digits would raise inside int() itself.
        if not re.fullmatch(r"[0-9]{1,20}", raw) or int(raw) > MAX_JOB_ID:
            raise ApiError(404, "not_found", "no such job; job ids are whole numbers")
        job_id = int(raw)
        rec["job_id"] = job_id
        after = request.query_params.get("after", "0")
        if not re.fullmatch(r"[0-9]{1,10}", after) or int(after) > MAX_LEAD_ID:
            raise ApiError(400, "bad_request", f"after must be a lead id from 0 to {MAX_LEAD_ID}")
        limit = request.query_params.get("limit", str(LEADS_PAGE))
        if not re.fullmatch(r"[0-9]{1,4}", limit) or not 1 <= int(limit) <= LEADS_PAGE:
            raise ApiError(
                400, "bad_request", f"limit must be a whole number from 1 to {LEADS_PAGE}"
            )
        answer = await svc.in_thread(
            request, svc.read_job, job_id, int(after), int(limit), rec["client"]
        )
        return JSONResponse(answer)

    async def jobs(request: Request, rec: dict[str, Any]) -> Response:
        raw = request.query_params.get("limit", "20")
        if not re.fullmatch(r"[0-9]{1,3}", raw) or not 1 <= int(raw) <= 100:
            raise ApiError(400, "bad_request", "limit must be a whole number from 1 to 100")
        listed = await svc.in_thread(request, svc.list_jobs, int(raw), rec["client"])
        return JSONResponse({"jobs": listed})

    async def healthz(request: Request, rec: dict[str, Any]) -> Response:
        if not await svc.health_check.ok():
            raise ApiError(503, "database_unavailable", "the database is unreachable")
        return JSONResponse({"status": "ok", "database": "reachable", "version": __version__})

    async def openapi(request: Request, rec: dict[str, Any]) -> Response:
        return JSONResponse(openapi_document(svc.settings.id_limit))

    return {"archive": archive, "job": job, "jobs": jobs, "healthz": healthz, "openapi": openapi}


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return ApiError(exc.status_code, code, str(exc.detail)).response(
        dict(exc.headers) if exc.headers else None
    )


async def _server_error(request: Request, exc: Exception) -> Response:
    """Anything raised outside an endpoint (the router, a converter): JSON, and logged."""
    get_logger().error("request_failed", path=request.url.path[:200], error=type(exc).__name__)
    _log_request(request, None, {"error": "internal_error"}, 500, time.monotonic())
    return ApiError(
        500, "internal_error", "unexpected server error; the server log has the details"
    ).response()


def create_app(settings: Settings, keys: Sequence[ApiKey] | None = None) -> Starlette:
    """The ASGI app. `keys` defaults to the parsed `settings.serve.keys`."""
    svc = Service(settings, keys)
    h = make_handlers(svc)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        yield
        # uvicorn has stopped taking requests and waited (SHUTDOWN_GRACE at most) for those in
        # flight; a job whose client went away may still run: wait SHUTDOWN_JOBS more for it.
        left = await asyncio.to_thread(svc.close, SHUTDOWN_JOBS)
        if left:
            get_logger().warning(
                "stopped",
                reason=f"shutdown; {left} job(s) still running were cut off, each resumable "
                "by sending the same request again",
            )
        else:
            get_logger().info("stopped", reason="shutdown; every job finished")

    # One Route per declared operation (archiver.api), the table openapi.json is built from.
    routes = [
        Route(op.path, endpoint(svc, h[op.handler], auth=op.auth), methods=[op.method])
        for op in OPERATIONS
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )
    # `/healthz/` answers 404, not a 307 to a Location built from the Host header.
    app.router.redirect_slashes = False
    app.state.service = svc
    return app


# --- running it ----------------------------------------------------------------------------


def parse_listen(text: str) -> tuple[str, int]:
    """`host:port`, `[v6]:port` or `:port` (127.0.0.1)."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})|([^:\[\]]*):([0-9]{1,5})", text.strip())
    if not m:
        raise BadInput(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    host = m.group(1) or m.group(3) or "127.0.0.1"
    port = int(m.group(2) or m.group(4))
    if not 1 <= port <= 65535:
        raise BadInput(f"--listen {text!r}: the port must be 1 to 65535")
    return host, port


def bind(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, addr = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
    except OSError as exc:
        raise BadInput(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def serve(settings: Settings, listen: str) -> None:
    """Serve until SIGTERM/SIGINT: the listener closes at once, work not yet started is
    dropped, and requests and jobs in flight get SHUTDOWN_GRACE + SHUTDOWN_JOBS seconds."""
    import uvicorn

    from archiver.http_limits import protocol

    host, port = parse_listen(listen)
    keys = parse_keys(settings.serve.keys)
    if not keys:
        raise ConfigError(
            'no API keys configured: set [serve] keys = ["name:<sha256 hex>"] '
            "in the config or ARCHIVER_API_KEYS=name:<sha256 hex>"
        )
    app = create_app(settings, keys)
    sock = bind(host, port)
    # Our own request log line replaces uvicorn's access log; uvicorn's own messages (warnings
    # and errors only, no request headers) go to stderr through the logging module.
    # proxy_headers off: uvicorn would believe X-Forwarded-For from 127.0.0.1, that is from
    # any local process; the request log uses [serve] trusted_proxies instead.
    config = uvicorn.Config(
        app,
        http=protocol(HEADER_TIMEOUT),
        log_config=None,
        log_level="warning",
        access_log=False,
        server_header=False,
        proxy_headers=False,
        lifespan="on",
        timeout_keep_alive=KEEP_ALIVE,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        limit_concurrency=MAX_CONNECTIONS,
        timeout_graceful_shutdown=SHUTDOWN_GRACE,
    )
    get_logger().info(
        "serving",
        listen=f"{host}:{sock.getsockname()[1]}",
        clients=[k.name for k in keys],
        database=settings.safe_dsn,
        id_limit=settings.id_limit,
    )
    # On SIGTERM/SIGINT uvicorn shuts down gracefully, then re-raises the signal, so the exit
    # status is the signal's (systemd counts SIGTERM as a clean stop).
    uvicorn.Server(config).run(sockets=[sock])
