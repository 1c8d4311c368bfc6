"""Cost from genai-prices (offline), user overrides, and explicit "unpriced" for unknown models."""

from __future__ import annotations

import random
from typing import Any

import openai
import pytest
from genai_prices import Usage as GPUsage
from genai_prices import calc_price

from llm_otel import semconv as sc
from llm_otel.core.pricing import PriceBook
from llm_otel.core.usage import Usage

MSG = [{"role": "user", "content": "hello"}]


def _chat(sim: Any, model: str, scenario: str = "") -> None:
    client = openai.OpenAI(base_url=sim.openai_base_url, api_key="x")
    headers = {"x-sim-scenario": scenario} if scenario else {}
    client.chat.completions.create(model=model, messages=MSG, extra_headers=headers)


def test_cost_matches_genai_prices_including_cache(sim: Any, capture: Any) -> None:
    _chat(sim, "gpt-4o", "in=2000,cached=1500,cwrite=0,out=300,reasoning=0")
    expected = calc_price(
        GPUsage(input_tokens=2000, cache_read_tokens=1500, output_tokens=300), "gpt-4o", provider_id="openai"
    ).total_price
    attrs = dict(capture.span().attributes)
    assert attrs[sc.COST_USD] == pytest.approx(float(expected), rel=1e-9)
    assert attrs[sc.COST_SOURCE] == "local"
    assert capture.total(sc.METRIC_COST) == pytest.approx(float(expected), rel=1e-9)
    [hist] = capture.points(sc.METRIC_REQUEST_COST)
    assert hist.bucket_bounds[0] == 1e-6 and hist.bucket_bounds[-1] == 10.0
    assert capture.ledger_rows()[0]["cost_usd"] == pytest.approx(float(expected), rel=1e-9)


def test_unknown_model_is_unpriced_never_zero(sim: Any, capture: Any) -> None:
    _chat(sim, "my-private-finetune-x")
    attrs = dict(capture.span().attributes)
    assert attrs[sc.COST_SOURCE] == "unpriced"
    assert sc.COST_USD not in attrs
    assert capture.points(sc.METRIC_COST) == []
    assert capture.total(sc.METRIC_UNPRICED_REQUESTS, **{sc.REQUEST_MODEL: "my-private-finetune-x"}) == 1
    assert capture.ledger_rows()[0]["cost_usd"] is None


def test_user_price_override_wins(sim: Any, make_capture: Any) -> None:
    cap = make_capture(
        prices={"my-private-finetune-x": {"input": 1.0, "output": 2.0, "cache_read": 0.5, "cache_write": 1.5}}
    )
    _chat(sim, "my-private-finetune-x")  # input 12 = 5 uncached + 4 read + 3 write; output 8
    expected = (5 * 1.0 + 4 * 0.5 + 3 * 1.5 + 8 * 2.0) / 1e6
    assert dict(cap.span().attributes)[sc.COST_USD] == pytest.approx(expected)


MODELS = [
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("openai", "gpt-4.1"),
    ("openai", "o3-mini"),
    ("openai", "text-embedding-3-small"),
    ("anthropic", "claude-sonnet-4-5"),
    ("anthropic", "claude-3-5-haiku-latest"),
    ("gcp.gemini", "gemini-2.5-flash"),
    ("gcp.gemini", "gemini-2.5-pro"),
    ("aws.bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0"),
    ("mistral_ai", "mistral-large-latest"),
    ("groq", "llama-3.3-70b-versatile"),
]


@pytest.mark.parametrize(("provider", "model"), MODELS)
def test_fast_path_agrees_with_genai_prices(provider: str, model: str) -> None:
    book = PriceBook()
    rng = random.Random(f"{provider}{model}")
    for _ in range(20):
        inp = rng.randint(0, 300_000)
        cr = rng.randint(0, inp // 2)
        cw = rng.randint(0, (inp - cr) // 2)
        usage = Usage(
            input_tokens=inp, output_tokens=rng.randint(0, 20_000), cache_read_tokens=cr, cache_write_tokens=cw
        )
        ours = book.cost(provider, model, usage)
        gp_provider = {"gcp.gemini": "google", "aws.bedrock": "aws", "mistral_ai": "mistral"}.get(provider, provider)
        ref = calc_price(
            GPUsage(input_tokens=inp, cache_read_tokens=cr, cache_write_tokens=cw, output_tokens=usage.output_tokens),
            model,
            provider_id=gp_provider,
        ).total_price  # every model listed is known to genai-prices (both flat and tiered ones are here)
        assert ours == pytest.approx(float(ref), rel=1e-9, abs=1e-12), usage
