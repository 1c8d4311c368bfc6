"""Cohere wire formats: v2 (``/v2/chat`` with SSE streams, ``/v2/embed``) and v1 (``/v1/chat``, ``/v1/generate``
with newline-delimited JSON streams, ``/v1/embed``).

Usage is reported as billed units (``in``/``out``); raw ``tokens`` add a fixed prompt overhead the way Cohere's
own counts include its prompt template.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from .content import embedding, word_pieces
from .exchange import Exchange, Step, StreamPlan, json_line, sse
from .scenario import Scenario, full_norm, norm

__all__ = ["chat", "chat_v1", "embed", "embed_v1", "generate"]

#: Cohere's raw ``tokens.input_tokens`` include its own prompt template; only billed units are charged.
_TEMPLATE_TOKENS = 30
_NDJSON = "application/stream+json"


def _counts(sc: Scenario) -> dict[str, Any]:
    """``billed_units`` (what is charged) and ``tokens`` (raw counts, with the template)."""
    return {
        "billed_units": {"input_tokens": sc.input, "output_tokens": sc.output},
        "tokens": {"input_tokens": sc.input + _TEMPLATE_TOKENS, "output_tokens": sc.output},
    }


def _embed(ex: Exchange, version: str) -> tuple[list[str], list[list[float]], dict[str, Any], dict[str, int] | None]:
    """Texts, vectors (``output_dimension`` long, default 8), ``meta`` and normalized usage of an embed call."""
    body, sc = ex.body, ex.scenario
    texts = body.get("texts") or body.get("inputs") or []
    dims = int(body.get("output_dimension") or 8)
    vectors = [embedding(f"{ex.provider.seed}:{json.dumps(t)}", dims) for t in texts]
    meta: dict[str, Any] = {"api_version": {"version": version}}
    if sc.no_usage:
        return texts, vectors, meta, None
    meta["billed_units"] = {"input_tokens": sc.input}
    return texts, vectors, meta, norm(sc.input, 0)


# --------------------------------------------------------------------------------------
# v2
# --------------------------------------------------------------------------------------


def embed(ex: Exchange) -> None:
    """``/v2/embed``: vectors by type (``embedding_types``, default float)."""
    texts, vectors, meta, delivered = _embed(ex, "2")
    kinds = ex.body.get("embedding_types") or ["float"]
    payload = {
        "id": uuid.uuid4().hex,
        "response_type": "embeddings_by_type",
        "embeddings": {kind: vectors for kind in kinds},
        "texts": texts,
        "meta": meta,
    }
    ex.send_json(200, payload, usage=delivered)


def chat(ex: Exchange) -> None:
    """``/v2/chat``: JSON, or SSE with ``"stream": true`` (usage in the ``message-end`` event)."""
    sc = ex.scenario
    rid = uuid.uuid4().hex
    delivered = None if sc.no_usage else full_norm(sc, cache_write=False, reasoning=False)
    usage = None if sc.no_usage else {**_counts(sc), "cached_tokens": sc.cached}
    pieces = word_pieces(ex.rng, sc.chunks)
    if not ex.stream:
        payload: dict[str, Any] = {
            "id": rid,
            "finish_reason": "COMPLETE",
            "message": {"role": "assistant", "content": [{"type": "text", "text": "".join(pieces)}]},
        }
        if usage is not None:
            payload["usage"] = usage
        ex.send_json(200, payload, usage=delivered)
        return
    start = {"message": {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}}
    block = {"message": {"content": {"type": "text", "text": ""}}}
    end: dict[str, Any] = {"finish_reason": "COMPLETE"}
    if usage is not None:
        end["usage"] = usage
    steps = [
        Step("pre", sse({"id": rid, "type": "message-start", "delta": start})),
        Step("pre", sse({"type": "content-start", "index": 0, "delta": block})),
    ]
    steps += [
        Step("content", sse({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": p}}}}))
        for p in pieces
    ]
    steps += [
        Step("post", sse({"type": "content-end", "index": 0})),
        Step("post", sse({"id": rid, "type": "message-end", "delta": end}), delivered),
    ]
    error = sse({"id": rid, "type": "message-end", "delta": {"finish_reason": "ERROR", "error": "simulated"}})
    ex.run_stream(StreamPlan("text/event-stream", steps, error))


# --------------------------------------------------------------------------------------
# v1
# --------------------------------------------------------------------------------------


def _meta_v1(sc: Scenario) -> dict[str, Any]:
    """v1 ``meta``: API version, and billed units and raw tokens unless ``no_usage``."""
    meta: dict[str, Any] = {"api_version": {"version": "1"}}
    if not sc.no_usage:
        meta.update(_counts(sc))
    return meta


def embed_v1(ex: Exchange) -> None:
    """``/v1/embed``: a list of float vectors, or vectors by type when ``embedding_types`` is given."""
    texts, vectors, meta, delivered = _embed(ex, "1")
    kinds = ex.body.get("embedding_types")
    payload: dict[str, Any] = {"id": uuid.uuid4().hex, "response_type": "embeddings_floats", "embeddings": vectors}
    if kinds:
        payload.update(response_type="embeddings_by_type", embeddings={kind: vectors for kind in kinds})
    payload.update(texts=texts, meta=meta)
    ex.send_json(200, payload, usage=delivered)


def chat_v1(ex: Exchange) -> None:
    """``/v1/chat``: JSON, or NDJSON with ``"stream": true`` (``stream-start``, ``text-generation``s,
    ``stream-end`` carrying the whole response)."""
    pieces = word_pieces(ex.rng, ex.scenario.chunks)
    generation_id = str(uuid.uuid4())
    response = {
        "response_id": str(uuid.uuid4()),
        "generation_id": generation_id,
        "text": "".join(pieces),
        "finish_reason": "COMPLETE",
        "chat_history": [],
        "meta": _meta_v1(ex.scenario),
    }
    start = {"is_finished": False, "event_type": "stream-start", "generation_id": generation_id}
    failed = {**response, "text": "", "finish_reason": "ERROR", "meta": {"api_version": {"version": "1"}}}
    error = {"is_finished": True, "event_type": "stream-end", "finish_reason": "ERROR", "response": failed}
    _respond_v1(ex, response, pieces, response, error, start)


def generate(ex: Exchange) -> None:
    """``/v1/generate``: JSON, or NDJSON with ``"stream": true`` (``text-generation``s, then ``stream-end``)."""
    pieces = word_pieces(ex.rng, ex.scenario.chunks)
    generation = {"id": str(uuid.uuid4()), "text": "".join(pieces), "finish_reason": "COMPLETE"}
    meta = _meta_v1(ex.scenario)
    response = {"id": str(uuid.uuid4()), "generations": [generation], "prompt": ex.body.get("prompt"), "meta": meta}
    end_response = {"id": response["id"], "generations": [generation], "meta": meta}
    error = {
        "event_type": "stream-error",
        "is_finished": True,
        "finish_reason": "ERROR",
        "err": "simulated stream error",
    }
    _respond_v1(ex, response, pieces, end_response, error)


def _respond_v1(
    ex: Exchange,
    response: dict[str, Any],
    pieces: list[str],
    end_response: dict[str, Any],
    error: dict[str, Any],
    start: dict[str, Any] | None = None,
) -> None:
    """Send ``response`` as JSON, or stream NDJSON: ``start``, a ``text-generation`` per piece, ``stream-end``."""
    sc = ex.scenario
    delivered = None if sc.no_usage else norm(sc.input, sc.output)
    if not ex.stream:
        ex.send_json(200, response, usage=delivered)
        return
    steps = [Step("pre", json_line(start))] if start else []
    steps += [
        Step("content", json_line({"is_finished": False, "event_type": "text-generation", "text": p})) for p in pieces
    ]
    end = {"is_finished": True, "event_type": "stream-end", "finish_reason": "COMPLETE", "response": end_response}
    steps.append(Step("post", json_line(end), delivered))
    ex.run_stream(StreamPlan(_NDJSON, steps, json_line(error)))
