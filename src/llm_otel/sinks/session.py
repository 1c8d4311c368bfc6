"""Cumulative usage of this process, per provider and model: ``llm_otel.session_usage()``."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from ..core.result import CallResult


@dataclass
class ModelTotals:
    """Totals for one (provider, model)."""

    calls: int = 0
    errors: int = 0
    tokens: dict[str, int] = field(default_factory=dict)
    cost_usd: float = 0.0
    unpriced_calls: int = 0
    throttle_wait_s: float = 0.0
    retries: int = 0


class SessionTotals:
    """The session-totals sink: a thread-safe accumulator fed by every finished call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals: dict[tuple[str, str], ModelTotals] = {}

    def on_usage(self, rec: CallResult) -> None:
        key = (rec.provider, rec.response_model or rec.request_model or "unknown")
        counts = rec.usage.by_type() if rec.usage is not None else {}
        with self._lock:
            totals = self._totals.get(key)
            if totals is None:
                totals = self._totals[key] = ModelTotals()
            totals.calls += 1
            if rec.error_type:
                totals.errors += 1
            tokens = totals.tokens
            for kind, n in counts.items():
                tokens[kind] = tokens.get(kind, 0) + n
            if rec.cost_usd is not None:
                totals.cost_usd += rec.cost_usd
            elif rec.usage_complete:
                totals.unpriced_calls += 1
            totals.throttle_wait_s += rec.throttle_wait_s
            totals.retries += rec.retries

    def snapshot(self) -> dict[tuple[str, str], ModelTotals]:
        """A deep copy keyed by (provider, model)."""
        with self._lock:
            return {
                k: ModelTotals(
                    v.calls, v.errors, dict(v.tokens), v.cost_usd, v.unpriced_calls, v.throttle_wait_s, v.retries
                )
                for k, v in self._totals.items()
            }

    def clear(self) -> None:
        with self._lock:
            self._totals.clear()
