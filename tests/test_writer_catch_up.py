"""A ledger that falls behind: the caller waits for the writer once the queue is long, and never for long.

The writer thread can be kept from the GIL for seconds by an app thread that is busy and drops the GIL briefly
and often (see ``sinks/writer.py``). Here the writer is made to sleep an hour between rounds instead, so that
only the caller's catch-up writes rows.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import openai
import pytest

import llm_otel
from llm_otel.sinks import ledger as ledger_mod
from llm_otel.sinks import writer as writer_mod

MSG = [{"role": "user", "content": "hello"}]
BEHIND = 20  # CATCH_UP_AT for these tests


@pytest.fixture
def sleepy_writer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger_mod.Ledger, "interval_s", 3600.0)
    monkeypatch.setattr(writer_mod, "CATCH_UP_AT", BEHIND)


def _rows_on_disk(path: Path) -> int:
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute("SELECT count(*) FROM calls").fetchone()[0]
    except sqlite3.OperationalError:  # the table is not created yet
        return 0
    finally:
        conn.close()


def _calls(sim: Any, n: int) -> None:
    client = openai.OpenAI(base_url=sim.openai_base_url, api_key="x")
    for _ in range(n):
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG)


def test_the_call_that_puts_the_ledger_far_behind_waits_until_it_is_written(
    sim: Any, make_capture: Any, sleepy_writer: None
) -> None:
    cap = make_capture()
    llm_otel.flush()  # one round now; the next is an hour away
    _calls(sim, BEHIND - 1)
    assert _rows_on_disk(cap.ledger_path) == 0  # queued: the writer sleeps
    _calls(sim, 1)
    assert _rows_on_disk(cap.ledger_path) == BEHIND  # the BEHIND-th call waited for all of them
    _calls(sim, 3)
    assert _rows_on_disk(cap.ledger_path) == BEHIND
    llm_otel.flush()
    assert _rows_on_disk(cap.ledger_path) == BEHIND + 3
    assert len(cap.ledger_rows()) == BEHIND + 3


def test_a_stuck_ledger_costs_one_bounded_wait_and_loses_no_row(
    sim: Any, make_capture: Any, sleepy_writer: None, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    monkeypatch.setattr(writer_mod, "CATCH_UP_TIMEOUT_S", 0.3)
    cap = make_capture()
    _calls(sim, 1)
    llm_otel.flush()  # the ledger file exists; the next round is an hour away
    blocker = sqlite3.connect(cap.ledger_path, timeout=1)
    blocker.execute("BEGIN EXCLUSIVE")  # the writer now waits on SQLite's busy timeout (10 s)
    try:
        with caplog.at_level(logging.WARNING, logger="llm_otel"):
            started = time.monotonic()
            _calls(sim, 3 * BEHIND)
            took = time.monotonic() - started
        stuck = [r for r in caplog.records if "did not catch up" in r.getMessage()]
        assert len(stuck) == 1, [r.getMessage() for r in caplog.records]
        assert "usage ledger" in stuck[0].getMessage()
        assert took < 5, f"{3 * BEHIND} calls took {took:.1f} s behind a stuck ledger"
    finally:
        blocker.rollback()
        blocker.close()
    llm_otel.flush()
    assert len(cap.ledger_rows()) == 1 + 3 * BEHIND


class _Sink:
    """A minimal writer client: remembers what it was given."""

    name = "a test sink"
    interval_s = 0.05
    batch_max = 100
    max_backlog = 1_000

    def __init__(self) -> None:
        self.written: list[int] = []

    def write(self, batch: list[int]) -> None:
        self.written.extend(batch)

    def tick(self, force: bool) -> None:
        pass

    def closed(self) -> None:
        pass


def test_a_flush_after_the_writer_stopped_returns_at_once() -> None:
    writer = writer_mod.Writer("test-writer")
    sink = _Sink()
    lane = writer.lane(sink)
    for i in range(5):
        lane.put(i)
    writer.close()  # writes what is queued and stops the thread (as at exit or uninstrument())
    assert sink.written == [0, 1, 2, 3, 4]
    started = time.monotonic()
    assert writer.flush(timeout=5.0)  # nothing left: not a wait for a thread that is gone
    assert time.monotonic() - started < 1.0
