"""REST hook subscriptions (Zapier's "New Decision" trigger): every decision, POSTed to each.

A decision queues one `hooks.fanout` job in the same transaction as the decision, so it cannot
be lost. That job reads the subscriptions when it runs — a subscription made on another instance
counts — and queues one `hooks.deliver` job per matching subscription. Delivery ids are derived
from the fan-out and the subscription, so a fan-out that runs twice (a crash before its outcome
was recorded) queues nothing twice, and each id is the stable `webhook-id` receivers de-duplicate
on. Deliveries are resume deliveries (same body, headers, signature, SSRF guard and retries); a
target that answers 410 Gone has unsubscribed, and its subscription is removed.
"""

from __future__ import annotations

import time

from .config import FlowConfig, ReviewerConfig
from .delivery import ResumeDeliverer
from .errors import ResumeUrlRefused
from .jobs import Handler, Outcome
from .service import RunService, decision_body, new_id
from .store import JobRecord, NewJob, RunRecord, Store, SubscriptionRecord
from .urlguard import check_resume_url

HOOK_FANOUT_JOB = "hooks.fanout"
HOOK_DELIVERY_JOB = "hooks.deliver"


class HookChannel:
    """The channel that turns each decision into one delivery per matching subscription."""

    def __init__(self, store: Store, deliverer: ResumeDeliverer) -> None:
        self._store = store
        self._deliverer = deliverer

    def handlers(self) -> dict[str, Handler]:
        return {HOOK_FANOUT_JOB: self.fan_out, HOOK_DELIVERY_JOB: self.deliver}

    def on_pause(self, run: RunRecord, flow: FlowConfig) -> list[NewJob]:
        return []

    def on_escalation(
        self, run: RunRecord, flow: FlowConfig, reviewers: list[ReviewerConfig]
    ) -> list[NewJob]:
        return []

    def on_decision(self, run: RunRecord, flow: FlowConfig | None) -> list[NewJob]:
        return [
            NewJob(
                id=f"fanout_{new_id()}",
                kind=HOOK_FANOUT_JOB,
                run_id=run.id,
                payload={"flow": run.flow},
                body=decision_body(run.decision or {}),
            )
        ]

    async def fan_out(self, job: JobRecord) -> Outcome:
        """Queue one delivery of the decision per subscription matching the run's flow."""
        subscriptions = await self._store.subscriptions_for(job.payload["flow"])
        stem = job.id.removeprefix("fanout_")
        await self._store.add_jobs(
            [
                NewJob(
                    id=f"msg_{stem}_{sub.id}",
                    kind=HOOK_DELIVERY_JOB,
                    run_id=job.run_id,
                    payload={"url": sub.target_url, "subscription_id": sub.id},
                    body=job.body,
                )
                for sub in subscriptions
            ]
        )
        event = ("hooks_queued", {"subscriptions": len(subscriptions)}) if subscriptions else None
        return Outcome("done", event=event)

    async def deliver(self, job: JobRecord) -> Outcome:
        """POST the decision to one subscriber; drop the subscription when it answers 410."""
        subscription_id: str = job.payload["subscription_id"]
        if await self._store.get_subscription(subscription_id) is None:
            return Outcome(
                "done",
                event=("hook_skipped", {"subscription": subscription_id, "reason": "unsubscribed"}),
            )
        outcome = await self._deliverer(job)
        detail = dict(outcome.event[1]) if outcome.event else {}
        detail["subscription"] = subscription_id
        if outcome.last_status == 410:
            await self._store.delete_subscription(subscription_id)
            detail["removed"] = True
            return Outcome(
                "failed",
                last_status=410,
                error="target answered 410 Gone; the subscription was removed",
                event=("hook", detail),
            )
        return Outcome(
            outcome.result,
            last_status=outcome.last_status,
            error=outcome.error,
            retry_after=outcome.retry_after,
            event=("hook", detail),
        )


async def subscribe(service: RunService, target_url: str, flow: str | None) -> SubscriptionRecord:
    """Record a subscription after the same checks a resume URL gets (and that the flow exists)."""
    if flow is not None:
        service.flow(flow)
    try:
        await check_resume_url(target_url, service.addresses)
    except ResumeUrlRefused as exc:
        raise ResumeUrlRefused(f"target_url refused: {exc.message}") from exc
    subscription = SubscriptionRecord(
        id=f"sub_{new_id()}", target_url=target_url, flow=flow, created_at=time.time()
    )
    await service.store.add_subscription(subscription)
    return subscription
