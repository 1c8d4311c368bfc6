"""Budgets as Prometheus rules: expressions over the cost/token counters, labels, validation (promtool: e2e)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from llm_otel.budget import prometheus
from llm_otel.config import ConfigError, load_settings


def _settings(*budgets: dict[str, Any], metric_attributes: list[str] | None = None) -> Any:
    return load_settings({"budgets": list(budgets), "metric_attributes": metric_attributes or []}, env={})


def _rules(settings: Any) -> list[dict[str, Any]]:
    return yaml.safe_load(prometheus.render_rules(settings))["groups"][0]["rules"]


def test_recording_rule_per_budget_over_the_cost_and_token_counters() -> None:
    s = _settings(
        {"name": "usd-daily", "limit": 25, "period": "daily",
         "scope": {"provider": "openai", "model": ["gpt-4o*", "o3"]}},
        {"name": "tokens-weekly", "limit": 1e6, "unit": "tokens", "period": "weekly", "group_by": ["tenant", "model"]},
        {"name": "reasoning", "limit": 5e5, "unit": "tokens", "token_types": ["reasoning"], "period": "monthly",
         "scope": {"service": "search", "operation": "chat", "job": "nightly"}},
        {"name": "rolling", "limit": 3, "period": "1h30m"},
        metric_attributes=["tenant", "job"],
    )  # fmt: skip
    records = {r["labels"]["budget"]: r["expr"] for r in _rules(s) if "record" in r}
    assert records == {
        "usd-daily": 'sum (increase(llm_otel_cost_USD_total{gen_ai_provider_name="openai", '
        'gen_ai_request_model=~"gpt-4o.*|o3"}[1d])) / 25.0',
        "tokens-weekly": "sum by (llm_otel_tenant, gen_ai_request_model) "
        '(increase(llm_otel_tokens_total{gen_ai_token_type=~"input|output"}[7d])) / 1000000.0',
        "reasoning": 'sum (increase(llm_otel_tokens_total{gen_ai_token_type="reasoning", service_name="search", '
        'gen_ai_operation_name="chat", llm_otel_job="nightly"}[30d])) / 500000.0',
        "rolling": "sum (increase(llm_otel_cost_USD_total[1h30m])) / 3.0",
    }
    assert all(r["record"] == prometheus.RECORD for r in _rules(s) if "record" in r)


def test_one_alert_per_threshold_band_with_routing_labels() -> None:
    s = _settings({"name": "team.search-1", "limit": 10, "period": "daily", "thresholds": [0.5, 0.9, 1.2],
                   "levels": {"warning": 0.9, "critical": 1.2}})  # fmt: skip
    alerts = [r for r in _rules(s) if "alert" in r]
    assert [a["alert"] for a in alerts] == ["LLMBudget_team_search_1"] * 3
    assert [a["expr"] for a in alerts] == [
        'llm_otel:budget_utilization:ratio{budget="team.search-1"} >= 0.5 < 0.9',
        'llm_otel:budget_utilization:ratio{budget="team.search-1"} >= 0.9 < 1.2',
        'llm_otel:budget_utilization:ratio{budget="team.search-1"} >= 1.2',
    ]
    assert [a["labels"] for a in alerts][1] == {"severity": "warning", "budget": "team.search-1", "threshold": "0.9",
                                                "unit": "USD", "period": "daily"}  # fmt: skip
    assert "calendar daily window (UTC)" in alerts[0]["annotations"]["description"]


def test_label_values_with_regex_characters_are_escaped() -> None:
    s = _settings({"name": "azure", "limit": 1, "period": "daily",
                   "scope": {"provider": ["azure.ai.openai", "openai"], "model": 'we"ird\\name'}})  # fmt: skip
    [record] = [r for r in _rules(s) if "record" in r]
    assert 'gen_ai_provider_name=~"azure\\\\.ai\\\\.openai|openai"' in record["expr"]
    assert 'gen_ai_request_model="we\\"ird\\\\name"' in record["expr"]


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        (
            {"group_by": "tenant"},
            r"budgets\[b\]\.group_by: 'tenant' is an llm_otel.context key that is not in "
            r"metric_attributes",
        ),
        ({"scope": {"job": "x"}}, r"budgets\[b\]\.scope: 'job' is an llm_otel.context key that is not in "),
    ],
)
def test_context_keys_must_be_on_the_metrics(budget: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        prometheus.render_rules(_settings({"name": "b", "limit": 1, "period": "daily", **budget}))


def test_alert_names_must_not_collide() -> None:
    s = _settings({"name": "a-b", "limit": 1, "period": "daily"}, {"name": "a.b", "limit": 1, "period": "daily"})
    with pytest.raises(ConfigError, match=r"budgets\[a\.b\]\.name: gives the same Prometheus alert name LLMBudget_a_b"):
        prometheus.render_rules(s)


def test_generated_tests_step_through_every_band_with_negative_controls() -> None:
    s = _settings({"name": "t", "limit": 200, "unit": "tokens", "period": "1h", "group_by": "tenant",
                   "scope": {"provider": "openai"}}, metric_attributes=["tenant"])  # fmt: skip
    data = yaml.safe_load(prometheus.render_tests(s))
    [case] = data["tests"]
    series = [i["series"] for i in case["input_series"]]
    labels = 'gen_ai_token_type="%s", gen_ai_provider_name="%s", llm_otel_tenant="g1"'
    assert series == [
        "llm_otel_tokens_total{%s}" % (labels % ("input", "openai")),
        "llm_otel_tokens_total{%s}" % (labels % ("input", "zz-out-of-scope")),  # out of scope: must not count
        "llm_otel_tokens_total{%s}" % (labels % ("cache_read", "openai")),  # not a counted token type
    ]
    checks = case["alert_rule_test"]
    assert [c["exp_alerts"][0]["exp_labels"]["threshold"] if c["exp_alerts"] else None for c in checks] == [
        None, "0.5", "0.5", "0.7", "0.7", "0.8", "0.8", "1.0", "1.0"]  # fmt: skip
    summaries = [c["exp_alerts"][0]["exp_annotations"]["summary"] for c in checks[1:3]]
    assert summaries == ["LLM budget t for tenant=g1 is at 0.501 of 200 tokens (1h), threshold 0.5",
                         "LLM budget t for tenant=g1 is at 0.699 of 200 tokens (1h), threshold 0.5"]  # fmt: skip
    assert data["evaluation_interval"] == case["interval"] == "3m"  # 10 samples x 3m stay inside the 1h window


def test_cli_rules_writes_the_rules_and_their_tests(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("budgets:\n  - {name: d, limit: 2, period: daily}\n")
    done = subprocess.run([sys.executable, "-m", "llm_otel.cli", "rules", "--config", str(cfg), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / prometheus.RULES_FILE).read_text().startswith("# Generated by `llm-otel rules`")
    assert yaml.safe_load((tmp_path / "out" / prometheus.TESTS_FILE).read_text())["rule_files"] == [
        prometheus.RULES_FILE]  # fmt: skip
    to_stdout = subprocess.run([sys.executable, "-m", "llm_otel.cli", "rules", "--config", str(cfg)],
                               capture_output=True, text=True, timeout=60)  # fmt: skip
    assert to_stdout.stdout == (tmp_path / "out" / prometheus.RULES_FILE).read_text()
