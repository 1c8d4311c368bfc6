"""Time the budget processor adds per call, with 10 budgets.

Two measurements, each as medians over interleaved rounds (the arm order rotates every round):

- ``hooks``: the processor's ``before_call`` + ``on_usage`` alone, called with pre-built usage records, against
  a processor that does nothing. Caller-thread CPU (``thread_time_ns``) is the hot-path cost a call pays;
  all-thread CPU (``process_time_ns``, the window includes waiting for the writer thread's SQLite commits)
  is the total cost per call, background work included.
- ``sdk``: real openai SDK calls (chat completions) on an in-process httpx2 ``MockTransport`` (no sockets),
  ``instrument(ledger=False, processors=[...])`` with the budget processor vs a processor that does nothing.
  Reported: caller-thread CPU per call (everything, the writer thread's interference included), and the
  hooks' own time inside those calls (``perf_counter_ns`` around each hook; in a real call the processor's
  code and data are no longer in the CPU caches, so this is higher than the tight loop's figure).
  ``instrument()`` patches process-wide, so each block instruments and uninstruments outside its timing.

The 10 budgets mix what a real configuration has: USD and token budgets; daily, weekly, monthly and rolling
windows; time zones; scope on provider / model glob / operation / service / context keys; group_by tenant
and job; two with ``action: block`` (so ``before_call`` has work). Limits are high enough that no threshold
fires during the run: alerts are rare events, not per-call cost.

Usage: python bench/budget_overhead.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import openai
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

import llm_otel
from llm_otel.budget.processor import BudgetProcessor
from llm_otel.records import CallInfo, UsageRecord
from llm_otel.usage import Usage

HERE = Path(__file__).resolve().parent
BIG = 1e12
BUDGETS: list[dict[str, Any]] = [
    {"name": "all-usd-daily", "limit": BIG, "period": "daily"},
    {"name": "openai-monthly", "limit": BIG, "period": "monthly", "timezone": "Europe/Berlin",
     "scope": {"provider": "openai"}},
    {"name": "tokens-weekly", "limit": BIG, "unit": "tokens", "period": "weekly"},
    {"name": "tenant-tokens", "limit": BIG, "unit": "tokens", "period": "daily", "group_by": "tenant"},
    {"name": "tokens-hourly", "limit": BIG, "unit": "tokens", "period": "1h"},
    {"name": "4o-family", "limit": BIG, "period": "daily", "scope": {"model": ["gpt-4o*", "o3*"]}},
    {"name": "openai-hard-cap", "limit": BIG, "unit": "tokens", "period": "daily", "action": "block",
     "scope": {"provider": "openai"}},
    {"name": "job-chat-monthly", "limit": BIG, "period": "monthly", "group_by": "job",
     "scope": {"operation": "chat"}},
    {"name": "tenant-30m-cap", "limit": BIG, "period": "30m", "group_by": "tenant", "action": "block"},
    {"name": "bench-batch", "limit": BIG, "period": "daily", "scope": {"service": "bench", "job": ["batch", "etl"]}},
]  # fmt: skip
TENANTS = [f"tenant-{i}" for i in range(20)]
JOBS = ["batch", "etl", "chat-ui"]
_thread_ns = time.thread_time_ns
_process_ns = time.process_time_ns


class NullProcessor:
    """The baseline: the same hook calls, doing nothing."""

    def before_call(self, info: CallInfo) -> None:
        pass

    def on_usage(self, record: UsageRecord) -> None:
        pass

    def flush(self, timeout: float = 10.0) -> bool:
        return True


def _records(n: int) -> list[tuple[CallInfo, UsageRecord]]:
    out = []
    for i in range(n):
        attrs = {"tenant": TENANTS[i % len(TENANTS)], "job": JOBS[i % len(JOBS)]}
        model = "gpt-4o-mini" if i % 3 else "gpt-4.1"
        usage = Usage(input_tokens=120, output_tokens=40, cache_read_tokens=64, reasoning_tokens=8)
        rec = UsageRecord(timestamp=time.time(), provider="openai", operation="chat", request_model=model,
                          response_model=model, usage=usage, usage_complete=True, cost_usd=0.0000426, duration_s=0.3,
                          attributes=attrs)  # fmt: skip
        out.append((CallInfo("openai", "chat", model, attrs), rec))
    return out


def time_hooks(proc: Any, records: list[tuple[CallInfo, UsageRecord]]) -> tuple[float, float]:
    """(caller-thread ns, all-thread ns incl. draining the writer) per call."""
    before, after = proc.before_call, proc.on_usage
    gc.disable()
    try:
        t0, p0 = _thread_ns(), _process_ns()
        for info, rec in records:
            before(info)
            after(rec)
        t1 = _thread_ns()
        proc.flush()
        p1 = _process_ns()
    finally:
        gc.enable()
    return (t1 - t0) / len(records), (p1 - p0) / len(records)


# --- the SDK arm -------------------------------------------------------------------------------------------
COMPLETION = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1_700_000_000, "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there!", "refusal": None},
                 "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 120, "completion_tokens": 40, "total_tokens": 160,
              "prompt_tokens_details": {"cached_tokens": 64}, "completion_tokens_details": {"reasoning_tokens": 8}},
}).encode()  # fmt: skip


def _client() -> openai.OpenAI:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "application/json"}, content=COMPLETION)

    http = httpx2.Client(transport=httpx2.MockTransport(handler))
    return openai.OpenAI(api_key="x", base_url="http://bench.invalid/v1", http_client=http, max_retries=0)


class Timed:
    """Wraps a processor and sums the time spent in its hooks (perf_counter_ns: cheap, vDSO)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.ns = 0

    def bind(self, runtime: Any) -> None:
        bind = getattr(self.inner, "bind", None)
        if bind is not None:
            bind(runtime)

    def before_call(self, info: CallInfo) -> None:
        t = time.perf_counter_ns()
        try:
            self.inner.before_call(info)
        finally:
            self.ns += time.perf_counter_ns() - t

    def on_usage(self, record: UsageRecord) -> None:
        t = time.perf_counter_ns()
        self.inner.on_usage(record)
        self.ns += time.perf_counter_ns() - t


