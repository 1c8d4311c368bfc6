"""Instruments that live on the meter, not on one ``instrument()``.

An OpenTelemetry SDK meter registers an instrument name once and keeps the callbacks it was first given. These
tests instrument, uninstrument and instrument again on the same meter provider (what a test suite, a reload or
an app that reconfigures does) and check that every observable metric still reports the calls and budgets of
the current set-up, with exact totals.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

import llm_otel
from llm_otel import semconv as sc

MSG = [{"role": "user", "content": "hi"}]


def _points(reader: InMemoryMetricReader, name: str) -> list[tuple[dict[str, Any], Any]]:
    data = reader.get_metrics_data()
    out = []
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    out += [(dict(dp.attributes), getattr(dp, "value", getattr(dp, "sum", None)))
                            for dp in metric.data.data_points]  # fmt: skip
    return out


def _tokens(reader: InMemoryMetricReader, kind: str) -> int:
    return sum(v for a, v in _points(reader, sc.METRIC_TOKENS) if a[sc.TOKEN_TYPE] == kind)


def _chat(sim: Any, **kwargs: Any) -> Any:
    client = openai.OpenAI(base_url=sim.openai_base_url, api_key="x", max_retries=0)
    return client.chat.completions.create(model="gpt-4o-mini", messages=MSG, **kwargs)


def test_counters_keep_reporting_after_instrument_again_on_the_same_meter(sim: Any, tmp_path: Path) -> None:
    reader = InMemoryMetricReader()
    providers = {"meter_provider": MeterProvider(metric_readers=[reader]), "tracer_provider": TracerProvider()}
    served = 0
    for round_ in range(3):
        llm_otel.instrument(ledger=False, **providers)
        try:
            for _ in range(round_ + 1):
                served += _chat(sim).usage.prompt_tokens
        finally:
            llm_otel.uninstrument()
        # Cumulative and monotonic across the re-instrumentations: every round's calls are reported.
        assert _tokens(reader, "input") == served, f"round {round_}"
        assert sum(v for _a, v in _points(reader, sc.METRIC_COST)) > 0


def test_calls_outside_context_keep_their_metrics_with_metric_attributes(sim: Any, tmp_path: Path) -> None:
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    llm_otel.instrument(ledger=False, metric_attributes=["tenant"], meter_provider=meter_provider,
                        tracer_provider=TracerProvider())  # fmt: skip
    try:
        outside = _chat(sim).usage.prompt_tokens
        with llm_otel.context(tenant="acme"):
            inside = _chat(sim).usage.prompt_tokens
        by_tenant = {}
        for attrs, value in _points(reader, sc.METRIC_TOKENS):
            if attrs[sc.TOKEN_TYPE] == "input":
                key = attrs.get(sc.CONTEXT_PREFIX + "tenant")
                by_tenant[key] = by_tenant.get(key, 0) + value
        assert by_tenant == {None: outside, "acme": inside}
        durations = _points(reader, sc.METRIC_OPERATION_DURATION)
        assert sorted(str(a.get(sc.CONTEXT_PREFIX + "tenant")) for a, _v in durations) == ["None", "acme"]
    finally:
        llm_otel.uninstrument()


def test_budget_utilization_reports_the_current_budgets_after_instrument_again(sim: Any, tmp_path: Path) -> None:
    reader = InMemoryMetricReader()
    providers = {"meter_provider": MeterProvider(metric_readers=[reader]), "tracer_provider": TracerProvider()}
    for name, limit in (("first", 1_000_000), ("second", 2_000_000)):
        budget = {"name": name, "limit": limit, "unit": "tokens", "period": "daily", "forecast": False}
        llm_otel.instrument(ledger=False, budgets=[budget], budget_state=str(tmp_path / f"{name}.db"), **providers)
        try:
            usage = _chat(sim).usage
            llm_otel.flush()
            gauges = {a[sc.BUDGET_NAME]: v for a, v in _points(reader, sc.METRIC_BUDGET_UTILIZATION)}
            # Only the budgets configured now, with this set-up's usage.
            assert gauges == {name: (usage.prompt_tokens + usage.completion_tokens) / limit}
        finally:
            llm_otel.uninstrument()
