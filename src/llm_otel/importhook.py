"""Run a callback once a module has been imported, without importing it first.

Our own small ``sys.meta_path`` finder instead of wrapt's: ``instrument()`` must not pay for importing wrapt
(and asyncio, which wrapt loads) before any SDK is imported, and wrapt's hook never fires for namespace
packages (``mistralai`` 1.x+ has no ``__init__.py``, so its spec has no loader to chain).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

Hook = Callable[[ModuleType], None]

_hooks: dict[str, list[Hook]] = {}
_lock = threading.RLock()
_installed = False


def when_imported(name: str, hook: Hook) -> None:
    """Call ``hook(module)`` once module ``name`` has been imported: now, if it already has been.

    A hook that raises propagates into the app's ``import``, so hooks contain their own faults.
    """
    global _installed
    with _lock:
        module = sys.modules.get(name)
        if module is None:
            _hooks.setdefault(name, []).append(hook)
            if not _installed:
                _installed = True
                sys.meta_path.insert(0, _Finder())
    if module is not None:
        hook(module)


def _fire(module: ModuleType) -> None:
    with _lock:
        hooks = _hooks.pop(module.__name__, ())
    for hook in hooks:  # outside the lock: a hook may import, and so re-enter the finder, on another thread
        hook(module)


class _Finder:
    """Finds nothing itself: for a watched name it asks the finders after it and chains the spec's loader."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        if fullname not in _hooks:
            return None
        for finder in list(sys.meta_path):
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                if spec.loader is None and spec.submodule_search_locations is None:
                    return spec  # not loadable; let the import system say so
                spec.loader = _NotifyingLoader(spec.loader)
                return spec
        return None


class _NotifyingLoader:
    """Delegates to the real loader (``None`` for a namespace package) and fires the hooks after it ran."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        create = getattr(self.loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: ModuleType) -> None:
        self._unwrap(module)
        if self.loader is not None:
            self.loader.exec_module(module)
        _fire(module)

    def _unwrap(self, module: ModuleType) -> None:
        """Leave the module with the loader it would have had without us."""
        loader = self.loader
        if loader is None:  # a namespace package: the loader the import system would have made for it
            try:
                from importlib.machinery import NamespaceLoader  # type: ignore[attr-defined]

                loader = NamespaceLoader.__new__(NamespaceLoader)
                loader._path = module.__spec__.submodule_search_locations  # type: ignore[union-attr]
            except Exception:  # a future Python without these internals: keep delegating
                return
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = loader
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec.loader is self:
            spec.loader = loader
