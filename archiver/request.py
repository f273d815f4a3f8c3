"""The Lead Archive API body, parsed by one function for `POST /vicidial/leads/archive` and for
`--request PATH|-`, so both accept and refuse the same bodies with the same message.

The body's shape is `archiver.api_models.ArchiveRequestBody` (the model the published OpenAPI
document is generated from): a JSON object with only the known keys; the step flags are JSON
booleans (default true); lead_ids is a non-empty array of at most `limit` JSON integers from 1
to 4294967295 (repeats count toward the limit; strings, floats and booleans are refused).

Every input is bounded before it is decoded: its size (`body_cap`), its nesting depth and the
digits of a number; duplicate keys and NaN/Infinity are refused while decoding. Only then is
the decoded object validated with the model, and the model's first error, in the order a
reader goes through the body, is told with a message that names the field. No body raises
anything but RequestError; at the default id limit none costs more than a few milliseconds
(the cap, and so the worst case, grows with the limit).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from archiver.errors import BadInput
from archiver.idlist import MAX_LEAD_ID
from archiver.jobtypes import Flags

if TYPE_CHECKING:
    from pydantic.fields import FieldInfo
    from pydantic_core import ErrorDetails

MAX_DEPTH = 32  # a valid body nests 2 deep; the bound only keeps the parser's recursion small
MAX_DIGITS = 20  # the longest lead id has 10; 2**64 has 20


class RequestError(BadInput):
    """A body that is not a valid request. `status` and `code` are its HTTP answer; the CLI
    shows the message after the source's name and exits 2."""

    def __init__(self, message: str, *, status: int = 400, code: str = "bad_request", **extra: Any):
        super().__init__(message)
        self.status, self.code, self.extra = status, code, extra


@dataclass(frozen=True)
class ArchiveRequest:
    flags: Flags
    lead_ids: tuple[int, ...]  # as given: order and repeats kept


def body_cap(limit: int) -> int:
    """Bytes a body may have: room for `limit` ids pretty-printed, and then some."""
    return 16 * 1024 + 32 * limit


def too_large(cap: int) -> RequestError:
    return RequestError(f"the body is larger than {cap} bytes", status=413, code="body_too_large")


def read_bounded(stream: IO[bytes], cap: int) -> bytes:
    """At most `cap` bytes of a stream (a file, stdin, /dev/zero); RequestError beyond."""
    raw = stream.read(cap + 1)
    if len(raw) > cap:
        raise too_large(cap)
    return raw


def _show(value: Any, width: int = 40) -> str:
    text = json.dumps(value, ensure_ascii=True, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {_show(key)} appears twice")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_DIGITS:
        raise ValueError(f"a number has more than {MAX_DIGITS} digits")
    return int(text)


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"?', re.S)
_BRACKET = re.compile(r"[\[\]{}]")


def _too_deep(text: str) -> bool:
    depth = 0
    for m in _BRACKET.finditer(_STRING.sub("", text)):
        depth += 1 if m.group() in "[{" else -1
        if depth > MAX_DEPTH:
            return True
    return False


def _decode(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
        if _too_deep(text):
            raise RequestError(f"the body is nested too deeply (more than {MAX_DEPTH} levels)")
        return json.loads(
            text,
            object_pairs_hook=_no_duplicate_keys,
            parse_constant=_no_constants,
            parse_int=_bounded_int,
        )
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors too
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)[:120]
        raise RequestError(f"the body is not valid JSON: {reason}") from None


def parse(raw: bytes, limit: int) -> ArchiveRequest:
    """The request in `raw`, or RequestError: 400, or 413 for more ids than `limit`. Callers
    read at most `body_cap(limit)` bytes (`read_bounded`, serve's `read_body`)."""
    # pydantic is imported when a body is parsed, not by every command that imports this.
    from pydantic import ValidationError

    from archiver.api_models import request_model

    body = _decode(raw)
    model = request_model(limit)
    try:
        req = model.model_validate(body)
    except ValidationError as exc:
        raise _refusal(exc.errors(include_url=False), model.model_fields) from None
    return ArchiveRequest(
        Flags(req.insert_leads, req.update_leads, req.delete_leads), tuple(req.lead_ids)
    )


def _refusal(errors: list[ErrorDetails], fields: dict[str, FieldInfo]) -> RequestError:
    """The message for the error a reader meets first: the body's type, its keys, the flags in
    order, lead_ids itself (missing, not an array, empty, too many), then the first bad id."""
    flags = [name for name, f in fields.items() if f.annotation is bool]

    def reading_order(error: ErrorDetails) -> tuple[int, int]:
        loc = error["loc"]
        if not loc:
            return 0, 0
        if error["type"] == "extra_forbidden":
            return 1, 0
        if loc[0] in flags:
            return 2, flags.index(str(loc[0]))
        return (3, 0) if len(loc) == 1 else (4, int(loc[1]))

    error = min(errors, key=reading_order)
    loc, value = error["loc"], error["input"]
    if not loc:
        return RequestError(
            'the body must be a JSON object: {"lead_ids": [1, 2], "insert_leads": true, …}'
        )
    if error["type"] == "extra_forbidden":
        unknown = sorted(str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden")
        shown = ", ".join(_show(k, 30) for k in unknown[:5])
        return RequestError(f"unknown key(s) {shown}; known keys: {', '.join(sorted(fields))}")
    if loc[0] in flags:
        return RequestError(f"{loc[0]} must be true or false, got {_show(value)}")
    if len(loc) == 1 and error["type"] == "too_long":
        limit = error.get("ctx", {})["max_length"]
        return RequestError(
            f"{loc[0]} holds {len(value)} ids, more than the limit of {limit} per request; "
            "split the list",
            status=413,
            code="too_many_ids",
            limit=limit,
        )
    if len(loc) == 1:  # missing, not an array, or empty
        return RequestError(f"{loc[0]} must be a non-empty array of lead ids")
    return RequestError(
        f"{loc[0]}[{loc[1]}] is {_show(value)}: lead ids are "
        f"JSON whole numbers from 1 to {MAX_LEAD_ID}"
    )


def parse_named(raw: bytes, name: str, limit: int) -> ArchiveRequest:
    """`parse` for the CLI: the error names its source (`req.json: …`), exit 2."""
    try:
        return parse(raw, limit)
    except RequestError as exc:
        raise BadInput(f"{name}: {exc.message}") from None
