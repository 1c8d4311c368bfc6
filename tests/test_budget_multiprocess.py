"""Four real processes x 250 real openai SDK calls into shared budgets: exact totals, each alert exactly once."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from test_budget_support import db_rows, fired_rows, used_total

PROCESSES = 4
CALLS = 250
PER_CALL = 20  # the simulated provider's default usage: 12 input + 8 output tokens

APP = """
import json, os, sys, time
import llm_otel, openai

base_url, state, out, ready, go, tz = sys.argv[1:]
sink = open(out, "w")

def on_alert(a):
    sink.write(json.dumps({"pid": os.getpid(), "budget": a.budget, "group": a.group, "threshold": a.threshold,
                           "used": a.used}) + "\\n")
    sink.flush()

llm_otel.instrument(
    ledger=False, budget_state=state, on_alert=on_alert,
    budgets=[
        {"name": "fleet", "limit": 18000, "unit": "tokens", "period": "daily", "timezone": tz, "forecast": False},
        {"name": "per-tenant", "limit": 9000, "unit": "tokens", "period": "1d", "group_by": "tenant"},
    ],
)
client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0)
open(ready, "w").close()
while not os.path.exists(go):
    time.sleep(0.002)
for i in range(%(calls)d):
    with llm_otel.context(tenant="t%%d" %% (i %% 2)):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
llm_otel.uninstrument()
print("DONE")
"""


def _noon_zone() -> str:
    """A fixed-offset zone where it is about noon now, so the daily window cannot roll over mid-test."""
    offset = 12 - datetime.now(UTC).hour  # -11 .. 12
    return f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}" if offset else "UTC"


def test_four_processes_spend_into_one_budget_with_exact_totals_and_each_alert_once(sim: Any, tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent(APP % {"calls": CALLS}))
    state, go = tmp_path / "budgets.sqlite3", tmp_path / "go"
    started = time.monotonic()
    procs = []
    for i in range(PROCESSES):
        args = [sim.openai_base_url, str(state), str(tmp_path / f"alerts-{i}.jsonl"), str(tmp_path / f"ready-{i}"),
                str(go), _noon_zone()]  # fmt: skip
        procs.append(subprocess.Popen([sys.executable, str(app), *args], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))  # fmt: skip
    deadline = time.monotonic() + 30
    while not all((tmp_path / f"ready-{i}").exists() for i in range(PROCESSES)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.01)
    go.touch()  # all four spend at once
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0 and "DONE" in out, err
    elapsed = time.monotonic() - started

    served = sim.served_usage()[("openai.chat", "gpt-4o-mini")]
    assert served["calls"] == PROCESSES * CALLS
    assert served["input"] + served["output"] == PROCESSES * CALLS * PER_CALL

    # exact totals in the shared state file
    assert used_total(state, "fleet") == served["input"] + served["output"]
    assert used_total(state, "per-tenant", "t0") == used_total(state, "per-tenant", "t1") == CALLS * 2 * PER_CALL
    calls = db_rows(state, "SELECT budget, sum(calls) FROM budget_usage GROUP BY budget ORDER BY budget")
    assert calls == [("fleet", PROCESSES * CALLS), ("per-tenant", PROCESSES * CALLS)]

    # each threshold fired once between the four processes, by the call that crossed it in the file's order
    alerts = [json.loads(line) for i in range(PROCESSES) for line in (tmp_path / f"alerts-{i}.jsonl").open()]
    counts = Counter((a["budget"], a["group"], a["threshold"]) for a in alerts)
    expected = [("fleet", "", t) for t in ("0.5", "0.7", "0.8", "1.0")]
    expected += [("per-tenant", g, t) for g in ("t0", "t1") for t in ("0.5", "0.7", "0.8", "1.0")]
    assert counts == dict.fromkeys(expected, 1), counts
    crossing = {(a["budget"], a["group"], a["threshold"]): a["used"] for a in alerts}
    assert [crossing[("fleet", "", t)] for t in ("0.5", "0.7", "0.8", "1.0")] == [9000, 12600, 14400, 18000]
    for g in ("t0", "t1"):
        assert [crossing[("per-tenant", g, t)] for t in ("0.5", "0.7", "0.8", "1.0")] == [4500, 6300, 7200, 9000]
    assert len(fired_rows(state, "fleet")) == 4 and all(r[2] == 1 for r in fired_rows(state, "fleet"))
    assert elapsed < 60, elapsed
