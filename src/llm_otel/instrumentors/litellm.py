"""LiteLLM: ``completion`` / ``acompletion``, ``embedding`` / ``aembedding``, ``responses`` / ``aresponses``.

LiteLLM routes a call to a provider, sometimes through an SDK llm-otel also instruments (the openai SDK for
OpenAI-compatible providers), sometimes through its own HTTP handlers (Anthropic, ...). The call the user
made is the one recorded: this wrapper is the outermost instrumented layer, so by the nesting rule every
instrumented SDK call LiteLLM makes inside it passes through without a record of its own, while its retry
sleeps and rate-limit headers still count on this call (docs/decisions.md, "One logical call, one record").

The span carries the underlying provider (``gen_ai.provider.name`` from LiteLLM's ``custom_llm_provider``,
mapped to the conventions' names) and ``llm_otel.via = litellm``. Usage comes from LiteLLM's OpenAI-shaped
response, whose ``prompt_tokens`` include cache reads and writes and whose ``completion_tokens`` include
reasoning for every provider. Cost: llm-otel's own price for the provider-reported usage; when the model has
no price here, LiteLLM's figure (``llm_otel.cost.source = litellm``). LiteLLM's figure is also kept as
``llm_otel.cost.litellm_usd`` for comparison when LiteLLM reported one.

Streams: ``stream_options.include_usage`` is added when the user did not set it (LiteLLM then ends the stream
with a usage chunk, which is swallowed), and the ``CustomStreamWrapper`` is proxied like an SDK stream.
"""

from __future__ import annotations

import inspect
import numbers
import sys
import time
from typing import Any, ClassVar

from .. import semconv as sc
from ..core import content
from ..core.call import CURRENT, Call
from ..core.content import Content
from ..core.throttle import header_int, retry_reason
from ..core.usage import field
from ._base import request_attributes
from ._methods import MethodInstrumentor, Request, Surface
from .openai import apply_openai_response, observe_chat_chunk, observe_responses_event

#: LiteLLM provider ids -> gen_ai.provider.name (others are kept as LiteLLM names them).
_perf = time.perf_counter
PROVIDERS = {
    "openai": sc.PROVIDER_OPENAI,
    "text-completion-openai": sc.PROVIDER_OPENAI,
    "azure": sc.PROVIDER_AZURE_OPENAI,
    "azure_text": sc.PROVIDER_AZURE_OPENAI,
    "azure_ai": sc.PROVIDER_AZURE_AI_INFERENCE,
    "anthropic": sc.PROVIDER_ANTHROPIC,
    "gemini": sc.PROVIDER_GEMINI,
    "vertex_ai": sc.PROVIDER_VERTEX_AI,
    "vertex_ai_beta": sc.PROVIDER_VERTEX_AI,
    "bedrock": sc.PROVIDER_BEDROCK,
    "bedrock_converse": sc.PROVIDER_BEDROCK,
    "mistral": sc.PROVIDER_MISTRAL,
    "codestral": sc.PROVIDER_MISTRAL,
    "text-completion-codestral": sc.PROVIDER_MISTRAL,
    "cohere": sc.PROVIDER_COHERE,
    "cohere_chat": sc.PROVIDER_COHERE,
    "groq": sc.PROVIDER_GROQ,
    "ollama": sc.PROVIDER_OLLAMA,
    "ollama_chat": sc.PROVIDER_OLLAMA,
    "deepseek": sc.PROVIDER_DEEPSEEK,
    "xai": sc.PROVIDER_X_AI,
    "perplexity": sc.PROVIDER_PERPLEXITY,
    "watsonx": sc.PROVIDER_WATSONX,
    "watsonx_text": sc.PROVIDER_WATSONX,
}
_OPERATIONS = {
    "completion": sc.OP_CHAT,
    "acompletion": sc.OP_CHAT,
    "embedding": sc.OP_EMBEDDINGS,
    "aembedding": sc.OP_EMBEDDINGS,
    "responses": sc.OP_CHAT,
    "aresponses": sc.OP_CHAT,
}
_REQUEST_PARAMS = (
    ("max_tokens", sc.REQUEST_MAX_TOKENS),
    ("max_completion_tokens", sc.REQUEST_MAX_TOKENS),
    ("max_output_tokens", sc.REQUEST_MAX_TOKENS),
    ("temperature", sc.REQUEST_TEMPERATURE),
    ("top_p", sc.REQUEST_TOP_P),
)


