"""Usage and cost reports from the local ledger: grouped totals, a daily trend and a month-end forecast.

The JSON shape (``llm-otel report --format json``) is stable; see docs/cli.md.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from .tables import count, group_name, money, table

TOKEN_KINDS = ("input", "output", "cache_read", "cache_write", "reasoning")
_DURATION = re.compile(r"^(\d+)([hdwm])$")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


class ReportError(ValueError):
    """Bad report input (dates, grouping, ledger); the message is one line for the user."""


def parse_when(text: str, *, end: bool = False) -> datetime:
    """``2026-11-01``, ``2026-11-01T12:00`` or ``today`` as an aware UTC datetime (a bare date's end is midnight
    of the next day when ``end``)."""
    if text == "today":
        day = datetime.now(UTC).date()
        return datetime.combine(day + timedelta(days=1) if end else day, datetime.min.time(), UTC)
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            day = date.fromisoformat(text)
            return datetime.combine(day + timedelta(days=1) if end else day, datetime.min.time(), UTC)
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ReportError(f"not a date: {text!r} (use YYYY-MM-DD or YYYY-MM-DDTHH:MM)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_last(text: str) -> timedelta:
    """``12h``, ``7d``, ``2w``, ``3m`` (months of 30 days)."""
    m = _DURATION.match(text.strip())
    if not m:
        raise ReportError(f"not a duration: {text!r} (use e.g. 12h, 7d, 2w, 3m)")
    n, unit = int(m.group(1)), m.group(2)
    return timedelta(hours=n) if unit == "h" else timedelta(days=n * {"d": 1, "w": 7, "m": 30}[unit])


def parse_filters(items: list[str]) -> dict[str, frozenset[str]]:
    """``--filter key=value[,value...]`` options (repeatable; values of one key are alternatives)."""
    out: dict[str, set[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        if not sep or not _KEY.fullmatch(key):
            raise ReportError(f"--filter {item!r}: expected KEY=VALUE[,VALUE...], e.g. provider=openai or tenant=acme")
        out.setdefault(key, set()).update(v.strip() for v in values.split(","))
    return {k: frozenset(v) for k, v in out.items()}


def build(
    ledger: Path,
    since: datetime | None,
    until: datetime | None,
    group_by: list[str],
    now: datetime | None = None,
    filters: dict[str, frozenset[str]] | None = None,
    stack_by: str = "model",
) -> dict[str, Any]:
    """The report as a JSON-ready dict: the ``views`` of the ledger for this range and these filters."""
    from ..views import LedgerSource, LedgerUnavailable, Query
    from ..views import build as build_views

    for key in [*group_by, stack_by]:
        if not _KEY.fullmatch(key):
            raise ReportError(f"cannot group by {key!r}: use provider, model, operation, service or a context key")
    now_ts = (now or datetime.now(UTC)).timestamp()
    current = datetime.fromtimestamp(now_ts, UTC)
    month_start = datetime(current.year, current.month, 1, tzinfo=UTC).timestamp()
    source = LedgerSource(ledger)
    query = Query(since=since.timestamp() if since else None, until=until.timestamp() if until else None,
                  filters=filters or {}, group_by=tuple(group_by), stack_by=stack_by, now=now_ts)  # fmt: skip
    try:
        source.refresh(since=min(query.since, month_start) if query.since is not None else None)
        return build_views(source, query)
    except LedgerUnavailable as exc:
        raise ReportError(str(exc)) from None


def render_table(report: dict[str, Any]) -> str:
    """Human-readable report: fits 80 columns unless a group name is too long (names are never cut)."""
    out = []
    keys = report["group_by"]
    rows = [
        [group_name(*(g["key"][k] for k in keys)), str(g["calls"]), str(g["errors"]),
         count(g["tokens"]["input"]), count(g["tokens"]["output"]),
         money(g["cost_usd"]) if g["calls"] > g["unpriced_calls"] else "-",
         str(g["unpriced_calls"]) if g["unpriced_calls"] else ""]
        for g in report["groups"]
    ]  # fmt: skip
    out.append(table(["/".join(keys), "calls", "err", "in", "out", "cost $", "unpriced"], rows, width=80))
    if report["daily"]:
        out.append("")
        out.append(table(["day", "calls", "in", "out", "cost $"], [
            [d["date"], str(d["calls"]), count(d["tokens"]["input"]), count(d["tokens"]["output"]),
             money(d["cost_usd"])] for d in report["daily"]]))  # fmt: skip
    t, f = report["totals"], report["forecast"]
    out.append("")
    out.append(f"total: {t['calls']} calls, {t['errors']} errors, ${money(t['cost_usd'])}"
               + (f" (+{t['unpriced_calls']} unpriced calls)" if t["unpriced_calls"] else ""))  # fmt: skip
    out.append(f"{f['month']}: ${money(f['month_to_date_usd'])} so far, "
               f"projected ${money(f['projected_month_usd'])} by month end")  # fmt: skip
    return "\n".join(out)


def render_csv(report: dict[str, Any]) -> str:
    """One CSV row per group: the group keys, then the totals."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    keys = report["group_by"]
    writer.writerow([*keys, "calls", "errors", *(f"{k}_tokens" for k in TOKEN_KINDS), "cost_usd",
                     "unpriced_calls", "throttle_wait_s", "retries"])  # fmt: skip
    for g in report["groups"]:
        writer.writerow([*(g["key"][k] for k in keys), g["calls"], g["errors"],
                         *(g["tokens"][k] for k in TOKEN_KINDS), g["cost_usd"], g["unpriced_calls"],
                         g["throttle_wait_s"], g["retries"]])  # fmt: skip
    return buf.getvalue()
