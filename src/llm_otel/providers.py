"""OpenTelemetry providers (reuse the app's, else our own) and every instrument llm-otel records into."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from opentelemetry import _logs, metrics, trace

from . import semconv as sc
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


class Instruments:
    """Every metric instrument, created once from one meter."""

    def __init__(self, meter_provider: Any, latest_semconv: bool = False) -> None:
        meter = meter_provider.get_meter(SCOPE, _version())
        self.token_usage = meter.create_histogram(
            sc.METRIC_TOKEN_USAGE, unit="{token}", description="Tokens used per call, by gen_ai.token.type.",
            explicit_bucket_boundaries_advisory=sc.TOKEN_BUCKETS)  # fmt: skip
        self.duration = meter.create_histogram(
            sc.METRIC_OPERATION_DURATION, unit="s", description="GenAI operation duration, retries included.",
            explicit_bucket_boundaries_advisory=sc.DURATION_BUCKETS)  # fmt: skip
        self.time_to_first_chunk = meter.create_histogram(
            sc.METRIC_TIME_TO_FIRST_CHUNK, unit="s", description="Call start to the first output chunk.",
            explicit_bucket_boundaries_advisory=sc.DURATION_BUCKETS)  # fmt: skip
        self.time_per_output_chunk = meter.create_histogram(
            sc.METRIC_TIME_PER_OUTPUT_CHUNK, unit="s", description="Time between consecutive output chunks.",
            explicit_bucket_boundaries_advisory=sc.DURATION_BUCKETS)  # fmt: skip
        self.tokens = meter.create_counter(
            sc.METRIC_TOKENS, unit="{token}", description="Tokens by type (input includes cache; output reasoning)."
        )
        self.cost = meter.create_counter(sc.METRIC_COST, unit="USD", description="Cost of GenAI calls in USD.")
        self.request_cost = meter.create_histogram(
            sc.METRIC_REQUEST_COST, unit="USD", description="Cost per call in USD.",
            explicit_bucket_boundaries_advisory=sc.COST_BUCKETS)  # fmt: skip
        self.unpriced = meter.create_counter(
            sc.METRIC_UNPRICED_REQUESTS, unit="{request}", description="Calls with usage but no known price."
        )
        self.tokens_per_second = meter.create_histogram(
            sc.METRIC_TOKENS_PER_SECOND, unit="{token}/s", description="Output tokens per second of generation.",
            explicit_bucket_boundaries_advisory=sc.RATE_BUCKETS)  # fmt: skip
        self.burst_tokens_per_second = meter.create_histogram(
            sc.METRIC_BURST_TOKENS_PER_SECOND, unit="{token}/s",
            description="Peak output rate over a 250 ms window of chunk arrivals (streams).",
            explicit_bucket_boundaries_advisory=sc.RATE_BUCKETS)  # fmt: skip
        self.throttle_wait = meter.create_histogram(
            sc.METRIC_THROTTLE_WAIT, unit="s", description="Time in the SDK's retry sleeps caused by 429s, per call.",
            explicit_bucket_boundaries_advisory=(0.0, *sc.DURATION_BUCKETS))  # fmt: skip
        self.retries = meter.create_counter(
            sc.METRIC_RETRIES, unit="{retry}", description="Retries made by the SDK, by reason."
        )
        self.ratelimit_remaining = meter.create_gauge(
            sc.METRIC_RATELIMIT_REMAINING, unit="{unit}", description="Rate-limit headroom from response headers."
        )
        self.budget_utilization = meter.create_gauge(
            sc.METRIC_BUDGET_UTILIZATION, unit="1", description="Budget used / limit in the current window."
        )
        self.budget_alerts = meter.create_counter(
            sc.METRIC_BUDGET_ALERTS, unit="{alert}", description="Budget threshold alerts fired."
        )
        self.latest = None
        if latest_semconv:
            self.latest = {
                kind: meter.create_counter(sc.LATEST_METRIC_USAGE_PREFIX + suffix, unit="{token}")
                for kind, suffix in sc.LATEST_USAGE_METRIC_SUFFIX.items()
            }
            self.latest_ttfc = meter.create_histogram(
                sc.LATEST_METRIC_TIME_TO_FIRST_CHUNK, unit="s", explicit_bucket_boundaries_advisory=sc.DURATION_BUCKETS
            )
