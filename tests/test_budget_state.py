"""Budget state file: restarts, processes sharing it, resets, the CLI, and corrupt / read-only / locked files."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import openai
import pytest
from test_budget_support import FakeClock, fired_rows, record, scenario, used_total

import llm_otel
from llm_otel.budget.processor import BudgetProcessor
from llm_otel.core.result import CallInfo

T0 = datetime(2025, 6, 2, 10, 0, tzinfo=UTC)
TOKENS_100 = {"name": "daily-tokens", "limit": 100, "unit": "tokens", "period": "daily", "forecast": False}
CALL = CallInfo("openai", "chat", "gpt-4o-mini", {})


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llm_otel.cli", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})  # fmt: skip


def _one_clear_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


# --- restarts and sharing -------------------------------------------------------------------------------------
def test_restart_mid_window_resumes_without_refiring(make_proc: Any, state: Path) -> None:
    first: list[Any] = []
    proc = make_proc([TOKENS_100], on_alert=first.append)
    for n in (30, 25, 20):  # 30 55 75: 0.5 and 0.7
        proc.on_usage(record(n))
    proc.close()  # the process exits; queued usage is committed on the way out
    assert [a.threshold for a in first] == ["0.5", "0.7"]

    again: list[Any] = []
    proc = make_proc([TOKENS_100], on_alert=again.append)
    assert proc.snapshot() == [{"budget": "daily-tokens", "group": "", "used": 75, "limit": 100, "utilization": 0.75,
                                "fired": ["0.5", "0.7"]}]  # fmt: skip
    proc.on_usage(record(4))  # 79: nothing new
    proc.on_usage(record(4))  # 83: 0.8 only
    proc.flush()
    assert [(a.threshold, a.passed) for a in again] == [("0.8", ())]
    assert used_total(state, "daily-tokens") == 83
    assert [t for _, t, _ in fired_rows(state, "daily-tokens")] == ["0.5", "0.7", "0.8"]


def test_two_processors_sharing_the_file_fire_each_threshold_once_between_them(make_proc: Any, state: Path) -> None:
    got: list[tuple[str, str]] = []
    a = make_proc([TOKENS_100], on_alert=lambda x: got.append(("a", x.threshold)))
    b = make_proc([TOKENS_100], on_alert=lambda x: got.append(("b", x.threshold)))

    def spend(proc: BudgetProcessor) -> None:
        for _ in range(60):
            proc.on_usage(record(1))

    threads = [threading.Thread(target=spend, args=(p,)) for p in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    a.flush()
    b.flush()
    a.flush()  # re-reads what b committed
    assert sorted(t for _, t in got) == ["0.5", "0.7", "0.8", "1.0"]  # once each, whoever got there
    assert used_total(state, "daily-tokens") == 120
    assert [(t, alerted) for _, t, alerted in fired_rows(state, "daily-tokens")] == [
        ("0.5", 1), ("0.7", 1), ("0.8", 1), ("1.0", 1)]  # fmt: skip
    assert a.snapshot()[0]["used"] == b.snapshot()[0]["used"] == 120  # both see the shared total


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_worker_sees_what_other_processes_wrote_on_its_first_flush(make_proc: Any, state: Path) -> None:
    budgets = [{**TOKENS_100, "name": f"{p}-tokens", "scope": {"provider": p}} for p in ("openai", "anthropic")]
    here = make_proc(budgets, refresh_s=60.0)
    here.on_usage(record(1, provider="anthropic"))
    here.flush()  # committed and refreshed: from now on a flush re-reads only if another process wrote since
    elsewhere = make_proc(budgets)
    elsewhere.on_usage(record(40))  # openai
    elsewhere.flush()

    def worker() -> Any:  # a new process, with its own connection to the file
        here.on_usage(record(5, provider="anthropic"))  # commits (and re-reads) the anthropic budget only
        here.flush()
        return here.snapshot()

    seen = _in_forked_child(worker)
    assert seen is not None and {e["budget"]: e["used"] for e in seen} == {"openai-tokens": 40, "anthropic-tokens": 6}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_worker_counts_the_usage_its_parent_had_not_committed(make_proc: Any) -> None:
    proc = make_proc([{**TOKENS_100, "action": "block"}])
    for _ in range(4):
        proc.on_usage(record(10))  # 40 tokens in this process's view, none committed yet

    def worker() -> Any:  # inherits the parent's view (the parent commits those 40 itself)
        spans = [_EventSpan(), _EventSpan()]
        for span in spans:
            proc.on_usage(record(6, span=span))  # 46, then 52: the second call crosses 0.5
        return [span.thresholds for span in spans]

    assert _in_forked_child(worker) == [[], ["0.5"]]


def _in_forked_child(work: Any) -> Any:
    """What ``work()`` returns (as JSON) when run in a forked child process; None if it failed."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(write, json.dumps(work()).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        seen = json.loads(pipe.read() or "null")
    os.waitpid(pid, 0)
    return seen


