"""The published OpenAPI document as a judge: the request schema's answer for a body, and a
check that an answer has the shape the document gives for its route and status."""

from __future__ import annotations

import decimal
import json
from typing import Any

import jsonschema

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
    doc = api.openapi_document()
    answers = doc["paths"][path][method.lower()]["responses"]
    assert str(status) in answers, f"{method} {path} answers {status}, not in the document"
    media = answers[str(status)]["content"]["application/json"]
    if "schema" in media:
        root = {**media["schema"], "components": doc["components"]}
        jsonschema.Draft202012Validator(root).validate(body)
