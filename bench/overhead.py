"""What instrumentation costs per LLM call: llm-otel against a hand-written floor and the official instrumentation.

One run measures, on the real openai and anthropic SDKs over an in-process transport (no sockets):

- added time per call against the uninstrumented SDK, for five arms (none, floor, official, llm-otel,
  llm-otel+10 budgets) and five workloads (openai chat, stream, async; anthropic message, stream), in
  interleaved rounds: caller wall time, process CPU (background writers included) and metric collection;
- extra RSS of each arm in a fresh process, and llm-otel's RSS growth over many calls;
- the start-up cost of ``import llm_otel; llm_otel.instrument()``.

Usage: python bench/overhead.py [--quick] [--rounds N] [--only SECTIONS] [--json PATH]  (see bench/README.md;
bench/run.sh runs it in its own venv with the official instrumentation installed).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import measure
from arms import ARMS, Telemetry, make_arm
from floor import Floor

HERE = Path(__file__).resolve().parent
SECTIONS = (*measure.WORKLOADS, "memory", "startup")
NON_STREAM = ("chat", "async", "anthropic")
FAST_PCT = f"{measure.FAST_QUANTILE:.0%}".replace("%", "th")
VERDICT = {True: "PASS", False: "FAIL", None: "n/a"}
DASH = "\u2013"  # what a cell shows for an arm that does not cover the workload
CHUNKS = 50
PACKAGES = ("llm-otel", "openai", "anthropic", "httpx", "httpx2", "opentelemetry-sdk",
            "opentelemetry-instrumentation-openai-v2", "opentelemetry-util-genai")  # fmt: skip


def config(quick: bool, rounds: int, sections: list[str]) -> dict[str, Any]:
    """Sizes for a default run (< 8 min on 2 cores) or a quick one (< 90 s)."""
    return {
        "mode": "quick" if quick else "default",
        "sections": sections,
        "rounds": rounds or (6 if quick else 20),
        "block_scale": 0.5 if quick else 1.0,
        "chunks": CHUNKS,
        "rss_calls": 2_000 if quick else 20_000,
        "rss_growth_calls": 6_000 if quick else 100_000,
        "startup_runs": 3 if quick else 5,
    }


# --- environment -----------------------------------------------------------------------------------------------
def _version(pkg: str) -> str | None:
    try:
        return version(pkg)
    except PackageNotFoundError:
        return None


def _git_state(path: Path) -> str | None:
    """Commit (+dirty) of the checkout llm_otel was imported from, when it is one."""
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "--show-toplevel", "HEAD"],
                             capture_output=True, text=True, timeout=10, check=True).stdout.split()  # fmt: skip
        dirty = subprocess.run(["git", "-C", out[0], "status", "--porcelain", "--", "src"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()  # fmt: skip
        return out[1][:12] + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def official_available() -> str | None:
    """None if the official instrumentation can be imported, else why not."""
    try:
        import opentelemetry.instrumentation.openai_v2  # noqa: F401
    except ImportError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def environment() -> dict[str, Any]:
    import llm_otel

    where = Path(llm_otel.__file__).resolve().parent
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "packages": {p: _version(p) for p in PACKAGES},
        "llm_otel_from": str(where),
        "llm_otel_git": _git_state(where),
        "loadavg_start": os.getloadavg(),
    }


# --- report ----------------------------------------------------------------------------------------------------
def _added(d: dict[str, float] | None) -> str:
    if d is None:
        return DASH
    se = d["se"]
    return f"{d['median']:+.1f}" + ("" if se != se else f" ±{se:.1f}")  # se != se: NaN


def _ratio(x: float | None) -> str:
    return DASH if x is None else f"{x:.2f}"


def print_table(title: str, timing: dict[str, Any], clock: str, ratio_key: str, none_key: str) -> None:
    print(f"\n{title}")
    head = ["workload", "none µs", *ARMS[1:], "llm-otel/floor"]
    rows = []
    for s in timing.values():
        arms = s["arms"]
        row = [s["label"], f"{arms['none'][none_key]:.1f}"]
        row += [_added(arms[a][f"{clock}_added"]) if a in arms else DASH for a in ARMS[1:]]
        row.append(_ratio(s[ratio_key]))
        rows.append(row)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    line = lambda cells: "| " + " | ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(  # noqa: E731
        zip(cells, widths, strict=True))) + " |"  # fmt: skip
    print(line(head))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line(r))


def print_timing(timing: dict[str, Any]) -> None:
    print_table("Added µs per call, caller thread wall time (perf_counter): median over rounds of (arm block - none "
                "block)/calls; ± ≈ standard error of the median", timing, "wall", "ratio_wall", "wall_us")  # fmt: skip
    print_table(f"Added µs per call, caller wall, fast estimate: {FAST_PCT} percentile of per-unit times pooled over "
                "rounds, arm - none (insensitive to slow phases of the machine; ± bootstrap)", timing, "fast",
                "ratio_fast", "fast_us")  # fmt: skip
    print_table("Added µs per call, process CPU (all threads), incl. the flush after each block (llm-otel arms: "
                "llm_otel.flush(), the ledger/budget writer)", timing, "cpu", "ratio_cpu", "cpu_us")  # fmt: skip
    print_table("At collection: µs per call of one get_metrics_data() after each block (none: absolute; others: "
                "added); ratio = llm-otel/floor of caller wall + collection", timing, "collect",
                "ratio_wall_with_collection", "collect_us")  # fmt: skip
    print()
    for s in timing.values():
        if s["chunks"]:
            with_wall, with_fast = (s[f"per_chunk_beyond_floor_{c}_with_collection"] for c in ("wall", "fast"))
            print(f"{s['label']}: (llm-otel - floor)/chunks = {s['per_chunk_beyond_floor_wall']:.2f} µs per chunk "
                  f"(wall; fast {s['per_chunk_beyond_floor_fast']:.2f}), {s['per_chunk_beyond_floor_cpu']:.2f} µs "
                  f"(CPU) on the caller's thread; with collection {with_wall:.2f} "
                  f"(wall; fast {with_fast:.2f})")  # fmt: skip
    for s in timing.values():
        if "budgets_wall" in s:
            print(f"{s['label']}: 10 budgets add {s['budgets_wall']:.1f} µs/call (caller; fast "
                  f"{s['budgets_fast']:.1f}) / {s['budgets_cpu']:.1f} µs (CPU incl. background)")  # fmt: skip


def print_sanity(sanity: dict[str, Any]) -> None:
    print("\nSanity check: one openai chat call per arm on fresh in-memory providers")
    for name, row in sanity["arms"].items():
        pts = row["points"]
        names = ", ".join(f"{k} {v}" for k, v in sorted(pts.items()))
        print(f"  {name:<20} {row['spans']} span(s), {row['log_records']} log record(s), "
              f"{sum(pts.values())} metric point(s){': ' + names if names else ''}")  # fmt: skip
    canned = sanity["canned_tokens"]
    for name, row in sanity["arms"].items():
        if "tokens_match_canned" in row:
            verdict = "OK" if row["tokens_match_canned"] else "MISMATCH"
            print(f"  {name} token totals: metrics {row['token_usage_sums']}, session_usage() "
                  f"{row['session_tokens']}; canned usage {canned}: {verdict}")  # fmt: skip


def print_memory(mem: dict[str, Any]) -> None:
    arms = mem["arms"]
    extra = ", ".join(f"{a} {r['extra_mib']:+.1f}" for a, r in arms.items() if a != "none")
    print(f"\nMemory: fresh process per arm, {mem['calls']:,} openai chat calls, VmRSS: none "
          f"{arms['none']['rss_kib'] / 1024:.1f} MiB; extra MiB: {extra}")  # fmt: skip
    if "llm_otel_growth_mib" in mem:
        lo = arms["llm-otel"]
        anon = (lo["after_growth_calls"]["RssAnon"] - lo["after_calls"]["RssAnon"]) / 1024
        print(f"  llm-otel (ledger on) RSS growth {mem['calls']:,} → {mem['growth_calls']:,} calls, ledger flushed "
              f"before each sample: {mem['llm_otel_growth_mib']:+.2f} MiB (anonymous memory {anon:+.2f})")  # fmt: skip


def print_startup(st: dict[str, Any]) -> None:
    print(f"\nStart-up, fresh interpreters, wall, median of {st['runs']}: import llm_otel + instrument(): "
          f"{st['import_instrument_ms']:.1f} ms over `python -c pass`; with a setting to validate "
          f"(instrument(service_name=..., ledger=False)): {st['import_instrument_settings_ms']:.1f} ms; "
          f"instrument() with openai imported first: {st['import_instrument_after_openai_ms']:.1f} ms over "
          "`import openai`")  # fmt: skip


Check = tuple[str, float | None, bool | None]  # (estimate, value, pass; None: undefined, e.g. floor added ≤ 0)


def targets(results: dict[str, Any]) -> dict[str, list[Check]]:
    """The README's targets, for whatever sections ran; timing targets on the block and the fast estimates."""
    out: dict[str, list[Check]] = {}

    def added(arm: dict[str, Any], est: str) -> float:
        # What a call costs at collection (points recorded there, observable callbacks) counts with both
        # estimates: moving work off the caller's thread does not make it free.
        return arm[f"{est}_added"]["median"] + arm["collect_added"]["median"]

    for key, s in results.get("timing", {}).items():
        arms = s["arms"]
        ests = (("block", "wall"), ("fast", "fast"))
        if key in NON_STREAM:
            checks = []
            for label, est in ests:
                f_add, l_add = added(arms["floor"], est), added(arms["llm-otel"], est)
                ratio = l_add / f_add if f_add > 0 else None
                checks.append((label, ratio, None if ratio is None else ratio <= 1.2))
            out[f"{key}: llm-otel added ≤ 1.2x floor (aim 1.1)"] = checks
            if "official" in arms:
                out[f"{key}: llm-otel added < official (µs, llm-otel - official)"] = [
                    (label, added(arms["llm-otel"], est) - added(arms["official"], est),
                     added(arms["llm-otel"], est) < added(arms["official"], est))
                    for label, est in ests
                ]  # fmt: skip
        elif s["chunks"]:
            out[f"{key}: ≤ 2 µs per chunk beyond floor (caller + at collection)"] = [
                (label, s[f"per_chunk_beyond_floor_{est}_with_collection"],
                 s[f"per_chunk_beyond_floor_{est}_with_collection"] <= 2)
                for label, est in ests
            ]  # fmt: skip
        if "budgets_cpu" in s and key in NON_STREAM:
            cpu = s["budgets_cpu"]
            out[f"{key}: 10 budgets ≤ 10 µs/call"] = [("CPU incl. background", cpu, cpu <= 10)]
    mem = results.get("memory")
    if mem and "llm-otel" in mem["arms"]:
        extra = mem["arms"]["llm-otel"]["extra_mib"]
        out["llm-otel extra RSS ≤ 20 MiB"] = [("MiB", extra, extra <= 20)]
        if "llm_otel_growth_mib" in mem:
            growth = mem["llm_otel_growth_mib"]
            out[f"llm-otel RSS growth {mem['calls']:,} → {mem['growth_calls']:,} calls < 2 MiB"] = [
                ("MiB", growth, growth < 2)
            ]
    st = results.get("startup")
    if st:
        ms = st["import_instrument_ms"]
        out["import llm_otel + instrument() < 100 ms"] = [("ms", ms, ms < 100)]
    return out


