"""Under concurrency, token totals in metrics, session_usage() and the ledger equal what the provider reported."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import openai

import llm_otel
from llm_otel import semconv as sc

MSG = [{"role": "user", "content": "hello"}]
KINDS = ("input", "output", "cache_read", "cache_write", "reasoning")


def _assert_totals_match(capture: Any, sim: Any, calls: int) -> None:
    served = sim.served_usage()
    reported = {k: sum(v[k] for v in served.values()) for k in KINDS}
    assert sum(v["calls"] for v in served.values()) == calls
    metric = {k: capture.total(sc.METRIC_TOKENS, **{sc.TOKEN_TYPE: k}) for k in KINDS}
    session = {k: sum(t.tokens.get(k, 0) for t in llm_otel.session_usage().values()) for k in KINDS}
    rows = capture.ledger_rows()
    ledger = {k: sum(r[f"{k}_tokens"] or 0 for r in rows) for k in KINDS}
    assert metric == reported
    assert session == reported
    assert ledger == reported
    assert len(rows) == calls
    assert sum(t.calls for t in llm_otel.session_usage().values()) == calls
    assert capture.count(sc.METRIC_OPERATION_DURATION) == calls
    assert len(capture.spans()) == calls


def test_8_threads_x_200_calls(sim: Any, capture: Any) -> None:
    client = openai.OpenAI(base_url=sim.openai_base_url, api_key="x")
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            for j in range(200):
                usage = f"in={10 + i},cached={i},cwrite=1,out={j % 7 + 1},reasoning={j % 2}"
                if j % 4 == 0:
                    for _ in client.chat.completions.create(
                        model="gpt-4o-mini", messages=MSG, stream=True, extra_headers={"x-sim-scenario": usage}
                    ):
                        pass
                else:
                    client.chat.completions.create(
                        model="gpt-4o-mini", messages=MSG, extra_headers={"x-sim-scenario": usage}
                    )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert not errors, errors[:3]
    _assert_totals_match(capture, sim, 1600)


def test_500_concurrent_asyncio_calls(sim: Any, capture: Any) -> None:
    async def go() -> None:
        client = openai.AsyncOpenAI(base_url=sim.openai_base_url, api_key="x", max_retries=5, timeout=120)

        async def one(i: int) -> None:
            usage = f"in={20 + i % 13},cached={i % 5},cwrite={i % 3},out={i % 11 + 4},reasoning={i % 4}"
            if i % 3 == 0:
                stream = await client.chat.completions.create(
                    model="gpt-4o-mini", messages=MSG, stream=True, extra_headers={"x-sim-scenario": usage}
                )
                async for _ in stream:
                    pass
            else:
                await client.chat.completions.create(
                    model="gpt-4o-mini", messages=MSG, extra_headers={"x-sim-scenario": usage}
                )

        await asyncio.gather(*(one(i) for i in range(500)))
        await client.close()

    asyncio.run(go())
    _assert_totals_match(capture, sim, 500)
