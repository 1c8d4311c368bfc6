"""Helpers shared by the budget tests (no tests here): an injectable clock, synthetic usage records, DB reads,
and the fixtures ``clock``, ``state`` and ``make_proc`` (loaded for every test through conftest's pytest_plugins)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from llm_otel.budget.processor import BudgetProcessor
from llm_otel.core.result import UsageRecord
from llm_otel.core.usage import Usage

T0 = datetime(2025, 6, 2, 10, 0, tzinfo=UTC)  # a Monday


class FakeClock:
    """``clock=`` for BudgetProcessor: returns ``now``; tests move it with ``advance`` / ``set``."""

    def __init__(self, start: datetime) -> None:
        assert start.tzinfo is not None
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)

    def set(self, when: datetime) -> None:
        self.now = when


def record(
    tokens_in: int | None = 0,
    tokens_out: int | None = 0,
    *,
    cost: float | None = None,
    provider: str = "openai",
    operation: str = "chat",
    model: str | None = "gpt-4o-mini",
    attrs: dict[str, str] | None = None,
    cache_read: int | None = None,
    reasoning: int | None = None,
    span: Any = None,
) -> UsageRecord:
    """A finished call's usage record, as Call would dispatch it."""
    usage: Usage | None = Usage(input_tokens=tokens_in, output_tokens=tokens_out, cache_read_tokens=cache_read,
                  reasoning_tokens=reasoning)  # fmt: skip
    if not usage.known:
        usage = None  # as Call dispatches a call whose usage never arrived
    return UsageRecord(
        timestamp=0.0, provider=provider, operation=operation, request_model=model, response_model=model,
        usage=usage, usage_complete=True, cost_usd=cost, duration_s=0.01, attributes=attrs or {}, span=span,
    )  # fmt: skip


def scenario(tokens_in: int, tokens_out: int = 0) -> dict[str, str]:
    """extra_headers for the simulated provider: exactly this usage, no cache or reasoning."""
    return {"x-sim-scenario": f"in={tokens_in},cached=0,cwrite=0,out={tokens_out},reasoning=0"}


def db_rows(path: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(str(path))
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def fired_rows(path: Path, budget: str) -> list[tuple[str, str, int]]:
    """(group, threshold, alerted) of every fired row of ``budget``, in firing order."""
    return [(g, t, a) for g, t, a in db_rows(
        path, "SELECT grp, threshold, alerted FROM budget_fired WHERE budget = ? ORDER BY fired_at, threshold", budget
    )]  # fmt: skip


def used_total(path: Path, budget: str, group: str | None = None) -> float:
    sql = "SELECT coalesce(sum(used), 0) FROM budget_usage WHERE budget = ?"
    args: tuple[Any, ...] = (budget,)
    if group is not None:
        sql += " AND grp = ?"
        args += (group,)
    return db_rows(path, sql, *args)[0][0]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "budgets.sqlite3"


@pytest.fixture
def make_proc(state: Path, clock: FakeClock) -> Iterator[Any]:
    """Build BudgetProcessors on the test's state file and clock; closes them afterwards."""
    made: list[BudgetProcessor] = []

    def make(budgets: list[dict[str, Any]], **kw: Any) -> BudgetProcessor:
        kw.setdefault("state", state)
        kw.setdefault("clock", clock)
        proc = BudgetProcessor(budgets, **kw)
        made.append(proc)
        return proc

    yield make
    for proc in made:
        proc.close()
