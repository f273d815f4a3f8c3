"""Calls to a running `vicidial-archiver serve`: a free port to start it on and one JSON call."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def call(
    url: str,
    body: Any,
    key: str | None,
    timeout: float,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """POST `body` as JSON (GET when there is none) with `key` as the API key; returns the
    status and the decoded JSON answer, for errors too."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    if key:
        req.add_header("Authorization", f"Key={key}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())
