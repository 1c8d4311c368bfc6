"""CPU and memory overhead of llm-otel on the real openai SDK, against hand-written instrumentation.

Everything runs in one process on an in-process httpx2 ``MockTransport``: no sockets. Three arms are timed
in interleaved rounds (the order rotates every round) and medians are reported:

- ``baseline``: the uninstrumented SDK.
- ``floor``: the uninstrumented SDK plus the least a user would write by hand for the same telemetry: one
  CLIENT span with the same attributes, and the same metric points (same instruments, same attribute
  sets) that llm-otel records for the call. The bench checks that both produce the same span attribute
  keys and the same metric points before timing anything.
- ``llm-otel``: ``llm_otel.instrument(...)`` (ledger on, in a temporary file). ``instrument()`` patches
  classes process-wide, so this arm is instrumented at the start of each of its blocks and uninstrumented
  at the end (outside the timed window).

CPU time is measured two ways: ``thread_time_ns`` (the calling thread only) and ``process_time_ns`` (every
thread; for the llm-otel arm the window also covers draining the ledger, whose SQLite writes run on a
background thread).

Usage: python bench/overhead.py [--quick] [--profile] [--json PATH]. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx2
import openai
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import llm_otel
from llm_otel import semconv as sc

HERE = Path(__file__).resolve().parent
MODEL = "gpt-4o-mini"
RESPONSE_MODEL = "gpt-4o-mini-2024-07-18"
HOST = "bench.invalid"
PORT = 80  # what llm-otel reports for an http:// base URL without a port
MAX_TOKENS = 64
MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Say hello in five words."},
]
USAGE = {
    "prompt_tokens": 120,
    "completion_tokens": 40,
    "total_tokens": 160,
    "prompt_tokens_details": {"cached_tokens": 64, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 8,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
RATELIMIT_HEADERS = {"x-ratelimit-remaining-requests": "9999", "x-ratelimit-remaining-tokens": "1999000"}
# gpt-4o-mini list prices (USD per token) for the floor's hand-written cost.
PRICE_IN, PRICE_CACHED, PRICE_OUT = 0.15e-6, 0.075e-6, 0.60e-6

_perf = time.perf_counter


# --- the in-process provider -------------------------------------------------------------------------------
def _completion_body() -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": RESPONSE_MODEL,
            "system_fingerprint": "fp_bench",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello there, nice to meet!", "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": USAGE,
        }
    ).encode()


def _sse_body(chunks: int, include_usage: bool) -> bytes:
    """Like the real API: a role chunk, ``chunks`` content chunks, a finish chunk, [usage chunk], [DONE]."""
    head = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1_700_000_000,
            "model": RESPONSE_MODEL, "system_fingerprint": "fp_bench"}  # fmt: skip
    extra = {"usage": None} if include_usage else {}

    def choice(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

    events = [{**head, "choices": [choice({"role": "assistant", "content": "", "refusal": None})], **extra}]
    events += [{**head, "choices": [choice({"content": f"tok{i} "})], **extra} for i in range(chunks)]
    events.append({**head, "choices": [choice({}, "stop")], **extra})
    if include_usage:
        events.append({**head, "choices": [], "usage": USAGE})
    lines = [f"data: {json.dumps(e)}\n\n" for e in events]
    lines.append("data: [DONE]\n\n")
    return "".join(lines).encode()


class Provider:
    """The MockTransport handler: canned bodies, built once."""

    def __init__(self, chunks: int) -> None:
        self.chunks = chunks
        self.completion = _completion_body()
        self.json_headers = {"content-type": "application/json", **RATELIMIT_HEADERS}
        self.sse_headers = {"content-type": "text/event-stream", **RATELIMIT_HEADERS}
        self._sse: dict[tuple[int, bool], bytes] = {}

    def sse(self, chunks: int, include_usage: bool) -> bytes:
        key = (chunks, include_usage)
        body = self._sse.get(key)
        if body is None:
            body = self._sse[key] = _sse_body(chunks, include_usage)
        return body

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        if body.get("stream"):
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return httpx2.Response(200, headers=self.sse_headers, content=self.sse(self.chunks, usage))
        return httpx2.Response(200, headers=self.json_headers, content=self.completion)


_LAST_HEADERS: ContextVar[Any] = ContextVar("bench_last_headers", default=None)


def _stash_headers(response: Any) -> None:
    """httpx response hook: how a hand-instrumenting user gets at the rate-limit headers."""
    _LAST_HEADERS.set(response.headers)


def make_client(provider: Provider, header_hook: bool = False) -> openai.OpenAI:
    hooks = {"response": [_stash_headers]} if header_hook else None
    http = httpx2.Client(transport=httpx2.MockTransport(provider), event_hooks=hooks)
    return openai.OpenAI(api_key="x", base_url=f"http://{HOST}/v1", http_client=http, max_retries=0)


# --- telemetry plumbing shared by the floor and llm-otel arms --------------------------------------------------
class DropSpanExporter(SpanExporter):
    """Receives every ended span (through SimpleSpanProcessor) and drops it."""

    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


@dataclass
class Telemetry:
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    logger_provider: LoggerProvider
    metric_reader: InMemoryMetricReader
    span_exporter: Any

    @classmethod
    def create(cls, span_exporter: Any) -> Telemetry:
        tp = TracerProvider()
        tp.add_span_processor(SimpleSpanProcessor(span_exporter))
        reader = InMemoryMetricReader()  # the benchmark's reader is never collected
        return cls(tp, MeterProvider(metric_readers=[reader]), LoggerProvider(), reader, span_exporter)


class FloorInstruments:
    """The instruments a user would create for the same metrics (same names, units and bucket advice)."""

    def __init__(self, meter_provider: MeterProvider) -> None:
        m = meter_provider.get_meter("bench.floor")
        self.duration = m.create_histogram(
            sc.METRIC_OPERATION_DURATION, unit="s", explicit_bucket_boundaries_advisory=sc.DURATION_BUCKETS
        )
        self.token_usage = m.create_histogram(
            sc.METRIC_TOKEN_USAGE, unit="{token}", explicit_bucket_boundaries_advisory=sc.TOKEN_BUCKETS
        )
        self.tokens = m.create_counter(sc.METRIC_TOKENS, unit="{token}")
        self.cost = m.create_counter(sc.METRIC_COST, unit="USD")
        self.request_cost = m.create_histogram(
            sc.METRIC_REQUEST_COST, unit="USD", explicit_bucket_boundaries_advisory=sc.COST_BUCKETS
        )
        self.throttle_wait = m.create_histogram(
            sc.METRIC_THROTTLE_WAIT, unit="s", explicit_bucket_boundaries_advisory=(0.0, *sc.DURATION_BUCKETS)
        )
        self.tokens_per_second = m.create_histogram(
            sc.METRIC_TOKENS_PER_SECOND, unit="{token}/s", explicit_bucket_boundaries_advisory=sc.RATE_BUCKETS
        )
        self.ratelimit = m.create_gauge(sc.METRIC_RATELIMIT_REMAINING, unit="{unit}")
        self.ttfc = m.create_histogram(
            sc.METRIC_TIME_TO_FIRST_CHUNK, unit="s", explicit_bucket_boundaries_advisory=sc.DURATION_BUCKETS
        )
        self.per_chunk = m.create_histogram(
            sc.METRIC_TIME_PER_OUTPUT_CHUNK, unit="s", explicit_bucket_boundaries_advisory=sc.DURATION_BUCKETS
        )
        self.burst = m.create_histogram(
            sc.METRIC_BURST_TOKENS_PER_SECOND, unit="{token}/s", explicit_bucket_boundaries_advisory=sc.RATE_BUCKETS
        )


# --- the floor: hand-written instrumentation -------------------------------------------------------------------
def _burst(times: list[float], tokens: int, window: float = 0.25) -> float:
    """Peak output rate over a sliding window of chunk arrivals (what llm-otel reports as burst)."""
    best = lo = 0
    for hi in range(len(times)):
        while times[hi] - times[lo] > window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best * (tokens / len(times)) / min(window, times[-1] - times[0])


def _usage_counts(u: Any) -> list[tuple[str, int]]:
    counts = [("input", u.prompt_tokens), ("output", u.completion_tokens)]
    cached = u.prompt_tokens_details.cached_tokens if u.prompt_tokens_details else None
    reasoning = u.completion_tokens_details.reasoning_tokens if u.completion_tokens_details else None
    if cached is not None:
        counts.append(("cache_read", cached))
    if reasoning is not None:
        counts.append(("reasoning", reasoning))
    return counts


def _record_common(fi: FloorInstruments, attrs: dict[str, Any], duration: float, counts: list[tuple[str, int]],
                   cost: float, tps: float, headers: Any) -> None:  # fmt: skip
    fi.duration.record(duration, attrs)
    for kind, n in counts:
        typed = {**attrs, sc.TOKEN_TYPE: kind}
        fi.tokens.add(n, typed)
        if kind == "input" or kind == "output":
            fi.token_usage.record(n, typed)
    fi.cost.add(cost, attrs)
    fi.request_cost.record(cost, attrs)
    fi.throttle_wait.record(0.0, attrs)
    fi.tokens_per_second.record(tps, attrs)
    fi.ratelimit.set(int(headers["x-ratelimit-remaining-requests"]), {**attrs, sc.RATELIMIT_KIND: "requests"})
    fi.ratelimit.set(int(headers["x-ratelimit-remaining-tokens"]), {**attrs, sc.RATELIMIT_KIND: "tokens"})


def _start_attrs(stream: bool) -> dict[str, Any]:
    attrs = {
        sc.OPERATION_NAME: "chat",
        sc.PROVIDER_NAME: "openai",
        sc.REQUEST_MODEL: MODEL,
        sc.SERVER_ADDRESS: HOST,
        sc.SERVER_PORT: PORT,
        sc.REQUEST_MAX_TOKENS: MAX_TOKENS,
    }
    if stream:
        attrs[sc.REQUEST_STREAM] = True
    return attrs


def _cost(u: Any) -> float:
    cached = (u.prompt_tokens_details.cached_tokens or 0) if u.prompt_tokens_details else 0
    return (u.prompt_tokens - cached) * PRICE_IN + cached * PRICE_CACHED + u.completion_tokens * PRICE_OUT


def floor_chat(client: openai.OpenAI, tracer: Any, fi: FloorInstruments) -> Any:
    with tracer.start_as_current_span(f"chat {MODEL}", kind=SpanKind.CLIENT, attributes=_start_attrs(False)) as span:
        t0 = _perf()
        resp = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=MAX_TOKENS)
        duration = _perf() - t0
        u = resp.usage
        counts = _usage_counts(u)
        cost = _cost(u)
        tps = u.completion_tokens / duration
        headers = _LAST_HEADERS.get()
        span.set_attributes(
            {
                sc.RESPONSE_MODEL: resp.model,
                sc.RESPONSE_ID: resp.id,
                sc.RESPONSE_FINISH_REASONS: [c.finish_reason for c in resp.choices],
                **{_USAGE_SPAN_ATTR[k]: n for k, n in counts},
                sc.USAGE_COMPLETE: True,
                sc.COST_USD: cost,
                sc.COST_SOURCE: "local",
                sc.TOKENS_PER_SECOND: tps,
                sc.RATELIMIT_REMAINING_REQUESTS: int(headers["x-ratelimit-remaining-requests"]),
                sc.RATELIMIT_REMAINING_TOKENS: int(headers["x-ratelimit-remaining-tokens"]),
            }
        )
    attrs = {sc.OPERATION_NAME: "chat", sc.PROVIDER_NAME: "openai", sc.REQUEST_MODEL: MODEL,
             sc.RESPONSE_MODEL: resp.model, sc.SERVER_ADDRESS: HOST, sc.SERVER_PORT: PORT}  # fmt: skip
    _record_common(fi, attrs, duration, counts, cost, tps, headers)
    return resp


def floor_stream(client: openai.OpenAI, tracer: Any, fi: FloorInstruments) -> None:
    with tracer.start_as_current_span(f"chat {MODEL}", kind=SpanKind.CLIENT, attributes=_start_attrs(True)) as span:
        t0 = _perf()
        stream = client.chat.completions.create(
            model=MODEL, messages=MESSAGES, max_tokens=MAX_TOKENS, stream=True, stream_options={"include_usage": True}
        )
        times: list[float] = []
        model = rid = finish = u = None
        for chunk in stream:
            if model is None:
                model, rid = chunk.model, chunk.id
            if chunk.usage is not None:
                u = chunk.usage
            for choice in chunk.choices:
                if choice.delta.content:
                    times.append(_perf())
                if choice.finish_reason:
                    finish = choice.finish_reason
        duration = _perf() - t0
        counts = _usage_counts(u)
        cost = _cost(u)
        ttfc = times[0] - t0
        tps = u.completion_tokens / (times[-1] - times[0])
        burst = _burst(times, u.completion_tokens)
        headers = _LAST_HEADERS.get()
        span.set_attributes(
            {
                sc.RESPONSE_MODEL: model,
                sc.RESPONSE_ID: rid,
                sc.RESPONSE_FINISH_REASONS: [finish],
                **{_USAGE_SPAN_ATTR[k]: n for k, n in counts},
                sc.USAGE_COMPLETE: True,
                sc.COST_USD: cost,
                sc.COST_SOURCE: "local",
                sc.RESPONSE_TIME_TO_FIRST_CHUNK: ttfc,
                sc.TOKENS_PER_SECOND: tps,
                sc.BURST_TOKENS_PER_SECOND: burst,
                sc.STREAM_END: "completed",
                sc.STREAM_CHUNKS: len(times),
                sc.RATELIMIT_REMAINING_REQUESTS: int(headers["x-ratelimit-remaining-requests"]),
                sc.RATELIMIT_REMAINING_TOKENS: int(headers["x-ratelimit-remaining-tokens"]),
            }
        )
    attrs = {sc.OPERATION_NAME: "chat", sc.PROVIDER_NAME: "openai", sc.REQUEST_MODEL: MODEL,
             sc.RESPONSE_MODEL: model, sc.SERVER_ADDRESS: HOST, sc.SERVER_PORT: PORT}  # fmt: skip
    _record_common(fi, attrs, duration, counts, cost, tps, headers)
    fi.ttfc.record(ttfc, attrs)
    record_gap = fi.per_chunk.record
    prev = times[0]
    for t in times[1:]:
        record_gap(t - prev, attrs)
        prev = t
    fi.burst.record(burst, attrs)


_USAGE_SPAN_ATTR = {
    "input": sc.USAGE_INPUT_TOKENS,
    "output": sc.USAGE_OUTPUT_TOKENS,
    "cache_read": sc.USAGE_CACHE_READ_INPUT_TOKENS,
    "reasoning": sc.USAGE_REASONING_OUTPUT_TOKENS,
}


def plain_chat(client: openai.OpenAI) -> Any:
    return client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=MAX_TOKENS)


def plain_stream(client: openai.OpenAI) -> None:
    for _ in client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=MAX_TOKENS, stream=True):
        pass


# --- llm-otel on / off -----------------------------------------------------------------------------------------
class LlmOtel:
    """Instruments with the bench's providers and a temporary ledger; uninstruments again."""

    def __init__(self, telemetry: Telemetry, ledger: Path | bool) -> None:
        self.telemetry = telemetry
        self.ledger = str(ledger) if isinstance(ledger, Path) else ledger

    def on(self) -> Any:
        t = self.telemetry
        return llm_otel.instrument(
            ledger=self.ledger, capture_content=False, inject_stream_usage=True, tracer_provider=t.tracer_provider,
            meter_provider=t.meter_provider, logger_provider=t.logger_provider)  # fmt: skip

    @staticmethod
    def off() -> None:
        llm_otel.uninstrument()

    @contextlib.contextmanager
    def active(self) -> Iterator[Any]:
        rt = self.on()
        try:
            yield rt
        finally:
            self.off()


