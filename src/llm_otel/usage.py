"""One provider-agnostic token usage shape, and the per-provider readers that fill it.

Semantics follow the GenAI conventions: ``input_tokens`` INCLUDES cache read and cache write tokens,
``output_tokens`` INCLUDES reasoning tokens. ``None`` means "not reported" (unknown), never zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Usage:
    """Normalized token usage of one call."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None

    @property
    def known(self) -> bool:
        """True when the provider reported at least input or output tokens."""
        return self.input_tokens is not None or self.output_tokens is not None

    def by_type(self) -> dict[str, int]:
        """Known counts keyed by ``gen_ai.token.type``-style names (input, output, cache_read, ...)."""
        out: dict[str, int] = {}
        if self.input_tokens is not None:
            out["input"] = self.input_tokens
        if self.output_tokens is not None:
            out["output"] = self.output_tokens
        if self.cache_read_tokens is not None:
            out["cache_read"] = self.cache_read_tokens
        if self.cache_write_tokens is not None:
            out["cache_write"] = self.cache_write_tokens
        if self.reasoning_tokens is not None:
            out["reasoning"] = self.reasoning_tokens
        return out


def field(obj: Any, name: str) -> Any:
    """Read ``name`` from a pydantic model, plain object or dict; None when absent."""
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def from_openai(usage: Any) -> Usage | None:
    """OpenAI usage from chat/completions (prompt_/completion_tokens) or Responses (input_/output_tokens).

    OpenAI's input counts already include cached tokens and its output counts include reasoning.
    """
    if usage is None:
        return None
    prompt = _int(field(usage, "prompt_tokens"))
    if prompt is not None or field(usage, "completion_tokens") is not None:
        details_in = field(usage, "prompt_tokens_details")
        details_out = field(usage, "completion_tokens_details")
        return Usage(  # embeddings report no completion_tokens: output stays unknown
            input_tokens=prompt,
            output_tokens=_int(field(usage, "completion_tokens")),
            cache_read_tokens=_int(field(details_in, "cached_tokens")),
            cache_write_tokens=_int(field(details_in, "cache_write_tokens")),
            reasoning_tokens=_int(field(details_out, "reasoning_tokens")),
        )
    inp = _int(field(usage, "input_tokens"))
    out = _int(field(usage, "output_tokens"))
    if inp is None and out is None:
        return None
    details_in = field(usage, "input_tokens_details")
    details_out = field(usage, "output_tokens_details")
    return Usage(
        input_tokens=inp,
        output_tokens=out,
        cache_read_tokens=_int(field(details_in, "cached_tokens")),
        cache_write_tokens=_int(field(details_in, "cache_write_tokens")),
        reasoning_tokens=_int(field(details_out, "reasoning_tokens")),
    )
