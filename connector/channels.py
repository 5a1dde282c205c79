"""The extension point for everything that reacts to a run: email, Telegram, Zapier hooks…

A channel contributes durable jobs when a run is paused and when it is decided; the service writes
those jobs in the same transaction as the run or decision, so no notification is ever lost, and
the job runner executes them through the channel's handlers.
"""

from __future__ import annotations

from typing import Protocol

from .config import FlowConfig, ReviewerConfig
from .jobs import Handler
from .store import NewJob, RunRecord


class Channel(Protocol):
    """Something that turns run events into durable jobs and knows how to run them."""

    def handlers(self) -> dict[str, Handler]:
        """Job kind → handler, registered with the job runner."""
        ...

    def on_pause(self, run: RunRecord, flow: FlowConfig) -> list[NewJob]:
        """Jobs to queue when a run is created and waits for people."""
        ...

    def on_decision(self, run: RunRecord, flow: FlowConfig | None) -> list[NewJob]:
        """Jobs to queue when a run is decided (`run.decision` is already set)."""
        ...

    def on_escalation(
        self, run: RunRecord, flow: FlowConfig, reviewers: list[ReviewerConfig]
    ) -> list[NewJob]:
        """Jobs to queue when nobody decided in time and `reviewers` are brought in."""
        ...
