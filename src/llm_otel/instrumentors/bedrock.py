"""AWS Bedrock runtime through boto3/botocore: converse, converse_stream, invoke_model and
invoke_model_with_response_stream.

botocore builds client methods at run time, so the hook is ``BaseClient._make_api_call`` filtered to the
``bedrock-runtime`` service. Usage comes from the Converse body, the stream's ``metadata`` event, the
``x-amzn-bedrock-*-token-count`` headers (invoke_model) or the last chunk's invocation metrics
(invoke_model_with_response_stream). Retry sleeps happen in ``Endpoint._needs_retry``; throttling
(429 / ``ThrottlingException``) counts as throttle wait. (aiobotocore is not instrumented.) A call made while
another instrumented call is in progress belongs to that call (see docs/decisions.md).
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from typing import Any, ClassVar

from .. import semconv as sc
from ..core import content
from ..core.call import CURRENT, Call
from ..core.content import Content
from ..core.streams import SyncStreamProxy
from ..core.usage import Usage, from_bedrock
from ._methods import MethodInstrumentor, Request, Surface

_perf = time.perf_counter
SERVICE = "bedrock-runtime"
OPERATIONS = {"Converse", "ConverseStream", "InvokeModel", "InvokeModelWithResponseStream"}
_STREAMING = {"ConverseStream", "InvokeModelWithResponseStream"}
_HEADER = "x-amzn-bedrock-{}-token-count"


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def usage_from_headers(headers: dict[str, str]) -> Usage | None:
    """invoke_model's token-count headers (input excludes cache reads and writes, like Converse)."""
    inp = _int(headers.get(_HEADER.format("input")))
    out = _int(headers.get(_HEADER.format("output")))
    if inp is None and out is None:
        return None
    return from_bedrock({
        "inputTokens": inp,
        "outputTokens": out,
        "cacheReadInputTokens": _int(headers.get(_HEADER.format("cache-read-input"))),
        "cacheWriteInputTokens": _int(headers.get(_HEADER.format("cache-write-input"))),
    })  # fmt: skip


_REASON_KEYS = ("stop_reason", "stopReason", "finish_reason", "completionReason", "finishReason")
_NESTED_KEYS = ("delta", "messageStop")  # Anthropic's message_delta, Nova's stream end
_LIST_KEYS = ("results", "generations", "outputs", "choices", "completions")  # Titan, Cohere, Mistral, AI21


def finish_reasons_of(data: Any) -> list[str] | None:
    """The finish reasons in a model-native invoke body or stream chunk, whatever the model family: Claude
    and Llama (``stop_reason``), Nova (``stopReason``), Titan (``results[].completionReason``), Cohere
    (``finish_reason`` / ``generations[]``), Mistral (``outputs[]``), AI21 (``choices[]``, ``completions[]``)."""
    if not isinstance(data, dict):
        return None
    for key in _REASON_KEYS:
        value = data.get(key)
        if isinstance(value, dict):  # AI21 Jurassic: {"finishReason": {"reason": "endoftext"}}
            value = value.get("reason")
        if isinstance(value, str) and value:
            return [value]
    for key in _NESTED_KEYS:
        found = finish_reasons_of(data.get(key))
        if found:
            return found
    for key in _LIST_KEYS:
        items = data.get(key)
        if isinstance(items, list):
            found = [r for item in items for r in (finish_reasons_of(item) or ())]
            if found:
                return found
    return None


def observe_converse_event(record: Call, event: Any) -> bool:
    """One ConverseStream event: ``{"contentBlockDelta": {...}}``, ``{"metadata": {"usage": ...}}``, ..."""
    if "contentBlockDelta" in event:
        record.output_chunk()
        if record.output_text is not None:
            record.output_text.append(event["contentBlockDelta"].get("delta", {}).get("text") or "")
    elif "metadata" in event:
        usage = from_bedrock(event["metadata"].get("usage"))
        if usage is not None:
            record.usage = usage
            record.usage_complete = True
    elif "messageStop" in event:
        reason = event["messageStop"].get("stopReason")
        if reason:
            record.finish_reasons = [reason]
    return True


def observe_invoke_chunk(record: Call, event: Any) -> bool:
    """One InvokeModelWithResponseStream chunk: model-native JSON bytes (Anthropic events for Claude)."""
    chunk = event.get("chunk") if isinstance(event, dict) else None
    if not chunk:
        return True
    try:
        data = json.loads(chunk.get("bytes") or b"{}")
    except ValueError:
        return True
    kind = data.get("type")
    if (
        kind == "content_block_delta"
        or "contentBlockDelta" in data  # Nova
        or data.get("outputText")  # Titan
        or data.get("generation")  # Llama
        or data.get("outputs")  # Mistral
        or (data.get("text") and not data.get("is_finished"))  # Cohere command
    ):
        record.output_chunk()
    metrics = data.get("amazon-bedrock-invocationMetrics")
    if metrics:
        usage = from_bedrock({
            "inputTokens": metrics.get("inputTokenCount"),
            "outputTokens": metrics.get("outputTokenCount"),
            "cacheReadInputTokens": metrics.get("cacheReadInputTokenCount"),
            "cacheWriteInputTokens": metrics.get("cacheWriteInputTokenCount"),
        })  # fmt: skip
        if usage is not None:
            record.usage = usage
            record.usage_complete = True
    if kind != "message_start":  # (its message carries stop_reason: null)
        reasons = finish_reasons_of(data)
        if reasons:
            record.finish_reasons = reasons
    return True


