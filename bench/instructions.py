"""Instructions per call under callgrind: a count that the machine's noise does not move.

    .venv-bench/bin/python bench/instructions.py                      # openai chat: none, floor, official, llm-otel
    .venv-bench/bin/python bench/instructions.py --only chat,stream --arms none,floor,llm-otel --calls 50

(``bash bench/run.sh`` creates ``.venv-bench``.) Needs ``valgrind`` on the PATH (Debian: ``apt-get install
valgrind``). Each (workload, arm) runs in a process of its own under ``valgrind --tool=callgrind``, which counts
the instructions of every thread. The process sets the arm up, warms it, then makes ``--calls`` calls, then
collects the metrics once, then flushes (``llm_otel.flush()`` drains the ledger writer; the other arms flush
their providers). ``os.getppid()`` marks the boundaries and callgrind dumps its counters at each, so the calls,
the collection and the flush are counted apart.

Valgrind runs code some 50 times slower, so the ledger writer's 0.25 s timer would write after every few
calls, which real time never does: the child sets the writer's interval to an hour and the rows are written
in one batch at the flush, as calls arriving within 0.25 s would be.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKLOADS = ("chat", "stream", "anthropic", "anthropic_stream")
ARMS = ("none", "floor", "official", "llm-otel")
#: Not run by default: llm-otel with the bench's 10 budgets; "llm-otel-lean", llm-otel with
#: ``detail_histograms=False``; and "floor+ext", the floor plus the three points per call that llm-otel records
#: at collection (request cost, throttle wait, tokens per second, with the floor's attributes): the least any
#: instrumentation pays that keeps those histograms (docs/decisions.md).
MORE_ARMS = ("llm-otel+10 budgets", "llm-otel-lean", "floor+ext")
OPENAI_ONLY = {"official"}
_TOTAL = re.compile(r"^(?:summary|totals):\s+(\d+)", re.MULTILINE)


def child(arm_name: str, workload: str, calls: int) -> None:
    """Runs under callgrind: set up, warm up, then the two counted segments."""
    sys.path.insert(0, str(HERE))
    import arms
    import workloads as w
    from floor import Floor

    telemetry = arms.Telemetry.create()
    anthropic = workload.startswith("anthropic")
    client = (w.anthropic_client if anthropic else w.openai_client)(50)
    plain = {"chat": w.chat, "stream": w.stream, "anthropic": w.anthropic_message,
             "anthropic_stream": w.anthropic_stream}[workload]  # fmt: skip
    if arm_name.startswith("floor"):
        floor = Floor(telemetry.tracer_provider, telemetry.meter_provider, extension_points=arm_name == "floor+ext")
        method = getattr(floor, "anthropic_message" if workload == "anthropic" else workload)

        def call() -> None:
            method(client)

        flush = telemetry.force_flush
    else:

        def call() -> None:
            plain(client)

        if arm_name.startswith("llm-otel"):
            from llm_otel.sinks.ledger import Ledger

            Ledger.interval_s = 3600.0  # see the module docstring
        arm = arms.make_arm(arm_name, telemetry, Path(tempfile.mkdtemp()))
        arm.on()
        if arm_name.startswith("llm-otel"):
            import llm_otel

            for proc in llm_otel.instrument().processors:  # instrument() again returns the running runtime
                if hasattr(proc, "interval_s"):
                    proc.interval_s = 3600.0  # the budget state commits at the flush too
        flush = arm.flush
    for _ in range(5):
        call()
    telemetry.reader.get_metrics_data()
    flush()
    gc.collect()
    gc.freeze()  # as the timing bench does: the set-up heap is not scanned by the collections that follow
    os.getppid()  # dump 1 ends: set-up and warm-up
    for _ in range(calls):
        call()
    os.getppid()  # dump 2: the calls
    telemetry.reader.get_metrics_data()
    os.getppid()  # dump 3: one collection
    flush()
    os.getppid()  # dump 4: the flush


def measure(arm: str, workload: str, calls: int, python: str) -> tuple[int, ...]:
    """Instructions of the calls, of the collection and of the flush, each per call."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        cmd = ["valgrind", "--tool=callgrind", "--dump-before=os_getppid", f"--callgrind-out-file={out}", python,
               __file__, "--child", arm, workload, str(calls)]  # fmt: skip
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        totals = []
        for part in (2, 3, 4):
            text = (Path(tmp) / f"cg.out.{part}").read_text(errors="replace")
            totals.append(int(_TOTAL.search(text).group(1)) // calls)  # type: ignore[union-attr]
        return tuple(totals)


def main() -> None:
    ap = argparse.ArgumentParser(description="Instructions per call under callgrind (see the module docstring).")
    ap.add_argument("--calls", type=int, default=100, help="calls counted per arm (default 100)")
    ap.add_argument("--only", default="chat", help=f"comma list of {','.join(WORKLOADS)} (default chat)")
    ap.add_argument("--arms", default=",".join(ARMS), help=f"comma list of {','.join(ARMS + MORE_ARMS)}")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes at once (default: CPUs)")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    if shutil.which("valgrind") is None:
        sys.exit("bench/instructions.py: valgrind is not on the PATH (Debian: apt-get install valgrind)")
    workloads = [x for x in args.only.split(",") if x]
    arm_names = [x for x in args.arms.split(",") if x]
    for name in (*workloads, *arm_names):
        if name not in (*WORKLOADS, *ARMS, *MORE_ARMS):
            sys.exit(f"bench/instructions.py: unknown workload or arm {name!r}")
    if "none" not in arm_names:
        arm_names.insert(0, "none")
    jobs = [(a, wl) for wl in workloads for a in arm_names if not (a in OPENAI_ONLY and wl.startswith("anthropic"))]
    print(f"callgrind, {args.calls} calls per arm, {len(jobs)} runs, {args.jobs} at a time", flush=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        results = dict(zip(jobs, pool.map(lambda j: measure(*j, args.calls, sys.executable), jobs), strict=True))
    print("\nInstructions per call added over the uninstrumented SDK (thousands); ratio = arm / floor")
    print("| workload | arm | calls | collection | flush | total | total / floor |")
    print("|---|---|---|---|---|---|---|")
    for wl in workloads:
        base = results[("none", wl)]
        print(f"| {wl} | none | {base[0] / 1000:,.0f} (absolute) | {base[1] / 1000:,.1f} | {base[2] / 1000:,.1f} | | |")
        floor = results.get(("floor", wl))
        floor_total = sum(floor) - sum(base) if floor else None
        for a in arm_names:
            if a == "none" or (a, wl) not in results:
                continue
            added = [x - b for x, b in zip(results[(a, wl)], base, strict=True)]
            total = sum(added)
            ratio = f"{total / floor_total:.2f}" if floor_total else "-"
            cells = " | ".join(f"{x / 1000:+,.0f}" for x in (*added, total))
            print(f"| {wl} | {a} | {cells} | {ratio} |")


if __name__ == "__main__":
    main()
