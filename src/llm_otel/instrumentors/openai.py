"""OpenAI SDK (2.x and 3.x): Chat Completions, Responses, embeddings and legacy completions.

The wiring is shared with other Stainless SDKs (``_stainless``); this module says which paths are LLM
operations, how OpenAI reports usage, and asks streamed Chat Completions for their usage chunk.
"""

from __future__ import annotations

import copy
import time
from typing import Any, ClassVar

from .. import semconv as sc
from ..core import content
from ..core.call import Call
from ..core.content import Content
from ..core.usage import field, fields, from_openai
from ._stainless import Observer, StainlessInstrumentor

_perf = time.perf_counter
_RESPONSE_FIELDS = ("model", "id", "choices", "usage")


def apply_openai_response(record: Call, body: Any) -> None:
    """Copy model, id, finish reasons and usage from a parsed (non-stream) OpenAI response onto the record."""
    if body is None or isinstance(body, (str, bytes)):
        return
    model, response_id, choices, usage = fields(body, _RESPONSE_FIELDS)
    record.response_model = model or record.response_model
    record.response_id = response_id or record.response_id
    if choices:
        reasons = [r for r in (field(c, "finish_reason") for c in choices) if r]
        record.finish_reasons = reasons or None
        if record.output_text is None and record.rt.settings.capture_content:
            texts = [field(field(c, "message"), "content") or field(c, "text") or "" for c in choices]
            record.output_text = ["".join(texts)]
    elif field(body, "status") and record.operation == sc.OP_CHAT:
        record.finish_reasons = [field(body, "status")]
    usage = from_openai(usage)
    if usage is not None:
        record.usage = usage
        record.usage_complete = True


def observe_chat_chunk(record: Call, chunk: Any) -> bool:
    """Chat / legacy completions chunk. Returns False for the usage chunk we injected.

    Runs once per chunk. The usual one (the model already known, no usage, one choice whose delta carries
    text and no finish reason) is settled by the first branch; everything else by ``_chat_chunk``."""
    choices = chunk.choices
    if record.response_model and choices and len(choices) == 1 and getattr(chunk, "usage", None) is None:
        choice = choices[0]
        text = getattr(getattr(choice, "delta", None), "content", None)  # None for a legacy choice or dict delta
        if text and not choice.finish_reason:
            record.chunk_times.append(_perf())  # record.output_chunk(), inlined
            if record.output_text is not None:
                record.output_text.append(text)
            return True
    return _chat_chunk(record, chunk, choices)


def _chat_chunk(record: Call, chunk: Any, choices: Any) -> bool:
    if not record.response_model:  # Azure's first chunk (content filter results) has model "" and id ""
        record.response_model = getattr(chunk, "model", None) or None
        record.response_id = getattr(chunk, "id", None) or record.response_id
    usage = getattr(chunk, "usage", None)
    if usage is not None:
        record.usage = from_openai(usage)
        record.usage_complete = True
        if not choices and record.swallow_usage_chunk:
            return False
    if choices:
        output = False
        for choice in choices:
            delta = getattr(choice, "delta", None)
            if delta is None or type(delta) is dict:  # legacy completions: no delta, or `{}` from some servers
                text = delta.get("content") if delta else None
                if text or (delta and (delta.get("tool_calls") or delta.get("refusal"))):
                    output = True
                if not text and getattr(choice, "text", None):  # the legacy completion's text
                    output = True
                    text = choice.text
            else:  # a chat delta (its choice has no ``text``: looking it up would raise inside the SDK model)
                text = getattr(delta, "content", None)
                if text or getattr(delta, "tool_calls", None) or getattr(delta, "refusal", None):
                    output = True
            if text and record.output_text is not None:
                record.output_text.append(text)
            if choice.finish_reason:
                _finish_reason(record, getattr(choice, "index", 0), choice.finish_reason)
        if output:
            record.chunk_times.append(_perf())  # record.output_chunk(), inlined
    return True


