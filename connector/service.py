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
from dataclasses import replace
from typing import Any

from ulid import ULID

from .channels import Channel
from .config import FlowConfig, ReviewerConfig, Settings
from .errors import Conflict, RunNotFound, UnknownFlow
from .jobs import Outcome
from .links import LinkSigner
from .metrics import Metrics
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
from .policy import Actor, already_decided, check_decision, evaluate_rules
from .store import JobRecord, NewJob, RunRecord, Store
from .urlguard import AddressPolicy, check_resume_url

log = logging.getLogger(__name__)

RESUME_JOB = "resume"
ESCALATE_JOB = "escalate"


def new_id() -> str:
    """A time-ordered unique id (ULID), so newest-first is ordering by id."""
    return str(ULID())


def decision_body(decision: dict[str, Any]) -> bytes:
    """The decision payload as the exact bytes every delivery of it sends."""
    return json.dumps(decision, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


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
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.signer = signer
        self.addresses = addresses
        self.clock = clock
        self.metrics = metrics or Metrics()
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
        """Store a new run and queue its notifications; (run, created). Idempotent by key.

        When the flow's `auto_approve` rule matches (enforce mode), the run is stored already
        approved by policy, with its resume job, and nobody is notified.
        """
        flow = self.flow(request.flow)
        resume = request.resume.model_dump() if request.resume else None
        if resume is None and flow.resume_url:
            resume = {"url": flow.resume_url, "headers": {}}
        if resume is not None:
            await check_resume_url(resume["url"], self.addresses)
            resume["headers"] = {**flow.resume_headers, **resume["headers"]}
        now = self.clock()
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
                "required_approvals": flow.required_approvals,
            },
        )
        events: list[tuple[str, dict[str, Any]]] = [
            ("created", {"source": source, "requested_by": request.requested_by})
        ]
        verdict = evaluate_rules(flow, run.doc)
        if verdict is not None:
            run.doc["policy"] = verdict.as_doc()
            events.append(("rule", verdict.as_doc()))
        if verdict is not None and verdict.auto_approve:
            payload = self._payload(run, "approved", "policy", None, {}, None, now)
            run.status, run.decision, run.decided_at = "approved", payload, now
            # Channels hear a policy decision like any other (e.g. REST hook subscribers).
            jobs = self._resume_jobs(run, payload) + [
                job for channel in self.channels for job in channel.on_decision(run, flow)
            ]
            events.append(
                ("decided", {"decision": "approved", "decided_by": "policy", "rule": verdict.rule})
            )
        else:
            jobs = [job for channel in self.channels for job in channel.on_pause(run, flow)]
            if flow.escalate_after is not None:
                jobs.append(
                    NewJob(
                        id=new_id(),
                        kind=ESCALATE_JOB,
                        run_id=run.id,
                        next_at=now + flow.escalate_after.total_seconds(),
                    )
                )
        stored, created = await self.store.create_run(run, jobs, events)
        if created:
            self.metrics.inc("hitl_runs_created_total", "Runs paused", flow=run.flow, source=source)
            if stored.status != "pending":
                self._count_decision(stored.flow, stored.status, "policy")
            if stored.status == "pending":
                self._on_new_deadline(stored.deadline)
            else:
                self.release_waiters(stored.id)
            if jobs:
                self._on_work()
        return stored, created

    # -- decide -----------------------------------------------------------------------------

    def _payload(
        self,
        run: RunRecord,
        decision: str,
        decided_by: str,
        actor: Actor | None,
        changes: dict[str, Change],
        comment: str | None,
        now: float,
    ) -> dict[str, Any]:
        action = dict(run.doc["action"])
        for key, change in changes.items():
            action[key] = change.to
        reviewer = None
        if actor is not None and actor.id:
            reviewer = ReviewerRef(id=actor.id, name=actor.name, channel=actor.channel)
        payload = DecisionPayload(
            run_id=run.id,
            flow=run.flow,
            decision=decision,
            approved=decision == "approved",
            action=action,
            edited=bool(changes),
            changes=changes,
            comment=comment or None,
            reviewer=reviewer,
            decided_at=iso(now) or "",
            decided_by=decided_by,
        )
        return payload.model_dump(mode="json", by_alias=True)

    def _resume_jobs(self, run: RunRecord, payload: dict[str, Any]) -> list[NewJob]:
        if not run.resume:
            return []
        body = decision_body(payload)
        return [
            NewJob(
                id=f"msg_{new_id()}",
                kind=RESUME_JOB,
                run_id=run.id,
                payload={"url": run.resume["url"], "headers": run.resume.get("headers", {})},
                body=body,
            )
        ]

    async def decide(
        self,
        run_id: str,
        actor: Actor,
        *,
        approve: bool | None,
        edits: dict[str, Any] | None = None,
        comment: str | None = None,
        decided_by: str = "reviewer",
        known_run: RunRecord | None = None,
    ) -> RunRecord:
        """Record a decision if `actor` may make it; raise AlreadyDecided when someone was first.

        `approve=None` means cancel. On a flow needing N approvals, an approval is counted and
        the run stays pending until the N-th distinct reviewer approves; one rejection decides.
        `known_run` spares a read when the caller just loaded the run (a stale copy is safe:
        the store's conditional update still decides who is first).
        """
        run = known_run if known_run is not None else await self.record(run_id)
        flow = self.settings.flows.get(run.flow)
        known = flow.reviewer(actor.id) if flow is not None and actor.id else None
        if known is not None and actor.name in (None, actor.id):
            actor = replace(actor, name=known.display_name)
        choice = "cancel" if approve is None else "approve" if approve else "reject"
        check_decision(run, flow, actor, choice, edits=edits)  # type: ignore[arg-type]
        changes = {
            key: Change(**{"from": run.doc["action"].get(key), "to": value})
            for key, value in (edits or {}).items()
            if run.doc["action"].get(key) != value
        }
        status = {"cancel": "cancelled", "approve": "approved", "reject": "rejected"}[choice]
        now = self.clock()
        payload = self._payload(run, status, decided_by, actor, changes, comment, now)
        decided = RunRecord(
            **{**run.__dict__, "status": status, "decision": payload, "decided_at": now}
        )
        jobs = [job for channel in self.channels for job in channel.on_decision(decided, flow)]
        jobs += self._resume_jobs(run, payload)
        events = [
            (
                "decided",
                {
                    "decision": status,
                    "decided_by": decided_by,
                    "reviewer": actor.id,
                    "channel": actor.channel,
                    "edited": bool(changes),
                },
            )
        ]
        required = int(run.doc.get("required_approvals", 1))
        if choice == "approve" and required > 1 and actor.id:
            outcome = await self.store.record_approval(
                run.id,
                actor.id.lower(),
                actor.channel,
                required=required,
                decision=payload,
                decided_at=now,
                jobs=jobs,
                events=events,
            )
            if outcome.result == "duplicate":
                raise Conflict(
                    f"you already approved; {outcome.approvals} of {required} approvals so far"
                )
            if outcome.result == "counted":
                return await self.record(run.id)
            won = outcome.result == "decided"
        else:
            won = await self.store.decide(
                run.id,
                status=status,
                decision=payload,
                decided_at=now,
                jobs=jobs,
                events=events,
            )
        if not won:
            raise already_decided(await self.record(run.id))
        self._count_decision(run.flow, status, decided_by)
        if jobs:
            self._on_work()
        self.release_waiters(run.id)
        return decided

    def _count_decision(self, flow: str, status: str, decided_by: str) -> None:
        self.metrics.inc(
            "hitl_decisions_total",
            "Runs decided",
            flow=flow,
            decision=status,
            decided_by=decided_by,
        )

    async def cancel(self, run_id: str, *, reason: str | None = None) -> RunRecord:
        """Cancel a pending run; the resume target hears `cancelled`."""
        return await self.decide(
            run_id,
            Actor("system", channel="api"),
            approve=None,
            comment=reason,
            decided_by="api",
        )

    async def expire_due(self, *, limit: int = 500) -> int:
        """Decide every run whose deadline has passed by its flow's `on_timeout`."""
        due = await self.store.due_runs(self.clock(), limit)

        async def expire(run: RunRecord) -> bool:
            approve = run.doc.get("on_timeout", "reject") == "approve"
            try:
                await self.decide(
                    run.id,
                    Actor("timeout", channel="timeout"),
                    approve=approve,
                    decided_by="timeout",
                    known_run=run,
                )
            except Conflict:
                return False  # someone decided it meanwhile
            return True

        # Concurrently, so the store group-commits many timeouts in each transaction.
        return sum(await asyncio.gather(*(expire(run) for run in due)))

    async def escalate(self, job: JobRecord) -> Outcome:
        """Job handler: nobody decided in time, so bring in the flow's escalation reviewers."""
        run = await self.store.get_run(job.run_id or "")
        flow = self.settings.flows.get(run.flow) if run else None
        if run is None or flow is None or run.status != "pending":
            return Outcome("done")
        now = self.clock()
        jobs = [
            job
            for channel in self.channels
            for job in channel.on_escalation(run, flow, flow.escalate_to)
        ]
        detail = {"to": [r.id for r in flow.escalate_to]}
        if await self.store.mark_escalated(run.id, now, jobs, [("escalated", detail)]) and jobs:
            self._on_work()
        return Outcome("done")

    async def redeliver(self, run_id: str) -> RunRecord:
        """Send the recorded decision again (same webhook-id), e.g. after a failed delivery."""
        run = await self.record(run_id)
        jobs = await self.store.jobs_for_run(run.id, RESUME_JOB)
        if run.status == "pending" or not jobs:
            raise Conflict("nothing to redeliver: the run is undecided or has no resume URL")
        await self.store.requeue_job(jobs[-1].id, self.clock())
        await self.store.add_event(run.id, "redeliver", {})
        self._on_work()
        return run

    # -- waiting ----------------------------------------------------------------------------

    async def wait(self, run_id: str, timeout: float) -> RunRecord:
        """Return as soon as the run is decided, or the pending run after `timeout` seconds."""
        loop = asyncio.get_running_loop()
        until = loop.time() + timeout
        run = await self.record(run_id)
        while run.status == "pending" and (left := until - loop.time()) > 0:
            future: asyncio.Future[None] = loop.create_future()
            self._waiters.setdefault(run_id, []).append(future)
            try:
                # Registered before re-reading, so a decision in between still wakes us.
                run = await self.record(run_id)
                if run.status != "pending":
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await future
                run = await self.record(run_id)
            finally:
                waiting = self._waiters.get(run_id, [])
                if future in waiting:
                    waiting.remove(future)
                if not waiting:
                    self._waiters.pop(run_id, None)
        return run

    def waiting(self, run_id: str | None = None) -> int:
        """Long polls open in this process on `run_id` (on any run for None)."""
        if run_id is not None:
            return len(self._waiters.get(run_id, []))
        return sum(len(futures) for futures in self._waiters.values())

    def release_waiters(self, run_id: str | None) -> None:
        """Wake long polls on `run_id` (all of them for None) to look at the run again.

        Called for this process's own decisions and, through the store's `listen_decisions`,
        for decisions recorded by other instances sharing the database.
        """
        for key in [run_id] if run_id is not None else list(self._waiters):
            for future in self._waiters.get(key, []):
                if not future.done():
                    future.set_result(None)

    # -- presentation -----------------------------------------------------------------------

    async def to_api(self, run: RunRecord, *, with_events: bool = False) -> Run:
        """The run as the API shows it, with its delivery state (and audit trail)."""
        # Only a decided run can have a resume job: skip the query on the hot pause path.
        jobs = [] if run.status == "pending" else await self.store.jobs_for_run(run.id, RESUME_JOB)
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
