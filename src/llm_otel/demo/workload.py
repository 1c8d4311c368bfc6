"""The demo workload: real SDK calls against the simulated provider, instrumented by llm_otel.instrument()."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MSG = [{"role": "user", "content": "Summarize the state of observability in one paragraph."}]

# (weight, kind, model, scenario). Scenarios make the simulated provider behave like a real one at times:
# slow first chunks, cache hits, a 429 with retry-after, the odd 5xx.
MIX: list[tuple[int, str, str, str]] = [
    (30, "chat", "gpt-4o-mini", "in=900,cached=600,cwrite=0,out=120,reasoning=0"),
    (20, "chat_stream", "gpt-4o-mini", "ttft=0.05,slow=0.004,chunks=24,in=700,cached=0,cwrite=0,out=220,reasoning=0"),
    (10, "chat", "gpt-4o", "in=2400,cached=1800,cwrite=0,out=300,reasoning=0"),
    (10, "responses", "o4-mini", "in=1500,cached=0,cwrite=0,out=900,reasoning=640"),
    (10, "responses_stream", "gpt-4.1", "ttft=0.08,slow=0.003,chunks=30,in=1200,cached=0,cwrite=0,out=400,reasoning=0"),
    (8, "embeddings", "text-embedding-3-small", "in=512,cached=0,cwrite=0"),
    (6, "chat", "gpt-4o-mini", "429x1,ra=0.2,in=800,cached=0,cwrite=0,out=90,reasoning=0"),
    (3, "chat", "gpt-4o-mini", "500x1,ra=0.05,in=800,cached=0,cwrite=0,out=90,reasoning=0"),
    (3, "chat", "acme-private-finetune", "in=400,cached=0,cwrite=0,out=50,reasoning=0"),
]


@dataclass
class Progress:
    total: int
    done: int = 0
    errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def tick(self, ok: bool) -> None:
        with self.lock:
            self.done += 1
            self.errors += 0 if ok else 1


def one_call(client: Any, kind: str, model: str, scenario: str) -> None:
    """Make one call of the given kind, consuming streams fully."""
    headers = {"x-sim-scenario": scenario}
    if kind == "chat":
        client.chat.completions.create(model=model, messages=MSG, extra_headers=headers)
    elif kind == "chat_stream":
        for _ in client.chat.completions.create(model=model, messages=MSG, stream=True, extra_headers=headers):
            pass
    elif kind == "responses":
        client.responses.create(model=model, input=MSG[0]["content"], extra_headers=headers)
    elif kind == "responses_stream":
        for _ in client.responses.create(model=model, input=MSG[0]["content"], stream=True, extra_headers=headers):
            pass
    elif kind == "embeddings":
        client.embeddings.create(model=model, input=MSG[0]["content"], extra_headers=headers)
    else:
        raise ValueError(f"unknown call kind {kind!r}")


def run(
    base_url: str,
    calls: int,
    concurrency: int,
    duration: float | None = None,
    seed: int = 7,
    on_progress: Callable[[Progress], None] | None = None,
    jobs: tuple[str, ...] = ("nightly-summaries", "support-bot", "search-indexer"),
) -> Progress:
    """Run ``calls`` calls (or until ``duration`` seconds pass) over ``concurrency`` threads."""
    import openai

    import llm_otel

    client = openai.OpenAI(base_url=base_url + "/v1", api_key="sk-demo", max_retries=2)
    rng = random.Random(seed)
    weights = [m[0] for m in MIX]
    plan = [rng.choices(MIX, weights)[0] for _ in range(calls)]
    progress = Progress(total=calls)
    deadline = time.monotonic() + duration if duration else None
    cursor = iter(range(calls))
    cursor_lock = threading.Lock()

    def worker() -> None:
        while True:
            with cursor_lock:
                i = next(cursor, None)
            if i is None or (deadline is not None and time.monotonic() > deadline):
                return
            _, kind, model, scenario = plan[i]
            ok = True
            try:
                with llm_otel.context(job=jobs[i % len(jobs)], tenant=f"tenant-{i % 3}"):
                    one_call(client, kind, model, scenario)
            except Exception:
                ok = False
            progress.tick(ok)
            if on_progress is not None:
                on_progress(progress)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, concurrency))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return progress


async def run_async_sample(base_url: str, n: int = 5) -> None:
    """A few concurrent async calls, so the demo also exercises the async client."""
    import openai

    client = openai.AsyncOpenAI(base_url=base_url + "/v1", api_key="sk-demo")
    await asyncio.gather(*(client.chat.completions.create(model="gpt-4o-mini", messages=MSG) for _ in range(n)))
    await client.close()
