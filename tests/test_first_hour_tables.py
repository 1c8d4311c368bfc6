"""What a user sees in the first hour: the demo's call count, full model names in the demo and report
tables, and which thresholds a rolling-budget alert says its call passed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import openai
from test_budget_support import FakeClock, record, scenario

from llm_otel import semconv as sc
from llm_otel.budget.alerts import PASSED
from llm_otel.core.result import UsageRecord
from llm_otel.core.usage import Usage
from llm_otel.sinks import ledger

# Two pairs of models whose names only differ after a long common prefix.
LONG_NAMES = {
    ("anthropic", "claude-sonnet-4-20250514"),
    ("anthropic", "claude-sonnet-4-5-20250929"),
    ("openai", "text-embedding-3-small"),
    ("openai", "text-embedding-3-large"),
}
ROLLING = {"name": "hourly", "limit": 100, "unit": "tokens", "period": "1h"}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llm_otel.cli", *args], capture_output=True, text=True,
                          timeout=180, env=dict(os.environ))  # fmt: skip


def _write_long_names(path: Path) -> None:
    """One call per model in LONG_NAMES, through the real ledger writer."""
    book = ledger.Ledger(path)
    ts = (datetime.now(UTC) - timedelta(minutes=5)).timestamp()
    for provider, model in sorted(LONG_NAMES):
        book.on_usage(UsageRecord(timestamp=ts, provider=provider, operation="chat", request_model=model,
                                  response_model=model, usage=Usage(100, 10, 0, 0, None), usage_complete=True,
                                  cost_usd=0.001, duration_s=0.5, attributes={}))  # fmt: skip
    book.close()


def _tables(text: str) -> list[list[str]]:
    """The lines of every table (header, rule, rows) in a command's output whose header starts with a name."""
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines[:-1]):
        if line.startswith("provider/model ") and set(lines[i + 1]) == {"-"}:
            end = next((j for j in range(i + 2, len(lines)) if not lines[j].strip()), len(lines))
            out.append(lines[i:end])
    return out


def _names(table: list[str]) -> list[str]:
    return [row.split()[0] for row in table[2:]]


# --- the demo says how many calls it made ---------------------------------------------------------------------
def test_demo_says_the_number_of_calls_its_tables_and_json_count(tmp_path: Path) -> None:
    proc = _cli("demo", "--calls", "12", "--concurrency", "3", "--no-budget", "--ledger", str(tmp_path / "t.db"))
    assert proc.returncode == 0, proc.stderr
    usage = _tables(proc.stdout)[0]
    in_table = sum(int(row.split()[1]) for row in usage[2:])
    [said] = [line for line in proc.stdout.splitlines() if line.endswith("budget alerts")]
    assert int(said.split()[0]) == in_table == len(ledger.read_rows(tmp_path / "t.db"))

    proc = _cli("demo", "--calls", "12", "--concurrency", "3", "--no-budget", "--ledger", str(tmp_path / "j.db"),
                "--format", "json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["calls"] == sum(m["calls"] for m in out["models"]) == len(ledger.read_rows(tmp_path / "j.db"))


# --- full model names, one form -------------------------------------------------------------------------------
def test_report_table_prints_full_distinct_provider_model_names(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    _write_long_names(db)
    proc = _cli("report", "--ledger", str(db))
    assert proc.returncode == 0, proc.stderr
    [groups] = _tables(proc.stdout)
    assert sorted(_names(groups)) == sorted(f"{p}/{m}" for p, m in LONG_NAMES)
    assert len({len(line) for line in groups}) == 1  # the columns widen to the longest name: still aligned
    assert " / " not in proc.stdout
    assert max(len(line) for line in proc.stdout.splitlines()) <= 80


def test_demo_tables_print_the_same_full_names_as_the_report(tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    _write_long_names(db)  # the demo appends to an existing ledger and shows all of it
    proc = _cli("demo", "--calls", "4", "--concurrency", "2", "--no-budget", "--ledger", str(db))
    assert proc.returncode == 0, proc.stderr
    usage, timing = _tables(proc.stdout)
    expected = {f"{p}/{m}" for p, m in LONG_NAMES}
    for table in (usage, timing):
        assert expected <= set(_names(table))
        assert len(_names(table)) == len(set(_names(table)))
        assert len({len(line) for line in table}) == 1
    report = _cli("report", "--ledger", str(db))
    assert set(_names(_tables(report.stdout)[0])) == set(_names(usage))


# --- rolling budgets: `passed` is what this call jumped past -----------------------------------------------
def _chat(sim: Any, tokens_in: int) -> None:
    client = openai.OpenAI(base_url=sim.openai_base_url, api_key="x", max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                   extra_headers=scenario(tokens_in))  # fmt: skip


def test_rolling_alert_does_not_list_thresholds_that_alerted_on_earlier_calls(
    sim: Any, make_capture: Any, make_proc: Any, clock: FakeClock
) -> None:
    got: list[Any] = []
    proc = make_proc([ROLLING], on_alert=got.append)
    cap = make_capture(processors=[proc])
    _chat(sim, 60)  # 0.5
    clock.advance(minutes=10)
    _chat(sim, 15)  # 75: 0.7, crossed by this call alone
    clock.advance(minutes=10)
    _chat(sim, 10)  # 85: 0.8
    proc.flush()
    assert [(a.threshold, a.passed) for a in got] == [("0.5", ()), ("0.7", ()), ("0.8", ())]
    logs = [r.log_record for r in cap.logs() if r.log_record.event_name == sc.BUDGET_ALERT_EVENT]
    assert [(lr.attributes[sc.BUDGET_THRESHOLD], PASSED in lr.attributes) for lr in logs] == [
        ("0.5", False), ("0.7", False), ("0.8", False)]  # fmt: skip
    events = [dict(e.attributes) for s in cap.spans() for e in s.events if e.name == sc.BUDGET_ALERT_EVENT]
    assert [(e[sc.BUDGET_THRESHOLD], e.get(PASSED)) for e in events] == [("0.5", None), ("0.7", None),
                                                                         ("0.8", None)]  # fmt: skip


def test_rolling_jump_lists_only_the_thresholds_this_call_crossed(make_proc: Any, clock: FakeClock) -> None:
    got: list[Any] = []
    proc = make_proc([ROLLING], on_alert=got.append)
    proc.on_usage(record(40))  # 0.4: nothing
    clock.advance(minutes=5)
    proc.on_usage(record(45))  # 0.4 -> 0.85: 0.8, jumping past 0.5 and 0.7
    clock.advance(minutes=62)  # all of it left the window
    proc.on_usage(record(60))  # 0.5 again, a window later
    clock.advance(minutes=5)
    proc.on_usage(record(45))  # 0.6 -> 1.05: 1.0, jumping past 0.7 and 0.8 (0.5 alerted 5 minutes ago)
    proc.flush()
    assert [(a.threshold, a.passed) for a in got] == [
        ("0.8", ("0.5", "0.7")), ("0.5", ()), ("1.0", ("0.7", "0.8"))]  # fmt: skip
    assert [a.used for a in got] == [85, 60, 105]
