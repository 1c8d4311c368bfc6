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
from ..core import content
from ..core.call import Call
from ..core.content import Content
from ..core.usage import field, from_ollama
from ._base import request_attributes
from ._methods import MethodInstrumentor, Request, Surface

OPERATIONS = {
    "/api/chat": sc.OP_CHAT,
    "/api/generate": sc.OP_TEXT_COMPLETION,
    "/api/embed": sc.OP_EMBEDDINGS,
    "/api/embeddings": sc.OP_EMBEDDINGS,
}
_OPTIONS = (("num_predict", sc.REQUEST_MAX_TOKENS), ("temperature", sc.REQUEST_TEMPERATURE),
            ("top_p", sc.REQUEST_TOP_P))  # fmt: skip


class OllamaInstrumentor(MethodInstrumentor):
    """Instruments the ``ollama`` package."""

    dependencies: ClassVar[tuple[str, ...]] = ("ollama >= 0.4",)
    provider: ClassVar[str] = sc.PROVIDER_OLLAMA
    surfaces = (Surface("ollama._client", "Client._request"), Surface("ollama._client", "AsyncClient._request"))
    lazy_streams = True

    def request(self, surface: Surface, instance: Any, args: Any, kwargs: dict[str, Any]) -> Request | None:
        """``_request(cls, method, url, json=..., stream=...)``; None for the rest (pull, list ...)."""
        path = args[2] if len(args) > 2 else kwargs.get("url")
        operation = OPERATIONS.get(path) if isinstance(path, str) else None
        if operation is None:
            return None
        body = kwargs.get("json") if isinstance(kwargs.get("json"), dict) else {}
        options = body.get("options") if isinstance(body.get("options"), dict) else {}
        url = getattr(getattr(instance, "_client", None), "base_url", None)
        return Request(operation, body.get("model"), url, bool(kwargs.get("stream")),
                       request_attributes(options, _OPTIONS))  # fmt: skip

    def read_content(self, surface: Surface, request: Request, args: Any, kwargs: dict[str, Any]) -> Content | None:
        body = kwargs.get("json") if isinstance(kwargs.get("json"), dict) else {}
        if request.operation == sc.OP_CHAT:
            return content.chat(body)
        return content.prompt(body, "prompt", "system") if request.operation == sc.OP_TEXT_COMPLETION else None

    def read_response(self, record: Call, result: Any) -> None:
        """A complete response, or a stream's final (``done``) object."""
        record.response_model = field(result, "model") or record.response_model
        if field(result, "done_reason"):
            record.finish_reasons = [str(field(result, "done_reason"))]
        usage = from_ollama(result)
        if usage is not None:
            if record.operation == sc.OP_EMBEDDINGS:
                usage.output_tokens = None
            record.usage, record.usage_complete = usage, True
        if record.output_text is None and record.rt.settings.capture_content:
            text = field(field(result, "message"), "content") or field(result, "response")
            if isinstance(text, str):
                record.output_text = [text]

    def read_chunk(self, record: Call, part: Any) -> bool:
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
            self.read_response(record, part)
        return True
