"""The storage interface, implemented by the SQLite store and the PostgreSQL store.

No correctness may depend on there being a single process: decisions are conditional updates and
jobs are claimed with an expiring lease, so several workers (or instances) can share one store.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

JobStatus = Literal["pending", "done", "failed"]


@dataclass
class RunRecord:
    """A run as stored. `doc` holds what the workflow sent; `decision` the payload once decided."""

    id: str
    flow: str
    status: str
    created_at: float
    deadline: float
    doc: dict[str, Any]
    resume: dict[str, Any] | None = None
    idempotency_key: str | None = None
    decision: dict[str, Any] | None = None
    decided_at: float | None = None
    escalated_at: float | None = None


@dataclass
class NewJob:
    """Durable work (a resume delivery, a notification), written with the change causing it."""

    id: str
    kind: str
    run_id: str | None
    payload: dict[str, Any] = field(default_factory=dict)
    body: bytes | None = None
    next_at: float = 0.0


@dataclass
class JobRecord:
    """A stored job with its progress."""

    id: str
    kind: str
    run_id: str | None
    payload: dict[str, Any]
    body: bytes | None
    status: JobStatus
    attempts: int
    next_at: float
    created_at: float
    last_status: int | None
    last_error: str | None


@dataclass
class MailRecord:
    """A message kept by the dev mailbox instead of being sent."""

    id: int
    at: float
    to: str
    subject: str
    text: str
    html: str | None
    headers: dict[str, str]


@dataclass
class TelegramButton:
    """What a Telegram callback button's short random id stands for."""

    id: str
    run_id: str
    reviewer_id: str | None  # None: posted to a flow's group, any listed reviewer may press
    chat_id: int
    choice: str  # "approve", "reject" or "review" (ask for a private review link)
    created_at: float


@dataclass
class SubscriptionRecord:
    """A REST hook subscription: every decision (of `flow`, or of any flow) is POSTed there."""

    id: str
    target_url: str
    flow: str | None
    created_at: float


@dataclass
class TelegramMessage:
    """A prompt sent to a Telegram chat, kept so it can be edited once the run is decided."""

    chat_id: int
    message_id: int
    run_id: str
    reviewer_id: str | None
    text: str
    sent_at: float
    closed_at: float | None = None


@dataclass
class Event:
    """One audit trail line."""

    at: float
    kind: str
    detail: dict[str, Any]


@dataclass
class ApprovalOutcome:
    """What recording one approval of an N-of-M run did."""

    result: Literal["counted", "decided", "duplicate", "not_pending"]
    approvals: int


@dataclass
class FlowCounts:
    """Raw numbers behind a flow's statistics."""

    runs: int = 0
    pending: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    by_decided_by: dict[str, int] = field(default_factory=dict)
    human_decisions: int = 0
    human_approved_unchanged: int = 0
    human_edited: int = 0
    human_rejected: int = 0
    shadow_would_approve: int = 0
    shadow_agreed: int = 0
    shadow_decided: int = 0
    decision_seconds: list[float] = field(default_factory=list)


