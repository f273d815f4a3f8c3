"""`vicidial-archiver serve`: the Lead Archive API over HTTP (Starlette on uvicorn).

`POST /vicidial/leads/archive` runs one archive job per request through `run_job`, the same
core as `vicidial-archiver archive`: same chunk, outcomes, checkpoint, lock and window. Every
check that can refuse a request (API key, body, window) runs before the database is touched;
the lock and the connection are the runner's, which refuse before the job row is written, so a
refused request writes nothing.

Jobs run in worker threads, one database connection each, shielded from the request: a client
that hangs up does not stop its job, which finishes its chunks and can be read back through
`GET /vicidial/leads/archive/jobs/{id}`.

API keys are configured as `name:<sha256 hex>`; a presented key is hashed and compared with
every configured digest in constant time. Neither keys nor digests are ever logged.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import hmac
import json
import re
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import structlog
from sqlalchemy.exc import DBAPIError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from archiver import __version__, checkpoint, window
from archiver.config import Settings
from archiver.db import CONNECTION_LOST, Db, connect, make_engine, mysql_errno
from archiver.errors import (
    BadInput,
    ConfigError,
    ConnectError,
    Failed,
    LockHeld,
    SchemaDrift,
    Stopped,
)
from archiver.idlist import MAX_LEAD_ID
from archiver.logging import get_logger
from archiver.runner import JobSpec, job_ids, run_job
from archiver.selection import REQUEST_KEYS, Selection
from archiver.steps import ARCHIVE, OUTCOMES, Flags

ARCHIVE_PATH = "/vicidial/leads/archive"
JOBS_PATH = ARCHIVE_PATH + "/jobs"
PENDING = "pending"  # a lead of an unfinished job that no chunk has reached yet
FLAG_KEYS = ("insert_leads", "update_leads", "delete_leads")
ER_NO_SUCH_TABLE = 1146
MAX_JOB_ID = 2**64 - 1
WORKERS = 8

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


# --- the request body ----------------------------------------------------------------------


@dataclass(frozen=True)
class ArchiveRequest:
    flags: Flags
    lead_ids: tuple[int, ...]  # as given: order and repeats kept


def body_cap(limit: int) -> int:
    """Bytes a body may have: room for `limit` ids pretty-printed, and then some."""
    return 16 * 1024 + 32 * limit


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {_show(key)} appears twice")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _show(value: Any, width: int = 40) -> str:
    text = json.dumps(value, ensure_ascii=True, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def parse_body(raw: bytes, limit: int) -> ArchiveRequest:
    """The Lead Archive API body, strictly: a JSON object with only the known keys; the step
    flags JSON booleans (default true); lead_ids a non-empty array of at most `limit` JSON
    integers from 1 to 4294967295 (strings are refused). ApiError 400 or 413 otherwise."""
    try:
        body = json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=_no_duplicate_keys,
            parse_constant=_no_constants,
        )
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError are too
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)[:120]
        if isinstance(exc, RecursionError):
            reason = "nested too deeply"
        raise ApiError(400, "bad_request", f"the body is not valid JSON: {reason}") from None
    if not isinstance(body, dict):
        raise ApiError(
            400,
            "bad_request",
            'the body must be a JSON object: {"lead_ids": [1, 2], "insert_leads": true, …}',
        )
    unknown = sorted(set(body) - REQUEST_KEYS)
    if unknown:
        shown = ", ".join(_show(k, 30) for k in unknown[:5])
        raise ApiError(
            400,
            "bad_request",
            f"unknown key(s) {shown}; known keys: {', '.join(sorted(REQUEST_KEYS))}",
        )
    flags = []
    for key in FLAG_KEYS:
        value = body.get(key, True)
        if not isinstance(value, bool):
            raise ApiError(400, "bad_request", f"{key} must be true or false, got {_show(value)}")
        flags.append(value)
    ids = body.get("lead_ids")
    if not isinstance(ids, list) or not ids:
        raise ApiError(400, "bad_request", "lead_ids must be a non-empty array of lead ids")
    if len(ids) > limit:
        raise ApiError(
            413,
            "too_many_ids",
            f"lead_ids holds {len(ids)} ids, more than the "
            f"limit of {limit} per request; split the list",
            limit=limit,
        )
    for n, item in enumerate(ids):
        if type(item) is not int or not 1 <= item <= MAX_LEAD_ID:
            raise ApiError(
                400,
                "bad_request",
                f"lead_ids[{n}] is {_show(item)}: lead ids are "
                f"JSON whole numbers from 1 to {MAX_LEAD_ID}",
            )
    return ArchiveRequest(Flags(*flags), tuple(ids))


async def read_body(request: Request, cap: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise ApiError(413, "body_too_large", f"the body is larger than {cap} bytes")
    parts: list[bytes] = []
    size = 0
    async for part in request.stream():
        size += len(part)
        if size > cap:
            raise ApiError(413, "body_too_large", f"the body is larger than {cap} bytes")
        parts.append(part)
    return b"".join(parts)


# --- answers -------------------------------------------------------------------------------


def _when(value: datetime | None) -> str | None:
    # The checkpoint's DATETIMEs are written with NOW(3) in the session's UTC.
    return None if value is None else value.isoformat(timespec="milliseconds") + "Z"


def lead_outcomes(db: Db, job: checkpoint.Job) -> list[dict[str, Any]] | None:
    """Each lead of an id-list job with its outcome: the checkpoint stores the leads not moved;
    every other lead up to the job's cursor was moved; the rest no chunk has reached yet."""
    if not job.explicit:
        return None
    not_moved = dict(checkpoint.leads_of(db, job.job_id, None))
    moved = "archived" if job.direction == ARCHIVE else "dearchived"
    return [
        {"lead_id": lead, "outcome": not_moved.get(lead, moved if lead <= job.cursor else PENDING)}
        for batch in job_ids(db, job).batches(5000)
        for lead in batch
    ]


