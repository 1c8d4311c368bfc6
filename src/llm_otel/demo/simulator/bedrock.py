"""AWS Bedrock runtime wire format: Converse, ConverseStream, InvokeModel and InvokeModelWithResponseStream.

Streams use AWS event-stream framing. InvokeModel bodies follow the model family, chosen by the model id
(after an optional cross-region prefix such as ``us.``): Amazon Titan Text, Amazon Nova and Meta Llama have
their own; Anthropic and every other model get Anthropic Messages bodies.
"""

from __future__ import annotations

import base64
import json
import re
import struct
import zlib
from collections.abc import Callable
from typing import Any, NamedTuple

from . import anthropic
from .content import word_pieces
from .exchange import Exchange, Step, StreamPlan
from .scenario import Scenario, full_norm, norm

__all__ = ["converse", "invoke", "model_family"]

_EVENT_STREAM = "application/vnd.amazon.eventstream"
_REGION_PREFIX = re.compile(r"^(?:us|us-gov|eu|apac|ap|ca|jp|au|global)\.")
#: An invoke-stream event: (step kind, chunk payload, normalized usage delivered with it).
_Chunk = tuple[str, dict[str, Any], dict[str, int] | None]


# --------------------------------------------------------------------------------------
# AWS event-stream framing
# --------------------------------------------------------------------------------------


def _aws_event(headers: dict[str, str], payload: bytes) -> bytes:
    """Encode one AWS event-stream message (prelude CRC32 and message CRC32)."""
    encoded = b""
    for name, value in headers.items():
        n = name.encode()
        v = value.encode()
        encoded += bytes([len(n)]) + n + b"\x07" + struct.pack(">H", len(v)) + v
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    message = prelude + struct.pack(">I", zlib.crc32(prelude) & 0xFFFFFFFF) + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message) & 0xFFFFFFFF)


