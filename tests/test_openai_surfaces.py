"""Every OpenAI SDK surface, sync and async, against the simulated provider: one span, one usage record each.

The simulated provider's default usage is input 12 (cache read 4, cache write 3) and output 8 (reasoning 2),
in OpenAI's own shape (prompt_tokens includes cached tokens, completion_tokens includes reasoning).
"""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest
from pydantic import BaseModel

from llm_otel import semconv as sc

MSG = [{"role": "user", "content": "hello"}]
EXPECTED = {"input": 12, "output": 8, "cache_read": 4, "cache_write": 3, "reasoning": 2}


class Answer(BaseModel):
    answer: str


def _chat(c: Any) -> Any:
    return c.chat.completions.create(model="gpt-4o-mini", messages=MSG)


def _chat_stream(c: Any) -> Any:
    return [chunk for chunk in c.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True)]


def _chat_parse(c: Any) -> Any:
    return c.chat.completions.parse(model="gpt-4o-mini", messages=MSG, response_format=Answer)


def _chat_stream_helper(c: Any) -> Any:
    with c.chat.completions.stream(model="gpt-4o-mini", messages=MSG) as stream:
        for _ in stream:
            pass
        return stream.get_final_completion()


def _responses(c: Any) -> Any:
    return c.responses.create(model="gpt-4o-mini", input="hello")


def _responses_stream(c: Any) -> Any:
    return [e for e in c.responses.create(model="gpt-4o-mini", input="hello", stream=True)]


def _responses_parse(c: Any) -> Any:
    return c.responses.parse(model="gpt-4o-mini", input="hello", text_format=Answer)


def _responses_stream_helper(c: Any) -> Any:
    with c.responses.stream(model="gpt-4o-mini", input="hello") as stream:
        for _ in stream:
            pass
        return stream.get_final_response()


def _legacy_completion(c: Any) -> Any:
    return c.completions.create(model="gpt-3.5-turbo-instruct", prompt="hello")


def _legacy_completion_stream(c: Any) -> Any:
    return [x for x in c.completions.create(model="gpt-3.5-turbo-instruct", prompt="hello", stream=True)]


def _raw(c: Any) -> Any:
    return c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSG).parse()


def _raw_stream(c: Any) -> Any:
    raw = c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSG, stream=True)
    return [chunk for chunk in raw.parse()]


def _streaming_response(c: Any) -> Any:
    with c.chat.completions.with_streaming_response.create(model="gpt-4o-mini", messages=MSG) as resp:
        return resp.parse()


def _streaming_response_stream(c: Any) -> Any:
    with c.chat.completions.with_streaming_response.create(model="gpt-4o-mini", messages=MSG, stream=True) as resp:
        return [chunk for chunk in resp.parse()]


# name: (call, operation, request model, expected token types, streaming)
SURFACES = {
    "chat": (_chat, "chat", "gpt-4o-mini", EXPECTED, False),
    "chat_stream": (_chat_stream, "chat", "gpt-4o-mini", EXPECTED, True),
    "chat_parse": (_chat_parse, "chat", "gpt-4o-mini", EXPECTED, False),
    "chat_stream_helper": (_chat_stream_helper, "chat", "gpt-4o-mini", EXPECTED, True),
    "responses": (_responses, "chat", "gpt-4o-mini", EXPECTED, False),
    "responses_stream": (_responses_stream, "chat", "gpt-4o-mini", EXPECTED, True),
    "responses_parse": (_responses_parse, "chat", "gpt-4o-mini", EXPECTED, False),
    "responses_stream_helper": (_responses_stream_helper, "chat", "gpt-4o-mini", EXPECTED, True),
    "embeddings": (
        lambda c: c.embeddings.create(model="text-embedding-3-small", input="hello"),
        "embeddings",
        "text-embedding-3-small",
        {"input": 12},
        False,
    ),
    "legacy_completion": (_legacy_completion, "text_completion", "gpt-3.5-turbo-instruct", EXPECTED, False),
    "legacy_completion_stream": (
        _legacy_completion_stream,
        "text_completion",
        "gpt-3.5-turbo-instruct",
        EXPECTED,
        True,
    ),
    "with_raw_response": (_raw, "chat", "gpt-4o-mini", EXPECTED, False),
    "with_raw_response_stream": (_raw_stream, "chat", "gpt-4o-mini", None, True),
    "with_streaming_response": (_streaming_response, "chat", "gpt-4o-mini", EXPECTED, False),
    "with_streaming_response_stream": (_streaming_response_stream, "chat", "gpt-4o-mini", None, True),
}


async def _async_call(fn: Any, client: Any) -> Any:
    """Run a sync surface function's async twin by translating the calls (the SDK mirrors its API)."""
    return await ASYNC_SURFACES[fn](client)


async def _a_chat_stream(c: Any) -> Any:
    return [chunk async for chunk in await c.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True)]


async def _a_chat_stream_helper(c: Any) -> Any:
    async with c.chat.completions.stream(model="gpt-4o-mini", messages=MSG) as stream:
        async for _ in stream:
            pass
        return await stream.get_final_completion()


async def _a_responses_stream(c: Any) -> Any:
    return [e async for e in await c.responses.create(model="gpt-4o-mini", input="hello", stream=True)]


async def _a_responses_stream_helper(c: Any) -> Any:
    async with c.responses.stream(model="gpt-4o-mini", input="hello") as stream:
        async for _ in stream:
            pass
        return await stream.get_final_response()


async def _a_raw_stream(c: Any) -> Any:
    raw = await c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSG, stream=True)
    return [chunk async for chunk in raw.parse()]


