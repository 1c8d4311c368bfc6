"""llm-otel's telemetry as a good OpenTelemetry citizen: units, schema URL, dependency floors, and an export
interval that agrees with the shipped Grafana datasource and every dashboard panel's window.

The dashboard checks read the shipped files only (no backend); tests/e2e/test_default_dashboards.py runs the
same panels against real Prometheus with default export settings.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from opentelemetry import trace
from opentelemetry.sdk.metrics.export import Gauge

from llm_otel import semconv as sc

REPO = Path(__file__).resolve().parents[1]
DATASOURCES = REPO / "grafana" / "provisioning" / "datasources" / "datasources.yml"
DASHBOARDS = REPO / "grafana" / "dashboards"
COLLECTOR = REPO / "collector-config" / "otelcol.yaml"
COMPOSE = REPO / "docker-compose.yml"
MSG = [{"role": "user", "content": "hi"}]
MIN_SAMPLES = 4  # exports every window must hold: rate() needs 2, and a late export must not empty it
SDK_DEFAULT_EXPORT_MS = 60_000
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_WINDOW = re.compile(r"\[([^\]:]+)(?::[^\]]*)?\]")  # [5m], [$__rate_interval], [1h:1m] (subquery)


# ---- helpers shared with tests/e2e/test_default_dashboards.py -------------------------------------------------
def seconds(duration: str) -> float:
    """A Prometheus / Grafana duration (``15s``, ``1h30m``, ``500ms``) in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a duration: {duration!r}"
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


def time_interval_s() -> float:
    """``timeInterval`` of the provisioned Prometheus datasource: Grafana's idea of the sample interval."""
    (prom,) = [d for d in yaml.safe_load(DATASOURCES.read_text())["datasources"] if d["type"] == "prometheus"]
    return seconds(prom["jsonData"]["timeInterval"])


def dashboards() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def dashboard_range_s(dash: dict) -> float:
    """The dashboard's default time range (``now-1h`` .. ``now``) in seconds."""
    assert dash["time"]["to"] == "now", dash["time"]
    return seconds(dash["time"]["from"].removeprefix("now-"))


def grafana_intervals(time_interval: float, range_s: float, max_data_points: int = 1000) -> dict[str, float]:
    """What Grafana substitutes for its interval variables, in seconds: ``$__interval`` is the range over the
    panel's data points, never below the datasource's ``timeInterval``; ``$__rate_interval`` is
    max($__interval + timeInterval, 4 x timeInterval); ``$__range`` is the time range."""
    interval = max(time_interval, range_s / max_data_points)
    return {
        "$__interval": interval,
        "$__rate_interval": max(interval + time_interval, 4 * time_interval),
        "$__range": range_s,
    }


def prometheus_targets(dash: dict) -> list[tuple[str, dict]]:
    """(panel title, target) of every Prometheus query of the dashboard's panels."""
    out = []
    for panel in dash["panels"]:
        for t in panel.get("targets", []):
            if (t.get("datasource") or panel.get("datasource") or {}).get("uid") == "prometheus":
                out.append((panel["title"], t))
    return out


def windows(expr: str) -> list[str]:
    """Range-selector windows of a PromQL expression, as written (``5m``, ``$__rate_interval``)."""
    return _WINDOW.findall(expr)


def _export_interval_ms(env_value: str | None) -> float:
    """The export interval of the reader ``llm_otel.instrument()`` builds for an OTLP metrics endpoint, read
    in a fresh process (setting up providers installs a global meter provider)."""
    script = (
        "import json, os, llm_otel\n"
        "rt = llm_otel.instrument(ledger=False)\n"
        "mp = rt.providers.meter_provider\n"
        "(reader,) = getattr(mp, '_metric_readers', None) or mp._sdk_config.metric_readers\n"
        "print(json.dumps(reader._export_interval_millis), flush=True)\n"
        "os._exit(0)  # no exit-time export to the unreachable endpoint\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLM_OTEL_"))}
    env["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"] = "http://127.0.0.1:9/v1/metrics"  # never contacted
    if env_value is not None:
        env["OTEL_METRIC_EXPORT_INTERVAL"] = env_value
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return float(json.loads(done.stdout.splitlines()[-1]))


def _metrics(capture: Any) -> dict[str, Any]:
    """Metric name -> (metric, scope metrics) of everything llm-otel exported to the in-memory reader."""
    out = {}
    for rm in capture.metric_reader.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                out[m.name] = (m, sm)
    return out


def _call(sim: Any, scenario: str | None = None) -> None:
    client = openai.OpenAI(base_url=sim.openai_base_url, api_key="x")
    headers = {"x-sim-scenario": scenario} if scenario else None
    client.chat.completions.create(model="gpt-4o-mini", messages=MSG, extra_headers=headers)