def _finish_reason(record: Call, index: Any, reason: str) -> None:
    """One finish reason per choice (``n > 1``), in choice order."""
    extra = record.extra if record.extra is not None else {}
    by_index = extra.setdefault("finish_reasons", {})
    by_index[index if isinstance(index, int) else len(by_index)] = reason
    record.extra = extra
    record.finish_reasons = [by_index[i] for i in sorted(by_index)]


def observe_responses_event(record: Call, event: Any) -> bool:
    """Responses API stream event."""
    kind = getattr(event, "type", "")
    if kind.endswith(".delta"):
        record.output_chunk()
        if record.output_text is not None and kind == "response.output_text.delta":
            record.output_text.append(event.delta)
    elif kind in ("response.completed", "response.incomplete", "response.failed", "response.created"):
        apply_openai_response(record, getattr(event, "response", None))
    return True


def observe_any_chunk(record: Call, item: Any) -> bool:
    """For streams that don't say which API they belong to: Responses events have a ``type``."""
    if getattr(item, "choices", None) is not None:
        return observe_chat_chunk(record, item)
    return observe_responses_event(record, item)


class OpenAIInstrumentor(StainlessInstrumentor):
    """Instruments the ``openai`` package."""

    dependencies: ClassVar[tuple[str, ...]] = ("openai >= 2.0",)
    provider_name: ClassVar[str] = sc.PROVIDER_OPENAI
    operations: ClassVar[dict[str, str]] = {
        "/chat/completions": sc.OP_CHAT,
        "/responses": sc.OP_CHAT,
        "/embeddings": sc.OP_EMBEDDINGS,
        "/completions": sc.OP_TEXT_COMPLETION,
    }
    ratelimit_headers: ClassVar[tuple[str, str]] = ("x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens")
    request_params: ClassVar[tuple[tuple[str, str], ...]] = (
        ("max_tokens", sc.REQUEST_MAX_TOKENS),
        ("max_completion_tokens", sc.REQUEST_MAX_TOKENS),
        ("max_output_tokens", sc.REQUEST_MAX_TOKENS),
        ("temperature", sc.REQUEST_TEMPERATURE),
        ("top_p", sc.REQUEST_TOP_P),
    )
    # Paths whose streams can be asked for a final usage chunk (stream_options.include_usage).
    usage_chunk_paths: ClassVar[frozenset[str]] = frozenset({"/chat/completions", "/completions"})

    def __init__(self) -> None:
        super().__init__()
        if not hasattr(self, "_provider_by_type"):
            self._provider_by_type: dict[type, str] = {}

    def provider_for(self, client: Any) -> str:
        cls = type(client)
        name = self._provider_by_type.get(cls)
        if name is None:
            azure = any(c.__name__ in ("AzureOpenAI", "AsyncAzureOpenAI") for c in cls.__mro__)
            name = self._provider_by_type[cls] = sc.PROVIDER_AZURE_OPENAI if azure else self.provider_name
        return name

    def apply_response(self, record: Call, body: Any) -> None:
        apply_openai_response(record, body)

    def content_of(self, path: str, body: dict[str, Any]) -> Content | None:
        if path == "/responses":
            return content.responses(body)
        return content.prompt(body) if path == "/completions" else content.chat(body) if path != "/embeddings" else None

    def stream_observer(self, record: Call, stream: Any, path: str | None) -> Observer:
        url = path or getattr(getattr(stream, "_options", None), "url", None)
        if url is None:
            # openai 2.x streams carry no options: tell the APIs apart by each item's shape instead.
            return observe_any_chunk
        return observe_responses_event if url == "/responses" else observe_chat_chunk

    def adjust_request(self, record: Call, options: Any, body: dict[str, Any]) -> Any:
        """Ask for the usage chunk the user did not request; the stream proxy swallows it."""
        if (
            options.url not in self.usage_chunk_paths
            or not self.rt.settings.inject_stream_usage
            or "include_usage" in (body.get("stream_options") or {})
        ):
            return None
        adjusted = copy.copy(options)
        adjusted.json_data = {**body, "stream_options": {**(body.get("stream_options") or {}), "include_usage": True}}
        record.swallow_usage_chunk = True
        return adjusted
