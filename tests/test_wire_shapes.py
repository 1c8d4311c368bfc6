"""Wire shapes seen in real recorded traffic, reproduced by the simulated provider: each one once made
llm-otel miss a call, mislabel it or lose its metadata.

- Azure OpenAI streams open with a content-filter chunk (``model: ""``, no choices);
- ``n > 1`` choices each end with their own finish reason;
- OpenAI-compatible servers end legacy completion streams with ``"delta": {}``;
- Cohere's v1 ``Client`` (chat, generate, embed, streams);
- Anthropic models through the ``AnthropicBedrock`` and ``AnthropicVertex`` clients are billed by the cloud;
- Bedrock ``invoke_model`` bodies of non-Anthropic models (Titan, Nova, Llama) carry their finish reasons.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import anthropic
import boto3
import cohere
import openai
import pytest
from test_providers_more import MSG, PLAIN, check_call

from llm_otel import semconv as sc

SCENARIO = "x-sim-scenario"


def _no_internal_errors(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r.getMessage() for r in caplog.records if r.name.startswith("llm_otel") and r.levelno >= logging.WARNING]
    assert errors == []


# ---------------------------------------------------------------------------------------------------- OpenAI
def test_azure_stream_content_filter_first_chunk_keeps_model_and_price(sim: Any, capture: Any) -> None:
    client = openai.AzureOpenAI(azure_endpoint=sim.base_url, api_key="x", api_version="2024-10-21")
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini", messages=MSG, stream=True, extra_headers={SCENARIO: "content_filter"}
        )
    )
    assert chunks[0].model == "" and chunks[0].choices == []  # the shape under test really was served
    attrs = dict(capture.span().attributes)
    assert attrs[sc.PROVIDER_NAME] == "azure.ai.openai"
    assert attrs[sc.RESPONSE_MODEL] == "gpt-4o-mini"
    assert attrs[sc.RESPONSE_ID] == chunks[1].id != ""
    assert attrs[sc.COST_SOURCE] == "local" and attrs[sc.COST_USD] > 0


@pytest.mark.parametrize("stream", [False, True])
def test_n_choices_each_have_their_finish_reason(sim: Any, capture: Any, stream: bool) -> None:
    client = openai.OpenAI(base_url=sim.openai_base_url, api_key="x")
    result = client.chat.completions.create(model="gpt-4o-mini", messages=MSG, n=3, stream=stream)
    if stream:
        list(result)
    attrs = dict(capture.span().attributes)
    assert attrs[sc.RESPONSE_FINISH_REASONS] == ("stop", "length", "stop")
    assert attrs[sc.USAGE_OUTPUT_TOKENS] == 8


def test_legacy_completion_stream_with_empty_delta(sim: Any, capture: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    client = openai.OpenAI(base_url=sim.openai_base_url, api_key="x")
    stream = client.completions.create(
        model="gpt-3.5-turbo-instruct", prompt="hi", stream=True, extra_headers={SCENARIO: "empty_delta"}
    )
    chunks = list(stream)
    assert any(getattr(c.choices[0], "delta", None) == {} for c in chunks if c.choices)
    attrs = dict(capture.span().attributes)
    assert attrs[sc.STREAM_END] == "completed" and attrs[sc.STREAM_CHUNKS] == 4
    assert attrs[sc.USAGE_OUTPUT_TOKENS] == 8 and attrs[sc.RESPONSE_FINISH_REASONS] == ("stop",)
    _no_internal_errors(caplog)


# ----------------------------------------------------------------------------------------------- Cohere v1
COHERE_MODEL = "command-r-plus"


def _cohere_v1(sim: Any) -> cohere.Client:
    return cohere.Client(api_key="x", base_url=sim.base_url)


@pytest.mark.parametrize("stream", [False, True])
def test_cohere_v1_chat(sim: Any, capture: Any, stream: bool) -> None:
    client = _cohere_v1(sim)
    if stream:
        list(client.chat_stream(message="hello", model=COHERE_MODEL, temperature=0.3))
    else:
        client.chat(message="hello", model=COHERE_MODEL, temperature=0.3)
    attrs = check_call(capture, sim, PLAIN, "cohere", "chat", "cohere.chat_v1", stream=stream)
    assert attrs[sc.REQUEST_TEMPERATURE] == 0.3
    assert attrs[sc.RESPONSE_FINISH_REASONS] == ("COMPLETE",) and attrs[sc.RESPONSE_ID]


@pytest.mark.parametrize("stream", [False, True])
def test_cohere_v1_generate(sim: Any, capture: Any, stream: bool) -> None:
    client = _cohere_v1(sim)
    if stream:
        list(client.generate_stream(prompt="hello", model="command", max_tokens=20))
    else:
        client.generate(prompt="hello", model="command", max_tokens=20)
    attrs = check_call(capture, sim, PLAIN, "cohere", "text_completion", "cohere.generate", stream=stream)
    assert attrs[sc.REQUEST_MAX_TOKENS] == 20 and attrs[sc.RESPONSE_FINISH_REASONS] == ("COMPLETE",)


def test_cohere_v1_async_chat_stream_and_embed(sim: Any, capture: Any) -> None:
    async def go() -> None:
        client = cohere.AsyncClient(api_key="x", base_url=sim.base_url)
        await client.chat(message="hello", model=COHERE_MODEL)
        async for _ in client.chat_stream(message="hello", model=COHERE_MODEL):
            pass
        await client.embed(texts=["a"], model="embed-english-v3.0", input_type="search_document", batching=False)

    asyncio.run(go())
    spans = sorted(capture.spans(), key=lambda s: s.start_time)
    assert [s.attributes[sc.OPERATION_NAME] for s in spans] == ["chat", "chat", "embeddings"]
    assert [s.attributes.get(sc.REQUEST_STREAM, False) for s in spans] == [False, True, False]
    assert all(s.attributes[sc.USAGE_INPUT_TOKENS] == 12 for s in spans)
    assert [s.attributes.get(sc.USAGE_OUTPUT_TOKENS) for s in spans] == [8, 8, None]


# ------------------------------------------------------------------------------- Anthropic via the clouds
def _bedrock_anthropic(sim: Any, cls: Any) -> Any:
    return cls(base_url=sim.base_url, aws_access_key="x", aws_secret_key="y", aws_region="us-east-1")


def _vertex_anthropic(sim: Any, cls: Any) -> Any:
    return cls(base_url=sim.base_url, region="us-east5", project_id="p", access_token="t")


CLOUDS = [
    ("aws.bedrock", "anthropic.claude-3-5-haiku-20241022-v1:0", _bedrock_anthropic, "AnthropicBedrock"),
    ("gcp.vertex_ai", "claude-3-5-haiku@20241022", _vertex_anthropic, "AnthropicVertex"),
]


@pytest.mark.parametrize(("provider", "model", "make", "cls"), CLOUDS, ids=["bedrock", "vertex"])
@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_through_a_cloud_is_that_cloud(
    sim: Any, capture: Any, provider: str, model: str, make: Any, cls: str, stream: bool
) -> None:
    client = make(sim, getattr(anthropic, cls))
    if stream:
        with client.messages.stream(model=model, max_tokens=64, messages=MSG) as events:
            events.get_final_message()
    else:
        client.messages.create(model=model, max_tokens=64, messages=MSG)
    attrs = dict(capture.span().attributes)
    assert attrs[sc.PROVIDER_NAME] == provider
    assert attrs[sc.USAGE_INPUT_TOKENS] == 12 and attrs[sc.USAGE_OUTPUT_TOKENS] == 8
    assert attrs[sc.COST_SOURCE] == "local" and attrs[sc.COST_USD] > 0
    assert capture.count(sc.METRIC_OPERATION_DURATION, **{sc.PROVIDER_NAME: provider}) == 1


@pytest.mark.parametrize(("provider", "model", "make", "cls"), CLOUDS, ids=["bedrock", "vertex"])
def test_async_anthropic_through_a_cloud(
    sim: Any, capture: Any, provider: str, model: str, make: Any, cls: str
) -> None:
    async def go() -> None:
        client = make(sim, getattr(anthropic, "Async" + cls))
        await client.messages.create(model=model, max_tokens=64, messages=MSG)

    asyncio.run(go())
    assert capture.span().attributes[sc.PROVIDER_NAME] == provider


# ------------------------------------------------------------------------- Bedrock, non-Anthropic models
INVOKE_MODELS = [
    ("amazon.titan-text-express-v1", {"inputText": "hello"}, "FINISH"),
    ("amazon.nova-lite-v1:0", {"messages": [{"role": "user", "content": [{"text": "hello"}]}]}, "end_turn"),
    ("meta.llama3-8b-instruct-v1:0", {"prompt": "hello"}, "stop"),
]


def _bedrock(sim: Any) -> Any:
    return boto3.client("bedrock-runtime", endpoint_url=sim.base_url, region_name="us-east-1",
                        aws_access_key_id="x", aws_secret_access_key="y")  # fmt: skip


@pytest.mark.parametrize(("model", "body", "reason"), INVOKE_MODELS, ids=["titan", "nova", "llama"])
def test_bedrock_invoke_other_models_finish_reason(sim: Any, capture: Any, model: str, body: Any, reason: str) -> None:
    response = _bedrock(sim).invoke_model(modelId=model, body=json.dumps(body))
    served = json.loads(response["body"].read())  # the app still reads the whole body
    assert reason in json.dumps(served)
    attrs = dict(capture.span().attributes)
    assert attrs[sc.RESPONSE_FINISH_REASONS] == (reason,)
    assert attrs[sc.USAGE_INPUT_TOKENS] == 12 and attrs[sc.USAGE_OUTPUT_TOKENS] == 8


@pytest.mark.parametrize(("model", "body", "reason"), INVOKE_MODELS, ids=["titan", "nova", "llama"])
def test_bedrock_invoke_stream_other_models(sim: Any, capture: Any, model: str, body: Any, reason: str) -> None:
    response = _bedrock(sim).invoke_model_with_response_stream(modelId=model, body=json.dumps(body))
    events = list(response["body"])
    assert len(events) >= 4
    attrs = dict(capture.span().attributes)
    assert attrs[sc.RESPONSE_FINISH_REASONS] == (reason,)
    assert attrs[sc.STREAM_END] == "completed" and attrs[sc.STREAM_CHUNKS] == 4
    assert attrs[sc.USAGE_OUTPUT_TOKENS] == 8