# ---- 1. rate-limit headroom: one gauge per unit ------------------------------------------------------------------
def test_ratelimit_headroom_is_two_gauges_each_with_its_unit(sim: Any, capture: Any) -> None:
    _call(sim, "rl_req=42,rl_tok=1234")
    _call(sim, "rl_req=41,rl_tok=900")  # the last value seen wins, in the same series
    found = _metrics(capture)
    assert "llm_otel.ratelimit.remaining" not in found
    requests, _ = found[sc.METRIC_RATELIMIT_REMAINING_REQUESTS]
    tokens, _ = found[sc.METRIC_RATELIMIT_REMAINING_TOKENS]
    assert (requests.unit, tokens.unit) == ("{request}", "{token}")
    assert isinstance(requests.data, Gauge) and isinstance(tokens.data, Gauge)
    (req_point,) = requests.data.data_points
    (tok_point,) = tokens.data.data_points
    assert (req_point.value, tok_point.value) == (41, 900)
    assert dict(req_point.attributes) == dict(tok_point.attributes)
    assert dict(req_point.attributes)[sc.REQUEST_MODEL] == "gpt-4o-mini"
    assert not any("kind" in key for key in req_point.attributes)


def _exemplar_span_ids(capture: Any, *names: str) -> dict[str, set[int]]:
    """Metric name -> span ids of the exemplars on its points in this collection."""
    return {
        m.name: {e.span_id for dp in m.data.data_points for e in dp.exemplars}
        for m, _ in _metrics(capture).values()
        if m.name in names
    }


def test_per_call_points_carry_an_exemplar_of_the_calls_own_span(sim: Any, capture: Any) -> None:
    """Duration, token usage and time to first chunk link to the LLM call's span (what Grafana's exemplars
    open), not to the app's span that is current when the call ends, nor to nothing after a stream."""
    names = (sc.METRIC_OPERATION_DURATION, sc.METRIC_TOKEN_USAGE, sc.METRIC_TIME_TO_FIRST_CHUNK)
    tracer = capture.runtime.tracer
    with tracer.start_as_current_span("app work") as app:
        _call(sim)
    (chat,) = [s for s in capture.spans() if s.name != "app work"]
    assert chat.parent is not None and chat.parent.span_id == app.get_span_context().span_id
    assert _exemplar_span_ids(capture, *names) == {
        sc.METRIC_OPERATION_DURATION: {chat.context.span_id},
        sc.METRIC_TOKEN_USAGE: {chat.context.span_id},
    }
    client = openai.OpenAI(base_url=sim.openai_base_url, api_key="x")
    assert trace.get_current_span() is trace.INVALID_SPAN
    for _ in client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True):
        pass
    stream = capture.spans()[-1]
    assert _exemplar_span_ids(capture, *names) == {name: {stream.context.span_id} for name in names}


DETAIL = (sc.METRIC_REQUEST_COST, sc.METRIC_TOKENS_PER_SECOND, sc.METRIC_BURST_TOKENS_PER_SECOND,
          sc.METRIC_THROTTLE_WAIT, sc.METRIC_TIME_PER_OUTPUT_CHUNK)  # fmt: skip
CONVENTIONS = (sc.METRIC_OPERATION_DURATION, sc.METRIC_TOKEN_USAGE, sc.METRIC_TIME_TO_FIRST_CHUNK)


@pytest.mark.parametrize("detail", [True, False])
def test_detail_histograms_off_records_none_of_their_points_and_keeps_every_total(
    sim: Any, make_capture: Any, detail: bool
) -> None:
    capture = make_capture(detail_histograms=detail)
    client = openai.OpenAI(base_url=sim.openai_base_url, api_key="x")
    client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    for _ in client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True):
        pass
    found = _metrics(capture)
    assert {name: name in found for name in DETAIL} == {name: detail for name in DETAIL}
    assert all(name in found for name in CONVENTIONS)
    spans = capture.spans()
    assert capture.total(sc.METRIC_COST) == pytest.approx(sum(s.attributes[sc.COST_USD] for s in spans))
    assert capture.total(sc.METRIC_TOKENS, **{sc.TOKEN_TYPE: "output"}) == sum(
        s.attributes[sc.USAGE_OUTPUT_TOKENS] for s in spans
    )
    assert capture.count(sc.METRIC_OPERATION_DURATION) == 2


