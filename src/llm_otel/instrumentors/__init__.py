"""One module per SDK. Each names where to patch and how to read usage; shared wiring lives in ``_base``."""

from __future__ import annotations

from ._base import LLMInstrumentor
from .anthropic import AnthropicInstrumentor
from .bedrock import BedrockInstrumentor
from .google_genai import GoogleGenAIInstrumentor
from .openai import OpenAIInstrumentor

ALL: tuple[type[LLMInstrumentor], ...] = (
    OpenAIInstrumentor,
    AnthropicInstrumentor,
    GoogleGenAIInstrumentor,
    BedrockInstrumentor,
)

__all__ = [
    "ALL",
    "AnthropicInstrumentor",
    "BedrockInstrumentor",
    "GoogleGenAIInstrumentor",
    "LLMInstrumentor",
    "OpenAIInstrumentor",
]
