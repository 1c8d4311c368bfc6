"""The report behind ``llm-otel report`` and ``llm-otel ui`` against a brute-force count of the same rows.

Rows are written with the ledger's own schema at chosen times (across hours, days and a month boundary), so
that every path of the cells is taken: whole days, whole hours, the partial hours at a range's edges, and the
row-by-row path of short ranges. The oracle is a plain loop over the rows.
"""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from llm_otel.sinks.ledger import COLUMNS, connect, read_rows
from llm_otel.views import LedgerSource, LedgerUnavailable, Query, build

NOW = datetime(2026, 11, 20, 13, 37, 12, tzinfo=UTC).timestamp()
MODELS = ["gpt-4o-mini", "gpt-4o", "claude-sonnet-4-5"]
TENANTS = ["acme", "globex", "initech"]


def _fill(path: Path, n: int = 3000, seed: int = 7) -> None:
    rnd = random.Random(seed)
    conn = connect(path)
    rows = []
    for _ in range(n):
        model, tenant = rnd.choice(MODELS), rnd.choice(TENANTS)
        stream = rnd.random() < 0.4
        duration = rnd.lognormvariate(0, 0.7)
        priced = rnd.random() < 0.9
        wait = rnd.choice([0.0] * 8 + [0.5, 2.25])
        values = {
            "ts": NOW - 40 * 86400 * rnd.random() ** 2,
            "provider": "anthropic" if "claude" in model else "openai",
            "operation": "chat",
            "request_model": model,
            "response_model": model if rnd.random() < 0.9 else None,
            "input_tokens": rnd.randint(10, 900),
            "output_tokens": rnd.randint(1, 300),
            "cache_read_tokens": rnd.choice([0, 5]),
            "cache_write_tokens": rnd.choice([0, 3]),
            "reasoning_tokens": rnd.choice([0, 7]),
            "usage_complete": 1,
            "cost_usd": rnd.random() / 100 if priced else None,
            "duration_s": duration,
            "ttfc_s": duration / 4 if stream else None,
            "tokens_per_second": 100 / duration,
            "burst_tokens_per_second": 150 / duration if stream else None,
            "throttle_wait_s": wait,
            "retry_wait_s": wait / 2,
            "retries": int(wait > 0),
            "error_type": rnd.choice([None] * 20 + ["openai.RateLimitError", "llm_otel.errors.BudgetExceeded"]),
            "stream_end": "completed" if stream else None,
            "service": rnd.choice(["api", "worker"]),
            "job": rnd.choice(["a", "b"]),
            "task": None,
            "agent": None,
            "tenant": tenant,
            "attributes": json.dumps({"tenant": tenant, "team": rnd.choice(["x", "y"])}, sort_keys=True),
            "trace_id": f"{rnd.getrandbits(128):032x}",
        }
        rows.append(tuple(values[c] for c in COLUMNS))
    with conn:
        conn.executemany(f"INSERT INTO calls ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})", rows)
    conn.close()


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("views") / "ledger.sqlite3"
    _fill(path)
    return path


def _oracle(rows: list[dict[str, Any]], since: float, until: float, filters: dict[str, set[str]]) -> list[dict]:
    def value(r: dict[str, Any], key: str) -> str:
        if key == "model":
            return r["response_model"] or r["request_model"] or ""
        if key in ("provider", "operation", "service"):
            return r[key] or ""
        return str(json.loads(r["attributes"]).get(key, ""))

    return [r for r in rows if since <= r["ts"] < until and all(value(r, k) in v for k, v in filters.items())]


def _nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


RANGES = [
    ("40 minutes", NOW - 2400, NOW),
    ("3 hours", NOW - 3 * 3600, NOW),
    ("30 hours", NOW - 30 * 3600, NOW),
    ("7 days", NOW - 7 * 86400, NOW),
    ("whole days and hours", datetime(2026, 10, 28, 5, 15, tzinfo=UTC).timestamp(), NOW - 86400 * 2.5),
    ("45 days", NOW - 45 * 86400, NOW),
]


