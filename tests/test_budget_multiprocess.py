"""Four real processes x 250 real openai SDK calls into shared budgets: exact totals, each alert exactly once."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from test_budget_support import db_rows, fired_rows, used_total

PROCESSES = 4
CALLS = 250
PER_CALL = 20  # the simulated provider's default usage: 12 input + 8 output tokens


def test_four_processes_spend_into_one_budget_with_exact_totals_and_each_alert_once(
    sim: Any, tmp_path: Path, fleet: Any
) -> None:
    state = tmp_path / "budgets.sqlite3"
    started = time.monotonic()
    f = fleet(sim.openai_base_url, str(state), PROCESSES, CALLS, 0.0)
    f.go()  # all four spend at once
    f.finish(timeout=60)
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
    alerts = f.alerts()
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