class Store(Protocol):
    """Everything the service needs from a database."""

    async def ping(self) -> None: ...

    async def listen_decisions(self, callback: Callable[[str | None], None]) -> None:
        """Call `callback(run_id)` when another process records a decision (`None`: some may
        have been missed, re-check). A no-op where one process owns the database."""
        ...

    async def run_exclusive(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        """Run `body` while no other process sharing the database runs one under `name`."""
        ...

    async def keep_secret(self, name: str, value: str) -> str:
        """Keep `value` under `name` unless one is kept already; return the kept value."""
        ...

    async def create_run(
        self, run: RunRecord, jobs: list[NewJob], events: list[tuple[str, dict[str, Any]]]
    ) -> tuple[RunRecord, bool]:
        """Insert the run, its jobs and events at once; on an idempotency clash return the
        existing run and False."""
        ...

    async def get_run(self, run_id: str) -> RunRecord | None: ...

    async def list_runs(
        self, *, status: str | None, flow: str | None, limit: int, before: str | None
    ) -> list[RunRecord]: ...

    async def decide(
        self,
        run_id: str,
        *,
        status: str,
        decision: dict[str, Any],
        decided_at: float,
        jobs: list[NewJob],
        events: list[tuple[str, dict[str, Any]]],
    ) -> bool:
        """Record the decision only if the run is still pending; True when this call won."""
        ...

    async def record_approval(
        self,
        run_id: str,
        reviewer_id: str,
        channel: str,
        *,
        required: int,
        decision: dict[str, Any],
        decided_at: float,
        jobs: list[NewJob],
        events: list[tuple[str, dict[str, Any]]],
    ) -> ApprovalOutcome:
        """Count one reviewer's approval; with `required` distinct approvals, decide the run."""
        ...

    async def approvals(self, run_id: str) -> list[str]:
        """Reviewer ids that approved an N-of-M run so far."""
        ...

    async def mark_escalated(
        self, run_id: str, at: float, jobs: list[NewJob], events: list[tuple[str, dict[str, Any]]]
    ) -> bool:
        """Mark a pending, not yet escalated run as escalated; True when this call did it."""
        ...

    async def flow_counts(self, flow: str, since: float) -> FlowCounts: ...

    async def add_event(self, run_id: str, kind: str, detail: dict[str, Any]) -> None: ...

    async def events(self, run_id: str) -> list[Event]: ...

    async def due_runs(self, now: float, limit: int) -> list[RunRecord]: ...

    async def next_deadline(self) -> float | None: ...

    async def claim_jobs(
        self, now: float, *, limit: int, lease: float, kinds: tuple[str, ...]
    ) -> list[JobRecord]: ...

    async def finish_job(
        self,
        job: JobRecord,
        *,
        status: JobStatus,
        next_at: float,
        last_status: int | None,
        last_error: str | None,
        event: tuple[str, dict[str, Any]] | None = None,
        attempted: bool = True,
    ) -> None:
        """Record a job's outcome; `attempted=False` reschedules without counting an attempt."""
        ...

    async def next_job_at(self, kinds: tuple[str, ...]) -> float | None: ...

    async def jobs_for_run(self, run_id: str, kind: str) -> list[JobRecord]: ...

    async def requeue_job(self, job_id: str, now: float) -> None: ...

    async def add_jobs(self, jobs: list[NewJob]) -> None:
        """Insert jobs on their own; a job whose id already exists is left as it is."""
        ...

    async def recent_decisions(self, *, flow: str | None, limit: int) -> list[RunRecord]:
        """Decided runs, most recently decided first."""
        ...

    async def add_subscription(self, subscription: SubscriptionRecord) -> None: ...

    async def get_subscription(self, subscription_id: str) -> SubscriptionRecord | None: ...

    async def delete_subscription(self, subscription_id: str) -> bool:
        """Remove the subscription; True when it existed."""
        ...

    async def subscriptions_for(self, flow: str) -> list[SubscriptionRecord]:
        """Subscriptions to this flow's decisions and to every flow's, oldest first."""
        ...

    async def add_mail(
        self, *, to: str, subject: str, text: str, html: str | None, headers: dict[str, str]
    ) -> None: ...

    async def list_mail(self, limit: int) -> list[MailRecord]: ...

    async def backlog(self) -> tuple[int, dict[str, int], float | None]:
        """Pending runs, pending jobs by kind, and when the oldest due job became due."""
        ...

    async def record_telegram_update(
        self, bot_id: str, update_id: int, job: NewJob, *, keep_for: float
    ) -> bool:
        """Remember the update and queue its job at once; False (and nothing queued) when this
        update was already recorded. Forgets updates older than `keep_for` seconds."""
        ...

    async def add_telegram_buttons(self, buttons: list[TelegramButton]) -> None: ...

    async def telegram_button(self, button_id: str) -> TelegramButton | None: ...

    async def add_telegram_message(self, message: TelegramMessage) -> None: ...

    async def telegram_messages(self, run_id: str) -> list[TelegramMessage]: ...

    async def close_telegram_message(self, chat_id: int, message_id: int, at: float) -> None: ...
