"""The run lifecycle: pause, decide, cancel, time out, wait. Handlers call this; it calls the store.

Every decision goes through `decide` → `policy.check_decision` → the store's conditional update,
which writes the decision, its audit event and its resume job in one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from ulid import ULID

from .channels import Channel
from .config import FlowConfig, ReviewerConfig, Settings
from .errors import Conflict, RunNotFound, UnknownFlow
from .links import LinkSigner
from .models import (
    AuditEvent,
    Change,
    DecisionPayload,
    DeliveryState,
    ReviewerRef,
    Run,
    RunRequest,
    iso,
)
from .policy import Actor, already_decided, check_decision
from .store import JobRecord, NewJob, RunRecord, Store
from .urlguard import AddressPolicy, check_resume_url

log = logging.getLogger(__name__)

RESUME_JOB = "resume"


def new_id() -> str:
    """A time-ordered unique id (ULID), so newest-first is ordering by id."""
    return str(ULID())


def encode_payload(payload: DecisionPayload) -> bytes:
    """The decision as the exact bytes every delivery attempt will send."""
    data = payload.model_dump(mode="json", by_alias=True)
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class RunService:
    """The domain operations on runs."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        signer: LinkSigner,
        addresses: AddressPolicy,
        *,
        on_work: Callable[[], None] = lambda: None,
        on_new_deadline: Callable[[float], None] = lambda _: None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.signer = signer
        self.addresses = addresses
        self._on_work = on_work
        self._on_new_deadline = on_new_deadline
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self.channels: list[Channel] = []

    def add_channel(self, channel: Channel) -> None:
        """Let a channel queue jobs on pause and decision (see channels.py)."""
        self.channels.append(channel)

    # -- lookups ----------------------------------------------------------------------------

    def flow(self, name: str) -> FlowConfig:
        """The flow's configuration, or 404."""
        flow = self.settings.flows.get(name)
        if flow is None:
            raise UnknownFlow(f"unknown flow {name!r}")
        return flow

    async def record(self, run_id: str) -> RunRecord:
        """The stored run, or 404."""
        run = await self.store.get_run(run_id)
        if run is None:
            raise RunNotFound()
        return run

    def review_url(
        self,
        run: RunRecord,
        reviewer: ReviewerConfig,
        *,
        channel: str = "email",
        choice: str | None = None,
    ) -> str:
        """The reviewer's own signed link to the run's page, as sent through `channel`."""
        token = self.signer.sign(run.id, reviewer.id, run.deadline, channel)
        url = f"{self.settings.public_url}/r/{token}"
        return f"{url}?choice={choice}" if choice else url

    # -- pause ------------------------------------------------------------------------------

    async def pause(self, request: RunRequest, *, source: str = "api") -> tuple[RunRecord, bool]:
        """Store a new run and queue its notifications; (run, created). Idempotent by key."""
        flow = self.flow(request.flow)
        resume = request.resume.model_dump() if request.resume else None
        if resume is None and flow.resume_url:
            resume = {"url": flow.resume_url, "headers": {}}
        if resume is not None:
            await check_resume_url(resume["url"], self.addresses)
            resume["headers"] = {**flow.resume_headers, **resume["headers"]}
        now = time.time()
        run = RunRecord(
            id=new_id(),
            flow=request.flow,
            status="pending",
            created_at=now,
            deadline=now + flow.timeout.total_seconds(),
            idempotency_key=request.idempotency_key,
            resume=resume,
            doc={
                "title": request.title or flow.title or request.flow,
                "summary": request.summary,
                "action": request.action,
                "context": request.context,
                "risk": request.risk,
                "editable": request.editable if request.editable is not None else flow.editable,
                "requested_by": request.requested_by,
                "metadata": request.metadata,
                "on_timeout": flow.on_timeout,
            },
        )
        jobs = [job for channel in self.channels for job in channel.on_pause(run, flow)]
        events = [("created", {"source": source, "requested_by": request.requested_by})]
        stored, created = await self.store.create_run(run, jobs, events)
        if created:
            self._on_new_deadline(stored.deadline)
            if jobs:
                self._on_work()
        return stored, created

    # -- decide -----------------------------------------------------------------------------

    async def decide(
        self,
        run_id: str,
        actor: Actor,
        *,
        approve: bool | None,
        edits: dict[str, Any] | None = None,
        comment: str | None = None,
        decided_by: str = "reviewer",
    ) -> RunRecord:
        """Record a decision if `actor` may make it; raise AlreadyDecided when someone was first.

        `approve=None` means cancel.
        """
        run = await self.record(run_id)
        check_decision(run, self.settings.flows.get(run.flow), actor, edits=edits)
        action = dict(run.doc["action"])
        changes: dict[str, Change] = {}
        for key, value in (edits or {}).items():
            if action.get(key) != value:
                changes[key] = Change(**{"from": action.get(key), "to": value})
                action[key] = value
        if approve is None:
            decision, status = "cancelled", "cancelled"
        else:
            decision = status = "approved" if approve else "rejected"
        now = time.time()
        reviewer = (
            ReviewerRef(id=actor.id, name=actor.name, channel=actor.channel) if actor.id else None
        )
        payload = DecisionPayload(
            run_id=run.id,
            flow=run.flow,
            decision=decision,
            approved=status == "approved",
            action=action,
            edited=bool(changes),
            changes=changes,
            comment=comment or None,
            reviewer=reviewer,
            decided_at=iso(now) or "",
            decided_by=decided_by,
        )
        decision_doc = payload.model_dump(mode="json", by_alias=True)
        decided = RunRecord(
            **{**run.__dict__, "status": status, "decision": decision_doc, "decided_at": now}
        )
        flow = self.settings.flows.get(run.flow)
        jobs = [job for channel in self.channels for job in channel.on_decision(decided, flow)]
        if run.resume:
            jobs.append(
                NewJob(
                    id=f"msg_{new_id()}",
                    kind=RESUME_JOB,
                    run_id=run.id,
                    payload={"url": run.resume["url"], "headers": run.resume.get("headers", {})},
                    body=encode_payload(payload),
                )
            )
        event = {
            "decision": decision,
            "decided_by": decided_by,
            "reviewer": actor.id,
            "channel": actor.channel,
            "edited": bool(changes),
        }
        won = await self.store.decide(
            run.id,
            status=status,
            decision=decision_doc,
            decided_at=now,
            jobs=jobs,
            events=[("decided", event)],
        )
        if not won:
            raise already_decided(await self.record(run.id))
        if jobs:
            self._on_work()
        self._release_waiters(run.id)
        return decided

    async def cancel(self, run_id: str, *, reason: str | None = None) -> RunRecord:
        """Cancel a pending run; the resume target hears `cancelled`."""
        return await self.decide(
            run_id, Actor("api", channel="api"), approve=None, comment=reason, decided_by="api"
        )

    async def expire_due(self, *, limit: int = 500) -> int:
        """Decide every run whose deadline has passed by its flow's `on_timeout`."""
        due = await self.store.due_runs(time.time(), limit)
        decided = 0
        for run in due:
            approve = run.doc.get("on_timeout", "reject") == "approve"
            with contextlib.suppress(Conflict):
                await self.decide(
                    run.id,
                    Actor("timeout", channel="timeout"),
                    approve=approve,
                    decided_by="timeout",
                )
                decided += 1
        return decided

    async def redeliver(self, run_id: str) -> RunRecord:
        """Send the recorded decision again (same webhook-id), e.g. after a failed delivery."""
        run = await self.record(run_id)
        jobs = await self.store.jobs_for_run(run.id, RESUME_JOB)
        if run.status == "pending" or not jobs:
            raise Conflict("nothing to redeliver: the run is undecided or has no resume URL")
        await self.store.requeue_job(jobs[-1].id, time.time())
        await self.store.add_event(run.id, "redeliver", {})
        self._on_work()
        return run

    # -- waiting ----------------------------------------------------------------------------

    async def wait(self, run_id: str, timeout: float) -> RunRecord:
        """Return as soon as the run is decided, or the pending run after `timeout` seconds."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(run_id, []).append(future)
        try:
            run = await self.record(run_id)
            if run.status == "pending":
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(future), timeout)
                run = await self.record(run_id)
            return run
        finally:
            waiting = self._waiters.get(run_id, [])
            if future in waiting:
                waiting.remove(future)
            if not waiting:
                self._waiters.pop(run_id, None)

    def _release_waiters(self, run_id: str) -> None:
        for future in self._waiters.get(run_id, []):
            if not future.done():
                future.set_result(None)

    # -- presentation -----------------------------------------------------------------------

    async def to_api(self, run: RunRecord, *, with_events: bool = False) -> Run:
        """The run as the API shows it, with its delivery state (and audit trail)."""
        jobs = await self.store.jobs_for_run(run.id, RESUME_JOB)
        delivery = delivery_state(jobs[-1]) if jobs else None
        events = None
        if with_events:
            events = [
                AuditEvent(at=iso(e.at) or "", kind=e.kind, detail=e.detail)
                for e in await self.store.events(run.id)
            ]
        doc = run.doc
        return Run(
            id=run.id,
            flow=run.flow,
            status=run.status,
            title=doc["title"],
            summary=doc.get("summary"),
            action=doc["action"],
            context=doc.get("context") or {},
            risk=doc.get("risk") or {},
            editable=doc.get("editable") or [],
            requested_by=doc.get("requested_by"),
            metadata=doc.get("metadata") or {},
            idempotency_key=run.idempotency_key,
            created_at=iso(run.created_at) or "",
            deadline=iso(run.deadline) or "",
            decision=DecisionPayload.model_validate(run.decision) if run.decision else None,
            delivery=delivery,
            events=events,
        )


def delivery_state(job: JobRecord) -> DeliveryState:
    """The resume job's progress in API terms."""
    status = {"pending": "pending", "done": "delivered", "failed": "failed"}[job.status]
    return DeliveryState(
        status=status,
        attempts=job.attempts,
        last_status=job.last_status,
        last_error=job.last_error,
        webhook_id=job.id,
        url=job.payload.get("url", ""),
    )
