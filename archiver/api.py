"""The Lead Archive API's routes, declared once: path, method, handler, parameters, request body
and answers per status, and whether a route needs an API key. `serve.create_app` builds
Starlette's routes from `OPERATIONS` and `openapi_document` builds the published description
(openapi.json) from the same table and the models of `archiver.api_models`, so the document
cannot name a route, a field or a bound that the server does not have.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, models_json_schema
from pydantic_core import core_schema

from archiver import __version__
from archiver.api_models import (
    ArchiveResult,
    Error,
    Health,
    Job,
    JobList,
    JobPath,
    JobQuery,
    JobsQuery,
    request_model,
)

ARCHIVE_PATH = "/vicidial/leads/archive"
JOBS_PATH = ARCHIVE_PATH + "/jobs"
DEFAULT_ID_LIMIT = 500  # archive.id_limit's default: the limit openapi.json is written with
SCHEMAS = "#/components/schemas/{model}"


@dataclass(frozen=True)
class Answer:
    description: str
    model: type[BaseModel] | None = Error  # None: JSON without a declared schema


@dataclass(frozen=True)
class Operation:
    path: str
    method: Literal["GET", "POST"]
    handler: str  # its name in serve.make_handlers
    operation_id: str
    summary: str
    answers: Mapping[int, Answer]  # 401 is added to those with `auth`
    auth: bool = True  # Authorization: Key=<api key>
    body: Callable[[int], type[BaseModel]] | None = None  # the request model for an id limit
    path_params: type[BaseModel] | None = None
    query: type[BaseModel] | None = None


UNAUTHORIZED = Answer("Missing or wrong API key.")
UNREACHABLE = Answer("The database is unreachable.")
HEALTH_EVERY = 2  # s: /healthz probes the database at most this often, for every caller

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        ARCHIVE_PATH,
        "POST",
        "archive",
        "archiveLeads",
        "Archive the listed leads (one job)",
        body=request_model,
        answers={
            200: Answer(
                "The job ran (state `done`): each lead with its outcome. State `stopped`: the "
                "window closed during the job; leads not reached are `pending` and the same "
                "request resumes it.",
                ArchiveResult,
            ),
            400: Answer("The body is not a valid request."),
            408: Answer("The body did not arrive in time."),
            409: Answer("Another job holds the archiver lock (its `job_id` when known)."),
            413: Answer("More lead ids than the limit, or a body too large."),
            423: Answer("Outside the off-hours window (named in `window`)."),
            500: Answer(
                "The job failed part-way (resumable: send the same request again) or the "
                "server is not set up."
            ),
            503: Answer(
                "The database is unreachable, or the server is busy (`busy`: every worker is "
                "taken and the queue is full; Retry-After)."
            ),
        },
    ),
    Operation(
        JOBS_PATH,
        "GET",
        "jobs",
        "listJobs",
        "The newest jobs, without their leads",
        query=JobsQuery,
        answers={
            200: Answer("Newest first.", JobList),
            400: Answer("limit is not 1 to 100."),
            503: UNREACHABLE,
        },
    ),
    Operation(
        JOBS_PATH + "/{job_id}",
        "GET",
        "job",
        "getJob",
        "A job's state, counts and (for id lists) each lead's outcome, a page at a time",
        path_params=JobPath,
        query=JobQuery,
        answers={
            200: Answer("The job.", Job),
            400: Answer("after or limit is out of range."),
            404: Answer("No such job."),
            500: Answer("The job's staged lead ids are incomplete (`job_ids_incomplete`)."),
            503: UNREACHABLE,
        },
    ),
    Operation(
        "/healthz",
        "GET",
        "healthz",
        "health",
        f"Checks the database connection (one probe at most every {HEALTH_EVERY} seconds, "
        "for every caller)",
        auth=False,
        answers={
            200: Answer("The database answered the latest probe.", Health),
            503: Answer("The database did not answer the latest probe in time."),
        },
    ),
    Operation(
        "/openapi.json",
        "GET",
        "openapi",
        "openapi",
        "This description",
        auth=False,
        answers={200: Answer("OpenAPI 3.1 document.", None)},
    ),
)

INFO = {
    "title": "vicidial-archiver Lead Archive API",
    "version": __version__,
    "description": "Archive VICIdial leads from vicidial_list into vicidial_list_archive in "
    "verified chunks. Each request is one job with the guarantees of `vicidial-archiver "
    "archive`; nothing is written when a request is refused.",
}
SECURITY_SCHEMES = {
    "ApiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "`Authorization: Key=<api key>`; the server stores only the key's sha256 "
        "and logs the client's name, never the key.",
    }
}


class _Schema(GenerateJsonSchema):
    """OpenAPI's flavour: no generated titles on fields; an answer's fields have no defaults
    (a default says what the server assumes for a field a client leaves out)."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> dict[str, Any]:
        if self.mode == "serialization":
            return self.generate_inner(schema["schema"])
        return super().default_schema(schema)


def _json_schemas(
    models: list[tuple[type[BaseModel], JsonSchemaMode]],
) -> tuple[dict[type[BaseModel], dict[str, Any]], dict[str, Any]]:
    """Each model's reference and the components they need."""
    refs, defs = models_json_schema(
        models,
        ref_template=SCHEMAS,
        union_format="primitive_type_array",
        schema_generator=_Schema,
    )
    by_model = {model: ref for (model, _), ref in refs.items() if issubclass(model, BaseModel)}
    return by_model, defs.get("$defs", {})


def _parameters(op: Operation) -> Iterator[dict[str, Any]]:
    for where, model in (("path", op.path_params), ("query", op.query)):
        if model is None:
            continue
        schema = model.model_json_schema(schema_generator=_Schema)
        for name, prop in schema["properties"].items():
            param: dict[str, Any] = {
                "name": name,
                "in": where,
                "required": name in schema.get("required", ()),
            }
            if "description" in prop:
                param["description"] = prop["description"]
            param["schema"] = {k: v for k, v in prop.items() if k != "description"}
            yield param


def _answers(
    op: Operation, refs: Mapping[type[BaseModel], dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    answers = {**op.answers, **({401: UNAUTHORIZED} if op.auth else {})}
    out = {}
    for status, answer in sorted(answers.items()):
        media = {"schema": refs[answer.model]} if answer.model else {}
        out[str(status)] = {
            "description": answer.description,
            "content": {"application/json": media},
        }
    return out


def openapi_document(id_limit: int = DEFAULT_ID_LIMIT) -> dict[str, Any]:
    """What GET /openapi.json serves; openapi.json in the repository is this with the default
    limit (`vicidial-archiver serve --openapi > openapi.json`)."""
    models: dict[type[BaseModel], JsonSchemaMode] = {}
    for op in OPERATIONS:
        if op.body:
            models[op.body(id_limit)] = "validation"
        for answer in op.answers.values():
            if answer.model:
                models[answer.model] = "serialization"
    models[Error] = "serialization"  # the 401 that `auth` adds
    refs, schemas = _json_schemas(list(models.items()))
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        operation: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary}
        if op.auth:
            operation["security"] = [{"ApiKey": []}]
        if parameters := list(_parameters(op)):
            operation["parameters"] = parameters
        if op.body:
            media = {"schema": refs[op.body(id_limit)]}
            operation["requestBody"] = {"required": True, "content": {"application/json": media}}
        operation["responses"] = _answers(op, refs)
        paths.setdefault(op.path, {})[op.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": dict(INFO),
        "paths": paths,
        "components": {"securitySchemes": copy.deepcopy(SECURITY_SCHEMES), "schemas": schemas},
    }
