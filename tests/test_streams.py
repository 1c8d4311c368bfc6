"""Streams end exactly once whatever the consumer does, and the user sees exactly the unpatched chunks."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import time
from typing import Any

import openai
import pytest

import llm_otel
from llm_otel import semconv as sc

MSG = [{"role": "user", "content": "hello"}]


def _client(sim: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=sim.openai_base_url, api_key="x", max_retries=0)


def _stream(client: openai.OpenAI, scenario: str = "", **kw: Any) -> Any:
    headers = {"x-sim-scenario": scenario} if scenario else {}
    return client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True, extra_headers=headers, **kw)


def _chunks_as_dicts(chunks: list[Any]) -> list[dict[str, Any]]:
    """Chunks without the fields that differ per response (id, timestamp, generated text)."""
    dumped = [c.model_dump(exclude={"id", "created"}) for c in chunks]
    for d in dumped:
        for choice in d["choices"]:
            if choice["delta"].get("content"):
                choice["delta"]["content"] = "<text>"
    return dumped


def test_user_sees_exactly_the_unpatched_chunks(sim: Any, tmp_path: Any) -> None:
    client = _client(sim)
    plain = _chunks_as_dicts(list(_stream(client, "chunks=5")))
    from telemetry_capture import Capture

    cap = Capture(None)
    try:
        instrumented = list(_stream(client, "chunks=5"))
        # We asked the provider for a usage chunk the user did not request, and swallowed it.
        assert sim.requests()[-1]["body"]["stream_options"] == {"include_usage": True}
        assert _chunks_as_dicts(instrumented) == plain
        assert all(c.choices for c in instrumented)
        assert isinstance(instrumented, list) and len(instrumented) == len(plain)
        attrs = dict(cap.span().attributes)
        assert attrs[sc.USAGE_OUTPUT_TOKENS] == 8
        assert attrs[sc.STREAM_CHUNKS] == 5
    finally:
        cap.close()


def test_user_requested_usage_chunk_is_passed_through(sim: Any, capture: Any) -> None:
    chunks = list(_stream(_client(sim), stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 12
    assert dict(capture.span().attributes)[sc.USAGE_INPUT_TOKENS] == 12


def test_opt_out_of_usage_injection(sim: Any, make_capture: Any) -> None:
    cap = make_capture(inject_stream_usage=False)
    list(_stream(_client(sim)))
    assert "stream_options" not in sim.requests()[-1]["body"]
    attrs = dict(cap.span().attributes)
    assert attrs[sc.USAGE_COMPLETE] is False
    assert sc.USAGE_INPUT_TOKENS not in attrs
    assert cap.points(sc.METRIC_TOKENS) == []  # unknown usage is never recorded as zero


def test_stream_isinstance_and_attributes_are_preserved(sim: Any, capture: Any) -> None:
    stream = _stream(_client(sim))
    assert isinstance(stream, openai.Stream)
    assert stream.response.status_code == 200
    stream.close()


def _end(capture: Any) -> str:
    return dict(capture.span().attributes)[sc.STREAM_END]


def test_break_ends_immediately_as_client_closed(sim: Any, capture: Any) -> None:
    stream = _stream(_client(sim), "chunks=6")
    for _ in stream:
        break
    assert _end(capture) == "client_closed"  # before the stream object is dropped
    attrs = dict(capture.span().attributes)
    assert attrs[sc.USAGE_COMPLETE] is False


def test_close_and_with_block_end_as_client_closed(sim: Any, capture: Any) -> None:
    stream = _stream(_client(sim), "chunks=6")
    next(iter(stream))
    stream.close()
    assert _end(capture) == "client_closed"
    capture.span_exporter.clear()
    with _stream(_client(sim), "chunks=6") as stream2:
        next(stream2)
    assert _end(capture) == "client_closed"


def test_full_read_with_next_ends_completed(sim: Any, capture: Any) -> None:
    stream = _stream(_client(sim), "chunks=3")
    with pytest.raises(StopIteration):
        while True:
            next(stream)
    assert _end(capture) == "completed"
    assert dict(capture.span().attributes)[sc.USAGE_INPUT_TOKENS] == 12


def test_abandoned_stream_ends_at_gc(sim: Any, capture: Any) -> None:
    stream = _stream(_client(sim), "chunks=6")
    next(stream)
    del stream
    gc.collect()
    collected = time.time_ns()
    deadline = time.monotonic() + 5  # ended at the writer thread's next round (every 0.25 s), not in the finalizer
    while not capture.spans() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _end(capture) == "gc"
    assert capture.span().end_time <= collected  # the end is when it was collected, not when it was processed


LOCKING_EXPORTER_APP = """
import gc, os, threading
import llm_otel
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

class LockingExporter(SpanExporter):
    # Holds its lock while it allocates, and so may run the garbage collector (here: always).
    def __init__(self):
        self.lock, self.ends = threading.Lock(), []
    def export(self, spans):
        with self.lock:
            self.ends += [s.attributes.get("llm_otel.stream.end", "-") for s in spans]
            gc.collect()
        return SpanExportResult.SUCCESS

