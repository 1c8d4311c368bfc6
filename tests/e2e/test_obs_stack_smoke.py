"""Smoke tests of the real observability stack (see obs_stack.py).

OTel SDK MeterProvider -> OTLP/HTTP -> vmagent -> Prometheus (rules) -> Alertmanager -> webhook,
plus promtool's rule checks, including a negative control.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import pytest
from obs_stack import ObsStack
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    MeterProvider,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource

RULES = """\
groups:
  - name: llm-otel-smoke
    interval: 1s
    rules:
      - alert: SmokeCost
        expr: sum by (service_name) (llm_otel_cost_USD_total) > 0.5
        for: 0s
        labels:
          severity: page
        annotations:
          summary: 'LLM cost {{ $value }} USD for {{ $labels.service_name }}'
"""

RULES_TEST = """\
rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'llm_otel_cost_USD_total{service_name="svc", gen_ai_request_model="m"}'
        values: '0.25 0.5 0.75 0.75'
    alert_rule_test:
      - eval_time: 1m
        alertname: SmokeCost
        exp_alerts: %(at_1m)s
      - eval_time: 2m
        alertname: SmokeCost
        exp_alerts:
          - exp_labels: {severity: page, service_name: svc}
            exp_annotations: {summary: 'LLM cost 0.75 USD for svc'}
"""
FIRING_AT_1M = "[{exp_labels: {severity: page, service_name: svc}}]"

TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304]
CUMULATIVE = {
    kind: AggregationTemporality.CUMULATIVE
    for kind in (
        Counter,
        UpDownCounter,
        Histogram,
        ObservableCounter,
        ObservableUpDownCounter,
        ObservableGauge,
    )
}


def _value(sample: dict) -> float:
    return float(sample["value"][1])


def _push_metrics(endpoint: str, service_name: str) -> None:
    exporter = OTLPMetricExporter(endpoint=endpoint, timeout=10, preferred_temporality=CUMULATIVE)
    # A long interval: the test exports explicitly with force_flush.
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(
        resource=Resource.create({"service.name": service_name, "deployment.environment.name": "test"}),
        metric_readers=[reader],
    )
    try:
        meter = provider.get_meter("llm_otel.e2e.smoke")
        attrs = {"gen_ai.request.model": "gpt-4o", "gen_ai.provider.name": "openai"}
        cost = meter.create_counter("llm_otel.cost", unit="USD", description="LLM spend")
        cost.add(0.5, attrs)
        cost.add(0.25, attrs)
        tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Tokens used",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        tokens.record(100, {**attrs, "gen_ai.token.type": "input"})
        tokens.record(50, {**attrs, "gen_ai.token.type": "output"})
        assert provider.force_flush(timeout_millis=10_000), "force_flush failed"
    finally:
        provider.shutdown()


def _promtool(obs_bin: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(obs_bin / "promtool"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_otlp_metrics_reach_prometheus_and_alert_fires(obs_bin: Path, tmp_path: Path) -> None:
    t0 = time.monotonic()
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES)
    check = _promtool(obs_bin, "check", "rules", rules)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 1 rules found" in check.stdout + check.stderr

    service = f"llm-otel-smoke-{uuid.uuid4().hex[:8]}"
    with ObsStack(obs_bin, tmp_path / "stack", rule_files=[rules]) as stack:
        t_started = time.monotonic()
        _push_metrics(stack.otlp_metrics_url, service)
        t_pushed = time.monotonic()

        # Counter llm_otel.cost [USD] -> llm_otel_cost_USD_total, resource attrs as labels.
        series = stack.wait_query("llm_otel_cost_USD_total", timeout=15)
        assert len(series) == 1, series
        labels = series[0]["metric"]
        assert labels["__name__"] == "llm_otel_cost_USD_total"
        assert labels["service_name"] == service
        assert labels["gen_ai_request_model"] == "gpt-4o"
        assert labels["gen_ai_provider_name"] == "openai"
        total = stack.query(f'sum(llm_otel_cost_USD_total{{service_name="{service}"}})')
        assert _value(total[0]) == 0.75

        # Histogram gen_ai.client.token.usage [{token}] -> gen_ai_client_token_usage_*.
        count = stack.wait_query(
            f'sum(gen_ai_client_token_usage_count{{service_name="{service}"}})',
            timeout=10,
        )
        assert _value(count[0]) == 2
        by_type = stack.query(
            "sum by (gen_ai_token_type) (gen_ai_client_token_usage_sum)",
        )
        assert {s["metric"]["gen_ai_token_type"]: _value(s) for s in by_type} == {
            "input": 100.0,
            "output": 50.0,
        }
        le_64 = stack.query('sum(gen_ai_client_token_usage_bucket{le="64"})')
        le_inf = stack.query('sum(gen_ai_client_token_usage_bucket{le="+Inf"})')
        assert (_value(le_64[0]), _value(le_inf[0])) == (1.0, 2.0)

        names = set(stack.prom_api("/api/v1/label/__name__/values"))
        print(f"\nseries names in Prometheus: {sorted(names)}")
        assert {
            "llm_otel_cost_USD_total",
            "gen_ai_client_token_usage_bucket",
            "gen_ai_client_token_usage_count",
            "gen_ai_client_token_usage_sum",
        } <= names

        # The rule fires and Alertmanager delivers it to the webhook.
        def smoke_alerts(payload: dict) -> list[dict]:
            return [
                a
                for a in payload.get("alerts", [])
                if a["labels"].get("alertname") == "SmokeCost" and a["status"] == "firing"
            ]

        payload = stack.wait_webhook(lambda p: bool(smoke_alerts(p)), timeout=20)
        t_alerted = time.monotonic()
        (alert,) = smoke_alerts(payload)
        assert payload["status"] == "firing"
        assert alert["labels"] == {
            "alertname": "SmokeCost",
            "service_name": service,
            "severity": "page",
        }
        assert alert["annotations"]["summary"] == f"LLM cost 0.75 USD for {service}"
        firing = stack.query('ALERTS{alertname="SmokeCost", alertstate="firing"}')
        assert [s["metric"]["service_name"] for s in firing] == [service]

    elapsed = time.monotonic() - t0
    print(
        f"stack start {stack.start_seconds:.2f} s, push {t_pushed - t_started:.2f} s, "
        f"webhook {t_alerted - t_started:.2f} s after start, whole test {elapsed:.2f} s"
    )
    assert elapsed < 45, f"smoke test took {elapsed:.1f} s"
    # Every process of the stack is gone.
    assert all(p.popen.returncode is not None for p in stack.processes)


@pytest.mark.parametrize(
    ("at_1m", "should_pass"),
    [
        pytest.param("[]", True, id="correct-expectation"),
        # 0.5 is not > 0.5, so expecting the alert at 1m is wrong and must be reported.
        pytest.param(FIRING_AT_1M, False, id="wrong-expectation-negative-control"),
    ],
)
def test_promtool_test_rules(obs_bin: Path, tmp_path: Path, at_1m: str, should_pass: bool) -> None:
    (tmp_path / "rules.yml").write_text(RULES)
    test_file = tmp_path / "rules_test.yml"
    test_file.write_text(RULES_TEST % {"at_1m": at_1m})
    result = _promtool(obs_bin, "test", "rules", test_file)
    output = result.stdout + result.stderr
    if should_pass:
        assert result.returncode == 0, output
        assert "SUCCESS" in output
    else:
        assert result.returncode == 1, output
        assert "FAILED" in output
        assert "alertname: SmokeCost, time: 1m" in output, output
