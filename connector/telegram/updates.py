"""Processing recorded updates: button presses decide (through the service), commands answer.

A press is answered first (Telegram shows a spinner until then and drops answers after ~15 s),
then decided through `RunService.decide`, which runs the same policy check as every other path.
Who pressed is taken from the update's `from.id` and must be one of the flow's reviewers; in a
group, that is what keeps everyone else in the chat from deciding.
"""

from __future__ import annotations

import logging
from typing import Any

from ..errors import AlreadyDecided, ConnectorError, NotAllowedToDecide
from ..jobs import Outcome
from ..policy import Actor, check_decision
from ..service import RunService
from ..store import JobRecord, RunRecord
from . import messages
from .api import TelegramError
from .limits import Deferred
from .sender import Sender, outcome_for

log = logging.getLogger(__name__)

_PENDING_LIMIT = 20


class UpdateHandler:
    """Handles one update: a callback query (button press) or a message (/start, /pending)."""

    def __init__(self, service: RunService, sender: Sender) -> None:
        self._service = service
        self._store = service.store
        self._sender = sender

    async def handle(self, job: JobRecord) -> Outcome:
        """The job handler for a recorded update."""
        update: dict[str, Any] = job.payload.get("update") or {}
        try:
            if isinstance(update.get("callback_query"), dict):
                await self._press(job, update["callback_query"])
            elif isinstance(update.get("message"), dict):
                await self._message(job, update["message"])
        except (Deferred, TelegramError) as exc:
            return outcome_for(exc)
        return Outcome("done")

    # -- button presses ---------------------------------------------------------------------

    async def _press(self, job: JobRecord, query: dict[str, Any]) -> None:
        query_id = str(query.get("id", ""))
        user = query.get("from") or {}
        user_id = user.get("id")
        data = query.get("data")
        button = await self._store.telegram_button(data) if isinstance(data, str) else None
        run = await self._store.get_run(button.run_id) if button else None
        if button is None or run is None or not isinstance(user_id, int):
            await self._sender.answer(query_id, "This button is no longer valid.", alert=True)
            return
        flow = self._service.settings.flows.get(run.flow)
        reviewer = flow.telegram_reviewer(user_id) if flow else None
        actor = Actor(
            "reviewer",
            id=reviewer.id if reviewer else f"telegram:{user_id}",
            name=reviewer.display_name if reviewer else str(user.get("first_name") or user_id),
            channel="telegram",
        )
        try:
            # "review" asks for the page: the same permission as deciding.
            check_decision(run, flow, actor, "reject" if button.choice == "reject" else "approve")
        except AlreadyDecided as exc:
            await self._sender.answer(query_id, exc.message[:1].upper() + exc.message[1:])
            return
        except NotAllowedToDecide:
            await self._sender.answer(
                query_id, "Only this flow's reviewers may decide. Nothing was recorded.", alert=True
            )
            await self._store.add_event(
                run.id, "refused", {"channel": "telegram", "telegram_id": user_id}
            )
            return
        if button.choice == "review":
            await self._send_review_link(job, query_id, run, user_id)
            return
        approve = button.choice == "approve"
        required = int(run.doc.get("required_approvals", 1))
        if approve and required > 1:
            # N-of-M: this press is one approval; the run is approved when enough have come in.
            text = f"Approval counted ✓ ({required} approvals needed)"
        else:
            text = "Approved ✓" if approve else "Rejected ✗"
        await self._sender.answer(query_id, text)
        try:
            await self._service.decide(run.id, actor, approve=approve)
        except AlreadyDecided:
            pass  # someone was first by a hair; the edited prompt shows who
        except ConnectorError as exc:
            log.warning("Telegram decision on run %s refused: %s", run.id, exc.message)

    async def _send_review_link(
        self, job: JobRecord, query_id: str, run: RunRecord, user_id: int
    ) -> None:
        """A Review & edit press in a group: the presser's own link goes to their private chat."""
        flow = self._service.settings.flows[run.flow]
        reviewer = flow.telegram_reviewer(user_id)
        assert reviewer is not None  # checked by the caller
        url = self._service.review_url(run, reviewer, channel="telegram")
        text = (
            f"<b>{messages.escape(messages.clip(run.doc['title'], 200))}</b>\n"
            f"{messages.link(url, 'Open your review page')}"
        )
        try:
            await self._sender.message(f"{job.id}:review", user_id, text)
        except TelegramError as exc:
            if exc.temporary:
                raise
            await self._sender.answer(
                query_id, "Send me /start in a private chat first, then press again.", alert=True
            )
            return
        await self._sender.answer(query_id, "Your review link is in our private chat.")

    # -- commands ---------------------------------------------------------------------------

    async def _message(self, job: JobRecord, message: dict[str, Any]) -> None:
        text = message.get("text")
        chat = message.get("chat") or {}
        user = message.get("from") or {}
        if not isinstance(text, str) or not text.startswith("/"):
            return
        if not isinstance(chat.get("id"), int) or not isinstance(user.get("id"), int):
            return
        command = text.split()[0].split("@", 1)[0].lower()
        chat_id, user_id = chat["id"], user["id"]
        if command == "/start":
            reply = messages.start_text(
                user_id, str(user.get("first_name") or ""), chat_id, str(chat.get("type"))
            )
        elif command == "/pending":
            if chat.get("type") != "private":
                reply = "Your review links are personal: send /pending to me in a private chat."
            else:
                reply = await self._pending(user_id)
        else:
            return
        await self._sender.message(job.id, chat_id, reply)

    async def _pending(self, user_id: int) -> str:
        entries: list[tuple[RunRecord, str]] = []
        member = False
        for name, flow in self._service.settings.flows.items():
            reviewer = flow.telegram_reviewer(user_id)
            if reviewer is None:
                continue
            member = True
            for run in await self._store.list_runs(
                status="pending", flow=name, limit=_PENDING_LIMIT + 1, before=None
            ):
                url = self._service.review_url(run, reviewer, channel="telegram")
                entries.append((run, url))
        if not member:
            return (
                f"You are not a reviewer of any flow. Your Telegram user id is"
                f" <code>{user_id}</code>; /start tells how to add it."
            )
        entries.sort(key=lambda entry: entry[0].deadline)
        return messages.pending_text(entries[:_PENDING_LIMIT], len(entries) > _PENDING_LIMIT)
