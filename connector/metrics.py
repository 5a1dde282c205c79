"""Process counters for `GET /metrics` (Prometheus text format). Gauges come from the store."""

from __future__ import annotations

from collections import Counter


class Metrics:
    """Monotonic counters kept in memory; labels are a sorted tuple of (name, value)."""

    def __init__(self) -> None:
        self._counters: dict[str, Counter[tuple[tuple[str, str], ...]]] = {}
        self._help: dict[str, str] = {}

    def inc(self, name: str, help_text: str, **labels: str) -> None:
        """Add one to counter `name` with these labels."""
        self._help.setdefault(name, help_text)
        self._counters.setdefault(name, Counter())[tuple(sorted(labels.items()))] += 1

    def render(
        self, gauges: dict[str, tuple[str, dict[tuple[tuple[str, str], ...], float]]]
    ) -> str:
        """Counters plus the given gauges, in the Prometheus exposition format."""
        lines: list[str] = []
        for name, counter in sorted(self._counters.items()):
            lines += [f"# HELP {name} {self._help[name]}", f"# TYPE {name} counter"]
            lines += [f"{name}{_labels(key)} {value}" for key, value in sorted(counter.items())]
        for name, (help_text, values) in sorted(gauges.items()):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
            lines += [f"{name}{_labels(key)} {value:g}" for key, value in sorted(values.items())]
        return "\n".join(lines) + "\n"


def _labels(key: tuple[tuple[str, str], ...]) -> str:
    if not key:
        return ""
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in key)
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
