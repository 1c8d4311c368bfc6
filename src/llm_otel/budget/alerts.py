"""A budget alert and the ways it travels: OTel log record, metric, Python logging, user callbacks.

The span event is added by the processor itself (on the call's open span); everything here runs on the
budget writer thread after the state file has confirmed that this process fired the threshold.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .. import semconv as sc
from .rules import PROJECTED

log = logging.getLogger("llm_otel.budget")

# Budget attributes beyond the ones in semconv (name, group, level, threshold, unit).
USED = "llm_otel.budget.used"
LIMIT = "llm_otel.budget.limit"
UTILIZATION = "llm_otel.budget.utilization"
FORECAST = "llm_otel.budget.forecast"
WINDOW_START = "llm_otel.budget.window.start"
WINDOW_END = "llm_otel.budget.window.end"
PERIOD = "llm_otel.budget.period"
ACTION = "llm_otel.budget.action"
PASSED = "llm_otel.budget.passed"

_SEVERITY = {"info": ("INFO", 9), "warning": ("WARN", 13), "critical": ("ERROR", 17)}


@dataclass(frozen=True, slots=True)
class BudgetAlert:
    """One fired threshold (or the window's projected overrun), as given to ``on_alert`` callbacks."""

    budget: str
    group: str
    threshold: str
    """The threshold as a string (``"0.8"``), or ``"projected"`` for the forecast alert."""
    level: str
    used: float
    limit: float
    unit: str
    utilization: float
    forecast: float | None
    window_start: datetime
    window_end: datetime
    period: str
    action: str
    fired_at: datetime
    passed: tuple[str, ...] = ()
    """Lower thresholds this call jumped past (usage was below them before it), marked as fired without alerts of
    their own; never one an earlier call reached. ``projected`` is among them when this call reached the limit."""
    trace_id: str | None = None
    span_id: str | None = None

    @property
    def projected(self) -> bool:
        return self.threshold == PROJECTED

    def attributes(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            sc.BUDGET_NAME: self.budget,
            sc.BUDGET_GROUP: self.group,
            sc.BUDGET_THRESHOLD: self.threshold,
            sc.BUDGET_LEVEL: self.level,
            sc.BUDGET_UNIT: self.unit,
            USED: self.used,
            LIMIT: self.limit,
            UTILIZATION: self.utilization,
            WINDOW_START: self.window_start.isoformat(),
            WINDOW_END: self.window_end.isoformat(),
            PERIOD: self.period,
            ACTION: self.action,
        }
        if self.forecast is not None:
            attrs[FORECAST] = self.forecast
        if self.passed:
            attrs[PASSED] = list(self.passed)
        return attrs

    def message(self) -> str:
        who = f"LLM budget {self.budget!r}" + (f" group {self.group!r}" if self.group else "")
        spec = ".0f" if self.unit == "tokens" else ".4f"
        amount = f"{self.used:{spec}} of {self.limit:{spec}} {self.unit}"
        window = f"{self.period} window {self.window_start.isoformat()} .. {self.window_end.isoformat()}"
        if self.projected:
            return f"{who}: projected to reach {self.forecast:{spec}} {self.unit} by the end of the {window} " \
                   f"({amount} used so far)"  # fmt: skip
        return f"{who}: {self.utilization:.0%} used ({amount}, threshold {self.threshold}) in the {window}"


Callback = Callable[[BudgetAlert], Any]


class Emitter:
    """Sends confirmed alerts everywhere; nothing here may raise into the caller."""

    def __init__(self, callbacks: Callback | Iterable[Callback] | None = None) -> None:
        if callbacks is None:
            self.callbacks: tuple[Callback, ...] = ()
        elif callable(callbacks):
            self.callbacks = (callbacks,)
        else:
            self.callbacks = tuple(callbacks)
        self._logger: Any = None
        self._alerts: Any = None
        self._complained: set[int] = set()

    def bind(self, runtime: Any) -> None:
        from ..providers import SCOPE, _version

        self._logger = runtime.providers.logger_provider.get_logger(SCOPE, _version(), schema_url=sc.SCHEMA_URL)
        self._alerts = runtime.instruments.budget_alerts

    def emit(self, alert: BudgetAlert) -> None:
        for step in (self._otel_log, self._metric, self._python_log, self._callbacks):
            try:
                step(alert)
            except Exception:
                log.debug("llm-otel: budget alert delivery step %s failed", step.__name__, exc_info=True)

    def _otel_log(self, alert: BudgetAlert) -> None:
        if self._logger is None:
            return
        text, number = _SEVERITY.get(alert.level, ("WARN", 13))
        from opentelemetry._logs import SeverityNumber

        kwargs: dict[str, Any] = {
            "timestamp": int(alert.fired_at.timestamp() * 1e9),
            "severity_text": text,
            "severity_number": SeverityNumber(number),
            "body": alert.message(),
            "attributes": alert.attributes(),
        }
        ctx = _call_context(alert.trace_id, alert.span_id)
        try:
            self._logger.emit(context=ctx, event_name=sc.BUDGET_ALERT_EVENT, **kwargs)
        except TypeError:  # opentelemetry-sdk before keyword emit(): build the record
            from opentelemetry._logs import LogRecord

            kwargs["attributes"] = {**kwargs["attributes"], "event.name": sc.BUDGET_ALERT_EVENT}
            ids = {"trace_id": int(alert.trace_id, 16), "span_id": int(alert.span_id, 16)} if ctx else {}
            self._logger.emit(LogRecord(**kwargs, **ids))

    def _metric(self, alert: BudgetAlert) -> None:
        if self._alerts is not None:
            self._alerts.add(1, {sc.BUDGET_NAME: alert.budget, sc.BUDGET_GROUP: alert.group,
                                 sc.BUDGET_UNIT: alert.unit, sc.BUDGET_LEVEL: alert.level,
                                 sc.BUDGET_THRESHOLD: alert.threshold})  # fmt: skip

    def _python_log(self, alert: BudgetAlert) -> None:
        log.warning("%s", alert.message())

    def _callbacks(self, alert: BudgetAlert) -> None:
        for cb in self.callbacks:
            try:
                cb(alert)
            except Exception:
                if id(cb) not in self._complained:
                    self._complained.add(id(cb))
                    log.warning("llm-otel: on_alert callback %r raised; ignored (the app is not affected)", cb,
                                exc_info=True)  # fmt: skip
                else:
                    log.debug("llm-otel: on_alert callback %r raised", cb, exc_info=True)


def _call_context(trace_id: str | None, span_id: str | None) -> Any:
    """A context whose current span is the call that crossed the threshold, so the log links to its trace."""
    if not trace_id or not span_id:
        return None
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    span_ctx = SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=False, trace_flags=TraceFlags(1))
    return trace.set_span_in_context(NonRecordingSpan(span_ctx))
