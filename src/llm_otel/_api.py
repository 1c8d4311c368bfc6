"""``instrument()`` / ``uninstrument()`` and the process-wide runtime they manage."""

from __future__ import annotations

import atexit
import functools
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when first needed: `import llm_otel; llm_otel.instrument()` stays cheap
    import logging
    from pathlib import Path

    from .config import Settings
    from .providers import Providers
    from .runtime import Runtime
    from .sinks import UsageProcessor
    from .sinks.ledger import Ledger
    from .sinks.session import ModelTotals
    from .sinks.writer import Writer

_lock = threading.RLock()
_runtime: Runtime | None = None
_ledger: Ledger | None = None
_budgets: Any = None  # the BudgetProcessor built from settings.budgets
_writer: Writer | None = None  # the one background thread behind the ledger and the budget state
_instrumentors: list[Any] = []
_active: list[bool] = []  # non-empty while instrumented
_generation = 0  # bumped by every instrument(): import hooks from an earlier one do nothing


def _log() -> logging.Logger:
    import logging  # on first use: `instrument()` itself has nothing to log

    return logging.getLogger("llm_otel")


def _build_runtime(
    settings: Settings, processors: list[UsageProcessor], on_alert: Any = None, **providers: Any
) -> Runtime:
    from .providers import only_noop, setup_providers
    from .runtime import Runtime

    if not processors and not settings.budgets and not any(providers.values()) and only_noop(settings):
        # Nothing to export and nothing given that needs the runtime now: OpenTelemetry, the sinks, the ledger
        # and the writer thread are set up when the first SDK is instrumented (an SDK imported before or after
        # this; no call can be made before) or when the runtime is read, so `import llm_otel; instrument()`
        # imports none of them. The writer still starts before any call, so it ends dropped streams' calls.
        runtime = Runtime.deferred(settings, lambda: _deferred_parts(runtime), _lock)
        return runtime
    procs = _sinks(settings, list(processors), on_alert)
    runtime = Runtime(settings, setup_providers(settings, **providers), procs)
    _register_exit()
    return runtime


def _deferred_parts(runtime: Runtime) -> tuple[Providers, list[UsageProcessor]]:
    """A deferred runtime's providers (the no-op ones ``only_noop`` decided on) and sinks; under ``_lock``."""
    from .providers import noop_providers

    if runtime is not _runtime:  # uninstrumented before its first use: nothing can reach it any more
        return noop_providers(), []
    procs = _sinks(runtime.settings, [], None)
    _register_exit()
    return noop_providers(), procs


def _sinks(settings: Settings, procs: list[UsageProcessor], on_alert: Any) -> list[UsageProcessor]:
    """``procs`` with the budgets (first) and the ledger (last), and the writer behind both."""
    global _ledger, _budgets, _writer
    from .sinks.ledger import Ledger
    from .sinks.writer import Writer

    if settings.budgets or settings.ledger is not False:
        _writer = Writer()
        _writer.start()  # now, not at the first row: it also ends the calls of streams the app dropped
    if settings.budgets:
        from .budget.processor import BudgetProcessor

        # First, so that its before_call runs before any other processor sees the call.
        _budgets = BudgetProcessor(settings.budgets, state=settings.budget_state, store=settings.budget_store,
                                   on_alert=on_alert, service_name=settings.service_name, writer=_writer)  # fmt: skip
        procs.insert(0, _budgets)
    if settings.ledger is not False:
        from pathlib import Path

        path = None if settings.ledger is True else Path(str(settings.ledger)).expanduser()
        _ledger = Ledger(path, service=settings.service_name, writer=_writer)
        procs.append(_ledger)
    return procs


def _register_exit() -> None:
    # After the providers' exit handler (setup_providers), so it runs before it (atexit is last in, first out).
    atexit.unregister(_at_exit)
    atexit.register(_at_exit)