def job_view(db: Db, job: checkpoint.Job, *, leads: bool = True) -> dict[str, Any]:
    flags = job.identity.get("flags", {})
    view: dict[str, Any] = {
        "job_id": job.job_id,
        "name": job.name,
        "direction": job.direction,
        "state": job.state,
        "stop_reason": job.stop_reason,
        "flags": {f"{k}_leads": bool(flags.get(k)) for k in ("insert", "update", "delete")},
        "counts": dict(sorted(job.counts.items())),
        "chunks": job.chunks,
        "started_at": _when(job.started_at),
        "ended_at": _when(job.ended_at),
        "heartbeat": _when(job.heartbeat),
    }
    if leads:
        view["leads"] = lead_outcomes(db, job)
    return view


def _map_error(exc: Exception) -> ApiError:
    """The status for each failure a job can meet before or while it runs."""
    if isinstance(exc, ConnectError):
        return ApiError(503, "database_unavailable", f"database unreachable: {exc}")
    if isinstance(exc, LockHeld):
        return ApiError(409, "locked", str(exc))
    if isinstance(exc, Stopped) and exc.summary is None:  # the window closed just now
        return ApiError(423, "outside_window", str(exc).split(";")[0])
    if isinstance(exc, SchemaDrift | ConfigError):
        return ApiError(500, "server_not_ready", f"the server is not set up for archiving: {exc}")
    if isinstance(exc, BadInput):
        return ApiError(400, "bad_request", str(exc))
    if isinstance(exc, Failed):
        summary = exc.summary
        job_id = getattr(summary, "job_id", None)
        return ApiError(
            500, "job_failed", f"{exc}; send the same request again to resume it", job_id=job_id
        )
    if isinstance(exc, DBAPIError):
        errno = mysql_errno(exc)
        if errno in CONNECTION_LOST or errno in (2003, 2005):
            return ApiError(
                503, "database_unavailable", f"the database connection failed (MySQL error {errno})"
            )
        return ApiError(
            500,
            "database_error",
            f"database error (MySQL error {errno}); the server log has the details",
        )
    raise exc


# --- the service ---------------------------------------------------------------------------


