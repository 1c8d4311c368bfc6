"""OpenAI wire format: chat completions, legacy completions, embeddings, and the flavours of OpenAI-compatible APIs.

Azure serves the same format under ``/openai/deployments/{name}/...``; Groq and Mistral (told apart by their SDK's
user agent, see :mod:`.routes`) differ in where streams carry usage and which usage details they report.
"""

from __future__ import annotations

import base64
import json
import secrets
import struct
import time
from typing import Any

from .content import embedding, json_from_schema, split, word_pieces
from .exchange import Exchange, Step, StreamPlan, sse
from .scenario import Scenario, full_norm, norm

__all__ = ["chat", "completions", "embeddings", "error_chunk", "structured_text"]

_MAX_CHOICES = 128
#: Azure opens a chat stream with this chunk: the prompt's content-filter verdict, before any choice.
_AZURE_FILTER_CHUNK = {
    "id": "",
    "object": "",
    "created": 0,
    "model": "",
    "prompt_filter_results": [
        {"prompt_index": 0, "content_filter_results": {"hate": {"filtered": False, "severity": "safe"}}}
    ],
    "choices": [],
}
_EVENT_STREAM = "text/event-stream; charset=utf-8"


def usage(sc: Scenario) -> dict[str, Any]:
    """OpenAI chat/completions ``usage``."""
    return {
        "prompt_tokens": sc.input,
        "completion_tokens": sc.output,
        "total_tokens": sc.input + sc.output,
        "prompt_tokens_details": {"cached_tokens": sc.cached, "cache_write_tokens": sc.cache_write, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": sc.reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _flavour_usage(ex: Exchange) -> tuple[dict[str, Any], dict[str, int]]:
    """Usage as this OpenAI-compatible provider reports it, and its normalized form."""
    sc = ex.scenario
    if ex.flavour == "mistral":  # prompt caching only: no cache-write or reasoning counts
        reported = {
            "prompt_tokens": sc.input,
            "completion_tokens": sc.output,
            "total_tokens": sc.input + sc.output,
            "prompt_tokens_details": {"cached_tokens": sc.cached},
        }
        return reported, full_norm(sc, cache_write=False, reasoning=False)
    reported = usage(sc)
    if ex.flavour == "groq":  # Groq adds its timings
        reported.update(queue_time=0.01, prompt_time=0.002, completion_time=0.02, total_time=0.022)
    return reported, full_norm(sc)


def structured_text(ex: Exchange, schema_holder: Any) -> list[str]:
    """Content pieces; JSON matching the schema when structured output is requested."""
    n = ex.scenario.chunks
    if isinstance(schema_holder, dict):
        kind = schema_holder.get("type")
        if kind == "json_schema":
            spec = schema_holder.get("json_schema", schema_holder)
            schema = spec.get("schema") if isinstance(spec, dict) else None
            return split(json_from_schema(schema or {}), n)
        if kind == "json_object":
            return split('{"result":"x"}', n)
    return word_pieces(ex.rng, n)


def error_chunk() -> dict[str, Any]:
    """The error event an OpenAI stream sends instead of its remaining chunks."""
    return {
        "error": {
            "message": "The server had an error while streaming (simulated).",
            "type": "server_error",
            "param": None,
            "code": "server_error",
        }
    }


def _include_usage(ex: Exchange) -> bool:
    """Whether the stream ends with a usage chunk (``stream_options.include_usage`` or ``always_usage``)."""
    sc = ex.scenario
    options = ex.body.get("stream_options") or {}
    return (bool(options.get("include_usage")) or sc.always_usage) and not sc.no_usage


def _choice_count(ex: Exchange) -> int | None:
    """The request's ``n`` (default 1); None after answering 400 when it is not a count OpenAI accepts."""
    n = ex.body.get("n")
    if n is None:
        return 1
    if isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= _MAX_CHOICES:
        return n
    ex.error(400, f"simulated provider: n must be an integer from 1 to {_MAX_CHOICES}, not {n!r}")
    return None


def chat(ex: Exchange) -> None:
    """``/v1/chat/completions``: ``n`` choices, choice i finishing with "stop" (i even) or "length" (i odd)."""
    n = _choice_count(ex)
    if n is None:
        return
    texts = [structured_text(ex, ex.body.get("response_format")) for _ in range(n)]
    finishes = ["stop" if i % 2 == 0 else "length" for i in range(n)]
    common = {
        "id": f"chatcmpl-{secrets.token_hex(12)}",
        "created": int(time.time()),
        "model": ex.model,
        "system_fingerprint": "fp_simulated",
        "service_tier": "default",
    }
    if ex.stream:
        _chat_stream(ex, common, texts, finishes)
        return
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": "".join(pieces), "refusal": None, "annotations": []},
            "logprobs": None,
            "finish_reason": finishes[i],
        }
        for i, pieces in enumerate(texts)
    ]
    payload: dict[str, Any] = {**common, "object": "chat.completion", "choices": choices}
    reported, full = _flavour_usage(ex)
    if not ex.scenario.no_usage:
        payload["usage"] = reported
    ex.send_json(200, payload, usage=None if ex.scenario.no_usage else full)


