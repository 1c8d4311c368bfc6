"""``llm-otel rules`` output checked by the real promtool: ``check rules`` and the generated ``test rules``.

The binaries come from the ``obs_bin`` fixture (tests/e2e/conftest.py): skipped when unavailable, a failure
under CI. A mutated rule file must make the generated tests fail, so they test something. The budget rules
shipped in prometheus/rules/ must be exactly what `llm-otel rules` renders from examples/llm-otel.yaml.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml
from test_stack_config import PROM_DIR, REPO, promtool_test_files, rule_files, rules_in

from llm_otel.budget import prometheus

EXAMPLE_CONFIG = REPO / "examples" / "llm-otel.yaml"
RULES_DIR = PROM_DIR / "rules"

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


# ---- the shipped budget rules: generated from examples/llm-otel.yaml ------------------------------------------
def _render_example(out: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_OTEL_")}  # the file alone decides
    cmd = [sys.executable, "-m", "llm_otel.cli", "rules", "--config", str(EXAMPLE_CONFIG), "--out", str(out)]
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=60)


def test_shipped_budget_rules_are_generated_from_the_example_config(tmp_path: Path) -> None:
    """prometheus/rules/llm-otel-budgets.rules.yml and its promtool tests are exactly what `llm-otel rules`
    renders from examples/llm-otel.yaml, so they cannot go stale. Regenerate with:
    llm-otel rules --config examples/llm-otel.yaml --out prometheus/rules"""
    done = _render_example(tmp_path)
    assert done.returncode == 0, done.stderr
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted([prometheus.RULES_FILE, prometheus.TESTS_FILE]), written
    hint = f"stale: run llm-otel rules --config {EXAMPLE_CONFIG.relative_to(REPO)} --out prometheus/rules"
    for name in written:
        assert (RULES_DIR / name).read_text() == (tmp_path / name).read_text(), f"prometheus/rules/{name} is {hint}"
    # Prometheus loads the rules (rule_files: rules/*.rules.yml) and not the tests; the promtool checks of
    # everything in prometheus/ (test_stack_config.py) therefore cover both files.
    assert RULES_DIR / prometheus.RULES_FILE in rule_files()
    assert RULES_DIR / prometheus.TESTS_FILE in promtool_test_files()
    assert RULES_DIR / prometheus.TESTS_FILE not in rule_files()
    alerts = {r["alert"] for r in rules_in(RULES_DIR / prometheus.RULES_FILE) if "alert" in r}
    assert alerts == {"LLMBudget_monthly_usd", "LLMBudget_tenant_daily_tokens"}


def test_example_config_is_valid_with_the_commented_block_budget(tmp_path: Path) -> None:
    """The example's commented `action: block` budget is valid once uncommented, and renders to rules too."""
    from llm_otel.config import load_settings

    text = EXAMPLE_CONFIG.read_text()
    uncommented = re.sub(r"^  # (- name: |  )", r"  \1", text, flags=re.M)

    def active(t: str) -> int:
        return len(re.findall(r"^  - name: ", t, flags=re.M))

    assert active(uncommented) == active(text) + 1 == 3
    cfg = tmp_path / "llm-otel.yaml"
    cfg.write_text(uncommented)
    settings = load_settings(config_file=cfg)
    assert [b.action for b in settings.budgets] == ["alert", "alert", "block"]
    assert settings.metric_attributes == ["tenant"]
    assert "LLMBudget_gpt_4o_hourly_usd" in prometheus.render_rules(settings)


def test_example_budget_rules_pass_promtool(obs_bin: Path) -> None:
    """The committed example rules and their generated unit tests, with the real promtool."""
    check = _promtool(obs_bin, "check", "rules", prometheus.RULES_FILE, cwd=RULES_DIR)
    assert check.returncode == 0 and "SUCCESS: 9 rules found" in check.stdout, check.stdout + check.stderr
    tested = _promtool(obs_bin, "test", "rules", prometheus.TESTS_FILE, cwd=RULES_DIR)
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr
