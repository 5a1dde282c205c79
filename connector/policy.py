"""The one place that decides whether someone may record a decision on a run.

Every path a decision can arrive by (the review page, the API, Telegram, timeouts) calls
`check_decision` before the store's conditional update; nothing else grants permission.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .config import FlowConfig
from .errors import AlreadyDecided, EditNotAllowed, NotAllowedToDecide
from .store import RunRecord

ActorKind = Literal["reviewer", "api", "timeout", "policy"]


@dataclass(frozen=True)
class Actor:
    """Who is trying to decide, and through which channel."""

    kind: ActorKind
    id: str | None = None
    name: str | None = None
    channel: str = "web"


def already_decided(run: RunRecord) -> AlreadyDecided:
    """The 409 that tells a late clicker who decided and when."""
    decision = run.decision or {}
    reviewer = decision.get("reviewer") or {}
    who = reviewer.get("name") or reviewer.get("id") or decision.get("decided_by") or "someone"
    message = f"already decided: {decision.get('decision', run.status)} by {who}"
    if decision.get("decided_at"):
        message += f" at {decision['decided_at']}"
    return AlreadyDecided(message, details={"status": run.status, "decision": run.decision})


def check_decision(
    run: RunRecord,
    flow: FlowConfig | None,
    actor: Actor,
    *,
    edits: dict[str, Any] | None = None,
) -> None:
    """Raise unless `actor` may decide `run` now, with these edits to its action."""
    if run.status != "pending":
        raise already_decided(run)
    is_reviewer = flow is not None and actor.id is not None and flow.reviewer(actor.id)
    if actor.kind == "reviewer" and not is_reviewer:
        raise NotAllowedToDecide("you are not a reviewer of this flow")
    if edits:
        editable = set(run.doc.get("editable") or [])
        refused = sorted(set(edits) - editable)
        if refused:
            raise EditNotAllowed(
                f"these fields may not be edited: {', '.join(refused)}",
                details={"fields": refused},
            )