def ensure_runtime() -> Runtime:
    """The current runtime, creating a default one (zero-code ``opentelemetry-instrument`` path)."""
    global _runtime
    from .config import load_settings

    with _lock:
        if _runtime is None:
            _runtime = _build_runtime(load_settings(), [])
        return _runtime


def runtime_for(tracer_provider: Any = None, meter_provider: Any = None, logger_provider: Any = None) -> Runtime:
    """The runtime an instrumentor reports to: the process-wide one, or, when it was given providers (as
    ``BaseInstrumentor.instrument(tracer_provider=...)`` allows), one whose spans, metric points and events go
    to them. Settings, ledger, budgets, processors and ``session_usage()`` stay the process-wide ones; a
    provider not given is the process-wide runtime's."""
    base = ensure_runtime()
    mine = base.providers
    given = (tracer_provider, meter_provider, logger_provider)
    current = (mine.tracer_provider, mine.meter_provider, mine.logger_provider)
    if all(new is None or new is old for new, old in zip(given, current, strict=True)):
        return base
    from .providers import Providers
    from .runtime import Runtime

    providers = Providers(*(new or old for new, old in zip(given, current, strict=True)))  # owned by the caller
    shared = [base.session, *(_Unbound(proc) if hasattr(proc, "bind") else proc for proc in base.processors)]
    return Runtime(base.settings, providers, shared)


class _Unbound:
    """A processor shared with another runtime: it is already bound to the process-wide one (budget gauges
    and alerts stay there), so it offers no ``bind``; everything else is the processor's own."""

    def __init__(self, proc: Any) -> None:
        self._proc = proc

    def __getattr__(self, name: str) -> Any:
        if name == "bind":
            raise AttributeError(name)
        return getattr(self._proc, name)


_config_error_reported = False


def report_config_error(exc: Exception) -> None:
    """One line on stderr, once per process: an instrumentor loaded by ``opentelemetry-instrument`` found the
    configuration invalid, and the app runs without llm-otel (a traceback would say nothing more)."""
    global _config_error_reported
    with _lock:
        if _config_error_reported:
            return
        _config_error_reported = True
    message = " ".join(str(exc).split())
    sys.stderr.write(f"llm-otel: not instrumenting this process: {message}\n")
    sys.stderr.flush()


def _end_orphans() -> None:
    """End the calls of streams the app dropped (queued by their finalizers; see ``core.call.end_later``)."""
    if "llm_otel.core.call" in sys.modules:  # no call was ever made otherwise
        from .core.call import end_orphans

        end_orphans()


def _at_exit() -> None:
    """Interpreter exit: write the queued ledger rows and budget usage first (a final commit can fire budget
    alerts, which are telemetry); the providers' own bounded shutdown runs next (``providers.py``)."""
    _end_orphans()
    if _writer is not None:
        _writer.close()


