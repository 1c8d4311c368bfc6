"""The ``llm-otel`` command: demo (the main job), report, run, doctor, budget and rules.

Every error is one line on stderr and a non-zero exit code, never a traceback. ``--format json`` output is
stable (docs/cli.md).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import __version__
from .tables import count, fmt, group_name, money, percentile, table


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


# --- demo ----------------------------------------------------------------------------------------------------
def _rows_by_model(ledger_file: Path) -> dict[str, list[dict[str, Any]]]:
    from ..sinks.ledger import read_rows

    groups: dict[str, list[dict[str, Any]]] = {}
    for row in read_rows(ledger_file):
        model = row["response_model"] or row["request_model"]
        groups.setdefault(group_name(row["provider"], model), []).append(row)
    return dict(sorted(groups.items()))


def demo_summary(ledger_file: Path) -> list[dict[str, Any]]:
    """Per provider/model figures of a ledger (what the demo prints and returns as JSON)."""
    out = []
    for name, rows in _rows_by_model(ledger_file).items():

        def total(col: str, rows: list[dict[str, Any]] = rows) -> int:
            return sum(r[col] or 0 for r in rows)

        def values(col: str, rows: list[dict[str, Any]] = rows) -> list[float]:
            return [r[col] for r in rows if r[col] is not None]

        costs = values("cost_usd")
        out.append({
            "model": name, "calls": len(rows), "errors": sum(1 for r in rows if r["error_type"]),
            "tokens": {k: total(f"{k}_tokens") for k in ("input", "output", "cache_read", "cache_write", "reasoning")},
            "cost_usd": sum(costs) if costs else None,
            "duration_p50_s": percentile(values("duration_s"), 0.5),
            "duration_p95_s": percentile(values("duration_s"), 0.95),
            "ttfc_p50_s": percentile(values("ttfc_s"), 0.5),
            "tokens_per_second_p50": percentile(values("tokens_per_second"), 0.5),
            "burst_tokens_per_second_p50": percentile(values("burst_tokens_per_second"), 0.5),
            "throttle_wait_s": sum(values("throttle_wait_s")), "retries": total("retries"),
        })  # fmt: skip
    return out


def render_demo_tables(summary: list[dict[str, Any]]) -> str:
    usage = [[s["model"], str(s["calls"]), str(s["errors"]), count(s["tokens"]["input"]),
              count(s["tokens"]["cache_read"]), count(s["tokens"]["output"]), count(s["tokens"]["reasoning"]),
              money(s["cost_usd"]) if s["cost_usd"] is not None else "unpriced"] for s in summary]  # fmt: skip
    timing = [[s["model"], fmt(s["duration_p50_s"], ".2f"), fmt(s["duration_p95_s"], ".2f"),
               fmt(s["ttfc_p50_s"], ".2f"), fmt(s["tokens_per_second_p50"], ".0f"),
               fmt(s["burst_tokens_per_second_p50"], ".0f"), f"{s['throttle_wait_s']:.2f}", str(s["retries"])]
              for s in summary]  # fmt: skip
    return "\n\n".join([
        table(["provider/model", "calls", "err", "in", "cache_rd", "out", "reason", "cost $"], usage, width=80),
        table(["provider/model", "p50 s", "p95 s", "ttfc s", "tok/s", "burst", "thrtl s", "retry"], timing,
              width=80),
    ])  # fmt: skip


def _demo_budgets(calls: int | None, rate: float | None, forever: bool) -> list[dict[str, Any]]:
    """A demo budget sized so that its 50/70/80/100 % alerts fire during the run (~$0.002 per demo call)."""
    per_call = 0.002
    if forever:
        expected = (rate or 2.0) * 600 * per_call
        return [{"name": "demo-10min-spend", "limit": round(expected * 0.8, 4), "unit": "USD", "period": "10m"}]
    expected = (calls or 200) * per_call
    return [{"name": "demo-daily-spend", "limit": round(expected * 0.8, 4), "unit": "USD", "period": "daily"}]


def _check_reachable(url: str) -> None:
    """Fail early, in one line, when an OTLP endpoint is malformed or refuses connections."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CliError(f"--otlp {url!r}: expected an http(s):// URL such as http://127.0.0.1:4318")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=3).close()
    except OSError as exc:
        raise CliError(f"--otlp {url}: cannot connect to {parts.hostname}:{port} ({exc.strerror or exc})") from None


