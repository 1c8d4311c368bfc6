"""How the bench measures: interleaved timing rounds, the sanity check, memory and start-up.

Timing: each round runs one block of every arm (the order rotates per round). Per block the arm is switched
on, warmed up, flushed and collected once, then timed:

- wall: ``perf_counter`` around the block, on the calling thread;
- at collection: ``perf_counter`` around one ``InMemoryMetricReader.get_metrics_data()`` right after it;
- CPU: ``process_time`` (every thread) around the block plus around the arm's flush after it
  (``llm_otel.flush()`` for llm-otel arms: the ledger / budget writer's background work; the providers'
  ``force_flush()`` for the others).

All three are divided by the calls in the block. "Added" figures are medians over rounds of the difference
to the ``none`` block of the same round (rounds are close in time, so drift cancels). Every unit inside a
block is timed too: the "fast" estimate is a low quantile of those per-unit times, pooled over rounds, which
is insensitive to the stretches where a small VM runs at half speed (see bench/README.md).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import workloads as wl
from arms import Arm, Telemetry, make_arm
from floor import Floor

_perf = time.perf_counter
_cpu = time.process_time


# --- workloads -------------------------------------------------------------------------------------------------
@dataclass
class Workload:
    """One kind of call: the plain SDK call and the floor's hand-instrumented version of it."""

    key: str
    label: str
    plain: Callable[[], Any]  # one unit (a call, or ASYNC_FANOUT gathered calls)
    floor: Callable[[], Any]
    units: int  # units per timed block
    calls_per_unit: int = 1
    chunks: int = 0  # content chunks per stream
    official: bool = True  # the official instrumentation covers it (openai only)
    warm: int = 3  # warm-up runs before each block
    warm_plain: Callable[[], Any] | None = None  # what a warm-up run is, if not a unit
    warm_floor: Callable[[], Any] | None = None

    @property
    def calls(self) -> int:
        return self.units * self.calls_per_unit


WORKLOADS = ("chat", "stream", "async", "anthropic", "anthropic_stream")


def build_workloads(keys: list[str], floor: Floor, loop: asyncio.AbstractEventLoop, chunks: int,
                    block_scale: float) -> list[Workload]:  # fmt: skip
    """The workloads named in ``keys``; block sizes are for ~0.1-0.2 s per block, times ``block_scale``."""

    def n(units: int) -> int:
        return max(1, round(units * block_scale))

    oc, aoc, ac = wl.openai_client(chunks), wl.async_openai_client(chunks), wl.anthropic_client(chunks)
    every = {
        "chat": Workload("chat", "openai chat", lambda: wl.chat(oc), lambda: floor.chat(oc), units=n(80)),
        "stream": Workload(
            "stream",
            f"openai stream ({chunks} chunks)",
            lambda: wl.stream(oc),
            lambda: floor.stream(oc),
            units=n(10),
            chunks=chunks,
            warm=2,
        ),
        "async": Workload(
            "async",
            f"openai async ({wl.ASYNC_FANOUT} gathered)",
            wl.gathered(loop, lambda: wl.chat_async(aoc)),
            wl.gathered(loop, lambda: floor.chat_async(aoc)),
            units=n(2),
            calls_per_unit=wl.ASYNC_FANOUT,
            warm=1,
            warm_plain=wl.gathered(loop, lambda: wl.chat_async(aoc), 10),
            warm_floor=wl.gathered(loop, lambda: floor.chat_async(aoc), 10),
        ),
        "anthropic": Workload(
            "anthropic",
            "anthropic message",
            lambda: wl.anthropic_message(ac),
            lambda: floor.anthropic_message(ac),
            units=n(100),
            official=False,
        ),
        "anthropic_stream": Workload(
            "anthropic_stream",
            f"anthropic stream ({chunks} deltas)",
            lambda: wl.anthropic_stream(ac),
            lambda: floor.anthropic_stream(ac),
            units=n(40),
            chunks=chunks,
            official=False,
            warm=2,
        ),
    }
    return [every[k] for k in WORKLOADS if k in keys]


# --- timing ----------------------------------------------------------------------------------------------------
FAST_QUANTILE = 0.05  # the "fast" estimate: this quantile of an arm's per-unit times, pooled over rounds


