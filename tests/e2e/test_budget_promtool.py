"""``llm-otel rules`` output checked by the real promtool: ``check rules`` and the generated ``test rules``.

The binaries come from the ``obs_bin`` fixture (tests/e2e/conftest.py): skipped when unavailable, a failure
under CI. A mutated rule file must make the generated tests fail, so they test something.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from llm_otel.budget import prometheus

CONFIG = """\
metric_attributes: [tenant, job]
budgets:
  - name: daily-openai
    limit: 25
    period: daily
    timezone: Europe/Berlin
    scope: {provider: openai, model: ["gpt-4o*", o3-mini]}
  - name: tenant-tokens
    limit: 1000000
    unit: tokens
    period: 1h
    group_by: tenant
    thresholds: [0.5, 0.9, 1.0, 1.5]
    levels: {warning: 0.9, critical: 1.0}
    action: block
  - name: nightly.reasoning
    limit: 200000
    unit: tokens
    token_types: [reasoning]
    period: weekly
    group_by: [tenant, model]
    scope: {job: nightly, service: batch, operation: chat}
  - name: everything
    limit: 3000
    period: monthly
    thresholds: [0.8, 1.0]
"""


def _promtool(obs_bin: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(obs_bin / "promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def _generate(tmp_path: Path) -> Path:
    cfg = tmp_path / "llm-otel.yaml"
    cfg.write_text(CONFIG)
    out = tmp_path / "rules"
    done = subprocess.run([sys.executable, "-m", "llm_otel.cli", "rules", "--config", str(cfg), "--out", str(out)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


def test_generated_rules_pass_promtool_check_and_their_unit_tests(obs_bin: Path, tmp_path: Path) -> None:
    out = _generate(tmp_path)
    check = _promtool(obs_bin, "check", "rules", prometheus.RULES_FILE, cwd=out)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 18 rules found" in check.stdout  # 4 recording rules + 4 + 4 + 4 + 2 alerts
    tested = _promtool(obs_bin, "test", "rules", prometheus.TESTS_FILE, cwd=out)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_the_generated_unit_tests_catch_a_broken_rule(obs_bin: Path, tmp_path: Path) -> None:
    out = _generate(tmp_path)
    rules_path = out / prometheus.RULES_FILE
    original = rules_path.read_text()
    mutations = {
        "scope matcher dropped": ('gen_ai_provider_name="openai", ', ""),
        "token type matcher dropped": ('gen_ai_token_type="reasoning", ', ""),
        "band too wide": (">= 0.9 < 1.0", ">= 0.9 < 1.1"),
        "band too narrow": (">= 0.5 < 0.9", ">= 0.5 < 0.8"),
        "wrong limit": ("/ 25.0", "/ 26.0"),
        "wrong window": ("[1h]", "[1m]"),
        "wrong severity": ("severity: critical", "severity: page"),
    }
    for name, (old, new) in mutations.items():
        assert old in original, name
        rules_path.write_text(original.replace(old, new, 1))
        assert _promtool(obs_bin, "check", "rules", prometheus.RULES_FILE, cwd=out).returncode == 0, name
        tested = _promtool(obs_bin, "test", "rules", prometheus.TESTS_FILE, cwd=out)
        assert tested.returncode != 0, f"{name}: promtool tests still pass\n{tested.stdout}"
    rules_path.write_text(original)
    assert _promtool(obs_bin, "test", "rules", prometheus.TESTS_FILE, cwd=out).returncode == 0


def test_rules_group_is_loadable_as_prometheus_config(tmp_path: Path) -> None:
    out = _generate(tmp_path)
    data = yaml.safe_load((out / prometheus.RULES_FILE).read_text())
    [group] = data["groups"]
    assert group["name"] == "llm-otel-budgets" and "interval" not in group  # uses the global evaluation interval
