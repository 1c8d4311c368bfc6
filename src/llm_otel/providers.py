"""OpenTelemetry providers: reuse the app's, else create our own (exporting over OTLP when configured)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from opentelemetry import _logs, metrics, trace

from .config import Settings

log = logging.getLogger(__name__)
SCOPE = "llm_otel"
_SIGNALS = ("TRACES", "METRICS", "LOGS")


def _version() -> str:
    from . import __version__

    return __version__


@dataclass
class Providers:
    tracer_provider: Any
    meter_provider: Any
    logger_provider: Any
    owned: tuple[Any, ...] = ()  # the ones llm-otel created (and so shuts down); the app's are left alone

    def shutdown(self) -> None:
        for provider in self.owned:
            try:
                provider.shutdown()
            except Exception:
                log.debug("provider shutdown failed", exc_info=True)


def _is_sdk(provider: Any, api_proxy_types: tuple[type, ...]) -> bool:
    return provider is not None and not isinstance(provider, api_proxy_types)


def setup_providers(
    settings: Settings,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    logger_provider: Any = None,
) -> Providers:
    """Use the providers passed in or already set globally; otherwise create SDK providers.

    Our own providers export over OTLP/HTTP when an endpoint is configured (cumulative temporality, which
    Prometheus-side receivers require) and are then installed globally. Without an endpoint they export
    nothing and stay private: the ledger is the embedded store. Creating them does no network I/O.
    """
    global_tp = trace.get_tracer_provider()
    global_mp = metrics.get_meter_provider()
    global_lp = _logs.get_logger_provider()
    tp = tracer_provider or (global_tp if _is_sdk(global_tp, (trace.ProxyTracerProvider,)) else None)
    mp = meter_provider or (global_mp if _is_sdk(global_mp, _proxy_meter_types()) else None)
    lp = logger_provider or (global_lp if _is_sdk(global_lp, _proxy_logger_types()) else None)
    if tp is not None and mp is not None and lp is not None:
        return Providers(tp, mp, lp)
    endpoint = settings.endpoint
    if not endpoint and not any(os.environ.get(f"OTEL_EXPORTER_OTLP_{s}_ENDPOINT") for s in _SIGNALS):
        # Nothing would be exported: skip building SDK spans and metric points nobody can read (the ledger
        # and session totals are computed by llm-otel itself). Faster start-up and calls; docs/decisions.md.
        return Providers(tp or trace.NoOpTracerProvider(), mp or metrics.NoOpMeterProvider(),
                         lp or _logs.NoOpLoggerProvider())  # fmt: skip

    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider

    attrs = {SERVICE_NAME: settings.service_name} if settings.service_name else {}
    resource = Resource.create(attrs)
    owned: list[Any] = []

    def signal_url(signal: str) -> str | None:
        # OTEL_EXPORTER_OTLP_{TRACES,METRICS,LOGS}_ENDPOINT override the base endpoint per signal.
        explicit = os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
        return explicit or (f"{endpoint}/v1/{signal}" if endpoint else None)

    if tp is None:
        tp = TracerProvider(resource=resource)
        if signal_url("traces"):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            tp.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=signal_url("traces"))))
            trace.set_tracer_provider(tp)
        owned.append(tp)
    if mp is None:
        readers = []
        if signal_url("metrics"):
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
            from opentelemetry.sdk.metrics import Counter, Histogram, ObservableCounter, UpDownCounter
            from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader

            cumulative = AggregationTemporality.CUMULATIVE
            temporality = {Counter: cumulative, Histogram: cumulative, ObservableCounter: cumulative,
                           UpDownCounter: cumulative}  # fmt: skip
            exporter = OTLPMetricExporter(endpoint=signal_url("metrics"), preferred_temporality=temporality)
            readers.append(PeriodicExportingMetricReader(exporter))
        mp = MeterProvider(resource=resource, metric_readers=readers)
        if readers:
            metrics.set_meter_provider(mp)
        owned.append(mp)
    if lp is None:
        lp = LoggerProvider(resource=resource)
        if signal_url("logs"):
            from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
            from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

            lp.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=signal_url("logs"))))
            _logs.set_logger_provider(lp)
        owned.append(lp)
    return Providers(tp, mp, lp, owned=tuple(owned))


def _proxy_meter_types() -> tuple[type, ...]:
    from opentelemetry.metrics._internal import _ProxyMeterProvider

    return (_ProxyMeterProvider, metrics.NoOpMeterProvider)


def _proxy_logger_types() -> tuple[type, ...]:
    from opentelemetry._logs._internal import NoOpLoggerProvider, ProxyLoggerProvider

    return (ProxyLoggerProvider, NoOpLoggerProvider)
