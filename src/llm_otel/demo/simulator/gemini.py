"""Google Gemini wire format: ``generateContent``, ``streamGenerateContent`` (SSE), embeddings, ``countTokens``."""

from __future__ import annotations

import json
import secrets
from typing import Any

from .content import embedding, json_from_schema, split, word_pieces
from .exchange import Exchange, Step, StreamPlan, sse
from .scenario import Scenario, full_norm, norm

__all__ = ["batch_embed_contents", "count_tokens", "embed_content", "generate_content"]

_SEP = "\r\n\r\n"  # Google ends its server-sent events with CRLF pairs


def _usage(sc: Scenario, candidates: int, thoughts: int) -> dict[str, Any]:
    """Gemini ``usageMetadata``: ``candidatesTokenCount`` excludes thoughts."""
    usage: dict[str, Any] = {
        "promptTokenCount": sc.input,
        "candidatesTokenCount": candidates,
        "totalTokenCount": sc.input + candidates + thoughts,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": sc.input}],
    }
    if sc.cached:
        usage["cachedContentTokenCount"] = sc.cached
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def _text(ex: Exchange) -> list[str]:
    """Content pieces; JSON matching the schema when a JSON response is requested."""
    config = ex.body.get("generationConfig") or ex.body.get("generation_config") or {}
    if isinstance(config, dict) and config.get("responseMimeType") == "application/json":
        schema = config.get("responseJsonSchema") or config.get("responseSchema") or {}
        return split(json_from_schema(schema), ex.scenario.chunks)
    return word_pieces(ex.rng, ex.scenario.chunks)


def count_tokens(ex: Exchange) -> None:
    """``:countTokens``."""
    ex.send_json(200, {"totalTokens": ex.scenario.input})


def _embeddings(ex: Exchange, requests: Any) -> list[dict[str, Any]]:
    """One embedding per embed request."""
    result = []
    for item in requests or []:
        dims = int(item.get("outputDimensionality") or 8) if isinstance(item, dict) else 8
        content = item.get("content") if isinstance(item, dict) else item
        result.append({"values": embedding(f"{ex.provider.seed}:{json.dumps(content)}", dims)})
    return result


def embed_content(ex: Exchange) -> None:
    """``:embedContent``: one embedding."""
    embeddings = _embeddings(ex, [ex.body])
    ex.send_json(200, {"embedding": embeddings[0]})


def batch_embed_contents(ex: Exchange) -> None:
    """``:batchEmbedContents``: one embedding per request."""
    ex.send_json(200, {"embeddings": _embeddings(ex, ex.body.get("requests"))})


def generate_content(ex: Exchange) -> None:
    """``:generateContent`` (JSON) and ``:streamGenerateContent`` (SSE, usage so far on every chunk).

    With the ``tool=NAME`` scenario token, the model calls function NAME until the request carries its answer.
    """
    sc, body = ex.scenario, ex.body
    pieces = _text(ex)
    response_id = secrets.token_hex(8)
    answered = any(
        isinstance(part, dict) and ("functionResponse" in part or "function_response" in part)
        for content in body.get("contents") or []
        if isinstance(content, dict)
        for part in content.get("parts") or []
    )
    call_tool = sc.tool is not None and not answered

    def response(text: str, finish: bool) -> dict[str, Any]:
        part: dict[str, Any] = {"functionCall": {"name": sc.tool, "args": {}}} if call_tool else {"text": text}
        candidate: dict[str, Any] = {"content": {"parts": [part], "role": "model"}, "index": 0}
        if finish:
            candidate["finishReason"] = "STOP"
        return {"candidates": [candidate], "modelVersion": ex.model, "responseId": response_id}

    if not ex.stream:
        payload = response("".join(pieces), True)
        delivered = None
        if not sc.no_usage:
            payload["usageMetadata"] = _usage(sc, sc.visible, sc.reasoning)
            delivered = full_norm(sc, cache_write=False)
        ex.send_json(200, payload, usage=delivered)
        return
    steps = []
    n = len(pieces)
    for i, p in enumerate(pieces, start=1):
        last = i == n
        data = response(p, last)
        delivered = None
        if not sc.no_usage:
            candidates = sc.visible * i // n
            thoughts = sc.reasoning if last else 0
            data["usageMetadata"] = _usage(sc, candidates, thoughts)
            delivered = norm(sc.input, candidates + thoughts, sc.cached, 0, thoughts)
        steps.append(Step("content", sse(data, sep=_SEP), delivered))
    error = {"error": {"code": 500, "message": "Internal error while streaming (simulated).", "status": "INTERNAL"}}
    ex.run_stream(StreamPlan("text/event-stream", steps, sse(error, sep=_SEP)))