class _EventSpan:
    """Records the budget thresholds of the span events a call gets."""

    def __init__(self) -> None:
        self.thresholds: list[str] = []

    def get_span_context(self) -> None:
        return None

    def add_event(self, name: str, attributes: dict[str, Any]) -> None:
        self.thresholds.append(attributes["llm_otel.budget.threshold"])


def test_the_file_decides_in_call_order_across_processors(make_proc: Any) -> None:
    got: list[tuple[str, str, float]] = []
    a = make_proc([TOKENS_100], on_alert=lambda x: got.append(("a", x.threshold, x.used)))
    b = make_proc([TOKENS_100], on_alert=lambda x: got.append(("b", x.threshold, x.used)))
    a.on_usage(record(40))
    a.flush()
    b.on_usage(record(20))  # b's view was 0 + 20, but the shared total is 60: b crossed 0.5
    b.flush()
    a.on_usage(record(5))  # a's view 45 (stale), shared 65: nothing
    a.flush()
    assert got == [("b", "0.5", 60)]


def test_reading_the_total_and_marking_the_threshold_is_one_atomic_step(make_proc: Any, state: Path) -> None:
    got: list[tuple[str, str]] = []
    a = make_proc([TOKENS_100], on_alert=lambda x: got.append(("a", x.threshold)))
    b = make_proc([TOKENS_100], on_alert=lambda x: got.append(("b", x.threshold)))
    inside, release = threading.Event(), threading.Event()
    read_total = a._store.usage

    def read_then_pause(*args: Any, **kw: Any) -> Any:
        totals = read_total(*args, **kw)
        inside.set()
        release.wait(5)  # a is between reading the shared total and committing its decision
        return totals

    a._store.usage = read_then_pause
    a.on_usage(record(60))
    ta = threading.Thread(target=a.flush)
    ta.start()
    assert inside.wait(5)
    b.on_usage(record(60))  # b crosses 0.5 too, from the total it can read now
    tb = threading.Thread(target=b.flush)
    tb.start()
    time.sleep(0.3)  # b's writer is now waiting for the file (or, if it did not have to, done)
    release.set()
    ta.join(10)
    tb.join(10)
    a.flush()
    # a decided first on 60 (0.5); b then saw 120 (1.0, jumping past 0.7 and 0.8): no threshold twice
    assert got == [("a", "0.5"), ("b", "1.0")]
    assert not a.degraded and not b.degraded
    assert used_total(state, "daily-tokens") == 120


def test_usage_in_another_process_blocks_calls_here(make_proc: Any) -> None:
    hard = {**TOKENS_100, "name": "hard", "limit": 50, "action": "block"}
    here = make_proc([hard], refresh_s=0.05)
    elsewhere = make_proc([hard])
    here.before_call(CALL)  # starts its writer; nothing used yet
    elsewhere.on_usage(record(60))
    elsewhere.flush()
    deadline = time.monotonic() + 5
    while True:  # picked up by the periodic refresh, no call needed here
        try:
            here.before_call(CALL)
        except llm_otel.BudgetExceeded as exc:
            assert (exc.budget, exc.used, exc.limit) == ("hard", 60, 50)
            break
        assert time.monotonic() < deadline, "the other process's usage was never seen"
        time.sleep(0.02)


# --- reset and status from the CLI ----------------------------------------------------------------------------
def test_cli_reset_starts_the_window_over_for_running_processes(make_proc: Any, state: Path) -> None:
    got: list[str] = []
    proc = make_proc([TOKENS_100], on_alert=lambda a: got.append(a.threshold))
    proc.on_usage(record(60))
    proc.flush()
    done = _cli("budget", "reset", "daily-tokens", "--state", str(state))
    assert done.returncode == 0, done.stderr
    assert "budget 'daily-tokens' reset at" in done.stdout
    proc.flush()  # the running process re-reads the file
    assert proc.snapshot() == [] or proc.snapshot()[0]["used"] == 0
    proc.on_usage(record(60))
    proc.flush()
    assert got == ["0.5", "0.5"]
    assert used_total(state, "daily-tokens") == 60


