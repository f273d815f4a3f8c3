"""The Lead Archive API's bodies as typed models: the request that `archiver.request` validates
(strict: a JSON boolean is a boolean, a lead id a JSON integer, no unknown key), the answers,
and the query and path parameters. `archiver.api` builds the OpenAPI document from them, so
what is published is what is checked.

Strict mode and `extra="forbid"` on the request: no coercion ("5" is not 5, 1 is not true,
1.0 is not 1) and an unknown key is refused, as the published schema says
(`additionalProperties: false`). The answers are declared for the document; the handlers
build them as plain JSON.
"""

from __future__ import annotations

import functools
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.json_schema import SkipJsonSchema

from archiver.idlist import MAX_LEAD_ID as MAX_LEAD_ID  # re-exported

MAX_JOB_ID = 2**64 - 1  # BIGINT UNSIGNED
LEADS_PAGE = 1000  # GET of a job: leads per page (the default and the most)
JOBS_PAGE = 20  # GET of the job list: jobs by default
MAX_JOBS_PAGE = 100
PENDING = "pending"  # a lead of an unfinished job that no chunk has reached yet

LeadId = Annotated[int, Field(ge=1, le=MAX_LEAD_ID)]
# steps.OUTCOMES and PENDING; tests/unit/test_api.py holds them equal.
Outcome = Literal[
    "archived",
    "dearchived",
    "refreshed",
    "kept_changed",
    "already_archived",
    "already_live",
    "missing",
    "not_copied",
    "conflict",
    "skipped_live",
    "skipped_newest",
    "already_copied",
    "left_selection",
    "skipped_busy",
    "gone",
    "pending",
]
Direction = Literal["archive", "dearchive"]
JobState = Literal["running", "stopped", "done", "failed", "cancelled"]


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True)


# --- the request ---------------------------------------------------------------------------


class ArchiveRequestBody(Strict):
    """POST /vicidial/leads/archive. `request_model(limit)` adds the id limit."""

    model_config = ConfigDict(extra="forbid", title="ArchiveRequest")

    insert_leads: bool = Field(True, description="Copy leads not yet archived.")
    update_leads: bool = Field(
        True, description="Refresh archive rows that differ from vicidial_list."
    )
    delete_leads: bool = Field(
        True,
        description="Delete from vicidial_list only where the archive row is byte-for-byte equal.",
    )
    lead_ids: Annotated[list[LeadId], Field(min_length=1)]


@functools.lru_cache(maxsize=8)
def request_model(limit: int) -> type[ArchiveRequestBody]:
    """The request with at most `limit` ids (archive.id_limit): one class per limit."""
    lead_ids = Field(
        min_length=1,
        max_length=limit,
        description=f"Lead ids, at most {limit} (archive.id_limit). JSON integers only; "
        "repeats are allowed and count toward the limit.",
    )
    return create_model(
        "ArchiveRequest", __base__=ArchiveRequestBody, lead_ids=(list[LeadId], lead_ids)
    )


# --- parameters ----------------------------------------------------------------------------


class JobsQuery(Strict):
    limit: int = Field(JOBS_PAGE, ge=1, le=MAX_JOBS_PAGE)


class JobPath(Strict):
    job_id: int = Field(ge=0, le=MAX_JOB_ID)


class JobQuery(Strict):
    after: int = Field(
        0,
        ge=0,
        le=MAX_LEAD_ID,
        description="The page's leads are the job's lead ids greater than this: 0 for the "
        "first page, then the `next` of the page before.",
    )
    limit: int = Field(LEADS_PAGE, ge=1, le=LEADS_PAGE, description="Leads per page.")


# --- the answers ---------------------------------------------------------------------------


class JobFlags(Strict):
    insert_leads: bool
    update_leads: bool
    delete_leads: bool


class Lead(Strict):
    lead_id: int
    outcome: Outcome


class Job(Strict):
    job_id: int
    name: str | None
    direction: Direction
    state: JobState
    stop_reason: str | None
    flags: JobFlags
    counts: dict[str, int] = Field(description="Leads per outcome.")
    chunks: int
    started_at: str | None = Field(json_schema_extra={"format": "date-time"})
    ended_at: str | None = Field(json_schema_extra={"format": "date-time"})
    heartbeat: str | None = Field(json_schema_extra={"format": "date-time"})
    leads: list[Lead] | None = Field(
        None,
        description="Each lead with its outcome, in lead_id order, at most `limit` "
        f"({LEADS_PAGE}) from `after` (null for a job selected by criteria; left out of job "
        "lists). `pending`: no chunk has reached it yet.",
    )
    next: int | None = Field(
        None,
        description="The `after` of the next page of `leads`; null on the last page (and for "
        "a job selected by criteria).",
    )


class ArchiveResult(Job):
    warnings: list[str]
    seconds: float


class JobList(Strict):
    jobs: list[Job] = Field(description="Newest first.")


class Health(Strict):
    status: Literal["ok"]
    database: Literal["reachable"]
    version: str


class Error(Strict):
    """Every answer that is not 2xx."""

    error: str = Field(description="A stable code.")
    message: str
    window: str | SkipJsonSchema[None] = Field(None, description="423: the window.")
    limit: int | SkipJsonSchema[None] = Field(None, description="413: the id limit.")
    job_id: int | None = Field(None, description="The job, when there is one.")