exporter = LockingExporter()
tp = TracerProvider()
tp.add_span_processor(SimpleSpanProcessor(exporter))
llm_otel.instrument(ledger=False, tracer_provider=tp)
import openai
client = openai.OpenAI(base_url=os.environ["SIM_URL"] + "/v1", api_key="x", max_retries=0)
msg = [{"role": "user", "content": "hi"}]
stream = client.chat.completions.create(model="gpt-4o-mini", messages=msg, stream=True)
next(stream)
gc.disable()  # collections happen where the exporter runs them
cycle = [stream]
cycle.append(cycle)  # the dropped stream is reachable only from a cycle: only the collector frees it
del stream, cycle
client.chat.completions.create(model="gpt-4o-mini", messages=msg)  # its span's export collects the cycle
llm_otel.flush()
print("ENDS", sorted(exporter.ends), flush=True)
"""


def test_stream_collected_inside_an_exporters_lock_does_not_deadlock(sim: Any) -> None:
    """A finalizer runs wherever the collector runs, here inside an exporter holding its lock in the same thread:
    ending the dropped stream's span right there would call that exporter again and wait on its own lock."""
    env = {**os.environ, "SIM_URL": sim.base_url}
    env = {k: v for k, v in env.items() if not k.startswith(("OTEL_", "LLM_OTEL_"))}
    proc = subprocess.run(
        [sys.executable, "-c", LOCKING_EXPORTER_APP], capture_output=True, text=True, timeout=60, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ENDS ['-', 'gc']" in proc.stdout, proc.stdout + proc.stderr[-2000:]


def test_cut_mid_stream_ends_with_error_and_sdk_exception(sim: Any, capture: Any) -> None:
    stream = _stream(_client(sim), "cut,chunks=6")
    with pytest.raises(Exception) as info:
        for _ in stream:
            pass
    assert not type(info.value).__module__.startswith("llm_otel")
    span = capture.span()
    attrs = dict(span.attributes)
    assert attrs[sc.STREAM_END] == "error"
    assert attrs[sc.ERROR_TYPE].endswith(type(info.value).__name__)
    assert span.status.status_code.name == "ERROR"
    assert attrs[sc.USAGE_COMPLETE] is False
    rows = capture.ledger_rows()
    assert rows[0]["stream_end"] == "error" and rows[0]["input_tokens"] is None


def test_stream_helper_early_exit_ends_at_once(sim: Any, capture: Any) -> None:
    with _client(sim).chat.completions.stream(model="gpt-4o-mini", messages=MSG) as stream:
        for _ in stream:
            break
    assert _end(capture) == "client_closed"


def test_time_to_first_chunk_counts_from_call_start(sim: Any, capture: Any) -> None:
    list(_stream(_client(sim), "ttft=0.3,slow=0.02,chunks=4"))
    attrs = dict(capture.span().attributes)
    assert attrs[sc.RESPONSE_TIME_TO_FIRST_CHUNK] >= 0.3
    [point] = capture.points(sc.METRIC_TIME_TO_FIRST_CHUNK)
    assert point.value >= 0.3
    # 3 gaps between 4 output chunks, each about 20 ms.
    gaps = capture.points(sc.METRIC_TIME_PER_OUTPUT_CHUNK)
    assert sum(p.count for p in gaps) == 3
    assert 0.015 <= sum(p.value for p in gaps) / 3 < 0.2
    # 8 output tokens over ~60 ms of generation.
    assert 8 / 0.2 < attrs[sc.TOKENS_PER_SECOND] < 8 / 0.05
    assert attrs[sc.BURST_TOKENS_PER_SECOND] >= attrs[sc.TOKENS_PER_SECOND] * 0.9


def test_provider_that_sends_no_usage_records_none(sim: Any, capture: Any) -> None:
    list(_stream(_client(sim), "no_usage"))
    attrs = dict(capture.span().attributes)
    assert attrs[sc.USAGE_COMPLETE] is False and attrs[sc.STREAM_END] == "completed"
    assert capture.points(sc.METRIC_TOKENS) == []
    assert capture.points(sc.METRIC_COST) == []
    assert llm_otel.session_usage()[("openai", "gpt-4o-mini")].tokens == {}


def _async_run(sim: Any, body: Any) -> None:
    async def go() -> None:
        async with openai.AsyncOpenAI(base_url=sim.openai_base_url, api_key="x", max_retries=0) as client:
            await body(client)

    asyncio.run(go())


def test_async_full_break_and_context_exit(sim: Any, capture: Any) -> None:
    async def body(client: Any) -> None:
        s = await client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True)
        assert isinstance(s, openai.AsyncStream)
        async for _ in s:
            pass
        s2 = await client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True)
        async with s2:
            async for _ in s2:
                break
        s3 = await client.chat.completions.create(
            model="gpt-4o-mini", messages=MSG, stream=True, extra_headers={"x-sim-scenario": "cut,chunks=6"}
        )
        with pytest.raises(Exception):  # noqa: B017 - the SDK's own mid-stream error type
            async for _ in s3:
                pass

    _async_run(sim, body)
    ends = sorted(dict(s.attributes)[sc.STREAM_END] for s in capture.spans())
    assert ends == ["client_closed", "completed", "error"]


def test_async_stream_helper_early_exit(sim: Any, capture: Any) -> None:
    async def body(client: Any) -> None:
        async with client.chat.completions.stream(model="gpt-4o-mini", messages=MSG) as stream:
            async for _ in stream:
                break

    _async_run(sim, body)
    assert _end(capture) == "client_closed"
