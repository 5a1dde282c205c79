"""What the bot writes: prompts, decision notes and command answers as Telegram HTML.

Everything that came from a workflow is escaped (parse_mode HTML understands only a few tags and
refuses a message with a stray `<` or `&`), cut to a readable length before escaping, and the
whole prompt stays well under Telegram's 4096-character limit.
"""

from __future__ import annotations

import contextlib
import html
import ipaddress
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from ..config import FlowConfig
from ..store import RunRecord

MAX_VALUE = 300
MAX_PROMPT = 3200  # HTML source; a local review link and the decision note must still fit
CHOICE_LABELS = {"approve": "✅ Approve", "reject": "❌ Reject", "review": "📝 Review & edit"}


def escape(text: Any) -> str:
    """Text safe inside Telegram HTML."""
    return html.escape(str(text), quote=False)


def escape_attr(text: str) -> str:
    """Text safe inside a double-quoted HTML attribute."""
    return html.escape(text, quote=True)


def clip(text: str, limit: int = MAX_VALUE) -> str:
    """At most `limit` characters, marked with … when cut (cut before escaping)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def tg_len(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units (an emoji counts twice)."""
    return len(text.encode("utf-16-le")) // 2


def as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def when(ts: float) -> str:
    """A timestamp as people read it in a chat."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _field_lines(values: dict[str, Any]) -> Iterable[str]:
    for name, value in values.items():
        text = clip(as_text(value))
        if "\n" in text:
            yield f"<b>{escape(clip(name, 64))}</b>:\n<pre>{escape(text)}</pre>"
        else:
            yield f"<b>{escape(clip(name, 64))}</b>: {escape(text)}"


def prompt_text(run: RunRecord, flow: FlowConfig) -> str:
    """The approval request: title, summary, action, context and deadline."""
    doc = run.doc
    head = [f"<b>Approval needed: {escape(clip(doc['title'], 200))}</b>"]
    if doc.get("summary"):
        head.append(escape(clip(str(doc["summary"]), 600)))
    tail = [
        "",
        f"<i>Flow {escape(run.flow)} · decide by {when(run.deadline)}"
        f" (then {escape(doc.get('on_timeout', flow.on_timeout))})</i>",
    ]
    body: list[str] = []
    sections = (("Action", doc.get("action") or {}), ("Context", doc.get("context") or {}))
    for label, values in sections:
        if values:
            body += ["", f"<b>{label}</b>", *_field_lines(values)]
    budget = MAX_PROMPT - tg_len("\n".join(head + tail)) - 80
    kept: list[str] = []
    for line in body:
        if tg_len(line) + 1 > budget:
            kept += ["", "<i>… more on the review page</i>"]
            break
        kept.append(line)
        budget -= tg_len(line) + 1
    return "\n".join(head + kept + tail)


def decision_note(decision: dict[str, Any]) -> str:
    """ "Approved by Ann via email at 2026-11-25 10:00 UTC" (HTML), for the edited prompts."""
    outcome = str(decision.get("decision", "decided")).capitalize()
    reviewer = decision.get("reviewer") or {}
    by = decision.get("decided_by")
    at = decision.get("decided_at") or ""
    with contextlib.suppress(ValueError):
        at = when(datetime.strptime(at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())
    if reviewer:
        who = reviewer.get("name") or reviewer.get("id") or "a reviewer"
        via = reviewer.get("channel") or "web"
        line = f"{outcome} by {escape(who)} via {escape(via)} at {escape(at)}"
    elif by == "timeout":
        line = f"{outcome} automatically: no decision before the deadline ({escape(at)})"
    elif by == "policy":
        line = f"{outcome} by policy at {escape(at)}"
    else:
        line = f"{outcome} via the API at {escape(at)}"
    note = f"<b>{line}</b>"
    if decision.get("comment"):
        note += f"\n<i>{escape(clip(str(decision['comment'])))}</i>"
    return note


def decided_text(prompt: str, decision: dict[str, Any]) -> str:
    """The prompt with the decision appended."""
    return f"{prompt}\n\n{decision_note(decision)}"


def url_button_allowed(url: str) -> bool:
    """Telegram refuses URL buttons and links to local addresses (BUTTON_URL_INVALID)."""
    host = (urlsplit(url).hostname or "").lower()
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host != "localhost" and not host.endswith(".localhost") and "." in host
    return address.is_global


def link(url: str, label: str) -> str:
    """A link, or the bare URL as text where Telegram would refuse the link."""
    if url_button_allowed(url):
        return f'<a href="{escape_attr(url)}">{escape(label)}</a>'
    return f"{escape(label)}: {escape(url)}"


def keyboard(approve: str, reject: str, review: str | None, url: str | None) -> dict[str, Any]:
    """Approve / Reject callback buttons and a Review & edit button (a URL or a callback)."""
    rows: list[list[dict[str, str]]] = [
        [
            {"text": CHOICE_LABELS["approve"], "callback_data": approve},
            {"text": CHOICE_LABELS["reject"], "callback_data": reject},
        ]
    ]
    if url is not None:
        rows.append([{"text": CHOICE_LABELS["review"], "url": url}])
    elif review is not None:
        rows.append([{"text": CHOICE_LABELS["review"], "callback_data": review}])
    return {"inline_keyboard": rows}


def start_text(user_id: int, first_name: str, chat_id: int, chat_type: str) -> str:
    """The answer to /start: the ids to put in the config, and how."""
    if chat_type == "private":
        return (
            f"Hello {escape(clip(first_name, 64))}! Your Telegram user id is"
            f" <code>{user_id}</code>.\n\n"
            "To receive approval requests here, ask the connector's operator to add you to a"
            " flow's reviewers:\n"
            f'<pre>[[flows.NAME.reviewers]]\nname = "{escape(clip(first_name, 64))}"\n'
            f"telegram_id = {user_id}</pre>\n"
            "Then /pending lists what waits for you."
        )
    return (
        f"This chat's id is <code>{chat_id}</code>. To post a flow's approval requests here, set"
        f' <code>telegram_chat = {chat_id}</code> in the flow and add "telegram" to its'
        " channels. Only the flow's reviewers (by <code>telegram_id</code>) may decide here;"
        f" yours is <code>{user_id}</code>."
    )


def pending_text(entries: list[tuple[RunRecord, str]], more: bool) -> str:
    """The answer to /pending: each waiting run with the reviewer's own link."""
    if not entries:
        return "Nothing is waiting for your decision."
    lines = [f"<b>{len(entries)}{'+' if more else ''} waiting for your decision</b>"]
    for run, url in entries:
        title = clip(run.doc["title"], 100)
        lines.append(f"• {link(url, title)} — {escape(run.flow)}, by {when(run.deadline)}")
    return "\n".join(lines)
