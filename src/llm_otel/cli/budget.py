"""``llm-otel budget status|reset`` and ``llm-otel rules``: the shared budget state (the SQLite state file or
Redis) and Prometheus rules from a shell.

Errors are raised as ``BudgetCliError`` with one clear line; ``llm_otel.cli.main`` prints it and exits 2.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from ..budget.rules import CALENDAR_PERIODS, PROJECTED, Budget, calendar_window, forecast


class BudgetCliError(Exception):
    """A budget command cannot do what was asked; the message says why."""


def add_parsers(sub: Any) -> None:
    """Add ``budget status``, ``budget reset`` and ``rules`` to the ``llm-otel`` sub-commands."""
    budget = sub.add_parser("budget", help="show or reset budgets (their shared state: the state file or Redis)")
    bsub = budget.add_subparsers(dest="budget_command", required=True)
    status = bsub.add_parser("status", help="every budget and group: window, used, limit, forecast, fired thresholds")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    reset = bsub.add_parser("reset", help="start a budget's window over (usage and fired thresholds forgotten)")
    reset.add_argument("name", help="the budget's name")
    for p in (status, reset):
        p.add_argument("--state", default=None, metavar="FILE", help="budget state file (default: from config)")
        p.add_argument("--store", default=None, metavar="URL",
                       help="Redis budget store, redis://host:6379/0 (default: budget_store from config)")  # fmt: skip
        p.add_argument("--config", default=None, metavar="FILE", help="llm-otel YAML config (default: LLM_OTEL_CONFIG)")
    status.set_defaults(func=cmd_status)
    reset.set_defaults(func=cmd_reset)
    rules = sub.add_parser("rules", help="render the budgets as Prometheus alerting rules (and promtool tests)")
    rules.add_argument("--config", default=None, metavar="FILE", help="llm-otel YAML config (default: LLM_OTEL_CONFIG)")
    rules.add_argument("--out", default=None, metavar="DIR",
                       help="write the rules and their promtool tests into DIR (default: rules to stdout)")  # fmt: skip
    rules.set_defaults(func=cmd_rules)


# --- configuration and state -------------------------------------------------------------------------------
def _settings(config: str | None) -> Any:
    from ..config import load_settings

    return load_settings(config_file=config)


def _state_path(args: argparse.Namespace, settings: Any) -> Path:
    from ..budget.store import default_path

    if args.state:
        return Path(args.state).expanduser()
    state = settings.budget_state
    if state is False:
        raise BudgetCliError("budget_state is off (memory only): there is no state file; pass --state FILE")
    return default_path() if state is True else Path(str(state)).expanduser()


def _open_store(args: argparse.Namespace, settings: Any, readonly: bool) -> tuple[Any, str]:
    """The store to read or reset, and how to name it: ``--store``, ``--state``, then the configuration."""
    url = args.store or (None if args.state else settings.budget_store)
    if url:
        return _open_redis(url)
    path = _state_path(args, settings)
    return _open(path, readonly), str(path)


def _open_redis(url: str) -> tuple[Any, str]:
    from ..budget.redis_store import RedisStore
    from ..budget.store import StoreUnavailable
    from ..budget.storeurl import StoreUrlError, check

    try:
        check(url)
        store = RedisStore(url, warn=False)
    except StoreUrlError as exc:
        raise BudgetCliError(f"budget_store: {exc}") from None
    try:
        store.open()
    except StoreUnavailable as exc:
        raise BudgetCliError(str(exc)) from None
    return store, store.shown


def _open(path: Path, readonly: bool) -> Any:
    from ..budget.store import SqliteStore, classify

    if not path.exists():
        raise BudgetCliError(f"no budget state file at {path}: no process with budgets has run with it yet "
                             f"(or pass --state FILE)")  # fmt: skip
    store = SqliteStore(path, busy_timeout_s=5.0, readonly=readonly)
    try:
        store.open()
    except (sqlite3.Error, OSError) as exc:
        raise BudgetCliError(f"budget state file {path} {classify(exc)}: {exc}") from None
    return store


def _budgets(settings: Any, store: Any) -> dict[str, Budget]:
    """Budgets from the configuration, plus those only the state file knows (defined in some app's code)."""
    from ..config import ConfigError

    out: dict[str, Budget] = {}
    for name, config in store.definitions().items():
        try:
            out[name] = Budget(**config)
        except ConfigError:
            continue  # written by another llm-otel version; the configuration may still define it
    out.update({b.name: b for b in settings.budgets})
    if hasattr(store, "know"):
        store.know(out.values())  # Redis: key names and windows come from the budget
    return dict(sorted(out.items()))


# --- status ------------------------------------------------------------------------------------------------
def status(store: Any, budgets: dict[str, Budget], now: float) -> list[dict[str, Any]]:
    """One entry per (budget, group) in the current window."""
    windows = {b.name: (calendar_window(b.period, b.tz, now) if b.rolling_s is None else (now - b.rolling_s, now))
               for b in budgets.values()}  # fmt: skip
    store.prefetch([(b.name, b.live_after(now), windows[b.name][0]) for b in budgets.values()])
    marks = store.marks()
    out = []
    for b in budgets.values():
        start, end = windows[b.name]
        rows, fired = store.scan(b.name, b.live_after(now), start)
        groups: dict[str, list[float]] = {}
        for group, _bucket, used, calls, unpriced in rows:
            g = groups.setdefault(group, [0.0, 0, 0])
            g[0] += used
            g[1] += calls
            g[2] += unpriced
        for f in fired:
            groups.setdefault(f.group, [0.0, 0, 0])
        if not groups:
            groups[""] = [0.0, 0, 0]
        mark = marks.get(b.name)
        since = max(start, mark.since) if mark is not None else start
        for group, (used, calls, unpriced) in sorted(groups.items()):
            fc = forecast(b, used, now, since, end) if b.forecast else None
            out.append({
                "budget": b.name, "group": group, "unit": b.unit, "period": b.period, "timezone": b.timezone,
                "action": b.action, "window_start": _iso(start, b), "window_end": _iso(end, b),
                "used": used, "limit": b.limit, "utilization": used / b.limit, "forecast": fc,
                "calls": int(calls), "unpriced_calls": int(unpriced),
                "reset_at": _iso(mark.reset_at, b) if mark is not None and mark.reset_at else None,
                "fired": _fired(b, [f for f in fired if f.group == group]),
            })  # fmt: skip
    return out


def _fired(b: Budget, rows: list[Any]) -> list[dict[str, Any]]:
    """One entry per threshold: when it last fired in the window, and whether any of those raised an alert."""
    latest: dict[str, Any] = {}
    alerted: set[str] = set()
    for f in rows:  # ordered by fired_at
        latest[f.threshold] = f
        if f.alerted:
            alerted.add(f.threshold)

    def order(label: str) -> float:
        return float(label) if label != PROJECTED else float("inf")

    return [{"threshold": t, "alerted": t in alerted, "fired_at": _iso(latest[t].fired_at, b), "used": latest[t].used}
            for t in sorted(latest, key=order)]  # fmt: skip


def _iso(ts: float, b: Budget) -> str:
    return datetime.fromtimestamp(ts, b.tz).isoformat(timespec="seconds")


def _amount(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if unit == "tokens" else f"{value:,.4f}"


def render_status(entries: list[dict[str, Any]]) -> str:
    from .tables import table as _table

    rows = []
    for e in entries:
        window = (f"{e['window_start'][:16]} .. {e['window_end'][:16]}" if e["period"] in CALENDAR_PERIODS
                  else f"last {e['period']}")  # fmt: skip
        fired = ", ".join(f["threshold"] + ("" if f["alerted"] else " (passed)") for f in e["fired"]) or "-"
        rows.append([
            e["budget"], e["group"] or "-", window, f"{_amount(e['used'], e['unit'])} {e['unit']}",
            _amount(e["limit"], e["unit"]), f"{e['utilization']:.1%}", _amount(e["forecast"], e["unit"]),
            fired + (f"  [{e['unpriced_calls']} unpriced]" if e["unpriced_calls"] else ""),
        ])  # fmt: skip
    headers = ["budget", "group", "window", "used", "limit", "util", "forecast", "fired"]
    return _table(headers, rows)


def cmd_status(args: argparse.Namespace) -> int:
    from ..budget.store import StoreUnavailable

    settings = _settings(args.config)
    store, where = _open_store(args, settings, readonly=True)
    try:
        budgets = _budgets(settings, store)
        if not budgets:
            raise BudgetCliError(f"no budgets are defined in the configuration or in {where}")
        entries = status(store, budgets, time.time())
    except StoreUnavailable as exc:
        raise BudgetCliError(str(exc)) from None
    finally:
        store.close()
    print(json.dumps(entries, indent=2) if args.json else render_status(entries))
    return 0


# --- reset -------------------------------------------------------------------------------------------------
def cmd_reset(args: argparse.Namespace) -> int:
    from ..budget.store import StoreUnavailable

    settings = _settings(args.config)
    store, where = _open_store(args, settings, readonly=False)
    try:
        budgets = _budgets(settings, store)
        budget = budgets.get(args.name)
        if budget is None:
            known = ", ".join(budgets) or "none"
            raise BudgetCliError(f"no budget named {args.name!r} (known: {known})")
        now = time.time()
        try:
            store.reset(budget.name, now, budget.model_dump(mode="json"))
        except (sqlite3.Error, StoreUnavailable) as exc:
            raise BudgetCliError(f"cannot reset budget {budget.name!r} in {where}: {exc}") from None
    except StoreUnavailable as exc:
        raise BudgetCliError(str(exc)) from None
    finally:
        store.close()
    print(f"budget {budget.name!r} reset at {_iso(now, budget)}: usage and fired thresholds start over "
          f"(running processes pick it up within a second)")  # fmt: skip
    return 0


# --- Prometheus rules ----------------------------------------------------------------------------------------
def cmd_rules(args: argparse.Namespace) -> int:
    from ..budget import prometheus

    settings = _settings(args.config)
    if not settings.budgets:
        raise BudgetCliError("no budgets configured: pass --config FILE or set LLM_OTEL_CONFIG to a file with budgets")
    rules = prometheus.render_rules(settings)
    if args.out is None:
        print(rules, end="")
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rules_path = out / prometheus.RULES_FILE
    tests_path = out / prometheus.TESTS_FILE
    rules_path.write_text(rules)
    tests_path.write_text(prometheus.render_tests(settings, prometheus.RULES_FILE))
    print(f"wrote {rules_path}\nwrote {tests_path}  (check with: promtool test rules {tests_path})")
    return 0


# --- for reports and the UI --------------------------------------------------------------------------------
def snapshot(args: argparse.Namespace) -> dict[str, Any]:
    """The budgets' current state for a report or the UI: ``{"source", "entries"}``, or ``{"source", "note"}``
    saying in one line why there are none. Never raises for a missing, unreadable or unreachable store."""
    from ..budget.store import StoreUnavailable
    from ..config import ConfigError

    try:
        settings = _settings(getattr(args, "config", None))
        store, where = _open_store(args, settings, readonly=True)
    except (BudgetCliError, ConfigError) as exc:
        return {"source": None, "entries": [], "note": str(exc)}
    try:
        budgets = _budgets(settings, store)
        if not budgets:
            note = f"no budgets are defined in the configuration or in {where}"
            return {"source": where, "entries": [], "note": note}
        return {"source": where, "entries": status(store, budgets, time.time()), "note": None}
    except (StoreUnavailable, sqlite3.Error) as exc:
        return {"source": where, "entries": [], "note": f"cannot read budget state {where}: {exc}"}
    finally:
        store.close()
