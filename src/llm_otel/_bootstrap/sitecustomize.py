"""Loaded by every Python process started through ``llm-otel run``: instrument, then chain to the
``sitecustomize`` this one shadows (if any), so the program's own start-up customisation still runs."""

import importlib
import os
import sys


def _instrument() -> None:
    try:
        import llm_otel

        llm_otel.instrument()  # settings (and budgets) come from LLM_OTEL_* / OTEL_* and LLM_OTEL_CONFIG
    except Exception as exc:  # the program must still run
        message = " ".join(str(exc).split())  # one line, whatever the error
        sys.stderr.write(f"llm-otel: not instrumenting this process: {message}\n")


def _chain() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    saved_path, saved_module = list(sys.path), sys.modules.pop("sitecustomize", None)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    try:
        importlib.import_module("sitecustomize")
    except ImportError:
        pass
    finally:
        sys.path[:] = saved_path
        if saved_module is not None:
            sys.modules["sitecustomize"] = saved_module


_instrument()
_chain()