class Service:
    """The app's state: settings, keys, one engine (a new connection per use), worker pool."""

    def __init__(self, settings: Settings, keys: Sequence[ApiKey] | None = None) -> None:
        self.settings = settings
        self.keys = tuple(keys) if keys is not None else parse_keys(settings.serve.keys)
        self.engine = make_engine(settings)
        self.cap = body_cap(settings.id_limit)
        self._pool: ThreadPoolExecutor | None = None

    @property
    def pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="archiver-job")
        return self._pool

    def close(self) -> None:
        """Waits for running jobs: a shutdown never cuts a job short."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self.engine.dispose()

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn` in a worker thread with this request's log context. Shielded: if the
        request is cancelled (the client went away), the thread still runs to its end."""
        ctx = contextvars.copy_context()
        future = self.pool.submit(ctx.run, fn, *args)
        return await asyncio.shield(asyncio.wrap_future(future))

    @contextmanager
    def db(self) -> Iterator[Db]:
        conn = connect(self.engine, self.settings)
        try:
            yield Db(conn)
        finally:
            with suppress(DBAPIError):
                conn.close()

    def run_archive(self, req: ArchiveRequest) -> dict[str, Any]:
        started = time.monotonic()
        spec = JobSpec(
            direction=ARCHIVE, selection=Selection.from_ids(req.lead_ids), flags=req.flags
        )
        try:
            with self.db() as db:
                try:
                    summary = run_job(db, self.settings, spec)
                except Stopped as exc:
                    if exc.summary is None:
                        raise
                    summary = exc.summary  # the window closed mid-job: report what was done
                assert summary.job_id is not None  # only a dry run has no job
                job = checkpoint.get_job(db, summary.job_id)
                answer = job_view(db, job)
        except ApiError:
            raise
        except Exception as exc:
            raise _map_error(exc) from exc
        answer["warnings"] = list(summary.warnings)
        answer["seconds"] = round(time.monotonic() - started, 3)
        return answer

    def health(self) -> None:
        with self.db() as db:
            db.scalar("SELECT 1")

    def read_job(self, job_id: int) -> dict[str, Any]:
        try:
            with self.db() as db:
                job = checkpoint.get_job(db, job_id)
                return job_view(db, job)
        except ConnectError as exc:
            raise _map_error(exc) from exc
        except BadInput:
            raise ApiError(404, "not_found", f"no job {job_id}") from None
        except DBAPIError as exc:
            if mysql_errno(exc) == ER_NO_SUCH_TABLE:  # no job has ever run here
                raise ApiError(404, "not_found", f"no job {job_id}") from None
            raise _map_error(exc) from exc

    def list_jobs(self, limit: int) -> list[dict[str, Any]]:
        try:
            with self.db() as db:
                jobs = checkpoint.list_jobs(db, limit)
                return [job_view(db, j, leads=False) for j in jobs]
        except DBAPIError as exc:
            if mysql_errno(exc) == ER_NO_SUCH_TABLE:
                return []
            raise _map_error(exc) from exc
        except ConnectError as exc:
            raise _map_error(exc) from exc


# --- endpoints -----------------------------------------------------------------------------

Handler = Callable[[Request, dict[str, Any]], Awaitable[Response]]


def endpoint(
    svc: Service, handler: Handler, *, auth: bool
) -> Callable[[Request], Awaitable[Response]]:
    """Authentication, error answers and the one request log line around a handler."""

    async def run(request: Request) -> Response:
        started = time.monotonic()
        rid = uuid.uuid4().hex[:12]
        rec: dict[str, Any] = {"client": None}
        remote = request.client.host if request.client else None
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
                www = {"WWW-Authenticate": "Key"} if exc.status == 401 else None
                response = exc.response(www)
                rec["error"] = exc.code
            except Exception:
                get_logger().exception("request_failed", path=request.url.path)
                response = ApiError(
                    500, "internal_error", "unexpected server error; the server log has the details"
                ).response()
                rec["error"] = "internal_error"
            finally:
                structlog.contextvars.unbind_contextvars("client")
            response.headers["X-Request-Id"] = rid
            fields = {k: v for k, v in rec.items() if k != "client"}
            get_logger().info(
                "request",
                method=request.method,
                path=request.url.path,
                remote=remote,
                client=rec["client"],
                status=response.status_code,
                duration_ms=round((time.monotonic() - started) * 1000, 1),
                **fields,
            )
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
        answer = await svc.in_thread(svc.run_archive, req)
        rec.update(job_id=answer["job_id"], state=answer["state"], counts=answer["counts"])
        return JSONResponse(answer)

    async def job(request: Request, rec: dict[str, Any]) -> Response:
        job_id = int(request.path_params["job_id"])
        if job_id > MAX_JOB_ID:
            raise ApiError(404, "not_found", f"no job {job_id}")
        rec["job_id"] = job_id
        return JSONResponse(await svc.in_thread(svc.read_job, job_id))

    async def jobs(request: Request, rec: dict[str, Any]) -> Response:
        raw = request.query_params.get("limit", "20")
        if not re.fullmatch(r"[0-9]{1,3}", raw) or not 1 <= int(raw) <= 100:
            raise ApiError(400, "bad_request", "limit must be a whole number from 1 to 100")
        return JSONResponse({"jobs": await svc.in_thread(svc.list_jobs, int(raw))})

    async def healthz(request: Request, rec: dict[str, Any]) -> Response:
        try:
            await svc.in_thread(svc.health)
        except (ConnectError, DBAPIError) as exc:
            get_logger().warning("healthz_failed", reason=str(exc)[:300])
            raise ApiError(503, "database_unavailable", "the database is unreachable") from None
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