def _json_event(event_type: str, payload: Any) -> bytes:
    """An event-stream ``event`` message with a JSON payload."""
    return _aws_event(
        {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"},
        json.dumps(payload, separators=(",", ":")).encode(),
    )


def _chunk_event(payload: dict[str, Any]) -> bytes:
    """An InvokeModelWithResponseStream ``chunk``: the model's JSON, base64-encoded in ``bytes``."""
    encoded = base64.b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()
    return _json_event("chunk", {"bytes": encoded})


_STREAM_ERROR = _aws_event(
    {":exception-type": "modelStreamErrorException", ":content-type": "application/json", ":message-type": "exception"},
    json.dumps({"message": "Model stream error (simulated)."}).encode(),
)


# --------------------------------------------------------------------------------------
# Converse
# --------------------------------------------------------------------------------------


def _converse_usage(sc: Scenario) -> dict[str, Any]:
    """Converse ``usage``: ``inputTokens`` excludes the cache."""
    return {
        "inputTokens": sc.uncached,
        "outputTokens": sc.output,
        "totalTokens": sc.input + sc.output,
        "cacheReadInputTokens": sc.cached,
        "cacheWriteInputTokens": sc.cache_write,
    }


def converse(ex: Exchange) -> None:
    """``/model/{id}/converse`` (JSON) and ``/converse-stream`` (event stream, usage in ``metadata``)."""
    sc = ex.scenario
    delivered = None if sc.no_usage else full_norm(sc, reasoning=False)
    pieces = word_pieces(ex.rng, sc.chunks)
    if not ex.stream:
        payload: dict[str, Any] = {
            "output": {"message": {"role": "assistant", "content": [{"text": "".join(pieces)}]}},
            "stopReason": "end_turn",
            "metrics": {"latencyMs": ex.elapsed_ms()},
        }
        if not sc.no_usage:
            payload["usage"] = _converse_usage(sc)
        ex.send_json(200, payload, usage=delivered)
        return

    def metadata() -> bytes:
        payload: dict[str, Any] = {"metrics": {"latencyMs": ex.elapsed_ms()}}
        if not sc.no_usage:
            payload["usage"] = _converse_usage(sc)
        return _json_event("metadata", payload)

    steps = [Step("pre", _json_event("messageStart", {"role": "assistant"}))]
    steps += [
        Step("content", _json_event("contentBlockDelta", {"delta": {"text": p}, "contentBlockIndex": 0}))
        for p in pieces
    ]
    steps += [
        Step("post", _json_event("contentBlockStop", {"contentBlockIndex": 0})),
        Step("post", _json_event("messageStop", {"stopReason": "end_turn"})),
        Step("post", metadata, delivered),
    ]
    ex.run_stream(StreamPlan(_EVENT_STREAM, steps, _STREAM_ERROR))


# --------------------------------------------------------------------------------------
# InvokeModel: one body format per model family
# --------------------------------------------------------------------------------------


def model_family(model_id: str) -> str:
    """``titan``, ``nova``, ``llama`` or ``anthropic`` (the default) for a Bedrock model id."""
    base = _REGION_PREFIX.sub("", model_id)
    if base.startswith("amazon.titan-text"):
        return "titan"
    if base.startswith("amazon.nova"):
        return "nova"
    if base.startswith("meta.llama"):
        return "llama"
    return "anthropic"


def _titan(sc: Scenario, pieces: list[str]) -> tuple[dict[str, Any], list[_Chunk]]:
    """Amazon Titan Text: ``results`` with ``completionReason``; chunks count output tokens so far."""
    body = {
        "inputTextTokenCount": sc.input,
        "results": [{"tokenCount": sc.output, "outputText": "".join(pieces), "completionReason": "FINISH"}],
    }
    chunks: list[_Chunk] = []
    for i, p in enumerate(pieces, start=1):
        out = sc.output * i // len(pieces)
        data = {
            "outputText": p,
            "index": 0,
            "totalOutputTextTokenCount": out,
            "completionReason": "FINISH" if i == len(pieces) else None,
            "inputTextTokenCount": sc.input,
        }
        chunks.append(("content", data, norm(sc.input, out)))
    return body, chunks


def _nova_usage(sc: Scenario) -> dict[str, int]:
    """Amazon Nova ``usage``."""
    return {"inputTokens": sc.input, "outputTokens": sc.output, "totalTokens": sc.input + sc.output}


def _nova(sc: Scenario, pieces: list[str]) -> tuple[dict[str, Any], list[_Chunk]]:
    """Amazon Nova: Converse-like message, and stream chunks ending with ``metadata.usage``."""
    body = {
        "output": {"message": {"role": "assistant", "content": [{"text": "".join(pieces)}]}},
        "stopReason": "end_turn",
        "usage": _nova_usage(sc),
    }
    chunks: list[_Chunk] = [("pre", {"messageStart": {"role": "assistant"}}, None)]
    chunks += [("content", {"contentBlockDelta": {"delta": {"text": p}, "contentBlockIndex": 0}}, None) for p in pieces]
    chunks += [
        ("post", {"contentBlockStop": {"contentBlockIndex": 0}}, None),
        ("post", {"messageStop": {"stopReason": "end_turn"}}, None),
        ("post", {"metadata": {"usage": _nova_usage(sc)}}, norm(sc.input, sc.output)),
    ]
    return body, chunks


def _llama(sc: Scenario, pieces: list[str]) -> tuple[dict[str, Any], list[_Chunk]]:
    """Meta Llama: ``generation`` with token counts; chunks count generated tokens so far."""
    body = {
        "generation": "".join(pieces),
        "prompt_token_count": sc.input,
        "generation_token_count": sc.output,
        "stop_reason": "stop",
    }
    chunks: list[_Chunk] = []
    for i, p in enumerate(pieces, start=1):
        out = sc.output * i // len(pieces)
        data = {
            "generation": p,
            "prompt_token_count": sc.input if i == 1 else None,
            "generation_token_count": out,
            "stop_reason": "stop" if i == len(pieces) else None,
        }
        chunks.append(("content", data, norm(sc.input, out)))
    return body, chunks


#: Body and stream chunks of each family, and the token-count fields that ``no_usage`` leaves out.
_FORMATS: dict[str, tuple[Callable[[Scenario, list[str]], tuple[dict[str, Any], list[_Chunk]]], frozenset[str]]] = {
    "titan": (_titan, frozenset({"inputTextTokenCount", "tokenCount", "totalOutputTextTokenCount"})),
    "nova": (_nova, frozenset({"metadata", "usage"})),
    "llama": (_llama, frozenset({"prompt_token_count", "generation_token_count"})),
}
#: (header, invocation metric) of each normalized count; Anthropic's input excludes the cache, as Bedrock reports it.
_COUNT_NAMES = {
    "input": ("x-amzn-bedrock-input-token-count", "inputTokenCount"),
    "output": ("x-amzn-bedrock-output-token-count", "outputTokenCount"),
    "cache_read": ("x-amzn-bedrock-cache-read-input-token-count", "cacheReadInputTokenCount"),
    "cache_write": ("x-amzn-bedrock-cache-write-input-token-count", "cacheWriteInputTokenCount"),
}


def _without(data: Any, keys: frozenset[str]) -> Any:
    """``data`` without the given keys, at any depth."""
    if isinstance(data, dict):
        return {k: _without(v, keys) for k, v in data.items() if k not in keys}
    if isinstance(data, list):
        return [_without(v, keys) for v in data]
    return data


class _Answer(NamedTuple):
    """One InvokeModel answer in a model family's format (without any usage on ``no_usage``)."""

    body: dict[str, Any]  # the InvokeModel body
    chunks: list[_Chunk]  # the InvokeModelWithResponseStream chunks
    delivered: dict[str, int] | None  # normalized usage of the body
    counts: dict[str, int]  # token counts for headers and invocation metrics, by normalized name


def _answer(ex: Exchange, family: str) -> _Answer:
    """The answer in the model family's format."""
    sc = ex.scenario
    if family == "anthropic":
        pieces = anthropic.text_pieces(ex)
        body = anthropic.message(ex, "".join(pieces), thinking=False)
        chunks = [
            (kind, data, usage) for kind, _name, data, usage in anthropic.message_events(ex, pieces, thinking=False)
        ]
        counts = {"input": sc.uncached, "output": sc.output, "cache_read": sc.cached, "cache_write": sc.cache_write}
        delivered = full_norm(sc, reasoning=False)
    else:
        build, usage_keys = _FORMATS[family]
        body, chunks = build(sc, word_pieces(ex.rng, sc.chunks))
        counts = {"input": sc.input, "output": sc.output}
        delivered = norm(sc.input, sc.output)
        if sc.no_usage:
            body = _without(body, usage_keys)
            chunks = [(kind, _without(data, usage_keys), None) for kind, data, _ in chunks]
            chunks = [c for c in chunks if c[1]]
    return _Answer(body, chunks, None if sc.no_usage else delivered, {} if sc.no_usage else counts)


def invoke(ex: Exchange) -> None:
    """``/model/{id}/invoke`` (JSON, counts in headers) and ``/invoke-with-response-stream`` (event stream)."""
    body, chunks, delivered, counts = _answer(ex, model_family(ex.model))
    if not ex.stream:
        headers = {"x-amzn-bedrock-invocation-latency": str(ex.elapsed_ms())}
        headers.update({_COUNT_NAMES[name][0]: str(count) for name, count in counts.items()})
        ex.send_json(200, body, headers, usage=delivered)
        return
    first_byte: list[int] = []

    def first(data: dict[str, Any]) -> Callable[[], bytes]:
        def build() -> bytes:
            first_byte.append(ex.elapsed_ms())
            return _chunk_event(data)

        return build

    def last(data: dict[str, Any]) -> Callable[[], bytes]:
        def build() -> bytes:
            if not counts:
                return _chunk_event(data)
            metrics = {_COUNT_NAMES[name][1]: count for name, count in counts.items()}
            metrics.update(invocationLatency=ex.elapsed_ms(), firstByteLatency=first_byte[0] if first_byte else 0)
            return _chunk_event({**data, "amazon-bedrock-invocationMetrics": metrics})

        return build

    steps = []
    for index, (kind, data, usage) in enumerate(chunks):
        if index == 0:
            steps.append(Step(kind, first(data), usage))
        elif index == len(chunks) - 1:
            steps.append(Step(kind, last(data), usage))
        else:
            steps.append(Step(kind, _chunk_event(data), usage))
    ex.run_stream(StreamPlan(_EVENT_STREAM, steps, _STREAM_ERROR, {"x-amzn-bedrock-content-type": "application/json"}))
