"""Usage and cost reports from the local ledger: grouped totals, a daily trend and a month-end forecast.

The JSON shape (``llm-otel report --format json``) is stable; see docs/cli.md.
"""

from __future__ import annotations

import calendar
import csv
import io
import json
import re
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from ..sinks.ledger import COLUMNS, KNOWN_CONTEXT_COLUMNS
from .tables import count, group_name, money, table

TOKEN_KINDS = ("input", "output", "cache_read", "cache_write", "reasoning")
# Grouping keys that are ledger columns; any other key is read from the row's JSON attributes.
GROUP_COLUMNS = frozenset({"provider", "operation", "service", *KNOWN_CONTEXT_COLUMNS})
_DURATION = re.compile(r"^(\d+)([hdwm])$")
SCHEMA_VERSION = 1


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


@dataclass
class Totals:
    calls: int = 0
    errors: int = 0
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOKEN_KINDS, 0))
    cost_usd: float = 0.0
    unpriced_calls: int = 0
    throttle_wait_s: float = 0.0
    retries: int = 0

    def add(self, row: sqlite3.Row) -> None:
        self.calls += 1
        self.errors += 1 if row["error_type"] else 0
        for kind in TOKEN_KINDS:
            self.tokens[kind] += row[f"{kind}_tokens"] or 0
        if row["cost_usd"] is not None:
            self.cost_usd += row["cost_usd"]
        elif row["usage_complete"]:
            self.unpriced_calls += 1
        self.throttle_wait_s += row["throttle_wait_s"] or 0.0
        self.retries += row["retries"] or 0

    def as_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "errors": self.errors, "tokens": dict(self.tokens),
                "cost_usd": round(self.cost_usd, 10), "unpriced_calls": self.unpriced_calls,
                "throttle_wait_s": round(self.throttle_wait_s, 6), "retries": self.retries}  # fmt: skip


def _group_value(row: sqlite3.Row, key: str) -> str:
    if key == "model":
        return row["response_model"] or row["request_model"] or ""
    if key in GROUP_COLUMNS:
        return row[key] or ""
    return str(json.loads(row["attributes"] or "{}").get(key, ""))


def build(
    ledger: Path, since: datetime | None, until: datetime | None, group_by: list[str], now: datetime | None = None
) -> dict[str, Any]:
    """The report as a JSON-ready dict."""
    if not ledger.exists():
        raise ReportError(f"no ledger at {ledger} (run something instrumented first, or pass --ledger)")
    for key in group_by:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ReportError(f"cannot group by {key!r}: use provider, model, operation, service or a context key")
    now = now or datetime.now(UTC)
    try:
        conn = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
        conn.row_factory = sqlite3.Row
        missing = set(COLUMNS) - {r[1] for r in conn.execute("PRAGMA table_info(calls)")}
        if missing:
            raise ReportError(f"{ledger} is not an llm-otel ledger (missing columns: {', '.join(sorted(missing))})")
        where, params = [], []
        if since:
            where.append("ts >= ?")
            params.append(since.timestamp())
        if until:
            where.append("ts < ?")
            params.append(until.timestamp())
        sql = "SELECT * FROM calls" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY ts"
        rows = conn.execute(sql, params).fetchall()
        month_start = datetime(now.year, now.month, 1, tzinfo=UTC)
        month_cost = conn.execute(
            "SELECT COALESCE(SUM(cost_usd), 0) FROM calls WHERE ts >= ? AND ts < ?",
            (month_start.timestamp(), now.timestamp()),
        ).fetchone()[0]
        conn.close()
    except sqlite3.DatabaseError as exc:
        raise ReportError(f"cannot read ledger {ledger}: {exc}") from None

    groups: dict[tuple[str, ...], Totals] = {}
    daily: dict[str, Totals] = {}
    total = Totals()
    for row in rows:
        key = tuple(_group_value(row, k) for k in group_by)
        groups.setdefault(key, Totals()).add(row)
        day = datetime.fromtimestamp(row["ts"], UTC).date().isoformat()
        daily.setdefault(day, Totals()).add(row)
        total.add(row)
    days_in_month = calendar.monthrange(now.year, now.month)[1]
    elapsed_days = (now - month_start).total_seconds() / 86400
    projected = month_cost / elapsed_days * days_in_month if elapsed_days > 0 else 0.0
    return {
        "schema": SCHEMA_VERSION,
        "ledger": str(ledger),
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "group_by": group_by,
        "groups": [
            {"key": dict(zip(group_by, key, strict=True)), **t.as_dict()}
            for key, t in sorted(groups.items(), key=lambda kv: -kv[1].cost_usd)
        ],
        "daily": [{"date": d, **t.as_dict()} for d, t in sorted(daily.items())],
        "totals": total.as_dict(),
        "forecast": {
            "month": month_start.strftime("%Y-%m"),
            "month_to_date_usd": round(month_cost, 10),
            "projected_month_usd": round(projected, 10),
            "method": "month-to-date cost / elapsed days x days in month (UTC)",
        },
    }


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
