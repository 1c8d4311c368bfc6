"""The simulated provider, driven by the real provider SDKs."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pydantic
import pytest

from llm_otel.demo.simulated_provider import SimulatedProvider

MESSAGES = [{"role": "user", "content": "hi"}]
FULL = {"calls": 1, "input": 12, "output": 8, "cache_read": 4, "cache_write": 3, "reasoning": 2}
SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture
def sim() -> Iterator[SimulatedProvider]:
    provider = SimulatedProvider(seed=7).start()
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture
def oai(sim: SimulatedProvider) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=sim.openai_base_url, api_key="x")
    try:
        yield client
    finally:
        client.close()


def times(usage: dict[str, int], n: int) -> dict[str, int]:
    return {k: v * n for k, v in usage.items()}


class Answer(pydantic.BaseModel):
    name: str
    count: int
    score: float
    ok: bool
    tags: list[str]


# -------------------------------------------------------------------------------------
# OpenAI
# -------------------------------------------------------------------------------------


def test_openai_chat_json(sim: SimulatedProvider, oai: openai.OpenAI) -> None:
    raw = oai.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    completion = raw.parse()
    assert completion.model == "gpt-4o-mini"
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (12, 8, 20)
    assert usage.prompt_tokens_details.cached_tokens == 4
    assert usage.prompt_tokens_details.cache_write_tokens == 3
    assert usage.completion_tokens_details.reasoning_tokens == 2
    assert completion._request_id == raw.headers["x-request-id"]
    assert raw.headers["x-ratelimit-limit-requests"] == "10000"
    assert raw.headers["x-ratelimit-remaining-requests"] == "9999"
    assert raw.headers["x-ratelimit-remaining-tokens"] == "1999000"
    assert raw.headers["x-ratelimit-reset-tokens"] == "6m0s"
    assert sim.served_usage() == {("openai.chat", "gpt-4o-mini"): FULL}
    (req,) = sim.requests()
    assert req["path"] == "/v1/chat/completions"
    assert req["method"] == "POST"
    assert req["status"] == 200
    assert req["attempt"] == 0
    assert req["api"] == "openai.chat"
    assert req["body"]["messages"] == MESSAGES
    assert req["headers"]["x-stainless-retry-count"] == "0"


def test_openai_chat_stream_with_usage(sim: SimulatedProvider, oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model="gpt-4o-mini+chunks=3",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    assert all(c.model == "gpt-4o-mini" for c in chunks)
    content = [c.choices[0].delta.content for c in chunks[1:4]]
    assert all(content)
    assert chunks[4].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.prompt_tokens == 12
    assert all(c.usage is None for c in chunks[:-1])
    assert len(chunks) == 6
    # Without include_usage there is no usage chunk, and nothing counts as served.
    plain = list(oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert all(c.choices for c in plain)
    assert sim.served_usage() == {("openai.chat", "gpt-4o-mini"): FULL}
    # always_usage sends it anyway.
    forced = list(oai.chat.completions.create(model="gpt-4o-mini+always_usage", messages=MESSAGES, stream=True))
    assert forced[-1].usage.completion_tokens == 8
    assert sim.served_usage() == {("openai.chat", "gpt-4o-mini"): times(FULL, 2)}


def test_openai_chat_async(sim: SimulatedProvider) -> None:
    async def run() -> tuple[str | None, int]:
        client = openai.AsyncOpenAI(base_url=sim.openai_base_url, api_key="x")
        try:
            completion = await client.chat.completions.create(model="m", messages=MESSAGES)
            stream = await client.chat.completions.create(
                model="m", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            )
            last = None
            async for chunk in stream:
                last = chunk
            results = await asyncio.gather(
                *[client.chat.completions.create(model="m", messages=MESSAGES) for _ in range(20)]
            )
            assert all(r.usage.total_tokens == 20 for r in results)
            return completion.choices[0].message.content, last.usage.total_tokens
        finally:
            await client.close()

    content, total = asyncio.run(run())
    assert content
    assert total == 20
    assert sim.served_usage()[("openai.chat", "m")] == times(FULL, 22)


def test_openai_responses(sim: SimulatedProvider, oai: openai.OpenAI) -> None:
    response = oai.responses.create(model="gpt-4.1", input="hi")
    assert response.output_text
    assert response.status == "completed"
    usage = response.usage
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (12, 8, 20)
    assert usage.input_tokens_details.cached_tokens == 4
    assert usage.input_tokens_details.cache_write_tokens == 3
    assert usage.output_tokens_details.reasoning_tokens == 2

    events = list(oai.responses.create(model="gpt-4.1", input="hi", stream=True))
    types = [e.type for e in events]
    assert types[0] == "response.created"
    assert types.count("response.output_text.delta") == 4
    assert types[-1] == "response.completed"
    assert events[-1].response.usage.input_tokens == 12

    with oai.responses.stream(model="gpt-4.1", input="hi") as stream:
        final = stream.get_final_response()
    assert final.output_text
    assert final.usage.output_tokens == 8
    assert sim.served_usage() == {("openai.responses", "gpt-4.1"): times(FULL, 3)}


def test_openai_responses_async_stream(sim: SimulatedProvider) -> None:
    async def run() -> int:
        client = openai.AsyncOpenAI(base_url=sim.openai_base_url, api_key="x")
        try:
            stream = await client.responses.create(model="gpt-4.1", input="hi", stream=True)
            last = None
            async for event in stream:
                last = event
            return last.response.usage.total_tokens
        finally:
            await client.close()

    assert asyncio.run(run()) == 20


def test_openai_embeddings_and_completions(sim: SimulatedProvider, oai: openai.OpenAI) -> None:
    emb = oai.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(emb.data) == 2
    assert len(emb.data[0].embedding) == 8
    assert emb.data[0].embedding != emb.data[1].embedding
    assert (emb.usage.prompt_tokens, emb.usage.total_tokens) == (12, 12)
    assert sim.requests()[0]["body"]["encoding_format"] == "base64"
    floats = oai.embeddings.create(model="text-embedding-3-small", input="a", encoding_format="float", dimensions=4)
    assert len(floats.data[0].embedding) == 4

    legacy = oai.completions.create(model="gpt-3.5-turbo-instruct", prompt="hi")
    assert legacy.choices[0].text
    assert legacy.usage.completion_tokens == 8
    chunks = list(
        oai.completions.create(
            model="gpt-3.5-turbo-instruct",
            prompt="hi",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage.total_tokens == 20
    served = sim.served_usage()
    assert served[("openai.embeddings", "text-embedding-3-small")] == {
        "calls": 2,
        "input": 24,
        "output": 0,
        "cache_read": 0,
        "cache_write": 0,
        "reasoning": 0,
    }
    assert served[("openai.completions", "gpt-3.5-turbo-instruct")] == times(FULL, 2)


def test_openai_parse(oai: openai.OpenAI) -> None:
    parsed = oai.chat.completions.parse(model="gpt-4o", messages=MESSAGES, response_format=Answer)
    assert parsed.choices[0].message.parsed == Answer(name="x", count=1, score=1.0, ok=True, tags=[])
    parsed_response = oai.responses.parse(model="gpt-4o", input="hi", text_format=Answer)
    assert parsed_response.output_parsed.name == "x"


def test_openai_retry_then_success(sim: SimulatedProvider, oai: openai.OpenAI) -> None:
    start = time.monotonic()
    raw = oai.chat.completions.with_raw_response.create(model="gpt-4o-mini+429x1,ra=0.05", messages=MESSAGES)
    assert raw.retries_taken == 1
    assert time.monotonic() - start < 2
    assert raw.parse().model == "gpt-4o-mini"
    statuses = [(r["status"], r["attempt"]) for r in sim.requests()]
    assert statuses == [(429, 0), (200, 1)]
    assert sim.served_usage() == {("openai.chat", "gpt-4o-mini"): FULL}

    with pytest.raises(openai.RateLimitError) as info:
        oai.with_options(max_retries=0).chat.completions.create(
            model="m", messages=MESSAGES, extra_headers={"x-sim-scenario": "429x1,ra_ms=20"}
        )
    headers = info.value.response.headers
    assert headers["retry-after"] == "0.05"
    assert headers["retry-after-ms"] == "20"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert info.value.body["code"] == "rate_limit_exceeded"


def test_openai_server_errors_exhaust_retries(sim: SimulatedProvider, oai: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError):
        oai.chat.completions.create(model="gpt-4o-mini+500x3", messages=MESSAGES)
    assert [r["status"] for r in sim.requests()] == [500, 500, 500]
    assert sim.served_usage() == {}


def test_openai_cut_and_sse_error(sim: SimulatedProvider, oai: openai.OpenAI) -> None:
    seen = []
    stream = oai.chat.completions.create(
        model="gpt-4o-mini+cut",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    with pytest.raises(openai.APIConnectionError):
        for chunk in stream:
            seen.append(chunk.choices[0].delta.content)
    assert len(seen) == 3  # role chunk + 2 content chunks
    with pytest.raises(openai.APIError, match="simulated"):
        for _ in oai.chat.completions.create(
            model="gpt-4o-mini+sse_error",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        ):
            pass
    assert sim.served_usage() == {}
    # The server still works afterwards.
    assert oai.chat.completions.create(model="ok", messages=MESSAGES).usage.total_tokens == 20


def test_served_usage_overrides_and_no_usage(sim: SimulatedProvider, oai: openai.OpenAI) -> None:
    custom = oai.chat.completions.create(model="m+in=100,cached=30,cwrite=0,out=50,reasoning=20", messages=MESSAGES)
    assert custom.usage.prompt_tokens == 100
    assert custom.usage.prompt_tokens_details.cached_tokens == 30
    assert custom.usage.completion_tokens_details.reasoning_tokens == 20
    none = oai.chat.completions.create(model="m+no_usage", messages=MESSAGES)
    assert none.usage is None
    assert sim.served_usage() == {
        ("openai.chat", "m"): {
            "calls": 1,
            "input": 100,
            "output": 50,
            "cache_read": 30,
            "cache_write": 0,
            "reasoning": 20,
        }
    }
    assert [r["usage"] for r in sim.requests()][1] is None
    sim.reset()
    assert sim.served_usage() == {}
    assert sim.requests() == []


def test_unknown_scenario_token_is_400(sim: SimulatedProvider, oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="bogus"):
        oai.chat.completions.create(model="m+bogus", messages=MESSAGES)
    with pytest.raises(openai.BadRequestError, match="ttft=abc"):
        oai.chat.completions.create(model="m", messages=MESSAGES, extra_headers={"x-sim-scenario": "ttft=abc"})


def test_timing_and_rate_limit_headers(sim: SimulatedProvider, oai: openai.OpenAI) -> None:
    start = time.monotonic()
    stream = oai.chat.completions.create(
        model="m+ttft=0.3,slow=0.03,chunks=3,rl_req=5,rl_tok=77", messages=MESSAGES, stream=True
    )
    headers_at = time.monotonic() - start
    arrivals = [time.monotonic() - start for _ in stream]
    assert headers_at < 0.25  # create() returns when the headers arrive, before ttft
    assert arrivals[0] >= 0.3
    assert arrivals[-1] - arrivals[0] >= 0.04
    assert stream.response.headers["x-ratelimit-remaining-requests"] == "5"
    assert stream.response.headers["x-ratelimit-remaining-tokens"] == "77"


def test_attempts_without_retry_header(sim: SimulatedProvider) -> None:
    def post(call_id: str) -> int:
        request = urllib.request.Request(
            sim.openai_base_url + "/chat/completions",
            data=json.dumps({"model": "m+503x1"}).encode(),
            headers={"content-type": "application/json", "x-sim-call-id": call_id},
        )
        try:
            with urllib.request.urlopen(request) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            assert exc.headers["retry-after"] == "0.05"
            return exc.code

    assert [post("a"), post("a"), post("b")] == [503, 200, 503]
    assert [r["attempt"] for r in sim.requests()] == [0, 1, 0]


def test_cli_runs_and_stops(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llm_otel.demo.simulated_provider",
            "--port-file",
            str(port_file),
            "--max-seconds",
            "5",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])},
    )
    try:
        base_url = proc.stdout.readline().strip()
        port = int(port_file.read_text())
        assert base_url == f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(base_url + "/_sim/health") as response:
            assert json.load(response) == {"ok": True}
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
        proc.stdout.close()


# -------------------------------------------------------------------------------------
# Anthropic
# -------------------------------------------------------------------------------------


def test_anthropic(sim: SimulatedProvider) -> None:
    anthropic = pytest.importorskip("anthropic")
    client = anthropic.Anthropic(base_url=sim.base_url, api_key="x")
    try:
        message = client.messages.create(model="claude-x", max_tokens=10, messages=MESSAGES)
        assert message.content[0].text
        usage = message.usage
        assert (usage.input_tokens, usage.output_tokens) == (5, 8)
        assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (4, 3)

        with client.messages.stream(model="claude-x", max_tokens=10, messages=MESSAGES) as stream:
            final = stream.get_final_message()
        assert final.content[0].text
        assert (final.usage.input_tokens, final.usage.output_tokens) == (5, 8)
        assert final.usage.cache_read_input_tokens == 4
        assert stream.response.headers["anthropic-ratelimit-requests-limit"] == "10000"

        raw = client.messages.with_raw_response.create(model="claude-x+429x1", max_tokens=10, messages=MESSAGES)
        assert raw.retries_taken == 1
        assert raw.headers["request-id"]

        cut = client.messages.stream(model="claude-x+cut", max_tokens=10, messages=MESSAGES)
        with pytest.raises(Exception, match="incomplete chunked read"), cut as stream:
            for _ in stream.text_stream:
                pass
        failing = client.messages.stream(model="claude-x+sse_error", max_tokens=10, messages=MESSAGES)
        with pytest.raises(anthropic.APIStatusError, match="overloaded"), failing as stream:
            for _ in stream.text_stream:
                pass
        assert client.messages.count_tokens(model="claude-x", messages=MESSAGES).input_tokens == 12
    finally:
        client.close()
    served = sim.served_usage()
    # Three complete messages, plus two streams that stopped after message_start
    # (input and cache usage, output_tokens 1).
    start_only = {**FULL, "output": 1, "reasoning": 0}
    expected = {k: FULL[k] * 3 + start_only[k] * 2 for k in FULL}
    assert served == {("anthropic.messages", "claude-x"): expected}


# -------------------------------------------------------------------------------------
# Google Gemini
# -------------------------------------------------------------------------------------


def test_google_genai(sim: SimulatedProvider) -> None:
    pytest.importorskip("google.genai")
    from google import genai
    from google.genai import errors, types

    client = genai.Client(api_key="x", http_options=types.HttpOptions(base_url=sim.base_url))
    try:
        response = client.models.generate_content(model="gemini-2.5-flash", contents="hi")
        assert response.text
        meta = response.usage_metadata
        assert meta.prompt_token_count == 12
        assert meta.cached_content_token_count == 4
        assert meta.candidates_token_count == 6
        assert meta.thoughts_token_count == 2
        assert meta.total_token_count == 20

        chunks = list(client.models.generate_content_stream(model="gemini-2.5-flash", contents="hi"))
        assert len(chunks) == 4
        assert [c.usage_metadata.candidates_token_count for c in chunks][-1] == 6
        assert chunks[-1].usage_metadata.thoughts_token_count == 2
        assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP

        with pytest.raises(errors.ClientError) as info:
            client.models.generate_content(model="gemini-2.5-flash+429x1", contents="again")
        assert info.value.code == 429
        assert info.value.status == "RESOURCE_EXHAUSTED"

        embedded = client.models.embed_content(model="text-embedding-004", contents=["a", "b"])
        assert len(embedded.embeddings) == 2
    finally:
        client.close()
    assert sim.served_usage() == {("gemini.generate_content", "gemini-2.5-flash"): {**times(FULL, 2), "cache_write": 0}}


# -------------------------------------------------------------------------------------
# AWS Bedrock
# -------------------------------------------------------------------------------------


def test_bedrock(sim: SimulatedProvider) -> None:
    boto3 = pytest.importorskip("boto3")
    client = boto3.client(
        "bedrock-runtime",
        endpoint_url=sim.base_url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    model_id = "anthropic.claude-3-haiku-20240307-v1:0"
    try:
        response = client.converse(modelId=model_id, messages=[{"role": "user", "content": [{"text": "hi"}]}])
        assert response["output"]["message"]["content"][0]["text"]
        assert response["usage"] == {
            "inputTokens": 5,
            "outputTokens": 8,
            "totalTokens": 20,
            "cacheReadInputTokens": 4,
            "cacheWriteInputTokens": 3,
        }
        assert "latencyMs" in response["metrics"]

        streamed = client.converse_stream(modelId=model_id, messages=[{"role": "user", "content": [{"text": "hi"}]}])
        events = list(streamed["stream"])
        assert list(events[0]) == ["messageStart"]
        assert sum("contentBlockDelta" in e for e in events) == 4
        metadata = events[-1]["metadata"]
        assert metadata["usage"]["inputTokens"] == 5
        assert metadata["usage"]["outputTokens"] == 8
        assert "latencyMs" in metadata["metrics"]

        body = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 10, "messages": MESSAGES})
        invoked = client.invoke_model(modelId=model_id, body=body)
        headers = invoked["ResponseMetadata"]["HTTPHeaders"]
        assert headers["x-amzn-bedrock-input-token-count"] == "5"
        assert headers["x-amzn-bedrock-output-token-count"] == "8"
        assert headers["x-amzn-bedrock-cache-read-input-token-count"] == "4"
        assert headers["x-amzn-bedrock-cache-write-input-token-count"] == "3"
        assert "x-amzn-bedrock-invocation-latency" in headers
        assert json.loads(invoked["body"].read())["usage"]["output_tokens"] == 8

        streamed = client.invoke_model_with_response_stream(modelId=model_id, body=body)
        payloads = [json.loads(e["chunk"]["bytes"]) for e in streamed["body"]]
        assert payloads[0]["type"] == "message_start"
        metrics = payloads[-1]["amazon-bedrock-invocationMetrics"]
        assert (metrics["inputTokenCount"], metrics["outputTokenCount"]) == (5, 8)

        # A 500 is retried by botocore (x-amz-retry-after keeps it short).
        retried = client.converse(
            modelId=model_id + "+500x1",
            messages=[{"role": "user", "content": [{"text": "hi"}]}],
        )
        assert retried["ResponseMetadata"]["RetryAttempts"] == 1
    finally:
        client.close()
    no_reasoning = {**FULL, "reasoning": 0}
    assert sim.served_usage() == {
        ("bedrock.converse", model_id): times(no_reasoning, 3),
        ("bedrock.invoke", model_id): times(no_reasoning, 2),
    }
    assert sim.requests()[0]["path"] == "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"


# -------------------------------------------------------------------------------------
# Groq, Mistral, Cohere, Ollama (the simulated routes, driven by the uninstrumented SDKs)
# -------------------------------------------------------------------------------------


def test_groq_route_sends_x_groq_usage(sim: SimulatedProvider) -> None:
    import groq

    client = groq.Groq(base_url=sim.base_url, api_key="x")
    assert client.chat.completions.create(model="llama-3.1-8b-instant", messages=MESSAGES).usage.prompt_tokens == 12
    chunks = list(client.chat.completions.create(model="llama-3.1-8b-instant", messages=MESSAGES, stream=True))
    assert chunks[-1].x_groq.usage.completion_tokens == 8 and chunks[-1].usage is None
    assert all(c.x_groq is None for c in chunks[:-1])
    client.embeddings.create(model="nomic-embed-text-v1_5", input="a")
    assert [r["api"] for r in sim.requests()] == ["groq.chat", "groq.chat", "groq.embeddings"]
    assert sim.served_usage()[("groq.chat", "llama-3.1-8b-instant")] == times(FULL, 2)
    # Azure's /openai/v1 path is still OpenAI when the user agent is not Groq's
    openai.OpenAI(base_url=sim.base_url + "/openai/v1", api_key="x").chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES
    )
    assert sim.requests()[-1]["api"] == "openai.chat"


def test_mistral_route_always_streams_usage(sim: SimulatedProvider) -> None:
    from mistralai.client import Mistral

    client = Mistral(api_key="x", server_url=sim.base_url)
    usage = client.chat.complete(model="mistral-small-latest", messages=MESSAGES).usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.prompt_tokens_details) == (12, 8, {"cached_tokens": 4})
    events = list(client.chat.stream(model="mistral-small-latest", messages=MESSAGES))
    last = events[-1].data
    assert last.usage.completion_tokens == 8 and last.choices[0].finish_reason == "stop"
    assert all(e.data.usage is None for e in events[:-1])
    assert client.embeddings.create(model="mistral-embed", inputs=["a"]).usage.prompt_tokens == 12
    assert [r["api"] for r in sim.requests()] == ["mistral.chat", "mistral.chat", "mistral.embeddings"]
    no_write = {**FULL, "cache_write": 0, "reasoning": 0}
    assert sim.served_usage()[("mistral.chat", "mistral-small-latest")] == times(no_write, 2)


def test_cohere_routes(sim: SimulatedProvider) -> None:
    import cohere

    client = cohere.ClientV2(api_key="x", base_url=sim.base_url)
    response = client.chat(model="command-a-03-2025", messages=MESSAGES)
    assert response.usage.billed_units.input_tokens == 12 and response.usage.cached_tokens == 4
    assert response.message.content[0].text and response.finish_reason == "COMPLETE"
    events = list(client.chat_stream(model="command-a-03-2025", messages=MESSAGES, max_tokens=9))
    kinds = [e.type for e in events]
    assert kinds == ["message-start", "content-start"] + ["content-delta"] * 4 + ["content-end", "message-end"]
    assert events[-1].delta.usage.billed_units.output_tokens == 8
    embed = client.embed(model="embed-v4.0", texts=["a", "b"], input_type="search_query", embedding_types=["float"])
    assert len(embed.embeddings.float_) == 2 and embed.meta.billed_units.input_tokens == 12
    served = sim.served_usage()
    assert served[("cohere.chat", "command-a-03-2025")] == times({**FULL, "cache_write": 0, "reasoning": 0}, 2)
    assert served[("cohere.embed", "embed-v4.0")]["input"] == 12
    with pytest.raises(cohere.errors.TooManyRequestsError):
        cohere.ClientV2(api_key="x", base_url=sim.base_url, timeout=5).chat(
            model="command-a-03-2025+429x9,ra_ms=1", messages=MESSAGES, request_options={"max_retries": 0}
        )


def test_ollama_routes(sim: SimulatedProvider) -> None:
    import ollama

    client = ollama.Client(host=sim.base_url)
    chat = client.chat(model="llama3.2:1b", messages=MESSAGES)
    assert (chat.prompt_eval_count, chat.eval_count, chat.done) == (12, 8, True) and chat.message.content
    parts = list(client.generate(model="llama3.2:1b", prompt="hi", stream=True))
    assert [p.done for p in parts] == [False] * 4 + [True] and parts[-1].eval_count == 8
    assert "".join(p.response for p in parts[:-1])
    assert client.embed(model="nomic-embed-text", input=["a", "b"]).prompt_eval_count == 12
    assert [r["api"] for r in sim.requests()] == ["ollama.chat", "ollama.generate", "ollama.embed"]
    assert sim.served_usage()[("ollama.generate", "llama3.2:1b")] == {**FULL, "cache_read": 0, "cache_write": 0,
                                                                        "reasoning": 0}  # fmt: skip
    with pytest.raises(ollama.ResponseError) as info:
        client.chat(model="llama3.2:1b+503x1", messages=MESSAGES)
    assert info.value.status_code == 503


# -------------------------------------------------------------------------------------
# Wire shapes of real traffic: n > 1, Azure's content-filter chunk, legacy completions' empty delta
# -------------------------------------------------------------------------------------


def post_json(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[str, bytes]:
    """POST JSON with urllib (no SDK in between); returns the content type and the (de-chunked) body bytes."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json", **(headers or {})}
    )
    with urllib.request.urlopen(request) as response:
        return response.headers["content-type"], response.read()


