"""One module per SDK. Each names where to patch and how to read usage; shared wiring lives in ``_base``."""

from __future__ import annotations

from ._base import LLMInstrumentor
from .anthropic import AnthropicInstrumentor
from .bedrock import BedrockInstrumentor
from .cohere import CohereInstrumentor
from .google_genai import GoogleGenAIInstrumentor
from .groq import GroqInstrumentor
from .litellm import LiteLLMInstrumentor
from .mistral import MistralInstrumentor
from .ollama import OllamaInstrumentor
from .openai import OpenAIInstrumentor

ALL: tuple[type[LLMInstrumentor], ...] = (
    OpenAIInstrumentor,
    AnthropicInstrumentor,
    GoogleGenAIInstrumentor,
    BedrockInstrumentor,
    GroqInstrumentor,
    MistralInstrumentor,
    CohereInstrumentor,
    OllamaInstrumentor,
    LiteLLMInstrumentor,
)

__all__ = [
    "ALL",
    "AnthropicInstrumentor",
    "BedrockInstrumentor",
    "CohereInstrumentor",
    "GoogleGenAIInstrumentor",
    "GroqInstrumentor",
    "LLMInstrumentor",
    "LiteLLMInstrumentor",
    "MistralInstrumentor",
    "OllamaInstrumentor",
    "OpenAIInstrumentor",
]