async def _a_streaming_response(c: Any) -> Any:
    async with c.chat.completions.with_streaming_response.create(model="gpt-4o-mini", messages=MSG) as resp:
        return await resp.parse()


async def _a_streaming_response_stream(c: Any) -> Any:
    async with c.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MSG, stream=True
    ) as resp:
        return [chunk async for chunk in await resp.parse()]


ASYNC_SURFACES: dict[Any, Any] = {
    _chat: lambda c: c.chat.completions.create(model="gpt-4o-mini", messages=MSG),
    _chat_stream: _a_chat_stream,
    _chat_parse: lambda c: c.chat.completions.parse(model="gpt-4o-mini", messages=MSG, response_format=Answer),
    _chat_stream_helper: _a_chat_stream_helper,
    _responses: lambda c: c.responses.create(model="gpt-4o-mini", input="hello"),
    _responses_stream: _a_responses_stream,
    _responses_parse: lambda c: c.responses.parse(model="gpt-4o-mini", input="hello", text_format=Answer),
    _responses_stream_helper: _a_responses_stream_helper,
    _legacy_completion: lambda c: c.completions.create(model="gpt-3.5-turbo-instruct", prompt="hello"),
    _raw: None,
    _raw_stream: _a_raw_stream,
    _streaming_response: _a_streaming_response,
    _streaming_response_stream: _a_streaming_response_stream,
}


async def _a_legacy_stream(c: Any) -> Any:
    stream = await c.completions.create(model="gpt-3.5-turbo-instruct", prompt="hello", stream=True)
    return [x async for x in stream]


async def _a_raw(c: Any) -> Any:
    return (await c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSG)).parse()


ASYNC_SURFACES[_legacy_completion_stream] = _a_legacy_stream
ASYNC_SURFACES[_raw] = _a_raw


def _run(surface: str, mode: str, sim: Any) -> Any:
    call = SURFACES[surface][0]
    if mode == "sync":
        with openai.OpenAI(base_url=sim.openai_base_url, api_key="sk-test-secret") as client:
            return call(client)

    async def go() -> Any:
        async with openai.AsyncOpenAI(base_url=sim.openai_base_url, api_key="sk-test-secret") as client:
            if surface == "embeddings":
                return await client.embeddings.create(model="text-embedding-3-small", input="hello")
            return await ASYNC_SURFACES[call](client)

    return asyncio.run(go())


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("surface", list(SURFACES))
def test_surface_emits_one_complete_observation(surface: str, mode: str, sim: Any, capture: Any) -> None:
    _, operation, model, expected, streaming = SURFACES[surface]
    _run(surface, mode, sim)

    span = capture.span()
    attrs = dict(span.attributes)
    assert span.name == f"{operation} {model}"
    assert span.kind.name == "CLIENT"
    assert attrs[sc.OPERATION_NAME] == operation
    assert attrs[sc.PROVIDER_NAME] == "openai"
    assert attrs[sc.REQUEST_MODEL] == model
    assert attrs[sc.SERVER_ADDRESS] == "127.0.0.1"
    assert attrs[sc.SERVER_PORT] == sim.port
    assert attrs.get(sc.RESPONSE_MODEL) == model

    served = sum(v["calls"] for v in sim.served_usage().values())
    if expected is None:
        # Raw streams are read by the user; we don't inject include_usage into them, so no usage is reported.
        assert served == 0
        assert attrs[sc.USAGE_COMPLETE] is False
        assert sc.USAGE_INPUT_TOKENS not in attrs
    else:
        assert served == 1
        assert attrs[sc.USAGE_COMPLETE] is True
        assert attrs[sc.USAGE_INPUT_TOKENS] == expected["input"]
        assert attrs.get(sc.USAGE_OUTPUT_TOKENS) == expected.get("output")
        assert attrs.get(sc.USAGE_CACHE_READ_INPUT_TOKENS) == expected.get("cache_read")
        assert attrs.get(sc.USAGE_REASONING_OUTPUT_TOKENS) == expected.get("reasoning")
        for kind, n in expected.items():
            assert capture.total(sc.METRIC_TOKENS, **{sc.TOKEN_TYPE: kind}) == n, kind
        assert capture.total(sc.METRIC_COST) == pytest.approx(attrs[sc.COST_USD])
        assert attrs[sc.COST_USD] > 0

    assert capture.count(sc.METRIC_OPERATION_DURATION, **{sc.OPERATION_NAME: operation}) == 1
    if streaming:
        assert attrs[sc.STREAM_END] == "completed"
        assert attrs[sc.STREAM_CHUNKS] >= 1
        assert capture.count(sc.METRIC_TIME_TO_FIRST_CHUNK) == 1
    rows = capture.ledger_rows()
    assert len(rows) == 1
    assert rows[0]["provider"] == "openai" and rows[0]["operation"] == operation
    assert rows[0]["input_tokens"] == (expected or {}).get("input")


def test_azure_client_is_observed_as_azure(sim: Any, capture: Any) -> None:
    client = openai.AzureOpenAI(azure_endpoint=sim.base_url, api_key="x", api_version="2024-10-21")
    # Azure routes deployments under /openai/deployments/{model}/...; the simulated provider accepts that path.
    client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    attrs = dict(capture.span().attributes)
    assert attrs[sc.PROVIDER_NAME] == "azure.ai.openai"
    assert attrs[sc.USAGE_INPUT_TOKENS] == 12


def test_module_level_client_is_observed(sim: Any, capture: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openai, "api_key", "x")
    monkeypatch.setattr(openai, "base_url", sim.openai_base_url + "/")
    openai.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert dict(capture.span().attributes)[sc.USAGE_OUTPUT_TOKENS] == 8
