"""The Lead Archive API body, parsed by one function for `POST /vicidial/leads/archive` and for
`--request PATH|-`, so both accept and refuse the same bodies with the same message.

A body is a JSON object with only the known keys; the step flags are JSON booleans (default
true); lead_ids is a non-empty array of at most `limit` JSON integers from 1 to 4294967295
(repeats count toward the limit; strings, floats and booleans are refused). Every input is
bounded before it is parsed: its size (`body_cap`), its nesting depth and the digits of a
number, so no body can cost more than a few milliseconds or raise anything but RequestError.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import IO, Any

from archiver.errors import BadInput
from archiver.jobtypes import Flags

MAX_LEAD_ID = 4294967295  # INT UNSIGNED
REQUEST_KEYS = frozenset({"insert_leads", "update_leads", "delete_leads", "lead_ids"})
FLAG_KEYS = ("insert_leads", "update_leads", "delete_leads")
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
    body = _decode(raw)
    if not isinstance(body, dict):
        raise RequestError(
            'the body must be a JSON object: {"lead_ids": [1, 2], "insert_leads": true, …}'
        )
    unknown = sorted(set(body) - REQUEST_KEYS)
    if unknown:
        shown = ", ".join(_show(k, 30) for k in unknown[:5])
        raise RequestError(f"unknown key(s) {shown}; known keys: {', '.join(sorted(REQUEST_KEYS))}")
    flags = []
    for key in FLAG_KEYS:
        value = body.get(key, True)
        if not isinstance(value, bool):
            raise RequestError(f"{key} must be true or false, got {_show(value)}")
        flags.append(value)
    ids = body.get("lead_ids")
    if not isinstance(ids, list) or not ids:
        raise RequestError("lead_ids must be a non-empty array of lead ids")
    if len(ids) > limit:
        raise RequestError(
            f"lead_ids holds {len(ids)} ids, more than the limit of {limit} per request; "
            "split the list",
            status=413,
            code="too_many_ids",
            limit=limit,
        )
    for n, item in enumerate(ids):
        if type(item) is not int or not 1 <= item <= MAX_LEAD_ID:
            raise RequestError(
                f"lead_ids[{n}] is {_show(item)}: lead ids are "
                f"JSON whole numbers from 1 to {MAX_LEAD_ID}"
            )
    return ArchiveRequest(Flags(*flags), tuple(ids))


def parse_named(raw: bytes, name: str, limit: int) -> ArchiveRequest:
    """`parse` for the CLI: the error names its source (`req.json: …`), exit 2."""
    try:
        return parse(raw, limit)
    except RequestError as exc:
        raise BadInput(f"{name}: {exc.message}") from None
