"""A synthetic history for a ledger: calls spread over past days, for trying ``llm-otel ui`` on a month of data,
for the browser tests' screenshots and for the benchmark of the views.

Rows are written with the ledger's own schema (no SDK calls): 5 models of 4 providers, 4 jobs, 5 tenants, 40 %
streams, 5 % throttled calls, 1 % errors.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from ..sinks.ledger import COLUMNS, connect

MODELS = [("openai", "gpt-4o-mini"), ("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4-5"),
          ("google_genai", "gemini-2.5-flash"), ("mistral", "mistral-small-latest")]  # fmt: skip
JOBS = ["summarize", "classify", "chat", "extract"]
TENANTS = ["acme", "globex", "initech", "umbrella", "hooli"]
INSERT = f"INSERT INTO calls ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"


def fill(path: Path, rows: int, days: float = 30.0, seed: int = 1) -> None:
    """Append ``rows`` calls spread uniformly over the last ``days`` days to the ledger at ``path``."""
    rnd = random.Random(seed)
    now = time.time()
    conn = connect(path)
    batch = []
    for _ in range(rows):
        provider, model = rnd.choice(MODELS)
        job, tenant = rnd.choice(JOBS), rnd.choice(TENANTS)
        stream = rnd.random() < 0.4
        inp, out = rnd.randint(50, 5000), rnd.randint(10, 800)
        duration = rnd.lognormvariate(0, 0.6)
        throttle = 1.5 if rnd.random() < 0.05 else 0.0
        values = {
            "ts": now - days * 86400 * rnd.random(), "provider": provider, "operation": "chat",
            "request_model": model, "response_model": model, "input_tokens": inp, "output_tokens": out,
            "cache_read_tokens": rnd.choice((0, 0, inp // 2)), "cache_write_tokens": 0, "reasoning_tokens": 0,
            "usage_complete": 1, "cost_usd": inp * 1e-6 + out * 4e-6, "duration_s": duration,
            "ttfc_s": duration * 0.2 if stream else None, "tokens_per_second": out / duration,
            "burst_tokens_per_second": out / duration * 1.5 if stream else None, "throttle_wait_s": throttle,
            "retry_wait_s": 0.0, "retries": int(throttle > 0), "error_type": "openai.RateLimitError"
            if rnd.random() < 0.01 else None, "stream_end": "completed" if stream else None, "service": "app",
            "job": job, "task": None, "agent": None, "tenant": tenant,
            "attributes": json.dumps({"job": job, "tenant": tenant}, sort_keys=True),
            "trace_id": f"{rnd.getrandbits(128):032x}",
        }  # fmt: skip
        batch.append(tuple(values[c] for c in COLUMNS))
        if len(batch) == 50_000:
            with conn:
                conn.executemany(INSERT, batch)
            batch.clear()
    with conn:
        conn.executemany(INSERT, batch)
    conn.close()