def _throttled(response: Any) -> bool:
    if not isinstance(response, tuple) or len(response) != 2:
        return False
    http_response, parsed = response
    code = ((parsed or {}).get("Error") or {}).get("Code", "") if isinstance(parsed, dict) else ""
    return getattr(http_response, "status_code", None) == 429 or "Throttl" in code or code == "TooManyRequests"


class BedrockInstrumentor(MethodInstrumentor):
    """Instruments ``bedrock-runtime`` clients of boto3 / botocore."""

    dependencies: ClassVar[tuple[str, ...]] = ("botocore >= 1.34",)
    provider: ClassVar[str] = sc.PROVIDER_BEDROCK
    surfaces = (Surface("botocore.client", "BaseClient._make_api_call"),)

    def extra_patches(self) -> None:
        self._patcher.wrap("botocore.endpoint", "Endpoint._needs_retry", self._needs_retry)

    def request(self, surface: Surface, instance: Any, args: Any, kwargs: dict[str, Any]) -> Request | None:
        """``_make_api_call(operation_name, api_params)``; None for other services and operations."""
        operation = args[0] if args else kwargs.get("operation_name")
        if operation not in OPERATIONS or instance.meta.service_model.service_name != SERVICE:
            return None
        params = args[1] if len(args) > 1 else kwargs.get("api_params", {})
        model = params.get("modelId")
        op = sc.OP_EMBEDDINGS if isinstance(model, str) and "embed" in model else sc.OP_CHAT
        url = getattr(instance.meta, "endpoint_url", None) or None
        return Request(op, model, url, operation in _STREAMING, {"aws.bedrock.operation": operation},
                       detail=operation)  # fmt: skip

    def read_content(self, surface: Surface, request: Request, args: Any, kwargs: dict[str, Any]) -> Content | None:
        """Converse requests; an InvokeModel body is the model's own format and is not read."""
        if request.detail not in ("Converse", "ConverseStream"):
            return None
        return content.converse(args[1] if len(args) > 1 else kwargs.get("api_params", {}))

    def started(self, record: Call, request: Request) -> None:
        record.extra = {"operation": request.detail}

    @staticmethod
    def _headers(record: Call, result: dict[str, Any]) -> dict[str, str]:
        record.response_model = record.request_model
        headers = (result.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
        record.response_id = headers.get("x-amzn-requestid")
        return headers

    def wrap_stream(self, record: Call, result: Any, is_async: bool) -> Any:
        self._headers(record, result)
        if "stream" in result:  # ConverseStream
            result["stream"] = SyncStreamProxy(result["stream"], record, observe_converse_event)
        else:  # InvokeModelWithResponseStream
            result["body"] = SyncStreamProxy(result["body"], record, observe_invoke_chunk)
        return result

    def read_response(self, record: Call, result: Any) -> None:
        headers = self._headers(record, result)
        converse = record.extra is not None and record.extra["operation"] == "Converse"
        usage = from_bedrock(result.get("usage")) if converse else usage_from_headers(headers)
        if usage is not None:
            record.usage, record.usage_complete = usage, True
        if result.get("stopReason"):
            record.finish_reasons = [result["stopReason"]]
            if record.rt.settings.capture_content:  # Converse: output.message.content[].text
                content = ((result.get("output") or {}).get("message") or {}).get("content") or []
                record.output_text = [
                    "".join(b["text"] for b in content if isinstance(b, dict) and isinstance(b.get("text"), str))
                ]
        elif not converse:
            self._read_body(record, result)

    def _read_body(self, record: Call, result: dict[str, Any]) -> None:
        """Read invoke_model's body now for its finish reasons and put an unread copy in its place (the
        body is the model's JSON; its token counts came in the headers)."""
        body = result.get("body")
        if body is None or not hasattr(body, "read"):
            return
        from botocore.response import StreamingBody

        raw = body.read()
        result["body"] = StreamingBody(io.BytesIO(raw), len(raw))
        with contextlib.suppress(ValueError):  # not JSON (an image model's bytes): no finish reason
            record.finish_reasons = finish_reasons_of(json.loads(raw)) or record.finish_reasons

    def _needs_retry(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        record = CURRENT.get()
        if record is None:  # (a nested call's retries count on the outer call that owns it)
            return wrapped(*args, **kwargs)
        start = _perf()
        retried = wrapped(*args, **kwargs)
        if retried:
            response = args[3] if len(args) > 3 else kwargs.get("response")
            caught = args[4] if len(args) > 4 else kwargs.get("caught_exception")
            if _throttled(response):
                reason = sc.RETRY_RATE_LIMIT
            else:
                reason = sc.RETRY_CONNECTION if caught is not None else sc.RETRY_SERVER
            record.add_retry_sleep(_perf() - start, reason)
        return retried
