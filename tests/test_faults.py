"""Faults in our code never break the user's call; the SDK's own exceptions reach the app unchanged."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import openai
import pytest

import llm_otel
from llm_otel import semconv as sc

MSG = [{"role": "user", "content": "hello"}]


def _client(sim: Any, **kw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=sim.openai_base_url, api_key="x", **kw)


def test_pricing_exception_leaves_call_successful(sim: Any, capture: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("pricing exploded")

    monkeypatch.setattr(capture.runtime.prices, "cost", broken)
    response = _client(sim).chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert response.choices[0].message.content
    attrs = dict(capture.span().attributes)
    assert attrs[sc.USAGE_INPUT_TOKENS] == 12
    assert attrs[sc.COST_SOURCE] == "unpriced"


class ExplodingProcessor:
    def __init__(self) -> None:
        self.calls = 0

    def before_call(self, info: Any) -> None:
        self.calls += 1
        raise RuntimeError("processor bug before the call")

    def on_usage(self, record: Any) -> None:
        raise RuntimeError("processor bug after the call")


def test_processor_exceptions_never_reach_the_app(sim: Any, make_capture: Any) -> None:
    proc = ExplodingProcessor()
    cap = make_capture(processors=[proc])
    chunks = list(_client(sim).chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True))
    assert chunks
    assert proc.calls == 1
    assert dict(cap.span().attributes)[sc.USAGE_INPUT_TOKENS] == 12
    assert cap.ledger_rows()[0]["input_tokens"] == 12  # other processors still ran


def test_internal_exception_in_stream_observer_keeps_stream_working(
    sim: Any, capture: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llm_otel.core import call as record

    def broken_finish(self: Any, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("bug while finishing")

    monkeypatch.setattr(record.Call, "_finish", broken_finish)
    chunks = list(_client(sim).chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True))
    assert len(chunks) >= 2
    response = _client(sim).chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert response.usage.prompt_tokens == 12


@pytest.mark.parametrize(
    ("scenario", "error"),
    [("500x9", openai.InternalServerError), ("429x9", openai.RateLimitError)],
)
def test_sdk_exceptions_keep_their_type(sim: Any, capture: Any, scenario: str, error: type) -> None:
    with pytest.raises(error):
        _client(sim, max_retries=1).chat.completions.create(
            model="gpt-4o-mini", messages=MSG, extra_headers={"x-sim-scenario": scenario + ",ra=0.01"}
        )
    assert dict(capture.span().attributes)[sc.ERROR_TYPE] == f"openai.{error.__name__}"


def test_connection_error_keeps_its_type(capture: Any) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=1)
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    attrs = dict(capture.span().attributes)
    assert attrs[sc.ERROR_TYPE] == "openai.APIConnectionError"
    assert capture.total(sc.METRIC_RETRIES, **{sc.RETRY_REASON: "connection"}) == 1


def test_refused_otlp_endpoint_raises_nothing_in_the_app(sim: Any, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import llm_otel, openai
            llm_otel.instrument(endpoint="http://127.0.0.1:{closed_port}", ledger={str(tmp_path / "l.db")!r})
            c = openai.OpenAI(base_url={sim.openai_base_url!r}, api_key="x")
            for _ in range(3):
                c.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "x"}}])
            llm_otel.flush(timeout=2)
            print("APP-OK", sum(t.calls for t in llm_otel.session_usage().values()))
            """
        )
    )
    env = {**os.environ, "OTEL_EXPORTER_OTLP_TIMEOUT": "1", "OTEL_BSP_EXPORT_TIMEOUT": "1000"}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "APP-OK 3" in proc.stdout
    assert time.monotonic() - start < 60
    assert "Traceback" not in proc.stderr.replace("Failed to export", "")


def test_api_key_and_url_userinfo_never_reach_telemetry(sim: Any, capture: Any) -> None:
    secret = "sk-live-very-secret-key"
    url = sim.openai_base_url.replace("http://", "http://user:pa55word@")
    client = openai.OpenAI(base_url=url, api_key=secret)
    client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    blob = repr([dict(s.attributes) for s in capture.spans()]) + repr(capture.ledger_rows())
    data = capture.metric_reader.get_metrics_data()
    blob += data.to_json() if data else ""
    assert secret not in blob and "pa55word" not in blob
    assert dict(capture.span().attributes)[sc.SERVER_ADDRESS] == "127.0.0.1"


def test_content_not_captured_by_default(sim: Any, capture: Any) -> None:
    _client(sim).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "TOP-SECRET"}])
    attrs = dict(capture.span().attributes)
    assert sc.INPUT_MESSAGES not in attrs and sc.OUTPUT_MESSAGES not in attrs
    assert "TOP-SECRET" not in repr(attrs) + repr(capture.ledger_rows())


def test_content_captured_when_asked(sim: Any, make_capture: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "span_only")
    cap = make_capture()
    r = _client(sim).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "PROMPT-1"}])
    chunks = list(_client(sim).chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    first, second = cap.spans()
    assert "PROMPT-1" in first.attributes[sc.INPUT_MESSAGES]
    assert r.choices[0].message.content in first.attributes[sc.OUTPUT_MESSAGES]
    assert streamed in second.attributes[sc.OUTPUT_MESSAGES]
    llm_otel.uninstrument()


def test_gemini_and_bedrock_non_stream_output_captured_when_asked(
    sim: Any, make_capture: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3
    from google import genai
    from google.genai import types

    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "span_only")
    cap = make_capture()
    gemini = genai.Client(api_key="x", http_options=types.HttpOptions(base_url=sim.base_url))
    g = gemini.models.generate_content(model="gemini-2.0-flash", contents="hi")
    bedrock = boto3.client("bedrock-runtime", endpoint_url=sim.base_url, region_name="us-east-1",
                           aws_access_key_id="x", aws_secret_access_key="y")  # fmt: skip
    b = bedrock.converse(modelId="anthropic.claude-3-5-haiku-20241022-v1:0",
                         messages=[{"role": "user", "content": [{"text": "hi"}]}])  # fmt: skip
    first, second = sorted(cap.spans(), key=lambda s: s.start_time)
    assert g.text and g.text in first.attributes[sc.OUTPUT_MESSAGES]
    text = b["output"]["message"]["content"][0]["text"]
    assert text and text in second.attributes[sc.OUTPUT_MESSAGES]
    llm_otel.uninstrument()
