"""Budgets shared through a real redis-server on 127.0.0.1 (tests/redis_server.py starts and stops it):
exact totals and each alert once across processes, blocks across processes, a Redis crash and restart
without persistence, an unreachable or misconfigured store, and the command line against Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from budget_fleet import fleet_budgets, wait_for
from redis_server import RedisServer, find_binary, free_port
from test_budget_support import record

import llm_otel
from llm_otel.budget.processor import BudgetProcessor
from llm_otel.budget.redis_store import RedisStore
from llm_otel.budget.rules import Budget

PER_CALL = 20  # the simulated provider's default usage: 12 input + 8 output tokens
THRESHOLDS = ("0.5", "0.7", "0.8", "1.0")
REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def redis_binary(request: pytest.FixtureRequest) -> str:
    """$REDIS_SERVER, redis-server on the PATH or scripts/fetch-redis.sh (skip, or fail under CI, without)."""
    return find_binary(request)


@pytest.fixture
def redis_server(redis_binary: str, tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server without persistence, stopped after the test."""
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = RedisServer(redis_binary, workdir).start()
    try:
        yield server
    finally:
        server.stop()


def shared(url: str, budgets: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """What Redis holds now, read the way ``llm-otel budget status`` reads it: (budget, group) -> entry."""
    from llm_otel.cli.budget import status

    store = RedisStore(url, [Budget(**b) for b in budgets], warn=False)
    try:
        entries = status(store, {b["name"]: Budget(**b) for b in budgets}, time.time())
    finally:
        store.close()
    return {(e["budget"], e["group"]): e for e in entries}


# --- real processes, real SDK calls ----------------------------------------------------------------------------
def _expected_alerts() -> list[tuple[str, str, str]]:
    out = [("fleet", "", t) for t in THRESHOLDS]
    return out + [("per-tenant", g, t) for g in ("t0", "t1") for t in THRESHOLDS]


def test_four_processes_on_one_redis_give_exact_totals_and_each_alert_once(
    sim: Any, redis_server: RedisServer, fleet: Any
) -> None:
    processes, calls = 4, 250
    f = fleet(sim.openai_base_url, redis_server.url, processes, calls, 0.0)
    f.go()
    results = f.finish()
    served = sim.served_usage()[("openai.chat", "gpt-4o-mini")]
    assert served["calls"] == processes * calls
    assert served["input"] + served["output"] == processes * calls * PER_CALL

    state = shared(redis_server.url, fleet_budgets(f.tz))
    assert state[("fleet", "")]["used"] == served["input"] + served["output"]
    assert state[("fleet", "")]["calls"] == processes * calls
    for g in ("t0", "t1"):
        assert state[("per-tenant", g)]["used"] == calls * 2 * PER_CALL
    counts = Counter((a["budget"], a["group"], a["threshold"]) for a in f.alerts())
    assert counts == dict.fromkeys(_expected_alerts(), 1), counts
    # ``used`` is the shared total right after the crossing call, in the order batches reached Redis (exact
    # unless two processes' batches crossed within one claim's round trip: then it is the winner's view).
    for a in f.alerts():
        limit = 18000 if a["budget"] == "fleet" else 9000
        assert float(a["threshold"]) * limit <= a["used"] < float(a["threshold"]) * limit + 2000, a
    fired = state[("fleet", "")]["fired"]
    assert [(x["threshold"], x["alerted"]) for x in fired] == [(t, True) for t in THRESHOLDS]
    assert all(not r["degraded"] for r in results)


def test_redis_killed_and_restarted_mid_run_loses_no_usage_and_duplicates_no_alert(
    sim: Any, redis_server: RedisServer, fleet: Any
) -> None:
    processes, calls = 3, 300
    f = fleet(sim.openai_base_url, redis_server.url + "?refresh=0.3", processes, calls, 0.01)
    f.go()
    time.sleep(1.0)  # about a third of the calls made
    redis_server.kill()  # SIGKILL, no persistence: every key is gone
    time.sleep(1.5)  # calls go on without Redis: thresholds crossed meanwhile wait for their claims
    redis_server.start()
    results = f.finish()

    served = sim.served_usage()[("openai.chat", "gpt-4o-mini")]
    assert served["calls"] == processes * calls
    state = shared(redis_server.url, fleet_budgets(f.tz))
    assert state[("fleet", "")]["used"] == served["input"] + served["output"] == processes * calls * PER_CALL
    assert state[("fleet", "")]["calls"] == processes * calls
    for g in ("t0", "t1"):
        assert state[("per-tenant", g)]["used"] == processes * calls // 2 * PER_CALL
    counts = Counter((a["budget"], a["group"], a["threshold"]) for a in f.alerts())
    assert counts == dict.fromkeys(_expected_alerts(), 1), counts
    for r in results:
        assert r["stderr"].count("is unreachable") == 1, r["stderr"]  # one warning per outage, per process
        assert r["stderr"].count("is reachable again") == 1, r["stderr"]
        assert r["slowest"] < 1.0, r  # no call waited on Redis


def test_a_block_set_by_spend_in_one_process_stops_calls_in_another(
    sim: Any, redis_server: RedisServer, tmp_path: Path
) -> None:
    app = tmp_path / "blocked.py"
    app.write_text(
        textwrap.dedent("""
        import json, os, sys, time
        import llm_otel, openai
        base_url, store, ready, spent = sys.argv[1:]
        llm_otel.instrument(ledger=False, budget_store=store, budgets=[
            {"name": "hard", "limit": 200, "unit": "tokens", "period": "1h", "action": "block"}])
        client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0)
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        open(ready, "w").close()
        while not os.path.exists(spent):
            time.sleep(0.01)
        t0, made = time.monotonic(), 0
        while time.monotonic() - t0 < 10:
            try:
                client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
                made += 1
            except llm_otel.BudgetExceeded as exc:
                print("BLOCKED", json.dumps({"after": time.monotonic() - t0, "made": made, "used": exc.used}))
                break
            time.sleep(0.05)
        llm_otel.uninstrument()
    """)
    )
    ready, spent = tmp_path / "ready", tmp_path / "spent"
    other = subprocess.Popen([sys.executable, str(app), sim.openai_base_url, redis_server.url, str(ready), str(spent)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for(lambda: ready.exists() or other.poll() is not None, 60, "the other process")
        # This process spends the budget: 10 calls of 20 tokens reach the limit of 200.
        proc = BudgetProcessor([{"name": "hard", "limit": 200, "unit": "tokens", "period": "1h", "action": "block"}],
                               store=redis_server.url)  # fmt: skip
        for _ in range(10):
            proc.on_usage(record(12, 8))
        proc.flush()
        proc.close()
        spent.touch()
        out, err = other.communicate(timeout=60)
    finally:
        if other.poll() is None:
            other.kill()
    assert "BLOCKED" in out, err
    blocked = json.loads(out.split("BLOCKED", 1)[1])
    assert blocked["used"] >= 200
    # seen within one refresh (1 s) plus a batch (0.25 s); calls made meanwhile are the documented overshoot
    assert blocked["after"] < 2.5, blocked


# --- one process, several processors: outages, claims held, resets ------------------------------------------------
TOKENS_100 = {"name": "daily-tokens", "limit": 100, "unit": "tokens", "period": "daily", "forecast": False}


def test_alerts_crossed_while_redis_is_down_are_held_then_claimed_once(redis_server: RedisServer) -> None:
    url = redis_server.url + "?refresh=0.2"
    got: list[tuple[str, str, float]] = []
    a = BudgetProcessor([TOKENS_100, {**TOKENS_100, "name": "blocker", "action": "block", "limit": 60}], store=url,
                        on_alert=lambda x: got.append((x.budget, x.threshold, x.used)))  # fmt: skip
    b = BudgetProcessor([TOKENS_100], store=url, on_alert=lambda x: got.append((x.budget, x.threshold, x.used)))
    try:
        a.on_usage(record(30))
        a.flush()
        b.flush()  # b sees 30
        assert got == [("blocker", "0.5", 30)]
        got.clear()
        redis_server.kill()
        a.on_usage(record(15))  # 45: local only
        b.on_usage(record(25))  # b's view 55: b crossed 0.5 locally, the claim waits
        a.flush()
        b.flush()
        assert a.degraded and b.degraded
        assert got == []  # held: nobody can claim while Redis is down
        a.on_usage(record(20))  # a's own usage takes its view of "blocker" to 65 >= 60: blocks here, offline
        with pytest.raises(llm_otel.BudgetExceeded):
            a.before_call(_call_info())
        redis_server.start()  # empty: both re-assert their usage, then claim
        deadline = time.monotonic() + 15
        while (a.degraded or b.degraded) and time.monotonic() < deadline:
            a.flush()
            b.flush()
            time.sleep(0.05)
        assert not a.degraded and not b.degraded
        labels = Counter((name, t) for name, t, _u in got)
        # "blocker" is a's alone: 45 (0.7), then 65 of 60 (1.0, passing 0.8).
        assert labels.pop(("blocker", "0.7")) == labels.pop(("blocker", "1.0")) == 1, got
        # 30 + 15 + 20 + 25 = 90, replayed in the order the two batches reach Redis: a first gives 45, 65 (0.5),
        # 90 (0.8, passing 0.7); b first gives 55 (0.5), 70 (0.7), 90 (0.8). Never a threshold twice.
        assert labels in (
            {("daily-tokens", "0.5"): 1, ("daily-tokens", "0.8"): 1},
            {("daily-tokens", "0.5"): 1, ("daily-tokens", "0.7"): 1, ("daily-tokens", "0.8"): 1},
        ), got
        state = shared(url, [TOKENS_100])
        assert state[("daily-tokens", "")]["used"] == 90
        assert state[("daily-tokens", "")]["calls"] == 4
    finally:
        a.close()
        b.close()


def _call_info() -> Any:
    from llm_otel.core.result import CallInfo

    return CallInfo(provider="openai", operation="chat", request_model="gpt-4o-mini", attributes={})


def test_an_unreachable_store_never_fails_a_call_and_warns_once(sim: Any, tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    app = tmp_path / "app.py"
    app.write_text(
        textwrap.dedent("""
        import json, sys, time
        import llm_otel, openai
        base_url, store = sys.argv[1:]
        llm_otel.instrument(ledger=False, budget_store=store, budgets=[
            {"name": "hard", "limit": 1000000, "unit": "tokens", "period": "1h", "action": "block"}])
        client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0)
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])  # warm
        slowest = 0.0
        for _ in range(39):
            t0 = time.perf_counter()
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
            slowest = max(slowest, time.perf_counter() - t0)
            time.sleep(0.02)
        llm_otel.flush()
        print("DONE", json.dumps({"slowest": slowest}))
    """)
    )
    url = f"redis://:secret-pw@127.0.0.1:{port}/0"
    proc = subprocess.run([sys.executable, str(app), sim.openai_base_url, url], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert proc.returncode == 0 and "DONE" in proc.stdout, proc.stderr
    assert sim.served_usage()[("openai.chat", "gpt-4o-mini")]["calls"] == 40
    warnings = [line for line in proc.stderr.splitlines() if "budget store" in line]
    assert len(warnings) == 2, proc.stderr  # one when it is found unreachable, one at exit (usage not sent)
    assert f"redis://:***@127.0.0.1:{port}/0 is unreachable (" in warnings[0]
    assert "calls are not affected" in warnings[0] and "usage of 40 call(s)" in warnings[1]
    assert "secret-pw" not in proc.stderr
    assert json.loads(proc.stdout.split("DONE", 1)[1])["slowest"] < 0.5


def test_wrong_credentials_warn_once_with_the_password_masked(redis_binary: str, tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    workdir = tmp_path / "redis-auth"
    workdir.mkdir()
    server = RedisServer(redis_binary, workdir, password="right-pw").start()
    try:
        url = f"redis://:wrong-pw@127.0.0.1:{server.port}/0"
        with caplog.at_level("WARNING", logger="llm_otel.budget"):
            proc = BudgetProcessor([TOKENS_100], store=url)
            for _ in range(5):
                proc.on_usage(record(10))
                proc.flush()
            proc.close()
        lines = [r.getMessage() for r in caplog.records if "budget store" in r.getMessage()]
        assert len(lines) == 2, lines  # the outage, and the exit with usage unsent
        assert "refused the credentials" in lines[0] and f"redis://:***@127.0.0.1:{server.port}/0" in lines[0]
        assert all("wrong-pw" not in line and "\n" not in line for line in lines)
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://127.0.0.1:6379", "unsupported scheme http://"),
        ("redis://:hunter2@127.0.0.1:99999/0", "not a valid URL"),
        ("redis://:hunter2@127.0.0.1:6379/zero", "database number"),
        ("redis://127.0.0.1:6379/0?refresh=fast", "refresh must be a number"),
    ],
)
def test_a_bad_url_is_a_one_line_config_error_naming_budget_store(value: str, expected: str) -> None:
    with pytest.raises(llm_otel.ConfigError) as exc:
        llm_otel.instrument(budget_store=value, budgets=[TOKENS_100], ledger=False)
    message = str(exc.value)
    assert "budget_store" in message and expected in message and "\n" not in message
    assert "hunter2" not in message


def test_a_reset_starts_over_for_running_processes_too(redis_server: RedisServer, tmp_path: Path) -> None:
    url = redis_server.url + "?refresh=0.2"
    a = BudgetProcessor([TOKENS_100], store=url)
    try:
        for _ in range(3):
            a.on_usage(record(20))
        a.flush()
        assert shared(url, [TOKENS_100])[("daily-tokens", "")]["used"] == 60
        out = _cli("budget", "reset", "daily-tokens", "--store", url)
        assert out.returncode == 0 and "reset" in out.stdout, out.stderr
        assert shared(url, [TOKENS_100])[("daily-tokens", "")]["used"] == 0
        wait_for(lambda: a.flush() and sum(e["used"] for e in a.snapshot()) == 0, 10, "the running process to reset")
        a.on_usage(record(5))
        a.flush()  # a's 60 from before the reset is not written back: only the new 5 counts
        assert shared(url, [TOKENS_100])[("daily-tokens", "")]["used"] == 5
    finally:
        a.close()


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_OTEL_", "OTEL_"))}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "llm_otel.cli", *args], capture_output=True, text=True, env=full,
                          timeout=60, cwd=REPO_ROOT)  # fmt: skip


def test_budget_status_reads_redis_as_the_processes_wrote_it(redis_server: RedisServer, tmp_path: Path) -> None:
    budgets = [TOKENS_100, {"name": "per-tenant", "limit": 50, "unit": "tokens", "period": "1h", "group_by": "tenant"}]
    a = BudgetProcessor(budgets, store=redis_server.url)
    b = BudgetProcessor(budgets, store=redis_server.url)
    try:
        a.on_usage(record(30, attrs={"tenant": "acme"}))
        b.on_usage(record(40, attrs={"tenant": "acme"}))
        b.on_usage(record(5, cost=None, attrs={"tenant": "zeta"}))
        a.flush()
        b.flush()
    finally:
        a.close()
        b.close()
    config = tmp_path / "llm-otel.yaml"
    config.write_text(f"budget_store: {redis_server.url}\n")
    out = _cli("budget", "status", "--json", "--config", str(config))
    assert out.returncode == 0, out.stderr
    entries = {(e["budget"], e["group"]): e for e in json.loads(out.stdout)}  # budgets known from Redis alone
    assert entries[("daily-tokens", "")]["used"] == 75 and entries[("daily-tokens", "")]["calls"] == 3
    assert entries[("per-tenant", "acme")]["used"] == 70
    assert [f["threshold"] for f in entries[("per-tenant", "acme")]["fired"]] == ["0.5", "0.7", "0.8", "1.0"]
    assert entries[("per-tenant", "zeta")]["used"] == 5
    table = _cli("budget", "status", "--store", redis_server.url)
    assert table.returncode == 0 and "per-tenant" in table.stdout and "acme" in table.stdout, table.stderr
    closed = _cli("budget", "status", "--store", f"redis://:pw@127.0.0.1:{free_port()}/0")
    assert closed.returncode == 2 and closed.stderr.count("\n") == 1 and "unreachable" in closed.stderr
    assert "pw@" not in closed.stderr and ":***@" in closed.stderr


def test_doctor_shows_the_store_and_whether_it_is_reachable(redis_binary: str, tmp_path: Path) -> None:
    workdir = tmp_path / "redis-doctor"
    workdir.mkdir()
    server = RedisServer(redis_binary, workdir, password="s3cret-pw").start()
    try:
        ok = _cli("doctor", env={"LLM_OTEL_BUDGET_STORE": server.url, "LLM_OTEL_LEDGER": "off"})
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert f"budget store: redis: redis://:***@127.0.0.1:{server.port}/0 (reachable" in ok.stdout
        port = free_port()
        down = _cli("doctor", env={"LLM_OTEL_BUDGET_STORE": f"redis://:s3cret-pw@127.0.0.1:{port}/0"})
        assert down.returncode == 1
        assert f"budget store: redis: redis://:***@127.0.0.1:{port}/0 (UNREACHABLE: is unreachable" in down.stdout
        assert "s3cret-pw" not in ok.stdout + ok.stderr + down.stdout + down.stderr
        sqlite = _cli("doctor", env={"LLM_OTEL_BUDGET_STATE": str(tmp_path / "b.sqlite3"),
                                     "LLM_OTEL_CONFIG": str(_budget_config(tmp_path))})  # fmt: skip
        assert f"budget store: sqlite: {tmp_path / 'b.sqlite3'} (created on first use)" in sqlite.stdout
    finally:
        server.stop()


def _budget_config(tmp_path: Path) -> Path:
    path = tmp_path / "budgets.yaml"
    path.write_text("budgets:\n  - {name: d, limit: 10, unit: USD, period: daily}\n")
    return path


def test_the_core_does_not_import_redis_without_a_redis_store(tmp_path: Path) -> None:
    code = ("import sys, llm_otel; llm_otel.instrument(ledger=False, budget_state=False, "
            "budgets=[{'name': 'x', 'limit': 1, 'period': 'daily'}]); print('redis' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