def instrument(
    *,
    endpoint: str | None = None,
    service_name: str | None = None,
    ledger: bool | str | None = None,
    capture_content: bool | None = None,
    inject_stream_usage: bool | None = None,
    detail_histograms: bool | None = None,
    metric_attributes: list[str] | None = None,
    prices: dict[str, Any] | None = None,
    budgets: list[Any] | None = None,
    on_alert: Any = None,
    budget_state: bool | str | None = None,
    budget_store: str | None = None,
    config_file: str | Path | None = None,
    processors: list[UsageProcessor] | None = None,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    logger_provider: Any = None,
) -> Runtime:
    """Instrument every supported LLM SDK that is or will be imported. Calling it again is harmless.

    Arguments override the environment (``LLM_OTEL_*``, ``OTEL_*``) and the YAML file named by
    ``config_file`` / ``LLM_OTEL_CONFIG``. Raises ``ConfigError`` for invalid settings, naming the field.
    ``budgets`` (``Budget`` objects or dicts), ``on_alert`` (a callable or a list of them, given each
    ``BudgetAlert``), ``budget_state`` (the shared state file; False keeps budgets in memory) and
    ``budget_store`` (a ``redis://`` URL: budgets shared by a fleet): see docs/budgets.md.
    """
    global _runtime, _generation
    from .config import load_settings
    from .importhook import when_imported
    from .instrumentors import SPECS, installed

    overrides = {
        "endpoint": endpoint,
        "service_name": service_name,
        "ledger": ledger,
        "capture_content": capture_content,
        "inject_stream_usage": inject_stream_usage,
        "detail_histograms": detail_histograms,
        "metric_attributes": metric_attributes,
        "prices": prices,
        "budgets": budgets,
        "budget_state": budget_state,
        "budget_store": budget_store,
    }
    with _lock:
        if _runtime is not None and _active:
            _log().debug("llm-otel: instrument() called again; keeping the existing instrumentation")
            return _runtime
        settings = load_settings(overrides, config_file=config_file)
        _runtime = _build_runtime(
            settings, list(processors or []), on_alert=on_alert, tracer_provider=tracer_provider,
            meter_provider=meter_provider, logger_provider=logger_provider)  # fmt: skip
        _generation += 1
        for sdk, module, name in SPECS:
            if not installed(sdk):
                continue  # SDK not installed: nothing to patch, nothing to log
            if sdk in sys.modules:
                _activate(module, name)
            else:  # patched when (if ever) the app imports it
                when_imported(sdk, functools.partial(_on_sdk_import, module, name, _generation))
        _active.append(True)
        return _runtime


def _activate(module: str, name: str) -> None:
    from .instrumentors import load

    if _runtime is not None:
        _runtime.assemble()  # a deferred runtime is built when its first SDK is instrumented
    inst = load(module, name)()
    inst.instrument(runtime=_runtime)
    _instrumentors.append(inst)


def _on_sdk_import(module: str, name: str, generation: int, _sdk: Any) -> None:
    """Post-import hook: instrument an SDK imported after ``instrument()`` (unless uninstrumented since)."""
    with _lock:
        if generation != _generation or not _active:
            return
        try:
            _activate(module, name)
        except Exception:  # an instrumentor that cannot load must not break the app's import
            _log().warning("llm-otel: could not instrument %s", name, exc_info=True)


def uninstrument() -> None:
    """Restore every patched SDK function and flush the ledger."""
    global _runtime, _ledger, _budgets, _writer
    _end_orphans()
    with _lock:
        for inst in _instrumentors:
            inst.uninstrument()
        _instrumentors.clear()
        _active.clear()
        if _writer is not None:
            _writer.close()  # writes the queued ledger rows and budget usage, then closes both
            _writer = None
        _budgets = _ledger = None
        if _runtime is not None and _runtime.assembled:
            _runtime.providers.shutdown()
        _runtime = None


def session_usage() -> dict[tuple[str, str], ModelTotals]:
    """This process's cumulative usage per (provider, model): calls, tokens by type, cost, throttle wait."""
    return _runtime.session.snapshot() if _runtime is not None and _runtime.assembled else {}


def flush(timeout: float = 10.0) -> None:
    """Write queued ledger rows and budget usage, and export pending telemetry now."""
    _end_orphans()
    if _writer is not None:
        _writer.flush(timeout)
    if _runtime is not None and _runtime.assembled:  # (a runtime not assembled yet has seen no call)
        for proc in _runtime.processors:  # processors given to instrument() with writers of their own
            if proc is not _ledger and proc is not _budgets and hasattr(proc, "flush"):
                proc.flush(timeout)  # (the ledger and budgets built here use _writer, flushed above)
        providers = _runtime.providers
        for provider in (providers.tracer_provider, providers.meter_provider, providers.logger_provider):
            try:
                provider.force_flush(int(timeout * 1000))
            except Exception:
                _log().debug("force_flush failed", exc_info=True)


def ledger_path() -> Path | None:
    """Where this process writes its ledger, if it writes one."""
    if _runtime is not None:
        _runtime.assemble()
    return _ledger.path if _ledger is not None else None
