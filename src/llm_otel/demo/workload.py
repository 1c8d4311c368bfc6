"""The demo workload: real SDK calls against the simulated provider, instrumented by llm_otel.instrument()."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PROMPT = "Summarize the state of observability in one paragraph."
MSG = [{"role": "user", "content": PROMPT}]

# (weight, kind, model, scenario). Scenarios make the simulated provider behave like a real one at times:
# slow first chunks, cache hits, a 429 with retry-after, the odd 5xx, a model with no public price.
MIX: list[tuple[int, str, str, str]] = [
    (22, "chat", "gpt-4o-mini", "in=900,cached=600,cwrite=0,out=120,reasoning=0"),
    (16, "chat_stream", "gpt-4o-mini", "ttft=0.05,slow=0.004,chunks=24,in=700,cached=0,cwrite=0,out=220,reasoning=0"),
    (8, "chat", "gpt-4o", "in=2400,cached=1800,cwrite=0,out=300,reasoning=0"),
    (8, "responses", "o4-mini", "in=1500,cached=0,cwrite=0,out=900,reasoning=640"),
    (6, "responses_stream", "gpt-4.1", "ttft=0.08,slow=0.003,chunks=30,in=1200,cached=0,cwrite=0,out=400,reasoning=0"),
    (6, "embeddings", "text-embedding-3-small", "in=512,cached=0,cwrite=0"),
    (12, "anthropic", "claude-3-5-haiku-latest", "in=3000,cached=2000,cwrite=500,out=250,reasoning=0"),
    (8, "anthropic_stream", "claude-sonnet-4-5",
     "ttft=0.1,slow=0.005,chunks=20,in=4000,cached=3000,cwrite=0,out=500,reasoning=120"),
    (5, "chat", "gpt-4o-mini", "429x1,ra=0.2,in=800,cached=0,cwrite=0,out=90,reasoning=0"),
    (3, "anthropic", "claude-3-5-haiku-latest", "429x1,ra=0.15,in=900,cached=0,cwrite=0,out=80,reasoning=0"),
    (3, "chat", "gpt-4o-mini", "500x1,ra=0.05,in=800,cached=0,cwrite=0,out=90,reasoning=0"),
    (1, "chat", "gpt-4o-mini", "500x5,ra=0.01,in=800,cached=0,cwrite=0,out=90,reasoning=0"),  # fails for good
    (2, "chat", "acme-private-finetune", "in=400,cached=0,cwrite=0,out=50,reasoning=0"),
]  # fmt: skip


@dataclass
class Progress:
    total: int | None
    done: int = 0
    errors: int = 0
    blocked: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def tick(self, outcome: str) -> None:
        with self.lock:
            self.done += 1
            self.errors += outcome == "error"
            self.blocked += outcome == "blocked"


class Clients:
    """One client per SDK, pointed at the simulated provider."""

    def __init__(self, base_url: str) -> None:
        import anthropic
        import openai

        self.openai = openai.OpenAI(base_url=base_url + "/v1", api_key="sk-demo", max_retries=2)
        self.anthropic = anthropic.Anthropic(base_url=base_url, api_key="sk-ant-demo", max_retries=2)


def one_call(clients: Clients | Any, kind: str, model: str, scenario: str) -> None:
    """Make one call of the given kind through ``clients.openai`` / ``clients.anthropic``, consuming streams
    fully (also the stack end-to-end test's workload)."""
    headers = {"x-sim-scenario": scenario}
    oai, ant = clients.openai, clients.anthropic
    if kind == "chat":
        oai.chat.completions.create(model=model, messages=MSG, extra_headers=headers)
    elif kind == "chat_stream":
        for _ in oai.chat.completions.create(model=model, messages=MSG, stream=True, extra_headers=headers):
            pass
    elif kind == "responses":
        oai.responses.create(model=model, input=PROMPT, extra_headers=headers)
    elif kind == "responses_stream":
        for _ in oai.responses.create(model=model, input=PROMPT, stream=True, extra_headers=headers):
            pass
    elif kind == "embeddings":
        oai.embeddings.create(model=model, input=PROMPT, extra_headers=headers)
    elif kind == "anthropic":
        ant.messages.create(model=model, max_tokens=1024, messages=MSG, extra_headers=headers)
    elif kind == "anthropic_stream":
        with ant.messages.stream(model=model, max_tokens=1024, messages=MSG, extra_headers=headers) as stream:
            stream.get_final_message()
    else:
        raise ValueError(f"unknown call kind {kind!r}")


def run(
    base_url: str,
    calls: int | None,
    concurrency: int,
    duration: float | None = None,
    rate: float | None = None,
    seed: int = 7,
    on_progress: Callable[[Progress], None] | None = None,
    jobs: tuple[str, ...] = ("nightly-summaries", "support-bot", "search-indexer"),
    stop: threading.Event | None = None,
) -> Progress:
    """Run ``calls`` calls (None: until ``duration`` passes or ``stop`` is set) over ``concurrency`` threads,
    at most ``rate`` calls per second overall when given."""
    import llm_otel

    clients = Clients(base_url)
    rng = random.Random(seed)
    rng_lock = threading.Lock()
    weights = [m[0] for m in MIX]
    progress = Progress(total=calls)
    deadline = time.monotonic() + duration if duration else None
    stop = stop or threading.Event()
    counter = iter(range(calls) if calls is not None else iter(int, 1))
    next_slot = [time.monotonic()]

    def claim() -> int | None:
        with rng_lock:
            i = next(counter, None)
            if i is None or stop.is_set() or (deadline is not None and time.monotonic() > deadline):
                return None
            if rate:
                next_slot[0] = max(next_slot[0] + 1.0 / rate, time.monotonic())
            return i if isinstance(i, int) else 0

    def worker() -> None:
        while True:
            i = claim()
            if i is None:
                return
            if rate:
                delay = next_slot[0] - time.monotonic()
                if delay > 0 and stop.wait(delay):
                    return
            with rng_lock:
                _, kind, model, scenario = rng.choices(MIX, weights)[0]
                job = jobs[rng.randrange(len(jobs))]
                tenant = f"tenant-{rng.randrange(3)}"
            outcome = "ok"
            try:
                with llm_otel.context(job=job, tenant=tenant):
                    one_call(clients, kind, model, scenario)
            except llm_otel.CallBlocked:
                outcome = "blocked"
            except Exception:
                outcome = "error"
            progress.tick(outcome)
            if on_progress is not None:
                on_progress(progress)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, concurrency))]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(timeout=0.5)
    return progress


async def run_async_sample(base_url: str, n: int = 5) -> int:
    """``n`` concurrent async calls per SDK, so the demo also exercises the async clients; returns how many
    calls it made."""
    import anthropic
    import openai

    oai = openai.AsyncOpenAI(base_url=base_url + "/v1", api_key="sk-demo")
    ant = anthropic.AsyncAnthropic(base_url=base_url, api_key="sk-ant-demo")
    made = await asyncio.gather(
        *(oai.chat.completions.create(model="gpt-4o-mini", messages=MSG) for _ in range(n)),
        *(ant.messages.create(model="claude-3-5-haiku-latest", max_tokens=256, messages=MSG) for _ in range(n)),
    )
    await oai.close()
    await ant.close()
    return len(made)