def print_targets(checks: dict[str, list[Check]]) -> None:
    print(
        "\nTargets (timing: block = the median-of-blocks figure, fast = the fast estimate; non-stream ratios "
        "and the comparison with the official instrumentation add what the call costs at collection to both):"
    )
    for name, results in checks.items():
        cells = "; ".join(f"{label} {'-' if v is None else f'{v:.2f}'} {VERDICT[ok]}" for label, v, ok in results)
        print(f"  {name}: {cells}")


# --- main ------------------------------------------------------------------------------------------------------
def run(cfg: dict[str, Any], json_path: Path) -> dict[str, Any]:
    started = time.perf_counter()
    env = environment()
    missing = official_available()
    arm_names = [a for a in ARMS if a != "official" or missing is None]
    pk = env["packages"]
    print(f"llm-otel overhead bench ({cfg['mode']}; {', '.join(cfg['sections'])}): python {env['python']}, "
          f"{env['cpus']} CPUs, load average {env['loadavg_start'][0]:.2f}")  # fmt: skip
    print(f"  openai {pk['openai']}, anthropic {pk['anthropic']}, opentelemetry-sdk {pk['opentelemetry-sdk']}, "
          f"official instrumentation {pk['opentelemetry-instrumentation-openai-v2']}"
          f"{'' if missing is None else ' NOT USABLE (' + missing + '): official arm skipped'}")  # fmt: skip
    print(f"  llm_otel from {env['llm_otel_from']} (git {env['llm_otel_git']})")
    results: dict[str, Any] = {"config": cfg, "environment": env, "arms": arm_names, "sections_s": {}}
    tmp = Path(tempfile.mkdtemp(prefix="llm-otel-bench-"))
    try:
        t = time.perf_counter()
        results["sanity"] = measure.sanity_check(arm_names, tmp)
        print_sanity(results["sanity"])
        results["sections_s"]["sanity"] = time.perf_counter() - t

        keys = [k for k in measure.WORKLOADS if k in cfg["sections"]]
        if keys:
            results["timing"] = time_all(cfg, keys, arm_names, tmp, results["sections_s"])
            print_timing(results["timing"])
        if "memory" in cfg["sections"]:
            t = time.perf_counter()
            mem_arms = [a for a in ("none", "floor", "official", "llm-otel") if a in arm_names]
            timeout = 60 + cfg["rss_growth_calls"] * 0.01  # generous: 10 ms per call
            results["memory"] = measure.memory(Path(__file__), mem_arms, cfg["rss_calls"], cfg["rss_growth_calls"],
                                               timeout)  # fmt: skip
            print_memory(results["memory"])
            results["sections_s"]["memory"] = time.perf_counter() - t
        if "startup" in cfg["sections"]:
            t = time.perf_counter()
            results["startup"] = measure.startup(cfg["startup_runs"])
            print_startup(results["startup"])
            results["sections_s"]["startup"] = time.perf_counter() - t
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["targets"] = targets(results)
    results["elapsed_s"] = time.perf_counter() - started
    results["loadavg_end"] = os.getloadavg()
    if results["targets"]:
        print_targets(results["targets"])
    print(f"\nElapsed {results['elapsed_s']:.0f} s (" + ", ".join(
        f"{k} {v:.0f} s" for k, v in results["sections_s"].items()) + f"); load average at end "
        f"{results['loadavg_end'][0]:.2f} (other processes on the machine add noise)")  # fmt: skip
    json_path.write_text(json.dumps(results, indent=2, default=str, ensure_ascii=False) + "\n")
    print(f"Results in {json_path}")
    return results


