"""A fleet of real processes making real openai SDK calls into shared budgets (a Redis store or one state
file): the app they run, and the helpers that start, release and finish them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest


def noon_zone() -> str:
    """A fixed-offset zone where it is about noon now, so the daily window cannot roll over mid-test."""
    offset = 12 - datetime.now(UTC).hour  # -11 .. 12
    return f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}" if offset else "UTC"


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)


APP = """
import json, os, sys, time
import llm_otel, openai

base_url, store, out, ready, go, tz, calls, pause, stop = sys.argv[1:]
where = {"budget_store": store} if "://" in store else {"budget_state": store}  # Redis URL or state file
sink = open(out, "w")

def on_alert(a):
    sink.write(json.dumps({"pid": os.getpid(), "budget": a.budget, "group": a.group, "threshold": a.threshold,
                           "used": a.used}) + "\\n")
    sink.flush()

llm_otel.instrument(
    ledger=False, on_alert=on_alert, **where,
    budgets=[
        {"name": "fleet", "limit": 18000, "unit": "tokens", "period": "daily", "timezone": tz, "forecast": False},
        {"name": "per-tenant", "limit": 9000, "unit": "tokens", "period": "1d", "group_by": "tenant"},
    ],
)
client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0)
open(ready, "w").close()
while not os.path.exists(go):
    time.sleep(0.002)
slowest = 0.0
for i in range(int(calls)):
    with llm_otel.context(tenant="t%d" % (i % 2)):
        t0 = time.perf_counter()
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        if i:  # the first call imports the SDK's lazy modules
            slowest = max(slowest, time.perf_counter() - t0)
    time.sleep(float(pause))
# Held alerts are claimed once the store is back and the others have re-asserted theirs: wait for that.
processor = llm_otel._api._budgets
deadline = time.monotonic() + 20
while time.monotonic() < deadline and (processor.degraded or not os.path.exists(stop)):
    llm_otel.flush()
    time.sleep(0.05)
llm_otel.uninstrument()
print("DONE", json.dumps({"slowest": slowest, "degraded": processor.degraded}))
"""


def fleet_budgets(tz: str) -> list[dict[str, Any]]:
    """APP's budgets, as ``shared`` must know them to read their keys."""
    return [
        {"name": "fleet", "limit": 18000, "unit": "tokens", "period": "daily", "timezone": tz, "forecast": False},
        {"name": "per-tenant", "limit": 9000, "unit": "tokens", "period": "1d", "group_by": "tenant"},
    ]  # fmt: skip


class Fleet:
    """N processes running APP against one store (a Redis URL or a state file); ``go()`` starts their calls at
    once."""

    def __init__(self, tmp: Path, base_url: str, store: str, n: int, calls: int, pause: float) -> None:
        self.tmp, self.n = tmp, n
        self.tz = noon_zone()  # once: the hour may turn during the test
        app = tmp / "app.py"
        app.write_text(textwrap.dedent(APP))
        self.go_file, self.stop_file = tmp / "go", tmp / "stop"
        self.procs = []
        for i in range(n):
            args = [base_url, store, str(tmp / f"alerts-{i}.jsonl"), str(tmp / f"ready-{i}"), str(self.go_file),
                    self.tz, str(calls), str(pause), str(self.stop_file)]  # fmt: skip
            self.procs.append(subprocess.Popen([sys.executable, str(app), *args], stdout=subprocess.PIPE,
                                               stderr=subprocess.PIPE, text=True))  # fmt: skip
        wait_for(lambda: all((tmp / f"ready-{i}").exists() for i in range(n)) or any(
            p.poll() is not None for p in self.procs), 60, "the processes to start")  # fmt: skip
        assert all(p.poll() is None for p in self.procs), [p.communicate() for p in self.procs]

    def go(self) -> None:
        self.go_file.touch()

    def finish(self, timeout: float = 90) -> list[dict[str, Any]]:
        self.stop_file.touch()
        results = []
        for p in self.procs:
            out, err = p.communicate(timeout=timeout)
            assert p.returncode == 0 and "DONE" in out, err
            results.append({**json.loads(out.split("DONE", 1)[1]), "stderr": err})
        return results

    def alerts(self) -> list[dict[str, Any]]:
        return [json.loads(line) for i in range(self.n) for line in (self.tmp / f"alerts-{i}.jsonl").open()]

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Callable[..., Fleet]]:
    made: list[Fleet] = []

    def make(*args: Any, **kw: Any) -> Fleet:
        f = Fleet(tmp_path, *args, **kw)
        made.append(f)
        return f

    yield make
    for f in made:
        f.kill()
