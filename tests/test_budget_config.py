"""Budget configuration: every bad value gets its own clear message naming the budget and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import llm_otel
from llm_otel.config import ConfigError, load_settings

OK = {"name": "daily", "limit": 10, "period": "daily"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"limit": -1}, r"budgets\[daily\]\.limit: Input should be greater than 0 \(got -1\)"),
        ({"limit": "lots"}, r"budgets\[daily\]\.limit: Input should be a valid number.*'lots'"),
        ({"unit": "EUR"}, r"budgets\[daily\]\.unit: Input should be 'USD' or 'tokens' \(got 'EUR'\)"),
        ({"period": "fortnightly"}, r"budgets\[daily\]\.period: must be daily, weekly, monthly or a rolling duration"),
        ({"period": "30s"}, r"budgets\[daily\]\.period: a rolling window must be at least 1m \(got 30 s\)"),
        ({"timezone": "Mars/Olympus"}, r"budgets\[daily\]\.timezone: unknown time zone; use an IANA name"),
        ({"thresholds": [0.5, 80]}, r"budgets\[daily\]\.thresholds: 80(\.0)? is not a fraction of the limit"),
        ({"thresholds": []}, r"budgets\[daily\]\.thresholds: must list at least one threshold"),
        ({"thresholds": [0.5, 0.5]}, r"budgets\[daily\]\.thresholds: must not repeat a threshold"),
        ({"levels": {"urgent": 0.5}}, r"budgets\[daily\]\.levels: 'urgent' is not a level"),
        ({"levels": {"warning": 0.9, "critical": 0.7}}, r"budgets\[daily\]\.levels: floors must rise"),
        ({"token_types": ["input"]}, r"budgets\[daily\]\.token_types: only applies to unit: tokens"),
        ({"unit": "tokens", "token_types": ["cached"]}, r"budgets\[daily\]\.token_types: 'cached' is not a token type"),
        ({"scope": {"bad key": "x"}}, r"budgets\[daily\]\.scope: 'bad key' is not a valid key"),
        ({"scope": {"model": []}}, r"budgets\[daily\]\.scope: model: must be a non-empty string or a list"),
        ({"group_by": ["tenant", "tenant"]}, r"budgets\[daily\]\.group_by: must not repeat a key"),
        ({"action": "deny"}, r"budgets\[daily\]\.action: Input should be 'alert' or 'block' \(got 'deny'\)"),
        ({"forecast_after": 1.5}, r"budgets\[daily\]\.forecast_after: Input should be less than 1"),
        ({"limt": 5}, r"budgets\[daily\]\.limt: Extra inputs are not permitted"),
        ({"name": "has space"}, r"budgets\[has space\]\.name: must be 1-64 letters"),
    ],
)
def test_each_bad_budget_field_has_its_own_message(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings({"budgets": [{**OK, **changes}]}, env={})


def test_missing_fields_and_duplicate_names() -> None:
    with pytest.raises(ConfigError, match=r"budgets\[0\]\.name: Field required"):
        load_settings({"budgets": [{"limit": 1, "period": "daily"}]}, env={})
    with pytest.raises(ConfigError, match=r"budgets\[daily\]\.period: Field required"):
        load_settings({"budgets": [{"name": "daily", "limit": 1}]}, env={})
    with pytest.raises(ConfigError, match=r"budgets: two budgets are named 'daily'; names must be unique"):
        load_settings({"budgets": [OK, OK]}, env={})


def test_several_errors_are_all_reported_on_one_line() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"budgets": [OK, {**OK, "name": "b", "limit": 0, "period": "hourly"}]}, env={})
    text = str(info.value)
    assert "\n" not in text
    assert "budgets[b].limit:" in text and "budgets[b].period:" in text and "budgets[daily]" not in text


def test_errors_from_a_config_file_name_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "llm-otel.yaml"
    cfg.write_text("budgets:\n  - name: monthly-openai\n    limit: ${LIMIT}\n    period: monthly\n")
    with pytest.raises(ConfigError, match=r"llm-otel\.yaml.*budgets\[monthly-openai\]\.limit: .*valid number.*'ten'"):
        load_settings(config_file=cfg, env={"LIMIT": "ten"})
    assert load_settings(config_file=cfg, env={"LIMIT": "12.5"}).budgets[0].limit == 12.5


def test_budget_objects_validate_on_construction_and_instrument_rejects_bad_ones() -> None:
    with pytest.raises(ConfigError, match=r"budgets\[x\]\.limit: Input should be greater than 0"):
        llm_otel.Budget(name="x", limit=0, period="daily")
    import openai._base_client as base

    original = base.SyncAPIClient.__dict__["request"]
    with pytest.raises(ConfigError, match=r"budgets\[bad\]\.period"):
        llm_otel.instrument(budgets=[{"name": "bad", "limit": 1, "period": "often"}], ledger=False)
    assert base.SyncAPIClient.__dict__["request"] is original  # nothing patched


def test_defaults_and_normalization() -> None:
    b = llm_otel.Budget(name="t", limit=5, unit="tokens", period="1h30m", scope={"model": "gpt-4o*"},
                        group_by="tenant", thresholds=[1.0, 0.5])  # fmt: skip
    assert b.token_types == ("input", "output")
    assert b.thresholds == (0.5, 1.0)
    assert b.rolling_s == 5400 and b.bucket_s == 90
    assert b.scope == {"model": ("gpt-4o*",)} and b.group_by == ("tenant",)
    assert [b.level_of(t) for t in (0.5, 0.7, 0.89, 0.9, 1.0)] == ["info", "warning", "warning", "critical", "critical"]
    assert b.action == "alert" and b.timezone == "UTC"
    assert llm_otel.Budget(name="u", limit=1, period="daily").token_types is None


def test_budget_state_from_the_environment() -> None:
    assert load_settings(env={"LLM_OTEL_BUDGET_STATE": "/tmp/x.db"}).budget_state == "/tmp/x.db"
    assert load_settings(env={"LLM_OTEL_BUDGET_STATE": "off"}).budget_state is False
    assert load_settings(env={}).budget_state is True
