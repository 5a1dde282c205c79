"""The email channel: one message per reviewer with their own signed link.

With no SMTP server configured, messages go to the dev mailbox (kept in the database and shown at
/dev/mailbox) so a newcomer can click through without any mail setup.
"""

from __future__ import annotations

import logging
from email.utils import make_msgid

from ..config import FlowConfig, ReviewerConfig
from ..jobs import Handler, Outcome
from ..service import RunService, new_id
from ..store import JobRecord, NewJob, RunRecord

log = logging.getLogger(__name__)

EMAIL_JOB = "notify.email"


class EmailChannel:
    """Queues one `notify.email` job per email reviewer and sends them."""

    def __init__(self, service: RunService) -> None:
        self._service = service

    def handlers(self) -> dict[str, Handler]:
        return {EMAIL_JOB: self.send_request}

    def on_pause(self, run: RunRecord, flow: FlowConfig) -> list[NewJob]:
        return self._requests(run, flow, flow.reviewers)

    def on_escalation(
        self, run: RunRecord, flow: FlowConfig, reviewers: list[ReviewerConfig]
    ) -> list[NewJob]:
        return self._requests(run, flow, reviewers)

    def _requests(
        self, run: RunRecord, flow: FlowConfig, reviewers: list[ReviewerConfig]
    ) -> list[NewJob]:
        if "email" not in flow.channels:
            return []
        return [
            NewJob(id=new_id(), kind=EMAIL_JOB, run_id=run.id, payload={"reviewer": r.id})
            for r in reviewers
            if r.email
        ]

    def on_decision(self, run: RunRecord, flow: FlowConfig | None) -> list[NewJob]:
        return []

    async def send_request(self, job: JobRecord) -> Outcome:
        """Send (or keep in the dev mailbox) one reviewer's approval request."""
        run = await self._service.store.get_run(job.run_id or "")
        if run is None:
            return Outcome("failed", error="run no longer exists")
        if run.status != "pending":
            return Outcome("done", event=("notify_skipped", {"reason": "already decided"}))
        flow = self._service.settings.flows.get(run.flow)
        reviewer = flow.reviewer(job.payload["reviewer"]) if flow else None
        if reviewer is None or not reviewer.email:
            return Outcome("failed", error="reviewer is no longer part of the flow")
        link = self._service.review_url(run, reviewer, channel="email")
        title = run.doc["title"]
        lines = [
            f"Hello {reviewer.display_name},",
            "",
            f"A workflow is waiting for your decision: {title}",
        ]
        if run.doc.get("summary"):
            lines += ["", str(run.doc["summary"])]
        lines += [
            "",
            f"Approve: {link}?choice=approve",
            f"Reject: {link}?choice=reject",
            f"Review & edit: {link}",
            "",
            "Opening a link never decides by itself; you confirm on the page.",
        ]
        await self._service.store.add_mail(
            to=reviewer.email,
            subject=f"[Approval] {title}",
            text="\n".join(lines),
            html=None,
            headers={"Message-ID": make_msgid(domain="hitl-connector")},
        )
        return Outcome("done", event=("notified", {"channel": "email", "reviewer": reviewer.id}))
