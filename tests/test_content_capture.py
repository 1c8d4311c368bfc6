"""Content capture that fails closed and follows the conventions' message schema, for every provider; the
inference details event; OpenTelemetry's suppress_instrumentation; attribution keys that cannot shadow ours.

Real SDKs against the simulated provider; what is checked is what comes out: spans, log records, ledger rows.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm fetches its cost map at import otherwise

import anthropic
import boto3
import cohere
import litellm
import ollama
import openai
from google import genai
from google.genai import types as genai_types
from mistralai.client import Mistral
from opentelemetry.instrumentation.utils import suppress_instrumentation

import llm_otel
from llm_otel import semconv as sc

ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
SECRET = "sk-content-test-very-secret"
TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}  # fmt: skip
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
CHAT = [
    {"role": "system", "content": "Be terse."},
    {"role": "user", "content": "PROMPT-ONE"},
    {"role": "assistant", "content": None, "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
]


def _capture(make_capture: Any, monkeypatch: pytest.MonkeyPatch, mode: str) -> Any:
    monkeypatch.setenv(ENV, mode)
    return make_capture()


def _json_attr(span: Any, name: str) -> Any:
    return json.loads(span.attributes[name])


def _only_span(cap: Any) -> Any:
    spans = cap.spans()
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


# --- the mode setting ---------------------------------------------------------------------------------------------
def test_unknown_mode_warns_once_and_captures_nothing(
    sim: Any, make_capture: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="llm_otel")
    cap = _capture(make_capture, monkeypatch, "garbage-value")
    client = openai.OpenAI(base_url=sim.openai_base_url, api_key=SECRET)
    for _ in range(2):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "TOP-SECRET"}])
    warnings = [r for r in caplog.records if ENV in r.getMessage()]
    assert len(warnings) == 1 and "garbage-value" in warnings[0].getMessage()
    blob = repr([dict(s.attributes) for s in cap.spans()]) + repr(cap.log_exporter.get_finished_logs())
    assert "TOP-SECRET" not in blob and sc.INPUT_MESSAGES not in blob


def test_bad_mode_in_arguments_is_a_config_error() -> None:
    with pytest.raises(llm_otel.ConfigError, match=r"capture_content.*'loud'"):
        llm_otel.instrument(capture_content="loud", ledger=False)


@pytest.mark.parametrize("mode", ["SPAN_ONLY", "span_only", "true"])
def test_span_modes_put_messages_on_the_span_only(
    sim: Any, make_capture: Any, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    cap = _capture(make_capture, monkeypatch, mode)
    openai.OpenAI(base_url=sim.openai_base_url, api_key=SECRET).chat.completions.create(
        model="gpt-4o-mini", messages=CHAT, tools=[TOOL]
    )
    span = _only_span(cap)
    messages = _json_attr(span, sc.INPUT_MESSAGES)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool"]
    assert messages[1]["parts"] == [{"type": "text", "content": "PROMPT-ONE"}]
    assert messages[2]["parts"] == [{"type": "tool_call", "id": "call_1", "name": "get_weather",
                                     "arguments": {"city": "Oslo"}}]  # fmt: skip
    assert messages[3]["parts"] == [{"type": "tool_call_response", "id": "call_1", "response": "sunny"}]
    [tool] = _json_attr(span, sc.TOOL_DEFINITIONS)
    assert tool["type"] == "function" and tool["name"] == "get_weather" and tool["parameters"]["type"] == "object"
    [out] = _json_attr(span, sc.OUTPUT_MESSAGES)
    assert out["role"] == "assistant" and out["parts"][0]["type"] == "text" and out["finish_reason"]
    assert cap.log_exporter.get_finished_logs() == ()


def _details_events(cap: Any) -> list[Any]:
    logs = [d.log_record for d in cap.log_exporter.get_finished_logs()]
    return [r for r in logs if r.event_name == sc.INFERENCE_DETAILS_EVENT]


@pytest.mark.parametrize("mode", ["event_only", "span_and_event"])
def test_event_modes_emit_the_inference_details_event(
    sim: Any, make_capture: Any, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    cap = _capture(make_capture, monkeypatch, mode)
    anthropic.Anthropic(base_url=sim.base_url, api_key=SECRET).messages.create(
        model="claude-3-5-haiku-20241022", max_tokens=64, system="Be terse.",
        messages=[{"role": "user", "content": "PROMPT-TWO"}],
    )  # fmt: skip
    span = _only_span(cap)
    [event] = _details_events(cap)
    [data] = [d for d in cap.log_exporter.get_finished_logs() if d.log_record is event]
    assert data.instrumentation_scope.schema_url == sc.SCHEMA_URL
    assert event.trace_id == span.context.trace_id and event.span_id == span.context.span_id
    attrs = event.attributes
    assert attrs[sc.OPERATION_NAME] == "chat" and attrs[sc.PROVIDER_NAME] == "anthropic"
    assert attrs[sc.USAGE_INPUT_TOKENS] == span.attributes[sc.USAGE_INPUT_TOKENS]
    assert attrs[sc.INPUT_MESSAGES][0]["parts"][0]["content"] == "PROMPT-TWO"
    assert attrs[sc.SYSTEM_INSTRUCTIONS][0] == {"type": "text", "content": "Be terse."}
    assert attrs[sc.OUTPUT_MESSAGES][0]["role"] == "assistant"
    on_span = sc.INPUT_MESSAGES in span.attributes
    assert on_span == (mode == "span_and_event")


@pytest.mark.parametrize("mode", ["span_only", "event_only", "span_and_event", "no_content"])
def test_credentials_never_appear_in_any_mode(
    sim: Any, make_capture: Any, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    cap = _capture(make_capture, monkeypatch, mode)
    url = sim.openai_base_url.replace("http://", "http://user:pa55word@")
    openai.OpenAI(base_url=url, api_key=SECRET).chat.completions.create(model="gpt-4o-mini", messages=CHAT)
    _bedrock(sim).converse(modelId="amazon.nova-micro-v1:0", messages=[{"role": "user", "content": [{"text": "hi"}]}])
    blob = repr([dict(s.attributes) for s in cap.spans()]) + repr(cap.ledger_rows())
    blob += repr([d.log_record.attributes for d in cap.log_exporter.get_finished_logs()])
    data = cap.metric_reader.get_metrics_data()
    blob += data.to_json() if data else ""
    for secret in (SECRET, "pa55word", "very-secret-aws", "AKIDCONTENT"):
        assert secret not in blob


# --- every provider, in the conventions' schema ---------------------------------------------------------------------
def _bedrock(sim: Any) -> Any:
    return boto3.client("bedrock-runtime", endpoint_url=sim.base_url, region_name="us-east-1",
                        aws_access_key_id="AKIDCONTENT", aws_secret_access_key="very-secret-aws")  # fmt: skip


def _user_text(messages: list[dict[str, Any]]) -> list[str]:
    return [p["content"] for m in messages if m["role"] == "user" for p in m["parts"] if p["type"] == "text"]


def test_openai_responses_and_completions(sim: Any, make_capture: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    cap = _capture(make_capture, monkeypatch, "span_only")
    client = openai.OpenAI(base_url=sim.openai_base_url, api_key=SECRET)
    client.responses.create(model="gpt-4o-mini", input="PROMPT-R", instructions="Answer in French.",
                            tools=[{"type": "function", "name": "f", "parameters": {"type": "object"}}])  # fmt: skip
    client.completions.create(model="gpt-3.5-turbo-instruct", prompt="PROMPT-C", max_tokens=8)
    responses, completions = sorted(cap.spans(), key=lambda s: s.start_time)
    assert _user_text(_json_attr(responses, sc.INPUT_MESSAGES)) == ["PROMPT-R"]
    assert _json_attr(responses, sc.SYSTEM_INSTRUCTIONS) == [{"type": "text", "content": "Answer in French."}]
    assert _json_attr(responses, sc.TOOL_DEFINITIONS)[0]["name"] == "f"
    assert _user_text(_json_attr(completions, sc.INPUT_MESSAGES)) == ["PROMPT-C"]


def test_anthropic_blocks_and_tools(sim: Any, make_capture: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    cap = _capture(make_capture, monkeypatch, "span_only")
    anthropic.Anthropic(base_url=sim.base_url, api_key=SECRET).messages.create(
        model="claude-3-5-haiku-20241022", max_tokens=64,
        system=[{"type": "text", "text": "SYS-A"}],
        tools=[{"name": "lookup", "description": "d", "input_schema": {"type": "object"}}],
        messages=[
            {"role": "user", "content": "PROMPT-A"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "tu_1", "name": "lookup", "input": {"q": 1}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu_1", "content": "found"}]},
        ],
    )  # fmt: skip
    span = _only_span(cap)
    messages = _json_attr(span, sc.INPUT_MESSAGES)
    assert messages[0] == {"role": "user", "parts": [{"type": "text", "content": "PROMPT-A"}]}
    assert messages[1]["parts"] == [{"type": "tool_call", "id": "tu_1", "name": "lookup", "arguments": {"q": 1}}]
    assert messages[2]["parts"] == [{"type": "tool_call_response", "id": "tu_1", "response": "found"}]
    assert _json_attr(span, sc.SYSTEM_INSTRUCTIONS) == [{"type": "text", "content": "SYS-A"}]
    assert _json_attr(span, sc.TOOL_DEFINITIONS) == [{"type": "function", "name": "lookup", "description": "d",
                                                       "parameters": {"type": "object"}}]  # fmt: skip


def test_gemini_contents_and_system_instruction(sim: Any, make_capture: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    cap = _capture(make_capture, monkeypatch, "span_only")
    client = genai.Client(api_key=SECRET, http_options=genai_types.HttpOptions(base_url=sim.base_url))
    declaration = genai_types.FunctionDeclaration(name="get_time", description="Time now")
    client.models.generate_content(
        model="gemini-2.0-flash", contents=["PROMPT-G"],
        config=genai_types.GenerateContentConfig(
            system_instruction="SYS-G", tools=[genai_types.Tool(function_declarations=[declaration])],
            automatic_function_calling=genai_types.AutomaticFunctionCallingConfig(disable=True),
        ),
    )  # fmt: skip
    span = _only_span(cap)
    assert _user_text(_json_attr(span, sc.INPUT_MESSAGES)) == ["PROMPT-G"]
    assert _json_attr(span, sc.SYSTEM_INSTRUCTIONS) == [{"type": "text", "content": "SYS-G"}]
    assert _json_attr(span, sc.TOOL_DEFINITIONS)[0]["name"] == "get_time"
    assert _json_attr(span, sc.OUTPUT_MESSAGES)[0]["role"] == "assistant"


def test_bedrock_converse(sim: Any, make_capture: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    cap = _capture(make_capture, monkeypatch, "span_only")
    _bedrock(sim).converse(
        modelId="amazon.nova-micro-v1:0", system=[{"text": "SYS-B"}],
        messages=[{"role": "user", "content": [{"text": "PROMPT-B"}]}],
        toolConfig={"tools": [{"toolSpec": {"name": "t", "inputSchema": {"json": {"type": "object"}}}}]},
    )  # fmt: skip
    span = _only_span(cap)
    assert _user_text(_json_attr(span, sc.INPUT_MESSAGES)) == ["PROMPT-B"]
    assert _json_attr(span, sc.SYSTEM_INSTRUCTIONS) == [{"type": "text", "content": "SYS-B"}]
    assert _json_attr(span, sc.TOOL_DEFINITIONS)[0] == {"type": "function", "name": "t",
                                                         "parameters": {"type": "object"}}  # fmt: skip


def test_mistral_cohere_ollama_litellm(sim: Any, make_capture: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    cap = _capture(make_capture, monkeypatch, "span_only")
    user = [{"role": "system", "content": "SYS"}, {"role": "user", "content": "PROMPT-M"}]
    Mistral(api_key=SECRET, server_url=sim.base_url).chat.complete(model="mistral-small-latest", messages=user)
    cohere.ClientV2(api_key=SECRET, base_url=sim.base_url).chat(model="command-r-plus-08-2024", messages=user)
    cohere.Client(api_key=SECRET, base_url=sim.base_url).chat(model="command-r", message="PROMPT-M", preamble="SYS")
    ollama.Client(host=sim.base_url).chat(model="llama3.2", messages=user)
    ollama.Client(host=sim.base_url).generate(model="llama3.2", prompt="PROMPT-M", system="SYS")
    litellm.completion(model="openai/gpt-4o-mini", api_base=sim.openai_base_url, api_key=SECRET, messages=user)
    spans = sorted(cap.spans(), key=lambda s: s.start_time)
    assert len(spans) == 6
    for span in spans:
        messages = _json_attr(span, sc.INPUT_MESSAGES)
        assert _user_text(messages) == ["PROMPT-M"], span.name
        system = [p["content"] for m in messages if m["role"] == "system" for p in m["parts"]]
        if not system:
            system = [p["content"] for p in _json_attr(span, sc.SYSTEM_INSTRUCTIONS)]
        assert system == ["SYS"], span.name
        assert _json_attr(span, sc.OUTPUT_MESSAGES)[0]["parts"][0]["type"] == "text", span.name


def test_streamed_output_follows_the_schema(sim: Any, make_capture: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    cap = _capture(make_capture, monkeypatch, "span_only")
    chunks = list(openai.OpenAI(base_url=sim.openai_base_url, api_key=SECRET).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True))  # fmt: skip
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    [out] = _json_attr(_only_span(cap), sc.OUTPUT_MESSAGES)
    assert out["parts"] == [{"type": "text", "content": streamed}] and out["finish_reason"] == "stop"


# --- suppress_instrumentation ---------------------------------------------------------------------------------------
def test_suppress_instrumentation_is_honoured(sim: Any, capture: Any) -> None:
    client = openai.OpenAI(base_url=sim.openai_base_url, api_key=SECRET)
    with suppress_instrumentation():
        client.chat.completions.create(model="gpt-4o-mini", messages=CHAT)
        ollama.Client(host=sim.base_url).chat(model="llama3.2", messages=CHAT[:2])
    assert capture.spans() == [] and capture.points(sc.METRIC_OPERATION_DURATION) == []
    client.chat.completions.create(model="gpt-4o-mini", messages=CHAT)  # not suppressed: recorded
    assert len(capture.spans()) == 1 and len(capture.ledger_rows()) == 1
    assert [p.count for p in capture.points(sc.METRIC_OPERATION_DURATION)] == [1]


# --- attribution keys -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["retries", "cost", "usage", "ratelimit", "stream", "via", "budget"])
def test_reserved_attribution_keys_are_rejected(key: str) -> None:
    with pytest.raises(ValueError, match=f"'{key}' is reserved"), llm_otel.context(**{key: "nightly"}):
        pass


def test_agent_is_also_the_conventions_agent_name(sim: Any, capture: Any) -> None:
    with llm_otel.context(agent="planner", job="nightly"):
        openai.OpenAI(base_url=sim.openai_base_url, api_key=SECRET).chat.completions.create(
            model="gpt-4o-mini", messages=CHAT[:2]
        )
    attrs = dict(capture.span().attributes)
    assert attrs[sc.AGENT_NAME] == "planner" and attrs["llm_otel.agent"] == "planner"
    assert attrs["llm_otel.job"] == "nightly"
