"""The one place that decides whether someone may record a decision on a run, and rule verdicts.

Every path a decision can arrive by (the review page, Telegram, the API, timeouts) calls
`check_decision` before the store's conditional update; nothing else grants permission.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .config import FlowConfig
from .errors import AlreadyDecided, EditNotAllowed, NotAllowedToDecide
from .rules import compile_rule
from .store import RunRecord

ActorKind = Literal["reviewer", "api", "operator", "timeout", "policy", "system"]
Choice = Literal["approve", "reject", "cancel"]


@dataclass(frozen=True)
class Actor:
    """Who is trying to decide, and through which channel.

    `reviewer`: a person through their signed link or Telegram account; `api`: a program with an
    API key, naming a reviewer of the flow; `operator`: an operator key, may name anyone;
    `timeout`, `policy`, `system` (cancel): the connector itself.
    """

    kind: ActorKind
    id: str | None = None
    name: str | None = None
    channel: str = "web"


@dataclass(frozen=True)
class RuleVerdict:
    """What the flow's rules say about a new run."""

    rule: str | None
    mode: str
    would_approve: bool
    review_forced: bool = False
    error: str | None = None

    @property
    def auto_approve(self) -> bool:
        """Approve at once, without people (enforce mode only)."""
        return self.mode == "enforce" and self.would_approve

    def as_doc(self) -> dict[str, Any]:
        """Kept with the run: the evidence for shadow-mode statistics."""
        return {
            "rule": self.rule,
            "mode": self.mode,
            "would_approve": self.would_approve,
            "review_forced": self.review_forced,
            "error": self.error,
        }


def evaluate_rules(flow: FlowConfig, doc: dict[str, Any]) -> RuleVerdict | None:
    """Run `auto_approve` and `require_review` over the run; None when the flow has no rule."""
    if flow.auto_approve is None:
        return None
    activation = {
        "risk": doc.get("risk") or {},
        "action": doc.get("action") or {},
        "context": doc.get("context") or {},
        "metadata": doc.get("metadata") or {},
    }
    approve = compile_rule(flow.auto_approve).evaluate(activation)
    forced = False
    error = approve.error
    if approve.matched and flow.require_review is not None:
        review = compile_rule(flow.require_review).evaluate(activation)
        # A require_review rule that cannot be evaluated errs on the side of review.
        forced = review.matched or review.error is not None
        error = error or review.error
    return RuleVerdict(
        rule=flow.auto_approve,
        mode=flow.auto_approve_mode,
        would_approve=approve.matched and not forced,
        review_forced=forced,
        error=error,
    )


def already_decided(run: RunRecord) -> AlreadyDecided:
    """The 409 that tells a late clicker who decided and when."""
    decision = run.decision or {}
    reviewer = decision.get("reviewer") or {}
    who = reviewer.get("name") or reviewer.get("id") or decision.get("decided_by") or "someone"
    message = f"already decided: {decision.get('decision', run.status)} by {who}"
    if decision.get("decided_at"):
        message += f" at {decision['decided_at']}"
    return AlreadyDecided(message, details={"status": run.status, "decision": run.decision})


def _may_review(run: RunRecord, flow: FlowConfig | None, reviewer_id: str | None) -> bool:
    if flow is None or not reviewer_id:
        return False
    if flow.is_primary_reviewer(reviewer_id):
        return True
    return flow.is_escalation_reviewer(reviewer_id) and run.escalated_at is not None


def _same_person(a: str | None, b: str | None) -> bool:
    return bool(a and b) and a.strip().lower() == b.strip().lower()  # type: ignore[union-attr]


def check_decision(
    run: RunRecord,
    flow: FlowConfig | None,
    actor: Actor,
    choice: Choice,
    *,
    edits: dict[str, Any] | None = None,
) -> None:
    """Raise unless `actor` may make `choice` on `run` now, with these edits to its action."""
    if run.status != "pending":
        raise already_decided(run)
    if choice == "cancel":
        if actor.kind not in ("api", "operator", "system"):
            raise NotAllowedToDecide("only the API can cancel a run")
        return
    if actor.kind in ("reviewer", "api") and not _may_review(run, flow, actor.id):
        raise NotAllowedToDecide(
            "you are not a reviewer of this flow"
            if actor.kind == "reviewer"
            else f"{actor.id!r} is not a reviewer of flow {run.flow!r}; use an operator key"
        )
    self_approval = flow.self_approval if flow is not None else False
    if (
        actor.kind in ("reviewer", "api", "operator")
        and not self_approval
        and _same_person(actor.id, run.doc.get("requested_by"))
    ):
        raise NotAllowedToDecide("you asked for this action, so someone else must decide it")
    if edits:
        if int(run.doc.get("required_approvals", 1)) > 1:
            raise EditNotAllowed("edits are not possible when several approvals are required")
        editable = set(run.doc.get("editable") or [])
        refused = sorted(set(edits) - editable)
        if refused:
            raise EditNotAllowed(
                f"these fields may not be edited: {', '.join(refused)}",
                details={"fields": refused},
            )
