"""Cumulative usage of this process, per provider and model: ``llm_otel.session_usage()``."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

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
    """The session-totals sink: a thread-safe accumulator fed by every finished call.

    A call costs one append; totals are folded in when they are read (``snapshot``) or when
    ``_FOLD_AT`` calls wait."""

    _FOLD_AT = 1_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals: dict[tuple[str, str], ModelTotals] = {}
        # Values only (no span or exception kept alive): provider, model, usage, cost, usage complete, error,
        # throttle wait, retries.
        self._pending: list[tuple[Any, ...]] = []

    def on_usage(self, rec: CallResult) -> None:
        item = (rec.provider, rec.response_model or rec.request_model or "unknown", rec.usage, rec.cost_usd,
                rec.usage_complete, rec.error_type is not None, rec.throttle_wait_s, rec.retries)  # fmt: skip
        with self._lock:
            pending = self._pending
            pending.append(item)
            if len(pending) >= self._FOLD_AT:
                self._fold()

    def _fold(self) -> None:
        """Add the waiting calls to the totals (under ``self._lock``)."""
        pending, self._pending = self._pending, []
        all_totals = self._totals
        for provider, model, usage, cost, complete, failed, throttle_wait, retries in pending:
            totals = all_totals.get((provider, model))
            if totals is None:
                totals = all_totals[(provider, model)] = ModelTotals()
            totals.calls += 1
            if failed:
                totals.errors += 1
            if usage is not None:
                tokens = totals.tokens
                for kind, n in usage.by_type().items():
                    tokens[kind] = tokens.get(kind, 0) + n
            if cost is not None:
                totals.cost_usd += cost
            elif complete:
                totals.unpriced_calls += 1
            totals.throttle_wait_s += throttle_wait
            totals.retries += retries

    def snapshot(self) -> dict[tuple[str, str], ModelTotals]:
        """A deep copy keyed by (provider, model)."""
        with self._lock:
            self._fold()
            return {
                k: ModelTotals(
                    v.calls, v.errors, dict(v.tokens), v.cost_usd, v.unpriced_calls, v.throttle_wait_s, v.retries
                )
                for k, v in self._totals.items()
            }

    def clear(self) -> None:
        with self._lock:
            self._totals.clear()
            self._pending.clear()
