"""The email channel: the request to each reviewer, one reminder, and the outcome note.

Every email is a durable job written with the run (or its decision), so an SMTP outage delays
mail and never loses it. With no `[smtp]` configured, messages go to the dev mailbox (kept in the
database and shown at /dev/mailbox) so a newcomer can click through without any mail setup.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol
from urllib.parse import urlsplit

from ..config import FlowConfig, ReviewerConfig, Settings, SmtpSettings
from ..jobs import Handler, Outcome
from ..service import RunService, new_id
from ..store import JobRecord, NewJob, RunRecord, Store
from .email_render import Draft, Links, render_outcome, render_request
from .smtp import SendError, SmtpPool

log = logging.getLogger(__name__)

EMAIL_JOB = "notify.email"
REMINDER_JOB = "notify.email.reminder"
OUTCOME_JOB = "notify.email.outcome"

_DEV_SENDER = "hitl-connector <approvals@hitl-connector.invalid>"
_WAIT_FOR_REQUEST = 30.0


class MailTransport(Protocol):
    """Where rendered messages go: an SMTP server, or the dev mailbox."""

    async def deliver(self, message: Draft, *, sender: str, recipient: str) -> None:
        """Hand one message over; raise SendError when it did not go out."""
        ...

    async def close(self) -> None: ...


class DevMailbox:
    """Keeps messages in the store instead of sending them (no `[smtp]` configured)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def deliver(self, message: Draft, *, sender: str, recipient: str) -> None:
        await self._store.add_mail(
            to=recipient,
            subject=message.subject,
            text=message.text,
            html=message.html,
            headers=message.headers(),
        )

    async def close(self) -> None:
        """Nothing to close: the store belongs to the app."""
        return None


def open_transport(settings: Settings, store: Store) -> MailTransport:
    """The SMTP pool when `[smtp]` is configured, else the dev mailbox."""
    if settings.smtp is not None:
        return SmtpPool(settings.smtp)
    return DevMailbox(store)