def time_sdk(client: openai.OpenAI, calls: int, proc: Any, providers: dict[str, Any]) -> tuple[float, float]:
    """(caller-thread ns per call, ns per call inside the processor's hooks)."""
    timed = Timed(proc)
    llm_otel.instrument(ledger=False, service_name="bench", processors=[timed], **providers)
    try:
        msgs = [{"role": "user", "content": "hi"}]
        for i in range(20):  # warm caches (attribute dicts, routes) outside the timed window
            with llm_otel.context(tenant=TENANTS[i % 20], job=JOBS[i % 3]):
                client.chat.completions.create(model="gpt-4o-mini", messages=msgs)
        timed.ns = 0
        gc.disable()
        t0 = _thread_ns()
        for i in range(calls):
            with llm_otel.context(tenant=TENANTS[i % 20], job=JOBS[i % 3]):
                client.chat.completions.create(model="gpt-4o-mini", messages=msgs)
        t1 = _thread_ns()
    finally:
        gc.enable()
        llm_otel.uninstrument()
    proc.flush()
    return (t1 - t0) / calls, timed.ns / calls


def rounds(arms: dict[str, Callable[[], Any]], n: int) -> dict[str, list[Any]]:
    names = list(arms)
    out: dict[str, list[Any]] = {k: [] for k in names}
    for r in range(n):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            out[name].append(arms[name]())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds and calls")
    ap.add_argument("--json", type=Path, default=HERE / "budget_results.json")
    args = ap.parse_args(argv)
    n_rounds = 5 if args.quick else 11
    hook_calls = 5_000 if args.quick else 20_000
    sdk_calls = 300 if args.quick else 1_000
    tmp = Path(tempfile.mkdtemp(prefix="llm-otel-budget-bench-"))
    try:
        print(f"budget processor overhead: python {platform.python_version()}, {len(BUDGETS)} budgets, "
              f"{n_rounds} rounds")  # fmt: skip
        records = _records(hook_calls)
        proc = BudgetProcessor(BUDGETS, state=tmp / "hooks.sqlite3", service_name="bench")
        null = NullProcessor()
        time_hooks(proc, records[:1000])  # warm up: states, windows, the writer's connection
        hooks = rounds({"none": lambda: time_hooks(null, records), "10 budgets": lambda: time_hooks(proc, records)},
                       n_rounds)  # fmt: skip
        proc.close()
        base_t = statistics.median(t for t, _ in hooks["none"])
        base_p = statistics.median(p for _, p in hooks["none"])
        ten_t = statistics.median(t for t, _ in hooks["10 budgets"])
        ten_p = statistics.median(p for _, p in hooks["10 budgets"])
        print(f"\nhooks ({hook_calls} calls per round): before_call + on_usage per call")
        print(f"  caller thread: {(ten_t - base_t) / 1000:.1f} us added (no-op processor {base_t / 1000:.2f} us, "
              f"10 budgets {ten_t / 1000:.1f} us)")  # fmt: skip
        print(f"  all threads, writer's SQLite commits included: {(ten_p - base_p) / 1000:.1f} us added")

        providers = {"tracer_provider": TracerProvider(),
                     "meter_provider": MeterProvider(metric_readers=[InMemoryMetricReader()]),
                     "logger_provider": LoggerProvider()}  # fmt: skip
        client = _client()
        sdk_proc = BudgetProcessor(BUDGETS, state=tmp / "sdk.sqlite3", service_name="bench")
        time_sdk(client, 50, sdk_proc, providers)  # warm up both paths
        time_sdk(client, 50, null, providers)
        sdk = rounds({"no-op": lambda: time_sdk(client, sdk_calls, null, providers),
                      "10 budgets": lambda: time_sdk(client, sdk_calls, sdk_proc, providers)}, n_rounds)  # fmt: skip
        sdk_proc.close()
        plain = statistics.median(t for t, _ in sdk["no-op"])
        budgeted = statistics.median(t for t, _ in sdk["10 budgets"])
        hooks_null = statistics.median(h for _, h in sdk["no-op"])
        hooks_in_situ = statistics.median(h for _, h in sdk["10 budgets"])
        print(f"\nopenai SDK chat completion, in-process transport ({sdk_calls} calls per round):")
        print(f"  inside the calls, the processor's hooks: {(hooks_in_situ - hooks_null) / 1000:.1f} us/call added")
        print(f"  caller thread per call: {plain / 1000:.1f} us with a no-op processor, {budgeted / 1000:.1f} us with "
              f"10 budgets: {(budgeted - plain) / 1000:+.1f} us ({(budgeted - plain) / plain:+.1%})")  # fmt: skip
        results = {
            "python": platform.python_version(),
            "budgets": len(BUDGETS),
            "rounds": n_rounds,
            "hooks": {"calls_per_round": hook_calls, "thread_added_us": (ten_t - base_t) / 1000,
                      "process_added_us": (ten_p - base_p) / 1000, "thread_us_10_budgets": ten_t / 1000},
            "sdk": {"calls_per_round": sdk_calls, "hooks_in_calls_added_us": (hooks_in_situ - hooks_null) / 1000,
                    "noop_processor_us": plain / 1000, "with_budgets_us": budgeted / 1000,
                    "thread_added_us": (budgeted - plain) / 1000},
        }  # fmt: skip
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nresults in {args.json}")
    finally:
        with contextlib.suppress(Exception):
            llm_otel.uninstrument()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
