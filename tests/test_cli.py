"""The llm-otel command run for real in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from llm_otel import ledger


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llm_otel.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def test_demo_records_exactly_what_the_provider_served(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    proc = _cli("demo", "--calls", "40", "--concurrency", "4", "--ledger", str(db))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "(match)" in proc.stdout
    assert "openai/gpt-4o-mini" in proc.stdout
    rows = ledger.read_rows(db)
    assert len(rows) == 50  # 40 threaded calls + 5 async OpenAI and 5 async Anthropic ones
    for r in rows:  # the demo's private fine-tune has no public price: unpriced, never zero
        assert (r["cost_usd"] is None) == (r["request_model"] == "acme-private-finetune")
    assert sum(r["input_tokens"] or 0 for r in rows) > 0


def test_bad_flag_value_is_one_clear_line() -> None:
    proc = _cli("demo", "--calls", "zero")
    assert proc.returncode == 2
    assert "expected a whole number, got 'zero'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_doctor_reports_sdks_and_invalid_config(tmp_path: Path) -> None:
    proc = _cli("doctor")
    assert proc.returncode == 0, proc.stderr
    assert "openai" in proc.stdout and "genai-prices" in proc.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("endpoint: nope\n")
    proc = subprocess.run(
        [sys.executable, "-m", "llm_otel.cli", "doctor"],
        capture_output=True, text=True, timeout=60, env={**__import__("os").environ, "LLM_OTEL_CONFIG": str(bad)},
    )  # fmt: skip
    assert proc.returncode == 1
    assert "INVALID" in proc.stdout and "endpoint" in proc.stdout