class EmailChannel:
    """Queues and sends the email jobs of each run."""

    def __init__(self, service: RunService, transport: MailTransport) -> None:
        self._service = service
        self._transport = transport
        smtp: SmtpSettings | None = service.settings.smtp
        self._sender = smtp.from_ if smtp else _DEV_SENDER
        self._envelope_from = smtp.sender if smtp else "approvals@hitl-connector.invalid"
        domain = self._envelope_from.rpartition("@")[2]
        if smtp is None:
            domain = urlsplit(service.settings.public_url).hostname or domain
        self._domain = domain

    async def close(self) -> None:
        """Close the transport (SMTP connections)."""
        await self._transport.close()

    def handlers(self) -> dict[str, Handler]:
        """The three email job kinds and their handlers."""
        return {
            EMAIL_JOB: self.send_request,
            REMINDER_JOB: self.send_reminder,
            OUTCOME_JOB: self.send_outcome,
        }

    # -- jobs queued with the run and with its decision ---------------------------------------

    def on_pause(self, run: RunRecord, flow: FlowConfig) -> list[NewJob]:
        """A request per email reviewer, and their reminder when the flow has `remind_after`."""
        return self._requests(run, flow, flow.reviewers, reminders=True)

    def on_escalation(
        self, run: RunRecord, flow: FlowConfig, reviewers: list[ReviewerConfig]
    ) -> list[NewJob]:
        """Requests to the escalation reviewers (no reminder: the deadline is near)."""
        return self._requests(run, flow, reviewers, reminders=False)

    def _requests(
        self,
        run: RunRecord,
        flow: FlowConfig,
        reviewers: list[ReviewerConfig],
        *,
        reminders: bool,
    ) -> list[NewJob]:
        if "email" not in flow.channels:
            return []
        jobs = []
        for reviewer in reviewers:
            if not reviewer.email:
                continue
            payload = {"reviewer": reviewer.id}
            jobs.append(NewJob(id=new_id(), kind=EMAIL_JOB, run_id=run.id, payload=payload))
            if reminders and flow.remind_after is not None:
                at = run.created_at + flow.remind_after.total_seconds()
                jobs.append(
                    NewJob(
                        id=new_id(), kind=REMINDER_JOB, run_id=run.id, payload=payload, next_at=at
                    )
                )
        return jobs

    def on_decision(self, run: RunRecord, flow: FlowConfig | None) -> list[NewJob]:
        """An outcome note for every email reviewer but the one who decided."""
        if flow is None or "email" not in flow.channels or not flow.notify_outcome:
            return []
        decider = ((run.decision or {}).get("reviewer") or {}).get("id")
        return [
            NewJob(id=new_id(), kind=OUTCOME_JOB, run_id=run.id, payload={"reviewer": r.id})
            for r in [*flow.reviewers, *(flow.escalate_to if run.escalated_at else [])]
            if r.email and r.id != decider
        ]

    # -- handlers -----------------------------------------------------------------------------

    async def send_request(self, job: JobRecord) -> Outcome:
        """Send one reviewer's approval request."""
        return await self._send_request(job, reminder=False)

    async def send_reminder(self, job: JobRecord) -> Outcome:
        """Remind a reviewer of a run that is still pending, in the request's thread."""
        return await self._send_request(job, reminder=True)

    async def _send_request(self, job: JobRecord, *, reminder: bool) -> Outcome:
        found = await self._load(job)
        if isinstance(found, Outcome):
            return found
        run, flow, reviewer = found
        if run.status != "pending":
            return Outcome("done", event=self._event("notify_skipped", job, reason="decided"))
        if reminder and reviewer.id in await self._service.store.approvals(run.id):
            # N-of-M: this reviewer already approved; only the others need a nudge.
            return Outcome("done", event=self._event("notify_skipped", job, reason="approved"))
        if reminder:
            request = await self._request_state(run.id, reviewer.id)
            if request == "pending":
                # The request itself is still waiting for the server; remind after it.
                return Outcome("retry", retry_after=_WAIT_FOR_REQUEST)
            if request != "sent":
                return Outcome(
                    "done", event=self._event("notify_skipped", job, reason="request not sent")
                )
        links = Links(
            approve=self._service.review_url(run, reviewer, channel="email", choice="approve"),
            reject=self._service.review_url(run, reviewer, channel="email", choice="reject"),
            review=self._service.review_url(run, reviewer, channel="email"),
        )
        message = render_request(
            run,
            flow,
            reviewer,
            links,
            sender=self._sender,
            domain=self._domain,
            now=time.time(),
            reminder=reminder,
        )
        due_since = job.created_at
        if reminder and flow.remind_after is not None:
            due_since = run.created_at + flow.remind_after.total_seconds()
        return await self._deliver(job, reviewer, message, due_since=due_since)

    async def send_outcome(self, job: JobRecord) -> Outcome:
        """Tell a reviewer who was asked that the run is over, so nobody acts on it."""
        found = await self._load(job)
        if isinstance(found, Outcome):
            return found
        run, _, reviewer = found
        request = await self._request_state(run.id, reviewer.id)
        if request == "pending":
            # Its request may be on the wire right now; decide once it has settled.
            return Outcome("retry", retry_after=1.0)
        if request != "sent":
            return Outcome(
                "done", event=self._event("notify_skipped", job, reason="request not sent")
            )
        events = await self._service.store.events(run.id)
        reminded = any(
            e.kind == "notified"
            and e.detail.get("reviewer") == reviewer.id
            and e.detail.get("email") == "reminder"
            for e in events
        )
        message = render_outcome(
            run,
            reviewer,
            sender=self._sender,
            domain=self._domain,
            now=time.time(),
            reminded=reminded,
        )
        return await self._deliver(job, reviewer, message, due_since=job.created_at)

    # -- helpers ------------------------------------------------------------------------------

    async def _load(self, job: JobRecord) -> tuple[RunRecord, FlowConfig, ReviewerConfig] | Outcome:
        run = await self._service.store.get_run(job.run_id or "")
        if run is None:
            return Outcome("failed", error="run no longer exists")
        flow = self._service.settings.flows.get(run.flow)
        reviewer = flow.reviewer(job.payload["reviewer"]) if flow else None
        if flow is None or reviewer is None or not reviewer.email:
            return Outcome(
                "failed",
                error="reviewer is no longer part of the flow",
                event=self._event("notify_skipped", job, reason="reviewer removed from flow"),
            )
        return run, flow, reviewer

    async def _request_state(self, run_id: str, reviewer_id: str) -> str:
        """ "sent", "pending" (not settled yet), or "not sent" for this reviewer's request."""
        jobs = [
            j
            for j in await self._service.store.jobs_for_run(run_id, EMAIL_JOB)
            if j.payload.get("reviewer") == reviewer_id
        ]
        if any(j.status == "pending" for j in jobs):
            return "pending"
        events = await self._service.store.events(run_id)
        sent = any(
            e.kind == "notified"
            and e.detail.get("channel") == "email"
            and e.detail.get("reviewer") == reviewer_id
            and e.detail.get("email", "request") == "request"
            for e in events
        )
        return "sent" if sent else "not sent"

    async def _deliver(
        self, job: JobRecord, reviewer: ReviewerConfig, message: Draft, *, due_since: float
    ) -> Outcome:
        assert reviewer.email is not None
        try:
            await self._transport.deliver(
                message, sender=self._envelope_from, recipient=reviewer.email
            )
        except SendError as exc:
            error = str(exc)
            log.warning("email %s to reviewer %s failed: %s", job.kind, reviewer.id, error)
            if exc.permanent:
                event = self._event("notify_failed", job, error=error, code=exc.code)
                return Outcome("failed", last_status=exc.code, error=error, event=event)
            give_up = self._service.settings.delivery_retry_for.total_seconds()
            if time.time() - due_since >= give_up:
                event = self._event(
                    "notify_failed",
                    job,
                    error=f"gave up after {job.attempts + 1} attempts: {error}",
                )
                return Outcome("failed", last_status=exc.code, error=error, event=event)
            # Recorded once, on the first failure; the retries carry on quietly with backoff.
            first = self._event("notify_error", job, error=error, code=exc.code, retrying=True)
            return Outcome(
                "retry",
                last_status=exc.code,
                error=error,
                event=first if job.attempts == 0 else None,
            )
        return Outcome(
            "done",
            event=self._event("notified", job, message_id=message.message_id),
        )

    @staticmethod
    def _event(kind: str, job: JobRecord, **detail: Any) -> tuple[str, dict[str, Any]]:
        email = {EMAIL_JOB: "request", REMINDER_JOB: "reminder", OUTCOME_JOB: "outcome"}[job.kind]
        base = {"channel": "email", "reviewer": job.payload.get("reviewer"), "email": email}
        return kind, {**base, **{k: v for k, v in detail.items() if v is not None}}
