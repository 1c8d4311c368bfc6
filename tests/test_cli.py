"""The llm-otel command, run for real in subprocesses: demo, report (table, JSON, CSV), run, doctor, errors."""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from llm_otel.core.result import UsageRecord
from llm_otel.core.usage import Usage
from llm_otel.sinks import ledger


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llm_otel.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})  # fmt: skip


def _one_line_error(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0], lines[0]


# ------------------------------------------------------------------------------------------------------ demo
def test_demo_json_numbers_equal_what_the_provider_served(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    proc = _cli("demo", "--calls", "60", "--concurrency", "4", "--ledger", str(db), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["match"] is True and out["recorded"] == out["provider_reported"]
    assert out["provider_reported"]["input"] > 0
    rows = ledger.read_rows(db)
    assert len(rows) == 70  # 60 threaded calls + 5 async OpenAI and 5 async Anthropic ones
    assert sum(m["calls"] for m in out["models"]) == 70
    assert sum(m["tokens"]["input"] for m in out["models"]) == out["provider_reported"]["input"]
    providers = {m["model"].split("/")[0] for m in out["models"]}
    assert providers == {"openai", "anthropic"}
    # the demo budget is sized to cross every threshold during the run
    assert [a["threshold"] for a in out["alerts"] if a["threshold"] != "projected"] == ["0.5", "0.7", "0.8", "1.0"]
    for r in rows:  # the demo's private fine-tune has no public price: unpriced, never zero
        if r["usage_complete"]:
            assert (r["cost_usd"] is None) == (r["request_model"] == "acme-private-finetune")


def test_demo_table_fits_80_columns(tmp_path: Path) -> None:
    proc = _cli("demo", "--calls", "30", "--ledger", str(tmp_path / "d.db"))
    assert proc.returncode == 0, proc.stderr
    assert "(match)" in proc.stdout and "ALERT" in proc.stdout
    lines = [ln for ln in proc.stdout.splitlines() if not ln.startswith(("ledger ", "llm-otel ", "next: "))]
    assert max(len(line) for line in lines) <= 80


def test_demo_rate_and_duration_are_bounded(tmp_path: Path) -> None:
    proc = _cli("demo", "--forever", "--rate", "20", "--duration", "1.5", "--ledger", str(tmp_path / "f.db"),
                "--format", "json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert 10 <= out["calls"] <= 40  # ~20/s for 1.5 s


def test_demo_bad_input(tmp_path: Path) -> None:
    _one_line_error(_cli("demo", "--calls", "zero"), "expected a whole number, got 'zero'")
    _one_line_error(_cli("demo", "--rate", "-1"), "must be more than 0")
    _one_line_error(_cli("demo", "--forever"), "--forever needs --rate")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _one_line_error(_cli("demo", "--otlp", f"http://127.0.0.1:{port}"), f"cannot connect to 127.0.0.1:{port}")
    _one_line_error(_cli("demo", "--otlp", "localhost:4318"), "expected an http(s):// URL")


# ---------------------------------------------------------------------------------------------------- report
NOW = datetime.now(UTC)


def _write_ledger(path: Path) -> None:
    """Ledger rows through the real writer: three days, two providers, tenants, one unpriced call."""
    book = ledger.Ledger(path)

    def rec(days_ago: float, provider: str, model: str, inp: int, out: int, cost: float | None, **ctx: str) -> None:
        ts = (NOW - timedelta(days=days_ago)).timestamp()
        book.on_usage(UsageRecord(timestamp=ts, provider=provider, operation="chat", request_model=model,
                                  response_model=model, usage=Usage(inp, out, inp // 2, 0, None), usage_complete=True,
                                  cost_usd=cost, duration_s=0.5, attributes=ctx))  # fmt: skip

    rec(0.01, "openai", "gpt-4o", 1000, 100, 0.01, tenant="acme", job="a")
    rec(0.02, "openai", "gpt-4o", 3000, 300, 0.03, tenant="globex", job="a")
    rec(1.5, "anthropic", "claude-3-5-haiku", 2000, 200, 0.002, tenant="acme", job="b")
    rec(10.0, "anthropic", "claude-3-5-haiku", 5000, 500, 0.005, tenant="acme", job="b")
    rec(0.03, "openai", "my-finetune", 700, 70, None, tenant="acme", job="c")
    book.close()


def test_report_json_groups_and_totals(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    _write_ledger(db)
    proc = _cli("report", "--ledger", str(db), "--last", "7d", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["schema"] == 1 and data["group_by"] == ["provider", "model"]
    groups = {(g["key"]["provider"], g["key"]["model"]): g for g in data["groups"]}
    assert groups[("openai", "gpt-4o")]["calls"] == 2
    assert groups[("openai", "gpt-4o")]["tokens"]["input"] == 4000
    assert groups[("openai", "gpt-4o")]["cost_usd"] == pytest.approx(0.04)
    assert groups[("anthropic", "claude-3-5-haiku")]["calls"] == 1  # the 10-day-old call is outside --last 7d
    assert groups[("openai", "my-finetune")]["unpriced_calls"] == 1
    assert data["totals"]["calls"] == 4 and data["totals"]["cost_usd"] == pytest.approx(0.042)
    assert sum(d["calls"] for d in data["daily"]) == 4
    assert data["forecast"]["month"] == datetime.now(UTC).strftime("%Y-%m")


def test_report_csv_by_context_key(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    _write_ledger(db)
    proc = _cli("report", "--ledger", str(db), "--by", "tenant", "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    rows = {r["tenant"]: r for r in csv.DictReader(io.StringIO(proc.stdout))}
    assert set(rows) == {"acme", "globex"}
    assert int(rows["acme"]["calls"]) == 4 and int(rows["acme"]["input_tokens"]) == 8700
    assert float(rows["globex"]["cost_usd"]) == pytest.approx(0.03)


def test_report_date_range_and_table(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    _write_ledger(db)
    day = (NOW - timedelta(days=10)).date().isoformat()
    proc = _cli("report", "--ledger", str(db), "--since", day, "--until", day, "--format", "json")
    data = json.loads(proc.stdout)
    assert data["totals"]["calls"] == 1 and data["totals"]["tokens"]["input"] == 5000
    table = _cli("report", "--ledger", str(db))
    assert table.returncode == 0 and "projected" in table.stdout
    assert max(len(line) for line in table.stdout.splitlines()) <= 80


def test_report_bad_input(tmp_path: Path) -> None:
    _one_line_error(_cli("report", "--ledger", str(tmp_path / "none.db")), "no ledger at")
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not a database" * 100)
    _one_line_error(_cli("report", "--ledger", str(corrupt)), "cannot read ledger")
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE calls (x)")
    conn.commit()
    conn.close()
    _one_line_error(_cli("report", "--ledger", str(other)), "is not an llm-otel ledger")
    db = tmp_path / "l.db"
    _write_ledger(db)
    _one_line_error(_cli("report", "--ledger", str(db), "--since", "yesterday"), "not a date: 'yesterday'")
    _one_line_error(_cli("report", "--ledger", str(db), "--last", "7x"), "not a duration: '7x'")
    _one_line_error(_cli("report", "--ledger", str(db), "--format", "xml"), "invalid choice: 'xml'")
    _one_line_error(_cli("report", "--ledger", str(db), "--by", "bad key"), "cannot group by 'bad key'")


# ------------------------------------------------------------------------------------------------- run, doctor
def test_run_instruments_a_program_without_code_changes(sim: Any, tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent(f"""
        import openai
        client = openai.OpenAI(base_url={sim.openai_base_url!r}, api_key="x")
        for _ in range(3):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}])
        print("app done")
    """))  # fmt: skip
    cfg = tmp_path / "llm-otel.yaml"
    cfg.write_text(f"ledger: {tmp_path / 'run.db'}\nbudget_state: {tmp_path / 'state.db'}\n"
                   "budgets:\n  - {name: tiny, limit: 1.0, unit: USD, period: daily}\n")  # fmt: skip
    proc = _cli("run", "--config", str(cfg), "--", sys.executable, str(app))
    assert proc.returncode == 0, proc.stderr
    assert "app done" in proc.stdout
    assert [r["input_tokens"] for r in ledger.read_rows(tmp_path / "run.db")] == [12, 12, 12]


def test_run_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("budgets:\n  - {name: x, limit: -5, unit: USD, period: daily}\n")
    _one_line_error(_cli("run", "--config", str(bad), "--", sys.executable, "-c", "pass"), "budgets[x].limit")
    _one_line_error(_cli("run", "--", "no-such-program-xyz"), "command not found: no-such-program-xyz")
    proc = _cli("run", "--", sys.executable, "-c", "import sys; sys.exit(3)")
    assert proc.returncode == 3  # the program's own exit code


def test_doctor_reports_sdks_paths_and_invalid_config(tmp_path: Path) -> None:
    proc = _cli("doctor", env={"LLM_OTEL_LEDGER": str(tmp_path / "x.db")})
    assert proc.returncode == 0, proc.stderr
    assert "openai" in proc.stdout and "instrumented" in proc.stdout and "genai-prices" in proc.stdout
    assert str(tmp_path / "x.db") in proc.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("endpoint: nope\n")
    proc = _cli("doctor", env={"LLM_OTEL_CONFIG": str(bad)})
    assert proc.returncode == 1
    assert "INVALID" in proc.stdout and "endpoint" in proc.stdout