@dataclass
class Samples:
    """Microseconds per call of one arm on one workload: one value per round, and per unit within a round."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    collect: list[float] = field(default_factory=list)
    units: list[list[float]] = field(default_factory=list)


def time_block(arm: Arm, work: Workload, reader: Any) -> tuple[float, float, float, list[float]]:
    """(wall, CPU, at-collection, per-unit wall) microseconds per call for one block of ``work`` under ``arm``."""
    run = work.floor if arm.uses_floor else work.plain
    warm = (work.warm_floor if arm.uses_floor else work.warm_plain) or run
    stamps = [0.0] * (work.units + 1)
    arm.on()
    try:
        for _ in range(work.warm):
            warm()
        arm.flush()
        reader.get_metrics_data()
        gc.collect(1)  # a full collection ran at the start of the round (cheap: the set-up heap is frozen)
        c0 = _cpu()
        stamps[0] = _perf()
        for i in range(1, work.units + 1):
            run()
            stamps[i] = _perf()
        c1 = _cpu()
        reader.get_metrics_data()
        w2 = _perf()
        c2 = _cpu()
        arm.flush()
        c3 = _cpu()
    finally:
        arm.off()
    scale = 1e6 / work.calls
    per_unit = [(b - a) * 1e6 / work.calls_per_unit for a, b in pairwise(stamps)]
    return (stamps[-1] - stamps[0]) * scale, ((c1 - c0) + (c3 - c2)) * scale, (w2 - stamps[-1]) * scale, per_unit


def time_workload(work: Workload, arms: list[Arm], rounds: int, reader: Any) -> dict[str, Samples]:
    """``rounds`` rounds, one block per arm each, the arm order rotating every round."""
    arms = [a for a in arms if work.official or a.name != "official"]
    out = {a.name: Samples() for a in arms}
    for r in range(rounds):
        gc.collect()
        k = r % len(arms)
        for arm in arms[k:] + arms[:k]:
            wall, cpu, collect, units = time_block(arm, work, reader)
            s = out[arm.name]
            s.wall.append(wall)
            s.cpu.append(cpu)
            s.collect.append(collect)
            s.units.append(units)
    return out


def paired(a: list[float], b: list[float]) -> dict[str, float]:
    """Median over rounds of a - b, and a rough standard error of that median (robust sigma from the IQR)."""
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    med = statistics.median(diffs)
    if len(diffs) < 4:
        return {"median": med, "se": float("nan")}
    q1, _, q3 = statistics.quantiles(diffs, n=4)
    return {"median": med, "se": 1.2533 * (q3 - q1) / 1.349 / len(diffs) ** 0.5}


def _pooled(blocks: list[list[float]], q: float = FAST_QUANTILE) -> float:
    values = sorted(x for block in blocks for x in block)
    return values[min(len(values) - 1, int(q * len(values)))]


def fast_added(a: list[list[float]], b: list[list[float]], boot: int = 200) -> dict[str, float]:
    """Pooled low quantile of a minus that of b, with a bootstrap (over rounds) standard error."""
    rng = random.Random(1)
    n = len(a)
    diffs = []
    for _ in range(boot):
        idx = [rng.randrange(n) for _ in range(n)]
        diffs.append(_pooled([a[i] for i in idx]) - _pooled([b[i] for i in idx]))
    return {"median": _pooled(a) - _pooled(b), "se": statistics.stdev(diffs) if n > 1 else float("nan")}


def summarize(work: Workload, samples: dict[str, Samples]) -> dict[str, Any]:
    """Medians per arm, added vs none, and the comparisons the report prints."""
    none = samples["none"]
    arms: dict[str, Any] = {}
    for name, s in samples.items():
        arms[name] = {
            "wall_us": statistics.median(s.wall),
            "fast_us": _pooled(s.units),
            "cpu_us": statistics.median(s.cpu),
            "collect_us": statistics.median(s.collect),
            "wall_added": paired(s.wall, none.wall),
            "fast_added": fast_added(s.units, none.units),
            "cpu_added": paired(s.cpu, none.cpu),
            "collect_added": paired(s.collect, none.collect),
            "samples": {"wall": s.wall, "cpu": s.cpu, "collect": s.collect, "units": s.units},
        }
    out: dict[str, Any] = {"label": work.label, "calls_per_block": work.calls, "chunks": work.chunks, "arms": arms}
    lo, fl = samples["llm-otel"], samples["floor"]
    for clock in ("wall", "fast", "cpu", "collect"):
        if clock == "fast":
            out["llm_otel_minus_floor_fast"] = fast_added(lo.units, fl.units)["median"]
        else:
            out[f"llm_otel_minus_floor_{clock}"] = paired(getattr(lo, clock), getattr(fl, clock))["median"]
        f_add, l_add = arms["floor"][f"{clock}_added"]["median"], arms["llm-otel"][f"{clock}_added"]["median"]
        out[f"ratio_{clock}"] = l_add / f_add if f_add > 0 else None
    f_tot = arms["floor"]["wall_added"]["median"] + arms["floor"]["collect_added"]["median"]
    l_tot = arms["llm-otel"]["wall_added"]["median"] + arms["llm-otel"]["collect_added"]["median"]
    out["ratio_wall_with_collection"] = l_tot / f_tot if f_tot > 0 else None
    if "llm-otel+10 budgets" in samples:
        b = samples["llm-otel+10 budgets"]
        out["budgets_wall"] = paired(b.wall, lo.wall)["median"]
        out["budgets_fast"] = fast_added(b.units, lo.units)["median"]
        out["budgets_cpu"] = paired(b.cpu, lo.cpu)["median"]
    if work.chunks:
        for clock in ("wall", "fast", "cpu"):
            beyond = out[f"llm_otel_minus_floor_{clock}"]
            out[f"per_chunk_beyond_floor_{clock}"] = beyond / work.chunks  # the caller's thread only
            # what llm-otel records at collection (a point per chunk gap) is paid per chunk as well
            with_collection = beyond + out["llm_otel_minus_floor_collect"]
            out[f"per_chunk_beyond_floor_{clock}_with_collection"] = with_collection / work.chunks
    return out


# --- sanity check ----------------------------------------------------------------------------------------------
def count_points(reader: Any) -> dict[str, Any]:
    """Measurements per metric (histogram counts; one per sum / gauge data point) and token sums by type."""
    points: dict[str, int] = {}
    tokens: dict[str, float] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for dp in metric.data.data_points:
                    points[metric.name] = points.get(metric.name, 0) + getattr(dp, "count", 1)
                    if metric.name == "gen_ai.client.token.usage":
                        kind = str(dp.attributes.get("gen_ai.token.type"))
                        tokens[kind] = tokens.get(kind, 0) + dp.sum
    return {"points": points, "token_usage_sums": tokens}


def sanity_check(arm_names: list[str], tmp: Path) -> dict[str, Any]:
    """One openai chat call per arm on fresh in-memory providers: what each arm emits."""
    out: dict[str, Any] = {}
    for name in arm_names:
        tel = Telemetry.create(in_memory=True)
        where = tmp / f"sanity-{len(out)}"
        where.mkdir()
        arm = make_arm(name, tel, where)
        client = wl.openai_client(5)
        floor = Floor(tel.tracer_provider, tel.meter_provider)
        arm.on()
        try:
            (floor.chat if arm.uses_floor else wl.chat)(client)
            arm.flush()
            session = _session_tokens() if name.startswith("llm-otel") else None
        finally:
            arm.off()
        spans = tel.spans.get_finished_spans()
        row = count_points(tel.reader)
        row["spans"] = len(spans)
        row["span_names"] = [s.name for s in spans]
        row["span_attributes"] = sorted({k for s in spans for k in (s.attributes or {})})
        row["log_records"] = len(tel.logs.get_finished_logs())
        if session is not None:
            row["session_tokens"] = session
        out[name] = row
        tel.shutdown()
    canned = {"input": wl.USAGE["prompt_tokens"], "output": wl.USAGE["completion_tokens"]}
    for name, row in out.items():
        if name.startswith("llm-otel"):
            sums = row["token_usage_sums"]
            row["tokens_match_canned"] = all(sums.get(k) == v for k, v in canned.items()) and all(
                row["session_tokens"].get(k) == v for k, v in canned.items()
            )
    return {"arms": out, "canned_tokens": canned}


def _session_tokens() -> dict[str, int]:
    """llm_otel.session_usage() summed over models: tokens by type."""
    import llm_otel

    tokens: dict[str, int] = {}
    for totals in llm_otel.session_usage().values():
        for kind, n in getattr(totals, "tokens", {}).items():
            tokens[kind] = tokens.get(kind, 0) + n
    return tokens


# --- memory ----------------------------------------------------------------------------------------------------
def rss_kib() -> dict[str, int]:
    """VmRSS and its anonymous / file-backed parts (KiB), from /proc/self/status."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0])
    return out


