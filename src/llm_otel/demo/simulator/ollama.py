"""Ollama wire format: ``/api/chat`` and ``/api/generate`` (NDJSON streams unless ``"stream": false``, counts on
the final ``done: true`` object) and ``/api/embed``."""

from __future__ import annotations

import json
import time
from typing import Any

from .content import embedding, word_pieces
from .exchange import Exchange, Step, StreamPlan, json_line
from .scenario import norm

__all__ = ["chat", "embed", "generate"]


def embed(ex: Exchange) -> None:
    """``/api/embed``."""
    sc, body = ex.scenario, ex.body
    raw = body.get("input", "")
    inputs = raw if isinstance(raw, list) else [raw]
    dims = int(body.get("dimensions") or 8)
    payload: dict[str, Any] = {
        "model": ex.model,
        "embeddings": [embedding(f"{ex.provider.seed}:{json.dumps(i)}", dims) for i in inputs],
        "total_duration": 1_000_000,
        "load_duration": 100_000,
    }
    delivered = None
    if not sc.no_usage:
        payload["prompt_eval_count"] = sc.input
        delivered = norm(sc.input, 0)
    ex.send_json(200, payload, usage=delivered)


def chat(ex: Exchange) -> None:
    """``/api/chat``: the answer in ``message``."""
    _generate(ex, chat=True)


def generate(ex: Exchange) -> None:
    """``/api/generate``: the answer in ``response``, and a ``context``."""
    _generate(ex, chat=False)


def _generate(ex: Exchange, *, chat: bool) -> None:
    """Chat or generate: JSON, or NDJSON parts and a final ``done`` object with the counts."""
    sc = ex.scenario
    created = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    delivered = None if sc.no_usage else norm(sc.input, sc.output)  # no cache or reasoning counts
    pieces = word_pieces(ex.rng, sc.chunks)

    def part(text: str) -> dict[str, Any]:
        base: dict[str, Any] = {"model": ex.model, "created_at": created}
        if chat:
            base["message"] = {"role": "assistant", "content": text}
        else:
            base["response"] = text
        return base

    def final(text: str) -> dict[str, Any]:
        data = {**part(text), "done": True, "done_reason": "stop"}
        data.update(total_duration=ex.elapsed_ms() * 1_000_000, load_duration=100_000)
        if not sc.no_usage:
            data.update(prompt_eval_count=sc.input, prompt_eval_duration=2_000_000,
                        eval_count=sc.output, eval_duration=20_000_000)  # fmt: skip
        if not chat:
            data["context"] = [1, 2, 3]
        return data

    if not ex.stream:
        ex.send_json(200, final("".join(pieces)), usage=delivered)
        return
    steps = [Step("content", json_line({**part(p), "done": False})) for p in pieces]
    steps.append(Step("post", lambda: json_line(final("")), delivered))
    ex.run_stream(StreamPlan("application/x-ndjson", steps, json_line({"error": "simulated stream error"})))
