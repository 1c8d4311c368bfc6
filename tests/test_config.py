"""Configuration: precedence, YAML with ${VAR} substitution, and clear errors naming what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

import llm_otel
from llm_otel.config import ConfigError, load_settings


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


def test_instrument_raises_config_error_and_leaves_nothing_patched() -> None:
    import openai._base_client as base

    original = base.SyncAPIClient.__dict__["request"]
    with pytest.raises(ConfigError):
        llm_otel.instrument(endpoint="not a url")
    assert base.SyncAPIClient.__dict__["request"] is original