def create_app(settings: Settings, keys: Sequence[ApiKey] | None = None) -> Starlette:
    """The ASGI app. `keys` defaults to the parsed `settings.serve.keys`."""
    svc = Service(settings, keys)
    h = make_handlers(svc)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        yield
        # uvicorn has stopped taking requests and answered those in flight; jobs whose client
        # went away may still run: wait for them.
        await asyncio.get_running_loop().run_in_executor(None, svc.close)
        get_logger().info("stopped", reason="shutdown; every job finished")

    routes = [
        Route(ARCHIVE_PATH, endpoint(svc, h["archive"], auth=True), methods=["POST"]),
        Route(JOBS_PATH, endpoint(svc, h["jobs"], auth=True), methods=["GET"]),
        Route(JOBS_PATH + "/{job_id:int}", endpoint(svc, h["job"], auth=True), methods=["GET"]),
        Route("/healthz", endpoint(svc, h["healthz"], auth=False), methods=["GET"]),
        Route("/openapi.json", endpoint(svc, h["openapi"], auth=False), methods=["GET"]),
    ]
    app = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _http_error}
    )
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
    """Serve until SIGTERM/SIGINT; running jobs finish first."""
    import uvicorn

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
    config = uvicorn.Config(
        app,
        log_config=None,
        log_level="warning",
        access_log=False,
        server_header=False,
        lifespan="on",
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


# --- the OpenAPI description -----------------------------------------------------------------


def _error_response(text: str) -> dict[str, Any]:
    return {
        "description": text,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def openapi_document(id_limit: int = 500) -> dict[str, Any]:
    """What GET /openapi.json serves; openapi.json in the repository is this with the default
    limit (`vicidial-archiver serve --openapi > openapi.json`)."""
    ok_json = {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}
    auth: list[dict[str, list[str]]] = [{"ApiKey": []}]
    lead_ids = {
        "type": "array",
        "minItems": 1,
        "maxItems": id_limit,
        "items": {"type": "integer", "minimum": 1, "maximum": MAX_LEAD_ID},
        "description": f"Lead ids, at most {id_limit} (archive.id_limit). JSON integers only; "
        "repeats are allowed and count toward the limit.",
    }
    flag = {"type": "boolean", "default": True}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "vicidial-archiver Lead Archive API",
            "version": __version__,
            "description": "Archive VICIdial leads from vicidial_list into vicidial_list_archive "
            "in verified chunks. Each request is one job with the guarantees of "
            "`vicidial-archiver archive`; nothing is written when a request is "
            "refused.",
        },
        "paths": {
            ARCHIVE_PATH: {
                "post": {
                    "operationId": "archiveLeads",
                    "summary": "Archive the listed leads (one job)",
                    "security": auth,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/ArchiveRequest"}
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "The job ran (state `done`): each lead with "
                            "its outcome. State `stopped`: the window closed during the job; "
                            "leads not reached are `pending` and the same request resumes it.",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/ArchiveResult"}
                                }
                            },
                        },
                        "400": _error_response("The body is not a valid request."),
                        "401": _error_response("Missing or wrong API key."),
                        "409": _error_response("Another job holds the archiver lock."),
                        "413": _error_response(
                            "More lead ids than the limit, or a body too large."
                        ),
                        "423": _error_response("Outside the off-hours window (named in `window`)."),
                        "500": _error_response(
                            "The job failed part-way (resumable: send the same "
                            "request again) or the server is not set up."
                        ),
                        "503": _error_response("The database is unreachable."),
                    },
                }
            },
            JOBS_PATH: {
                "get": {
                    "operationId": "listJobs",
                    "summary": "The newest jobs, without their leads",
                    "security": auth,
                    "parameters": [
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "schema": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": 100,
                                "default": 20,
                            },
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "Newest first.",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["jobs"],
                                        "properties": {
                                            "jobs": {
                                                "type": "array",
                                                "items": {"$ref": "#/components/schemas/Job"},
                                            }
                                        },
                                    }
                                }
                            },
                        },
                        "400": _error_response("limit is not 1 to 100."),
                        "401": _error_response("Missing or wrong API key."),
                        "503": _error_response("The database is unreachable."),
                    },
                }
            },
            JOBS_PATH + "/{job_id}": {
                "get": {
                    "operationId": "getJob",
                    "summary": "A job's state, counts and (for id lists) each lead's outcome",
                    "security": auth,
                    "parameters": [
                        {
                            "name": "job_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "integer", "minimum": 0},
                        }
                    ],
                    "responses": {
                        "200": {"description": "The job.", "content": ok_json},
                        "401": _error_response("Missing or wrong API key."),
                        "404": _error_response("No such job."),
                        "503": _error_response("The database is unreachable."),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "summary": "Checks the database connection",
                    "responses": {
                        "200": {
                            "description": "The database answers.",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {
                                            "status": {"const": "ok"},
                                            "database": {"const": "reachable"},
                                            "version": {"type": "string"},
                                        },
                                    }
                                }
                            },
                        },
                        "503": _error_response("The database is unreachable."),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This description",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1 document.",
                            "content": {"application/json": {}},
                        }
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "ApiKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "`Authorization: Key=<api key>`; the server stores only the "
                    "key's sha256 and logs the client's name, never the key.",
                }
            },
            "schemas": {
                "ArchiveRequest": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["lead_ids"],
                    "properties": {
                        "insert_leads": {**flag, "description": "Copy leads not yet archived."},
                        "update_leads": {
                            **flag,
                            "description": "Refresh archive rows that differ from vicidial_list.",
                        },
                        "delete_leads": {
                            **flag,
                            "description": "Delete from vicidial_list "
                            "only where the archive row is byte-for-byte equal.",
                        },
                        "lead_ids": lead_ids,
                    },
                },
                "Outcome": {"type": "string", "enum": [*OUTCOMES, PENDING]},
                "Job": {
                    "type": "object",
                    "required": ["job_id", "direction", "state", "flags", "counts"],
                    "properties": {
                        "job_id": {"type": "integer"},
                        "name": {"type": ["string", "null"]},
                        "direction": {"enum": ["archive", "dearchive"]},
                        "state": {"enum": ["running", "stopped", "done", "failed", "cancelled"]},
                        "stop_reason": {"type": ["string", "null"]},
                        "flags": {
                            "type": "object",
                            "properties": {k: {"type": "boolean"} for k in FLAG_KEYS},
                        },
                        "counts": {
                            "type": "object",
                            "description": "Leads per outcome.",
                            "additionalProperties": {"type": "integer"},
                        },
                        "chunks": {"type": "integer"},
                        "started_at": {"type": ["string", "null"], "format": "date-time"},
                        "ended_at": {"type": ["string", "null"], "format": "date-time"},
                        "heartbeat": {"type": ["string", "null"], "format": "date-time"},
                        "leads": {
                            "description": "Each lead with its outcome (null for a job "
                            "selected by criteria; left out of job lists). "
                            "`pending`: no chunk has reached it yet.",
                            "type": ["array", "null"],
                            "items": {
                                "type": "object",
                                "required": ["lead_id", "outcome"],
                                "properties": {
                                    "lead_id": {"type": "integer"},
                                    "outcome": {"$ref": "#/components/schemas/Outcome"},
                                },
                            },
                        },
                    },
                },
                "ArchiveResult": {
                    "allOf": [
                        {"$ref": "#/components/schemas/Job"},
                        {
                            "type": "object",
                            "properties": {
                                "warnings": {"type": "array", "items": {"type": "string"}},
                                "seconds": {"type": "number"},
                            },
                        },
                    ]
                },
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {
                        "error": {"type": "string", "description": "A stable code."},
                        "message": {"type": "string"},
                        "window": {"type": "string", "description": "423: the window."},
                        "limit": {"type": "integer", "description": "413: the id limit."},
                        "job_id": {"type": ["integer", "null"]},
                    },
                },
            },
        },
    }