def rss_child(arm_name: str, calls: int, growth_calls: int) -> dict[str, Any]:
    """In a fresh interpreter: ``calls`` openai chat calls under one arm, then VmRSS; optionally continue to
    ``growth_calls`` calls in all and sample again (flushing the arm's writers before each sample)."""
    with tempfile.TemporaryDirectory(prefix="llm-otel-bench-rss-") as tmp:
        tel = Telemetry.create()
        arm = make_arm(arm_name, tel, Path(tmp))
        client = wl.openai_client(5)
        run = Floor(tel.tracer_provider, tel.meter_provider).chat if arm.uses_floor else wl.chat
        out: dict[str, Any] = {"arm": arm_name, "before_calls": rss_kib()}
        arm.on()

        def sample() -> dict[str, int]:
            arm.flush()
            gc.collect()
            return rss_kib()

        t0 = _perf()
        for _ in range(calls):
            run(client)
        out["calls"], out["after_calls"] = calls, sample()
        out["rss_kib"] = out["after_calls"]["VmRSS"]
        if growth_calls > calls:
            for _ in range(growth_calls - calls):
                run(client)
            out["growth_calls"], out["after_growth_calls"] = growth_calls, sample()
            out["rss_kib_growth"] = out["after_growth_calls"]["VmRSS"]
        out["seconds"] = _perf() - t0
        arm.off()
    return out