@pytest.mark.parametrize("name,since,until", RANGES, ids=[r[0] for r in RANGES])
@pytest.mark.parametrize(
    "filters", [{}, {"tenant": {"acme"}}, {"model": {"gpt-4o", "claude-sonnet-4-5"}, "team": {"x"}}]
)
def test_report_equals_a_plain_count(ledger: Path, name: str, since: float, until: float, filters: dict) -> None:
    source = LedgerSource(ledger)
    source.refresh()
    q = Query(
        since=since,
        until=until,
        filters={k: frozenset(v) for k, v in filters.items()},
        group_by=("model", "tenant"),
        now=NOW,
    )
    report = build(source, q)
    want = _oracle(read_rows(ledger), since, until, filters)
    t = report["totals"]
    assert t["calls"] == len(want) > 0
    assert t["errors"] == sum(1 for r in want if r["error_type"])
    assert t["blocked"] == sum(1 for r in want if r["error_type"] == "llm_otel.errors.BudgetExceeded")
    assert t["tokens"]["input"] == sum(r["input_tokens"] for r in want)
    assert t["tokens"]["reasoning"] == sum(r["reasoning_tokens"] for r in want)
    assert t["cost_usd"] == pytest.approx(sum(r["cost_usd"] or 0 for r in want), abs=1e-9)
    assert t["unpriced_calls"] == sum(1 for r in want if r["cost_usd"] is None)
    assert t["throttle_wait_s"] == pytest.approx(sum(r["throttle_wait_s"] for r in want))
    assert t["retries"] == sum(r["retries"] for r in want)
    assert sum(g["calls"] for g in report["groups"]) == len(want)
    assert sum(d["calls"] for d in report["daily"]) == len(want)
    assert sum(report["rate_limits"]["calls"]) == len(want)
    assert sum(map(sum, report["series"]["cost_usd"].values())) == pytest.approx(t["cost_usd"], abs=1e-9)
    # the slowest, most expensive and longest-waiting calls: the same values as sorting every row
    assert [c["duration_s"] for c in report["slowest"]] == sorted((r["duration_s"] for r in want), reverse=True)[:10]
    assert [c["cost_usd"] for c in report["most_expensive"]] == sorted(
        (r["cost_usd"] for r in want if r["cost_usd"]), reverse=True
    )[:10]
    waits = sorted((r["throttle_wait_s"] + r["retry_wait_s"] for r in want if r["throttle_wait_s"]), reverse=True)
    assert [c["throttle_wait_s"] + c["retry_wait_s"] for c in report["rate_limits"]["longest_waits"]] == waits[:10]
    # percentiles: within 1 % of the nearest-rank percentile of the exact values
    for entry in report["speed"]["by_model"]:
        durations = [r["duration_s"] for r in want if (r["response_model"] or r["request_model"]) == entry["model"]]
        for q_ in (0.5, 0.95):
            exact = _nearest_rank(durations, q_)
            assert entry["duration_s"][f"p{round(q_ * 100)}"] == pytest.approx(exact, rel=0.0101)
    # the month-end forecast is as of the range's end, for the filtered calls
    month_start = datetime.fromtimestamp(until, UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    mtd = _oracle(read_rows(ledger), month_start.timestamp(), until, filters)
    assert report["forecast"]["month_to_date_usd"] == pytest.approx(sum(r["cost_usd"] or 0 for r in mtd), abs=1e-9)


def test_new_rows_are_read_on_refresh(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    _fill(path, n=200, seed=1)
    source = LedgerSource(path)
    assert source.refresh() == 200
    before = build(source, Query(now=NOW))["totals"]["calls"]
    _fill(path, n=50, seed=2)
    assert source.refresh() == 50
    assert build(source, Query(now=NOW))["totals"]["calls"] == before + 50 == 250


@pytest.mark.parametrize(
    "kind,message", [("missing", "no ledger at"), ("corrupt", "corrupt"), ("other", "is not an llm-otel ledger")]
)
def test_unreadable_ledgers_say_why_in_one_line(tmp_path: Path, kind: str, message: str) -> None:
    path = tmp_path / "ledger.sqlite3"
    if kind == "corrupt":
        path.write_bytes(b"garbage" * 1000)
    elif kind == "other":
        import sqlite3

        sqlite3.connect(path).execute("CREATE TABLE calls (id INTEGER)").connection.commit()
    with pytest.raises(LedgerUnavailable) as err:
        LedgerSource(path).refresh()
    assert message in str(err.value) and "\n" not in str(err.value) and str(path) in str(err.value)


def test_the_range_as_written_covers_the_same_calls(ledger: Path) -> None:
    """Asking again for the range a report says it covered (``range.from`` / ``range.to``, ISO times with
    microseconds) gives the same report: the written range is rounded outwards, not to the nearest."""
    source = LedgerSource(ledger)
    source.refresh()
    first = build(source, Query(now=NOW))
    again = build(
        source,
        Query(
            since=datetime.fromisoformat(first["range"]["from"]).timestamp(),
            until=datetime.fromisoformat(first["range"]["to"]).timestamp(),
            now=NOW,
        ),
    )
    assert again["totals"] == first["totals"] and again["groups"] == first["groups"]
    assert first["totals"]["calls"] == len(read_rows(ledger))
