"""The live state behind ``instrument()``: settings, tracer, prices, and the sinks every call ends in.

A ``Call`` (``core/call.py``) measures; when it ends, ``Runtime.emit`` hands its ``CallResult`` to each sink
in turn: metrics, session totals, processors (budgets first, then yours, then the ledger), and the span
last, so the others can still add events to it. A sink's fault is logged once and never reaches the app.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .context import current as _current_attribution
from .core.result import CallInfo, CallResult
from .errors import CallBlocked

if TYPE_CHECKING:  # the sinks and OpenTelemetry load when a runtime is assembled, not at `import llm_otel`
    from .config import Settings
    from .core.usage import Usage
    from .providers import Providers
    from .sinks import UsageProcessor
    from .sinks.metrics import Instruments

_ON_SPAN = ("span_only", "span_and_event")


def _content_events(settings: Settings, providers: Providers) -> list[Any]:
    """The inference details event sink, when content capture asks for events."""
    if settings.content_mode not in ("event_only", "span_and_event"):
        return []
    from . import semconv as sc
    from .providers import SCOPE, _version
    from .sinks.content_events import InferenceDetailsEvents

    logger = providers.logger_provider.get_logger(SCOPE, _version(), schema_url=sc.SCHEMA_URL)
    return [InferenceDetailsEvents(logger)]


class Runtime:
    """Everything a Call needs; one per ``instrument()``.

    A runtime made by ``deferred`` holds only its settings until first use: reading any other attribute (or
    ``assemble()``) builds the rest once. After that every attribute is a plain instance attribute, so a
    call pays nothing for it (``__getattr__`` runs only for attributes not found).
    """

    #: A deferred runtime's (parts, lock) until it is assembled: ``parts()`` returns its providers and processors.
    _pending: tuple[Callable[[], tuple[Providers, list[UsageProcessor]]], Any] | None = None
    _assembling = False

    def __init__(self, settings: Settings, providers: Providers, processors: list[UsageProcessor]) -> None:
        self.settings = settings
        self._assemble(providers, processors)

    @classmethod
    def deferred(
        cls, settings: Settings, parts: Callable[[], tuple[Providers, list[UsageProcessor]]], lock: Any
    ) -> Runtime:
        """A runtime assembled on first use from ``parts()``, called once under ``lock`` (a ``threading.RLock``)."""
        runtime = cls.__new__(cls)
        runtime.settings = settings
        runtime._pending = (parts, lock)
        return runtime

    @property
    def assembled(self) -> bool:
        return self._pending is None

    def assemble(self) -> Runtime:
        """Build a deferred runtime's parts now; nothing when they are built (or being built by this thread)."""
        pending = self._pending
        if pending is not None:
            parts, lock = pending
            with lock:
                if self._pending is not None and not self._assembling:
                    self._assembling = True
                    try:
                        self._assemble(*parts())
                        self._pending = None
                    finally:
                        self._assembling = False
        return self

    def __getattr__(self, name: str) -> Any:
        if self._pending is not None and not name.startswith("__"):
            self.assemble()
            try:
                return self.__dict__[name]
            except KeyError:
                pass
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _assemble(self, providers: Providers, processors: list[UsageProcessor]) -> None:
        from . import semconv as sc
        from .core.pricing import PriceBook
        from .providers import SCOPE, _version
        from .sinks.metrics import MetricsSink
        from .sinks.session import SessionTotals
        from .sinks.span import SpanSink

        settings = self.settings
        self.providers = providers
        self.tracer = providers.tracer_provider.get_tracer(SCOPE, _version(), schema_url=sc.SCHEMA_URL)
        self.metrics = MetricsSink(providers.meter_provider, tuple(settings.metric_attributes), settings.latest_semconv,
                                   settings.detail_histograms)  # fmt: skip
        self.prices = PriceBook(settings.prices)
        self.processors = processors
        self.session = SessionTotals()
        self.sinks: list[Any] = [self.metrics, self.session, *processors, *_content_events(settings, providers),
                                 SpanSink(settings.latest_semconv, settings.content_mode in _ON_SPAN)]  # fmt: skip
        self._emitters = [(sink.on_usage, type(sink).__name__) for sink in self.sinks]
        self._reported: set[str] = set()
        self._checks = [proc.before_call for proc in processors if hasattr(proc, "before_call")]
        for proc in processors:
            bind = getattr(proc, "bind", None)
            if bind is not None:
                bind(self)

    @property
    def instruments(self) -> Instruments:
        """The synchronous instruments (budget processors record their gauges and alert counts here)."""
        return self.metrics.instruments

    @staticmethod
    def current_attribution() -> dict[str, str]:
        return _current_attribution()

    def cost(self, provider: str, model: str | None, usage: Usage | None) -> float | None:
        if usage is None:
            return None
        try:
            return self.prices.cost(provider, model, usage)
        except Exception:
            self.report_internal_error("pricing")
            return None

    def check_call(self, record: Any) -> None:
        """Let processors veto a call before its request is sent (budgets with ``action: block``).

        ``CallBlocked`` ends the call and reaches the app; any other processor fault is logged."""
        if not self._checks:
            return
        info = CallInfo(record.provider, record.operation, record.request_model, record.attributes)
        try:
            for check in self._checks:
                check(info)
        except CallBlocked as exc:
            record.finish(exc)
            raise
        except Exception:
            self.report_internal_error("before_call processors")

    def emit(self, result: CallResult) -> None:
        """Hand a finished call's result to every sink."""
        for on_usage, name in self._emitters:
            try:
                on_usage(result)
            except Exception:
                self.report_internal_error(f"sink {name}")
                if name == "SpanSink" and result.span is not None:
                    result.span.end()

    def report_internal_error(self, where: str) -> None:
        """Log an internal fault once per place (with traceback at debug level)."""
        import logging

        log = logging.getLogger("llm_otel")
        if where not in self._reported:
            self._reported.add(where)
            log.warning("llm-otel: internal error in %s; the call was not affected", where, exc_info=True)
        else:
            log.debug("llm-otel: internal error in %s", where, exc_info=True)