def time_all(cfg: dict[str, Any], keys: list[str], arm_names: list[str], tmp: Path,
             sections_s: dict[str, float]) -> dict[str, Any]:  # fmt: skip
    """Every selected workload, each through every arm, on one shared set of providers."""
    tel = Telemetry.create()
    floor = Floor(tel.tracer_provider, tel.meter_provider)
    loop = asyncio.new_event_loop()
    arms = [make_arm(name, tel, tmp) for name in arm_names]
    timing: dict[str, Any] = {}
    gc.collect()
    gc.freeze()  # set-up objects (SDK modules, models): collections between and inside blocks skip them
    print(f"\nTiming: {cfg['rounds']} interleaved rounds per workload, one block per arm per round")
    try:
        for work in measure.build_workloads(keys, floor, loop, cfg["chunks"], cfg["block_scale"]):
            t = time.perf_counter()
            samples = measure.time_workload(work, arms, cfg["rounds"], tel.reader)
            timing[work.key] = measure.summarize(work, samples)
            sections_s[work.key] = time.perf_counter() - t
            print(f"  {work.label}: {work.calls} calls per block, {sections_s[work.key]:.0f} s", flush=True)
    finally:
        loop.close()
        gc.unfreeze()
    return timing


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer rounds, smaller blocks, fewer memory calls (< 90 s)")
    ap.add_argument("--rounds", type=int, default=0, help="timing rounds per workload (default 20, quick 6)")
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"comma list of sections: {','.join(SECTIONS)}")
    ap.add_argument("--json", type=Path, default=HERE / "results.json", help="where to write the results")
    ap.add_argument("--rss-arm", help=argparse.SUPPRESS)  # internal: the memory subprocess
    ap.add_argument("--rss-calls", type=int, default=20_000, help=argparse.SUPPRESS)
    ap.add_argument("--rss-growth", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    for key in [k for k in os.environ if k.startswith(("OTEL_", "LLM_OTEL_"))]:
        del os.environ[key]  # the bench decides what it measures (config files, exporters, content capture)
    if args.rss_arm:
        print(json.dumps(measure.rss_child(args.rss_arm, args.rss_calls, args.rss_growth)))
        return 0
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    if not only or set(only) - set(SECTIONS) or args.rounds < 0:
        ap.error(f"--only takes a comma list of {', '.join(SECTIONS)}; --rounds must be positive")
    run(config(args.quick, args.rounds, [s for s in SECTIONS if s in only]), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