# ---- 2. schema URL and dependency floors ------------------------------------------------------------------------
def test_spans_and_metrics_carry_the_conventions_schema_url(sim: Any, capture: Any) -> None:
    assert sc.SCHEMA_URL == "https://opentelemetry.io/schemas/1.41.1"
    _call(sim)
    span = capture.span()
    assert span.instrumentation_scope.name == "llm_otel"
    assert span.instrumentation_scope.schema_url == sc.SCHEMA_URL
    scopes = {(sm.scope.name, sm.scope.schema_url, sm.schema_url) for _, sm in _metrics(capture).values()}
    assert scopes == {("llm_otel", sc.SCHEMA_URL, sc.SCHEMA_URL)}


def _floors() -> dict[str, str]:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return {m.group(1): m.group(2) for d in deps if (m := re.fullmatch(r"([A-Za-z0-9_.-]+)>=([^,;\s]+)", d))}


def test_semconv_floor_has_every_name_used_and_pairs_with_api_and_sdk() -> None:
    """0.63b0 is the first opentelemetry-semantic-conventions release with gen_ai.provider.name, the cache and
    reasoning token attributes, gen_ai.request.stream, time to first chunk and the 1.41.1 schema (checked
    against the released wheels 0.51b0 .. 0.66b2); semconv 0.NNb0 pins opentelemetry-api 1.(NN-21).0 and
    opentelemetry-sdk 1.(NN-21).0 pins it back, so api and sdk floors follow."""
    floors = _floors()
    semconv = floors["opentelemetry-semantic-conventions"]
    assert semconv == "0.63b0", floors
    minor = int(re.fullmatch(r"0\.(\d+)b\d+", semconv).group(1))
    for package in ("opentelemetry-api", "opentelemetry-sdk"):
        assert floors[package] in (f"1.{minor - 21}", f"1.{minor - 21}.0"), (package, floors)


# ---- 3. export interval, datasource and panel windows agree ------------------------------------------------------
def test_default_export_interval_is_llm_otels_and_the_environment_still_wins() -> None:
    from llm_otel.sinks.metrics import DEFAULT_EXPORT_INTERVAL_MS

    assert _export_interval_ms(None) == DEFAULT_EXPORT_INTERVAL_MS < SDK_DEFAULT_EXPORT_MS
    assert _export_interval_ms("5000") == 5000


def test_datasource_time_interval_is_not_shorter_than_the_default_export_interval() -> None:
    """Grafana sizes $__rate_interval from timeInterval; samples must come at least that often."""
    from llm_otel.sinks.metrics import DEFAULT_EXPORT_INTERVAL_MS

    assert time_interval_s() >= DEFAULT_EXPORT_INTERVAL_MS / 1000
    demo = yaml.safe_load(COMPOSE.read_text())["services"]["demo"]["environment"]
    assert int(demo["OTEL_METRIC_EXPORT_INTERVAL"]) / 1000 <= time_interval_s()


@pytest.mark.parametrize("name", sorted(p.name for p in DASHBOARDS.glob("*.json")))
def test_every_panel_window_holds_enough_exports(name: str) -> None:
    """Every range selector of every panel spans at least MIN_SAMPLES sample intervals (llm-otel's default
    export interval, and the datasource's timeInterval Grafana assumes), whatever Grafana substitutes."""
    from llm_otel.sinks.metrics import DEFAULT_EXPORT_INTERVAL_MS

    dash = dashboards()[name]
    step = max(time_interval_s(), DEFAULT_EXPORT_INTERVAL_MS / 1000)
    grafana = grafana_intervals(step, dashboard_range_s(dash))
    problems, checked = [], 0
    for title, target in prometheus_targets(dash):
        for window in windows(target["expr"]):
            length = grafana[window] if window.startswith("$") else seconds(window)
            checked += 1
            if length < MIN_SAMPLES * step:
                problems.append(f"{title!r}: [{window}] = {length:g} s < {MIN_SAMPLES} x {step:g} s")
    assert checked, f"{name}: no range selectors found"
    assert not problems, "\n".join(problems)


def test_collector_forwards_each_export_without_an_interval_of_its_own() -> None:
    """The metrics pipeline pushes (no exporter that waits for a scrape) and batches for well under one
    export interval, so each export stays a sample of its own."""
    from llm_otel.sinks.metrics import DEFAULT_EXPORT_INTERVAL_MS

    config = yaml.safe_load(COLLECTOR.read_text())
    pipeline = config["service"]["pipelines"]["metrics"]
    push = {"otlp_http", "otlp_grpc", "otlp", "otlphttp", "prometheusremotewrite"}
    assert {e.split("/")[0] for e in pipeline["exporters"]} <= push, pipeline["exporters"]
    for proc in pipeline["processors"]:
        if proc.split("/")[0] == "batch":
            timeout = seconds(config["processors"][proc].get("timeout", "200ms"))
            assert timeout * MIN_SAMPLES <= DEFAULT_EXPORT_INTERVAL_MS / 1000, (proc, timeout)
