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


def fields(obj: Any, names: tuple[str, ...]) -> list[Any]:
    """``field(obj, name)`` for each of ``names``, in one call (the per-call readers' hot path)."""
    if obj is None:
        return [None] * len(names)
    if isinstance(obj, dict):
        return [obj.get(name) for name in names]
    return [getattr(obj, name, None) for name in names]


def _int(value: Any) -> int | None:
    if type(value) is int:
        return value
    return value if isinstance(value, int) and not isinstance(value, bool) else None


_CHAT_USAGE = ("prompt_tokens", "completion_tokens", "prompt_tokens_details", "completion_tokens_details")
_RESPONSES_USAGE = ("input_tokens", "output_tokens", "input_tokens_details", "output_tokens_details")
_INPUT_DETAILS = ("cached_tokens", "cache_write_tokens")


def from_openai(usage: Any) -> Usage | None:
    """OpenAI usage from chat/completions (prompt_/completion_tokens) or Responses (input_/output_tokens).

    OpenAI's input counts already include cached tokens and its output counts include reasoning.
    """
    if usage is None:
        return None
    prompt, completion, details_in, details_out = fields(usage, _CHAT_USAGE)
    prompt = _int(prompt)
    if prompt is None and completion is None:
        inp, out, details_in, details_out = fields(usage, _RESPONSES_USAGE)
        prompt, completion = _int(inp), _int(out)
        if prompt is None and completion is None:
            return None
    cached, cache_write = fields(details_in, _INPUT_DETAILS)
    return Usage(  # embeddings report no completion_tokens: output stays unknown
        input_tokens=prompt,
        output_tokens=_int(completion),
        cache_read_tokens=_int(cached),
        cache_write_tokens=_int(cache_write),
        reasoning_tokens=_int(field(details_out, "reasoning_tokens")),
    )


def from_anthropic(usage: Any) -> Usage | None:
    """Anthropic usage: ``input_tokens`` EXCLUDES cache reads and writes, so they are added back in."""
    if usage is None:
        return None
    inp = _int(field(usage, "input_tokens"))
    out = _int(field(usage, "output_tokens"))
    if inp is None and out is None:
        return None
    cache_read = _int(field(usage, "cache_read_input_tokens"))
    cache_write = _int(field(usage, "cache_creation_input_tokens"))
    return Usage(
        input_tokens=None if inp is None else inp + (cache_read or 0) + (cache_write or 0),
        output_tokens=out,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=_int(field(field(usage, "output_tokens_details"), "thinking_tokens")),
    )


def from_gemini(meta: Any) -> Usage | None:
    """Gemini ``usage_metadata``: prompt includes cached content; candidates EXCLUDE thoughts (added here)."""
    if meta is None:
        return None
    prompt = _int(field(meta, "prompt_token_count"))
    candidates = _int(field(meta, "candidates_token_count"))
    thoughts = _int(field(meta, "thoughts_token_count"))
    tool_prompt = _int(field(meta, "tool_use_prompt_token_count"))
    if prompt is None and candidates is None:
        return None
    output = None if candidates is None and thoughts is None else (candidates or 0) + (thoughts or 0)
    return Usage(
        input_tokens=None if prompt is None else prompt + (tool_prompt or 0),
        output_tokens=output,
        cache_read_tokens=_int(field(meta, "cached_content_token_count")),
        reasoning_tokens=thoughts,
    )


def from_bedrock(usage: Any) -> Usage | None:
    """Bedrock Converse ``usage``: ``inputTokens`` EXCLUDES cache reads and writes, so they are added back in."""
    if not usage:
        return None
    inp = _int(usage.get("inputTokens"))
    out = _int(usage.get("outputTokens"))
    if inp is None and out is None:
        return None
    cache_read = _int(usage.get("cacheReadInputTokens"))
    cache_write = _int(usage.get("cacheWriteInputTokens"))
    return Usage(
        input_tokens=None if inp is None else inp + (cache_read or 0) + (cache_write or 0),
        output_tokens=out,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
    )


def _count(value: Any) -> int | None:
    """A token count that may arrive as a float (Cohere's models declare counts as ``float``)."""
    if isinstance(value, float):
        return int(value) if value.is_integer() and value >= 0 else None
    return _int(value)


def from_cohere(usage: Any) -> Usage | None:
    """Cohere v2 ``usage``. Billed units are what Cohere charges (its raw ``tokens`` add the prompt template it
    wraps the request in), so they are the input and output when reported, else the raw counts are.
    ``cached_tokens`` are prompt tokens served from cache: cache read, part of input."""
    if usage is None:
        return None
    billed = field(usage, "billed_units")
    inp = _count(field(billed, "input_tokens"))
    out = _count(field(billed, "output_tokens"))
    if inp is None and out is None:
        tokens = field(usage, "tokens")
        inp = _count(field(tokens, "input_tokens"))
        out = _count(field(tokens, "output_tokens"))
        if inp is None and out is None:
            return None
    return Usage(input_tokens=inp, output_tokens=out, cache_read_tokens=_count(field(usage, "cached_tokens")))


def from_ollama(response: Any) -> Usage | None:
    """Ollama's final response (``done``): ``prompt_eval_count`` input, ``eval_count`` output. No cache or
    reasoning counts are reported."""
    inp = _int(field(response, "prompt_eval_count"))
    out = _int(field(response, "eval_count"))
    if inp is None and out is None:
        return None
    return Usage(input_tokens=inp, output_tokens=out)


def add(total: Usage | None, part: Usage | None) -> Usage | None:
    """Sum of two usages (for one logical call that made several requests); unknown stays unknown."""
    if total is None:
        return part
    if part is None:
        return total

    def plus(a: int | None, b: int | None) -> int | None:
        return None if a is None and b is None else (a or 0) + (b or 0)

    return Usage(
        plus(total.input_tokens, part.input_tokens),
        plus(total.output_tokens, part.output_tokens),
        plus(total.cache_read_tokens, part.cache_read_tokens),
        plus(total.cache_write_tokens, part.cache_write_tokens),
        plus(total.reasoning_tokens, part.reasoning_tokens),
    )
