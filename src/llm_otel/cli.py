"""The ``llm-otel`` command: demo (the main job) and doctor."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import __version__


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(q * (len(values) - 1))))
    return values[k]


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(headers, widths, strict=True)))
    out = [line, "-" * len(line)]
    for r in rows:
        out.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    return "\n".join(out)


def demo_report(ledger_file: Path) -> str:
    """Per provider/model summary of a ledger: what the demo recorded."""
    from .ledger import read_rows

    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in read_rows(ledger_file):
        groups.setdefault((row["provider"], row["response_model"] or row["request_model"] or "?"), []).append(row)
    rows = []
    for (provider, model), items in sorted(groups.items()):

        def total(col: str, items: list[dict[str, Any]] = items) -> int:
            return sum(r[col] or 0 for r in items)

        costs = [r["cost_usd"] for r in items if r["cost_usd"] is not None]
        ttfc = [r["ttfc_s"] for r in items if r["ttfc_s"] is not None]
        durations = [r["duration_s"] for r in items]
        rows.append([
            f"{provider}/{model}", str(len(items)), str(sum(1 for r in items if r["error_type"])),
            str(total("input_tokens")), str(total("cache_read_tokens")), str(total("output_tokens")),
            str(total("reasoning_tokens")), f"{sum(costs):.4f}" if costs else "unpriced",
            _fmt(_percentile(durations, 0.5), ".2f"), _fmt(_percentile(durations, 0.95), ".2f"),
            _fmt(_percentile(ttfc, 0.5), ".2f"), f"{sum(r['throttle_wait_s'] for r in items):.2f}",
            str(total("retries")),
        ])  # fmt: skip
    headers = ["provider/model", "calls", "err", "in", "cache_rd", "out", "reason", "cost $",
               "p50 s", "p95 s", "ttfc s", "thrtl s", "retry"]  # fmt: skip
    return _table(headers, rows)


def cmd_demo(args: argparse.Namespace) -> int:
    import llm_otel

    from .demo.simulated_provider import SimulatedProvider
    from .demo.workload import run, run_async_sample

    ledger_file = Path(args.ledger) if args.ledger else Path(tempfile.mkdtemp(prefix="llm-otel-demo-")) / "ledger.db"
    llm_otel.instrument(endpoint=args.otlp, ledger=str(ledger_file), service_name="llm-otel-demo")
    start = time.monotonic()
    with SimulatedProvider(latency=0.01) as sim:
        print(f"llm-otel {__version__} demo: simulated provider on {sim.base_url}; ledger {ledger_file}")
        if args.otlp:
            print(f"exporting OTLP to {args.otlp}")

        shown: set[int] = set()

        def show(p: Any) -> None:
            tty = sys.stdout.isatty()
            step = p.done * 10 // max(1, p.total)
            if tty or (step not in shown and (shown.add(step) or True)):
                width = 30
                filled = int(width * p.done / max(1, p.total))
                end = "\n" if p.done == p.total else "\r"
                print(f"  [{'#' * filled}{'.' * (width - filled)}] {p.done}/{p.total} calls, {p.errors} errors",
                      end=end if sys.stdout.isatty() else "\n", flush=True)  # fmt: skip

        progress = run(sim.base_url, args.calls, args.concurrency, args.duration, on_progress=show)
        import asyncio

        asyncio.run(run_async_sample(sim.base_url))
        served = sim.served_usage()
    llm_otel.flush()
    print()
    print(demo_report(ledger_file))
    served_in = sum(v["input"] for v in served.values())
    served_out = sum(v["output"] for v in served.values())
    session = llm_otel.session_usage()
    rec_in = sum(t.tokens.get("input", 0) for t in session.values())
    rec_out = sum(t.tokens.get("output", 0) for t in session.values())
    match = (served_in, served_out) == (rec_in, rec_out)
    print(f"\nprovider reported {served_in} input / {served_out} output tokens; "
          f"llm-otel recorded {rec_in} / {rec_out}  ({'match' if match else 'MISMATCH'})")  # fmt: skip
    print(f"{progress.done} calls in {time.monotonic() - start:.1f} s")
    llm_otel.uninstrument()
    return 0 if match else 1


def cmd_doctor(args: argparse.Namespace) -> int:
    import importlib.metadata as md

    from .config import ConfigError, load_settings
    from .instrumentors import ALL
    from .instrumentors._base import installed
    from .ledger import default_path
    from .pricing import pricing_data_version

    ok = True
    print(f"llm-otel {__version__}")
    for cls in ALL:
        dist = cls.dependencies[0].split()[0]
        version = md.version(dist) if installed(cls.module) else "not installed"
        print(f"  {dist:<14} {version}")
    try:
        settings = load_settings()
        print(f"configuration: valid; telemetry to {settings.endpoint or 'nowhere (embedded ledger only)'}")
        ledger = settings.ledger
        print(f"ledger: {'off' if ledger is False else (default_path() if ledger is True else ledger)}")
    except ConfigError as exc:
        print(f"configuration: INVALID: {exc}")
        ok = False
    print(f"pricing data: genai-prices {pricing_data_version()}")
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-otel", description="Observe and govern LLM calls with OpenTelemetry.")
    parser.add_argument("--version", action="version", version=f"llm-otel {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run real SDK calls against a simulated provider and show what was recorded")
    demo.add_argument("--calls", type=_positive_int, default=200)
    demo.add_argument("--concurrency", type=_positive_int, default=8)
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    demo.add_argument("--otlp", default=None, metavar="URL", help="also export OTLP/HTTP to this collector")
    demo.add_argument("--ledger", default=None, help="ledger file (default: a new temporary file)")
    demo.set_defaults(func=cmd_demo)
    doctor = sub.add_parser("doctor", help="installed SDKs, configuration, ledger and pricing data")
    doctor.set_defaults(func=cmd_doctor)
    from .budget.cli import add_parsers as add_budget_parsers

    add_budget_parsers(sub)  # budget status | budget reset | rules
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from .config import ConfigError

        kind = "configuration error" if isinstance(exc, ConfigError) else "error"
        print(f"llm-otel: {kind}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
