"""``instrument()`` / ``uninstrument()`` and the process-wide runtime they manage."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from .config import Settings, load_settings
from .ledger import Ledger, default_path
from .records import UsageProcessor
from .runtime import Runtime
from .session import ModelTotals
from .telemetry import setup_providers

log = logging.getLogger("llm_otel")
_lock = threading.RLock()
_runtime: Runtime | None = None
_ledger: Ledger | None = None
_instrumentors: list[Any] = []


def _build_runtime(settings: Settings, processors: list[UsageProcessor], **providers: Any) -> Runtime:
    global _ledger
    procs = list(processors)
    if settings.ledger is not False:
        path = default_path() if settings.ledger is True else Path(str(settings.ledger)).expanduser()
        _ledger = Ledger(path, service=settings.service_name)
        procs.append(_ledger)
    return Runtime(settings, setup_providers(settings, **providers), procs)


def ensure_runtime() -> Runtime:
    """The current runtime, creating a default one (zero-code ``opentelemetry-instrument`` path)."""
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = _build_runtime(load_settings(), [])
        return _runtime


def instrument(
    *,
    endpoint: str | None = None,
    service_name: str | None = None,
    ledger: bool | str | None = None,
    capture_content: bool | None = None,
    inject_stream_usage: bool | None = None,
    metric_attributes: list[str] | None = None,
    prices: dict[str, Any] | None = None,
    config_file: str | Path | None = None,
    processors: list[UsageProcessor] | None = None,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    logger_provider: Any = None,
) -> Runtime:
    """Instrument every supported LLM SDK that is or will be imported. Calling it again is harmless.

    Arguments override the environment (``LLM_OTEL_*``, ``OTEL_*``) and the YAML file named by
    ``config_file`` / ``LLM_OTEL_CONFIG``. Raises ``ConfigError`` for invalid settings, naming the field.
    """
    global _runtime
    from .instrumentors import ALL
    from .instrumentors._base import installed

    overrides = {
        "endpoint": endpoint,
        "service_name": service_name,
        "ledger": ledger,
        "capture_content": capture_content,
        "inject_stream_usage": inject_stream_usage,
        "metric_attributes": metric_attributes,
        "prices": prices,
    }
    with _lock:
        if _runtime is not None and _instrumentors:
            log.debug("llm-otel: instrument() called again; keeping the existing instrumentation")
            return _runtime
        settings = load_settings(overrides, config_file=config_file)
        _runtime = _build_runtime(
            settings, list(processors or []), tracer_provider=tracer_provider, meter_provider=meter_provider,
            logger_provider=logger_provider)  # fmt: skip
        for cls in ALL:
            if not installed(cls.module):
                continue  # SDK not installed: nothing to patch, nothing to log
            inst = cls()
            inst.instrument(runtime=_runtime)
            _instrumentors.append(inst)
        return _runtime


def uninstrument() -> None:
    """Restore every patched SDK function and flush the ledger."""
    global _runtime, _ledger
    with _lock:
        for inst in _instrumentors:
            inst.uninstrument()
        _instrumentors.clear()
        if _ledger is not None:
            _ledger.close()
            _ledger = None
        if _runtime is not None:
            _runtime.providers.shutdown()
        _runtime = None


def session_usage() -> dict[tuple[str, str], ModelTotals]:
    """This process's cumulative usage per (provider, model): calls, tokens by type, cost, throttle wait."""
    return _runtime.session.snapshot() if _runtime is not None else {}


def flush(timeout: float = 10.0) -> None:
    """Write queued ledger rows and export pending telemetry now."""
    if _ledger is not None:
        _ledger.flush(timeout)
    if _runtime is not None:
        for provider in (_runtime.providers.tracer_provider, _runtime.providers.meter_provider):
            try:
                provider.force_flush(int(timeout * 1000))
            except Exception:
                log.debug("force_flush failed", exc_info=True)


def ledger_path() -> Path | None:
    """Where this process writes its ledger, if it writes one."""
    return _ledger.path if _ledger is not None else None