def cmd_demo(args: argparse.Namespace) -> int:
    import llm_otel

    from ..demo.simulated_provider import SimulatedProvider
    from ..demo.workload import run, run_async_sample

    if args.forever and not args.rate:
        raise CliError("--forever needs --rate R (calls per second)")
    if args.otlp:
        _check_reachable(args.otlp)
    as_json = args.format == "json"
    say = (lambda *a, **k: None) if as_json else print
    workdir = Path(tempfile.mkdtemp(prefix="llm-otel-demo-"))
    ledger_file = Path(args.ledger) if args.ledger else workdir / "ledger.db"
    alerts: list[dict[str, Any]] = []
    print_lock = threading.Lock()

    def on_alert(alert: Any) -> None:
        line = (f"  ALERT {alert.level:<8} {alert.budget}: {alert.threshold} threshold, "
                f"${alert.used:.4f} of ${alert.limit:.4f} ({alert.utilization:.0%})")  # fmt: skip
        alerts.append({"budget": alert.budget, "threshold": alert.threshold, "level": alert.level,
                       "used": alert.used, "limit": alert.limit})  # fmt: skip
        with print_lock:
            say(("\n" if sys.stdout.isatty() else "") + line, flush=True)

    budgets = [] if args.no_budget else _demo_budgets(args.calls, args.rate, args.forever)
    import logging

    logging.getLogger("llm_otel.budget").setLevel(logging.ERROR)  # the demo prints each alert itself
    llm_otel.instrument(endpoint=args.otlp, ledger=str(ledger_file), service_name="llm-otel-demo",
                        metric_attributes=["tenant", "job"], budgets=budgets, on_alert=on_alert,
                        budget_state=str(workdir / "budget-state.db"))  # fmt: skip
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    start = time.monotonic()
    with SimulatedProvider(latency=0.01) as sim:
        say(f"llm-otel {__version__} demo: simulated provider on {sim.base_url}")
        say(f"ledger {ledger_file}" + (f"; exporting OTLP to {args.otlp}" if args.otlp else ""))
        for b in budgets:
            window = {"daily": "day (UTC)"}.get(b["period"], b["period"] + " rolling window")
            say(f"budget {b['name']}: ${b['limit']} per {window}, alerts at 50/70/80/100 %")
        shown: set[int] = set()

        def show(p: Any) -> None:
            if as_json:
                return
            if p.total is None:
                if p.done % 50 == 0:
                    with print_lock:
                        print(f"  {p.done} calls, {p.errors} errors, {p.blocked} blocked", flush=True)
                return
            step = p.done * 20 // max(1, p.total)
            if sys.stdout.isatty() or step not in shown:
                shown.add(step)
                bar = "#" * (30 * p.done // p.total)
                with print_lock:
                    print(f"  [{bar:<30}] {p.done}/{p.total} calls, {p.errors} errors",
                          end="\r" if sys.stdout.isatty() and p.done < p.total else "\n", flush=True)  # fmt: skip

        calls = None if args.forever else args.calls
        progress = run(sim.base_url, calls, args.concurrency, args.duration, rate=args.rate,
                       on_progress=show, stop=stop)  # fmt: skip
        async_calls = 0
        if not args.forever:
            import asyncio

            async_calls = asyncio.run(run_async_sample(sim.base_url))
            say(f"  + {async_calls} async calls (AsyncOpenAI, AsyncAnthropic)")
        served = sim.served_usage()
    llm_otel.flush()
    summary = demo_summary(ledger_file)
    session = llm_otel.session_usage()
    recorded = {k: sum(t.tokens.get(k, 0) for t in session.values()) for k in ("input", "output")}
    provider = {k: sum(v[k] for v in served.values()) for k in ("input", "output")}
    llm_otel.uninstrument()
    match = recorded == provider
    made = progress.done + async_calls
    if as_json:
        print(json.dumps({"schema": 1, "ledger": str(ledger_file), "calls": made,
                          "errors": progress.errors, "seconds": round(time.monotonic() - start, 3),
                          "models": summary, "alerts": alerts, "provider_reported": provider,
                          "recorded": recorded, "match": match,
                          "budget_state": str(workdir / "budget-state.db")}, indent=2))  # fmt: skip
        return 0 if match else 1
    print()
    print(render_demo_tables(summary))
    verdict = "match" if match else "MISMATCH"
    print(f"\ntokens reported by the provider: {provider['input']} in / {provider['output']} out")
    print(f"tokens recorded by llm-otel:     {recorded['input']} in / {recorded['output']} out ({verdict})")
    print(f"{made} calls in {time.monotonic() - start:.1f} s; {len(alerts)} budget alerts")
    state = workdir / "budget-state.db"
    print(f"next: llm-otel report --ledger {ledger_file}")
    print(f"next: llm-otel ui --ledger {ledger_file} --state {state} --open  (all of it in your browser)")
    return 0 if match else 1


# --- report --------------------------------------------------------------------------------------------------
def ledger_path(args: argparse.Namespace) -> Path:
    """``--ledger``, else the configured ledger (``--config`` / ``LLM_OTEL_CONFIG`` / ``LLM_OTEL_LEDGER``)."""
    from ..config import load_settings
    from ..sinks.ledger import default_path
    from .report import ReportError

    if args.ledger:
        return Path(args.ledger).expanduser()
    setting = load_settings(config_file=args.config).ledger
    if setting is False:
        raise ReportError("the ledger is off (LLM_OTEL_LEDGER); pass --ledger FILE")
    return (default_path() if setting is True else Path(str(setting))).expanduser()


def cmd_report(args: argparse.Namespace) -> int:
    from . import report

    try:
        until = report.parse_when(args.until, end=True) if args.until else None
        if args.last:
            if args.since:
                raise report.ReportError("use either --since or --last, not both")
            since = (until or datetime.now(UTC)) - report.parse_last(args.last)
        else:
            since = report.parse_when(args.since) if args.since else None
        ledger_file = ledger_path(args)
        group_by = [k.strip() for k in args.by.split(",") if k.strip()]
        filters = report.parse_filters(args.filter)
        if args.format == "html" and not args.output:
            raise report.ReportError("--format html writes a file: add -o report.html")
        data = report.build(ledger_file, since, until, group_by, filters=filters,
                            stack_by=args.stack_by)  # fmt: skip
    except report.ReportError as exc:
        raise CliError(str(exc)) from None
    if args.format in ("json", "html"):
        from .budget import snapshot

        data["budgets"] = snapshot(args)
    if args.format == "html":
        from ..ui.page import render_report

        Path(args.output).write_text(render_report(data), encoding="utf-8")
        print(f"wrote {args.output} (open it in a browser; it needs no network)")
    elif args.format == "json":
        print(json.dumps(data, indent=2))
    elif args.format == "csv":
        sys.stdout.write(report.render_csv(data))
    else:
        print(report.render_table(data))
    return 0


# --- run -----------------------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from .run import RunError, run

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    try:
        return run(command, args.config)
    except RunError as exc:
        raise CliError(str(exc)) from None


# --- doctor --------------------------------------------------------------------------------------------------
def cmd_doctor(args: argparse.Namespace) -> int:
    import importlib.metadata as md
    import os

    from ..config import ConfigError, load_settings
    from ..core.pricing import pricing_data_version
    from ..instrumentors import ALL, installed
    from ..sinks.ledger import default_path

    ok = True
    print(f"llm-otel {__version__}")
    print("SDKs (instrumented when installed):")
    for cls in ALL:
        dist = cls.dependencies[0].split()[0]
        try:
            version = md.version(dist) if installed(cls.module) else None
        except md.PackageNotFoundError:
            version = None
        print(f"  {dist:<14} {version + '  instrumented' if version else 'not installed'}")
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"configuration: INVALID: {exc}")
        return 1
    source = os.environ.get("LLM_OTEL_CONFIG")
    print(f"configuration: valid{f' ({source})' if source else ''}; {len(settings.budgets)} budgets")
    signals = {s: os.environ.get(f"OTEL_EXPORTER_OTLP_{s.upper()}_ENDPOINT") for s in ("traces", "metrics", "logs")}
    if settings.endpoint or any(signals.values()):
        for s, url in signals.items():
            print(f"  {s:<8} -> {url or (settings.endpoint + '/v1/' + s if settings.endpoint else 'not exported')}")
    else:
        print("telemetry: not exported (no OTLP endpoint); the ledger is the embedded store")
    ledger = settings.ledger
    print(f"ledger: {'off' if ledger is False else (default_path() if ledger is True else ledger)}")
    if settings.budgets or settings.budget_store:
        line, reachable = _budget_store_line(settings)
        print(f"budget store: {line}")
        ok = ok and reachable
    print(f"pricing data: genai-prices {pricing_data_version()} (offline)")
    return 0 if ok else 1