def memory(script: Path, arms: list[str], calls: int, growth_calls: int, timeout: float) -> dict[str, Any]:
    """One fresh subprocess per arm, one after another (the two vCPUs of a small VM slow each other down, so
    running them side by side saves little); the llm-otel one goes on to ``growth_calls`` calls."""
    out: dict[str, Any] = {"calls": calls, "growth_calls": growth_calls, "arms": {}}
    for arm in arms:
        growth = growth_calls if arm == "llm-otel" else 0
        cmd = [sys.executable, str(script), "--rss-arm", arm, "--rss-calls", str(calls), "--rss-growth", str(growth)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"memory subprocess for {arm} timed out after {timeout:.0f} s") from None
        if proc.returncode != 0:
            raise RuntimeError(f"memory subprocess for {arm} failed:\n{proc.stderr[-3000:]}")
        out["arms"][arm] = json.loads(proc.stdout.strip().splitlines()[-1])
    base = out["arms"]["none"]["rss_kib"]
    for row in out["arms"].values():
        row["extra_mib"] = (row["rss_kib"] - base) / 1024
    lo = out["arms"].get("llm-otel")
    if lo is not None and "rss_kib_growth" in lo:
        out["llm_otel_growth_mib"] = (lo["rss_kib_growth"] - lo["rss_kib"]) / 1024
    return out


# --- start-up --------------------------------------------------------------------------------------------------
STARTUP_SNIPPETS = {
    "pass": "pass",
    # As the README shows it: defaults (no calls are made, so the default ledger file is not touched).
    "instrument": "import llm_otel; llm_otel.instrument()",
    # With a setting to validate (pydantic is loaded for it).
    "instrument_settings": "import llm_otel; llm_otel.instrument(service_name='bench', ledger=False)",
    "openai": "import openai",
    "openai_instrument": "import openai; import llm_otel; llm_otel.instrument()",
}


def clean_env() -> dict[str, str]:
    """The environment without OTEL_* / LLM_OTEL_* settings (the bench decides what it measures), and with
    bytecode caching allowed: an installed package has its ``.pyc`` files, so start-up is timed with them."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("OTEL_", "LLM_OTEL_")) and k != "PYTHONDONTWRITEBYTECODE"}  # fmt: skip


def startup(runs: int, timeout: float = 120) -> dict[str, Any]:
    """Wall time of fresh interpreters running each snippet (interleaved), medians of ``runs``."""
    env = clean_env()
    times: dict[str, list[float]] = {k: [] for k in STARTUP_SNIPPETS}
    for code in STARTUP_SNIPPETS.values():  # warm-up: writes the bytecode caches, fills the OS page cache
        subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, timeout=timeout)
    for _ in range(runs):
        for name, code in STARTUP_SNIPPETS.items():
            t0 = _perf()
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                                  timeout=timeout)  # fmt: skip
            elapsed = (_perf() - t0) * 1e3
            if proc.returncode != 0:
                raise RuntimeError(f"start-up snippet {name!r} failed:\n{proc.stderr[-3000:]}")
            times[name].append(elapsed)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "runs": runs,
        "median_ms": med,
        "all_ms": times,
        "import_instrument_ms": med["instrument"] - med["pass"],
        "import_instrument_settings_ms": med["instrument_settings"] - med["pass"],
        "import_instrument_after_openai_ms": med["openai_instrument"] - med["openai"],
    }
