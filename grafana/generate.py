"""Generate the llm-otel Grafana dashboards (grafana/dashboards/*.json) from plain Python dicts.

    python grafana/generate.py            # write the JSON files
    python grafana/generate.py --check    # exit 1 if a committed file differs from what this generates

The committed JSON is what Grafana provisions (grafana/provisioning/dashboards/dashboards.yml). Queries use
only labels that exist on both OTLP -> Prometheus paths (Prometheus' OTLP receiver with service.name
promoted, and vmagent): ``service_name`` plus metric attributes, never ``job``/``instance``. Metric names
are the Prometheus names of the instruments in src/llm_otel/semconv.py (docs/metrics.md);
tests/e2e/test_stack_config.py checks that, and tests/e2e/test_stack_e2e.py runs every query against real
data. Rates use ``$__rate_interval`` (at least 4 x the datasource's timeInterval, which is llm-otel's default
export interval), other windows are hours or days, so every window holds at least 4 exports
(tests/test_metrics_citizen.py; tests/e2e/test_default_dashboards.py with default export settings).
Standard library only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

OUT_DIR = Path(__file__).resolve().parent / "dashboards"
TAG = "llm-otel"
SCHEMA_VERSION = 41

PROM = {"type": "prometheus", "uid": "prometheus"}
LOKI = {"type": "loki", "uid": "loki"}
TEMPO = {"type": "tempo", "uid": "tempo"}

# Grafana variables: $service (resource attribute service.name, promoted to a label), $provider, $model.
SERVICE = 'service_name=~"$service"'
FILTER = 'service_name=~"$service", gen_ai_provider_name=~"$provider", gen_ai_request_model=~"$model"'
CALLS = "gen_ai_client_operation_duration_seconds"
TOKENS = "llm_otel_tokens_total"
COST = "llm_otel_cost_USD_total"
IN_OUT = 'gen_ai_token_type=~"input|output"'  # input includes cache, output includes reasoning: no double count
INPUT = 'gen_ai_token_type="input"'
OUTPUT = 'gen_ai_token_type="output"'
RI = "$__rate_interval"
BY_MODEL = "gen_ai_provider_name, gen_ai_request_model"


def sel(*extra: str, base: str = FILTER) -> str:
    return "{" + ", ".join([base, *extra]) + "}"


def quantile(q: float, metric: str, by: str = "le", base: str = FILTER) -> str:
    return f"histogram_quantile({q}, sum by ({by}) (rate({metric}_bucket{sel(base=base)}[{RI}])))"


def target(expr: str, legend: str = "__auto", ref: str = "A", instant: bool = False, table: bool = False) -> dict:
    t: dict[str, Any] = {"datasource": PROM, "refId": ref, "expr": expr, "legendFormat": legend}
    t.update({"instant": True, "range": False} if instant else {"instant": False, "range": True})
    if table:
        t["format"] = "table"
    return t


def p50_p95(metric: str, by: str = "le", legend: str = "") -> list[dict]:
    return [
        target(quantile(0.5, metric, by), f"p50{legend}", "A"),
        target(quantile(0.95, metric, by), f"p95{legend}", "B"),
    ]


def field_config(unit: str, **extra: Any) -> dict:
    defaults: dict[str, Any] = {"unit": unit, "min": 0}
    defaults.update(extra)
    return {"defaults": defaults, "overrides": []}


def timeseries(title: str, description: str, targets: list[dict], unit: str, stack: bool = False) -> dict:
    custom = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never", "spanNulls": True}
    if stack:
        custom.update({"stacking": {"mode": "normal", "group": "A"}, "fillOpacity": 40})
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": PROM,
        "targets": targets,
        "fieldConfig": field_config(unit, custom=custom),
        "options": {
            "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max", "lastNotNull"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def stat(title: str, description: str, expr: str, unit: str, thresholds: list[tuple[float | None, str]] | None = None):
    steps = [{"color": c, "value": v} for v, c in (thresholds or [(None, "blue")])]
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": PROM,
        "targets": [target(expr, "", instant=True)],
        "fieldConfig": field_config(unit, noValue="0", thresholds={"mode": "absolute", "steps": steps}),
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "none",
            "textMode": "value",
        },
    }


def bargauge(title: str, description: str, expr: str, legend: str, unit: str, **field: Any) -> dict:
    return {
        "type": "bargauge",
        "title": title,
        "description": description,
        "datasource": PROM,
        "targets": [target(expr, legend, instant=True)],
        "fieldConfig": field_config(unit, **field),
        "options": {
            "displayMode": "gradient",
            "orientation": "horizontal",
            "showUnfilled": True,
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        },
    }


def table(title: str, description: str, targets: list[dict], rename: dict[str, str], unit: str = "short") -> dict:
    return {
        "type": "table",
        "title": title,
        "description": description,
        "datasource": PROM,
        "targets": targets,
        "fieldConfig": field_config(unit),
        "options": {"showHeader": True, "cellHeight": "sm"},
        "transformations": [
            {"id": "merge", "options": {}},
            {"id": "organize", "options": {"excludeByName": {"Time": True}, "renameByName": rename}},
        ],
    }


def row(title: str) -> dict:
    return {"type": "row", "title": title, "collapsed": False, "panels": []}


def query_variable(name: str, label: str, query: str, all_value: str, description: str) -> dict:
    return {
        "name": name,
        "label": label,
        "description": description,
        "type": "query",
        "datasource": PROM,
        "query": {"query": query, "refId": f"{name}-variable"},
        "definition": query,
        "refresh": 2,  # on time range change
        "sort": 1,
        "multi": True,
        "includeAll": True,
        "allValue": all_value,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "hide": 0,
    }


def variables() -> list[dict]:
    return [
        query_variable("service", "Service", f"label_values({CALLS}_count, service_name)", ".+",
                       "OpenTelemetry service.name of the instrumented application."),
        query_variable("provider", "Provider",
                       f"label_values({CALLS}_count{{{SERVICE}}}, gen_ai_provider_name)", ".*",
                       "gen_ai.provider.name: openai, azure.ai.openai, ..."),
        query_variable("model", "Model",
                       f'label_values({CALLS}_count{{{SERVICE}, gen_ai_provider_name=~"$provider"}}, '
                       "gen_ai_request_model)", ".*", "gen_ai.request.model: the model the application asked for."),
    ]  # fmt: skip


def layout(items: list[tuple[dict, int, int]]) -> list[dict]:
    """Place (panel, width, height) items left to right, wrapping at 24 columns; rows take a full line."""
    panels, x, y, line_h = [], 0, 0, 0
    for pid, (panel, w, h) in enumerate(items, start=1):
        if panel["type"] == "row" or x + w > 24:
            x, y, line_h = 0, y + line_h, 0
        if panel["type"] == "row":
            w, h = 24, 1
        panels.append({"id": pid, "gridPos": {"x": x, "y": y, "w": w, "h": h}, **panel})
        x, line_h = x + w, max(line_h, h)
        if panel["type"] == "row":
            x, y, line_h = 0, y + 1, 0
    return panels


def dashboard(uid: str, title: str, description: str, items: list[tuple[dict, int, int]], **extra: Any) -> dict:
    templating = extra.pop("variables", variables())
    annotations = [
        {"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True, "hide": True,
         "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard"},
        *extra.pop("annotations", []),
    ]  # fmt: skip
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": [TAG],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "timezone": "browser",
        "links": [
            {
                "type": "dashboards",
                "tags": [TAG],
                "title": "LLM dashboards",
                "asDropdown": False,
                "includeVars": True,
                "keepTime": True,
                "targetBlank": False,
                "icon": "external link",
            }
        ],
        "annotations": {"list": annotations},
        "templating": {"list": templating},
        "panels": layout(items),
    }


# ---------------------------------------------------------------------------------------------------------
def overview() -> dict:
    err = 'error_type!=""'
    items = [
        (stat("Requests / s", "Calls per second (a call includes its retries).",
              f"sum(rate({CALLS}_count{sel()}[{RI}]))", "reqps"), 4, 4),
        (stat("Error ratio", "Share of calls that failed after the SDK's own retries.",
              f"sum(rate({CALLS}_count{sel(err)}[{RI}])) / sum(rate({CALLS}_count{sel()}[{RI}]))", "percentunit",
              [(None, "green"), (0.01, "orange"), (0.05, "red")]), 4, 4),
        (stat("Tokens / s", "Input + output tokens per second (input includes cache, output includes reasoning).",
              f"sum(rate({TOKENS}{sel(IN_OUT)}[{RI}]))", "suffix: tok/s"), 4, 4),
        (stat("Cost, last hour", "USD spent in the last hour.", f"sum(increase({COST}{sel()}[1h]))",
              "currencyUSD"), 4, 4),
        (stat("Cost, last 24 h", "USD spent in the last 24 hours.", f"sum(increase({COST}{sel()}[1d]))",
              "currencyUSD"), 4, 4),
        (stat("Cost, last 30 days", "USD spent in the last 30 days (needs 30 days of retention).",
              f"sum(increase({COST}{sel()}[30d]))", "currencyUSD"), 4, 4),
        (row("Traffic and errors"), 24, 1),
        (timeseries("Requests / s by model", "Which models are called, and how often.",
                    [target(f"sum by (gen_ai_provider_name, gen_ai_request_model) (rate({CALLS}_count{sel()}[{RI}]))",
                            "{{gen_ai_provider_name}} / {{gen_ai_request_model}}")], "reqps", stack=True), 8, 8),
        (timeseries("Errors / s by type", "What fails: error.type per model (calls that failed after retries).",
                    [target(f"sum by (error_type, gen_ai_request_model) (rate({CALLS}_count{sel(err)}[{RI}]))",
                            "{{error_type}} ({{gen_ai_request_model}})")], "reqps"), 8, 8),
        (timeseries("Call duration", "p50 / p95 of the whole call, retries and throttle waits included.",
                    p50_p95(CALLS), "s"), 8, 8),
        (row("Tokens"), 24, 1),
        (timeseries("Tokens / s by type", "input and output, and the cache read / cache write / reasoning subsets.",
                    [target(f"sum by (gen_ai_token_type) (rate({TOKENS}{sel()}[{RI}]))", "{{gen_ai_token_type}}")],
                    "suffix: tok/s"), 8, 8),
        (timeseries("Tokens / s by model", "Input + output tokens per second, per model.",
                    [target(f"sum by (gen_ai_request_model) (rate({TOKENS}{sel(IN_OUT)}[{RI}]))",
                            "{{gen_ai_request_model}}")], "suffix: tok/s", stack=True), 8, 8),
        (timeseries("Tokens per call", "p50 / p95 tokens per call, by type (gen_ai.client.token.usage).",
                    p50_p95("gen_ai_client_token_usage", "le, gen_ai_token_type", " {{gen_ai_token_type}}"),
                    "short"), 8, 8),
        (row("Cost"), 24, 1),
        (timeseries("Cost per hour by model", "USD spent in the preceding hour, at each point in time.",
                    [target(f"sum by (gen_ai_provider_name, gen_ai_request_model) (increase({COST}{sel()}[1h]))",
                            "{{gen_ai_provider_name}} / {{gen_ai_request_model}}")], "currencyUSD", stack=True), 12, 8),
        (timeseries("Cost per day", "USD spent in the preceding 24 hours, and the month projected from the last hour.",
                    [target(f"sum(increase({COST}{sel()}[1d]))", "last 24 h", "A"),
                     target(f"sum(rate({COST}{sel()}[1h])) * 86400", "last hour's rate x 24 h", "B")],
                    "currencyUSD"), 6, 8),
        (stat("Projected month", "30 days at the last hour's spend rate.",
              f"sum(rate({COST}{sel()}[1h])) * 86400 * 30", "currencyUSD"), 3, 8),
        (stat("Unpriced calls, last 24 h", "Calls with usage but no known price: their cost is missing above.",
              f"sum(increase(llm_otel_unpriced_requests_total{sel()}[1d]))", "short",
              [(None, "green"), (1, "orange")]), 3, 8),
        (row("Latency and streaming"), 24, 1),
        (timeseries("Time to first chunk", "Streams: call start (retries included) to the first output chunk.",
                    p50_p95("gen_ai_client_operation_time_to_first_chunk_seconds"), "s"), 6, 8),
        (timeseries("Time per output chunk", "Streams: gap between consecutive output chunks.",
                    p50_p95("gen_ai_client_operation_time_per_output_chunk_seconds"), "s"), 6, 8),
        (timeseries("Output tokens / s per call", "Generation speed: output tokens over the generation window.",
                    p50_p95("llm_otel_tokens_per_second"), "suffix: tok/s"), 6, 8),
        (timeseries("Burst tokens / s", "Streams: peak output rate over any 250 ms window of chunk arrivals.",
                    p50_p95("llm_otel_burst_tokens_per_second"), "suffix: tok/s"), 6, 8),
        (row("Rate limits"), 24, 1),
        (timeseries("Throttle wait", "Seconds per second spent in the SDK's sleeps after 429s, and p95 per call.",
                    [target(f"sum(rate(llm_otel_throttle_wait_seconds_sum{sel()}[{RI}]))", "wait s / s", "A"),
                     target(quantile(0.95, "llm_otel_throttle_wait_seconds"), "p95 per call", "B")], "s"), 6, 8),
        (timeseries("Retries / s by reason", "SDK retries: rate_limit (429), server (5xx), connection.",
                    [target(f"sum by (llm_otel_retry_reason) (rate(llm_otel_retries_total{sel()}[{RI}]))",
                            "{{llm_otel_retry_reason}}")], "short"), 6, 8),
        (timeseries("Requests left (rate limit)", "Last remaining-requests rate-limit header seen, lowest per model.",
                    [target(f"min by (gen_ai_request_model) (llm_otel_ratelimit_remaining_requests{sel()})",
                            "{{gen_ai_request_model}}")], "short"), 6, 8),
        (timeseries("Tokens left (rate limit)", "Last remaining-tokens rate-limit header seen, lowest per model.",
                    [target(f"min by (gen_ai_request_model) (llm_otel_ratelimit_remaining_tokens{sel()})",
                            "{{gen_ai_request_model}}")], "short"), 6, 8),
        (row("Traces"), 24, 1),
        ({"type": "table", "title": "Recent LLM calls (traces)", "datasource": TEMPO,
          "description": "Spans from Tempo; open one to see its logs in Loki (trace-to-logs).",
          "targets": [{"datasource": TEMPO, "refId": "A", "queryType": "traceql", "limit": 20, "tableType": "traces",
                       "query": '{resource.service.name=~"$service" && span.gen_ai.provider.name=~"$provider" '
                                '&& span.gen_ai.request.model=~"$model"}'}],
          "fieldConfig": {"defaults": {}, "overrides": []}, "options": {"showHeader": True}}, 24, 8),
    ]  # fmt: skip
    return dashboard(
        "llm-otel-overview",
        "LLM / Overview",
        "Is it up, is it fast, what does it cost: traffic, errors, tokens, cost, streaming latency, rate limits.",
        items,
    )


def cost() -> dict:
    attr = "$attribute"
    has_attr = f'{attr}!=""'
    items = [
        (stat("Cost in range", "USD spent in the selected time range.", f"sum(increase({COST}{sel()}[$__range]))",
              "currencyUSD"), 6, 4),
        (stat("Projected month", "30 days at the last hour's spend rate.",
              f"sum(rate({COST}{sel()}[1h])) * 86400 * 30", "currencyUSD"), 6, 4),
        (stat("Average cost per call", "USD per priced call in the selected range.",
              f"sum(increase({COST}{sel()}[$__range]))"
              f" / sum(increase(llm_otel_request_cost_USD_count{sel()}[$__range]))",
              "currencyUSD"), 6, 4),
        (stat("Unpriced calls in range", "Calls whose cost is unknown (no price for the model): not counted here.",
              f"sum(increase(llm_otel_unpriced_requests_total{sel()}[$__range]))", "short",
              [(None, "green"), (1, "orange")]), 6, 4),
        (row("Where the money goes"), 24, 1),
        (timeseries("Cost per hour by provider", "USD spent in the preceding hour, per provider.",
                    [target(f"sum by (gen_ai_provider_name) (increase({COST}{sel()}[1h]))",
                            "{{gen_ai_provider_name}}")], "currencyUSD", stack=True), 12, 8),
        (timeseries("Cost per hour by service", "USD spent in the preceding hour, per service.name.",
                    [target(f"sum by (service_name) (increase({COST}{sel()}[1h]))", "{{service_name}}")],
                    "currencyUSD", stack=True), 12, 8),
        (bargauge("Cost by model in range", "Which models cost the most in the selected range.",
                  f"sort_desc(sum by (gen_ai_provider_name, gen_ai_request_model) (increase({COST}{sel()}[$__range])))",
                  "{{gen_ai_provider_name}} / {{gen_ai_request_model}}", "currencyUSD"), 8, 8),
        (bargauge("Cost by service in range", "Which applications spend the most.",
                  f"sort_desc(sum by (service_name) (increase({COST}{sel()}[$__range])))", "{{service_name}}",
                  "currencyUSD"), 8, 8),
        (bargauge("Cost by $attribute in range",
                  "Spend per value of an allow-listed context attribute (instrument(metric_attributes=[...]), "
                  "LLM_OTEL_METRIC_ATTRIBUTES), e.g. tenant.",
                  f"sort_desc(sum by ({attr}) (increase({COST}{sel(has_attr)}[$__range])))",
                  f"{{{{{attr}}}}}", "currencyUSD"), 8, 8),
        (timeseries("Cost per hour by $attribute", "USD spent in the preceding hour, per attribute value.",
                    [target(f"sum by ({attr}) (increase({COST}{sel(has_attr)}[1h]))",
                            f"{{{{{attr}}}}}")], "currencyUSD", stack=True), 12, 8),
        (timeseries("Cost per call by model", "p50 / p95 USD per call (llm_otel.request.cost).",
                    p50_p95("llm_otel_request_cost_USD", "le, gen_ai_request_model", " {{gen_ai_request_model}}"),
                    "currencyUSD"), 12, 8),
        (row("Details"), 24, 1),
        (table("Models in range", "Calls, tokens and cost per model over the selected range.",
               [target(f"sum by ({BY_MODEL}) (increase({CALLS}_count{sel()}[$__range]))",
                       "", "A", instant=True, table=True),
                target(f"sum by ({BY_MODEL}) (increase({TOKENS}{sel(INPUT)}[$__range]))",
                       "", "B", instant=True, table=True),
                target(f"sum by ({BY_MODEL}) (increase({TOKENS}{sel(OUTPUT)}[$__range]))",
                       "", "C", instant=True, table=True),
                target(f"sum by (gen_ai_provider_name, gen_ai_request_model) (increase({COST}{sel()}[$__range]))",
                       "", "D", instant=True, table=True)],
               {"gen_ai_provider_name": "Provider", "gen_ai_request_model": "Model", "Value #A": "Calls",
                "Value #B": "Input tokens", "Value #C": "Output tokens", "Value #D": "Cost (USD)"}), 16, 8),
        (table("Unpriced models in range", "Add a price override for these (docs/configuration.md).",
               [target("sum by (service_name, gen_ai_provider_name, gen_ai_request_model) "
                       f"(increase(llm_otel_unpriced_requests_total{sel()}[$__range])) > 0",
                       "", "A", instant=True, table=True)],
               {"service_name": "Service", "gen_ai_provider_name": "Provider", "gen_ai_request_model": "Model",
                "Value": "Unpriced calls"}), 8, 8),
    ]  # fmt: skip
    attribute = {
        "name": "attribute",
        "label": "Group by attribute",
        "description": "Label of an allow-listed llm_otel.context key: llm_otel_<key>. Add yours to the list.",
        "type": "custom",
        "query": "llm_otel_tenant",
        "current": {"selected": True, "text": "llm_otel_tenant", "value": "llm_otel_tenant"},
        "options": [{"selected": True, "text": "llm_otel_tenant", "value": "llm_otel_tenant"}],
        "multi": False,
        "includeAll": False,
        "hide": 0,
    }
    return dashboard(
        "llm-otel-cost",
        "LLM / Cost",
        "Who and what spends: cost by provider, model, service and allow-listed attributes such as tenant.",
        items,
        variables=[*variables(), attribute],
    )


def alerts_in(counter: str, window: str) -> str:
    """Increments of a counter of rare events in the window, first ones included. ``increase()`` needs two
    samples, so it never counts a series' first sample: an alert counter appears at 1 (the SDK exports a
    series once it has been added to) and ``increase()`` alone shows 0 for every threshold's first alert.
    Series that did not exist ``window`` ago therefore count with their whole value."""
    return f"(({counter} unless {counter} offset {window}) or increase({counter}[{window}]))"


def budgets() -> dict:
    util = "llm_otel_budget_utilization_ratio"
    svc = "{" + SERVICE + "}"
    alerts = "llm_otel_budget_alerts_total" + svc
    budget_events = '{service_name=~"$service"} | llm_otel_budget_name != ""'
    thresholds = {"mode": "absolute", "steps": [{"color": "green", "value": None}, {"color": "orange", "value": 0.8},
                                                {"color": "red", "value": 1}]}  # fmt: skip
    items = [
        (bargauge("Budget utilization", "Used / limit in the current window, per budget and group (1 = 100%).",
                  f"max by (llm_otel_budget_name, llm_otel_budget_group) ({util}{svc})",
                  "{{llm_otel_budget_name}} {{llm_otel_budget_group}}", "percentunit", max=1.2,
                  thresholds=thresholds), 12, 9),
        (timeseries("Budget utilization over time", "How fast each budget fills up within its window.",
                    [target(f"max by (llm_otel_budget_name, llm_otel_budget_group) ({util}{svc})",
                            "{{llm_otel_budget_name}} {{llm_otel_budget_group}}")], "percentunit"), 12, 9),
        (timeseries("Budget alerts by level", "Threshold crossings (info / warning / critical) per budget, per hour.",
                    [target(f"sum by (llm_otel_budget_name, llm_otel_budget_level) {alerts_in(alerts, '1h')}",
                            "{{llm_otel_budget_name}} {{llm_otel_budget_level}}")], "short"), 12, 8),
        ({"type": "logs", "title": "Budget alert events", "datasource": LOKI,
          "description": "The budget processor's alert log records (OTLP logs via the collector into Loki).",
          "targets": [{"datasource": LOKI, "refId": "A", "expr": budget_events, "queryType": "range"}],
          "options": {"showTime": True, "wrapLogMessage": True, "sortOrder": "Descending",
                      "enableLogDetails": True}}, 12, 8),
        (row("What fills the budgets"), 24, 1),
        (timeseries("Cost per hour by model", "USD spent in the preceding hour, per model: what drives USD budgets.",
                    [target(f"sum by (gen_ai_request_model) (increase({COST}{sel()}[1h]))",
                            "{{gen_ai_request_model}}")], "currencyUSD", stack=True), 12, 8),
        (timeseries("Tokens per hour by model",
                    "Input + output tokens in the preceding hour: what drives token budgets.",
                    [target(f"sum by (gen_ai_request_model) (increase({TOKENS}{sel(IN_OUT)}[1h]))",
                            "{{gen_ai_request_model}}")], "short", stack=True), 12, 8),
    ]  # fmt: skip
    annotations = [
        {"name": "Budget alert events (Loki)", "datasource": LOKI, "enable": True, "iconColor": "red",
         "expr": budget_events, "target": {"refId": "Anno", "expr": budget_events},
         "titleFormat": "Budget alert", "tagKeys": "llm_otel_budget_name,llm_otel_budget_level"},
        {"name": "Budget alerts (Prometheus)", "datasource": PROM, "enable": True, "iconColor": "orange",
         "expr": f"sum by (llm_otel_budget_name, llm_otel_budget_level) {alerts_in(alerts, '$__interval')} > 0",
         "step": "1m", "titleFormat": "Budget {{llm_otel_budget_name}}: {{llm_otel_budget_level}}",
         "tagKeys": "llm_otel_budget_name,llm_otel_budget_level", "useValueForTime": False},
    ]  # fmt: skip
    return dashboard(
        "llm-otel-budgets",
        "LLM / Budgets",
        "Are we within budget: utilization per budget and group, threshold alerts, and what fills them.",
        items,
        annotations=annotations,
    )


DASHBOARDS = {
    "llm-otel-overview.json": overview,
    "llm-otel-cost.json": cost,
    "llm-otel-budgets.json": budgets,
}


def render() -> dict[str, str]:
    return {name: json.dumps(build(), indent=2, sort_keys=False) + "\n" for name, build in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed files, write nothing")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = args.out / name
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print("out of date (run python grafana/generate.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
