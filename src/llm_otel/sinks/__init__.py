"""Sinks: each consumes a finished call's ``CallResult`` and emits one signal.

``span`` (attributes, status, end), ``metrics`` (per-call points and in-process aggregates), ``ledger``
(SQLite rows through the background ``writer``), ``session`` (this process's totals). Budgets
(``llm_otel.budget``) and your own processors plug in through the same interface.
"""

from __future__ import annotations

from typing import Protocol

from ..core.result import CallInfo, CallResult


class UsageProcessor(Protocol):
    """The sink interface, open to your own processors: ``instrument(processors=[...])``.

    ``on_usage`` receives every finished call's result (the span is still open: add events, do not end it);
    if it raises, the error is logged once and the app is not affected. An optional ``before_call`` may
    raise ``CallBlocked`` to stop a call before its request is sent (budgets); an optional ``bind(runtime)``
    is called once with the runtime (providers, instruments).
    """

    def before_call(self, info: CallInfo) -> None: ...

    def on_usage(self, record: CallResult) -> None: ...