def _chat_stream(ex: Exchange, common: dict[str, Any], texts: list[list[str]], finishes: list[str]) -> None:
    """Azure's content-filter chunk (``content_filter``), a role chunk per choice, each piece once per choice,
    a finish chunk per choice, then the usage chunk when asked for; each chunk carries one choice."""
    sc = ex.scenario
    reported, full = _flavour_usage(ex)
    delivered = None if sc.no_usage else full
    include = _include_usage(ex) and ex.flavour != "mistral"  # Mistral puts usage on its last chunk regardless

    def chunk(index: int, delta: dict[str, Any], finish: str | None, **extra: Any) -> bytes:
        data: dict[str, Any] = {
            **common,
            "object": "chat.completion.chunk",
            "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include:
            data["usage"] = None
        data.update(extra)
        return sse(data)

    n = len(texts)
    steps = [Step("pre", sse(_AZURE_FILTER_CHUNK))] if sc.content_filter else []
    steps += [Step("pre", chunk(i, {"role": "assistant", "content": "", "refusal": None}, None)) for i in range(n)]
    steps += [
        Step("content", chunk(i, {"content": p}, None)) for row in zip(*texts, strict=True) for i, p in enumerate(row)
    ]
    steps += [Step("post", chunk(i, {}, finishes[i])) for i in range(n - 1)]
    extra = _last_chunk_extra(ex, common["id"], reported)
    steps.append(Step("post", chunk(n - 1, {}, finishes[-1], **extra), delivered if extra else None))
    if include:
        data = {**common, "object": "chat.completion.chunk", "choices": [], "usage": reported}
        steps.append(Step("post", sse(data), delivered))
    steps.append(Step("post", sse("[DONE]")))
    ex.run_stream(StreamPlan(_EVENT_STREAM, steps, sse(error_chunk())))


def _last_chunk_extra(ex: Exchange, cid: str, reported: dict[str, Any]) -> dict[str, Any]:
    """Usage that Groq (``x_groq.usage``) and Mistral (``usage``) put on every stream's last chunk."""
    if ex.scenario.no_usage:
        return {}
    if ex.flavour == "groq":
        return {"x_groq": {"id": f"req_{cid[9:]}", "usage": reported}}
    if ex.flavour == "mistral":
        return {"usage": reported}
    return {}


def completions(ex: Exchange) -> None:
    """``/v1/completions`` (legacy); ``empty_delta`` adds ``"delta": {}`` to the final chunk's choice."""
    sc = ex.scenario
    pieces = word_pieces(ex.rng, sc.chunks)
    common = {
        "id": f"cmpl-{secrets.token_hex(12)}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": ex.model,
        "system_fingerprint": "fp_simulated",
    }
    delivered = None if sc.no_usage else full_norm(sc)
    if not ex.stream:
        payload: dict[str, Any] = {
            **common,
            "choices": [{"text": "".join(pieces), "index": 0, "logprobs": None, "finish_reason": "stop"}],
        }
        if not sc.no_usage:
            payload["usage"] = usage(sc)
        ex.send_json(200, payload, usage=delivered)
        return
    include = _include_usage(ex)

    def chunk(text: str, finish: str | None, **extra: Any) -> bytes:
        data: dict[str, Any] = {
            **common,
            "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish, **extra}],
        }
        if include:
            data["usage"] = None
        return sse(data)

    steps = [Step("content", chunk(p, None)) for p in pieces]
    steps.append(Step("post", chunk("", "stop", **({"delta": {}} if sc.empty_delta else {}))))
    if include:
        steps.append(Step("post", sse({**common, "choices": [], "usage": usage(sc)}), delivered))
    steps.append(Step("post", sse("[DONE]")))
    ex.run_stream(StreamPlan(_EVENT_STREAM, steps, sse(error_chunk())))


def embeddings(ex: Exchange) -> None:
    """``/v1/embeddings``: float or base64 vectors, ``dimensions`` long (default 8)."""
    sc, body = ex.scenario, ex.body
    raw = body.get("input", "")
    inputs = raw if isinstance(raw, list) and raw and not isinstance(raw[0], int) else [raw]
    dims = int(body.get("dimensions") or 8)
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, item in enumerate(inputs):
        vector = embedding(f"{ex.provider.seed}:{json.dumps(item)}", dims)
        encoded: Any = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode() if as_base64 else vector
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    payload: dict[str, Any] = {"id": f"emb-{secrets.token_hex(8)}", "object": "list", "data": data, "model": ex.model}
    delivered = None
    if not sc.no_usage:
        payload["usage"] = {"prompt_tokens": sc.input, "total_tokens": sc.input}
        if ex.flavour == "mistral":
            payload["usage"]["completion_tokens"] = 0
        delivered = norm(sc.input, 0)
    ex.send_json(200, payload, usage=delivered)