# --- verification: the floor emits what llm-otel emits --------------------------------------------------------
def metric_points(reader: InMemoryMetricReader) -> dict[str, dict[tuple[tuple[str, Any], ...], int]]:
    """Measurements per metric and attribute set: histogram counts; one per data point for sums/gauges
    (valid after a single call, where no attribute set of a counter or gauge is hit twice)."""
    out: dict[str, dict[tuple[tuple[str, Any], ...], int]] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                per = out.setdefault(metric.name, {})
                for dp in metric.data.data_points:
                    key = tuple(sorted((k, v) for k, v in dp.attributes.items()))
                    per[key] = per.get(key, 0) + (dp.count if hasattr(dp, "bucket_counts") else 1)
    return out


def verify(provider: Provider, chunks: int, ledger: Path | bool) -> dict[str, Any]:
    """One call of each kind through floor and llm-otel on fresh in-memory providers; compare what they emit."""
    report: dict[str, Any] = {}
    for kind in ("chat", "stream"):
        emitted = {}
        for arm in ("floor", "llm-otel"):
            tel = Telemetry.create(InMemorySpanExporter())
            if arm == "floor":
                client = make_client(provider, header_hook=True)
                fi = FloorInstruments(tel.meter_provider)
                tracer = tel.tracer_provider.get_tracer("bench.floor")
                (floor_chat if kind == "chat" else floor_stream)(client, tracer, fi)
            else:
                client = make_client(provider)
                with LlmOtel(tel, ledger).active():
                    (plain_chat if kind == "chat" else plain_stream)(client)
            spans = tel.span_exporter.get_finished_spans()
            points = metric_points(tel.metric_reader)
            emitted[arm] = {
                "spans": len(spans),
                "span_name": spans[0].name if spans else None,
                "span_kind": spans[0].kind.name if spans else None,
                "span_keys": sorted(spans[0].attributes) if spans else [],
                "points": points,
            }
        f, o = emitted["floor"], emitted["llm-otel"]
        counts = {name: sum(per.values()) for name, per in sorted(o["points"].items())}
        report[kind] = {
            "points_per_call": counts,
            "points_total": sum(counts.values()),
            "same_points": f["points"] == o["points"],
            "same_span": (f["spans"], f["span_name"], f["span_kind"], f["span_keys"])
            == (o["spans"], o["span_name"], o["span_kind"], o["span_keys"]),
            "span_keys_only_llm_otel": sorted(set(o["span_keys"]) - set(f["span_keys"])),
            "span_keys_only_floor": sorted(set(f["span_keys"]) - set(o["span_keys"])),
            "points_only_llm_otel": _diff_points(o["points"], f["points"]),
            "points_only_floor": _diff_points(f["points"], o["points"]),
        }
    return report