def sse_data(raw: bytes) -> list[Any]:
    """The ``data:`` payloads of an SSE body, JSON-decoded except ``[DONE]``."""
    lines = [line[len("data: ") :] for line in raw.decode().splitlines() if line.startswith("data: ")]
    return [line if line == "[DONE]" else json.loads(line) for line in lines]


def test_openai_chat_n_choices(sim: SimulatedProvider, oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(model="m", messages=MESSAGES, n=3)
    assert [c.index for c in completion.choices] == [0, 1, 2]
    assert [c.finish_reason for c in completion.choices] == ["stop", "length", "stop"]
    assert all(c.message.content for c in completion.choices)
    assert completion.usage.completion_tokens == 8

    chunks = list(
        oai.chat.completions.create(
            model="m+chunks=2", messages=MESSAGES, n=2, stream=True, stream_options={"include_usage": True}
        )
    )
    assert all(len(c.choices) == 1 for c in chunks[:-1])
    assert [c.choices[0].index for c in chunks[:-1]] == [0, 1] * 4  # role, 2 pieces, finish: each once per choice
    assert [c.choices[0].delta.role for c in chunks[:2]] == ["assistant", "assistant"]
    assert all(c.choices[0].delta.content for c in chunks[2:6])
    assert [c.choices[0].finish_reason for c in chunks[:-1]] == [None] * 6 + ["stop", "length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 8
    assert sim.served_usage() == {("openai.chat", "m"): times(FULL, 2)}  # n does not multiply usage
    with pytest.raises(openai.BadRequestError, match="n must be"):
        oai.chat.completions.create(model="m", messages=MESSAGES, n=0)


def test_azure_content_filter_first_chunk(sim: SimulatedProvider) -> None:
    url = sim.base_url + "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21"
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    _, raw = post_json(url, body, {"x-sim-scenario": "content_filter,chunks=2"})
    events = sse_data(raw)
    assert events[0] == {
        "id": "",
        "object": "",
        "created": 0,
        "model": "",
        "prompt_filter_results": [
            {"prompt_index": 0, "content_filter_results": {"hate": {"filtered": False, "severity": "safe"}}}
        ],
        "choices": [],
    }
    assert events[1]["choices"][0]["delta"]["role"] == "assistant" and events[1]["model"] == "gpt-4o-mini"
    assert len(events) == 6 and events[-1] == "[DONE]"  # filter, role, 2 pieces, finish, [DONE]
    _, plain = post_json(url, body)
    assert sse_data(plain)[0]["choices"][0]["delta"]["role"] == "assistant"  # only with the token
    # The SDK parses it, on the plain OpenAI route too.
    oai = openai.OpenAI(base_url=sim.openai_base_url, api_key="x")
    first = next(iter(oai.chat.completions.create(model="m+content_filter", messages=MESSAGES, stream=True)))
    assert (first.model, first.choices, first.prompt_filter_results[0]["prompt_index"]) == ("", [], 0)
    assert [r["api"] for r in sim.requests()] == ["openai.chat"] * 3


def test_completions_stream_empty_delta(sim: SimulatedProvider, oai: openai.OpenAI) -> None:
    body = {"model": "gpt-3.5-turbo-instruct", "prompt": "hi", "stream": True}
    _, raw = post_json(sim.openai_base_url + "/completions", body, {"x-sim-scenario": "empty_delta"})
    events = sse_data(raw)
    assert events[-1] == "[DONE]"
    final = events[-2]["choices"][0]
    assert final == {"text": "", "index": 0, "logprobs": None, "finish_reason": "stop", "delta": {}}
    assert all("delta" not in e["choices"][0] for e in events[:-2])
    _, plain = post_json(sim.openai_base_url + "/completions", body)
    assert "delta" not in sse_data(plain)[-2]["choices"][0]
    chunks = list(oai.completions.create(model="i+empty_delta", prompt="hi", stream=True))
    assert chunks[-1].choices[0].finish_reason == "stop" and chunks[-1].choices[0].delta == {}


# -------------------------------------------------------------------------------------
# Cohere v1
# -------------------------------------------------------------------------------------


def test_cohere_v1_wire_format(sim: SimulatedProvider) -> None:
    meta = {
        "api_version": {"version": "1"},
        "billed_units": {"input_tokens": 12, "output_tokens": 8},
        "tokens": {"input_tokens": 42, "output_tokens": 8},
    }
    _, raw = post_json(sim.base_url + "/v1/chat", {"message": "hi", "model": "command-r"})
    chat = json.loads(raw)
    assert set(chat) == {"response_id", "generation_id", "text", "finish_reason", "chat_history", "meta"}
    assert (chat["finish_reason"], chat["chat_history"], chat["meta"]) == ("COMPLETE", [], meta)

    content_type, raw = post_json(sim.base_url + "/v1/chat", {"message": "hi", "model": "command-r", "stream": True})
    assert content_type == "application/stream+json"
    lines = [json.loads(line) for line in raw.decode().splitlines()]
    assert [(e["event_type"], e["is_finished"]) for e in lines] == [("stream-start", False)] + [
        ("text-generation", False)
    ] * 4 + [("stream-end", True)]
    assert lines[-1]["finish_reason"] == "COMPLETE" and lines[-1]["response"]["meta"] == meta
    assert lines[-1]["response"]["generation_id"] == lines[0]["generation_id"]
    assert lines[-1]["response"]["text"] == "".join(e["text"] for e in lines[1:-1])

    _, raw = post_json(sim.base_url + "/v1/generate", {"prompt": "hi", "model": "command"})
    generation = json.loads(raw)
    assert (generation["prompt"], generation["meta"]) == ("hi", meta)
    assert generation["generations"][0]["finish_reason"] == "COMPLETE" and generation["generations"][0]["id"]
    content_type, raw = post_json(sim.base_url + "/v1/generate", {"prompt": "hi", "model": "command", "stream": True})
    assert content_type == "application/stream+json"
    lines = [json.loads(line) for line in raw.decode().splitlines()]
    assert [e["event_type"] for e in lines] == ["text-generation"] * 4 + ["stream-end"]
    assert lines[-1]["is_finished"] is True and lines[-1]["finish_reason"] == "COMPLETE"
    assert lines[-1]["response"]["generations"][0]["text"] == "".join(e["text"] for e in lines[:-1])

    _, raw = post_json(sim.base_url + "/v1/embed", {"texts": ["a", "b"], "model": "embed-english-v3.0"})
    embedded = json.loads(raw)
    assert len(embedded["embeddings"]) == 2 and len(embedded["embeddings"][0]) == 8
    assert embedded["texts"] == ["a", "b"]
    assert embedded["meta"] == {"api_version": {"version": "1"}, "billed_units": {"input_tokens": 12}}
    assert [r["api"] for r in sim.requests()] == ["cohere.chat_v1"] * 2 + ["cohere.generate"] * 2 + ["cohere.embed_v1"]


def test_cohere_v1_client(sim: SimulatedProvider) -> None:
    import cohere

    client = cohere.Client(api_key="x", base_url=sim.base_url)
    chat = client.chat(message="hi", model="command-r")
    assert chat.text and chat.finish_reason == "COMPLETE"
    assert (chat.meta.billed_units.input_tokens, chat.meta.tokens.input_tokens) == (12, 42)
    events = list(client.chat_stream(message="hi", model="command-r+chunks=3"))
    assert [e.event_type for e in events] == ["stream-start"] + ["text-generation"] * 3 + ["stream-end"]
    assert events[-1].response.meta.billed_units.output_tokens == 8
    generation = client.generate(prompt="hi", model="command")
    assert generation.generations[0].text and generation.meta.billed_units.output_tokens == 8
    parts = list(client.generate_stream(prompt="hi", model="command"))
    assert [p.event_type for p in parts] == ["text-generation"] * 4 + ["stream-end"]
    assert parts[-1].response.generations[0].finish_reason == "COMPLETE"
    embedded = client.embed(texts=["a"], model="embed-english-v3.0", input_type="search_query", batching=False)
    assert embedded.response_type == "embeddings_floats" and embedded.meta.billed_units.input_tokens == 12
    by_type = client.embed(texts=["a"], model="e", input_type="search_query", embedding_types=["float"], batching=False)
    assert len(by_type.embeddings.float_) == 1

    # Scenario tokens: no_usage, retries, cut.
    assert client.chat(message="hi", model="command-r+no_usage").meta.billed_units is None
    assert client.generate(prompt="hi", model="command+429x1,ra_ms=1").generations[0].text
    with pytest.raises(Exception, match="incomplete chunked read"):
        list(client.chat_stream(message="hi", model="command-r+cut"))

    async def run() -> list[Any]:
        aclient = cohere.AsyncClient(api_key="x", base_url=sim.base_url)
        results: list[Any] = [await aclient.chat(message="hi", model="command-r")]
        results.append([e.event_type async for e in aclient.chat_stream(message="hi", model="command-r")])
        results.append(await aclient.generate(prompt="hi", model="command"))
        results.append([e.event_type async for e in aclient.generate_stream(prompt="hi", model="command")])
        results.append(await aclient.embed(texts=["a"], model="embed-english-v3.0", batching=False))
        return results

    chat, chat_events, generation, generate_events, embedded = asyncio.run(run())
    assert chat.meta.billed_units.input_tokens == 12 and chat_events[-1] == "stream-end"
    assert generation.meta.billed_units.output_tokens == 8 and generate_events[-1] == "stream-end"
    assert embedded.meta.billed_units.input_tokens == 12
    plain = {**FULL, "cache_read": 0, "cache_write": 0, "reasoning": 0}
    served = sim.served_usage()
    assert served[("cohere.chat_v1", "command-r")] == times(plain, 4)  # not the no_usage one, not the cut one
    assert served[("cohere.generate", "command")] == times(plain, 5)
    assert served[("cohere.embed_v1", "embed-english-v3.0")]["calls"] == 2


# -------------------------------------------------------------------------------------
# Anthropic models through AnthropicBedrock and AnthropicVertex
# -------------------------------------------------------------------------------------


def _drive_anthropic(sim: SimulatedProvider, client_class: str, keys: dict[str, str], model: str) -> list[Any]:
    """create and stream, sync and async, with ``anthropic.{client_class}``; returns the requests served.

    Each answer has text, the requested model and the scenario's usage; each request body has the
    ``anthropic_version`` and no ``model`` (the clouds take it from the path).
    """
    anthropic = pytest.importorskip("anthropic")
    client, aclient = getattr(anthropic, client_class)(**keys), getattr(anthropic, "Async" + client_class)(**keys)
    results = [client.messages.create(model=model, max_tokens=10, messages=MESSAGES)]
    with client.messages.stream(model=model, max_tokens=10, messages=MESSAGES) as stream:
        results.append(stream.get_final_message())

    async def run() -> None:
        results.append(await aclient.messages.create(model=model, max_tokens=10, messages=MESSAGES))
        async with aclient.messages.stream(model=model, max_tokens=10, messages=MESSAGES) as stream:
            results.append(await stream.get_final_message())

    asyncio.run(run())
    assert len(results) == 4
    for m in results:
        assert m.content[0].text and m.model == model
        assert (m.usage.input_tokens, m.usage.output_tokens, m.usage.cache_read_input_tokens) == (5, 8, 4)
    requests = sim.requests()
    assert all(r["model"] == model and "model" not in r["body"] and r["body"]["anthropic_version"] for r in requests)
    return requests


def test_anthropic_bedrock_client(sim: SimulatedProvider) -> None:
    keys = {"base_url": sim.base_url, "aws_access_key": "x", "aws_secret_key": "y", "aws_region": "us-east-1"}
    model = "anthropic.claude-3-5-haiku-20241022-v1:0"
    requests = _drive_anthropic(sim, "AnthropicBedrock", keys, model)
    assert [r["path"].rsplit("/", 1)[1] for r in requests] == ["invoke", "invoke-with-response-stream"] * 2
    assert {r["api"] for r in requests} == {"bedrock.invoke"}
    assert sim.served_usage() == {("bedrock.invoke", model): times({**FULL, "reasoning": 0}, 4)}


def test_anthropic_vertex_client(sim: SimulatedProvider) -> None:
    keys = {"base_url": sim.base_url, "region": "us-east5", "project_id": "p", "access_token": "t"}
    model = "claude-3-5-haiku@20241022"
    requests = _drive_anthropic(sim, "AnthropicVertex", keys, model)
    prefix = "/projects/p/locations/us-east5/publishers/anthropic/models/claude-3-5-haiku@20241022:"
    assert [r["path"] for r in requests] == [prefix + "rawPredict", prefix + "streamRawPredict"] * 2
    assert [r["stream"] for r in requests] == [False, True] * 2
    assert {r["api"] for r in requests} == {"anthropic.vertex"}
    assert sim.served_usage() == {("anthropic.vertex", model): times(FULL, 4)}
    # Errors come back in Anthropic's format, and the SDK retries a 429.
    import anthropic

    with pytest.raises(anthropic.RateLimitError) as info:
        anthropic.AnthropicVertex(**keys, max_retries=0).messages.create(
            model=model + "+429x1", max_tokens=5, messages=MESSAGES
        )
    assert info.value.body["error"]["type"] == "rate_limit_error"
    raw = anthropic.AnthropicVertex(**keys).messages.with_raw_response.create(
        model=model + "+429x1", max_tokens=5, messages=MESSAGES
    )
    assert raw.retries_taken == 1 and raw.parse().model == model


# -------------------------------------------------------------------------------------
# Bedrock InvokeModel bodies of non-Anthropic models
# -------------------------------------------------------------------------------------


def _bedrock_client(sim: SimulatedProvider) -> Any:
    boto3 = pytest.importorskip("boto3")
    return boto3.client("bedrock-runtime", endpoint_url=sim.base_url, region_name="us-east-1",
                        aws_access_key_id="x", aws_secret_access_key="y")  # fmt: skip


def test_bedrock_invoke_titan(sim: SimulatedProvider) -> None:
    client = _bedrock_client(sim)
    model = "amazon.titan-text-express-v1"
    invoked = client.invoke_model(modelId=model, body=json.dumps({"inputText": "hi"}))
    body = json.loads(invoked["body"].read())
    assert body["inputTextTokenCount"] == 12
    [result] = body["results"]
    assert (result["tokenCount"], result["completionReason"]) == (8, "FINISH") and result["outputText"]
    headers = invoked["ResponseMetadata"]["HTTPHeaders"]
    assert (headers["x-amzn-bedrock-input-token-count"], headers["x-amzn-bedrock-output-token-count"]) == ("12", "8")
    assert "x-amzn-bedrock-cache-read-input-token-count" not in headers

    streamed = client.invoke_model_with_response_stream(modelId=model, body=json.dumps({"inputText": "hi"}))
    chunks = [json.loads(e["chunk"]["bytes"]) for e in streamed["body"]]
    assert [c["completionReason"] for c in chunks] == [None, None, None, "FINISH"]
    assert [c["totalOutputTextTokenCount"] for c in chunks] == [2, 4, 6, 8]
    assert all(c["index"] == 0 and c["inputTextTokenCount"] == 12 and c["outputText"] for c in chunks)
    metrics = chunks[-1]["amazon-bedrock-invocationMetrics"]
    assert (metrics["inputTokenCount"], metrics["outputTokenCount"]) == (12, 8)
    assert all("amazon-bedrock-invocationMetrics" not in c for c in chunks[:-1])
    plain = {**FULL, "cache_read": 0, "cache_write": 0, "reasoning": 0}
    assert sim.served_usage() == {("bedrock.invoke", model): times(plain, 2)}


def test_bedrock_invoke_nova(sim: SimulatedProvider) -> None:
    client = _bedrock_client(sim)
    model = "us.amazon.nova-lite-v1:0"  # a cross-region inference profile
    body = json.dumps({"messages": [{"role": "user", "content": [{"text": "hi"}]}]})
    answer = json.loads(client.invoke_model(modelId=model, body=body)["body"].read())
    assert answer["output"]["message"]["role"] == "assistant" and answer["output"]["message"]["content"][0]["text"]
    assert answer["stopReason"] == "end_turn"
    assert answer["usage"] == {"inputTokens": 12, "outputTokens": 8, "totalTokens": 20}

    streamed = client.invoke_model_with_response_stream(modelId=model, body=body)
    chunks = [json.loads(e["chunk"]["bytes"]) for e in streamed["body"]]
    assert [next(iter(c)) for c in chunks] == ["messageStart"] + ["contentBlockDelta"] * 4 + [
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    assert chunks[0] == {"messageStart": {"role": "assistant"}}
    assert all(c["contentBlockDelta"]["contentBlockIndex"] == 0 for c in chunks[1:5])
    assert chunks[6] == {"messageStop": {"stopReason": "end_turn"}}
    assert chunks[7]["metadata"] == {"usage": {"inputTokens": 12, "outputTokens": 8, "totalTokens": 20}}
    assert chunks[7]["amazon-bedrock-invocationMetrics"]["outputTokenCount"] == 8

    # no_usage: no counts anywhere, and no metadata chunk.
    quiet = json.loads(client.invoke_model(modelId=model + "+no_usage", body=body)["body"].read())
    assert "usage" not in quiet
    streamed = client.invoke_model_with_response_stream(modelId=model + "+no_usage", body=body)
    chunks = [json.loads(e["chunk"]["bytes"]) for e in streamed["body"]]
    assert next(iter(chunks[-1])) == "messageStop" and "amazon-bedrock-invocationMetrics" not in chunks[-1]
    assert sim.served_usage()[("bedrock.invoke", model)]["calls"] == 2


def test_bedrock_invoke_llama(sim: SimulatedProvider) -> None:
    client = _bedrock_client(sim)
    model = "meta.llama3-8b-instruct-v1:0"
    answer = json.loads(client.invoke_model(modelId=model, body=json.dumps({"prompt": "hi"}))["body"].read())
    assert set(answer) == {"generation", "prompt_token_count", "generation_token_count", "stop_reason"}
    assert (answer["prompt_token_count"], answer["generation_token_count"], answer["stop_reason"]) == (12, 8, "stop")
    streamed = client.invoke_model_with_response_stream(modelId=model, body=json.dumps({"prompt": "hi"}))
    chunks = [json.loads(e["chunk"]["bytes"]) for e in streamed["body"]]
    assert [c["prompt_token_count"] for c in chunks] == [12, None, None, None]
    assert [c["generation_token_count"] for c in chunks] == [2, 4, 6, 8]
    assert [c["stop_reason"] for c in chunks] == [None, None, None, "stop"]
    assert "".join(c["generation"] for c in chunks) == answer["generation"]
    assert chunks[-1]["amazon-bedrock-invocationMetrics"]["inputTokenCount"] == 12


def test_bedrock_invoke_body_follows_model_id(sim: SimulatedProvider) -> None:
    client = _bedrock_client(sim)
    body = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 10, "messages": MESSAGES})
    for model, key in [
        ("anthropic.claude-3-haiku-20240307-v1:0", "content"),
        ("eu.anthropic.claude-3-haiku-20240307-v1:0", "content"),
        ("cohere.command-r-v1:0", "content"),  # anything else: Anthropic format
        ("eu.amazon.titan-text-lite-v1", "results"),
        ("apac.meta.llama3-2-1b-instruct-v1:0", "generation"),
        ("amazon.titan-embed-text-v2:0", "content"),  # not a Titan *text* model
    ]:
        assert key in json.loads(client.invoke_model(modelId=model, body=body)["body"].read()), model
