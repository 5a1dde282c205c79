"""The Telegram channel: a prompt per reviewer (or the flow's group), edited once decided.

Prompts carry Approve / Reject callback buttons whose `callback_data` is a short random id kept in
the database (never a signed blob; Telegram allows 64 bytes) and a Review & edit URL button with
the reviewer's own signed link. Updates (webhook or polling) are recorded with their job in one
transaction, de-duplicated on `update_id`, and processed by the job runner (see updates.py).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from ..config import FlowConfig, ReviewerConfig, TelegramSettings
from ..jobs import Handler, Outcome
from ..service import RunService, new_id
from ..store import JobRecord, NewJob, RunRecord, TelegramButton, TelegramMessage
from . import messages
from .api import TelegramClient, TelegramError
from .limits import Deferred, Limiter
from .sender import NO_PREVIEW, Sender, outcome_for
from .updates import UpdateHandler

log = logging.getLogger(__name__)

PROMPT_JOB = "telegram.prompt"
CLOSE_JOB = "telegram.close"
UPDATE_JOB = "telegram.update"

_KEEP_UPDATES = 8 * 86400.0  # Telegram re-sends an unconfirmed update for at most 24 hours


def button_id() -> str:
    """A short random callback_data: 16 URL-safe characters, far below the 64-byte limit."""
    return secrets.token_urlsafe(12)


class TelegramChannel:
    """Queues prompt and edit jobs, sends them, and records incoming updates."""

    def __init__(
        self,
        service: RunService,
        client: TelegramClient,
        settings: TelegramSettings,
        *,
        on_work: Callable[[], None] = lambda: None,
    ) -> None:
        self._service = service
        self._store = service.store
        self.settings = settings
        self.client = client
        self.sender = Sender(
            client, Limiter(chat_rate=settings.chat_rate, global_rate=settings.global_rate)
        )
        self._on_work = on_work
        self._updates = UpdateHandler(service, self.sender)

    @property
    def webhook_secret(self) -> bytes | None:
        """The secret Telegram must send with every webhook update (None in polling mode)."""
        secret = self.settings.webhook_secret
        return secret.get_secret_value().encode() if secret is not None else None

    def handlers(self) -> dict[str, Handler]:
        """Prompt, close and update jobs."""
        return {
            PROMPT_JOB: self.send_prompt,
            CLOSE_JOB: self.close_prompts,
            UPDATE_JOB: self._updates.handle,
        }

    # -- run events -------------------------------------------------------------------------

    def on_pause(self, run: RunRecord, flow: FlowConfig) -> list[NewJob]:
        """One prompt job per Telegram reviewer, or one for the flow's group."""
        if "telegram" not in flow.channels:
            return []
        if flow.telegram_chat is not None:
            targets: list[tuple[int, str | None]] = [(flow.telegram_chat, None)]
        else:
            targets = [(r.telegram_id, r.id) for r in flow.reviewers if r.telegram_id is not None]
        return [
            NewJob(
                id=new_id(),
                kind=PROMPT_JOB,
                run_id=run.id,
                payload={"chat_id": chat_id, "reviewer": reviewer_id},
            )
            for chat_id, reviewer_id in targets
        ]

    def on_escalation(
        self, run: RunRecord, flow: FlowConfig, reviewers: list[ReviewerConfig]
    ) -> list[NewJob]:
        """Private prompts to the escalation reviewers who use Telegram."""
        if "telegram" not in flow.channels:
            return []
        return [
            NewJob(
                id=new_id(),
                kind=PROMPT_JOB,
                run_id=run.id,
                payload={"chat_id": r.telegram_id, "reviewer": r.id},
            )
            for r in reviewers
            if r.telegram_id is not None
        ]

    def on_decision(self, run: RunRecord, flow: FlowConfig | None) -> list[NewJob]:
        """One job that edits every Telegram prompt of the run."""
        if flow is not None and "telegram" not in flow.channels:
            return []
        return [NewJob(id=new_id(), kind=CLOSE_JOB, run_id=run.id)]

    async def receive(self, update: dict[str, Any]) -> bool:
        """Record an update (webhook or poller) and queue its processing; False if replayed."""
        job = NewJob(id=new_id(), kind=UPDATE_JOB, run_id=None, payload={"update": update})
        new = await self._store.record_telegram_update(
            self.settings.bot_id, int(update["update_id"]), job, keep_for=_KEEP_UPDATES
        )
        if new:
            self._on_work()
        return new

    # -- job handlers -----------------------------------------------------------------------

    async def send_prompt(self, job: JobRecord) -> Outcome:
        """Send one approval request to a reviewer's private chat or to the flow's group."""
        chat_id = int(job.payload["chat_id"])
        try:
            # First, before any await: jobs reach the limiter in queue order, so prompts to one
            # chat are sent in the order the runs were created.
            slot = self.sender.claim(job.id, chat_id)
        except Deferred as exc:
            return outcome_for(exc)
        run = await self._store.get_run(job.run_id or "")
        if run is None or run.status != "pending":
            self.sender.limiter.release(job.id)
            return Outcome("done", event=("notify_skipped", {"reason": "already decided"}))
        flow = self._service.settings.flows.get(run.flow)
        reviewer_id = job.payload.get("reviewer")
        reviewer = flow.reviewer(reviewer_id) if flow and reviewer_id else None
        if flow is None or (reviewer_id and reviewer is None):
            return Outcome("failed", error="the flow or reviewer is no longer configured")
        text = messages.prompt_text(run, flow)
        url = self._service.review_url(run, reviewer, channel="telegram") if reviewer else None
        if url and not messages.url_button_allowed(url):
            text += "\n\n" + messages.link(url, "Review & edit")
            url = None
        # In a group, Review & edit is a button that sends each reviewer their own link in
        # private: a personal signed link posted to the group would let anyone there use it.
        choices = ("approve", "reject") if reviewer else ("approve", "reject", "review")
        ids = {choice: button_id() for choice in choices}
        now = time.time()
        await self._store.add_telegram_buttons(
            [
                TelegramButton(bid, run.id, reviewer_id, chat_id, choice, now)
                for choice, bid in ids.items()
            ]
        )
        markup = messages.keyboard(ids["approve"], ids["reject"], ids.get("review"), url)
        params = {
            "text": text,
            "parse_mode": "HTML",
            "link_preview_options": NO_PREVIEW,
            "reply_markup": markup,
        }
        try:
            sent = await self.sender.to_chat(slot, chat_id, "sendMessage", params)
        except TelegramError as exc:
            return outcome_for(exc)
        await self._store.add_telegram_message(
            TelegramMessage(chat_id, int(sent["message_id"]), run.id, reviewer_id, text, now)
        )
        detail = {"channel": "telegram", "chat_id": chat_id, "reviewer": reviewer_id}
        return Outcome("done", event=("notified", detail))

    async def close_prompts(self, job: JobRecord) -> Outcome:
        """Edit every prompt of a decided run: buttons removed, the decision appended."""
        run = await self._store.get_run(job.run_id or "")
        if run is None or run.decision is None:
            return Outcome("done")
        waiting = [
            j for j in await self._store.jobs_for_run(run.id, PROMPT_JOB) if j.status == "pending"
        ]
        if waiting:
            # A prompt may be on its way right now: edit once it is recorded (or skipped). A
            # prompt being sent shows its lease expiry as next_at, so look again within a second.
            next_at = min(j.next_at for j in waiting)
            return Outcome("later", retry_after=min(1.0, max(0.25, next_at - time.time() + 0.25)))
        results: list[Outcome] = []
        closed = 0
        for message in await self._store.telegram_messages(run.id):
            if message.closed_at is not None:
                continue
            outcome = await self._close(job, run, message)
            if outcome is None:
                closed += 1
            else:
                results.append(outcome)
        retries = [o for o in results if o.result == "retry"]
        if retries:
            return max(retries, key=lambda o: o.retry_after or 0.0)
        if results:
            return min(results, key=lambda o: o.retry_after or 0.0)
        return Outcome("done", event=("telegram_closed", {"messages": closed}))

    async def _close(
        self, job: JobRecord, run: RunRecord, message: TelegramMessage
    ) -> Outcome | None:
        key = f"{job.id}:{message.chat_id}:{message.message_id}"
        params = {
            "message_id": message.message_id,
            "text": messages.decided_text(message.text, run.decision or {}),
            "parse_mode": "HTML",
            "link_preview_options": NO_PREVIEW,
            "reply_markup": {"inline_keyboard": []},
        }
        try:
            slot = self.sender.claim(key, message.chat_id)
            await self.sender.to_chat(slot, message.chat_id, "editMessageText", params)
        except (Deferred, TelegramError) as exc:
            outcome = outcome_for(exc)
            if outcome.result != "failed":
                return outcome
            # Deleted, too old, bot removed from the chat: nothing more can be done for it.
        await self._store.close_telegram_message(message.chat_id, message.message_id, time.time())
        return None
