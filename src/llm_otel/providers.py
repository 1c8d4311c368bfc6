"""OpenTelemetry providers: reuse the app's, else create our own (exporting over OTLP when configured)."""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import logging

    from .config import Settings

SCOPE = "llm_otel"
_SIGNALS = ("TRACES", "METRICS", "LOGS")


def _log() -> logging.Logger:
    import logging  # loaded when there is something to say, not by `instrument()`

    return logging.getLogger(__name__)


def _version() -> str:
    from . import __version__

    return __version__


@dataclass
class Providers:
    tracer_provider: Any
    meter_provider: Any
    logger_provider: Any
    owned: tuple[Any, ...] = ()  # the ones llm-otel created (and so shuts down); the app's are left alone
    exit_timeout: float = 0.3  # settings.exit_timeout: see _shutdown_at_exit
    _done: bool = field(default=False, init=False, repr=False, compare=False)

    def shutdown(self, timeout_s: float = 10.0) -> bool:
        """Shut down (and so export what is pending from) the providers llm-otel created, all at once, waiting
        at most ``timeout_s``. Idempotent. False when some did not finish in time: they are left to finish
        or to die with the process (their threads are daemons)."""
        if self._done or not self.owned:
            return True
        self._done = True
        atexit.unregister(self._shutdown_at_exit)
        return _shutdown_all(self.owned, timeout_s)

    def _shutdown_at_exit(self) -> None:
        """The exporters retry an unreachable collector for up to 10 s per signal: the exit waits for them at
        most ``exit_timeout`` (a reachable collector answers well within it). docs/decisions.md, "Exit"."""
        if not self.shutdown(self.exit_timeout):
            _log().warning("llm-otel: telemetry not exported within %.1f s at exit (collector unreachable or slow); "
                           "exiting without it (LLM_OTEL_EXIT_TIMEOUT sets the wait)", self.exit_timeout)  # fmt: skip


def _shutdown_all(providers: tuple[Any, ...], timeout_s: float) -> bool:
    """``provider.shutdown()`` of each in a daemon thread of its own; wait for them until the deadline."""
    threads = [threading.Thread(target=_shutdown_one, args=(p,), name="llm-otel-shutdown", daemon=True)
               for p in providers]  # fmt: skip
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout_s
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return not any(thread.is_alive() for thread in threads)


def _shutdown_one(provider: Any) -> None:
    try:
        provider.shutdown()
    except Exception:
        _log().debug("provider shutdown failed", exc_info=True)


def _is_sdk(provider: Any, api_proxy_types: tuple[type, ...]) -> bool:
    return provider is not None and not isinstance(provider, api_proxy_types)


def _exported(settings: Settings) -> bool:
    """An OTLP endpoint is configured (for any signal)."""
    return bool(settings.endpoint) or any(os.environ.get(f"OTEL_EXPORTER_OTLP_{s}_ENDPOINT") for s in _SIGNALS)


def only_noop(settings: Settings) -> bool:
    """True when ``setup_providers(settings)`` (no providers given) would return OpenTelemetry's no-op
    providers: nothing is exported and no SDK provider is set globally. Decided without importing
    OpenTelemetry when the app has not: no global provider can have been set then, unless one is named by
    ``OTEL_PYTHON_*_PROVIDER`` (the API loads it on first use)."""
    if _exported(settings) or any(os.environ.get(f"OTEL_PYTHON_{s}_PROVIDER") for s in ("TRACER", "METER", "LOGGER")):
        return False
    if not any(m in sys.modules for m in ("opentelemetry.trace", "opentelemetry.metrics", "opentelemetry._logs")):
        return True
    from opentelemetry import _logs, metrics, trace

    return not (_is_sdk(trace.get_tracer_provider(), (trace.ProxyTracerProvider,))
                or _is_sdk(metrics.get_meter_provider(), _proxy_meter_types())
                or _is_sdk(_logs.get_logger_provider(), _proxy_logger_types()))  # fmt: skip


def noop_providers() -> Providers:
    """OpenTelemetry's no-op providers: see "Nothing exported, nothing built" in docs/decisions.md."""
    from opentelemetry import _logs, metrics, trace

    return Providers(trace.NoOpTracerProvider(), metrics.NoOpMeterProvider(), _logs.NoOpLoggerProvider())


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
    from opentelemetry import _logs, metrics, trace

    global_tp = trace.get_tracer_provider()
    global_mp = metrics.get_meter_provider()
    global_lp = _logs.get_logger_provider()
    tp = tracer_provider or (global_tp if _is_sdk(global_tp, (trace.ProxyTracerProvider,)) else None)
    mp = meter_provider or (global_mp if _is_sdk(global_mp, _proxy_meter_types()) else None)
    lp = logger_provider or (global_lp if _is_sdk(global_lp, _proxy_logger_types()) else None)
    if tp is not None and mp is not None and lp is not None:
        return Providers(tp, mp, lp)
    endpoint = settings.endpoint
    if not _exported(settings):
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
        tp = TracerProvider(resource=resource, shutdown_on_exit=False)  # ours is bounded: _shutdown_at_exit
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
            from .sinks.metrics import export_interval_millis

            readers.append(PeriodicExportingMetricReader(exporter, export_interval_millis=export_interval_millis()))
        mp = MeterProvider(resource=resource, metric_readers=readers, shutdown_on_exit=False)
        if readers:
            metrics.set_meter_provider(mp)
        owned.append(mp)
    if lp is None:
        lp = LoggerProvider(resource=resource, shutdown_on_exit=False)
        if signal_url("logs"):
            from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
            from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

            lp.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=signal_url("logs"))))
            _logs.set_logger_provider(lp)
        owned.append(lp)
    providers = Providers(tp, mp, lp, owned=tuple(owned), exit_timeout=settings.exit_timeout)
    atexit.register(providers._shutdown_at_exit)
    return providers


def _proxy_meter_types() -> tuple[type, ...]:
    from opentelemetry import metrics
    from opentelemetry.metrics._internal import _ProxyMeterProvider

    return (_ProxyMeterProvider, metrics.NoOpMeterProvider)


def _proxy_logger_types() -> tuple[type, ...]:
    from opentelemetry._logs._internal import NoOpLoggerProvider, ProxyLoggerProvider

    return (ProxyLoggerProvider, NoOpLoggerProvider)
