"""Configuration: precedence, YAML with ${VAR} substitution, and clear errors naming what is wrong."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import llm_otel
from llm_otel.config import ConfigError, _settings_adapter, load_settings


def test_precedence_kwargs_over_env_over_file(tmp_path: Path) -> None:
    cfg = tmp_path / "llm-otel.yaml"
    cfg.write_text("service_name: from-file\nmetric_attributes: [tenant]\ninject_stream_usage: false\n")
    env = {"LLM_OTEL_CONFIG": str(cfg), "OTEL_SERVICE_NAME": "from-env"}
    s = load_settings({"inject_stream_usage": True}, env=env)
    assert s.service_name == "from-env"
    assert s.metric_attributes == ["tenant"]
    assert s.inject_stream_usage is True


def test_env_substitution_in_yaml(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("endpoint: ${COLLECTOR:-http://127.0.0.1:4318}\nservice_name: ${SVC}\n")
    s = load_settings(config_file=cfg, env={"SVC": "billing"})
    assert s.endpoint == "http://127.0.0.1:4318" and s.service_name == "billing"
    with pytest.raises(ConfigError, match=r"c\.yaml.*SVC is not set"):
        load_settings(config_file=cfg, env={})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"endpoint": "localhost:4318"}, r"endpoint: .*http:// or https:// URL.*'localhost:4318'"),
        ({"prices": {"m": {"input": -1, "output": 1}}}, r"prices\.m\.input: .*greater than or equal to 0"),
        ({"prices": {"m": {"input": 1}}}, r"prices\.m\.output: Field required"),
        ({"metric_attributes": ["ok", "bad key"]}, r"metric_attributes: .*'bad key' is not a valid attribute key"),
        ({"inject_stream_usage": "maybe"}, r"inject_stream_usage: .*'maybe'"),
    ],
)
def test_bad_values_name_the_field(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(overrides, env={})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"service_name": "svc", "endpoint": "localhost:4318"}, r"endpoint: .*http:// or https:// URL"),
        ({"capture_content": "sometimes"}, r"capture_content: expected one of .*'sometimes'"),
        ({"budget_store": "http://cache:6379"}, r"budget_store: "),
        ({"ledger": 3}, r"ledger\.bool: Input should be a valid boolean"),
        ({"exit_timeout": -1}, r"exit_timeout: must be 0 or more seconds"),
    ],
)
def test_plain_values_that_fail_a_check_are_named_as_before(overrides: dict, message: str) -> None:
    # Settings whose values already have their field's type are built without pydantic; a failed check still
    # goes through pydantic's error, which names the field and where it came from.
    with pytest.raises(ConfigError, match=r"instrument\(\) arguments / environment: " + message):
        load_settings(overrides, env={})


def _fields(settings: Any) -> dict[str, Any]:
    return {**dataclasses.asdict(settings), "content_mode": settings.content_mode}


@pytest.mark.parametrize(
    "overrides",
    [
        {"service_name": "billing"},
        {"endpoint": "http://127.0.0.1:4318/", "service_name": "api", "ledger": False},
        {"ledger": "/data/ledger.sqlite3", "capture_content": True, "inject_stream_usage": False},
        {"capture_content": "span_and_event", "latest_semconv": True, "budget_state": False},
        {"capture_content": "no_content", "budget_state": "/data/budgets.sqlite3", "budget_store": " "},
        {"budget_store": "redis://127.0.0.1:6379/0", "ledger": True, "capture_content": False},
        {"detail_histograms": False, "service_name": "api"},
    ],
)
def test_settings_built_without_pydantic_equal_pydantics(overrides: dict[str, Any]) -> None:
    assert _fields(load_settings(overrides, env={})) == _fields(_settings_adapter().validate_python(overrides))


FRESH = """
import sys, llm_otel
llm_otel.instrument(service_name="api", ledger=False, capture_content="span_only")
print(sorted(m for m in sys.modules if m.split(".")[0] == "pydantic")[:3])
"""


def test_the_usual_settings_do_not_load_pydantic() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_OTEL_", "OTEL_"))}
    env |= {"OTEL_SERVICE_NAME": "from-env", "OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental"}
    out = subprocess.run([sys.executable, "-c", FRESH], capture_output=True, text=True, env=env, timeout=120,
                         check=True)  # fmt: skip
    assert out.stdout.strip() == "[]"


def test_unknown_field_in_file_is_named(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("servce_name: typo\n")
    with pytest.raises(ConfigError, match=r"config file .*c\.yaml.*servce_name: Extra inputs are not permitted"):
        load_settings(config_file=cfg, env={})


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.yaml: cannot read it"):
        load_settings(config_file=tmp_path / "missing.yaml", env={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml, line \d+: "):
        load_settings(config_file=bad, env={})


def test_bad_env_boolean_is_named() -> None:
    with pytest.raises(ConfigError, match="LLM_OTEL_INJECT_STREAM_USAGE='sometimes'"):
        load_settings(env={"LLM_OTEL_INJECT_STREAM_USAGE": "sometimes"})
    with pytest.raises(ConfigError, match="LLM_OTEL_DETAIL_HISTOGRAMS='most'"):
        load_settings(env={"LLM_OTEL_DETAIL_HISTOGRAMS": "most"})
    assert load_settings(env={"LLM_OTEL_DETAIL_HISTOGRAMS": "off"}).detail_histograms is False


def test_instrument_raises_config_error_and_leaves_nothing_patched() -> None:
    import openai._base_client as base

    original = base.SyncAPIClient.__dict__["request"]
    with pytest.raises(ConfigError):
        llm_otel.instrument(endpoint="not a url")
    assert base.SyncAPIClient.__dict__["request"] is original
