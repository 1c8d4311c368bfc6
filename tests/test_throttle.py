"""Time lost in the SDK's own retry sleeps: throttle (429) vs other retries, per logical call."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import openai
import pytest

from llm_otel import semconv as sc

MSG = [{"role": "user", "content": "hello"}]


def _call(sim: Any, scenario: str, **client_kw: Any) -> Any:
    client = openai.OpenAI(base_url=sim.openai_base_url, api_key="x", **client_kw)
    return client.chat.completions.create(model="gpt-4o-mini", messages=MSG, extra_headers={"x-sim-scenario": scenario})


def test_429_retry_after_is_throttle_wait(sim: Any, capture: Any) -> None:
    _call(sim, "429x2,ra=0.1")
    attrs = dict(capture.span().attributes)
    assert 0.2 <= attrs[sc.THROTTLE_WAIT_S] < 0.5
    assert attrs[sc.RETRIES] == 2
    assert attrs[sc.RETRY_WAIT_S] == 0
    assert capture.total(sc.METRIC_RETRIES, **{sc.RETRY_REASON: "rate_limit"}) == 2
    [point] = capture.points(sc.METRIC_THROTTLE_WAIT)
    assert point.count == 1 and 0.2 <= point.value < 0.5
    # the span covers the retries: duration includes the sleeps
    assert capture.points(sc.METRIC_OPERATION_DURATION)[0].value >= 0.2
    row = capture.ledger_rows()[0]
    assert row["retries"] == 2 and row["throttle_wait_s"] >= 0.2


def test_retry_after_ms_wins(sim: Any, capture: Any) -> None:
    _call(sim, "429x1,ra=2,ra_ms=150")
    assert 0.15 <= dict(capture.span().attributes)[sc.THROTTLE_WAIT_S] < 0.5


def test_server_error_retry_is_not_throttle(sim: Any, capture: Any) -> None:
    _call(sim, "500x1,ra=0.05")
    attrs = dict(capture.span().attributes)
    assert attrs[sc.THROTTLE_WAIT_S] == 0
    assert attrs[sc.RETRY_WAIT_S] >= 0.05
    assert capture.total(sc.METRIC_RETRIES, **{sc.RETRY_REASON: "server"}) == 1
    assert capture.points(sc.METRIC_RETRIES, **{sc.RETRY_REASON: "rate_limit"}) == []


def test_exhausted_retries_raise_the_sdk_error_and_record_it(sim: Any, capture: Any) -> None:
    with pytest.raises(openai.RateLimitError):
        _call(sim, "429x9,ra=0.01", max_retries=2)
    span = capture.span()
    attrs = dict(span.attributes)
    assert attrs[sc.ERROR_TYPE] == "openai.RateLimitError"
    assert attrs[sc.RETRIES] == 2
    assert capture.points(sc.METRIC_OPERATION_DURATION)[0].attributes[sc.ERROR_TYPE] == "openai.RateLimitError"
    assert capture.points(sc.METRIC_TOKENS) == []


def test_concurrent_threads_keep_their_own_throttle(sim: Any, capture: Any) -> None:
    results: dict[str, float] = {}

    def worker(name: str, scenario: str) -> None:
        _call(sim, scenario, max_retries=3)

    threads = [
        threading.Thread(target=worker, args=("slow", "429x2,ra=0.15")),
        threading.Thread(target=worker, args=("none", "")),
        threading.Thread(target=worker, args=("one", "429x1,ra=0.05")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for span in capture.spans():
        a = dict(span.attributes)
        results[str(a.get(sc.RETRIES, 0))] = a.get(sc.THROTTLE_WAIT_S, 0.0)
    assert results["0"] == 0.0
    assert 0.05 <= results["1"] < 0.15
    assert 0.3 <= results["2"] < 0.6


def test_asyncio_gather_keeps_calls_apart(sim: Any, capture: Any) -> None:
    async def go() -> None:
        client = openai.AsyncOpenAI(base_url=sim.openai_base_url, api_key="x")

        def call(scenario: str) -> Any:
            return client.chat.completions.create(
                model="gpt-4o-mini", messages=MSG, extra_headers={"x-sim-scenario": scenario}
            )

        await asyncio.gather(call("429x2,ra=0.1"), call(""), call("429x1,ra=0.1"))

    asyncio.run(go())
    waits = sorted(round(dict(s.attributes).get(sc.THROTTLE_WAIT_S, 0.0), 1) for s in capture.spans())
    assert waits == [0.0, 0.1, 0.2]


def test_ratelimit_headroom_from_headers(sim: Any, capture: Any) -> None:
    _call(sim, "rl_req=42,rl_tok=1234")
    attrs = dict(capture.span().attributes)
    assert attrs[sc.RATELIMIT_REMAINING_REQUESTS] == 42
    assert attrs[sc.RATELIMIT_REMAINING_TOKENS] == 1234
    assert capture.total(sc.METRIC_RATELIMIT_REMAINING_REQUESTS) == 42
    assert capture.total(sc.METRIC_RATELIMIT_REMAINING_TOKENS) == 1234
