"""Shared wiring for SDK instrumentors: lazy patching on import, restoring originals, the runtime."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import numbers
import sys
from collections.abc import Callable, Collection
from typing import Any, ClassVar
from urllib.parse import urlsplit

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.instrumentation.utils import is_instrumentation_enabled

from .. import semconv as sc
from ..core.call import CURRENT, Call, use_span
from ..importhook import when_imported

log = logging.getLogger("llm_otel")


class Patcher:
    """Wraps attributes with wrapt and remembers the originals so they can be restored."""

    def __init__(self) -> None:
        self._originals: list[tuple[Any, str, Any]] = []

    @staticmethod
    def _locate(module: str, path: str) -> tuple[Any, str, Any]:
        owner: Any = importlib.import_module(module)
        *parents, name = path.split(".")
        for part in parents:
            owner = getattr(owner, part)
        return owner, name, owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)

    def find(self, module: str, path: str, optional: bool = False) -> Any:
        """The attribute at ``module:path`` (``Class.method``), or None when it does not exist (logged unless
        ``optional``: some SDK versions lack some surfaces)."""
        try:
            return self._locate(module, path)[2]
        except (ImportError, AttributeError, KeyError):
            if not optional:
                log.debug("llm-otel: %s.%s not found; not patched", module, path)
            return None

    def wrap(self, module: str, path: str, wrapper: Callable[..., Any], optional: bool = False) -> bool:
        """Wrap ``module:path`` with a wrapt wrapper. Returns False when it does not exist (see ``find``)."""
        if self.find(module, path, optional) is None:
            return False
        owner, name, original = self._locate(module, path)
        if isinstance(original, wrapt.FunctionWrapper):
            return True  # already ours (or someone's); don't stack
        wrapt.wrap_function_wrapper(owner, name, wrapper)
        self._originals.append((owner, name, original))
        return True

    def replace(self, owner: Any, name: str, new: Any) -> None:
        """Set ``owner.name = new`` (for properties and other non-function attributes), restorable."""
        self._originals.append((owner, name, owner.__dict__[name]))
        setattr(owner, name, new)

    def restore(self) -> None:
        for owner, name, original in reversed(self._originals):
            setattr(owner, name, original)
        self._originals.clear()


class LLMInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Base for our instrumentors. Subclasses set ``module`` and ``dependencies`` and implement ``patch``.

    Patching is lazy: a post-import hook runs ``patch`` when the SDK is imported (at once if it already is),
    so ``instrument()`` before ``import openai`` works and SDKs that are never imported cost nothing.
    Works with ``opentelemetry-instrument`` through the ``opentelemetry_instrumentor`` entry points.
    """

    module: ClassVar[str]  # the SDK module whose import triggers patching: from ``SPECS``, the one list
    dependencies: ClassVar[tuple[str, ...]]
    _runtime_factory: ClassVar[Callable[[], Any] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        from . import SPECS

        for trigger, _module, name in SPECS:
            if name == cls.__name__:
                cls.module = trigger

    def __init__(self) -> None:
        if not hasattr(self, "_patcher"):
            self._patcher = Patcher()
            self._active = False
            self._hooked = False
            self.rt: Any = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return self.dependencies

    def _instrument(self, **kwargs: Any) -> None:
        """``instrument(tracer_provider=, meter_provider=, logger_provider=)``: this SDK's calls go to the
        providers given, as with every OpenTelemetry instrumentation. An invalid configuration prints one
        line and leaves the SDK unpatched: under ``opentelemetry-instrument`` the app must still run."""
        from .. import _api
        from ..config import ConfigError

        given = (kwargs.get("tracer_provider"), kwargs.get("meter_provider"), kwargs.get("logger_provider"))
        try:
            self.rt = kwargs.get("runtime") or _api.runtime_for(*given)
        except ConfigError as exc:
            _api.report_config_error(exc)
            return
        self._active = True
        if not self._hooked:
            self._hooked = True
            when_imported(self.module, self._on_import)
        elif self.module in sys.modules:  # re-instrumented after uninstrument(): the hook won't fire again
            self._on_import(None)

    def _on_import(self, _module: Any) -> None:
        if not self._active:
            return
        try:
            self.patch()
        except Exception:
            log.warning("llm-otel: could not instrument %s", self.module, exc_info=True)
            self._patcher.restore()

    def _uninstrument(self, **kwargs: Any) -> None:
        self._active = False
        self._patcher.restore()

    def patch(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


# --- helpers for SDKs patched at their public methods (mistral, cohere, ollama, litellm) ----------------------
#: (request parameter, span attribute): the names most SDKs use. Others pass their own table.
REQUEST_PARAMS: tuple[tuple[str, str], ...] = (
    ("max_tokens", sc.REQUEST_MAX_TOKENS),
    ("temperature", sc.REQUEST_TEMPERATURE),
    ("top_p", sc.REQUEST_TOP_P),
)


def request_attributes(params: Any, table: tuple[tuple[str, str], ...] = REQUEST_PARAMS) -> dict[str, Any]:
    """Span attributes for the numeric request parameters in ``params`` (a mapping; booleans, strings and
    missing values are left out; the first key found for an attribute wins)."""
    out: dict[str, Any] = {}
    if not params:
        return out
    for key, attr in table:
        value = params.get(key)
        if value is not None and attr not in out and isinstance(value, numbers.Real) and not isinstance(value, bool):
            out[attr] = value
    return out


def server_of(url: Any) -> tuple[str | None, int | None]:
    """(host, port) of a base URL given as a string or an httpx URL; user-info never included."""
    if url is None:
        return None, None
    if not isinstance(url, str):
        host = getattr(url, "host", None)
        scheme = getattr(url, "scheme", "")
        return host or None, getattr(url, "port", None) or (443 if scheme == "https" else 80)
    parts = urlsplit(url if "//" in url else f"http://{url}")
    try:
        port = parts.port
    except ValueError:
        port = None
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def new_record(
    rt: Any,
    where: str,
    provider: str,
    operation: str,
    model: Any,
    url: Any,
    streaming: bool,
    span_attributes: dict[str, Any] | None = None,
) -> Call | None:
    """Start the record of a call, or None when it must not have one: another instrumented call is in
    progress in this context and owns it (the nesting rule), OpenTelemetry's ``suppress_instrumentation`` is
    in effect, or starting failed (logged; the call goes on)."""
    if CURRENT.get() is not None or not is_instrumentation_enabled():
        return None
    try:
        address, port = server_of(url)
        record = Call(rt, provider, operation, model if isinstance(model, str) else None, address, port,
                            streaming, span_attributes)  # fmt: skip
    except Exception:
        rt.report_internal_error(f"{where} call start")
        return None
    rt.check_call(record)
    return record


def run_sync(record: Call, wrapped: Any, args: Any, kwargs: Any) -> Any:
    """Run the SDK call as the current call (retry sleeps and nested SDK calls count on it); end the record
    if it raises."""
    token = CURRENT.set(record)
    try:
        with use_span(record):
            return wrapped(*args, **kwargs)
    except BaseException as exc:
        record.finish(exc)
        raise
    finally:
        CURRENT.reset(token)


async def run_async(record: Call, wrapped: Any, args: Any, kwargs: Any) -> Any:
    """Async twin of :func:`run_sync`."""
    token = CURRENT.set(record)
    try:
        with use_span(record):
            return await wrapped(*args, **kwargs)
    except BaseException as exc:
        record.finish(exc)
        raise
    finally:
        CURRENT.reset(token)
