"""Groq, Mistral, Cohere, Ollama and LiteLLM: the complete observation with the real SDKs against the simulated
provider, and the nesting rule (one logical call = one span, one usage record, one cost) across layers.

Default simulated usage: input 12 (cache read 4, cache write 3), output 8 (reasoning 2). Each API reports the
part of it that the real provider reports: Groq all of it (OpenAI shape), Mistral and Cohere no cache writes
or reasoning, Ollama input and output only.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm fetches its cost map at import otherwise

import cohere
import groq
import litellm
import ollama
import openai
from google.genai import types as genai_types
from mistralai.client import Mistral
from mistralai.client.utils import BackoffStrategy, RetryConfig

from llm_otel import semconv as sc
from llm_otel.core.call import CURRENT

MSG = [{"role": "user", "content": "hello"}]
NAMES = {
    "input": sc.USAGE_INPUT_TOKENS,
    "output": sc.USAGE_OUTPUT_TOKENS,
    "cache_read": sc.USAGE_CACHE_READ_INPUT_TOKENS,
    "cache_write": sc.USAGE_CACHE_CREATION_INPUT_TOKENS,
    "reasoning": sc.USAGE_REASONING_OUTPUT_TOKENS,
}
FULL = {"input": 12, "output": 8, "cache_read": 4, "cache_write": 3, "reasoning": 2}
NO_WRITE = {"input": 12, "output": 8, "cache_read": 4, "cache_write": None, "reasoning": None}
PLAIN = {"input": 12, "output": 8, "cache_read": None, "cache_write": None, "reasoning": None}


def check_call(capture: Any, sim: Any, expected: dict[str, int | None], provider: str, operation: str,
               api: str, *, stream: bool = False) -> dict[str, Any]:  # fmt: skip
    """One span, one ledger row, metric points and the usage the simulator really served, all agreeing."""
    span = capture.span()
    attrs = dict(span.attributes)
    assert attrs[sc.PROVIDER_NAME] == provider
    assert attrs[sc.OPERATION_NAME] == operation
    assert (attrs[sc.SERVER_ADDRESS], attrs[sc.SERVER_PORT]) == ("127.0.0.1", sim.port)
    served = [v for (a, _model), v in sim.served_usage().items() if a == api]
    assert len(served) == 1 and served[0]["calls"] == 1, sim.served_usage()
    for kind, value in expected.items():
        assert attrs.get(NAMES[kind]) == value, kind
        if value is not None:
            assert capture.total(sc.METRIC_TOKENS, **{sc.TOKEN_TYPE: kind}) == value == served[0][kind], kind
        else:
            assert capture.points(sc.METRIC_TOKENS, **{sc.TOKEN_TYPE: kind}) == [], kind
    assert attrs[sc.USAGE_COMPLETE] is True
    assert capture.count(sc.METRIC_OPERATION_DURATION, **{sc.PROVIDER_NAME: provider}) == 1
    [row] = capture.ledger_rows()
    assert row["provider"] == provider and row["input_tokens"] == expected["input"]
    assert row["output_tokens"] == expected["output"]
    assert row["cost_usd"] == pytest.approx(attrs.get(sc.COST_USD)) if sc.COST_USD in attrs else True
    totals = capture.runtime.session.snapshot()
    assert sum(t.calls for t in totals.values()) == 1
    assert sum(t.tokens.get("input", 0) for t in totals.values()) == expected["input"]
    if stream:
        assert attrs[sc.STREAM_END] == "completed"
        assert attrs[sc.RESPONSE_TIME_TO_FIRST_CHUNK] > 0
        assert capture.count(sc.METRIC_TIME_TO_FIRST_CHUNK) == 1
        assert attrs[sc.TOKENS_PER_SECOND] > 0 and attrs[sc.BURST_TOKENS_PER_SECOND] > 0
    elif expected["output"]:
        assert attrs[sc.TOKENS_PER_SECOND] > 0
    return attrs


def assert_incomplete(capture: Any, end: str = "client_closed") -> dict[str, Any]:
    attrs = dict(capture.span().attributes)
    assert attrs[sc.STREAM_END] == end
    assert attrs[sc.USAGE_COMPLETE] is False
    assert sc.COST_USD not in attrs
    assert capture.points(sc.METRIC_COST) == [] and capture.points(sc.METRIC_UNPRICED_REQUESTS) == []
    [row] = capture.ledger_rows()
    assert row["usage_complete"] == 0 and row["cost_usd"] is None
    return attrs


# -------------------------------------------------------------------------------------------------------- Groq
GROQ_MODEL = "llama-3.1-8b-instant"


def _groq(sim: Any, **kw: Any) -> groq.Groq:
    return groq.Groq(base_url=sim.base_url, api_key="gsk-secret", **kw)


@pytest.mark.parametrize("stream", [False, True])
def test_groq_sync(sim: Any, capture: Any, stream: bool) -> None:
    result = _groq(sim).chat.completions.create(model=GROQ_MODEL, messages=MSG, stream=stream, max_tokens=64)
    chunks = list(result) if stream else None
    attrs = check_call(capture, sim, FULL, "groq", "chat", "groq.chat", stream=stream)
    assert attrs[sc.REQUEST_MODEL] == GROQ_MODEL and attrs[sc.REQUEST_MAX_TOKENS] == 64
    assert attrs[sc.COST_SOURCE] == "local" and attrs[sc.COST_USD] > 0
    assert attrs[sc.RATELIMIT_REMAINING_TOKENS] == 1999000
    assert attrs[sc.SERVER_ADDRESS] == "127.0.0.1" and "gsk-secret" not in repr(attrs)
    assert sim.requests()[-1]["headers"]["user-agent"].startswith("Groq/Python")
    if stream:
        assert "stream_options" not in sim.requests()[-1]["body"]  # nothing injected: x_groq.usage is always sent
        assert chunks[-1].x_groq.usage.prompt_tokens == 12 and attrs[sc.STREAM_CHUNKS] == 4


def test_groq_async_create_stream_and_embeddings(sim: Any, capture: Any) -> None:
    async def go() -> None:
        client = groq.AsyncGroq(base_url=sim.base_url, api_key="x")
        await client.chat.completions.create(model=GROQ_MODEL, messages=MSG)
        stream = await client.chat.completions.create(model=GROQ_MODEL, messages=MSG, stream=True)
        async for _ in stream:
            pass
        await client.embeddings.create(model="nomic-embed-text-v1_5", input=["a", "b"])
        await client.close()

    asyncio.run(go())
    chat, streamed, emb = capture.spans()
    assert [s.attributes[sc.USAGE_INPUT_TOKENS] for s in (chat, streamed, emb)] == [12, 12, 12]
    assert streamed.attributes[sc.STREAM_END] == "completed" and streamed.attributes[sc.USAGE_OUTPUT_TOKENS] == 8
    assert emb.attributes[sc.OPERATION_NAME] == "embeddings" and emb.attributes[sc.COST_SOURCE] == "unpriced"
    assert capture.total(sc.METRIC_UNPRICED_REQUESTS) == 1
    assert sim.served_usage()[("groq.chat", GROQ_MODEL)]["input"] == 24
    assert len(capture.ledger_rows()) == 3


def test_groq_429_then_success_is_throttle(sim: Any, capture: Any) -> None:
    _groq(sim).chat.completions.create(model=GROQ_MODEL, messages=MSG, extra_headers={"x-sim-scenario": "429x1,ra=0.1"})
    attrs = dict(capture.span().attributes)
    assert 0.1 <= attrs[sc.THROTTLE_WAIT_S] < 0.4 and attrs[sc.RETRIES] == 1
    assert capture.total(sc.METRIC_RETRIES, **{sc.RETRY_REASON: sc.RETRY_RATE_LIMIT}) == 1
    assert capture.ledger_rows()[0]["throttle_wait_s"] == pytest.approx(attrs[sc.THROTTLE_WAIT_S])


def test_groq_early_break_and_missing_usage(sim: Any, capture: Any) -> None:
    for _ in _groq(sim).chat.completions.create(model=GROQ_MODEL + "+chunks=6,slow=0.01", messages=MSG, stream=True):
        break
    attrs = assert_incomplete(capture)
    assert sc.USAGE_INPUT_TOKENS not in attrs  # x_groq.usage comes on the final chunk only
    capture.span_exporter.clear()
    list(_groq(sim).chat.completions.create(model=GROQ_MODEL + "+no_usage", messages=MSG, stream=True))
    span = capture.span()
    assert span.attributes[sc.STREAM_END] == "completed" and span.attributes[sc.USAGE_COMPLETE] is False
    assert sc.USAGE_INPUT_TOKENS not in span.attributes


# ----------------------------------------------------------------------------------------------------- Mistral
MISTRAL_MODEL = "mistral-small-latest"


def _mistral(sim: Any, **kw: Any) -> Mistral:
    return Mistral(api_key="mistral-secret", server_url=sim.base_url, **kw)


@pytest.mark.parametrize("stream", [False, True])
def test_mistral_sync(sim: Any, capture: Any, stream: bool) -> None:
    client = _mistral(sim)
    if stream:
        with client.chat.stream(model=MISTRAL_MODEL, messages=MSG, temperature=0.2) as events:
            for _ in events:
                pass
    else:
        client.chat.complete(model=MISTRAL_MODEL, messages=MSG, temperature=0.2)
    attrs = check_call(capture, sim, NO_WRITE, "mistral_ai", "chat", "mistral.chat", stream=stream)
    assert attrs[sc.REQUEST_TEMPERATURE] == 0.2 and attrs[sc.RESPONSE_MODEL] == MISTRAL_MODEL
    assert attrs[sc.COST_SOURCE] == "local" and attrs[sc.COST_USD] > 0
    assert "mistral-secret" not in repr(attrs)


def test_mistral_async_complete_stream_and_embeddings(sim: Any, capture: Any) -> None:
    async def go() -> None:
        client = _mistral(sim)
        await client.chat.complete_async(model=MISTRAL_MODEL, messages=MSG)
        events = await client.chat.stream_async(model=MISTRAL_MODEL, messages=MSG)
        async for _ in events:
            pass
        await client.embeddings.create_async(model="mistral-embed", inputs=["a"])

    asyncio.run(go())
    chat, streamed, emb = capture.spans()
    assert chat.attributes[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 4
    assert streamed.attributes[sc.STREAM_END] == "completed" and streamed.attributes[sc.USAGE_OUTPUT_TOKENS] == 8
    assert emb.attributes[sc.OPERATION_NAME] == "embeddings" and emb.attributes[sc.USAGE_INPUT_TOKENS] == 12
    assert sc.USAGE_OUTPUT_TOKENS not in emb.attributes  # the SDK's default 0 is not a reported count
    assert emb.attributes[sc.COST_USD] > 0


def test_mistral_retry_config_429_is_throttle(sim: Any, capture: Any) -> None:
    retries = RetryConfig("backoff", BackoffStrategy(10, 100, 1.5, 5000), False)
    _mistral(sim).chat.complete(model=MISTRAL_MODEL + "+429x1,ra=0.1", messages=MSG, retries=retries)
    attrs = dict(capture.span().attributes)
    assert attrs[sc.RETRIES] == 1 and attrs[sc.THROTTLE_WAIT_S] == pytest.approx(0.1)
    assert attrs[sc.USAGE_INPUT_TOKENS] == 12
    assert capture.total(sc.METRIC_RETRIES, **{sc.RETRY_REASON: sc.RETRY_RATE_LIMIT}) == 1


def test_mistral_429_without_retries_is_an_error(sim: Any, capture: Any) -> None:
    with pytest.raises(Exception) as info:
        _mistral(sim).chat.complete(model=MISTRAL_MODEL + "+429x1", messages=MSG)
    assert not type(info.value).__module__.startswith("llm_otel")
    attrs = dict(capture.span().attributes)
    assert attrs[sc.ERROR_TYPE].startswith("mistralai.") and sc.RETRIES not in attrs


def test_mistral_early_break_and_missing_usage(sim: Any, capture: Any) -> None:
    for _ in _mistral(sim).chat.stream(model=MISTRAL_MODEL + "+chunks=6,slow=0.01", messages=MSG):
        break
    assert_incomplete(capture)
    capture.span_exporter.clear()
    list(_mistral(sim).chat.stream(model=MISTRAL_MODEL + "+no_usage", messages=MSG))
    span = capture.span()
    assert span.attributes[sc.STREAM_END] == "completed" and span.attributes[sc.USAGE_COMPLETE] is False


# ------------------------------------------------------------------------------------------------------ Cohere
COHERE_MODEL = "command-a-03-2025"


def _cohere(sim: Any) -> cohere.ClientV2:
    return cohere.ClientV2(api_key="co-secret", base_url=sim.base_url)


@pytest.mark.parametrize("stream", [False, True])
def test_cohere_sync_reports_billed_units(sim: Any, capture: Any, stream: bool) -> None:
    client = _cohere(sim)
    if stream:
        events = list(client.chat_stream(model=COHERE_MODEL, messages=MSG, max_tokens=50))
        assert events[-1].delta.usage.tokens.input_tokens == 42  # raw count includes Cohere's prompt template
    else:
        response = client.chat(model=COHERE_MODEL, messages=MSG, max_tokens=50)
        assert response.usage.tokens.input_tokens == 42
    attrs = check_call(capture, sim, NO_WRITE, "cohere", "chat", "cohere.chat", stream=stream)
    assert attrs[sc.REQUEST_MAX_TOKENS] == 50 and attrs[sc.RESPONSE_FINISH_REASONS] == ("COMPLETE",)
    assert attrs[sc.COST_SOURCE] == "local" and attrs[sc.COST_USD] > 0
    if stream:
        assert attrs[sc.STREAM_CHUNKS] == 4


def test_cohere_stream_is_lazy(sim: Any, capture: Any) -> None:
    stream = _cohere(sim).chat_stream(model=COHERE_MODEL, messages=MSG)
    assert sim.requests() == [] and capture.spans() == []
    list(stream)
    assert capture.span().attributes[sc.USAGE_OUTPUT_TOKENS] == 8


def test_cohere_async_chat_stream_and_embed(sim: Any, capture: Any) -> None:
    async def go() -> None:
        client = cohere.AsyncClientV2(api_key="x", base_url=sim.base_url)
        await client.chat(model=COHERE_MODEL, messages=MSG)
        async for _ in client.chat_stream(model=COHERE_MODEL, messages=MSG):
            pass
        await client.embed(model="embed-v4.0", texts=["a"], input_type="search_document", embedding_types=["float"])

    asyncio.run(go())
    chat, streamed, emb = capture.spans()
    assert chat.attributes[sc.USAGE_INPUT_TOKENS] == 12 and streamed.attributes[sc.STREAM_END] == "completed"
    assert streamed.attributes[sc.USAGE_OUTPUT_TOKENS] == 8
    assert emb.attributes[sc.OPERATION_NAME] == "embeddings" and emb.attributes[sc.USAGE_INPUT_TOKENS] == 12
    assert emb.attributes[sc.COST_USD] > 0 and sc.USAGE_OUTPUT_TOKENS not in emb.attributes
    assert sim.served_usage()[("cohere.embed", "embed-v4.0")]["input"] == 12


def test_cohere_429_then_success_is_throttle(sim: Any, capture: Any) -> None:
    _cohere(sim).chat(model=COHERE_MODEL, messages=MSG,
                      request_options={"additional_headers": {"x-sim-scenario": "429x1,ra_ms=100"}})  # fmt: skip
    attrs = dict(capture.span().attributes)
    assert attrs[sc.RETRIES] == 1 and attrs[sc.THROTTLE_WAIT_S] == pytest.approx(0.1)
    assert capture.total(sc.METRIC_RETRIES, **{sc.RETRY_REASON: sc.RETRY_RATE_LIMIT}) == 1
    assert [r["status"] for r in sim.requests()] == [429, 200]


def test_cohere_early_break_and_missing_usage(sim: Any, capture: Any) -> None:
    for event in _cohere(sim).chat_stream(model=COHERE_MODEL + "+chunks=6,slow=0.01", messages=MSG):
        if event.type == "content-delta":
            break
    assert_incomplete(capture)
    capture.span_exporter.clear()
    list(_cohere(sim).chat_stream(model=COHERE_MODEL + "+no_usage", messages=MSG))
    span = capture.span()
    assert span.attributes[sc.STREAM_END] == "completed" and span.attributes[sc.USAGE_COMPLETE] is False


# ------------------------------------------------------------------------------------------------------ Ollama
OLLAMA_MODEL = "llama3.2:1b"


@pytest.mark.parametrize(("method", "api"), [("chat", "ollama.chat"), ("generate", "ollama.generate")])
@pytest.mark.parametrize("stream", [False, True])
def test_ollama_sync(sim: Any, capture: Any, method: str, api: str, stream: bool) -> None:
    client = ollama.Client(host=sim.base_url)
    call = getattr(client, method)
    arg = {"messages": MSG} if method == "chat" else {"prompt": "hello"}
    result = call(model=OLLAMA_MODEL, stream=stream, options={"temperature": 0.3}, **arg)
    if stream:
        parts = list(result)
        assert parts[-1].done and parts[-1].eval_count == 8
    operation = "chat" if method == "chat" else "text_completion"
    attrs = check_call(capture, sim, PLAIN, "ollama", operation, api, stream=stream)
    assert attrs[sc.REQUEST_TEMPERATURE] == 0.3 and attrs[sc.RESPONSE_FINISH_REASONS] == ("stop",)
    assert attrs[sc.COST_USD] == 0.0 and attrs[sc.COST_SOURCE] == "local"  # local inference: free by default
    assert capture.ledger_rows()[0]["cost_usd"] == 0.0


def test_ollama_bound_before_instrument_and_price_override(sim: Any, make_capture: Any) -> None:
    chat = ollama.Client(host=sim.base_url).chat  # bound early, like the module-level ollama.chat
    cap = make_capture(prices={"ollama:*": {"input": 1.0, "output": 2.0}})
    chat(model=OLLAMA_MODEL, messages=MSG)
    attrs = dict(cap.span().attributes)
    assert attrs[sc.COST_USD] == pytest.approx((12 * 1.0 + 8 * 2.0) / 1e6)
    assert cap.total(sc.METRIC_COST) == pytest.approx(attrs[sc.COST_USD])


def test_ollama_async_and_embed(sim: Any, capture: Any) -> None:
    async def go() -> None:
        client = ollama.AsyncClient(host=sim.base_url)
        await client.chat(model=OLLAMA_MODEL, messages=MSG)
        async for _ in await client.chat(model=OLLAMA_MODEL, messages=MSG, stream=True):
            pass
        await client.embed(model="nomic-embed-text", input=["a", "b"])

    asyncio.run(go())
    chat, streamed, emb = capture.spans()
    assert chat.attributes[sc.USAGE_OUTPUT_TOKENS] == 8 and streamed.attributes[sc.STREAM_END] == "completed"
    assert streamed.attributes[sc.USAGE_INPUT_TOKENS] == 12
    assert emb.attributes[sc.OPERATION_NAME] == "embeddings" and emb.attributes[sc.USAGE_INPUT_TOKENS] == 12
    assert sc.USAGE_OUTPUT_TOKENS not in emb.attributes


def test_ollama_early_break_missing_usage_and_error(sim: Any, capture: Any) -> None:
    client = ollama.Client(host=sim.base_url)
    for _ in client.chat(model=OLLAMA_MODEL + "+chunks=6,slow=0.01", messages=MSG, stream=True):
        break
    assert_incomplete(capture)
    capture.span_exporter.clear()
    client.chat(model=OLLAMA_MODEL + "+no_usage", messages=MSG)
    span = capture.span()
    assert span.attributes[sc.USAGE_COMPLETE] is False and sc.COST_USD not in span.attributes
    capture.span_exporter.clear()
    with pytest.raises(ollama.ResponseError):
        client.chat(model=OLLAMA_MODEL + "+500x1", messages=MSG)
    assert capture.span().attributes[sc.ERROR_TYPE] == "ollama.ResponseError"
    with pytest.raises(ollama.ResponseError):  # /api/tags: not an inference call, not observed
        client.list()
    assert len(capture.spans()) == 1


# ----------------------------------------------------------------------------------------------------- LiteLLM
OPENAI_MODEL = "gpt-4o-mini"
CLAUDE = "claude-3-5-haiku-latest"


def _route(sim: Any, route: str) -> dict[str, Any]:
    if route == "openai":
        return {"model": f"openai/{OPENAI_MODEL}", "api_base": sim.openai_base_url, "api_key": "sk-secret"}
    return {"model": f"anthropic/{CLAUDE}", "api_base": sim.base_url, "api_key": "sk-ant-secret"}


ROUTES = {"openai": ("openai", "openai.chat", OPENAI_MODEL), "anthropic": ("anthropic", "anthropic.messages", CLAUDE)}


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("stream", [False, True])
def test_litellm_one_call_one_record(sim: Any, capture: Any, route: str, stream: bool) -> None:
    provider, api, model = ROUTES[route]
    result = litellm.completion(messages=MSG, stream=stream, max_tokens=32, **_route(sim, route))
    if stream:
        chunks = list(result)
        assert all(c.choices for c in chunks)  # the usage chunk llm-otel asked for is not shown to the user
        assert sim.requests()[-1]["body"]["stream"] is True
    # exactly one span for the call (not one from litellm and one from the openai SDK under it)
    attrs = check_call(capture, sim, FULL, provider, "chat", api, stream=stream)
    assert attrs[sc.VIA] == "litellm" and attrs[sc.REQUEST_MODEL] == model and attrs[sc.REQUEST_MAX_TOKENS] == 32
    assert attrs[sc.COST_SOURCE] == "local"
    local = capture.runtime.prices.cost(provider, model, _usage())
    assert attrs[sc.COST_USD] == pytest.approx(local)
    assert capture.total(sc.METRIC_COST) == pytest.approx(local)
    assert attrs[sc.RATELIMIT_REMAINING_TOKENS] == 1999000
    assert "secret" not in repr(attrs)
    if route == "openai" and not stream:
        assert attrs[sc.COST_LITELLM_USD] == pytest.approx(local)  # LiteLLM's own figure, for comparison


def _usage() -> Any:
    from llm_otel.core.usage import Usage

    return Usage(input_tokens=12, output_tokens=8, cache_read_tokens=4, cache_write_tokens=3, reasoning_tokens=2)


def test_litellm_async(sim: Any, capture: Any) -> None:
    async def go() -> None:
        await litellm.acompletion(messages=MSG, **_route(sim, "openai"))
        stream = await litellm.acompletion(messages=MSG, stream=True, **_route(sim, "anthropic"))
        async for _ in stream:
            pass
        await litellm.aembedding(model=f"openai/{'text-embedding-3-small'}", input=["a"], api_base=sim.openai_base_url,
                                 api_key="x")  # fmt: skip

    asyncio.run(go())
    spans = capture.spans()
    assert [s.attributes[sc.PROVIDER_NAME] for s in spans] == ["openai", "anthropic", "openai"]
    assert all(s.attributes[sc.VIA] == "litellm" for s in spans)
    chat, streamed, emb = spans
    assert chat.attributes[sc.USAGE_INPUT_TOKENS] == 12 and streamed.attributes[sc.USAGE_OUTPUT_TOKENS] == 8
    assert streamed.attributes[sc.STREAM_END] == "completed"
    assert emb.attributes[sc.OPERATION_NAME] == "embeddings" and emb.attributes[sc.USAGE_INPUT_TOKENS] == 12
    assert sc.USAGE_OUTPUT_TOKENS not in emb.attributes
    assert len(capture.ledger_rows()) == 3


@pytest.mark.parametrize("stream", [False, True])
def test_litellm_responses(sim: Any, capture: Any, stream: bool) -> None:
    from importlib.metadata import version

    if tuple(int(p) for p in version("litellm").split(".")[:2]) < (1, 107):
        pytest.skip("LiteLLM 1.106's responses() needs the optional mcp package even for OpenAI")
    result = litellm.responses(input="hello", stream=stream, **_route(sim, "openai"))
    if stream:
        events = list(result)
        assert events[-1].type == "response.completed"
    attrs = check_call(capture, sim, FULL, "openai", "chat", "openai.responses", stream=stream)
    assert attrs[sc.VIA] == "litellm" and attrs[sc.COST_SOURCE] == "local"


def test_litellm_throttle_inside_the_openai_sdk_counts_on_the_litellm_call(sim: Any, capture: Any) -> None:
    litellm.completion(messages=MSG, max_retries=2, extra_headers={"x-sim-scenario": "429x1,ra=0.1"},
                       **_route(sim, "openai"))  # fmt: skip
    attrs = dict(capture.span().attributes)  # one span: the openai SDK's retry loop ran inside the litellm call
    assert attrs[sc.VIA] == "litellm"
    assert attrs[sc.RETRIES] == 1 and 0.1 <= attrs[sc.THROTTLE_WAIT_S] < 0.4
    assert [r["status"] for r in sim.requests()] == [429, 200]
    assert capture.ledger_rows()[0]["retries"] == 1


@pytest.mark.parametrize("is_async", [False, True])
def test_litellm_num_retries_are_counted_as_retries(sim: Any, capture: Any, is_async: bool) -> None:
    # The anthropic route: LiteLLM calls it over its own HTTP client, so LiteLLM (not an SDK) does the retrying.
    kwargs = dict(messages=MSG, num_retries=3, max_tokens=32, extra_headers={"x-sim-scenario": "500x1,429x1,ra=0"},
                  **_route(sim, "anthropic"))  # fmt: skip
    if is_async:
        asyncio.run(litellm.acompletion(**kwargs))
    else:
        litellm.completion(**kwargs)
    assert [r["status"] for r in sim.requests()] == [500, 429, 200]
    [span] = capture.spans()  # LiteLLM's own retries stay inside the one call
    attrs = dict(span.attributes)
    assert attrs[sc.RETRIES] == 2 and attrs[sc.USAGE_INPUT_TOKENS] == 12
    assert capture.total(sc.METRIC_RETRIES, **{sc.RETRY_REASON: sc.RETRY_SERVER}) == 1
    assert capture.total(sc.METRIC_RETRIES, **{sc.RETRY_REASON: sc.RETRY_RATE_LIMIT}) == 1
    assert capture.ledger_rows()[0]["retries"] == 2


FINE_TUNED = "ft:gpt-4.1-mini-2025-04-14"  # in LiteLLM's price map, not in genai-prices


def test_litellm_cost_when_only_litellm_can_price(sim: Any, capture: Any) -> None:
    response = litellm.completion(model=f"openai/{FINE_TUNED}", messages=MSG, api_base=sim.openai_base_url,
                                  api_key="x")  # fmt: skip
    attrs = dict(capture.span().attributes)
    assert attrs[sc.RESPONSE_MODEL] == FINE_TUNED
    assert capture.runtime.prices.cost("openai", FINE_TUNED, _usage()) is None  # genai-prices: unknown
    reported = response._hidden_params["response_cost"]
    assert reported > 0
    assert attrs[sc.COST_SOURCE] == "litellm" and attrs[sc.COST_USD] == pytest.approx(reported)
    assert capture.total(sc.METRIC_COST) == pytest.approx(reported)
    assert capture.points(sc.METRIC_UNPRICED_REQUESTS) == []
    assert capture.ledger_rows()[0]["cost_usd"] == pytest.approx(reported)


def test_litellm_missing_usage_is_unknown_not_zero(sim: Any, capture: Any) -> None:
    response = litellm.completion(messages=MSG, **{**_route(sim, "openai"), "model": "openai/gpt-4o-mini+no_usage"})
    assert response.usage.prompt_tokens == 0  # LiteLLM's stand-in
    attrs = dict(capture.span().attributes)
    assert attrs[sc.USAGE_COMPLETE] is False and sc.USAGE_INPUT_TOKENS not in attrs and sc.COST_SOURCE not in attrs
    assert capture.points(sc.METRIC_TOKENS) == [] and capture.points(sc.METRIC_UNPRICED_REQUESTS) == []
    assert capture.ledger_rows()[0]["input_tokens"] is None


def test_litellm_unpriced_everywhere(sim: Any, capture: Any) -> None:
    litellm.completion(model="openai/no-such-model", messages=MSG, api_base=sim.openai_base_url, api_key="x")
    attrs = dict(capture.span().attributes)
    assert attrs[sc.COST_SOURCE] == "unpriced" and sc.COST_USD not in attrs
    assert capture.total(sc.METRIC_UNPRICED_REQUESTS) == 1


def test_litellm_stream_early_break_and_user_asked_for_usage(sim: Any, capture: Any) -> None:
    slow = {**_route(sim, "openai"), "model": "openai/gpt-4o-mini+chunks=6,slow=0.01"}
    for _ in litellm.completion(messages=MSG, stream=True, **slow):
        break
    assert_incomplete(capture)
    capture.span_exporter.clear()
    chunks = list(litellm.completion(messages=MSG, stream=True, stream_options={"include_usage": True},
                                     **_route(sim, "openai")))  # fmt: skip
    assert any(getattr(c, "usage", None) for c in chunks)  # the user asked for it: they get it
    assert capture.span().attributes[sc.USAGE_OUTPUT_TOKENS] == 8


# ------------------------------------------------------------------------------------------------- nesting rule
def test_app_level_nesting_outer_call_owns_the_inner_one(sim: Any, capture: Any) -> None:
    """Any instrumented SDK call made while another is in progress (here: inside an httpx event hook of the
    Groq client, i.e. while Groq's request runs) is part of that call: one span, the outer call's usage."""
    import httpx

    inner = openai.OpenAI(base_url=sim.openai_base_url, api_key="x")
    seen: list[Any] = []

    def hook(request: Any) -> None:
        seen.append(CURRENT.get())
        inner.chat.completions.create(model=OPENAI_MODEL, messages=MSG)

    client = groq.Groq(base_url=sim.base_url, api_key="x", http_client=httpx.Client(event_hooks={"request": [hook]}))
    client.chat.completions.create(model=GROQ_MODEL, messages=MSG)
    assert seen[0] is not None
    span = capture.span()
    assert span.attributes[sc.PROVIDER_NAME] == "groq" and span.attributes[sc.USAGE_INPUT_TOKENS] == 12
    assert len(capture.ledger_rows()) == 1
    assert CURRENT.get() is None


def test_tools_run_by_automatic_function_calling_are_separate_calls(sim: Any, capture: Any) -> None:
    from google import genai

    inner = openai.OpenAI(base_url=sim.openai_base_url, api_key="x")

    def get_weather() -> str:  # (the simulator calls it with no arguments)
        """Weather here."""
        assert CURRENT.get() is None  # user code: outside the Gemini call
        inner.chat.completions.create(model=OPENAI_MODEL, messages=MSG)
        return "sunny"

    client = genai.Client(api_key="x", http_options=genai_types.HttpOptions(base_url=sim.base_url))
    client.models.generate_content(
        model="gemini-2.5-flash", contents="weather?",
        config=genai_types.GenerateContentConfig(
            tools=[get_weather], http_options=genai_types.HttpOptions(headers={"x-sim-scenario": "tool=get_weather"})),
    )  # fmt: skip
    spans = sorted(capture.spans(), key=lambda s: s.attributes[sc.PROVIDER_NAME])
    assert [s.attributes[sc.PROVIDER_NAME] for s in spans] == ["gcp.gemini", "openai"]
    gemini, oai = spans
    assert gemini.attributes[sc.USAGE_INPUT_TOKENS] == 24  # its own two requests only
    assert oai.attributes[sc.USAGE_INPUT_TOKENS] == 12
    assert len(capture.ledger_rows()) == 2
