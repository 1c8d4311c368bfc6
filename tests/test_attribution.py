"""llm_otel.context(...) attribution on spans and ledger rows; on metrics only when allow-listed."""

from __future__ import annotations

import asyncio
from typing import Any

import openai

import llm_otel
from llm_otel import semconv as sc

MSG = [{"role": "user", "content": "hello"}]


def test_context_on_spans_and_ledger_not_on_metrics_by_default(sim: Any, capture: Any) -> None:
    client = openai.OpenAI(base_url=sim.openai_base_url, api_key="x")
    with llm_otel.context(job="nightly", tenant="acme"), llm_otel.context(task="summarize", customer="c-1"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    first, second = capture.spans()
    a = dict(first.attributes)
    assert (a["llm_otel.job"], a["llm_otel.tenant"], a["llm_otel.task"], a["llm_otel.customer"]) == (
        "nightly", "acme", "summarize", "c-1")  # fmt: skip
    assert "llm_otel.job" not in dict(second.attributes)
    for p in capture.points(sc.METRIC_TOKENS):
        assert not any(k.startswith("llm_otel.") for k in p.attributes)
    rows = capture.ledger_rows()
    assert (rows[0]["job"], rows[0]["tenant"], rows[0]["task"]) == ("nightly", "acme", "summarize")
    assert '"customer": "c-1"' in rows[0]["attributes"]
    assert rows[1]["job"] is None


def test_allow_listed_keys_reach_metrics(sim: Any, make_capture: Any) -> None:
    cap = make_capture(metric_attributes=["tenant"])
    client = openai.OpenAI(base_url=sim.openai_base_url, api_key="x")
    with llm_otel.context(tenant="acme", user_id="u-123"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    with llm_otel.context(tenant="globex"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert cap.total(sc.METRIC_TOKENS, **{"llm_otel.tenant": "acme", sc.TOKEN_TYPE: "input"}) == 12
    assert cap.total(sc.METRIC_TOKENS, **{"llm_otel.tenant": "globex", sc.TOKEN_TYPE: "input"}) == 12
    assert all("llm_otel.user_id" not in p.attributes for p in cap.points(sc.METRIC_TOKENS))


def test_context_is_per_asyncio_task(sim: Any, capture: Any) -> None:
    async def go() -> None:
        client = openai.AsyncOpenAI(base_url=sim.openai_base_url, api_key="x")

        async def tagged(tenant: str) -> None:
            with llm_otel.context(tenant=tenant):
                await asyncio.sleep(0.01)
                await client.chat.completions.create(model="gpt-4o-mini", messages=MSG)

        await asyncio.gather(*(tagged(f"t{i}") for i in range(5)))

    asyncio.run(go())
    assert sorted(dict(s.attributes)["llm_otel.tenant"] for s in capture.spans()) == [f"t{i}" for i in range(5)]


def test_latest_semconv_names_behind_opt_in(sim: Any, make_capture: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "http,gen_ai_latest_experimental")
    cap = make_capture()
    openai.OpenAI(base_url=sim.openai_base_url, api_key="x").chat.completions.create(model="gpt-4o-mini", messages=MSG)
    attrs = dict(cap.span().attributes)
    assert attrs[sc.LATEST_USAGE_CACHE_WRITE_INPUT_TOKENS] == 3
    assert attrs[sc.USAGE_CACHE_CREATION_INPUT_TOKENS] == 3  # the released name stays
    assert cap.total("gen_ai.client.inference.usage.input_tokens") == 12
    assert cap.total("gen_ai.client.inference.usage.cache_write.input_tokens") == 3
    assert cap.count(sc.METRIC_TOKEN_USAGE) == 2


def test_metric_buckets_follow_the_conventions(sim: Any, capture: Any) -> None:
    openai.OpenAI(base_url=sim.openai_base_url, api_key="x").chat.completions.create(model="gpt-4o-mini", messages=MSG)
    [duration] = capture.points(sc.METRIC_OPERATION_DURATION)
    assert duration.bucket_bounds == sc.DURATION_BUCKETS
    usage = capture.points(sc.METRIC_TOKEN_USAGE)
    assert {p.attributes[sc.TOKEN_TYPE] for p in usage} == {"input", "output"}
    assert usage[0].bucket_bounds == sc.TOKEN_BUCKETS
    assert not any(p.name.startswith("gen_ai.server") for p in usage)


def test_ratelimit_headroom_is_per_server_not_per_tenant(sim: Any, make_capture: Any) -> None:
    cap = make_capture(metric_attributes=["tenant"])
    client = openai.OpenAI(base_url=sim.openai_base_url, api_key="x")
    for tenant in ("acme", "globex"):
        with llm_otel.context(tenant=tenant):
            client.chat.completions.create(
                model="gpt-4o-mini", messages=MSG, extra_headers={"x-sim-scenario": "rl_req=7"}
            )
    points = cap.points(sc.METRIC_RATELIMIT_REMAINING_REQUESTS)
    assert len(points) == 1 and points[0].value == 7
    assert "llm_otel.tenant" not in points[0].attributes
    assert cap.points(sc.METRIC_TOKENS, **{"llm_otel.tenant": "globex"})  # other metrics keep the tenant
