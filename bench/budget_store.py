"""What the budget store costs on the caller's thread: 10 budgets on SQLite versus the same on Redis.

    eval "$(bash scripts/fetch-redis.sh)"        # REDIS_SERVER=... (or have redis-server on the PATH)
    .venv/bin/python bench/budget_store.py       # about 1 minute on 2 cores
    .venv/bin/python bench/budget_store.py --rounds 30 --calls 1000

Two measurements, each in interleaved rounds (the store order alternates every round):

- ``sdk``: real openai SDK chat calls on an in-process MockTransport (bench/workloads.py), instrumented by
  ``llm_otel.instrument(budgets=<bench/arms.py's 10 budgets>, ...)`` with ``budget_state`` (SQLite) or
  ``budget_store`` (a redis-server started here on 127.0.0.1); wall time per call on the calling thread.
- ``hot path``: ``BudgetProcessor.before_call`` + ``on_usage`` alone, per call: everything the budgets add to
  a call; committing to the store and refreshing from it run on the background writer meanwhile.

It prints the median per-call time of each store, the median of the per-round Redis - SQLite differences,
and the ratio. Nothing here waits on Redis on the caller's thread by design; the figure shows what the
background writer's network work costs the caller indirectly (the GIL, the CPU).
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from arms import BUDGETS, Telemetry  # noqa: E402


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = os.environ.get("REDIS_SERVER") or shutil.which("redis-server")
    if not binary:
        sys.exit('no redis-server: run eval "$(bash scripts/fetch-redis.sh)" first (it sets REDIS_SERVER)')
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(workdir), "--save", "",
                             "--appendonly", "no", "--loglevel", "warning"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                sys.exit("redis-server did not start")
            time.sleep(0.02)


def sdk_block(store: dict[str, Any], telemetry: Telemetry, calls: int) -> float:
    """µs per instrumented chat call on this thread, with ``store`` (budget_state= or budget_store=)."""
    import workloads

    import llm_otel

    llm_otel.instrument(ledger=False, budgets=BUDGETS, **store, **telemetry.kwargs())
    try:
        client = workloads.openai_client(0)
        for _ in range(50):
            workloads.chat(client)
        llm_otel.flush()
        gc.collect()
        start = time.perf_counter()
        for _ in range(calls):
            workloads.chat(client)
        elapsed = time.perf_counter() - start
        llm_otel.flush()
    finally:
        llm_otel.uninstrument()
    return elapsed / calls * 1e6


def hot_block(store: dict[str, Any], calls: int) -> float:
    """µs per before_call + on_usage, with the background writer committing to ``store`` meanwhile."""
    from llm_otel.budget.processor import BudgetProcessor
    from llm_otel.core.result import CallInfo, UsageRecord
    from llm_otel.core.usage import Usage

    kw = {"state": store["budget_state"]} if "budget_state" in store else {"store": store["budget_store"]}
    proc = BudgetProcessor(BUDGETS, **kw)
    info = CallInfo("openai", "chat", "gpt-4o-mini", {"tenant": "acme", "job": "nightly"})
    rec = UsageRecord(timestamp=0.0, provider="openai", operation="chat", request_model="gpt-4o-mini",
                      response_model="gpt-4o-mini", usage=Usage(input_tokens=120, output_tokens=40),
                      usage_complete=True, cost_usd=0.0001, duration_s=0.01,
                      attributes={"tenant": "acme", "job": "nightly"}, span=None)  # fmt: skip
    try:
        for _ in range(200):
            proc.before_call(info)
            proc.on_usage(rec)
        proc.flush()
        gc.collect()
        start = time.perf_counter()
        for i in range(calls):
            proc.before_call(info)
            proc.on_usage(rec)
            if i % 50 == 49:
                time.sleep(0.001)  # let the writer run, as it would between real calls
        elapsed = time.perf_counter() - start - (calls // 50) * 0.001
        proc.flush()
    finally:
        proc.close()
    return elapsed / calls * 1e6


def rounds(name: str, stores: dict[str, dict[str, Any]], block: Callable[[dict[str, Any]], float], n: int) -> None:
    samples: dict[str, list[float]] = {k: [] for k in stores}
    order = list(stores)
    for r in range(n):
        for key in order if r % 2 == 0 else order[::-1]:
            samples[key].append(block(stores[key]))
    sq, rd = samples["sqlite"], samples["redis"]
    diffs = [b - a for a, b in zip(sq, rd, strict=True)]
    print(f"{name:<9} sqlite {statistics.median(sq):8.2f} µs/call   redis {statistics.median(rd):8.2f} µs/call   "
          f"redis - sqlite {statistics.median(diffs):+7.2f} µs (rounds: {min(diffs):+.2f} .. {max(diffs):+.2f})   "
          f"ratio {statistics.median(rd) / statistics.median(sq):.3f}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=10, help="interleaved rounds per measurement (default 10)")
    ap.add_argument("--calls", type=int, default=500, help="calls per block (default 500)")
    ap.add_argument("--only", choices=("sdk", "hot"), help="run one measurement")
    args = ap.parse_args(argv)
    for key in [k for k in os.environ if k.startswith(("LLM_OTEL_", "OTEL_"))]:
        del os.environ[key]
    tmp = Path(tempfile.mkdtemp(prefix="llm-otel-bench-store-"))
    redis, url = start_redis(tmp)
    try:
        stores = {"sqlite": {"budget_state": str(tmp / "budgets.sqlite3")}, "redis": {"budget_store": url}}
        print(f"10 budgets (bench/arms.py); {args.rounds} rounds x {args.calls} calls; redis-server on {url}")
        if args.only in (None, "hot"):
            rounds("hot path", stores, lambda s: hot_block(s, args.calls * 10), args.rounds)
        if args.only in (None, "sdk"):
            telemetry = Telemetry.create()
            rounds("sdk chat", stores, lambda s: sdk_block(s, telemetry, args.calls), args.rounds)
    finally:
        redis.terminate()
        redis.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