def _budget_store_line(settings: Any) -> tuple[str, bool]:
    """``sqlite: <path> (...)`` or ``redis: <url, password masked> (reachable | UNREACHABLE: why)``."""
    import os

    if settings.budget_store:
        from ..budget.redis_store import RedisStore
        from ..budget.store import StoreUnavailable

        store = RedisStore(settings.budget_store, warn=False)
        try:
            store.open()
        except StoreUnavailable as exc:
            reason = str(exc).removeprefix(f"budget store {store.shown} ")
            return f"redis: {store.shown} (UNREACHABLE: {reason}; budgets would carry on locally)", False
        finally:
            store.close()
        return f"redis: {store.shown} (reachable; shared by every process that uses it)", True
    from ..budget.store import default_path as state_default

    state = settings.budget_state
    if state is False:
        return "memory only (budget_state is off; nothing shared between processes)", True
    path = state_default() if state is True else Path(str(state)).expanduser()
    if path.exists():
        usable = os.access(path, os.R_OK | os.W_OK)
        state = "exists" if usable else "NOT WRITABLE"
        return f"sqlite: {path} ({state}; shared by the processes of this host)", usable
    parent = next((p for p in path.parents if p.exists()), None)
    creatable = parent is not None and os.access(parent, os.W_OK)
    return f"sqlite: {path} ({'created on first use' if creatable else 'CANNOT BE CREATED'})", creatable


