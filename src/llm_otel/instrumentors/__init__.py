"""One module per SDK. Each names where to patch and how to read usage; shared wiring lives in ``_base``.

The modules are imported lazily: ``instrument()`` only registers an import hook per installed SDK, and an
instrumentor module (with OpenTelemetry's ``BaseInstrumentor``) is loaded when its SDK is first imported.
``ALL`` and the class names are still available as attributes (loading every module).
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

# The one list of supported SDKs: (SDK module whose import triggers patching, our module, instrumentor class).
# `instrument()` and each class (its `module`) read it; the `opentelemetry_instrumentor` entry points in
# pyproject.toml must name the same classes (a test checks).
SPECS: tuple[tuple[str, str, str], ...] = (
    ("openai", "openai", "OpenAIInstrumentor"),
    ("anthropic", "anthropic", "AnthropicInstrumentor"),
    ("google.genai", "google_genai", "GoogleGenAIInstrumentor"),
    ("botocore", "bedrock", "BedrockInstrumentor"),
    ("groq", "groq", "GroqInstrumentor"),
    ("mistralai", "mistral", "MistralInstrumentor"),
    ("cohere", "cohere", "CohereInstrumentor"),
    ("ollama", "ollama", "OllamaInstrumentor"),
    ("litellm", "litellm", "LiteLLMInstrumentor"),
)


def installed(module: str) -> bool:
    """True when ``module`` can be imported (checked without importing it; a missing parent is False)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def load(module: str, name: str) -> Any:
    """The instrumentor class ``name`` from our module ``module`` (imports it)."""
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __getattr__(name: str) -> Any:
    if name == "ALL":
        return tuple(load(module, cls) for _, module, cls in SPECS)
    if name == "LLMInstrumentor":
        return load("_base", name)
    for _, module, cls in SPECS:
        if cls == name:
            return load(module, cls)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ALL", "SPECS", "installed", "load"]
