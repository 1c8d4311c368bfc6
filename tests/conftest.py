"""Shared fixtures: the simulated provider on 127.0.0.1 and an instrumented, in-memory telemetry capture."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from telemetry_capture import Capture

from llm_otel.demo.simulated_provider import SimulatedProvider

pytest_plugins = ["test_budget_support", "budget_fleet"]  # budget fixtures: clock, state, make_proc, fleet


@pytest.fixture(scope="session")
def sim_server() -> Iterator[SimulatedProvider]:
    with SimulatedProvider() as server:
        yield server


@pytest.fixture
def sim(sim_server: SimulatedProvider) -> SimulatedProvider:
    sim_server.reset()
    return sim_server


@pytest.fixture
def capture(tmp_path: Path) -> Iterator[Capture]:
    cap = Capture(tmp_path / "ledger.sqlite3")
    try:
        yield cap
    finally:
        cap.close()


@pytest.fixture
def make_capture(tmp_path: Path) -> Iterator[object]:
    """Factory for a capture with custom instrument() arguments (one per test)."""
    made: list[Capture] = []

    def make(**kwargs: object) -> Capture:
        cap = Capture(tmp_path / "ledger.sqlite3", **kwargs)
        made.append(cap)
        return cap

    try:
        yield make
    finally:
        for cap in made:
            cap.close()
