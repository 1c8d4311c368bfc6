"""Budget processor: thresholds, levels, jumps, windows, groups, scope, forecast and block, with an injected clock."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import openai
import pytest
from opentelemetry.trace import SpanContext, StatusCode
from test_budget_support import FakeClock, fired_rows, record, scenario, used_total

import llm_otel
from llm_otel import semconv as sc
from llm_otel.budget.alerts import LIMIT, PASSED, USED, UTILIZATION, WINDOW_END, WINDOW_START
from llm_otel.budget.processor import BudgetProcessor
from llm_otel.core.result import CallInfo

MSG = [{"role": "user", "content": "hi"}]
T0 = datetime(2025, 6, 2, 10, 0, tzinfo=UTC)  # a Monday


def _client(sim: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=sim.openai_base_url, api_key="x", max_retries=0)


def _chat(sim: Any, tokens_in: int, tokens_out: int = 0, **kw: Any) -> Any:
    return _client(sim).chat.completions.create(model="gpt-4o-mini", messages=MSG,
                                                extra_headers=scenario(tokens_in, tokens_out), **kw)  # fmt: skip


def _alert_logs(cap: Any) -> list[Any]:
    return [r.log_record for r in cap.logs() if r.log_record.event_name == sc.BUDGET_ALERT_EVENT]


def _events(span: Any) -> list[dict[str, Any]]:
    return [dict(e.attributes) for e in span.events if e.name == sc.BUDGET_ALERT_EVENT]


TOKENS_100 = {"name": "daily-tokens", "limit": 100, "unit": "tokens", "period": "daily", "forecast": False}


# --- thresholds and levels through real SDK calls -------------------------------------------------------------
def test_every_threshold_fires_once_with_its_level_on_every_channel(
    sim: Any, make_capture: Any, make_proc: Any, state: Path, caplog: pytest.LogCaptureFixture
) -> None:
    got: list[Any] = []
    proc = make_proc([TOKENS_100], on_alert=got.append)
    cap = make_capture(processors=[proc])
    caplog.set_level(logging.WARNING, logger="llm_otel.budget")
    for n in (30, 25, 10, 10, 7, 10, 10, 10):  # cumulative 30 55 65 75 82 92 102 112
        _chat(sim, n)
    proc.flush()

    assert [(a.threshold, a.level, a.used) for a in got] == [
        ("0.5", "info", 55), ("0.7", "warning", 75), ("0.8", "warning", 82), ("1.0", "critical", 102)]  # fmt: skip
    assert all(a.passed == () and a.budget == "daily-tokens" and a.group == "" for a in got)

    # span events: on exactly the calls that crossed (2nd, 4th, 5th, 7th)
    spans = cap.spans()
    crossing = {1: "0.5", 3: "0.7", 4: "0.8", 6: "1.0"}
    for i, span in enumerate(spans):
        events = _events(span)
        if i in crossing:
            assert [e[sc.BUDGET_THRESHOLD] for e in events] == [crossing[i]]
            assert events[0][sc.BUDGET_NAME] == "daily-tokens" and events[0][LIMIT] == 100
        else:
            assert events == []

    # OpenTelemetry log records, linked to the crossing call's trace
    logs = _alert_logs(cap)
    assert [lr.attributes[sc.BUDGET_THRESHOLD] for lr in logs] == ["0.5", "0.7", "0.8", "1.0"]
    assert [lr.severity_text for lr in logs] == ["INFO", "WARN", "WARN", "ERROR"]
    assert [lr.severity_number.value for lr in logs] == [9, 13, 13, 17]
    for lr, i in zip(logs, crossing, strict=True):
        assert lr.trace_id == spans[i].context.trace_id and lr.span_id == spans[i].context.span_id
    first = dict(logs[0].attributes)
    assert first[sc.BUDGET_NAME] == "daily-tokens" and first[sc.BUDGET_GROUP] == ""
    assert first[sc.BUDGET_LEVEL] == "info" and first[sc.BUDGET_UNIT] == "tokens"
    assert first[USED] == 55 and first[LIMIT] == 100 and first[UTILIZATION] == pytest.approx(0.55)
    assert first[WINDOW_START] == "2025-06-02T00:00:00+00:00" and first[WINDOW_END] == "2025-06-03T00:00:00+00:00"
    assert "55% used" in logs[0].body

    # metrics
    assert cap.total(sc.METRIC_BUDGET_ALERTS) == 4
    for threshold, level in (("0.5", "info"), ("0.7", "warning"), ("0.8", "warning"), ("1.0", "critical")):
        [point] = cap.points(sc.METRIC_BUDGET_ALERTS, **{sc.BUDGET_THRESHOLD: threshold})
        assert point.value == 1 and point.attributes[sc.BUDGET_LEVEL] == level
    [gauge] = cap.points(sc.METRIC_BUDGET_UTILIZATION)
    assert gauge.value == pytest.approx(1.12)
    assert gauge.attributes == {sc.BUDGET_NAME: "daily-tokens", sc.BUDGET_GROUP: "", sc.BUDGET_UNIT: "tokens"}

    # Python logging and the state file
    warnings = [r for r in caplog.records if r.name == "llm_otel.budget" and r.levelno == logging.WARNING]
    assert len(warnings) == 4 and "threshold 0.8" in warnings[2].getMessage()
    assert fired_rows(state, "daily-tokens") == [("", "0.5", 1), ("", "0.7", 1), ("", "0.8", 1), ("", "1.0", 1)]
    assert used_total(state, "daily-tokens") == 112


def test_budget_counts_exactly_what_the_cost_and_token_metrics_count(
    sim: Any, make_capture: Any, make_proc: Any
) -> None:
    proc = make_proc([
        {"name": "usd", "limit": 100, "period": "daily"},
        {"name": "tokens", "limit": 10**9, "unit": "tokens", "period": "daily"},
        {"name": "all-types", "limit": 10**9, "unit": "tokens", "period": "daily",
         "token_types": ["input", "output", "cache_read", "cache_write", "reasoning"]},
    ])  # fmt: skip
    cap = make_capture(processors=[proc])
    client = _client(sim)
    for model in ("gpt-4o", "gpt-4o-mini", "gpt-4o"):
        client.chat.completions.create(model=model, messages=MSG)  # default usage: cache, reasoning too
    list(client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True))
    proc.flush()
    used = {e["budget"]: e["used"] for e in proc.snapshot()}
    assert used["usd"] == pytest.approx(cap.total(sc.METRIC_COST), rel=1e-12)
    assert used["tokens"] == cap.total(sc.METRIC_TOKENS, **{sc.TOKEN_TYPE: "input"}) + cap.total(
        sc.METRIC_TOKENS, **{sc.TOKEN_TYPE: "output"})  # fmt: skip
    assert used["all-types"] == cap.total(sc.METRIC_TOKENS)


def test_jump_past_several_thresholds_alerts_once_for_the_highest(
    sim: Any, make_capture: Any, make_proc: Any, state: Path
) -> None:
    got: list[Any] = []
    proc = make_proc([TOKENS_100], on_alert=got.append)
    cap = make_capture(processors=[proc])
    _chat(sim, 10)
    _chat(sim, 75)  # 10 -> 85: past 0.5, 0.7 and 0.8 at once
    _chat(sim, 20)  # 105: 1.0
    proc.flush()
    assert [(a.threshold, a.passed) for a in got] == [("0.8", ("0.5", "0.7")), ("1.0", ())]
    assert [len(_events(s)) for s in cap.spans()] == [0, 1, 1]
    assert _events(cap.spans()[1])[0][PASSED] == ("0.5", "0.7")
    assert fired_rows(state, "daily-tokens") == [("", "0.5", 0), ("", "0.7", 0), ("", "0.8", 1), ("", "1.0", 1)]
    assert cap.total(sc.METRIC_BUDGET_ALERTS) == 2


class _Span:
    def __init__(self, trace_id: int = 1, span_id: int = 1) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._context = SpanContext(trace_id, span_id, is_remote=False)

    def get_span_context(self) -> SpanContext:
        return self._context

    def add_event(self, name: str, attributes: dict[str, Any]) -> None:
        self.events.append((name, dict(attributes)))


def test_span_event_and_alert_name_the_same_call_with_many_threads(make_proc: Any) -> None:
    got: list[Any] = []
    proc = make_proc([{**TOKENS_100, "limit": 1000}], on_alert=got.append)
    spans: dict[str, _Span] = {}

    def worker(w: int) -> None:
        for i in range(100):
            span = _Span(trace_id=(w << 64) | i, span_id=(w << 32) | i)
            spans[f"{w:08x}{i:08x}"] = span
            proc.on_usage(record(3, span=span))

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    proc.flush()
    assert [a.threshold for a in got] == ["0.5", "0.7", "0.8", "1.0"]
    with_events = {sid: [e[1][sc.BUDGET_THRESHOLD] for e in span.events] for sid, span in spans.items() if span.events}
    assert with_events == {a.span_id: [a.threshold] for a in got}  # the same call, each time


def test_custom_thresholds_and_levels(make_proc: Any) -> None:
    got: list[Any] = []
    proc = make_proc([{**TOKENS_100, "thresholds": [0.95, 0.25, 0.6], "levels": {"warning": 0.5, "critical": 0.95}},
                      {**TOKENS_100, "name": "only-critical", "levels": {"critical": 1.0}}],
                     on_alert=got.append)  # fmt: skip
    for n in (30, 25, 10, 10, 21, 5):  # 30 55 65 75 96 101
        proc.on_usage(record(n))
    proc.flush()
    assert [(a.budget, a.threshold, a.level) for a in got] == [
        ("daily-tokens", "0.25", "info"), ("only-critical", "0.5", "info"), ("daily-tokens", "0.6", "warning"),
        ("only-critical", "0.7", "info"), ("daily-tokens", "0.95", "critical"), ("only-critical", "0.8", "info"),
        ("only-critical", "1.0", "critical"),
    ]  # fmt: skip


# --- windows --------------------------------------------------------------------------------------------------
def test_new_window_rearms_at_local_midnight_including_a_23_hour_dst_day(make_proc: Any, clock: FakeClock) -> None:
    ny = ZoneInfo("America/New_York")
    clock.set(datetime(2025, 3, 8, 23, 30, tzinfo=ny))
    got: list[Any] = []
    proc = make_proc([{**TOKENS_100, "timezone": "America/New_York"}], on_alert=got.append)
    proc.on_usage(record(60))
    proc.on_usage(record(45))
    clock.advance(minutes=45)  # 00:15 local on the day clocks spring forward
    proc.on_usage(record(60))
    proc.flush()
    assert [(a.threshold, a.window_start.isoformat()) for a in got] == [
        ("0.5", "2025-03-08T00:00:00-05:00"), ("1.0", "2025-03-08T00:00:00-05:00"),
        ("0.5", "2025-03-09T00:00:00-05:00"),
    ]  # fmt: skip
    assert got[1].passed == ("0.7", "0.8")
    assert got[2].window_end.isoformat() == "2025-03-10T00:00:00-04:00"
    assert got[2].window_end.timestamp() - got[2].window_start.timestamp() == 23 * 3600
    assert proc.snapshot()[0]["used"] == 60


@pytest.mark.parametrize(
    ("period", "tz", "now", "start", "end"),
    [
        ("daily", "Asia/Tokyo", "2025-01-31T16:30:00+00:00", "2025-02-01T00:00:00+09:00", "2025-02-02T00:00:00+09:00"),
        (
            "weekly",
            "Europe/Berlin",
            "2025-06-01T21:30:00+00:00",
            "2025-05-26T00:00:00+02:00",
            "2025-06-02T00:00:00+02:00",
        ),  # Sunday 23:30 in Berlin: the week that began Monday 26 May
        (
            "weekly",
            "Europe/Berlin",
            "2025-06-01T22:10:00+00:00",
            "2025-06-02T00:00:00+02:00",
            "2025-06-09T00:00:00+02:00",
        ),  # Monday 00:10 in Berlin: a new week
        (
            "monthly",
            "Asia/Tokyo",
            "2025-01-31T16:00:00+00:00",
            "2025-02-01T00:00:00+09:00",
            "2025-03-01T00:00:00+09:00",
        ),
        (
            "monthly",
            "America/Los_Angeles",
            "2024-11-30T12:00:00+00:00",
            "2024-11-01T00:00:00-07:00",
            "2024-12-01T00:00:00-08:00",
        ),  # the window spans the end of DST
    ],
)
def test_calendar_windows_start_at_local_midnight_monday_and_the_first(
    make_proc: Any, clock: FakeClock, period: str, tz: str, now: str, start: str, end: str
) -> None:
    clock.set(datetime.fromisoformat(now))
    got: list[Any] = []
    proc = make_proc([{**TOKENS_100, "period": period, "timezone": tz}], on_alert=got.append)
    proc.on_usage(record(50))
    proc.flush()
    assert (got[0].window_start.isoformat(), got[0].window_end.isoformat()) == (start, end)


def test_rolling_window_forgets_old_usage_and_refires_after_a_window(make_proc: Any, clock: FakeClock) -> None:
    got: list[Any] = []
    proc = make_proc([{**TOKENS_100, "name": "hourly", "period": "1h"}], on_alert=got.append)
    proc.on_usage(record(60))  # t0: 0.5
    clock.advance(minutes=30)
    proc.on_usage(record(30))  # 90: 0.8 (0.7 passed)
    clock.advance(minutes=32)  # t0 + 62 min: the first 60 left the window
    proc.on_usage(record(25))  # 55: 0.5 reached, but it was marked 32 min ago: nothing
    clock.advance(minutes=33)  # t0 + 95 min: the 30 left too
    proc.on_usage(record(40))  # 65: 0.5 again, a window after it was last marked
    proc.flush()
    assert [(a.threshold, a.used) for a in got] == [("0.5", 60), ("0.8", 90), ("0.5", 65)]
    assert got[2].window_end - got[2].window_start == timedelta(hours=1)
    assert proc.snapshot()[0]["used"] == 65


# --- groups and scope -----------------------------------------------------------------------------------------
def test_group_by_gives_each_tenant_its_own_budget(sim: Any, make_capture: Any, make_proc: Any) -> None:
    got: list[Any] = []
    proc = make_proc([{**TOKENS_100, "name": "per-tenant", "group_by": "tenant"}], on_alert=got.append)
    cap = make_capture(processors=[proc])
    with llm_otel.context(tenant="acme"):
        _chat(sim, 60)
    with llm_otel.context(tenant="zeta"):
        _chat(sim, 40)
    _chat(sim, 55)  # no tenant: the "" group
    with llm_otel.context(tenant="zeta"):
        _chat(sim, 20)
    proc.flush()
    assert [(a.group, a.threshold, a.used) for a in got] == [("acme", "0.5", 60), ("", "0.5", 55),
                                                             ("zeta", "0.5", 60)]  # fmt: skip
    assert {e["group"]: e["used"] for e in proc.snapshot()} == {"acme": 60, "zeta": 60, "": 55}
    gauges = {p.attributes[sc.BUDGET_GROUP]: p.value for p in cap.points(sc.METRIC_BUDGET_UTILIZATION)}
    assert gauges == {"acme": 0.6, "zeta": 0.6, "": 0.55}


def test_group_by_several_keys(make_proc: Any) -> None:
    proc = make_proc([{**TOKENS_100, "group_by": ["tenant", "model"]}])
    proc.on_usage(record(5, attrs={"tenant": "acme"}, model="gpt-4o"))
    proc.on_usage(record(7, attrs={"tenant": "acme"}, model="o3"))
    proc.flush()
    assert {e["group"]: e["used"] for e in proc.snapshot()} == {"tenant=acme,model=gpt-4o": 5,
                                                                "tenant=acme,model=o3": 7}  # fmt: skip


def test_scope_filters_by_provider_model_operation_service_and_context(make_proc: Any) -> None:
    base = {"limit": 10**6, "unit": "tokens", "period": "daily"}
    proc = make_proc([
        {**base, "name": "openai", "scope": {"provider": "openai"}},
        {**base, "name": "4o-family", "scope": {"model": ["gpt-4o*", "o3"]}},
        {**base, "name": "embeddings", "scope": {"operation": "embeddings"}},
        {**base, "name": "billing-svc", "scope": {"service": "billing"}},
        {**base, "name": "other-svc", "scope": {"service": "search"}},
        {**base, "name": "nightly", "scope": {"job": "nightly", "provider": ["openai", "anthropic"]}},
    ], service_name="billing")  # fmt: skip
    proc.on_usage(record(1, model="gpt-4o-mini"))
    proc.on_usage(record(10, provider="anthropic", model="claude-sonnet-4-5", attrs={"job": "nightly"}))
    proc.on_usage(record(100, operation="embeddings", model="text-embedding-3-small", attrs={"job": "nightly"}))
    proc.on_usage(record(1000, model="o3", attrs={"job": "adhoc"}))
    proc.on_usage(record(10000, provider="gcp.gemini", model="gpt-4o-ish"))
    proc.flush()
    used = {e["budget"]: e["used"] for e in proc.snapshot()}
    assert used == {"openai": 1101, "4o-family": 11001, "embeddings": 100, "billing-svc": 11111, "nightly": 110}


def test_unpriced_calls_add_nothing_to_usd_budgets_and_token_types_choose_what_counts(make_proc: Any) -> None:
    proc = make_proc([
        {"name": "usd", "limit": 1, "period": "daily"},
        {"name": "out", "limit": 100, "unit": "tokens", "token_types": ["output"], "period": "daily"},
        {"name": "cache", "limit": 100, "unit": "tokens", "token_types": ["cache_read", "reasoning"],
         "period": "daily"},
    ])  # fmt: skip
    proc.on_usage(record(100, 7, cost=0.25, cache_read=40, reasoning=3))
    proc.on_usage(record(100, 5, cost=None))  # unpriced model
    proc.on_usage(record(None, None))  # usage never reported: counts nowhere
    proc.flush()
    used = {e["budget"]: e["used"] for e in proc.snapshot()}
    assert used == {"usd": 0.25, "out": 12, "cache": 43}
    from llm_otel.budget.store import SqliteStore
    from llm_otel.cli.budget import status

    store = SqliteStore(proc.state_path)
    [usd] = [e for e in status(store, {b.name: b for b in proc.budgets}, T0.timestamp()) if e["budget"] == "usd"]
    store.close()
    assert (usd["calls"], usd["unpriced_calls"], usd["used"]) == (2, 1, 0.25)


def test_calls_on_routes_that_share_a_budget_fire_and_block_on_the_exact_call(make_proc: Any) -> None:
    # Two models are two routes (each sums its calls until one could cross something); both count toward the
    # same budgets. A crossing must still land on the call that made it, and a block as soon as the view is over.
    got: list[Any] = []
    proc = make_proc([{**TOKENS_100, "name": "shared"},
                      {"name": "cap", "limit": 60, "unit": "tokens", "period": "daily", "forecast": False,
                       "thresholds": [0.99], "action": "block"}], on_alert=got.append)  # fmt: skip
    spans = [_Span(trace_id=i + 1, span_id=i + 1) for i in range(15)]
    for i, span in enumerate(spans[:7]):  # 7 tokens each: 49 after the 7th call
        proc.on_usage(record(7, model="gpt-4o-mini" if i % 2 else "gpt-4o", span=span))
    assert {e["budget"]: e["used"] for e in proc.snapshot()} == {"shared": 49, "cap": 49}  # before any commit
    proc.before_call(CallInfo("openai", "chat", "gpt-4o", {}))  # not blocked
    for i, span in enumerate(spans[7:], start=7):  # 63 after the 9th call: blocked from then on
        proc.on_usage(record(7, model="gpt-4o-mini" if i % 2 else "gpt-4o", span=span))
        if i == 8:
            with pytest.raises(llm_otel.BudgetExceeded):
                proc.before_call(CallInfo("openai", "chat", "gpt-4o-mini", {}))
    proc.flush()
    # shared: 56 (8th call) 0.5, 70 (10th) 0.7, 84 (12th) 0.8, 105 (15th) 1.0; cap: 63 (9th) 0.99
    fired_on = {i: [(e[1][sc.BUDGET_NAME], e[1][sc.BUDGET_THRESHOLD]) for e in s.events] for i, s in enumerate(spans)}
    assert {i: ev for i, ev in fired_on.items() if ev} == {
        7: [("shared", "0.5")], 8: [("cap", "0.99")], 9: [("shared", "0.7")], 11: [("shared", "0.8")],
        14: [("shared", "1.0")]}  # fmt: skip
    assert sorted((a.budget, a.threshold, a.used) for a in got) == [
        ("cap", "0.99", 63), ("shared", "0.5", 56), ("shared", "0.7", 70), ("shared", "0.8", 84),
        ("shared", "1.0", 105)]  # fmt: skip


def test_a_negative_amount_from_a_provider_does_not_hide_a_crossing_on_another_route(make_proc: Any) -> None:
    # Summed calls are bounded by what every route holds together; a negative token count on one route must
    # not lower that bound under what another route's budget has waiting.
    proc = make_proc([{**TOKENS_100, "name": f"on-{m}", "scope": {"model": m}} for m in ("gpt-4o", "gpt-4o-mini")])
    calls = [(40, "gpt-4o"), (10, "gpt-4o-mini"), (1, "gpt-4o"), (4, "gpt-4o"), (-3, "gpt-4o-mini"), (6, "gpt-4o")]
    spans = [_Span(trace_id=i + 1, span_id=i + 1) for i in range(len(calls))]
    for (tokens, model), span in zip(calls, spans, strict=True):
        proc.on_usage(record(tokens, model=model, span=span))
    assert [[e[1][sc.BUDGET_THRESHOLD] for e in s.events] for s in spans] == [[], [], [], [], [], ["0.5"]]  # 51


def test_a_token_budget_counts_its_types_from_the_first_call_on_a_route_that_reports_them(make_proc: Any) -> None:
    proc = make_proc([
        {"name": "usd", "limit": 1, "period": "daily"},
        {"name": "reasoning", "limit": 8, "unit": "tokens", "token_types": ["reasoning"], "period": "daily",
         "action": "block"},
    ])  # fmt: skip
    call = CallInfo("openai", "chat", "gpt-4o-mini", {})
    for _ in range(3):
        proc.on_usage(record(10, 5, cost=0.01))  # no reasoning tokens reported: nothing for that budget yet
    proc.on_usage(record(10, 5, cost=0.01, reasoning=7))
    proc.before_call(call)  # 7 of 8
    proc.on_usage(record(10, 5, cost=0.01, reasoning=2))
    with pytest.raises(llm_otel.BudgetExceeded):  # this process's view, before anything is committed
        proc.before_call(call)
    proc.flush()
    used = {e["budget"]: e["used"] for e in proc.snapshot()}
    assert used == {"usd": pytest.approx(0.05), "reasoning": 9}


# --- forecast -------------------------------------------------------------------------------------------------
def test_projected_alert_fires_once_per_window_when_the_forecast_passes_the_limit(
    make_proc: Any, clock: FakeClock
) -> None:
    clock.set(datetime(2025, 6, 2, 0, 0, tzinfo=UTC))
    got: list[Any] = []
    proc = make_proc([{"name": "daily", "limit": 100, "unit": "tokens", "period": "daily"}], on_alert=got.append)
    clock.advance(hours=2)  # 1/12 of the day: too early to project (forecast_after 0.1)
    proc.on_usage(record(20))  # would project 240
    clock.advance(hours=1)  # 3 h: 1/8 of the day
    proc.on_usage(record(1))  # 21 in 3 h: projects 168
    proc.on_usage(record(1))  # still above: no second projected alert
    clock.advance(hours=9)  # 12 h: 0.5 reached, projection 100 > 100 is false
    proc.on_usage(record(28))
    clock.set(datetime(2025, 6, 3, 6, 0, tzinfo=UTC))  # next day, 1/4 elapsed
    proc.on_usage(record(10))  # projects 40: nothing
    proc.on_usage(record(20))  # 30 in 6 h: projects 120
    proc.flush()
    assert [(a.threshold, a.level, round(a.forecast or 0)) for a in got] == [
        ("projected", "warning", 168), ("0.5", "info", 100), ("projected", "warning", 120)]  # fmt: skip
    assert got[0].used == 21 and "projected to reach 168 tokens" in got[0].message()


def test_projected_is_marked_without_alert_once_the_limit_is_reached(make_proc: Any, clock: FakeClock) -> None:
    clock.set(datetime(2025, 6, 2, 0, 0, tzinfo=UTC))
    got: list[Any] = []
    proc = make_proc([{"name": "daily", "limit": 100, "unit": "tokens", "period": "daily"}], on_alert=got.append)
    clock.advance(hours=1)
    proc.on_usage(record(150))  # too early to project, then past the limit
    clock.advance(hours=5)
    proc.on_usage(record(1))
    proc.flush()
    assert [(a.threshold, a.passed) for a in got] == [("1.0", ("0.5", "0.7", "0.8", "projected"))]


# --- block ----------------------------------------------------------------------------------------------------
def test_block_stops_the_next_call_before_any_request_is_sent(sim: Any, make_capture: Any, make_proc: Any) -> None:
    proc = make_proc([{**TOKENS_100, "name": "hard", "limit": 50, "action": "block", "scope": {"provider": "openai"}}])
    cap = make_capture(processors=[proc])
    _chat(sim, 30)
    _chat(sim, 25)  # 55 >= 50: exhausted
    assert len(sim.requests()) == 2
    with pytest.raises(llm_otel.BudgetExceeded) as info:
        _chat(sim, 1)
    assert len(sim.requests()) == 2  # the simulated provider saw nothing
    exc = info.value
    assert isinstance(exc, llm_otel.CallBlocked)
    assert (exc.budget, exc.group, exc.used, exc.limit, exc.unit) == ("hard", "", 55, 50, "tokens")
    assert exc.resets_at == datetime(2025, 6, 3, tzinfo=UTC)
    assert "budget 'hard' is exhausted: 55 of 50 tokens used; it resets at 2025-06-03T00:00:00+00:00" in str(exc)
    blocked = cap.spans()[-1]
    assert blocked.attributes[sc.ERROR_TYPE].endswith(".BudgetExceeded")
    assert blocked.status.status_code == StatusCode.ERROR and "exhausted" in blocked.status.description
    assert sc.USAGE_INPUT_TOKENS not in blocked.attributes


async def test_block_applies_to_async_and_streaming_calls(sim: Any, make_capture: Any, make_proc: Any) -> None:
    proc = make_proc([{**TOKENS_100, "limit": 10, "action": "block"}])
    make_capture(processors=[proc])
    _chat(sim, 10)
    client = openai.AsyncOpenAI(base_url=sim.openai_base_url, api_key="x", max_retries=0)
    with pytest.raises(llm_otel.BudgetExceeded):
        await client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True)
    with pytest.raises(llm_otel.BudgetExceeded):
        _client(sim).responses.create(model="gpt-4o-mini", input="hi")
    assert len(sim.requests()) == 1


def test_block_is_per_group_and_scope_and_lifts_in_the_next_window(
    sim: Any, make_capture: Any, make_proc: Any, clock: FakeClock
) -> None:
    proc = make_proc([{**TOKENS_100, "name": "per-tenant", "limit": 20, "action": "block", "group_by": "tenant",
                       "scope": {"model": "gpt-4o-mini"}}])  # fmt: skip
    make_capture(processors=[proc])
    with llm_otel.context(tenant="acme"):
        _chat(sim, 25)
        with pytest.raises(llm_otel.BudgetExceeded) as info:
            _chat(sim, 1)
        assert info.value.group == "acme"
        _client(sim).chat.completions.create(model="gpt-4o", messages=MSG)  # out of scope: allowed
    with llm_otel.context(tenant="zeta"):
        _chat(sim, 5)  # another group: allowed
    clock.set(datetime(2025, 6, 3, 0, 0, 1, tzinfo=UTC))
    with llm_otel.context(tenant="acme"):
        _chat(sim, 1)  # a new window
    assert len(sim.requests()) == 4


def test_rolling_block_says_when_enough_usage_has_left_the_window(make_proc: Any, clock: FakeClock) -> None:
    proc = make_proc([{**TOKENS_100, "period": "1h", "action": "block"}])
    proc.on_usage(record(70))
    clock.advance(minutes=20)
    proc.on_usage(record(40))  # 110
    with pytest.raises(llm_otel.BudgetExceeded) as info:
        proc.before_call(llm_otel.CallInfo("openai", "chat", "gpt-4o-mini", {}))
    assert info.value.used == 110
    # the 70 leaves the window (1/60 granularity: within one minute after an hour), then 40 < 100
    assert info.value.resets_at == datetime(2025, 6, 2, 11, 1, tzinfo=UTC)
    clock.set(datetime(2025, 6, 2, 11, 1, 1, tzinfo=UTC))
    proc.before_call(llm_otel.CallInfo("openai", "chat", "gpt-4o-mini", {}))


# --- callbacks never hurt the app -----------------------------------------------------------------------------
def test_callback_exceptions_never_reach_the_app(
    sim: Any, make_capture: Any, make_proc: Any, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []

    def broken(alert: Any) -> None:
        raise RuntimeError("callback bug")

    proc = make_proc([TOKENS_100], on_alert=[broken, lambda a: seen.append(a.threshold)])
    cap = make_capture(processors=[proc])
    caplog.set_level(logging.WARNING, logger="llm_otel.budget")
    for _ in range(3):
        assert _chat(sim, 40).choices[0].message.content  # 40, 80 (0.8; 0.5 and 0.7 passed), 120 (1.0)
    proc.flush()
    assert seen == ["0.8", "1.0"]
    assert cap.total(sc.METRIC_BUDGET_ALERTS) == 2
    complaints = [r for r in caplog.records if "on_alert callback" in r.getMessage()]
    assert len(complaints) == 1  # said once, not per alert


# --- instrument() wiring and configuration --------------------------------------------------------------------
def test_instrument_builds_the_processor_first_from_kwargs(sim: Any, make_capture: Any, tmp_path: Path) -> None:
    got: list[Any] = []
    cap = make_capture(budgets=[{**TOKENS_100, "action": "block"}], budget_state=str(tmp_path / "b.db"),
                       on_alert=got.append)  # fmt: skip
    first = cap.runtime.processors[0]
    assert isinstance(first, BudgetProcessor) and first.state_path == tmp_path / "b.db"
    _chat(sim, 120)
    with pytest.raises(llm_otel.BudgetExceeded):
        _chat(sim, 1)
    llm_otel.flush()
    assert [a.threshold for a in got] == ["1.0"]
    assert cap.ledger_rows()[-1]["error_type"].endswith(".BudgetExceeded")  # the ledger saw the blocked call


def test_budgets_from_a_yaml_file_with_env_substitution(
    sim: Any, make_capture: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "llm-otel.yaml"
    cfg.write_text(
        "budget_state: ${STATE_DIR}/budgets.db\n"
        "budgets:\n"
        "  - name: team-${TEAM}\n"
        "    limit: ${LIMIT:-40}\n"
        "    unit: tokens\n"
        "    period: weekly\n"
        "    timezone: Europe/Berlin\n"
        "    action: block\n"
    )
    monkeypatch.setenv("STATE_DIR", str(tmp_path))
    monkeypatch.setenv("TEAM", "search")
    cap = make_capture(config_file=str(cfg))
    proc = cap.runtime.processors[0]
    assert [b.name for b in proc.budgets] == ["team-search"] and proc.budgets[0].limit == 40
    assert proc.state_path == tmp_path / "budgets.db"
    _chat(sim, 41)
    with pytest.raises(llm_otel.BudgetExceeded):
        _chat(sim, 1)


def test_memory_only_state(make_proc: Any) -> None:
    got: list[Any] = []
    proc = make_proc([TOKENS_100], state=False, on_alert=got.append)
    assert proc.state_path is None and not proc.degraded
    proc.on_usage(record(60))
    proc.flush()
    assert [a.threshold for a in got] == ["0.5"]


# --- sums of decimal prices -------------------------------------------------------------------------------------
def test_usd_thresholds_and_the_block_land_on_the_call_whose_price_reaches_them(
    sim: Any, make_capture: Any, make_proc: Any
) -> None:
    # Ten calls at $0.10 are $1.00, but their float sum is 0.9999999999999999 (and eight are 0.7999999999999999):
    # compared exactly, the 80 % and 100 % alerts would land one call late and the eleventh call would go out.
    got: list[Any] = []
    proc = make_proc([{"name": "dollar", "limit": 1, "period": "daily", "forecast": False, "action": "block"}],
                     on_alert=got.append)  # fmt: skip
    cap = make_capture(processors=[proc], prices={"gpt-4o-mini": {"input": 100.0, "output": 0.0}})
    for _ in range(10):
        _chat(sim, 1000)  # 1,000 input tokens at $100 per million: $0.10
    costs = [s.attributes[sc.COST_USD] for s in cap.spans()]
    assert costs == [0.1] * 10
    with pytest.raises(llm_otel.BudgetExceeded):
        _chat(sim, 1000)
    assert len(sim.requests()) == 10
    fired_on = {i: [e[sc.BUDGET_THRESHOLD] for e in _events(s)] for i, s in enumerate(cap.spans()[:10])}
    assert {i: ev for i, ev in fired_on.items() if ev} == {4: ["0.5"], 6: ["0.7"], 7: ["0.8"], 9: ["1.0"]}
    proc.flush()
    assert [a.threshold for a in got] == ["0.5", "0.7", "0.8", "1.0"]
