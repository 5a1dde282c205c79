"""Approval emails as MIME messages: a hand-written plain-text part and an inline-CSS HTML part.

Everything that comes from the workflow is hostile: HTML is autoescaped by Jinja, control and
bidirectional-override characters are removed from every part, headers are single lines, and long
values are shortened (the review page shows them in full).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formataddr, formatdate
from typing import Any

import jinja2
import markupsafe

from ..config import FlowConfig, ReviewerConfig
from ..store import RunRecord

MAX_FIELDS = 20
MAX_CONTEXT = 10
MAX_VALUE = 300
MAX_LINES = 8
MAX_TITLE = 150
MAX_SUMMARY = 1000

# C0/C1 controls except tab and newline, and the bidi controls that can disguise text.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_SPACE = re.compile(r"\s+")


def _nl2br(value: str) -> markupsafe.Markup:
    """Escaped text with its line breaks kept (Outlook ignores `white-space: pre-wrap`)."""
    return markupsafe.Markup("<br>\n").join(markupsafe.escape(value).split("\n"))


_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("connector.notify", "templates"),
    autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=True),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_templates.filters["nl2br"] = _nl2br


@dataclass(frozen=True)
class Links:
    """The three buttons of a request email, each the reviewer's own signed link."""

    approve: str
    reject: str
    review: str


@dataclass(frozen=True)
class Row:
    """A name and a (possibly shortened) value, ready for both parts."""

    name: str
    text: str
    shortened: bool


def clean(value: str) -> str:
    """Text without control or bidi-override characters (newlines and tabs stay)."""
    return _UNSAFE.sub("", value.replace("\r\n", "\n").replace("\r", "\n"))


def one_line(value: str, limit: int) -> str:
    """Clean text folded onto one line and shortened to `limit` characters."""
    return shorten(_SPACE.sub(" ", clean(value)).strip(), limit)[0]


def shorten(text: str, limit: int, max_lines: int | None = None) -> tuple[str, bool]:
    """Text cut at `limit` characters (and `max_lines` lines), with an ellipsis when cut."""
    cut = False
    if max_lines is not None:
        lines = text.split("\n")
        if len(lines) > max_lines:
            text, cut = "\n".join(lines[:max_lines]), True
    if len(text) > limit:
        text, cut = text[: limit - 1].rstrip(), True
    return (text + "…" if cut else text), cut