def _diff_points(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    out = []
    for name, per in a.items():
        for key, n in per.items():
            if b.get(name, {}).get(key) != n:
                out.append(f"{name} {dict(key)} x{n}")
    return out


# --- timing ----------------------------------------------------------------------------------------------------
@dataclass
class Arm:
    name: str
    run: Callable[[], Any]
    enter: Callable[[], Any] = lambda: None
    drain: Callable[[], Any] = lambda: None  # inside the process-time window (ledger writes)
    leave: Callable[[], Any] = lambda: None
    thread_us: list[float] = field(default_factory=list)
    process_us: list[float] = field(default_factory=list)


def time_arms(arms: list[Arm], rounds: int, block: int, warm: int) -> None:
    """``rounds`` rounds; each runs every arm for one block of ``block`` units (order rotates per round)."""
    for r in range(rounds):
        k = r % len(arms)
        for arm in arms[k:] + arms[:k]:
            arm.enter()
            try:
                for _ in range(warm):
                    arm.run()
                arm.drain()
                run = arm.run
                gc.collect()
                p0 = time.process_time_ns()
                t0 = time.thread_time_ns()
                for _ in range(block):
                    run()
                t1 = time.thread_time_ns()
                arm.drain()
                p1 = time.process_time_ns()
            finally:
                arm.leave()
            arm.thread_us.append((t1 - t0) / block / 1e3)
            arm.process_us.append((p1 - p0) / block / 1e3)


def paired(a: list[float], b: list[float]) -> float:
    """Median over rounds of a - b (rounds are adjacent in time, so drift cancels)."""
    return statistics.median(x - y for x, y in zip(a, b, strict=True))


def summarize(arms: list[Arm]) -> dict[str, Any]:
    by = {a.name: a for a in arms}
    out: dict[str, Any] = {"arms": {}}
    for clock in ("thread", "process"):
        base = getattr(by["baseline"], f"{clock}_us")
        for a in arms:
            vals = getattr(a, f"{clock}_us")
            row = out["arms"].setdefault(a.name, {})
            row[f"{clock}_us"] = statistics.median(vals)
            row[f"{clock}_spread_us"] = [min(vals), max(vals)]
            row[f"{clock}_added_us"] = paired(vals, base)
        llm, floor = getattr(by["llm-otel"], f"{clock}_us"), getattr(by["floor"], f"{clock}_us")
        out[f"{clock}_beyond_floor_us"] = paired(llm, floor)
        f_added = out["arms"]["floor"][f"{clock}_added_us"]
        out[f"{clock}_ratio"] = out["arms"]["llm-otel"][f"{clock}_added_us"] / f_added if f_added > 0 else None
    return out


def workload_arms(kind: str, provider: Provider, telemetry: Telemetry, ledger: Path | bool) -> list[Arm]:
    plain = make_client(provider)
    hooked = make_client(provider, header_hook=True)
    fi = FloorInstruments(telemetry.meter_provider)
    tracer = telemetry.tracer_provider.get_tracer("bench.floor")
    lo = LlmOtel(telemetry, ledger)
    if kind == "chat":
        base_run: Callable[[], Any] = lambda: plain_chat(plain)  # noqa: E731
        floor_run: Callable[[], Any] = lambda: floor_chat(hooked, tracer, fi)  # noqa: E731
    else:
        base_run = lambda: plain_stream(plain)  # noqa: E731
        floor_run = lambda: floor_stream(hooked, tracer, fi)  # noqa: E731
    return [
        Arm("baseline", base_run),
        Arm("floor", floor_run),
        Arm("llm-otel", base_run, enter=lo.on, drain=drain_ledger, leave=lo.off),
    ]


# --- memory ----------------------------------------------------------------------------------------------------
def rss_kb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024


def drain_ledger() -> None:
    """Wait for the ledger thread to write every queued row. Not ``llm_otel.flush()``: that also
    force-flushes the meter provider, which would collect the in-memory reader."""
    ledger = llm_otel._api._ledger
    if ledger is not None:
        ledger.flush(30)


def ledger_backlog() -> int | None:
    """Rows waiting for the ledger's writer thread (private attribute; None if it is not there)."""
    pending = getattr(getattr(llm_otel._api, "_ledger", None), "_pending", None)
    return len(pending) if pending is not None else None


def settle() -> None:
    drain_ledger()
    gc.collect()


def traced_growth(client: openai.OpenAI, calls: int, warm: int) -> dict[str, Any]:
    """tracemalloc growth over ``calls`` calls, after ``warm`` calls under tracing (so one-off allocations
    made after tracing starts are not counted); the ledger is drained at both ends."""
    tracemalloc.start(1)
    try:
        for _ in range(warm):
            plain_chat(client)
        settle()
        m0 = tracemalloc.get_traced_memory()[0]
        snap0 = tracemalloc.take_snapshot()
        half = calls // 2
        for _ in range(half):
            plain_chat(client)
        settle()
        m_half = tracemalloc.get_traced_memory()[0]
        for _ in range(calls - half):
            plain_chat(client)
        settle()
        m1 = tracemalloc.get_traced_memory()[0]
        snap1 = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    stats = snap1.compare_to(snap0, "lineno")
    return {
        "growth_kb": (m1 - m0) / 1024,
        "bytes_per_call": (m1 - m0) / calls,
        # One-off growth (caches filling) lands mostly in the first half; a leak grows in both.
        "second_half_bytes_per_call": (m1 - m_half) / (calls - half),
        "top": [f"{s.size_diff / 1024:+.1f} KB {s.count_diff:+d} blocks {s.traceback[0]}" for s in stats[:5]],
    }


def memory(
    provider: Provider, telemetry: Telemetry, ledger: Path | bool, calls: int, warm: int, traced: int
) -> dict[str, Any]:
    """RSS over ``calls`` instrumented calls after ``warm``; then tracemalloc over ``traced`` calls, for the
    baseline (uninstrumented) and for llm-otel."""
    client = make_client(provider)
    out: dict[str, Any] = {"calls": calls, "warmup": warm, "traced_calls": traced}
    t_start = time.perf_counter()
    with LlmOtel(telemetry, ledger).active():
        for _ in range(warm):
            plain_chat(client)
        settle()
        r0 = rss_kb()
        checkpoints, backlog = [r0], [0]
        quarter = max(calls // 4, 1)
        for i in range(1, calls + 1):
            plain_chat(client)
            if i % quarter == 0:
                checkpoints.append(rss_kb())
                backlog.append(ledger_backlog())
        settle()
        r1 = rss_kb()
    out["rss_kb_before"], out["rss_kb_after"] = r0, r1
    out["rss_growth_kb"] = r1 - r0
    out["rss_kb_checkpoints"] = checkpoints  # every calls/4, before the final drain
    out["ledger_backlog_checkpoints"] = backlog  # rows queued for the ledger thread at those points
    out["rss_pass_s"] = time.perf_counter() - t_start
    # tracemalloc in separate passes: tracing inflates RSS and time.
    traced_warm = min(warm, 300)
    out["traced_baseline"] = traced_growth(client, traced, traced_warm)
    with LlmOtel(telemetry, ledger).active():
        out["traced_llm_otel"] = traced_growth(client, traced, traced_warm)
    out["traced_beyond_baseline_bytes_per_call"] = (
        out["traced_llm_otel"]["bytes_per_call"] - out["traced_baseline"]["bytes_per_call"]
    )
    out["traced_second_half_beyond_baseline_bytes_per_call"] = (
        out["traced_llm_otel"]["second_half_bytes_per_call"] - out["traced_baseline"]["second_half_bytes_per_call"]
    )
    out["tracemalloc_pass_s"] = time.perf_counter() - t_start - out["rss_pass_s"]
    return out


# --- instrument() / import cost in fresh interpreters ----------------------------------------------------------
_SNIPPETS = {
    "import_llm_otel": "import time; t=time.perf_counter(); import llm_otel; print(time.perf_counter()-t)",
    "instrument": "import time,llm_otel; t=time.perf_counter(); llm_otel.instrument(ledger=False); "
    "print(time.perf_counter()-t)",
    "import_llm_otel_after_openai": "import time,openai; t=time.perf_counter(); import llm_otel; "
    "print(time.perf_counter()-t)",
    "instrument_openai_imported": "import time,openai,llm_otel; t=time.perf_counter(); "
    "llm_otel.instrument(ledger=False); print(time.perf_counter()-t)",
}


def startup(runs: int) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLM_OTEL_"))}
    out: dict[str, Any] = {"runs": runs}
    for name, code in _SNIPPETS.items():
        times = []
        for _ in range(runs):
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
            if proc.returncode != 0:
                raise RuntimeError(f"{name} failed: {proc.stderr[-2000:]}")
            times.append(float(proc.stdout.strip().splitlines()[-1]) * 1e3)
        out[f"{name}_ms"] = statistics.median(times)
        out[f"{name}_ms_all"] = [round(t, 2) for t in times]
    return out


# --- profile ---------------------------------------------------------------------------------------------------
def profile(provider: Provider, telemetry: Telemetry, ledger: Path | bool, calls: int, streams: int, top: int) -> None:
    """cProfile the llm-otel arm and print where llm-otel's own work goes.

    "llm-otel work" = own time of functions in llm_otel + cumulative time of everything llm_otel calls
    directly except the SDK call it wraps (openai). Shares are of that total. cProfile inflates call-heavy
    code, so read shares as proportions; the timed arms give the real microseconds.
    """
    import cProfile
    import pstats

    for kind, n in (("chat", calls), ("stream", streams)):
        if n <= 0:
            continue
        client = make_client(provider)
        run = plain_chat if kind == "chat" else plain_stream
        with LlmOtel(telemetry, ledger).active():
            for _ in range(50):
                run(client)
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(n):
                run(client)
            prof.disable()
        stats = pstats.Stats(prof)
        total = stats.total_tt  # type: ignore[attr-defined]
        spots = _hot_spots(stats)
        work = sum(t for t, _nc, _name in spots)
        print(f"\n== cProfile, llm-otel arm, {n} {kind} calls: {total / n * 1e6:.0f} us/call under the profiler; "
              f"llm-otel work {work / n * 1e6:.0f} us/call ({work / total:.1%}) ==")  # fmt: skip
        print("  share  us/call  calls/call  where (llm_otel function: own time; [callee] <- caller: cumulative)")
        for t, nc, name in spots[:top]:
            print(f"  {t / work:5.1%} {t / n * 1e6:8.1f} {nc / n:10.1f}  {name}")
        own = sum(t for t, _nc, name in spots if not name.startswith("["))
        print(f"  -- llm_otel own time {own / work:.1%}; callees {1 - own / work:.1%}")
        by_pkg: dict[str, float] = {}
        for t, _nc, name in spots:
            pkg = name[1:].split("]", 1)[0].split(":", 1)[0] if name.startswith("[") else "llm_otel (own time)"
            by_pkg[pkg] = by_pkg.get(pkg, 0.0) + t
        print("  -- by package: " + "; ".join(
            f"{pkg} {t / work:.1%}" for pkg, t in sorted(by_pkg.items(), key=lambda kv: -kv[1])[:6]))  # fmt: skip


def _hot_spots(stats: Any) -> list[tuple[float, int, str]]:
    """(seconds, calls, label): llm_otel functions by own time, and non-openai callees of llm_otel
    functions by cumulative time (per callee and calling llm_otel function)."""
    sep = f"{os.sep}llm_otel{os.sep}"
    spots: list[tuple[float, int, str]] = []
    for (file, line, func), (_cc, nc, tt, _ct, callers) in stats.stats.items():
        if sep in file:
            spots.append((tt, nc, f"{file.split(sep, 1)[1]}:{line}({func})"))
            continue
        pkg = "builtins" if file == "~" else _package(file)
        if pkg == "openai":
            continue  # the wrapped SDK call itself
        for (cfile, _cline, cfunc), v in callers.items():
            if sep in cfile:
                caller = f"{cfile.split(sep, 1)[1].removesuffix('.py')}.{cfunc}"
                spots.append((v[3], v[0], f"[{pkg}:{func}] <- {caller}"))
    return sorted(spots, reverse=True)


def _package(file: str) -> str:
    parts = Path(file).parts
    if "site-packages" in parts:
        rest = parts[parts.index("site-packages") + 1 :]
        if rest and rest[0] == "opentelemetry" and len(rest) > 2:
            return ".".join(rest[:3]).removesuffix(".py")
        return rest[0].removesuffix(".py") if rest else file
    return Path(file).stem


def _git_state(path: Path) -> str | None:
    """Commit (+dirty) of the checkout llm_otel was imported from, when it is one."""
    try:
        top = subprocess.run(["git", "-C", str(path.parent), "rev-parse", "--show-toplevel", "HEAD"],
                             capture_output=True, text=True, timeout=10, check=True).stdout.split()  # fmt: skip
        dirty = subprocess.run(["git", "-C", top[0], "status", "--porcelain", "--", "src"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()  # fmt: skip
        return top[1][:12] + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


# --- report ----------------------------------------------------------------------------------------------------
def _fmt(x: float | None, spec: str = "7.1f") -> str:
    return "   n/a" if x is None else format(x, spec)


def print_timing(title: str, s: dict[str, Any], unit: str) -> None:
    print(f"\n{title}  (CPU us per {unit}; median of rounds; added = paired median vs baseline)")
    print(f"  {'arm':<9} {'thread':>8} {'added':>8} {'[min..max]':>19} | {'process':>8} {'added':>8}")
    for name, row in s["arms"].items():
        lo, hi = row["thread_spread_us"]
        print(
            f"  {name:<9} {row['thread_us']:8.1f} {row['thread_added_us']:8.1f} {f'[{lo:.0f}..{hi:.0f}]':>19} |"
            f" {row['process_us']:8.1f} {row['process_added_us']:8.1f}"
        )
    print(
        f"  llm-otel beyond floor: {s['thread_beyond_floor_us']:.1f} us (thread), "
        f"{s['process_beyond_floor_us']:.1f} us (process);  added ratio llm-otel/floor: "
        f"{_fmt(s['thread_ratio'], '.3f')} (thread), {_fmt(s['process_ratio'], '.3f')} (process)"
    )


SECTIONS = ("chat", "stream", "memory", "startup")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer iterations (< 30 s)")
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"comma list of sections: {','.join(SECTIONS)}")
    ap.add_argument("--rounds", type=int, default=0, help="timing rounds (default 11, quick 5)")
    ap.add_argument("--chunks", type=int, default=50, help="content chunks per stream (default 50)")
    ap.add_argument("--no-ledger", action="store_true", help="llm-otel arm without the SQLite ledger")
    ap.add_argument(
        "--traced-calls",
        type=int,
        default=0,
        help="calls under tracemalloc (default 5000, quick 600; tracing makes each call ~5x slower)",
    )
    ap.add_argument("--profile", action="store_true", help="instead: cProfile the llm-otel arm, print hot spots")
    ap.add_argument("--profile-calls", type=int, default=5000)
    ap.add_argument("--profile-streams", type=int, default=500)
    ap.add_argument("--profile-top", type=int, default=15, help="hot spots to print")
    ap.add_argument("--json", type=Path, default=HERE / "results.json", help="where to write results")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    if args.chunks < 6 or not only or only - set(SECTIONS):
        ap.error(f"--chunks must be > 5; --only takes {', '.join(SECTIONS)}")

    q = args.quick
    cfg: dict[str, Any] = {
        "mode": "quick" if q else "default",
        "sections": [x for x in SECTIONS if x in only],
        "ledger": not args.no_ledger,
        "chunks": args.chunks,
        "short_chunks": 5,
        "rounds": args.rounds or (5 if q else 11),
        "chat_block": 100 if q else 400,
        "stream_block": 10 if q else 40,
        "short_stream_block": 40 if q else 150,
        "warm": 10 if q else 30,
        "stream_warm": 3 if q else 5,
        "memory_calls": 2000 if q else 20000,
        "memory_warmup": 300 if q else 2000,
        "memory_traced_calls": args.traced_calls or (400 if q else 3000),
        "startup_runs": 3 if q else 5,
    }
    tmp = Path(tempfile.mkdtemp(prefix="llm-otel-bench-"))
    ledger: Path | bool = tmp / "ledger.sqlite3" if cfg["ledger"] else False
    try:
        provider = Provider(args.chunks)
        telemetry = Telemetry.create(DropSpanExporter())
        if args.profile:
            profile(provider, telemetry, ledger, args.profile_calls, args.profile_streams, top=args.profile_top)
            return 0
        results = run_all(cfg, provider, telemetry, ledger)
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"Results in {args.json}")
        return 0
    finally:
        with contextlib.suppress(Exception):
            llm_otel.uninstrument()
        shutil.rmtree(tmp, ignore_errors=True)


def run_all(cfg: dict[str, Any], provider: Provider, telemetry: Telemetry, ledger: Path | bool) -> dict[str, Any]:
    started = time.perf_counter()
    n = cfg["chunks"]
    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        **{pkg: version(pkg) for pkg in ("openai", "httpx2", "opentelemetry-sdk", "wrapt", "llm-otel")},
        "llm_otel_file": llm_otel.__file__,
        "llm_otel_git": _git_state(Path(llm_otel.__file__)),
        "clock": "thread = time.thread_time_ns (caller thread); process = time.process_time_ns (all threads)",
        "loadavg_at_start": os.getloadavg(),
    }
    print(f"llm-otel overhead bench ({cfg['mode']}; {', '.join(cfg['sections'])}; ledger "
          f"{'on' if cfg['ledger'] else 'off'}): python {env['python']}, openai {env['openai']}, "
          f"opentelemetry-sdk {env['opentelemetry-sdk']}, {env['cpus']} CPUs")  # fmt: skip
    print(f"llm_otel from {Path(env['llm_otel_file']).parent} (git: {env['llm_otel_git']}); load average "
          f"{env['loadavg_at_start'][0]:.2f} (other processes add noise: run on an idle machine)")  # fmt: skip
    results: dict[str, Any] = {"config": cfg, "environment": env}
    sections: dict[str, float] = {}
    targets: dict[str, bool] = {}

    def lap(name: str) -> None:
        sections[name] = time.perf_counter() - started - sum(sections.values())

    checks = verify(provider, n, ledger)
    results["verification"] = checks
    print("\nMetric points per call counted from llm-otel (InMemoryMetricReader), compared with the floor:")
    for kind, c in checks.items():
        label = "non-stream chat" if kind == "chat" else f"stream, {n} chunks"
        pts = ", ".join(f"{k.replace('gen_ai.client.', '').replace('llm_otel.', '')} {v}"
                        for k, v in c["points_per_call"].items())  # fmt: skip
        print(f"  {label}: {c['points_total']} points: {pts}")
        print(f"    floor emits the same points: {c['same_points']}; same span name/kind/attribute keys: "
              f"{c['same_span']}")  # fmt: skip
        for what in ("span_keys_only_llm_otel", "span_keys_only_floor", "points_only_llm_otel", "points_only_floor"):
            if c[what]:
                print(f"    {what}: {c[what]}")
    lap("verify")

    workloads = []
    if "chat" in cfg["sections"]:
        workloads.append(("chat", "non-stream chat", cfg["chat_block"], 0))
    if "stream" in cfg["sections"]:
        workloads.append(("stream", f"stream, {n} content chunks", cfg["stream_block"], n))
        short = cfg["short_chunks"]
        workloads.append(("stream", f"stream, {short} content chunks", cfg["short_stream_block"], short))
    timing: dict[str, Any] = {}
    for kind, title, block, chunks in workloads:
        provider.chunks = chunks or n
        arms = workload_arms(kind, provider, telemetry, ledger)
        time_arms(arms, cfg["rounds"], block, cfg["warm"] if kind == "chat" else cfg["stream_warm"])
        s = summarize(arms)
        s["block"], s["rounds"], s["chunks"] = block, cfg["rounds"], chunks or None
        timing["chat" if kind == "chat" else f"stream_{chunks}"] = s
        print_timing(title, s, "call" if kind == "chat" else "stream")
    provider.chunks = n
    if timing:
        results["timing"] = timing
    if "chat" in timing:
        ratio = timing["chat"]["thread_ratio"]
        targets["chat_added_ratio_thread<=1.1"] = ratio is not None and ratio <= 1.1

    if "stream" in cfg["sections"]:
        short = cfg["short_chunks"]
        streams: dict[str, Any] = {}
        for clock in ("thread", "process"):
            b_long = timing[f"stream_{n}"][f"{clock}_beyond_floor_us"]
            b_short = timing[f"stream_{short}"][f"{clock}_beyond_floor_us"]
            slope = (b_long - b_short) / (n - short)
            streams[clock] = {
                "per_chunk_beyond_floor_us": b_long / n,
                "marginal_per_chunk_beyond_floor_us": slope,
                "fixed_per_stream_beyond_floor_us": b_short - short * slope,
                "per_stream_beyond_floor_us": b_long,
            }
        results["streams"] = streams
        print(f"\nStreams beyond the floor ({n} vs {short} chunks):")
        for clock, st in streams.items():
            print(f"  {clock:<7}: (llm-otel - floor)/chunks = {st['per_chunk_beyond_floor_us']:.2f} us/chunk"
                  f" [target <= 2];  fit: {st['marginal_per_chunk_beyond_floor_us']:.2f} us/chunk"
                  f" + {st['fixed_per_stream_beyond_floor_us']:.1f} us/stream fixed")  # fmt: skip
        targets["stream_per_chunk_beyond_floor_thread<=2us"] = streams["thread"]["per_chunk_beyond_floor_us"] <= 2
    lap("timing")

    if "memory" in cfg["sections"]:
        mem = memory(provider, telemetry, ledger, cfg["memory_calls"], cfg["memory_warmup"], cfg["memory_traced_calls"])
        results["memory"] = mem
        print(f"\nMemory, llm-otel arm, {mem['calls']} non-stream calls after {mem['warmup']} warm-up:")
        cps = " ".join(f"{kb / 1024:.1f}" for kb in mem["rss_kb_checkpoints"])
        print(f"  RSS {mem['rss_kb_before'] / 1024:.1f} -> {mem['rss_kb_after'] / 1024:.1f} MB after draining the "
              f"ledger ({mem['rss_growth_kb']:+.0f} KB, {mem['rss_growth_kb'] * 1024 / mem['calls']:+.0f} bytes/call);"
              f" every {mem['calls'] // 4} calls: {cps} MB")  # fmt: skip
        print(f"  ledger rows still queued at those points: {mem['ledger_backlog_checkpoints']}")
        for arm in ("baseline", "llm_otel"):
            t = mem[f"traced_{arm}"]
            print(f"  tracemalloc, {arm.replace('_', '-')}, over {mem['traced_calls']} further calls (ledger drained): "
                  f"{t['growth_kb']:+.1f} KB ({t['bytes_per_call']:+.2f} bytes/call; second half "
                  f"{t['second_half_bytes_per_call']:+.2f}); top: {t['top'][0]}")  # fmt: skip
        beyond = mem["traced_second_half_beyond_baseline_bytes_per_call"]
        targets["memory_traced_flat(2nd half <2 bytes/call beyond baseline)"] = beyond < 2
        targets["memory_rss_flat(<1 MB)"] = mem["rss_growth_kb"] < 1024
        lap("memory")

    if "startup" in cfg["sections"]:
        st = startup(cfg["startup_runs"])
        results["startup"] = st
        print(f"\nFresh interpreter, wall ms, median of {st['runs']}: import llm_otel {st['import_llm_otel_ms']:.1f}"
              f" (after import openai: {st['import_llm_otel_after_openai_ms']:.1f}); instrument(ledger=False) "
              f"{st['instrument_ms']:.1f} [target < 50]; instrument() with openai imported (patching included) "
              f"{st['instrument_openai_imported_ms']:.1f}")  # fmt: skip
        targets["instrument_ms<50"] = st["instrument_ms"] < 50
        lap("startup")

    results["targets"] = targets
    results["sections_s"] = sections
    results["elapsed_s"] = time.perf_counter() - started
    results["loadavg_at_end"] = os.getloadavg()
    print("\nTargets: " + "; ".join(f"{k}: {'PASS' if v else 'FAIL'}" for k, v in targets.items()))
    print(f"Elapsed {results['elapsed_s']:.0f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in sections.items()) + ")"
          f"; load average at end {results['loadavg_at_end'][0]:.2f}")  # fmt: skip
    return results


if __name__ == "__main__":
    sys.exit(main())
