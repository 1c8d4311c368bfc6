"""Anthropic workload: CPU per call with and without llm-otel, non-streaming and streaming (messages.stream).

The real anthropic SDK on an in-process httpx2 MockTransport (no sockets). Arms run in interleaved blocks
and medians are reported; the figures are ratios from one run (these machines are noisy).

    python bench/anthropic_overhead.py [--rounds N] [--chunks N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import anthropic
import httpx2
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

import llm_otel

USAGE = {"input_tokens": 500, "cache_read_input_tokens": 1500, "cache_creation_input_tokens": 0, "output_tokens": 200}
MESSAGE = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-latest",
           "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn", "usage": USAGE}  # fmt: skip


def sse(chunks: int) -> bytes:
    def ev(kind: str, data: dict[str, Any]) -> str:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n"

    start = {**MESSAGE, "content": [], "stop_reason": None, "usage": {**USAGE, "output_tokens": 1}}
    parts = [ev("message_start", {"message": start}),
             ev("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})]  # fmt: skip
    parts += [ev("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "word "}})] * chunks
    parts += [ev("content_block_stop", {"index": 0}),
              ev("message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 200}}),
              ev("message_stop", {})]  # fmt: skip
    return "".join(parts).encode()


class Drop(SpanExporter):
    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def client(chunks: int) -> anthropic.Anthropic:
    stream_body, json_body = sse(chunks), json.dumps(MESSAGE).encode()

    def handler(request: httpx2.Request) -> httpx2.Response:
        headers = {"anthropic-ratelimit-requests-remaining": "99", "anthropic-ratelimit-tokens-remaining": "9999"}
        if b'"stream":true' in request.content.replace(b" ", b""):
            return httpx2.Response(200, content=stream_body, headers={**headers, "content-type": "text/event-stream"})
        return httpx2.Response(200, content=json_body, headers={**headers, "content-type": "application/json"})

    http = httpx2.Client(transport=httpx2.MockTransport(handler))
    return anthropic.Anthropic(api_key="x", base_url="http://bench.invalid", http_client=http, max_retries=0)


def per_call_us(fn: Any, n: int) -> float:
    start = time.thread_time_ns()
    for _ in range(n):
        fn()
    return (time.thread_time_ns() - start) / n / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--chunks", type=int, default=50)
    args = parser.parse_args()
    c = client(args.chunks)
    msgs = [{"role": "user", "content": "hi"}]

    def call() -> None:
        c.messages.create(model="claude-3-5-haiku-latest", max_tokens=256, messages=msgs)

    def stream() -> None:
        with c.messages.stream(model="claude-3-5-haiku-latest", max_tokens=256, messages=msgs) as s:
            s.get_final_message()

    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(Drop()))
    mp = MeterProvider(metric_readers=[InMemoryMetricReader()])
    ledger = Path(tempfile.mkdtemp()) / "ledger.db"
    results: dict[str, dict[str, list[float]]] = {"call": {"base": [], "otel": []}, "stream": {"base": [], "otel": []}}
    for _ in range(args.rounds):
        for instrumented in (False, True):
            if instrumented:
                llm_otel.instrument(ledger=str(ledger), tracer_provider=tp, meter_provider=mp)
            for _ in range(20):  # warm-up
                call()
            arm = "otel" if instrumented else "base"
            results["call"][arm].append(per_call_us(call, 300))
            results["stream"][arm].append(per_call_us(stream, 60))
            if instrumented:
                llm_otel.flush()
                llm_otel.uninstrument()
    med = {k: {a: statistics.median(v) for a, v in arms.items()} for k, arms in results.items()}
    call_added = med["call"]["otel"] - med["call"]["base"]
    stream_added = med["stream"]["otel"] - med["stream"]["base"]
    print("anthropic messages, CPU us per call (caller thread, median of rounds)")
    print(f"  create   base {med['call']['base']:8.1f}  llm-otel {med['call']['otel']:8.1f}  "
          f"added {call_added:7.1f} ({med['call']['otel'] / med['call']['base']:.2f}x)")  # fmt: skip
    print(f"  stream   base {med['stream']['base']:8.1f}  llm-otel {med['stream']['otel']:8.1f}  "
          f"added {stream_added:7.1f} ({med['stream']['otel'] / med['stream']['base']:.2f}x), "
          f"{(stream_added - call_added) / args.chunks:.2f} us per chunk beyond a non-stream call")  # fmt: skip


if __name__ == "__main__":
    main()
