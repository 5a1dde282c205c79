"""The reviewer's page: GET shows (never changes anything), POST with a pressed button decides."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..config import ReviewerConfig
from ..errors import AlreadyDecided, ConnectorError, EditNotAllowed, LinkInvalid
from ..links import LinkClaims
from ..models import iso
from ..policy import Actor
from ..store import RunRecord
from .keys import service_key
from .templates import render

_CHOICES = ("approve", "reject")
_LONG_TEXT = 80


@dataclass
class Field:
    """One row of the action table."""

    name: str
    value: Any
    text: str
    editable: bool
    multiline: bool
    is_json: bool

    @property
    def rows(self) -> int:
        """A textarea tall enough for the value on a phone, within reason."""
        return min(12, max(3, self.text.count("\n") + 1 + len(self.text) // 40))


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False)


def action_fields(run: RunRecord) -> list[Field]:
    """The action's fields in order, with the editable ones (even if absent) marked."""
    action: dict[str, Any] = run.doc["action"]
    editable = list(run.doc.get("editable") or [])
    names = list(action) + [name for name in editable if name not in action]
    fields = []
    for name in names:
        value = action.get(name, "")
        text = _as_text(value)
        fields.append(
            Field(
                name=name,
                value=value,
                text=text,
                editable=name in editable,
                multiline="\n" in text or len(text) > _LONG_TEXT,
                is_json=not isinstance(value, str),
            )
        )
    return fields


def parse_edits(run: RunRecord, form: dict[str, str]) -> dict[str, Any]:
    """The fields the reviewer changed; refuses fields that are not editable."""
    posted = {key[6:]: value for key, value in form.items() if key.startswith("field.")}
    editable = set(run.doc.get("editable") or [])
    refused = sorted(set(posted) - editable)
    if refused:
        raise EditNotAllowed(f"these fields may not be edited: {', '.join(refused)}")
    action = run.doc["action"]
    edits: dict[str, Any] = {}
    for name, raw in posted.items():
        raw = raw.replace("\r\n", "\n")
        original = action.get(name)
        if original is None and raw == "":
            continue
        if isinstance(original, str) or original is None:
            new: Any = raw
        else:
            try:
                new = json.loads(raw)
            except ValueError as exc:
                raise EditNotAllowed(f"{name} must stay valid JSON: {exc}") from exc
        if new != original:
            edits[name] = new
    return edits


async def _load(request: web.Request) -> tuple[LinkClaims, RunRecord, ReviewerConfig | None]:
    service = request.app[service_key]
    claims = service.signer.verify(request.match_info["token"])
    run = await service.store.get_run(claims.run_id)
    if run is None:
        raise LinkInvalid()
    flow = service.settings.flows.get(run.flow)
    reviewer = flow.reviewer(claims.reviewer_id) if flow else None
    return claims, run, reviewer


def _page(
    request: web.Request,
    run: RunRecord,
    reviewer: ReviewerConfig | None,
    *,
    choice: str | None = None,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
    form: dict[str, str] | None = None,
    approvals: list[str] | None = None,
) -> web.Response:
    fields = action_fields(run)
    if form:
        for field in fields:
            if field.editable and f"field.{field.name}" in form:
                field.text = form[f"field.{field.name}"]
    return render(
        request,
        "review.html",
        status=status,
        run=run,
        doc=run.doc,
        fields=fields,
        reviewer=reviewer,
        choice=choice,
        notice=notice,
        error=error,
        comment=(form or {}).get("comment", ""),
        deadline=iso(run.deadline),
        created=iso(run.created_at),
        context_text={k: _as_text(v) for k, v in (run.doc.get("context") or {}).items()},
        required=int(run.doc.get("required_approvals", 1)),
        approvals=approvals or [],
    )


def _decided_page(request: web.Request, run: RunRecord, *, status: int = 200) -> web.Response:
    return render(request, "decided.html", status=status, run=run, decision=run.decision or {})


async def show(request: web.Request) -> web.Response:
    """GET/HEAD /r/{token}: the review page. Records only a `viewed` audit line on GET."""
    claims, run, reviewer = await _load(request)
    if run.status != "pending":
        return _decided_page(request, run)
    if request.method == "GET":
        await request.app[service_key].store.add_event(
            run.id, "viewed", {"reviewer": claims.reviewer_id, "channel": claims.channel}
        )
    choice = request.query.get("choice")
    return _page(
        request,
        run,
        reviewer,
        choice=choice if choice in _CHOICES else None,
        approvals=await _approvals(request, run),
    )


async def _approvals(request: web.Request, run: RunRecord) -> list[str]:
    if int(run.doc.get("required_approvals", 1)) <= 1:
        return []
    return await request.app[service_key].store.approvals(run.id)


async def submit(request: web.Request) -> web.Response:
    """POST /r/{token}: decide, but only when a choice button was pressed."""
    claims, run, reviewer = await _load(request)
    if run.status != "pending":
        return _decided_page(request, run, status=409)
    form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    choice = form.get("choice")
    if choice not in _CHOICES:
        # A scanner or an accidental submit: nothing is recorded without a pressed button.
        return _page(
            request,
            run,
            reviewer,
            form=form,
            notice="Nothing was recorded. Press Approve or Reject to decide.",
        )
    service = request.app[service_key]
    actor = Actor(
        "reviewer",
        id=claims.reviewer_id,
        name=reviewer.display_name if reviewer else claims.reviewer_id,
        channel=claims.channel,
    )
    try:
        edits = parse_edits(run, form) if choice == "approve" else {}
        decided = await service.decide(
            run.id,
            actor,
            approve=choice == "approve",
            edits=edits,
            comment=(form.get("comment") or "").strip() or None,
        )
    except AlreadyDecided:
        return _decided_page(request, await service.record(run.id), status=409)
    except ConnectorError as exc:
        return _page(
            request,
            run,
            reviewer,
            form=form,
            error=exc.message,
            status=exc.status,
            approvals=await _approvals(request, run),
        )
    if decided.status == "pending":
        return render(
            request,
            "counted.html",
            run=decided,
            approvals=await _approvals(request, decided),
            required=int(decided.doc.get("required_approvals", 1)),
        )
    return render(request, "result.html", run=decided, decision=decided.decision or {})