def test_after_a_cli_reset_a_blocking_budget_blocks_as_soon_as_this_process_goes_over(
    make_proc: Any, state: Path
) -> None:
    cap = {**TOKENS_100, "name": "hard", "action": "block"}
    proc = make_proc([cap])
    for _ in range(3):  # the same route, so later calls take the hot path's short loop
        proc.on_usage(record(20))
    proc.flush()
    done = _cli("budget", "reset", "hard", "--state", str(state))
    assert done.returncode == 0, done.stderr
    proc.flush()  # the running process re-reads the file: the window starts over
    proc.before_call(CALL)
    proc.on_usage(record(70))
    proc.before_call(CALL)  # 70 of 100
    proc.on_usage(record(40))  # 110: over, in this process's view at once (no commit, no refresh needed)
    with pytest.raises(llm_otel.BudgetExceeded) as exc:
        proc.before_call(CALL)
    assert (exc.value.used, exc.value.limit) == (110, 100)


def test_cli_status_shows_every_budget_group_window_and_fired_threshold(
    make_proc: Any, state: Path, tmp_path: Path
) -> None:
    proc = make_proc([
        TOKENS_100,
        {"name": "per-tenant", "limit": 1, "period": "1h", "group_by": "tenant", "action": "block"},
    ], clock=None)  # fmt: skip
    proc.on_usage(record(85, attrs={"tenant": "acme"}, cost=0.6))
    proc.on_usage(record(1, attrs={"tenant": "zeta"}, cost=None))
    proc.close()
    cfg = tmp_path / "c.yaml"
    cfg.write_text("budgets:\n  - {name: from-config-only, limit: 5, period: monthly, timezone: Asia/Tokyo}\n")
    done = _cli("budget", "status", "--state", str(state), "--json", "--config", str(cfg))
    assert done.returncode == 0, done.stderr
    entries = {(e["budget"], e["group"]): e for e in json.loads(done.stdout)}
    assert set(entries) == {("daily-tokens", ""), ("per-tenant", "acme"), ("per-tenant", "zeta"),
                            ("from-config-only", "")}  # fmt: skip
    tokens = entries[("daily-tokens", "")]
    assert (tokens["used"], tokens["limit"], tokens["utilization"], tokens["unit"]) == (86, 100, 0.86, "tokens")
    assert [(f["threshold"], f["alerted"]) for f in tokens["fired"]] == [("0.5", False), ("0.7", False),
                                                                          ("0.8", True)]  # fmt: skip
    assert tokens["window_end"][11:] == "00:00:00+00:00" and tokens["forecast"] is None  # forecast: false
    acme, zeta = entries[("per-tenant", "acme")], entries[("per-tenant", "zeta")]
    assert acme["used"] == 0.6 and acme["action"] == "block" and [f["threshold"] for f in acme["fired"]] == ["0.5"]
    assert (zeta["used"], zeta["unpriced_calls"], zeta["calls"]) == (0, 1, 1)
    assert entries[("from-config-only", "")]["window_start"].endswith("+09:00")
    table = _cli("budget", "status", "--state", str(state))
    assert table.returncode == 0
    assert "daily-tokens" in table.stdout and "0.5 (passed), 0.7 (passed), 0.8" in table.stdout
    assert "last 1h" in table.stdout and "[1 unpriced]" in table.stdout


def test_cli_errors_are_one_clear_line(state: Path, tmp_path: Path, make_proc: Any) -> None:
    line = _one_clear_line(_cli("budget", "status", "--state", str(tmp_path / "nope.db")))
    assert "no budget state file at" in line
    make_proc([TOKENS_100]).close()
    assert "no budget named 'weekly' (known: daily-tokens)" in _one_clear_line(
        _cli("budget", "reset", "weekly", "--state", str(state)))  # fmt: skip
    bad = tmp_path / "bad.yaml"
    bad.write_text("budgets:\n  - {name: x, limit: 0, period: daily}\n")
    assert "budgets[x].limit" in _one_clear_line(_cli("budget", "status", "--config", str(bad), "--state", str(state)))
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"definitely not sqlite " * 200)
    assert "is corrupt" in _one_clear_line(_cli("budget", "status", "--state", str(corrupt)))
    assert "no budgets configured" in _one_clear_line(_cli("rules", env={"LLM_OTEL_CONFIG": ""}))
    assert "budget_state is off" in _one_clear_line(_cli("budget", "status", env={"LLM_OTEL_BUDGET_STATE": "off"}))


