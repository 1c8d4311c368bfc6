"""Ollama Python client: chat, generate and embed (``Client`` and ``AsyncClient``, streaming or not).

The module-level functions (``ollama.chat`` ...) are methods of a client bound at import, so the hook is
the clients' ``_request`` (every API call goes through it), filtered to the inference paths. Streams are
generators that send nothing until iterated; the final object (``done: true``) carries the counts:
``prompt_eval_count`` input, ``eval_count`` output. The client never retries. Provider name ``ollama``
(the conventions list none); local models cost $0 unless a price is configured (docs/decisions.md).
"""

from __future__ import annotations

from typing import Any, ClassVar

from .. import semconv as sc
from ..core.call import Call
from ..core.usage import field, from_ollama
from ._base import LLMInstrumentor, new_record, observed_aiter, observed_iter, request_attributes, run_async, run_sync

OPERATIONS = {
    "/api/chat": sc.OP_CHAT,
    "/api/generate": sc.OP_TEXT_COMPLETION,
    "/api/embed": sc.OP_EMBEDDINGS,
    "/api/embeddings": sc.OP_EMBEDDINGS,
}
_OPTIONS = (("num_predict", sc.REQUEST_MAX_TOKENS), ("temperature", sc.REQUEST_TEMPERATURE),
            ("top_p", sc.REQUEST_TOP_P))  # fmt: skip


def apply_response(record: Call, body: Any) -> None:
    """A complete response, or a stream's final (``done``) object."""
    record.response_model = field(body, "model") or record.response_model
    reason = field(body, "done_reason")
    if reason:
        record.finish_reasons = [str(reason)]
    usage = from_ollama(body)
    if usage is not None:
        if record.operation == sc.OP_EMBEDDINGS:
            usage.output_tokens = None
        record.usage = usage
        record.usage_complete = True
    if record.output_text is None and record.rt.settings.capture_content:
        text = field(field(body, "message"), "content") or field(body, "response")
        if isinstance(text, str):
            record.output_text = [text]


def observe_part(record: Call, part: Any) -> None:
    """One streamed object: text until ``done``, then the counts."""
    if record.response_model is None:
        record.response_model = field(part, "model")
    message = field(part, "message")
    text = field(message, "content") if message is not None else field(part, "response")
    if text or field(message, "tool_calls") or field(message, "thinking") or field(part, "thinking"):
        record.output_chunk()
        if isinstance(text, str) and text and record.output_text is not None:
            record.output_text.append(text)
    if field(part, "done"):
        apply_response(record, part)


class OllamaInstrumentor(LLMInstrumentor):
    """Instruments the ``ollama`` package."""

    dependencies: ClassVar[tuple[str, ...]] = ("ollama >= 0.4",)

    def patch(self) -> None:
        self._patcher.wrap("ollama._client", "Client._request", self._request_sync)
        self._patcher.wrap("ollama._client", "AsyncClient._request", self._request_async)

    def _start(self, instance: Any, args: Any, kwargs: Any) -> tuple[str, dict[str, Any], bool] | None:
        """(operation, request body, stream) for inference requests, None for the rest (pull, list ...)."""
        path = args[2] if len(args) > 2 else kwargs.get("url")
        operation = OPERATIONS.get(path) if isinstance(path, str) else None
        if operation is None:
            return None
        body = kwargs.get("json")
        return operation, body if isinstance(body, dict) else {}, bool(kwargs.get("stream", False))

    def _begin(self, instance: Any, operation: str, body: dict[str, Any], stream: bool) -> Call | None:
        options = body.get("options") if isinstance(body.get("options"), dict) else {}
        attrs = request_attributes(options, _OPTIONS)
        url = getattr(getattr(instance, "_client", None), "base_url", None)
        return new_record(self.rt, "ollama", sc.PROVIDER_OLLAMA, operation, body.get("model"), url, stream, attrs)

    def _end(self, record: Call, result: Any) -> Any:
        try:
            apply_response(record, result)
        except Exception:
            self.rt.report_internal_error("ollama response")
        record.finish()
        return result

    def _request_sync(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        started = self._start(instance, args, kwargs)
        if started is None:
            return wrapped(*args, **kwargs)
        operation, body, stream = started
        if stream:  # a generator: nothing is sent until it is iterated
            inner = wrapped(*args, **kwargs)
            return observed_iter(lambda: self._begin(instance, operation, body, True), inner, observe_part)
        record = self._begin(instance, operation, body, False)
        if record is None:
            return wrapped(*args, **kwargs)
        return self._end(record, run_sync(record, wrapped, args, kwargs))

    async def _request_async(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        started = self._start(instance, args, kwargs)
        if started is None:
            return await wrapped(*args, **kwargs)
        operation, body, stream = started
        if stream:
            inner = await wrapped(*args, **kwargs)  # an async generator; nothing is sent yet
            return observed_aiter(lambda: self._begin(instance, operation, body, True), inner, observe_part)
        record = self._begin(instance, operation, body, False)
        if record is None:
            return await wrapped(*args, **kwargs)
        return self._end(record, await run_async(record, wrapped, args, kwargs))
