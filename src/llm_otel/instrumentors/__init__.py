"""One module per SDK. Each names where to patch and how to read usage; shared wiring lives in ``_base``."""

from __future__ import annotations

from ._base import LLMInstrumentor
from .openai import OpenAIInstrumentor

ALL: tuple[type[LLMInstrumentor], ...] = (OpenAIInstrumentor,)

__all__ = ["ALL", "LLMInstrumentor", "OpenAIInstrumentor"]
