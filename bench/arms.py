"""The arms: shared OpenTelemetry SDK providers, and how each arm is switched on and off.

``instrument()`` of llm-otel and of the official instrumentor patch SDK classes process-wide, so an arm is
switched on at the start of each of its blocks and off at the end, outside the timed window. llm_otel and
the official instrumentation are imported lazily: the memory subprocess of another arm never loads them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

try:  # opentelemetry-sdk >= 1.39 names
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter as InMemoryLogs
    from opentelemetry.sdk._logs.export import LogRecordExporter as _LogExporter
    from opentelemetry.sdk._logs.export import LogRecordExportResult as _LogResult
except ImportError:  # pragma: no cover - older SDKs
    from opentelemetry.sdk._logs.export import InMemoryLogExporter as InMemoryLogs  # type: ignore[no-redef]
    from opentelemetry.sdk._logs.export import LogExporter as _LogExporter  # type: ignore[no-redef]
    from opentelemetry.sdk._logs.export import LogExportResult as _LogResult  # type: ignore[no-redef]

ARMS = ("none", "floor", "official", "llm-otel", "llm-otel+10 budgets")
BIG = 1e12  # budget limits nothing reaches: alerts are rare events, not per-call cost
BUDGETS: list[dict[str, Any]] = [
    {"name": "all-usd-daily", "limit": BIG, "period": "daily"},
    {"name": "openai-monthly", "limit": BIG, "period": "monthly", "timezone": "Europe/Berlin",
     "scope": {"provider": "openai"}},
    {"name": "tokens-weekly", "limit": BIG, "unit": "tokens", "period": "weekly"},
    {"name": "tenant-tokens", "limit": BIG, "unit": "tokens", "period": "daily", "group_by": "tenant"},
    {"name": "tokens-hourly", "limit": BIG, "unit": "tokens", "period": "1h"},
    {"name": "4o-family", "limit": BIG, "period": "daily", "scope": {"model": ["gpt-4o*", "o3*"]}},
    {"name": "openai-hard-cap", "limit": BIG, "unit": "tokens", "period": "daily", "action": "block",
     "scope": {"provider": "openai"}},
    {"name": "job-chat-monthly", "limit": BIG, "period": "monthly", "group_by": "job",
     "scope": {"operation": "chat"}},
    {"name": "tenant-30m-cap", "limit": BIG, "period": "30m", "group_by": "tenant", "action": "block"},
    {"name": "claude-weekly", "limit": BIG, "period": "weekly",
     "scope": {"provider": "anthropic", "model": "claude-*"}},
]  # fmt: skip


class DropSpans(SpanExporter):
    """Receives every ended span (through SimpleSpanProcessor) and drops it."""

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


class DropLogs(_LogExporter):  # type: ignore[misc, valid-type]
    """Receives every emitted log record and drops it."""

    def export(self, batch: Sequence[Any]) -> Any:
        return _LogResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def shutdown(self) -> None:
        pass


@dataclass
class Telemetry:
    """One set of SDK providers, shared by every arm."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    logger_provider: LoggerProvider
    reader: InMemoryMetricReader
    spans: Any
    logs: Any

    @classmethod
    def create(cls, in_memory: bool = False) -> Telemetry:
        """Spans and log records are dropped (or kept in memory, for the sanity check)."""
        spans = InMemorySpanExporter() if in_memory else DropSpans()
        logs = InMemoryLogs() if in_memory else DropLogs()
        tp = TracerProvider()
        tp.add_span_processor(SimpleSpanProcessor(spans))
        lp = LoggerProvider()
        lp.add_log_record_processor(SimpleLogRecordProcessor(logs))
        reader = InMemoryMetricReader()
        return cls(tp, MeterProvider(metric_readers=[reader]), lp, reader, spans, logs)

    def kwargs(self) -> dict[str, Any]:
        return {
            "tracer_provider": self.tracer_provider,
            "meter_provider": self.meter_provider,
            "logger_provider": self.logger_provider,
        }

    def force_flush(self) -> None:
        """What a non-llm-otel arm does after its block (llm_otel.flush() does the same plus its writers)."""
        for provider in (self.tracer_provider, self.meter_provider, self.logger_provider):
            provider.force_flush()

    def shutdown(self) -> None:
        for provider in (self.tracer_provider, self.meter_provider, self.logger_provider):
            provider.shutdown()


@dataclass
class Arm:
    """How to switch an arm on and off, and what it runs after each block (inside the CPU window)."""

    name: str
    telemetry: Telemetry
    uses_floor: bool = False
    on: Callable[[], Any] = lambda: None
    off: Callable[[], Any] = lambda: None
    flush: Callable[[], Any] = lambda: None
    info: dict[str, Any] = field(default_factory=dict)


def official_arm(telemetry: Telemetry) -> Arm:
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    inst = OpenAIInstrumentor()
    return Arm(
        "official",
        telemetry,
        on=lambda: inst.instrument(**telemetry.kwargs()),
        off=inst.uninstrument,
        flush=telemetry.force_flush,
    )


def llm_otel_arm(telemetry: Telemetry, ledger: Path, budgets: bool = False, budget_state: Path | None = None,
                 lean: bool = False) -> Arm:  # fmt: skip
    """``llm_otel.instrument(...)`` with defaults, the ledger on (a temporary file), optionally 10 budgets, or
    ``lean``: ``detail_histograms=False``."""
    import llm_otel

    extra: dict[str, Any] = {}
    if budgets:
        extra = {"budgets": BUDGETS, "budget_state": str(budget_state) if budget_state else False}
    if lean:
        extra["detail_histograms"] = False

    def on() -> None:
        llm_otel.instrument(ledger=str(ledger), **telemetry.kwargs(), **extra)

    return Arm(
        "llm-otel+10 budgets" if budgets else "llm-otel-lean" if lean else "llm-otel",
        telemetry,
        on=on,
        off=llm_otel.uninstrument,
        flush=llm_otel.flush,
    )


def make_arm(name: str, telemetry: Telemetry, tmp: Path) -> Arm:
    """Build an arm by name; llm-otel arms write their ledger (and budget state) under ``tmp``."""
    if name == "none":
        return Arm(name, telemetry, flush=telemetry.force_flush)
    if name == "floor":
        return Arm(name, telemetry, uses_floor=True, flush=telemetry.force_flush)
    if name == "official":
        return official_arm(telemetry)
    if name == "llm-otel":
        return llm_otel_arm(telemetry, tmp / "ledger.sqlite3")
    if name == "llm-otel-lean":
        return llm_otel_arm(telemetry, tmp / "ledger-lean.sqlite3", lean=True)
    if name == "llm-otel+10 budgets":
        return llm_otel_arm(telemetry, tmp / "ledger-budgets.sqlite3", True, tmp / "budgets.sqlite3")
    raise ValueError(f"unknown arm {name!r}")
