"""In-memory OpenTelemetry capture for tests: what llm-otel emitted, as plain Python values."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llm_otel
from llm_otel.sinks import ledger


@dataclass
class Point:
    name: str
    attributes: dict[str, Any]
    value: Any  # sum / gauge value, or a histogram point's sum
    count: int | None = None  # histogram points only
    bucket_bounds: tuple[float, ...] | None = None


class Capture:
    """Instruments llm-otel with in-memory exporters; read back spans, metric points and ledger rows."""

    def __init__(self, ledger_path: Path | None, **instrument_kwargs: Any) -> None:
        self.span_exporter = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.span_exporter))
        self.metric_reader = InMemoryMetricReader()
        self.log_exporter = InMemoryLogRecordExporter()
        logger_provider = LoggerProvider()
        logger_provider.add_log_record_processor(SimpleLogRecordProcessor(self.log_exporter))
        self.ledger_path = ledger_path
        self.runtime = llm_otel.instrument(
            ledger=str(ledger_path) if ledger_path else False,
            tracer_provider=tracer_provider,
            meter_provider=MeterProvider(metric_readers=[self.metric_reader]),
            logger_provider=logger_provider,
            **instrument_kwargs,
        )

    def close(self) -> None:
        llm_otel.uninstrument()

    # spans
    def spans(self) -> list[ReadableSpan]:
        return [s for s in self.span_exporter.get_finished_spans() if s.instrumentation_scope.name == "llm_otel"]

    def span(self) -> ReadableSpan:
        spans = self.spans()
        assert len(spans) == 1, f"expected exactly one span, got {[s.name for s in spans]}"
        return spans[0]

    # metrics
    def points(self, name: str, **attrs: Any) -> list[Point]:
        out: list[Point] = []
        data = self.metric_reader.get_metrics_data()
        for rm in data.resource_metrics if data else []:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name != name:
                        continue
                    for dp in metric.data.data_points:
                        a = dict(dp.attributes)
                        if any(a.get(k) != v for k, v in attrs.items()):
                            continue
                        if hasattr(dp, "bucket_counts"):
                            out.append(Point(name, a, dp.sum, dp.count, tuple(dp.explicit_bounds)))
                        else:
                            out.append(Point(name, a, dp.value))
        return out

    def total(self, name: str, **attrs: Any) -> float:
        """Sum of counter values (or histogram sums) over matching points."""
        return sum(p.value for p in self.points(name, **attrs))

    def count(self, name: str, **attrs: Any) -> int:
        """Sum of histogram counts over matching points."""
        return sum(p.count or 0 for p in self.points(name, **attrs))

    # logs
    def logs(self) -> list[Any]:
        return list(self.log_exporter.get_finished_logs())

    # ledger
    def ledger_rows(self) -> list[dict[str, Any]]:
        llm_otel.flush()
        assert self.ledger_path is not None
        return ledger.read_rows(self.ledger_path)