# --- ui ------------------------------------------------------------------------------------------------------
def cmd_ui(args: argparse.Namespace) -> int:
    from .ui import serve

    return serve(args)


# --- parser --------------------------------------------------------------------------------------------------
def _budget_source_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state", default=None, metavar="FILE", help="budget state file (default: from config)")
    p.add_argument("--store", default=None, metavar="URL", help="Redis budget store (default: from config)")
    p.add_argument("--config", default=None, metavar="FILE", help="llm-otel YAML config (default: LLM_OTEL_CONFIG)")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, not usage + traceback
        self.exit(2, f"llm-otel: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="llm-otel", description="Observe and govern LLM calls with OpenTelemetry.")
    parser.add_argument("--version", action="version", version=f"llm-otel {__version__}")
    sub = parser.add_subparsers(dest="command_name", required=True, parser_class=_Parser)

    demo = sub.add_parser("demo", help="real SDK calls against a simulated provider, with budgets and a report")
    demo.add_argument("--calls", type=_positive_int, default=200, help="number of calls (default 200)")
    demo.add_argument("--concurrency", type=_positive_int, default=8, help="threads (default 8)")
    demo.add_argument("--duration", type=_positive_float, default=None, help="stop after this many seconds")
    demo.add_argument("--forever", action="store_true", help="run until stopped (needs --rate)")
    demo.add_argument("--rate", type=_positive_float, default=None, help="at most R calls per second")
    demo.add_argument("--otlp", default=None, metavar="URL", help="also export OTLP/HTTP to this collector")
    demo.add_argument("--ledger", default=None, help="ledger file (default: a new temporary file)")
    demo.add_argument("--no-budget", action="store_true", help="run without the demo budget")
    demo.add_argument("--format", choices=("table", "json"), default="table")
    demo.set_defaults(func=cmd_demo)

    rep = sub.add_parser("report", help="usage and cost from the local ledger")
    rep.add_argument("--ledger", default=None, help="ledger file (default: the configured one)")
    rep.add_argument("--since", default=None, help="start date (YYYY-MM-DD[THH:MM], UTC)")
    rep.add_argument("--until", default=None, help="end date, inclusive of that day")
    rep.add_argument("--last", default=None, help="a duration back from now: 12h, 7d, 2w, 3m")
    rep.add_argument("--by", default="provider,model",
                     help="comma-separated: provider, model, operation, service, job, task, agent, tenant, "
                          "or any context key")  # fmt: skip
    rep.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE[,VALUE]",
                     help="only calls with this provider, model, service, operation or context key value "
                          "(repeatable)")  # fmt: skip
    rep.add_argument("--stack-by", default="model", metavar="KEY", help="series over time stacked by (default model)")
    rep.add_argument("--format", choices=("table", "json", "csv", "html"), default="table")
    rep.add_argument("-o", "--output", default=None, metavar="FILE", help="with --format html: the file to write")
    _budget_source_options(rep)
    rep.set_defaults(func=cmd_report)

    ui = sub.add_parser("ui", help="spend, speed, rate limits and budgets in a browser (local, read-only)")
    ui.add_argument("--ledger", default=None, help="ledger file (default: the configured one)")
    ui.add_argument("--port", type=int, default=8788, help="port on 127.0.0.1 (default 8788; 0 picks a free one)")
    ui.add_argument("--open", action="store_true", help="open the page in a browser")
    ui.add_argument("--trace-url", default=None, metavar="URL",
                    help="link trace ids to this trace UI, with {trace_id} in it "
                         "(e.g. http://127.0.0.1:3000/explore?...{trace_id}); default LLM_OTEL_TRACE_URL")  # fmt: skip
    _budget_source_options(ui)
    ui.set_defaults(func=cmd_ui)

    run = sub.add_parser("run", help="run a program instrumented, no code changes: llm-otel run -- python app.py")
    run.add_argument("--config", default=None, metavar="FILE", help="llm-otel YAML config (budgets, settings)")
    run.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after --")
    run.set_defaults(func=cmd_run)

    doctor = sub.add_parser("doctor", help="installed SDKs, where telemetry goes, ledger, pricing, configuration")
    doctor.set_defaults(func=cmd_doctor)

    from .budget import add_parsers as add_budget_parsers

    add_budget_parsers(sub)  # budget status | budget reset | rules
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # one line, never a traceback
        from ..config import ConfigError

        kind = "configuration error" if isinstance(exc, ConfigError) else "error"
        print(f"llm-otel: {kind}: {exc}", file=sys.stderr)
        return 2
