"""The published OpenAPI document as a judge: the request schema's answer for a body, and a
check that an answer has the shape the document gives for its route and status."""

from __future__ import annotations

import decimal
import functools
import json
import re
from typing import Any

import jsonschema
from starlette.testclient import TestClient

from archiver import api


def validator(name: str, limit: int = api.DEFAULT_ID_LIMIT) -> jsonschema.Draft202012Validator:
    """A JSON Schema 2020-12 validator for `#/components/schemas/<name>` of the document."""
    doc = api.openapi_document(limit)
    root = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    jsonschema.Draft202012Validator.check_schema(root)
    return jsonschema.Draft202012Validator(root)


def _unique_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len({k for k, _ in pairs}) != len(pairs):
        raise ValueError("a name appears twice")
    return dict(pairs)


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def schema_accepts(check: jsonschema.Draft202012Validator, raw: bytes) -> bool:
    """Whether `raw` is a JSON text (RFC 8259: no NaN or Infinity; RFC 7493: each name once)
    whose value the schema accepts. A number written with a fraction or an exponent is decoded
    as a decimal, so that it is not a JSON Schema `integer`: the value-based `integer` of JSON
    Schema takes 1.0, the document's "JSON integers only" does not."""
    try:
        value = json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=_unique_names,
            parse_constant=_not_json,
            parse_float=decimal.Decimal,
        )
    except (ValueError, RecursionError):  # RecursionError: 100,000 `[`
        return False
    return bool(check.is_valid(value))


def assert_documented(path: str, method: str, status: int, body: Any) -> None:
    """`body`, answered with `status` to `method path`, has the shape the document gives."""
    doc = _document()
    answers = doc["paths"][path][method.lower()]["responses"]
    assert str(status) in answers, f"{method} {path} answers {status}, not in the document"
    media = answers[str(status)]["content"]["application/json"]
    if "schema" in media:
        root = {**media["schema"], "components": doc["components"]}
        jsonschema.Draft202012Validator(root).validate(body)


@functools.cache
def _document() -> dict[str, Any]:
    return api.openapi_document()


def _route(method: str, path: str) -> str | None:
    for op in api.OPERATIONS:
        pattern = re.sub(r"\{[a-z_]+\}", "[^/]+", op.path)
        if op.method == method and re.fullmatch(pattern, path):
            return op.path
    return None


def documented(client: TestClient) -> TestClient:
    """`client`, checking every answer to a declared route against the document: its status is
    listed for the route and its body has the listed shape."""

    def check(response: Any) -> None:
        route = _route(response.request.method, response.request.url.path)
        if route is not None:
            response.read()
            assert_documented(route, response.request.method, response.status_code, response.json())

    client.event_hooks = {**client.event_hooks, "response": [check]}
    return client