# --- files that cannot be used --------------------------------------------------------------------------------
def test_corrupt_state_file_warns_and_carries_on_in_memory(
    sim: Any, make_capture: Any, make_proc: Any, state: Path, caplog: pytest.LogCaptureFixture
) -> None:
    garbage = b"this is not an SQLite database\n" * 300
    state.write_bytes(garbage)
    caplog.set_level(logging.WARNING, logger="llm_otel.budget")
    got: list[str] = []
    proc = make_proc([{**TOKENS_100, "limit": 50, "action": "block"}], on_alert=lambda a: got.append(a.threshold))
    assert proc.degraded
    [warning] = [r.getMessage() for r in caplog.records if "budget state file" in r.getMessage()]
    assert str(state) in warning and "is corrupt" in warning and "memory" in warning
    make_capture(processors=[proc])
    client = openai.OpenAI(base_url=sim.openai_base_url, api_key="x")
    for _ in range(3):
        client.chat.completions.create(model="gpt-4o-mini", messages=[], extra_headers=scenario(20))
    with pytest.raises(llm_otel.BudgetExceeded):  # still enforced, from memory
        client.chat.completions.create(model="gpt-4o-mini", messages=[])
    proc.flush()
    assert got == ["0.8", "1.0"]  # 40 of 50 jumped past 0.5 and 0.7
    assert state.read_bytes() == garbage  # never overwritten
    assert len([r for r in caplog.records if "budget state file" in r.getMessage()]) == 1  # said once


def _drop_permission_override() -> None:
    """In the child, before exec: drop CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH and CAP_FOWNER for good."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2, 3):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_read_only_state_file_warns_and_carries_on_in_memory(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    path = shared / "budgets.sqlite3"
    seed = BudgetProcessor([TOKENS_100], state=path, clock=FakeClock(T0))
    seed.on_usage(record(55))
    seed.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    path.chmod(0o444)
    shared.chmod(0o555)
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent(f"""
        import json, logging
        from datetime import datetime, UTC
        logging.basicConfig(level=logging.WARNING)
        from llm_otel.budget.processor import BudgetProcessor
        from test_budget_support import record
        got = []
        p = BudgetProcessor([{TOKENS_100!r}], state={str(path)!r}, clock=lambda: datetime(2025, 6, 2, 11, tzinfo=UTC),
                            on_alert=lambda a: got.append(a.threshold))
        for n in (30, 30, 30):
            p.on_usage(record(n))
        p.flush()
        print(json.dumps({{"degraded": p.degraded, "alerts": got, "used": p.snapshot()[0]["used"]}}))
        p.close()
    """)
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    # root ignores file permissions: without these capabilities it obeys them, as an app user would
    preexec = _drop_permission_override if os.geteuid() == 0 else None
    try:
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env,
                              preexec_fn=preexec)  # fmt: skip
    finally:
        shared.chmod(0o755)
        path.chmod(0o644)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    # it read the file before it found it cannot write it: usage and fired thresholds carry on from there
    assert out == {"degraded": True, "alerts": ["0.8", "1.0"], "used": 145}  # 85 (0.7 passed), 115, 145
    assert f"budget state file {path} cannot be written (read-only)" in done.stderr
    assert "Traceback" not in done.stderr
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_locked_state_file_never_blocks_the_hot_path_and_catches_up_later(
    make_proc: Any, state: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="llm_otel.budget")
    got: list[str] = []
    proc = make_proc([{**TOKENS_100, "limit": 1000}], busy_timeout_s=0.3, retry_s=0.3, refresh_s=0.05,
                     on_alert=lambda a: got.append(a.threshold))  # fmt: skip
    proc.on_usage(record(100))
    proc.flush()
    locker = sqlite3.connect(str(state), isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        slowest = 0.0
        start = time.perf_counter()
        for _ in range(200):
            t = time.perf_counter()
            proc.on_usage(record(2))
            slowest = max(slowest, time.perf_counter() - t)
        elapsed = time.perf_counter() - start
        assert slowest < 0.05 and elapsed < 0.2, (slowest, elapsed)  # a wait on the lock would take 0.3 s
        assert proc.flush(5)
        assert proc.degraded
        assert got == ["0.5"]  # 500 of 1000, decided in memory
        assert any("is locked by another process" in r.getMessage() for r in caplog.records)
        # a second process starting now comes up in memory too, without failing
        late = make_proc([{**TOKENS_100, "limit": 1000}], busy_timeout_s=0.1)
        assert late.degraded
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    deadline = time.monotonic() + 10
    while proc.degraded:
        assert time.monotonic() < deadline, "never went back to the state file"
        proc.flush()
        time.sleep(0.05)
    proc.on_usage(record(200))
    proc.flush()
    assert used_total(state, "daily-tokens") == 700  # the usage counted in memory was added to the file
    assert [t for _, t, _ in fired_rows(state, "daily-tokens")] == ["0.5", "0.7"]
    assert got == ["0.5", "0.7"]
    assert any("is usable again" in r.getMessage() for r in caplog.records)
