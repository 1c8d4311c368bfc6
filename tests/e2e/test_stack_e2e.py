"""The shipped stack, end to end, against real backends (Debian's Prometheus, Alertmanager, vmagent).

    demo workload (real OpenAI SDK, llm_otel.instrument(), simulated provider)  [subprocess]
      --OTLP/HTTP metrics--> vmagent --remote write--> Prometheus (the shipped rules) --> Alertmanager
      (the shipped routing) --> webhook in this process;   traces and logs --> an OTLP sink in this process

Prometheus here is Debian's 2.53 without an OTLP receiver, so vmagent stands in for the receiver that
docker-compose.yml uses (Prometheus 3's own); test_stack_config.py shows both name the series the same.
The rules are the shipped files with ``for:`` set to 0s (expressions unchanged); Alertmanager gets the
shipped routing tree with short group timers and the webhook URLs pointed at this process.

Checked: every PromQL query of every panel, annotation and variable of every shipped dashboard parses and
returns data (except the ones listed in NOT_YET_EMITTED); the token and cost totals in Prometheus equal
what the simulated provider served and what llm-otel's session recorded; the series names are exactly the
ones derived from the instruments; alerts of every severity fire and reach the webhook on their route.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from obs_stack import WEBHOOK_URL_PLACEHOLDER, ObsStack, OtlpSink
from test_stack_config import (
    ALERTMANAGER_YML,
    REPO,
    dashboard_queries,
    dashboards,
    expected_series,
    metric_names_in,
    rule_files,
    rules_in,
    split_label_values,
    substitute,
    variable_values,
)

WORKLOAD = Path(__file__).resolve().parent / "test_stack_workload.py"
WORKLOAD_ROUNDS = 8
WORKLOAD_PACE_S = 0.6
WORKLOAD_TIMEOUT_S = 120
E2E_BUDGET_S = 240  # the whole module, stack start to stop; the issue allows 5 minutes on 2 cores

# Metrics that dashboards query but nothing emits yet. Their queries must still parse, and must return
# nothing; once one returns data the test fails, asking to remove the name from this set.
NOT_YET_EMITTED = {
    # BUDGET ISSUE: the budget processor (llm_otel.budget.utilization gauge, llm_otel.budget.alerts counter)
    # is being built separately. When it lands, set BUDGET_WORKLOAD_CONFIG below so the workload runs with
    # budgets, and remove these two names.
    "llm_otel_budget_utilization_ratio",
    "llm_otel_budget_alerts_total",
}
# BUDGET ISSUE: a llm-otel YAML config with a `budgets:` section small enough for the workload to cross its
# thresholds (passed to the workload as LLM_OTEL_CONFIG), e.g. the example config that
# `llm-otel rules --out prometheus/rules` generates the budget rules from. None until the budget processor
# exists. (The generated Prometheus rules only need llm_otel_cost_USD_total / llm_otel_tokens_total, which
# the workload already exports: rules generated with limits the workload crosses fire without the processor.)
BUDGET_WORKLOAD_CONFIG: Path | None = None
BUDGET_ALERT_PREFIX = "LLMBudget"  # alert names of the generated budget rules

# Alerts the workload must fire, by the route (severity) they must arrive on.
EXPECTED_ALERTS = {
    "critical": "LLMErrorRateHigh",  # gpt-4.1-mini fails every call
    "warning": "LLMRateLimitHeadroomLow",  # gpt-4.1-nano reports 3 requests left
    "info": "LLMUnpricedRequests",  # acme-private-finetune has no price
}


@dataclass
class Run:
    stack: ObsStack
    sink: OtlpSink
    service: str
    result: dict[str, Any]
    workload_seconds: float
    started: float


def render_rules(tmp: Path) -> list[Path]:
    """The shipped rule files with every ``for:`` set to 0s; expressions, labels, annotations unchanged."""
    out = []
    for path in rule_files():
        doc = yaml.safe_load(path.read_text())
        for group in doc["groups"]:
            group.pop("interval", None)  # evaluate at the harness' 1 s
            for rule in group["rules"]:
                if "alert" in rule:
                    rule["for"] = "0s"
                    rule.pop("keep_firing_for", None)
        copy = tmp / path.name
        copy.write_text(yaml.safe_dump(doc, sort_keys=False))
        out.append(copy)
    return out


def render_alertmanager() -> str:
    """The shipped routing tree and receivers, with short timers and the webhooks pointed at the test."""
    doc = yaml.safe_load(ALERTMANAGER_YML.read_text())

    def shorten(route: dict) -> None:
        for key, value in (("group_wait", "500ms"), ("group_interval", "1s"), ("repeat_interval", "1h")):
            if key in route:
                route[key] = value
        for child in route.get("routes", []):
            shorten(child)

    shorten(doc["route"])
    doc["route"].update(group_wait="500ms", group_interval="1s", repeat_interval="1h")
    for receiver in doc["receivers"]:
        for hook in receiver["webhook_configs"]:
            path = hook["url"].split("://", 1)[1].split("/", 1)[1]
            hook["url"] = f"{WEBHOOK_URL_PLACEHOLDER}/{path}"
    return yaml.safe_dump(doc, sort_keys=False)


def run_workload(stack: ObsStack, sink: OtlpSink, service: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLM_OTEL_"))}
    env.update(
        OTEL_SERVICE_NAME=service,
        OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=stack.otlp_metrics_url,
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"{sink.url}/v1/traces",
        OTEL_EXPORTER_OTLP_LOGS_ENDPOINT=f"{sink.url}/v1/logs",
        OTEL_METRIC_EXPORT_INTERVAL="500",
        OTEL_BSP_SCHEDULE_DELAY="500",
        LLM_OTEL_METRIC_ATTRIBUTES="tenant",
        LLM_OTEL_LEDGER="false",
    )
    if BUDGET_WORKLOAD_CONFIG is not None:
        env["LLM_OTEL_CONFIG"] = str(BUDGET_WORKLOAD_CONFIG)
    cmd = [sys.executable, str(WORKLOAD), "--rounds", str(WORKLOAD_ROUNDS), "--pace", str(WORKLOAD_PACE_S)]
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=WORKLOAD_TIMEOUT_S)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("WORKLOAD-RESULT ")]
    assert proc.returncode == 0 and lines, f"workload failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1].removeprefix("WORKLOAD-RESULT "))


@pytest.fixture(scope="module")
def run(obs_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    started = time.monotonic()
    tmp = tmp_path_factory.mktemp("stack-e2e")
    (tmp / "rules").mkdir()
    service = f"llm-otel-e2e-{uuid.uuid4().hex[:8]}"
    with (
        OtlpSink() as sink,
        ObsStack(obs_bin, tmp / "stack", render_rules(tmp / "rules"), render_alertmanager()) as stack,
    ):
        t0 = time.monotonic()
        result = run_workload(stack, sink, service)
        workload_seconds = time.monotonic() - t0
        # The final flush has reached Prometheus once the call count is complete.
        stack.wait_query(
            f'sum(gen_ai_client_operation_duration_seconds_count{{service_name="{service}"}})',
            lambda r: bool(r) and float(r[0]["value"][1]) == result["calls"],
            timeout=20,
        )
        print(f"\nstack started in {stack.start_seconds:.1f} s; workload {workload_seconds:.1f} s: {result}")
        yield Run(stack, sink, service, result, workload_seconds, started)
    elapsed = time.monotonic() - started
    print(f"\nstack e2e module: {elapsed:.1f} s")
    assert all(p.popen.returncode is not None for p in stack.processes), "a backend process outlived the stack"
    assert elapsed < E2E_BUDGET_S, f"the stack e2e tests took {elapsed:.0f} s"


def _value(sample: dict) -> float:
    return float(sample["value"][1])


def test_series_names_are_the_derived_ones(run: Run) -> None:
    names = set(run.stack.prom_api("/api/v1/label/__name__/values", **{"match[]": f'{{service_name="{run.service}"}}'}))
    names -= {"ALERTS", "ALERTS_FOR_STATE"}  # Prometheus' own series for the alerts that fired, with their labels
    print("\nPrometheus series names (vmagent -opentelemetry.usePrometheusNaming):\n  " + "\n  ".join(sorted(names)))
    expected = {
        name
        for name, inst in expected_series("vmagent").items()
        if not inst.name.startswith("gen_ai.client.inference.")  # opt-in next-release names, not enabled here
        and not any(name.startswith(n.removesuffix("_total")) for n in NOT_YET_EMITTED)
    }
    assert names == expected, f"unexpected: {names - expected}; missing: {expected - names}"
    labels = set(run.stack.prom_api("/api/v1/labels", **{"match[]": f'{{service_name="{run.service}"}}'}))
    assert {"service_name", "llm_otel_tenant", "gen_ai_token_type", "error_type", "llm_otel_retry_reason"} <= labels
    assert not labels & {"job", "instance"}


def test_token_and_cost_totals_equal_what_the_provider_reported(run: Run) -> None:
    # One call per round fails on purpose (500x9); any other failure is a scenario the provider rejected.
    assert run.result["errors"] == WORKLOAD_ROUNDS, run.result
    served = run.result["served_tokens"]
    assert served["input"] > 0 and served["output"] > 0 and served["cache_read"] > 0 and served["reasoning"] > 0
    assert run.result["session_tokens"] == served
    by_type = run.stack.query(f'sum by (gen_ai_token_type) (llm_otel_tokens_total{{service_name="{run.service}"}})')
    in_prometheus = {s["metric"]["gen_ai_token_type"]: _value(s) for s in by_type}
    for token_type, total in served.items():
        assert in_prometheus.get(token_type, 0.0) == total, f"{token_type}: {in_prometheus} vs served {served}"
    (cost,) = run.stack.query(f'sum(llm_otel_cost_USD_total{{service_name="{run.service}"}})')
    assert run.result["session_cost_usd"] > 0
    assert math.isclose(_value(cost), run.result["session_cost_usd"], rel_tol=1e-12), (cost, run.result)
    # The histogram of tokens per call agrees with the counters for input and output.
    usage = run.stack.query(
        f'sum by (gen_ai_token_type) (gen_ai_client_token_usage_sum{{service_name="{run.service}"}})'
    )
    assert {s["metric"]["gen_ai_token_type"]: _value(s) for s in usage} == {
        "input": served["input"],
        "output": served["output"],
    }


def test_every_dashboard_query_parses_and_returns_data(run: Run) -> None:
    checked, failures = [], []
    for name, dash in dashboards().items():
        values = variable_values(dash)
        for q in dashboard_queries():
            if not q.where.startswith(name) or q.datasource != "prometheus":
                continue
            expr = substitute(q.expr, values)
            selector, label = split_label_values(expr)
            try:
                if label is not None:  # a variable: label_values(selector, label)
                    data = run.stack.prom_api(f"/api/v1/label/{label}/values", **{"match[]": selector})
                else:
                    data = run.stack.query(expr)
            except Exception as e:  # a parse error is an HTTP 400 from Prometheus
                failures.append(f"{q.where}: {e}")
                continue
            pending = metric_names_in(expr) & NOT_YET_EMITTED
            if pending and data:
                failures.append(f"{q.where}: returns data now; remove {pending} from NOT_YET_EMITTED")
            elif not pending and not data:
                failures.append(f"{q.where}: no data for {expr}")
            checked.append((q.where, len(data), bool(pending)))
    print(f"\n{len(checked)} dashboard queries checked:")
    for where, n, pending in checked:
        print(f"  {'(not yet emitted) ' if pending else ''}{where}: {n} series")
    assert not failures, "\n".join(failures)
    assert len(checked) >= 50


def test_alerts_of_every_severity_reach_their_webhook_route(run: Run) -> None:
    def delivered(route: str, alertname: str) -> list[dict]:
        return [
            a
            for path, payload in run.stack.webhook_requests()
            if path == f"/alert/{route}"
            for a in payload.get("alerts", [])
            if a["labels"].get("alertname") == alertname and a["status"] == "firing"
        ]

    deadline = time.monotonic() + 30
    for severity, alertname in EXPECTED_ALERTS.items():
        run.stack.wait_webhook(lambda _p, s=severity, n=alertname: bool(delivered(s, n)),
                               timeout=max(1.0, deadline - time.monotonic()))  # fmt: skip
        for alert in delivered(severity, alertname):
            assert alert["labels"]["severity"] == severity
            assert alert["labels"]["service_name"] == run.service
            assert alert["annotations"]["summary"].startswith(f"{run.service}: ")
    (critical,) = {a["labels"]["gen_ai_request_model"] for a in delivered("critical", "LLMErrorRateHigh")}
    assert critical == "gpt-4.1-mini"
    assert {a["labels"]["gen_ai_request_model"] for a in delivered("info", "LLMUnpricedRequests")} == {
        "acme-private-finetune"
    }
    # alertmanager.yml's inhibit rule: the firing warning level of the same alert is not delivered.
    firing = run.stack.query('ALERTS{alertname="LLMErrorRateHigh", alertstate="firing", severity="warning"}')
    assert "gpt-4.1-mini" in {s["metric"]["gen_ai_request_model"] for s in firing}
    inhibited = [a for a in delivered("warning", "LLMErrorRateHigh") if a["labels"]["gen_ai_request_model"] == critical]
    assert not inhibited, inhibited
    routes = {path for path, _ in run.stack.webhook_requests()}
    assert routes <= {"/alert/critical", "/alert/warning", "/alert/info"}, routes
    print(f"\nwebhook requests by route: {sorted(routes)}")


def test_budget_rule_fires_and_reaches_the_webhook(run: Run) -> None:
    # BUDGET ISSUE: placeholder until the budget processor and its generated rules exist. Then:
    # set BUDGET_WORKLOAD_CONFIG (budgets the workload crosses), and this test waits for one of the budget
    # rules to fire and reach the webhook, like the test above.
    alerts = {r["alert"] for p in rule_files() for r in rules_in(p) if "alert" in r}
    names = {a for a in alerts if a.startswith(BUDGET_ALERT_PREFIX)}
    if not names or BUDGET_WORKLOAD_CONFIG is None:
        pytest.skip("budget rules not there yet (budget issue): prometheus/rules/*.rules.yml, BUDGET_WORKLOAD_CONFIG")
    payload = run.stack.wait_webhook(
        lambda p: any(a["labels"].get("alertname") in names and a["status"] == "firing" for a in p.get("alerts", [])),
        timeout=30,
    )
    assert payload["status"] == "firing"


def test_traces_are_exported(run: Run) -> None:
    assert run.sink.requests.get("/v1/traces", 0) >= 1, run.sink.requests
    assert run.sink.bytes["/v1/traces"] > 1000


def test_within_time_budget(run: Run) -> None:
    elapsed = time.monotonic() - run.started
    stack_s, workload_s = run.stack.start_seconds or 0.0, run.workload_seconds
    print(f"\nstack start {stack_s:.1f} s, workload {workload_s:.1f} s, so far {elapsed:.1f} s")
    assert elapsed < E2E_BUDGET_S
