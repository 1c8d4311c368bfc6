"""Shared wiring for SDK instrumentors: lazy patching on import, restoring originals, the runtime."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from collections.abc import Callable, Collection
from typing import Any, ClassVar

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

log = logging.getLogger("llm_otel")


class Patcher:
    """Wraps attributes with wrapt and remembers the originals so they can be restored."""

    def __init__(self) -> None:
        self._originals: list[tuple[Any, str, Any]] = []

    def wrap(self, module: str, path: str, wrapper: Callable[..., Any], optional: bool = False) -> bool:
        """Wrap ``module:path`` (``Class.method``). Returns False when it does not exist (logged unless
        ``optional``: some SDK versions lack some surfaces)."""
        try:
            owner: Any = importlib.import_module(module)
            *parents, name = path.split(".")
            for part in parents:
                owner = getattr(owner, part)
            original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        except (ImportError, AttributeError, KeyError):
            if not optional:
                log.debug("llm-otel: %s.%s not found; not patched", module, path)
            return False
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

    module: ClassVar[str]
    dependencies: ClassVar[tuple[str, ...]]
    _runtime_factory: ClassVar[Callable[[], Any] | None] = None

    def __init__(self) -> None:
        if not hasattr(self, "_patcher"):
            self._patcher = Patcher()
            self._active = False
            self._hooked = False
            self.rt: Any = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return self.dependencies

    def _instrument(self, **kwargs: Any) -> None:
        from .. import _api

        self.rt = kwargs.get("runtime") or _api.ensure_runtime()
        self._active = True
        if not self._hooked:
            self._hooked = True
            wrapt.register_post_import_hook(self._on_import, self.module)
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


def installed(module: str) -> bool:
    """True when ``module`` can be imported (checked without importing it; a missing parent is False)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