def as_text(value: Any) -> str:
    """A value as a reviewer reads it: strings as they are, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _rows(values: dict[str, Any], limit: int) -> tuple[list[Row], int]:
    rows = []
    for name, value in list(values.items())[:limit]:
        text, cut = shorten(clean(as_text(value)).strip(), MAX_VALUE, MAX_LINES)
        rows.append(Row(name=one_line(str(name), 60), text=text, shortened=cut))
    return rows, max(0, len(values) - limit)


def in_words(seconds: float) -> str:
    """A time span as people say it: "in 23 hours", "in 1 hour 30 minutes", "in 3 days"."""
    if seconds < 60:
        return "in less than a minute" if seconds > 0 else "now"
    minutes = int(seconds // 60)
    hours, days = minutes // 60, minutes // 1440

    def unit(n: int, word: str) -> str:
        return f"{n} {word}" if n == 1 else f"{n} {word}s"

    if days >= 2:
        return f"in {unit(days, 'day')}"
    if hours >= 2:
        return f"in {unit(hours, 'hour')}"
    if hours == 1:
        rest = minutes - 60
        return f"in 1 hour {unit(rest, 'minute')}" if rest else "in 1 hour"
    return f"in {unit(minutes, 'minute')}"


def when(ts: float) -> str:
    """An absolute time, unambiguous for readers anywhere: "Wed 25 Nov 2026, 10:00 UTC"."""
    return datetime.fromtimestamp(ts, UTC).strftime("%a %d %b %Y, %H:%M UTC")


def message_id(run_id: str, reviewer_id: str, kind: str, domain: str) -> str:
    """A stable Message-ID per run, reviewer and kind, so a retried send keeps its identity and
    reminders can thread to the request. The address is hashed, not shown."""
    who = hashlib.sha256(reviewer_id.encode()).hexdigest()[:12]
    return f"<{run_id}.{who}.{kind}@{domain}>"


def subject_for(run: RunRecord) -> str:
    """`[Approval] <title>` on one line."""
    return f"[Approval] {one_line(str(run.doc['title']), MAX_TITLE)}"


# Quoted-printable keeps both parts readable in raw form (base64 text is a spam signal).
_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP


@dataclass(frozen=True)
class Draft:
    """A rendered email: its headers and both parts, as plain strings.

    The dev mailbox keeps the strings as they are; only SMTP needs the MIME form, built by
    `mime()` with the classic (compat32) email API, which is several times cheaper than the
    header-parsing `EmailMessage` on a path that runs once per reviewer per run.
    """

    sender: str
    to_name: str
    to_address: str
    subject: str
    date: str
    message_id: str
    thread: tuple[str, ...]
    text: str
    html: str

    def headers(self) -> dict[str, str]:
        """The headers as shown in the dev mailbox."""
        shown = {
            "From": self.sender,
            "To": formataddr((self.to_name, self.to_address)),
            "Date": self.date,
            "Message-ID": self.message_id,
        }
        if self.thread:
            shown["In-Reply-To"] = self.thread[-1]
            shown["References"] = " ".join(self.thread)
        return shown

    def mime(self) -> Message:
        """The multipart/alternative message for an SMTP server."""
        msg = MIMEMultipart("alternative")
        msg["From"] = self.sender
        msg["To"] = formataddr((self.to_name, self.to_address), charset="utf-8")
        msg["Subject"] = (
            self.subject if self.subject.isascii() else Header(self.subject, "utf-8").encode()
        )
        msg["Date"] = self.date
        msg["Message-ID"] = self.message_id
        if self.thread:
            msg["In-Reply-To"] = self.thread[-1]
            msg["References"] = " ".join(self.thread)
        # RFC 3834: an automatic message; asks auto-responders (and Outlook) not to answer it.
        msg["Auto-Submitted"] = "auto-generated"
        msg["X-Auto-Response-Suppress"] = "All"
        # MIMEText accepts a Charset (typeshed only says str); it carries the QP choice.
        msg.attach(MIMEText(self.text, "plain", _UTF8_QP))  # type: ignore[arg-type]
        msg.attach(MIMEText(self.html, "html", _UTF8_QP))  # type: ignore[arg-type]
        return msg


def _message(
    *,
    sender: str,
    reviewer: ReviewerConfig,
    subject: str,
    msg_id: str,
    now: float,
    text: str,
    html: str,
    thread: list[str],
) -> Draft:
    return Draft(
        sender=sender,
        to_name=one_line(reviewer.name or "", 80),
        to_address=reviewer.email or "",
        subject=subject,
        date=formatdate(now, usegmt=True),
        message_id=msg_id,
        thread=tuple(thread),
        text=text,
        html=html,
    )


def render_request(
    run: RunRecord,
    flow: FlowConfig,
    reviewer: ReviewerConfig,
    links: Links,
    *,
    sender: str,
    domain: str,
    now: float,
    reminder: bool = False,
) -> Draft:
    """The approval request (or its reminder) for one reviewer."""
    doc = run.doc
    fields, more_fields = _rows(doc.get("action") or {}, MAX_FIELDS)
    context, more_context = _rows(doc.get("context") or {}, MAX_CONTEXT)
    summary, _ = shorten(clean(str(doc.get("summary") or "")).strip(), MAX_SUMMARY, 12)
    values = {
        "reminder": reminder,
        "name": one_line(reviewer.display_name, 80),
        "title": one_line(str(doc["title"]), MAX_TITLE * 2),
        "summary": summary,
        "requested_by": one_line(str(doc.get("requested_by") or ""), 120),
        "flow": one_line(flow.title or run.flow, 120),
        "expires_words": in_words(run.deadline - now),
        "expires_at": when(run.deadline),
        "on_timeout": "approved" if doc.get("on_timeout") == "approve" else "rejected",
        "required": int(doc.get("required_approvals", 1)),
        "fields": fields,
        "more_fields": more_fields,
        "context": context,
        "more_context": more_context,
        "shortened": any(r.shortened for r in fields + context) or bool(more_fields + more_context),
        "links": links,
    }
    subject = subject_for(run)
    first = message_id(run.id, reviewer.id, "request", domain)
    expires = values["expires_words"]
    if reminder:
        subject = f"Re: {subject}"
        values["preheader"] = f"Reminder: still waiting for your decision, expires {expires}."
    else:
        values["preheader"] = summary.split("\n")[0] if summary else f"Expires {expires}."
    values["subject"] = subject
    return _message(
        sender=sender,
        reviewer=reviewer,
        subject=subject,
        msg_id=message_id(run.id, reviewer.id, "reminder", domain) if reminder else first,
        now=now,
        text=_templates.get_template("request.txt").render(values),
        html=_templates.get_template("request.html").render(values),
        thread=[first] if reminder else [],
    )


def outcome_line(decision: dict[str, Any]) -> str:
    """One sentence saying how the run ended: "Decided by Ann: approved with changes"."""
    word = str(decision.get("decision", "decided"))
    if decision.get("edited") and word == "approved":
        word = "approved with changes"
    reviewer = decision.get("reviewer") or {}
    by = decision.get("decided_by")
    if by == "timeout":
        return f"Timed out: {word} automatically, nobody decided before the deadline"
    if word == "cancelled":
        return "Cancelled by the workflow"
    if by == "policy":
        return f"Decided by a rule: {word}"
    if by == "api":
        return f"Decided through the API: {word}"
    who = one_line(str(reviewer.get("name") or reviewer.get("id") or "a reviewer"), 80)
    return f"Decided by {who}: {word}"


def render_outcome(
    run: RunRecord,
    reviewer: ReviewerConfig,
    *,
    sender: str,
    domain: str,
    now: float,
    reminded: bool,
) -> Draft:
    """The short "decided by X" note to a reviewer who did not decide, in the request's thread."""
    decision = run.decision or {}
    subject = f"Re: {subject_for(run)}"
    comment, _ = shorten(clean(str(decision.get("comment") or "")).strip(), MAX_SUMMARY, 12)
    values = {
        "subject": subject,
        "name": one_line(reviewer.display_name, 80),
        "title": one_line(str(run.doc["title"]), MAX_TITLE * 2),
        "outcome": outcome_line(decision),
        "decision": str(decision.get("decision", "")),
        "comment": comment,
        "decided_at": when(run.decided_at or now),
    }
    values["preheader"] = f"{values['outcome']}. Nothing more to do."
    thread = [message_id(run.id, reviewer.id, "request", domain)]
    if reminded:
        thread.append(message_id(run.id, reviewer.id, "reminder", domain))
    return _message(
        sender=sender,
        reviewer=reviewer,
        subject=subject,
        msg_id=message_id(run.id, reviewer.id, "outcome", domain),
        now=now,
        text=_templates.get_template("outcome.txt").render(values),
        html=_templates.get_template("outcome.html").render(values),
        thread=thread,
    )
