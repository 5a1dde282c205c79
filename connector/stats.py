"""Flow statistics: the evidence for moving a flow from "review everything" to exceptions.

The strongest evidence is shadow mode: the rule is evaluated on every run but people still
decide, so we can count how often people approved, unchanged, what the rule would have approved.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel

from .config import FlowConfig
from .store import FlowCounts

READY_MIN_SHADOW = 200
READY_AGREEMENT = 0.98


class TimeToDecision(BaseModel):
    """Seconds from pause to a person's decision."""

    median: float | None
    p90: float | None


class ShadowStats(BaseModel):
    """How the flow's rule did in shadow mode, judged by what people decided."""

    decided_by_people: int
    would_approve: int
    agreed: int
    agreement_rate: float | None


class FlowStats(BaseModel):
    """GET /v1/flows/{flow}/stats."""

    flow: str
    since: str | None
    runs: int
    pending: int
    decisions: dict[str, int]
    decided_by: dict[str, int]
    approved_unchanged_rate: float | None
    edit_rate: float | None
    reject_rate: float | None
    timeout_rate: float | None
    time_to_decision: TimeToDecision
    shadow: ShadowStats
    recommendation: str


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return round(sorted_values[rank - 1], 3)


def recommend(flow: FlowConfig, counts: FlowCounts) -> str:
    """One line telling the operator what the evidence supports."""
    shadow_n, agreed = counts.shadow_would_approve, counts.shadow_agreed
    if flow.auto_approve and flow.auto_approve_mode == "shadow":
        if shadow_n >= READY_MIN_SHADOW and agreed / shadow_n >= READY_AGREEMENT:
            return (
                f"ready to enforce: people approved unchanged {agreed / shadow_n:.1%} of the"
                f" {shadow_n} runs the rule would have approved;"
                ' set auto_approve_mode = "enforce"'
            )
        if shadow_n >= 50 and agreed / shadow_n < 0.9:
            return (
                f"keep reviewing: people agreed with the rule on only {agreed / shadow_n:.1%}"
                f" of {shadow_n} runs; tighten auto_approve"
            )
        return (
            f"collecting evidence: {shadow_n} of {READY_MIN_SHADOW} shadow decisions"
            " needed before a recommendation"
        )
    if flow.auto_approve and flow.auto_approve_mode == "enforce":
        return "enforcing: the rule approves matching runs; people review the rest"
    human, unchanged = counts.human_decisions, counts.human_approved_unchanged
    if human >= READY_MIN_SHADOW and unchanged / human >= READY_AGREEMENT:
        return (
            f"people approve {unchanged / human:.1%} of runs unchanged: write an auto_approve"
            ' rule and try it with auto_approve_mode = "shadow"'
        )
    return "reviewing everything: add an auto_approve rule in shadow mode to gather evidence"


def flow_stats(name: str, flow: FlowConfig, counts: FlowCounts, since: str | None) -> FlowStats:
    """Turn raw counts into rates, percentiles and a recommendation."""
    human = counts.human_decisions
    decided = counts.runs - counts.pending
    seconds = counts.decision_seconds
    by_status: dict[str, Any] = {
        k: counts.by_status.get(k, 0) for k in ("approved", "rejected", "cancelled")
    }
    return FlowStats(
        flow=name,
        since=since,
        runs=counts.runs,
        pending=counts.pending,
        decisions=by_status,
        decided_by={
            k: counts.by_decided_by.get(k, 0) for k in ("reviewer", "api", "policy", "timeout")
        },
        approved_unchanged_rate=_rate(counts.human_approved_unchanged, human),
        edit_rate=_rate(counts.human_edited, human),
        reject_rate=_rate(counts.human_rejected, human),
        timeout_rate=_rate(counts.by_decided_by.get("timeout", 0), decided),
        time_to_decision=TimeToDecision(
            median=percentile(seconds, 0.5), p90=percentile(seconds, 0.9)
        ),
        shadow=ShadowStats(
            decided_by_people=counts.shadow_decided,
            would_approve=counts.shadow_would_approve,
            agreed=counts.shadow_agreed,
            agreement_rate=_rate(counts.shadow_agreed, counts.shadow_would_approve),
        ),
        recommendation=recommend(flow, counts),
    )
