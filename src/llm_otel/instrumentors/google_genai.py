"""Google GenAI SDK (``google-genai``): generate_content (with automatic function calling), streams, embeddings.

One public call can make several HTTP requests (automatic function calling, continuations), so the span
lives on the public method while usage is summed over the private ``_generate_content`` /
``_generate_content_stream`` methods, which make one request each. Streaming methods are lazy (no request
until iterated), so a streamed call starts when iteration starts. The SDK ignores Retry-After and retries
only when configured; throttle is the gap between a failed attempt (429) and the next one, measured on
``BaseApiClient._request_once`` whichever HTTP library (httpx, httpx2, aiohttp) carries it.

Nesting: a call made while another instrumented call is in progress belongs to that call (no record of its
own; attempts still add throttle to it). The tools that automatic function calling runs are user code and
run detached, so LLM calls made inside a tool are calls of their own.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar

from .. import semconv as sc
from ..core import content
from ..core.call import CURRENT, Call, detached
from ..core.content import Content
from ..core.throttle import retry_reason
from ..core.usage import add, field, from_gemini
from ._methods import MethodInstrumentor, Request, Surface

_perf = time.perf_counter


def model_name(model: Any) -> str | None:
    """``models/gemini-2.5-flash`` and publisher paths -> ``gemini-2.5-flash``."""
    if not isinstance(model, str):
        return None
    return model.rsplit("/models/", 1)[-1].removeprefix("models/")


def _hops(record: Call) -> dict[str, Any]:
    if record.extra is None:
        record.extra = {"hops": 0}
    return record.extra


def _owned(record: Call | None) -> bool:
    """True for records this instrumentor created (request hops add usage to those only)."""
    return record is not None and record.extra is not None and "gemini" in record.extra


def apply_response(record: Call, response: Any, *, usage_from_hops: bool) -> None:
    """Model, id, finish reasons (and usage when no request hop was observed) from a response or chunk."""
    record.response_model = field(response, "model_version") or record.response_model
    record.response_id = field(response, "response_id") or record.response_id
    candidates = field(response, "candidates") or []
    reasons = [str(getattr(r, "value", r)) for r in (field(c, "finish_reason") for c in candidates) if r]
    if reasons:
        record.finish_reasons = reasons
    if candidates and (record.output_text is not None or record.rt.settings.capture_content):
        text = field(response, "text") if hasattr(type(response), "text") else None
        if text:
            if record.output_text is None:  # a non-stream response (streams start with a list)
                record.output_text = []
            record.output_text.append(text)
    if not usage_from_hops:
        usage = from_gemini(field(response, "usage_metadata"))
        if usage is not None:
            record.usage = usage
            record.usage_complete = True


def _has_output(chunk: Any) -> bool:
    for candidate in field(chunk, "candidates") or ():
        content = field(candidate, "content")
        if content is not None and field(content, "parts"):
            return True
    return False


class GoogleGenAIInstrumentor(MethodInstrumentor):
    """Instruments the ``google-genai`` package (``google.genai``)."""

    dependencies: ClassVar[tuple[str, ...]] = ("google-genai >= 1.0",)
    provider: ClassVar[str] = sc.PROVIDER_GEMINI
    surfaces = tuple(
        Surface("google.genai.models", f"{cls}.{method}", op, stream)
        for cls in ("Models", "AsyncModels")
        for method, op, stream in (
            ("generate_content", sc.OP_GENERATE_CONTENT, False),
            ("embed_content", sc.OP_EMBEDDINGS, False),
            ("generate_content_stream", sc.OP_GENERATE_CONTENT, True),
        )
    )
    lazy_streams = True

    def extra_patches(self) -> None:
        p = self._patcher
        mod = "google.genai.models"
        p.wrap(mod, "Models._generate_content", self._hop_sync)
        p.wrap(mod, "AsyncModels._generate_content", self._hop_async)
        p.wrap(mod, "Models._generate_content_stream", self._hop_stream_sync)
        p.wrap(mod, "AsyncModels._generate_content_stream", self._hop_stream_async)
        api = "google.genai._api_client"
        p.wrap(api, "BaseApiClient._request_once", self._attempt_sync)
        p.wrap(api, "BaseApiClient._async_request_once", self._attempt_async)
        extra = "google.genai._extra_utils"
        p.wrap(extra, "get_function_response_parts", _run_tools_sync, optional=True)
        p.wrap(extra, "get_function_response_parts_async", _run_tools_async, optional=True)

    # --- the public call ---------------------------------------------------------------------------------------
    def request(self, surface: Surface, instance: Any, args: Any, kwargs: dict[str, Any]) -> Request | None:
        api = getattr(instance, "_api_client", None)
        provider = sc.PROVIDER_VERTEX_AI if getattr(api, "vertexai", False) else sc.PROVIDER_GEMINI
        url = getattr(getattr(api, "_http_options", None), "base_url", None) or None
        return Request(surface.operation, model_name(kwargs.get("model")), url, surface.stream, provider=provider)

    def read_content(self, surface: Surface, request: Request, args: Any, kwargs: dict[str, Any]) -> Content | None:
        return content.gemini(kwargs) if request.operation == sc.OP_GENERATE_CONTENT else None

    def started(self, record: Call, request: Request) -> None:
        record.extra = {"gemini": True, "hops": 0}

    def read_response(self, record: Call, result: Any) -> None:
        apply_response(record, result, usage_from_hops=bool(record.extra and record.extra["hops"]))

    def read_chunk(self, record: Call, chunk: Any) -> bool:
        if _has_output(chunk):
            record.output_chunk()
        from_hops = bool(record.extra and record.extra["hops"])
        apply_response(record, chunk, usage_from_hops=from_hops)
        if not from_hops:
            # Every chunk carries running counts; they are final on the chunk that finishes the candidate.
            finished = any(field(c, "finish_reason") for c in field(chunk, "candidates") or ())
            record.usage_complete = finished and record.usage is not None
        return True

    # --- one request hop (exact usage under automatic function calling) -----------------------------------
    @staticmethod
    def _add_hop(record: Call | None, response: Any) -> None:
        if not _owned(record):
            return
        state = _hops(record)
        state["hops"] += 1
        usage = from_gemini(field(response, "usage_metadata"))
        if usage is not None:
            record.usage = add(record.usage, usage)
            record.usage_complete = True

    def _hop_sync(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        result = wrapped(*args, **kwargs)
        self._add_hop(CURRENT.get(), result)
        return result

    async def _hop_async(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        result = await wrapped(*args, **kwargs)
        self._add_hop(CURRENT.get(), result)
        return result

    def _hop_stream_sync(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        record = CURRENT.get()
        inner = wrapped(*args, **kwargs)
        if not _owned(record):
            return inner
        return self._hop_stream_iter(record, inner)

    def _hop_stream_iter(self, record: Call, inner: Iterator[Any]) -> Iterator[Any]:
        last = None
        state = _hops(record)
        state["hops"] += 1
        base = record.usage
        for chunk in inner:
            last = from_gemini(field(chunk, "usage_metadata")) or last
            record.usage = add(base, last)  # running counts of this hop on top of earlier hops
            record.usage_complete = False
            yield chunk
        record.usage_complete = record.usage is not None

    async def _hop_stream_async(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        record = CURRENT.get()
        inner = await wrapped(*args, **kwargs)  # ``async def`` returning an async generator
        if not _owned(record):
            return inner
        return self._hop_stream_aiter(record, inner)

    async def _hop_stream_aiter(self, record: Call, inner: AsyncIterator[Any]) -> AsyncIterator[Any]:
        last = None
        state = _hops(record)
        state["hops"] += 1
        base = record.usage
        async for chunk in inner:
            last = from_gemini(field(chunk, "usage_metadata")) or last
            record.usage = add(base, last)
            record.usage_complete = False
            yield chunk
        record.usage_complete = record.usage is not None

    # --- attempts (throttle) -------------------------------------------------------------------------------
    @staticmethod
    def _before_attempt(record: Call) -> None:
        failed = record.extra.get("failed") if record.extra else None
        if failed is not None:
            failed_at, reason = failed
            record.add_retry_sleep(_perf() - failed_at, reason)
            record.extra["failed"] = None  # type: ignore[index]

    @staticmethod
    def _attempt_failed(record: Call, exc: BaseException) -> None:
        code = getattr(exc, "code", None)
        _hops(record)["failed"] = (_perf(), retry_reason(code if isinstance(code, int) else None))

    def _attempt_sync(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        record = CURRENT.get()
        if record is None:
            return wrapped(*args, **kwargs)
        self._before_attempt(record)
        try:
            return wrapped(*args, **kwargs)
        except Exception as exc:
            self._attempt_failed(record, exc)
            raise

    async def _attempt_async(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        record = CURRENT.get()
        if record is None:
            return await wrapped(*args, **kwargs)
        self._before_attempt(record)
        try:
            return await wrapped(*args, **kwargs)
        except Exception as exc:
            self._attempt_failed(record, exc)
            raise


# --- automatic function calling: the user's tools run outside the call ------------------------------------------
def _run_tools_sync(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    with detached():
        return wrapped(*args, **kwargs)


async def _run_tools_async(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    with detached():
        return await wrapped(*args, **kwargs)
