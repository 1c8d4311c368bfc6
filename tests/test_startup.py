"""``import llm_otel; llm_otel.instrument()`` with nothing to export stays cheap: no OpenTelemetry import, no
thread, no file, until an SDK is instrumented; then everything works as if it had been built at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from llm_otel.demo.simulated_provider import SimulatedProvider

PROBE = """
import json, sys, threading
import llm_otel
llm_otel.instrument(ledger=sys.argv[2])
before = {"otel": sorted(m for m in sys.modules if m.startswith("opentelemetry"))[:3],
          "threads": threading.active_count(), "ledger_exists": __import__("os").path.exists(sys.argv[2])}
import openai
client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="sk-test")
client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
llm_otel.flush()
after = {"threads": threading.active_count(), "session": sum(t.calls for t in llm_otel.session_usage().values())}
print(json.dumps({"before": before, "after": after}))
"""


def test_instrument_alone_loads_nothing_until_an_sdk_is_instrumented(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_OTEL_", "OTEL_"))}
    ledger = tmp_path / "ledger.sqlite3"
    with SimulatedProvider() as sim:
        out = subprocess.run([sys.executable, "-c", PROBE, sim.base_url, str(ledger)], capture_output=True,
                             text=True, env=env, timeout=120, check=True)  # fmt: skip
    result = json.loads(out.stdout)
    assert result["before"] == {"otel": [], "threads": 1, "ledger_exists": False}
    assert result["after"]["session"] == 1 and result["after"]["threads"] >= 2  # the writer runs once needed
    import sqlite3

    assert sqlite3.connect(ledger).execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 1
