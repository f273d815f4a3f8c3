"""The declared API (archiver.api, archiver.api_models): openapi.json is the document the
models and the route table generate, the app serves exactly the declared routes, and the body
parser accepts a body exactly when the published request schema does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, get_args

import pytest
from hypothesis import HealthCheck, given, settings

from archiver import api, api_models, config, jobtypes, request, serve
from tests.support.bodies import bodies
from tests.support.schema import schema_accepts, validator
from tests.unit.test_request import BODIES, LIMIT

REPO = Path(__file__).resolve().parents[2]
CHECK = validator("ArchiveRequest", LIMIT)


def test_committed_openapi_json_is_the_generated_document() -> None:
    text = (REPO / "openapi.json").read_text()
    assert text == json.dumps(api.openapi_document(), indent=2) + "\n", (
        "openapi.json is stale: run `vicidial-archiver serve --openapi > openapi.json`"
    )


def test_the_app_routes_are_the_declared_operations() -> None:
    base = config.load_settings(dsn="mysql://root@127.0.0.1:1/x", env={})
    app = serve.create_app(base)
    routed = {(r.path, m) for r in app.routes for m in getattr(r, "methods", ()) if m != "HEAD"}
    declared = {(op.path, op.method) for op in api.OPERATIONS}
    assert routed == declared
    documented = {(p, m.upper()) for p, ops in api.openapi_document()["paths"].items() for m in ops}
    assert documented == declared
    assert len(declared) == len(api.OPERATIONS)  # no route declared twice


def test_operations_with_auth_document_401_and_the_key() -> None:
    doc = api.openapi_document()
    for op in api.OPERATIONS:
        spec = doc["paths"][op.path][op.method.lower()]
        assert ("401" in spec["responses"]) is op.auth, op.path
        assert ("security" in spec) is op.auth, op.path


def test_answer_enums_are_the_cores() -> None:
    assert get_args(api_models.Outcome) == (*jobtypes.OUTCOMES, api_models.PENDING)
    assert get_args(api_models.Direction) == (jobtypes.ARCHIVE, jobtypes.DEARCHIVE)


def test_request_schema_carries_the_limit_and_the_keys() -> None:
    schema = api.openapi_document(7)["components"]["schemas"]["ArchiveRequest"]
    assert schema["properties"]["lead_ids"]["maxItems"] == 7
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == serve.REQUEST_KEYS


def parser_accepts(raw: bytes) -> bool:
    try:
        request.parse(raw, LIMIT)
    except request.RequestError:
        return False
    return True


EDGES = [
    b'{"lead_ids": [1, 2, 3, 4, 5]}',  # exactly the limit
    b'{\n  "lead_ids": [\n    1\n  ],\n  "delete_leads": false\n}\n',
    b'{"lead_ids": [1e0]}',  # an integer value, not a JSON integer
    b'{"lead_ids": [-0]}',
    b'{"lead_ids": [18446744073709551616]}',
    b'{"lead_ids": [1], "insert_leads": null}',
    b'{"lead_ids": "1,2"}',
    b'{"lead_ids": [Infinity]}',
    b'{"lead_ids": [1e400]}',
    '\ufeff{"lead_ids": [1]}'.encode(),
    b'{"lead_ids": [1]} x',
    b"[1, 2]",
    b'"lead_ids"',
    b'{"lead_ids": [[1]]}',
    b'{"lead_ids": [1, "x", 1, 1, 1, 1]}',
]


@pytest.mark.parametrize("raw", [raw for raw, _, _ in BODIES] + EDGES, ids=lambda v: repr(v)[:40])
def test_parser_accepts_exactly_what_the_schema_accepts(raw: bytes) -> None:
    assert parser_accepts(raw) is schema_accepts(CHECK, raw)


def test_the_table_has_both_answers() -> None:
    answers = [schema_accepts(CHECK, raw) for raw, _, _ in BODIES] + [
        schema_accepts(CHECK, raw) for raw in EDGES
    ]
    assert answers.count(True) >= 4 and answers.count(False) >= 20


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies)
def test_parser_and_schema_agree_on_generated_bodies(case: tuple[str, Any]) -> None:
    kind, value = case
    raw = value if kind == "raw" else json.dumps(value).encode()
    assert parser_accepts(raw) is schema_accepts(CHECK, raw), raw
