"""Anthropic, Google GenAI and AWS Bedrock: the same complete observation as OpenAI, with the real SDKs
against the simulated provider. Default usage: input 12 (cache read 4, cache write 3), output 8
(reasoning 2); Gemini reports no cache writes and Bedrock no reasoning tokens."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anthropic
import boto3
import httpx2
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from llm_otel import semconv as sc

MSG = [{"role": "user", "content": "hello"}]
FULL = {"input": 12, "output": 8, "cache_read": 4, "cache_write": 3, "reasoning": 2}


def assert_usage(capture: Any, expected: dict[str, int | None], provider: str, operation: str) -> dict[str, Any]:
    span = capture.span()
    attrs = dict(span.attributes)
    assert attrs[sc.PROVIDER_NAME] == provider
    assert attrs[sc.OPERATION_NAME] == operation
    names = {
        "input": sc.USAGE_INPUT_TOKENS,
        "output": sc.USAGE_OUTPUT_TOKENS,
        "cache_read": sc.USAGE_CACHE_READ_INPUT_TOKENS,
        "cache_write": sc.USAGE_CACHE_CREATION_INPUT_TOKENS,
        "reasoning": sc.USAGE_REASONING_OUTPUT_TOKENS,
    }
    for kind, value in expected.items():
        assert attrs.get(names[kind]) == value, kind
        if value is not None:
            assert capture.total(sc.METRIC_TOKENS, **{sc.TOKEN_TYPE: kind}) == value, kind
    assert capture.count(sc.METRIC_OPERATION_DURATION) == 1
    assert len(capture.ledger_rows()) == 1
    return attrs


# ---------------------------------------------------------------------------------------------- Anthropic
def _anthropic(sim: Any, **kw: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=sim.base_url, api_key="sk-ant-secret", **kw)


def _a_create(c: Any) -> Any:
    return c.messages.create(model="claude-3-5-haiku-latest", max_tokens=64, messages=MSG)


def _a_stream_helper(c: Any) -> Any:
    with c.messages.stream(model="claude-3-5-haiku-latest", max_tokens=64, messages=MSG) as stream:
        return stream.get_final_message()


def _a_create_stream(c: Any) -> Any:
    return list(c.messages.create(model="claude-3-5-haiku-latest", max_tokens=64, messages=MSG, stream=True))


def _a_beta(c: Any) -> Any:
    return c.beta.messages.create(model="claude-3-5-haiku-latest", max_tokens=64, messages=MSG)


def _a_raw(c: Any) -> Any:
    return c.messages.with_raw_response.create(model="claude-3-5-haiku-latest", max_tokens=64, messages=MSG).parse()


def _a_streaming_response(c: Any) -> Any:
    with c.messages.with_streaming_response.create(
        model="claude-3-5-haiku-latest", max_tokens=64, messages=MSG
    ) as response:
        return response.parse()


ANTHROPIC_SURFACES = {
    "create": (_a_create, False),
    "stream_helper": (_a_stream_helper, True),
    "create_stream": (_a_create_stream, True),
    "beta_create": (_a_beta, False),
    "with_raw_response": (_a_raw, False),
    "with_streaming_response": (_a_streaming_response, False),
}


@pytest.mark.parametrize("surface", list(ANTHROPIC_SURFACES))
def test_anthropic_sync_surfaces(surface: str, sim: Any, capture: Any) -> None:
    call, streaming = ANTHROPIC_SURFACES[surface]
    call(_anthropic(sim))
    attrs = assert_usage(capture, FULL, "anthropic", "chat")
    assert attrs[sc.RESPONSE_MODEL] == "claude-3-5-haiku-latest"
    assert attrs[sc.COST_SOURCE] == "local" and attrs[sc.COST_USD] > 0
    assert attrs[sc.RATELIMIT_REMAINING_REQUESTS] >= 0
    if streaming:
        assert attrs[sc.STREAM_END] == "completed"
        assert capture.count(sc.METRIC_TIME_TO_FIRST_CHUNK) == 1


def test_anthropic_async_create_and_stream(sim: Any, capture: Any) -> None:
    async def go() -> None:
        client = anthropic.AsyncAnthropic(base_url=sim.base_url, api_key="x")
        await client.messages.create(model="claude-3-5-haiku-latest", max_tokens=64, messages=MSG)
        async with client.messages.stream(model="claude-3-5-haiku-latest", max_tokens=64, messages=MSG) as s:
            await s.get_final_message()
        await client.close()

    asyncio.run(go())
    spans = capture.spans()
    assert len(spans) == 2
    for span in spans:
        assert span.attributes[sc.USAGE_INPUT_TOKENS] == 12 and span.attributes[sc.USAGE_OUTPUT_TOKENS] == 8
    assert capture.total(sc.METRIC_TOKENS, **{sc.TOKEN_TYPE: "input"}) == 24


def test_anthropic_early_break_keeps_input_but_claims_no_cost(sim: Any, capture: Any) -> None:
    stream = _anthropic(sim).messages.create(
        model="claude-3-5-haiku-latest", max_tokens=64, messages=MSG, stream=True,
        extra_headers={"x-sim-scenario": "chunks=6,slow=0.01"},
    )  # fmt: skip
    for event in stream:
        if event.type == "content_block_delta":
            break
    attrs = dict(capture.span().attributes)
    assert attrs[sc.STREAM_END] == "client_closed"
    assert attrs[sc.USAGE_INPUT_TOKENS] == 12  # message_start reported it
    assert sc.USAGE_OUTPUT_TOKENS not in attrs  # the final count never arrived: unknown, not 1
    assert attrs[sc.USAGE_COMPLETE] is False
    assert attrs[sc.COST_SOURCE] == "incomplete"
    assert capture.points(sc.METRIC_COST) == [] and capture.points(sc.METRIC_UNPRICED_REQUESTS) == []


def test_anthropic_429_then_success_is_throttle(sim: Any, capture: Any) -> None:
    _anthropic(sim).messages.create(
        model="claude-3-5-haiku-latest", max_tokens=64, messages=MSG, extra_headers={"x-sim-scenario": "429x1,ra=0.1"}
    )
    attrs = dict(capture.span().attributes)
    assert 0.1 <= attrs[sc.THROTTLE_WAIT_S] < 0.4 and attrs[sc.RETRIES] == 1


def test_anthropic_cut_stream_raises_sdk_error(sim: Any, capture: Any) -> None:
    with pytest.raises(Exception) as info:
        list(_anthropic(sim, max_retries=0).messages.create(
            model="claude-3-5-haiku-latest", max_tokens=64, messages=MSG, stream=True,
            extra_headers={"x-sim-scenario": "cut,chunks=6"}))  # fmt: skip
    assert not type(info.value).__module__.startswith("llm_otel")
    attrs = dict(capture.span().attributes)
    assert attrs[sc.STREAM_END] == "error" and sc.ERROR_TYPE in attrs


NATIVE_SPANS_SCRIPT = """
import anthropic, llm_otel
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)   # the SDK's own tracing uses the global provider
llm_otel.instrument(ledger=False)
client = anthropic.Anthropic(base_url={base!r}, api_key="x")
client.messages.create(model="claude-3-5-haiku-latest", max_tokens=8, messages=[{{"role": "user", "content": "x"}}])
ours = {{s.context.span_id: s for s in exporter.get_finished_spans() if s.instrumentation_scope.name == "llm_otel"}}
theirs = [s for s in exporter.get_finished_spans() if s.instrumentation_scope.name != "llm_otel"]
print("OURS", len(ours), "THEIRS", len(theirs), "CHILD", all(s.parent and s.parent.span_id in ours for s in theirs))
"""


@pytest.mark.parametrize(("mode", "expected"), [("off", "OURS 1 THEIRS 0"), ("child", "OURS 1 THEIRS 1 CHILD True")])
def test_anthropic_native_span_is_replaced_or_nested(sim: Any, tmp_path: Path, mode: str, expected: str) -> None:
    script = tmp_path / "native.py"
    script.write_text(textwrap.dedent(NATIVE_SPANS_SCRIPT.format(base=sim.base_url)))
    env = {**os.environ, "LLM_OTEL_ANTHROPIC_NATIVE_SPANS": mode}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert expected in proc.stdout


# ------------------------------------------------------------------------------------------- Google GenAI
GEMINI = {"input": 12, "output": 8, "cache_read": 4, "cache_write": None, "reasoning": 2}


def _genai(sim: Any, **http: Any) -> genai.Client:
    return genai.Client(api_key="x", http_options=genai_types.HttpOptions(base_url=sim.base_url, **http))


def test_gemini_generate_content_and_stream(sim: Any, capture: Any) -> None:
    client = _genai(sim)
    client.models.generate_content(model="gemini-2.5-flash", contents="hello")
    attrs = assert_usage(capture, GEMINI, "gcp.gemini", "generate_content")
    assert attrs[sc.RESPONSE_MODEL] == "gemini-2.5-flash" and attrs[sc.COST_USD] > 0
    capture.span_exporter.clear()
    stream = client.models.generate_content_stream(model="gemini-2.5-flash", contents="hello")
    assert sim.requests()[-1]["path"].endswith(":generateContent")  # lazy: the stream sent nothing yet
    chunks = list(stream)
    assert len(chunks) == 4
    [span] = capture.spans()
    assert span.attributes[sc.USAGE_OUTPUT_TOKENS] == 8 and span.attributes[sc.STREAM_END] == "completed"
    assert span.attributes[sc.USAGE_COMPLETE] is True


def test_gemini_automatic_function_calling_counts_every_request(sim: Any, capture: Any) -> None:
    def get_weather(city: str) -> str:
        """Weather in a city."""
        return "sunny"

    client = _genai(sim)  # keep the client referenced: a temporary one closes itself mid-call (SDK behaviour)
    response = client.models.generate_content(
        model="gemini-2.5-flash", contents="weather?",
        config=genai_types.GenerateContentConfig(
            tools=[get_weather], http_options=genai_types.HttpOptions(headers={"x-sim-scenario": "tool=get_weather"})),
    )  # fmt: skip
    assert response.text
    served = sim.served_usage()[("gemini.generate_content", "gemini-2.5-flash")]
    assert served["calls"] == 2  # the model asked for the tool, then answered
    attrs = dict(capture.span().attributes)
    assert attrs[sc.USAGE_INPUT_TOKENS] == served["input"] == 24
    assert attrs[sc.USAGE_OUTPUT_TOKENS] == served["output"] == 16
    assert response.usage_metadata.prompt_token_count == 12  # the SDK's own figure covers the last request only


def test_gemini_stream_early_break_is_incomplete(sim: Any, capture: Any) -> None:
    client = _genai(sim)
    for _ in client.models.generate_content_stream(
        model="gemini-2.5-flash", contents="hello",
        config=genai_types.GenerateContentConfig(http_options=genai_types.HttpOptions(
            headers={"x-sim-scenario": "chunks=6,slow=0.01"})),
    ):  # fmt: skip
        break
    attrs = dict(capture.span().attributes)
    assert attrs[sc.STREAM_END] == "client_closed"
    assert attrs[sc.USAGE_COMPLETE] is False and attrs[sc.COST_SOURCE] == "incomplete"


def test_gemini_429_retry_is_throttle(sim: Any, capture: Any) -> None:
    retry = genai_types.HttpRetryOptions(attempts=3, initial_delay=0.05, max_delay=0.2, jitter=0)
    client = _genai(sim, retry_options=retry, headers={"x-sim-scenario": "429x1", "x-sim-call-id": "g429"})
    client.models.generate_content(model="gemini-2.5-flash", contents="hello")
    attrs = dict(capture.span().attributes)
    assert attrs[sc.RETRIES] == 1 and attrs[sc.THROTTLE_WAIT_S] >= 0.04


def test_gemini_429_without_retries_raises_client_error(sim: Any, capture: Any) -> None:
    with pytest.raises(genai_errors.ClientError):
        client = _genai(sim, headers={"x-sim-scenario": "429x1", "x-sim-call-id": "g429b"})
        client.models.generate_content(model="gemini-2.5-flash", contents="hello")
    assert capture.span().attributes[sc.ERROR_TYPE] == "google.genai.errors.ClientError"


def test_gemini_embeddings(sim: Any, capture: Any) -> None:
    client = _genai(sim)
    client.models.embed_content(model="text-embedding-004", contents=["a", "b"])
    attrs = dict(capture.span().attributes)
    assert attrs[sc.OPERATION_NAME] == "embeddings" and attrs[sc.USAGE_COMPLETE] is False


@pytest.mark.parametrize("transport", ["aiohttp", "httpx2"])
def test_gemini_async_with_either_transport(sim: Any, capture: Any, transport: str) -> None:
    pytest.importorskip("aiohttp")

    async def go() -> None:
        extra = {"httpx_async_client": httpx2.AsyncClient()} if transport == "httpx2" else {}
        client = _genai(sim, **extra)
        await client.aio.models.generate_content(model="gemini-2.5-flash", contents="hello")
        stream = await client.aio.models.generate_content_stream(model="gemini-2.5-flash", contents="hello")
        async for _ in stream:
            pass
        await client.aio.aclose()

    asyncio.run(go())
    spans = capture.spans()
    assert len(spans) == 2
    assert [s.attributes[sc.USAGE_INPUT_TOKENS] for s in spans] == [12, 12]
    assert spans[1].attributes[sc.STREAM_END] == "completed"


# ------------------------------------------------------------------------------------------------ Bedrock
BEDROCK = {"input": 12, "output": 8, "cache_read": 4, "cache_write": 3, "reasoning": None}
MODEL_ID = "anthropic.claude-3-5-haiku-20241022-v1:0"
B_MSG = [{"role": "user", "content": [{"text": "hello"}]}]
B_BODY = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 10, "messages": MSG})


def _bedrock(sim: Any, scenario: str | None = None) -> Any:
    client = boto3.client("bedrock-runtime", endpoint_url=sim.base_url, region_name="us-east-1",
                          aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="very-secret")  # fmt: skip
    if scenario:  # boto3's public event hooks add the simulation header to every request

        def add_header(request: Any, **_: Any) -> None:
            request.headers["x-sim-scenario"] = scenario

        client.meta.events.register("before-sign.bedrock-runtime.*", add_header)
    return client


BEDROCK_SURFACES = {
    "converse": (lambda c, m: c.converse(modelId=m, messages=B_MSG), False),
    "converse_stream": (lambda c, m: list(c.converse_stream(modelId=m, messages=B_MSG)["stream"]), True),
    "invoke_model": (lambda c, m: c.invoke_model(modelId=m, body=B_BODY)["body"].read(), False),
    "invoke_model_with_response_stream": (
        lambda c, m: list(c.invoke_model_with_response_stream(modelId=m, body=B_BODY)["body"]),
        True,
    ),
}


@pytest.mark.parametrize("surface", list(BEDROCK_SURFACES))
def test_bedrock_surfaces(surface: str, sim: Any, capture: Any) -> None:
    call, streaming = BEDROCK_SURFACES[surface]
    call(_bedrock(sim), MODEL_ID)
    attrs = assert_usage(capture, BEDROCK, "aws.bedrock", "chat")
    assert attrs[sc.REQUEST_MODEL] == MODEL_ID and attrs[sc.COST_USD] > 0
    assert "very-secret" not in repr(attrs)
    if streaming:
        assert attrs[sc.STREAM_END] == "completed" and attrs[sc.STREAM_CHUNKS] == 4


def test_bedrock_throttling_then_success(sim: Any, capture: Any) -> None:
    _bedrock(sim).converse(modelId=MODEL_ID + "+429x1", messages=B_MSG)
    attrs = dict(capture.span().attributes)
    assert attrs[sc.RETRIES] == 1 and attrs[sc.THROTTLE_WAIT_S] > 0
    assert capture.total(sc.METRIC_RETRIES, **{sc.RETRY_REASON: "rate_limit"}) == 1


def test_bedrock_stream_early_break_and_missing_usage(sim: Any, capture: Any) -> None:
    for _ in _bedrock(sim).converse_stream(modelId=MODEL_ID + "+chunks=6", messages=B_MSG)["stream"]:
        break
    attrs = dict(capture.span().attributes)
    assert attrs[sc.STREAM_END] == "client_closed" and attrs[sc.USAGE_COMPLETE] is False
    capture.span_exporter.clear()
    list(_bedrock(sim).converse_stream(modelId=MODEL_ID + "+no_usage", messages=B_MSG)["stream"])
    attrs = dict(capture.span().attributes)
    assert attrs[sc.STREAM_END] == "completed" and sc.USAGE_INPUT_TOKENS not in attrs


# ------------------------------------------------------------------------------------------ cross-provider
SAME = "in=1000,cached=200,cwrite=0,out=300,reasoning=0"
PRICE = {"shared-model": {"input": 1.0, "output": 2.0, "cache_read": 0.5, "cache_write": 1.5}}


def test_same_logical_usage_gives_same_tokens_and_cost_in_every_sdk(sim: Any, make_capture: Any) -> None:
    cap = make_capture(prices=PRICE)
    h = {"x-sim-scenario": SAME}
    openai.OpenAI(base_url=sim.openai_base_url, api_key="x").chat.completions.create(
        model="shared-model", messages=MSG, extra_headers=h)  # fmt: skip
    _anthropic(sim).messages.create(model="shared-model", max_tokens=8, messages=MSG, extra_headers=h)
    gclient = _genai(sim, headers=h)
    gclient.models.generate_content(model="shared-model", contents="x")
    _bedrock(sim, SAME).converse(modelId="shared-model", messages=B_MSG)
    spans = cap.spans()
    assert [s.attributes[sc.PROVIDER_NAME] for s in spans] == ["openai", "anthropic", "gcp.gemini", "aws.bedrock"]
    expected_cost = (800 * 1.0 + 200 * 0.5 + 300 * 2.0) / 1e6
    for span in spans:
        a = span.attributes
        assert (a[sc.USAGE_INPUT_TOKENS], a[sc.USAGE_CACHE_READ_INPUT_TOKENS], a[sc.USAGE_OUTPUT_TOKENS]) == (
            1000,
            200,
            300,
        )
        assert a[sc.COST_USD] == pytest.approx(expected_cost)
