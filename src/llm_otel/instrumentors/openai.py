"""OpenAI SDK (2.x and 3.x; the Stainless layout also used by groq).

One hook on the client's ``request`` method sees every endpoint and helper: ``create``, ``parse``, the
``stream()`` helpers, ``with_raw_response`` / ``with_streaming_response``, Azure and the module-level
client. The retry loop runs inside ``request``, so one ``request`` call is one logical call; retry sleeps
(``_sleep_for_retry``) and the final HTTP response (``_process_response``) are hooked for throttle and
rate-limit headers.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import weakref
from typing import Any, ClassVar

from .. import semconv as sc
from ..errors import CallBlocked
from ..record import CURRENT, CallRecord, use_span
from ..records import CallInfo
from ..streams import AsyncStreamProxy, SyncStreamProxy, _gc_end
from ..throttle import header_int, stainless_sleep_async, stainless_sleep_sync
from ..usage import field, from_openai
from ._base import LLMInstrumentor, log

RAW_HEADER = "X-Stainless-Raw-Response"
_OPERATIONS = {
    "/chat/completions": sc.OP_CHAT,
    "/responses": sc.OP_CHAT,
    "/embeddings": sc.OP_EMBEDDINGS,
    "/completions": sc.OP_TEXT_COMPLETION,
}
_REQUEST_PARAMS = (
    ("max_tokens", sc.REQUEST_MAX_TOKENS),
    ("max_completion_tokens", sc.REQUEST_MAX_TOKENS),
    ("max_output_tokens", sc.REQUEST_MAX_TOKENS),
    ("temperature", sc.REQUEST_TEMPERATURE),
    ("top_p", sc.REQUEST_TOP_P),
)


# --- reading responses and chunks ------------------------------------------------------------------------
def apply_response(record: CallRecord, body: Any) -> None:
    """Copy model, id, finish reasons and usage from a parsed (non-stream) response onto the record."""
    if body is None or isinstance(body, (str, bytes)):
        return
    record.response_model = field(body, "model") or record.response_model
    record.response_id = field(body, "id") or record.response_id
    choices = field(body, "choices")
    if choices:
        reasons = [r for r in (field(c, "finish_reason") for c in choices) if r]
        record.finish_reasons = reasons or None
        if record.rt.settings.capture_content:
            texts = [field(field(c, "message"), "content") or field(c, "text") or "" for c in choices]
            record.rt.output_content_attribute("".join(texts), _content_sink(record))
    elif field(body, "status") and record.operation == sc.OP_CHAT:
        record.finish_reasons = [field(body, "status")]
    usage = from_openai(field(body, "usage"))
    if usage is not None:
        record.usage = usage
        record.usage_complete = True


def _content_sink(record: CallRecord) -> dict[str, Any]:
    class _Sink(dict):  # sets the attribute straight onto the span
        def __setitem__(self, key: str, value: Any) -> None:
            record.span.set_attribute(key, value)

    return _Sink()


def observe_chat_chunk(record: CallRecord, chunk: Any) -> bool:
    """Chat / legacy completions chunk. Returns False for the usage chunk we injected."""
    if record.response_model is None:
        record.response_model = getattr(chunk, "model", None)
        record.response_id = getattr(chunk, "id", None)
    choices = chunk.choices
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
            if delta is not None:
                text = delta.content
                if text or delta.tool_calls or getattr(delta, "refusal", None):
                    output = True
                    if text and record.output_text is not None:
                        record.output_text.append(text)
            elif getattr(choice, "text", None):  # legacy completions
                output = True
                if record.output_text is not None:
                    record.output_text.append(choice.text)
            if choice.finish_reason:
                record.finish_reasons = [choice.finish_reason]
        if output:
            record.output_chunk()
    return True


def observe_responses_event(record: CallRecord, event: Any) -> bool:
    """Responses API stream event."""
    kind = getattr(event, "type", "")
    if kind.endswith(".delta"):
        record.output_chunk()
        if record.output_text is not None and kind == "response.output_text.delta":
            record.output_text.append(event.delta)
    elif kind in ("response.completed", "response.incomplete", "response.failed", "response.created"):
        apply_response(record, getattr(event, "response", None))
    return True


# --- the instrumentor ------------------------------------------------------------------------------------
class OpenAIInstrumentor(LLMInstrumentor):
    """Instruments the ``openai`` package."""

    module: ClassVar[str] = "openai"
    dependencies: ClassVar[tuple[str, ...]] = ("openai >= 2.0",)
    provider_name: ClassVar[str] = sc.PROVIDER_OPENAI
    ratelimit_headers: ClassVar[tuple[str, str]] = ("x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens")

    def patch(self) -> None:
        base = f"{self.module}._base_client"
        p = self._patcher
        p.wrap(base, "SyncAPIClient.request", self._request_sync)
        p.wrap(base, "AsyncAPIClient.request", self._request_async)
        p.wrap(base, "SyncAPIClient._sleep_for_retry", stainless_sleep_sync)
        p.wrap(base, "AsyncAPIClient._sleep_for_retry", stainless_sleep_async)
        p.wrap(base, "SyncAPIClient._process_response", self._process_response)
        p.wrap(base, "AsyncAPIClient._process_response", self._process_response)
        p.wrap(f"{self.module}._legacy_response", "LegacyAPIResponse.parse", self._parse_sync)
        p.wrap(f"{self.module}._response", "APIResponse.parse", self._parse_sync)
        p.wrap(f"{self.module}._response", "AsyncAPIResponse.parse", self._parse_async)
        self._provider_by_type: dict[type, str] = {}
        stream_mod = __import__(f"{self.module}._streaming", fromlist=["Stream"])
        self._stream_types = (stream_mod.Stream, stream_mod.AsyncStream)

    # --- start -------------------------------------------------------------------------------------------
    def provider_for(self, client: Any) -> str:
        cls = type(client)
        name = self._provider_by_type.get(cls)
        if name is None:
            azure = any(c.__name__ in ("AzureOpenAI", "AsyncAzureOpenAI") for c in cls.__mro__)
            name = self._provider_by_type[cls] = sc.PROVIDER_AZURE_OPENAI if azure else self.provider_name
        return name

    @staticmethod
    def server_of(client: Any) -> tuple[str | None, int | None]:
        url = getattr(client, "_base_url", None) or getattr(client, "base_url", None)
        if url is None:
            return None, None
        port = url.port or (443 if url.scheme == "https" else 80)
        return url.host or None, port

    def _start(self, client: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """A CallRecord and the (possibly adjusted) arguments, or None for endpoints we don't observe."""
        options = args[1] if len(args) > 1 else kwargs.get("options")
        operation = _OPERATIONS.get(getattr(options, "url", None))
        if operation is None:
            return None
        body = options.json_data if isinstance(options.json_data, dict) else {}
        stream = bool(kwargs.get("stream", False))
        headers = options.headers if isinstance(options.headers, dict) else {}
        raw_mode = headers.get(RAW_HEADER)
        span_attrs = {attr: body[key] for key, attr in _REQUEST_PARAMS if body.get(key) is not None}
        rt = self.rt
        if rt.settings.capture_content and "messages" in body:
            span_attrs[sc.INPUT_MESSAGES] = json.dumps(body["messages"], default=str)
        address, port = self.server_of(client)
        model = body.get("model")
        record = CallRecord(rt, self.provider_for(client), operation, model if isinstance(model, str) else None,
                            address, port, stream and raw_mode is None, span_attrs)  # fmt: skip
        if (
            stream
            and raw_mode is None
            and operation != sc.OP_EMBEDDINGS
            and options.url != "/responses"
            and rt.settings.inject_stream_usage
            and "include_usage" not in (body.get("stream_options") or {})
        ):
            options = copy.copy(options)
            options.json_data = {
                **body,
                "stream_options": {**(body.get("stream_options") or {}), "include_usage": True},
            }
            record.swallow_usage_chunk = True
            args = (args[0], options, *args[2:]) if len(args) > 1 else args
            if len(args) <= 1:
                kwargs = {**kwargs, "options": options}
        return record, args, kwargs, raw_mode, stream

    def _begin(self, client: Any, args: Any, kwargs: Any) -> Any:
        try:
            started = self._start(client, args, kwargs)
        except Exception:
            self.rt.report_internal_error("openai request start")
            return None
        if started is None:
            return None
        record = started[0]
        try:
            self.rt.before_call(CallInfo(record.provider, record.operation, record.request_model, record.attributes))
        except CallBlocked as exc:
            record.finish(exc)
            raise
        except Exception:
            self.rt.report_internal_error("before_call processors")
        return started

    # --- request hooks -----------------------------------------------------------------------------------
    def _request_sync(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        started = self._begin(instance, args, kwargs)
        if started is None:
            return wrapped(*args, **kwargs)
        record, args, kwargs, raw_mode, stream = started
        token = CURRENT.set(record)
        try:
            with use_span(record):
                result = wrapped(*args, **kwargs)
        except BaseException as exc:
            record.finish(exc)
            raise
        finally:
            CURRENT.reset(token)
        return self._handle_result(record, result, raw_mode, stream, SyncStreamProxy)

    async def _request_async(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        started = self._begin(instance, args, kwargs)
        if started is None:
            return await wrapped(*args, **kwargs)
        record, args, kwargs, raw_mode, stream = started
        token = CURRENT.set(record)
        try:
            with use_span(record):
                result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            record.finish(exc)
            raise
        finally:
            CURRENT.reset(token)
        return self._handle_result(record, result, raw_mode, stream, AsyncStreamProxy)

    def _handle_result(self, record: CallRecord, result: Any, raw_mode: Any, stream: bool, proxy_type: Any) -> Any:
        try:
            if raw_mode is not None:
                return self._handle_raw(record, result, raw_mode, stream)
            if stream and isinstance(result, self._stream_types):
                return proxy_type(result, record, self._stream_observer(result))
            apply_response(record, result)
            record.finish()
        except Exception:
            self.rt.report_internal_error("openai response handling")
            record.finish()
        return result

    @staticmethod
    def _stream_observer(stream: Any) -> Any:
        options = getattr(stream, "_options", None)
        url = getattr(options, "url", None)
        if url is None:
            # openai 2.x streams carry no options: tell the APIs apart by the first event's shape instead.
            return observe_any_chunk
        return observe_responses_event if url == "/responses" else observe_chat_chunk

    def _handle_raw(self, record: CallRecord, result: Any, raw_mode: Any, stream: bool) -> Any:
        http_response = getattr(result, "http_response", None)
        if raw_mode == "true" and not stream:
            apply_response(record, result.parse())
            record.finish()
            return result
        if http_response is not None:
            http_response._llm_otel_record = record
            _hook_raw_close(http_response, record, stream)
        weakref.finalize(result, _gc_end, record).atexit = False
        return result

    def _process_response(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        record = CURRENT.get()
        if record is not None:
            try:
                headers = kwargs["response"].headers
                req_name, tok_name = self.ratelimit_headers
                record.set_ratelimit(header_int(headers, req_name), header_int(headers, tok_name))
            except Exception:
                self.rt.report_internal_error("openai response headers")
        return wrapped(*args, **kwargs)

    # --- raw response parse hooks ------------------------------------------------------------------------
    def _after_parse(self, instance: Any, result: Any) -> Any:
        http_response = getattr(instance, "http_response", None)
        record = getattr(http_response, "_llm_otel_record", None)
        if record is None:
            return result
        try:
            if isinstance(result, self._stream_types):
                proxy = getattr(http_response, "_llm_otel_proxy", None)
                if proxy is None or proxy.__wrapped__ is not result:
                    record.streaming = True
                    record.chunk_times = []
                    proxy_type = SyncStreamProxy if isinstance(result, self._stream_types[0]) else AsyncStreamProxy
                    proxy = proxy_type(result, record, self._stream_observer(result))
                    http_response._llm_otel_proxy = proxy
                return proxy
            if not record.ended:
                apply_response(record, result)
                record.finish()
        except Exception:
            self.rt.report_internal_error("openai raw response parse")
        return result

    def _parse_sync(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        return self._after_parse(instance, wrapped(*args, **kwargs))

    async def _parse_async(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        return self._after_parse(instance, await wrapped(*args, **kwargs))


def observe_any_chunk(record: CallRecord, item: Any) -> bool:
    """For streams that don't say which API they belong to: Responses events have a ``type``."""
    if getattr(item, "choices", None) is not None:
        return observe_chat_chunk(record, item)
    return observe_responses_event(record, item)


def _hook_raw_close(http_response: Any, record: CallRecord, stream: bool) -> None:
    """End the call when a raw response's body has been read (its usage counts, whether or not the user
    calls ``parse()``) or when it is closed with no stream proxy taking over (usage unknown)."""
    reading = []

    def finish_from_body() -> None:
        if not record.ended:
            with contextlib.suppress(Exception):
                apply_response(record, json.loads(http_response.content))
            record.finish()

    def read(*args: Any, _original: Any, **kwargs: Any) -> Any:
        reading.append(True)
        try:
            return _original(*args, **kwargs)
        finally:
            reading.pop()
            finish_from_body()

    async def aread(*args: Any, _original: Any, **kwargs: Any) -> Any:
        reading.append(True)
        try:
            return await _original(*args, **kwargs)
        finally:
            reading.pop()
            finish_from_body()

    def close(*args: Any, _original: Any, **kwargs: Any) -> Any:
        if not record.ended and not reading and getattr(http_response, "_llm_otel_proxy", None) is None:
            record.finish(stream_end=sc.STREAM_CLIENT_CLOSED if stream else None)
        return _original(*args, **kwargs)

    hooks = {"close": close, "aclose": close}
    if not stream:
        hooks.update(read=read, aread=aread)
    for method, hook in hooks.items():
        original = getattr(http_response, method, None)
        if original is None:
            continue
        try:
            setattr(http_response, method, functools.partial(hook, _original=original))
        except (AttributeError, TypeError):
            log.debug("cannot hook %s on %r", method, http_response)
