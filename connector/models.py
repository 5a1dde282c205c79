"""The shapes that cross the API boundary: requests, runs, decisions, deliveries, audit events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

RunStatus = Literal["pending", "approved", "rejected", "cancelled"]
DecidedBy = Literal["reviewer", "policy", "timeout", "api"]
Choice = Literal["approve", "reject"]


def iso(ts: float | None) -> str | None:
    """A UNIX timestamp as the ISO 8601 UTC text used everywhere in the API."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ResumeTarget(BaseModel):
    """Where the decision is POSTed, and the headers sent with it."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=4096)
    headers: dict[str, str] = Field(default_factory=dict)


class RunRequest(BaseModel):
    """Body of POST /v1/runs: the action a workflow is about to take, and how to resume it."""

    model_config = ConfigDict(extra="forbid")

    flow: str = Field(min_length=1, max_length=64)
    action: dict[str, Any]
    title: str | None = Field(None, max_length=500)
    summary: str | None = Field(None, max_length=10_000)
    context: dict[str, Any] = Field(default_factory=dict)
    risk: dict[str, Any] = Field(default_factory=dict)
    editable: list[str] | None = None
    resume: ResumeTarget | None = None
    idempotency_key: str | None = Field(None, min_length=1, max_length=255)
    requested_by: str | None = Field(None, max_length=255)
    metadata: dict[str, Any] = Field(default_factory=dict)


class Change(BaseModel):
    """One field a reviewer changed."""

    model_config = ConfigDict(populate_by_name=True)

    from_: Any = Field(alias="from")
    to: Any


class ReviewerRef(BaseModel):
    """Who decided, and through which channel."""

    id: str
    name: str | None = None
    channel: str


class DecisionPayload(BaseModel):
    """The one payload every resume target receives (PRODUCT.md)."""

    run_id: str
    flow: str
    decision: Literal["approved", "rejected", "cancelled"]
    approved: bool
    action: dict[str, Any]
    edited: bool = False
    changes: dict[str, Change] = Field(default_factory=dict)
    comment: str | None = None
    reviewer: ReviewerRef | None = None
    decided_at: str
    decided_by: DecidedBy


class DecisionRequest(BaseModel):
    """Body of POST /v1/runs/{id}/decision, for programs and operators."""

    model_config = ConfigDict(extra="forbid")

    decision: Choice
    action: dict[str, Any] | None = None
    comment: str | None = Field(None, max_length=10_000)
    reviewer: str = Field(min_length=1, max_length=255)

    @field_validator("decision", mode="before")
    @classmethod
    def _accept_past_tense(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"approved": "approve", "rejected": "reject"}.get(value, value)
        return value


class DeliveryState(BaseModel):
    """How far the resume call has got."""

    status: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status: int | None = None
    last_error: str | None = None
    webhook_id: str
    url: str


class AuditEvent(BaseModel):
    """One line of a run's append-only audit trail."""

    at: str
    kind: str
    detail: dict[str, Any] = Field(default_factory=dict)


class Run(BaseModel):
    """A paused workflow execution waiting for (or holding) a decision."""

    id: str
    flow: str
    status: RunStatus
    title: str
    summary: str | None = None
    action: dict[str, Any]
    context: dict[str, Any] = Field(default_factory=dict)
    risk: dict[str, Any] = Field(default_factory=dict)
    editable: list[str] = Field(default_factory=list)
    requested_by: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = None
    created_at: str
    deadline: str
    decision: DecisionPayload | None = None
    delivery: DeliveryState | None = None
    events: list[AuditEvent] | None = None


class RunPage(BaseModel):
    """One page of GET /v1/runs, newest first."""

    runs: list[Run]
    next_cursor: str | None = None


class ErrorBody(BaseModel):
    """The single error shape of the API."""

    ok: Literal[False] = False
    error: str
    status: int
    errors: list[dict[str, Any]] | None = None