def _litellm_cost(value: Any) -> float | None:
    return float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else None


def _set_ratelimit(record: Call, hidden: Any) -> None:
    """LiteLLM normalizes every provider's rate-limit headers to ``x-ratelimit-remaining-*``."""
    headers = hidden.get("additional_headers") if isinstance(hidden, dict) else None
    if isinstance(headers, dict):
        requests = header_int(headers, "x-ratelimit-remaining-requests")
        tokens = header_int(headers, "x-ratelimit-remaining-tokens")
        if requests is not None or tokens is not None:
            record.set_ratelimit(requests, tokens)


def _count_retries(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``litellm.(a)completion_with_retries``: every attempt it makes is a retry of the call in progress (the
    first attempt failed before it was called, inside the handler of that failure). The time from a failed
    attempt to the next one (tenacity's wait, if any) is retry wait; a 429 makes it throttle."""
    record = CURRENT.get()
    if record is None:
        return wrapped(*args, **kwargs)
    import litellm.main

    default = litellm.main.completion
    original = kwargs.get("original_function", default)
    state: list[Any] = [sys.exc_info()[1], _perf()]  # the failure being retried, and when it happened

    def retrying() -> None:
        failed, at = state
        status = getattr(failed, "status_code", None)
        try:
            record.add_retry_sleep(_perf() - at, retry_reason(status if isinstance(status, int) else None))
        except Exception:
            record.rt.report_internal_error("litellm retries")

    def failed(exc: BaseException) -> None:
        state[0], state[1] = exc, _perf()

    if inspect.iscoroutinefunction(original):

        async def attempt(*a: Any, **k: Any) -> Any:
            retrying()
            try:
                return await original(*a, **k)
            except BaseException as exc:
                failed(exc)
                raise
    else:

        def attempt(*a: Any, **k: Any) -> Any:  # type: ignore[misc]
            retrying()
            try:
                return original(*a, **k)
            except BaseException as exc:
                failed(exc)
                raise

    return wrapped(*args, **{**kwargs, "original_function": attempt})


class LiteLLMInstrumentor(MethodInstrumentor):
    """Instruments the ``litellm`` package's public call functions."""

    dependencies: ClassVar[tuple[str, ...]] = ("litellm >= 1.60",)
    provider: ClassVar[str] = "litellm"  # each call names its own: the provider LiteLLM routes it to
    surfaces = tuple(Surface("litellm", name, op, optional=True) for name, op in _OPERATIONS.items())

    def extra_patches(self) -> None:
        # `num_retries`: after a failed attempt LiteLLM calls these, which retry through tenacity.
        for name in ("completion_with_retries", "acompletion_with_retries"):
            self._patcher.wrap("litellm", name, _count_retries, optional=True)

    # --- start -----------------------------------------------------------------------------------------------
    def request(self, surface: Surface, instance: Any, args: Any, kwargs: dict[str, Any]) -> Request | None:
        if CURRENT.get() is not None:  # nested: the outer call owns it (and LiteLLM's routing work is skipped)
            return None
        import litellm

        model = kwargs.get("model", args[0] if args else None)
        if not isinstance(model, str):
            return None
        try:
            bare, llm_provider, _, api_base = litellm.get_llm_provider(
                model=model, custom_llm_provider=kwargs.get("custom_llm_provider"), api_base=kwargs.get("api_base")
            )
        except Exception:  # LiteLLM will raise its own error for this call
            bare, llm_provider, api_base = model, model.partition("/")[0] if "/" in model else "", None
        stream = bool(kwargs.get("stream"))
        attrs: dict[str, Any] = {sc.VIA: sc.VIA_LITELLM, **request_attributes(kwargs, _REQUEST_PARAMS)}
        provider = PROVIDERS.get(llm_provider, llm_provider or "litellm")
        send, inject = None, False
        if stream and surface.operation == sc.OP_CHAT and surface.path.endswith("completion"):
            options = kwargs.get("stream_options")
            inject = self.rt.settings.inject_stream_usage and not (
                isinstance(options, dict) and "include_usage" in options
            )
            if inject:
                send = {**kwargs, "stream_options": {**(options or {}), "include_usage": True}}
        return Request(surface.operation, bare, api_base or kwargs.get("api_base"), stream, attrs, provider, send,
                       (llm_provider, surface.path, inject))  # fmt: skip

    def read_content(self, surface: Surface, request: Request, args: Any, kwargs: dict[str, Any]) -> Content | None:
        if request.operation == sc.OP_EMBEDDINGS:
            return None
        if surface.path.endswith("responses"):
            return content.responses(kwargs)
        return content.chat({"messages": args[1], **kwargs} if len(args) > 1 else kwargs)

    def started(self, record: Call, request: Request) -> None:
        llm_provider, name, inject = request.detail
        record.extra = {"litellm_provider": llm_provider, "name": name}
        record.swallow_usage_chunk = inject

    # --- results ---------------------------------------------------------------------------------------------
    def _cost_fallback(self, record: Call, response: Any, reported: float | None) -> None:
        """When llm-otel has no price for the model, LiteLLM's cost becomes the call's cost."""
        usage = record.usage
        if usage is None or not record.usage_complete:
            return
        model = record.response_model or record.request_model
        if self.rt.cost(record.provider, model, usage) is not None:
            return
        cost = reported
        if cost is None and response is not None:
            try:
                import litellm

                cost = _litellm_cost(
                    litellm.completion_cost(
                        completion_response=response, custom_llm_provider=record.extra["litellm_provider"] or None
                    )
                )
            except Exception:
                cost = None  # LiteLLM cannot price it either: unpriced
        if cost is not None:
            record.extra["fallback_cost"] = (cost, sc.COST_SOURCE_LITELLM)  # type: ignore[index]

    def read_response(self, record: Call, response: Any) -> None:
        hidden = getattr(response, "_hidden_params", None) or {}
        apply_openai_response(record, response)
        usage = record.usage
        if usage is not None and not usage.input_tokens and not usage.output_tokens:
            # LiteLLM puts an all-zero Usage on responses whose provider reported none: unknown, not zero.
            record.usage, record.usage_complete = None, False
        elif record.operation == sc.OP_EMBEDDINGS and usage is not None:
            usage.output_tokens = None  # LiteLLM reports completion_tokens=0 for embeddings
        _set_ratelimit(record, hidden)
        reported = _litellm_cost(hidden.get("response_cost")) if isinstance(hidden, dict) else None
        if reported is not None:
            record.span.set_attribute(sc.COST_LITELLM_USD, reported)
        self._cost_fallback(record, response, reported)

    def wrap_stream(self, record: Call, result: Any, is_async: bool) -> Any:
        if not hasattr(result, "__anext__" if is_async else "__next__"):
            return None
        _set_ratelimit(record, getattr(result, "_hidden_params", None))
        return super().wrap_stream(record, result, is_async)

    def chunk_reader(self, record: Call) -> Any:
        responses = record.extra is not None and record.extra.get("name", "").endswith("responses")

        def observe(rec: Call, chunk: Any) -> bool:
            if responses:
                return observe_responses_event(rec, chunk)
            usage = getattr(chunk, "usage", None)
            if usage is not None:
                reported = _litellm_cost(field(usage, "cost"))
                if reported is not None:
                    rec.span.set_attribute(sc.COST_LITELLM_USD, reported)
                passed = observe_chat_chunk(rec, chunk)
                self._cost_fallback(rec, None, reported)
                return passed
            return observe_chat_chunk(rec, chunk)

        return observe
