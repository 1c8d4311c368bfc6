"""OpenAI Responses API wire format (``/v1/responses``): one response object, or typed SSE events when streaming."""

from __future__ import annotations

import secrets
import time
from typing import Any

from .exchange import Exchange, Step, StreamPlan, sse
from .openai import structured_text
from .scenario import Scenario, full_norm

__all__ = ["responses"]

_STREAM_ERROR = "The server had an error while streaming (simulated)."


def _usage(sc: Scenario) -> dict[str, Any]:
    """Responses API ``usage``."""
    return {
        "input_tokens": sc.input,
        "input_tokens_details": {"cached_tokens": sc.cached, "cache_write_tokens": sc.cache_write},
        "output_tokens": sc.output,
        "output_tokens_details": {"reasoning_tokens": sc.reasoning},
        "total_tokens": sc.input + sc.output,
    }


class _Response:
    """Builds the response and message objects of one answer at each of their states."""

    def __init__(self, ex: Exchange, text_cfg: dict[str, Any]) -> None:
        self.ex = ex
        self.text_cfg = text_cfg
        self.rid = f"resp_{secrets.token_hex(16)}"
        self.mid = f"msg_{secrets.token_hex(16)}"
        self.created = int(time.time())

    def response(self, status: str, output: list[Any], usage: Any, error: Any = None) -> dict[str, Any]:
        body = self.ex.body
        return {
            "id": self.rid,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "background": False,
            "error": error,
            "incomplete_details": None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "model": self.ex.model,
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": body.get("previous_response_id"),
            "store": True,
            "temperature": 1.0,
            "text": self.text_cfg or {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": usage,
            "metadata": {},
        }

    def message(self, status: str, text: str | None) -> dict[str, Any]:
        content = [] if text is None else [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
        return {"id": self.mid, "type": "message", "status": status, "role": "assistant", "content": content}


def responses(ex: Exchange) -> None:
    """``/v1/responses``."""
    sc = ex.scenario
    text_cfg = ex.body.get("text") if isinstance(ex.body.get("text"), dict) else {}
    pieces = structured_text(ex, text_cfg.get("format"))
    text = "".join(pieces)
    r = _Response(ex, text_cfg)
    usage = None if sc.no_usage else _usage(sc)
    delivered = None if sc.no_usage else full_norm(sc)
    done = r.response("completed", [r.message("completed", text)], usage)
    if not ex.stream:
        ex.send_json(200, done, usage=delivered)
        return
    seq = iter(range(1_000_000))

    def ev(kind: str, **fields: Any) -> bytes:
        return sse({"type": kind, "sequence_number": next(seq), **fields}, event=kind)

    at = {"item_id": r.mid, "output_index": 0, "content_index": 0}
    part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    steps = [
        Step("pre", ev("response.created", response=r.response("in_progress", [], None))),
        Step("pre", ev("response.in_progress", response=r.response("in_progress", [], None))),
        Step("pre", ev("response.output_item.added", output_index=0, item=r.message("in_progress", None))),
        Step("pre", ev("response.content_part.added", **at, part=part)),
    ]
    steps += [Step("content", ev("response.output_text.delta", **at, delta=p, logprobs=[])) for p in pieces]
    steps += [
        Step("post", ev("response.output_text.done", **at, text=text, logprobs=[])),
        Step("post", ev("response.content_part.done", **at, part={**part, "text": text})),
        Step("post", ev("response.output_item.done", output_index=0, item=r.message("completed", text))),
        Step("post", ev("response.completed", response=done), delivered),
    ]
    failed = r.response("failed", [], None, {"code": "server_error", "message": _STREAM_ERROR})
    error = ev("error", code="server_error", message=_STREAM_ERROR, param=None) + ev("response.failed", response=failed)
    ex.run_stream(StreamPlan("text/event-stream; charset=utf-8", steps, error))
