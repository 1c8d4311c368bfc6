"""Anthropic Messages wire format: ``/v1/messages`` (and the same body through Vertex AI's ``rawPredict``).

Bedrock's InvokeModel serves Anthropic models with these bodies too, see :mod:`.bedrock`.
"""

from __future__ import annotations

import secrets
from typing import Any

from .content import json_from_schema, split, word_pieces
from .exchange import Exchange, Step, StreamPlan, sse
from .scenario import Scenario, full_norm, norm

__all__ = ["Event", "count_tokens", "message", "message_events", "messages", "text_pieces"]

#: One stream event: (step kind, event name, data, normalized usage delivered with it).
Event = tuple[str, str, dict[str, Any], dict[str, int] | None]
_STREAM_ERROR = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded (simulated)."}}


def _usage(sc: Scenario, output: int, *, thinking: bool) -> dict[str, Any]:
    """Anthropic ``usage``: ``input_tokens`` excludes the cache; ``thinking`` adds the thinking-token detail."""
    usage: dict[str, Any] = {
        "input_tokens": sc.uncached,
        "cache_creation_input_tokens": sc.cache_write,
        "cache_read_input_tokens": sc.cached,
        "output_tokens": output,
    }
    if thinking and sc.reasoning and output == sc.output:
        usage["output_tokens_details"] = {"thinking_tokens": sc.reasoning}
    return usage


def text_pieces(ex: Exchange) -> list[str]:
    """Content pieces; JSON matching the schema when structured output is requested."""
    body = ex.body
    fmt = None
    config = body.get("output_config")
    if isinstance(config, dict) and isinstance(config.get("format"), dict):
        fmt = config["format"]
    elif isinstance(body.get("output_format"), dict):
        fmt = body["output_format"]
    if fmt and fmt.get("type") == "json_schema":
        return split(json_from_schema(fmt.get("schema") or {}), ex.scenario.chunks)
    return word_pieces(ex.rng, ex.scenario.chunks)


def _message_head(ex: Exchange, content: list[Any], stop_reason: str | None) -> dict[str, Any]:
    """The fields every message object starts with."""
    return {
        "id": f"msg_{secrets.token_hex(12)}",
        "type": "message",
        "role": "assistant",
        "model": ex.model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
    }


def message(ex: Exchange, text: str, *, thinking: bool) -> dict[str, Any]:
    """A whole (non-stream) message; ``thinking`` reports the scenario's reasoning tokens."""
    payload = _message_head(ex, [{"type": "text", "text": text}], "end_turn")
    if not ex.scenario.no_usage:
        payload["usage"] = _usage(ex.scenario, ex.scenario.output, thinking=thinking)
    return payload


def message_events(ex: Exchange, pieces: list[str], *, thinking: bool) -> list[Event]:
    """The events of a streamed message (``message_start`` reports input usage, ``message_delta`` the rest)."""
    sc = ex.scenario
    start = _message_head(ex, [], None)
    start_usage = final_usage = None
    message_delta: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
    }
    if not sc.no_usage:
        start["usage"] = _usage(sc, 1, thinking=False)
        start_usage = norm(sc.input, 1, sc.cached, sc.cache_write, 0)
        message_delta["usage"] = _usage(sc, sc.output, thinking=thinking)
        final_usage = full_norm(sc, reasoning=thinking)
    block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    events: list[Event] = [
        ("pre", "message_start", {"type": "message_start", "message": start}, start_usage),
        ("pre", "content_block_start", block, None),
        ("pre", "ping", {"type": "ping"}, None),
    ]
    for p in pieces:
        delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}
        events.append(("content", "content_block_delta", delta, None))
    events += [
        ("post", "content_block_stop", {"type": "content_block_stop", "index": 0}, None),
        ("post", "message_delta", message_delta, final_usage),
        ("post", "message_stop", {"type": "message_stop"}, None),
    ]
    return events


def messages(ex: Exchange) -> None:
    """``/v1/messages`` and Vertex ``:rawPredict`` / ``:streamRawPredict``: JSON, or SSE with ``"stream": true``."""
    pieces = text_pieces(ex)
    if not ex.stream:
        delivered = None if ex.scenario.no_usage else full_norm(ex.scenario)
        ex.send_json(200, message(ex, "".join(pieces), thinking=True), usage=delivered)
        return
    steps = [
        Step(kind, sse(data, event=name), usage)
        for kind, name, data, usage in message_events(ex, pieces, thinking=True)
    ]
    ex.run_stream(StreamPlan("text/event-stream; charset=utf-8", steps, sse(_STREAM_ERROR, event="error")))


def count_tokens(ex: Exchange) -> None:
    """``/v1/messages/count_tokens``."""
    ex.send_json(200, {"input_tokens": ex.scenario.input})
