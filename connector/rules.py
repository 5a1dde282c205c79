"""Risk rules in CEL (common-expression-language): compiled once, evaluated per run.

We use the `common-expression-language` package (Rust core, maintained, full CEL with mixed
int/double comparisons such as `risk.confidence >= 0.9` against a JSON `1`). A rule that cannot
be evaluated for a run — a missing field, a type mismatch — simply does not match: it never
raises into the request and never auto-approves.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cel


class RuleSyntaxError(ValueError):
    """The rule is not valid CEL; the message carries the position."""


@dataclass(frozen=True)
class RuleResult:
    """Whether a rule matched, and why not when it could not be evaluated."""

    matched: bool
    error: str | None = None


class Rule:
    """One compiled CEL expression over `risk`, `action`, `context` and `metadata`."""

    def __init__(self, source: str) -> None:
        self.source = source
        try:
            self._program = cel.compile(source)
        except ValueError as exc:
            raise RuleSyntaxError(_short(str(exc))) from exc

    def evaluate(self, activation: dict[str, Any]) -> RuleResult:
        """True only when the expression yields exactly `true`."""
        try:
            value = self._program.execute(activation)
        except KeyError as exc:
            return RuleResult(False, f"missing field {exc}")
        except Exception as exc:
            return RuleResult(False, _short(f"{type(exc).__name__}: {exc}"))
        if value is True:
            return RuleResult(True)
        if value is False:
            return RuleResult(False)
        return RuleResult(False, f"rule gave {value!r}, not true or false")


def _short(message: str) -> str:
    lines = [line for line in message.splitlines() if line.strip()]
    return " ".join(lines[:1] + [line.strip() for line in lines[1:]])[:400]


@lru_cache(maxsize=256)
def compile_rule(source: str) -> Rule:
    """The compiled rule for this source text (compiled once per process)."""
    return Rule(source)
