"""A report over a ledger for one time range and one set of filters: the numbers behind every view.

``llm-otel report --format json`` prints this dict, ``llm-otel ui`` serves it to the page, and the HTML
report embeds it: the page shows these numbers and computes none of its own.
"""

from __future__ import annotations

import calendar
import heapq
import json
import math
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import add
from typing import Any

from .cells import (
    BLOCKED,
    CACHE_READ,
    CALLS,
    COST,
    ERRORS,
    IN,
    MAX_COST,
    MAX_DURATION,
    MAX_WAIT,
    N_SUMS,
    OUT,
    RETRIES,
    RETRY_S,
    SPEED,
    THROTTLE_S,
    TOKEN_SUMS,
    UNPRICED,
    WAITED,
    Cell,
    percentiles,
)
from .source import CALL_SQL, DAY, HOUR, LedgerSource

SCHEMA_VERSION = 1
TOP_CALLS = 10
_RAW_UP_TO = 3 * HOUR  # ranges this short are read row by row (series points of a minute)
# Series step by range length: (up to this many seconds, step)
_STEPS = ((3 * HOUR, 60), (8 * DAY, HOUR))


@dataclass(frozen=True)
class Query:
    """What a report covers: ``[since, until)`` in epoch seconds (None: open), ``filters`` (key -> accepted
    values), ``group_by`` for the table, ``stack_by`` for the series over time."""

    since: float | None = None
    until: float | None = None
    filters: dict[str, frozenset[str]] = field(default_factory=dict)
    group_by: tuple[str, ...] = ("provider", "model")
    stack_by: str = "model"
    now: float | None = None


class _Sums:
    """Totals of a group of cells, in the report's JSON shape."""

    __slots__ = ("s",)

    def __init__(self) -> None:
        self.s = [0.0] * N_SUMS

    def add(self, sums: list[float]) -> None:
        self.s = list(map(add, self.s, sums))  # the maxima are summed too, and never reported

    def as_dict(self) -> dict[str, Any]:
        s = self.s
        calls = int(s[CALLS])
        return {
            "calls": calls,
            "errors": int(s[ERRORS]),
            "blocked": int(s[BLOCKED]),
            "tokens": {k: int(s[i]) for k, i in TOKEN_SUMS.items()},
            "cache_hit_share": round(s[CACHE_READ] / s[IN], 6) if s[IN] else None,
            "cost_usd": round(s[COST], 10),
            "unpriced_calls": int(s[UNPRICED]),
            "throttle_wait_s": round(s[THROTTLE_S], 6),
            "retry_wait_s": round(s[RETRY_S], 6),
            "retries": int(s[RETRIES]),
            "waited_calls": int(s[WAITED]),
        }


@dataclass
class _Selected:
    """A cell in the query: its time bucket start, the window its rows lie in, and its dimensions."""

    t: float
    lo: float
    hi: float
    dims: int
    cell: Cell


def step_for(span: float) -> int:
    """Seconds between the points of a series over ``span`` seconds (at most about 200 points)."""
    for upto, step in _STEPS:
        if span <= upto:
            return step
    return DAY  # whole days come from day cells


def build(source: LedgerSource, q: Query) -> dict[str, Any]:
    """The report for ``q``. ``source`` must have been refreshed; its rows are read through a connection
    opened here for the edges of the range and for the top calls."""
    now = q.now if q.now is not None else datetime.now(UTC).timestamp()
    until = q.until if q.until is not None else now
    now = min(now, until)  # the forecast is as of the end of the range
    since = q.since if q.since is not None else (source.first_ts if source.first_ts is not None else until)
    since = min(since, until)
    step = step_for(until - since)
    accepted = _accepted_dims(source, q.filters)
    conn = source.connect()
    try:
        selected = _select(source, conn, since, until, accepted)
        month = _forecast(source, conn, now, accepted)
        w = _windows(source, selected)
        top = {
            "slowest": _top(source, conn, w[MAX_DURATION], accepted, MAX_DURATION, "duration_s", since, until),
            "most_expensive": _top(source, conn, w[MAX_COST], accepted, MAX_COST, "cost_usd", since, until),
            "longest_waits": _top(
                source, conn, w[MAX_WAIT], accepted, MAX_WAIT, "throttle_wait_s + retry_wait_s", since, until
            ),
        }
    finally:
        conn.close()

    dims = source.dims
    first = int(since // step) * step
    times = list(range(first, max(first + step, math.ceil(until / step) * step), step))
    index = {t: i for i, t in enumerate(times)}
    n = len(times)
    by_dims: dict[int, _Sums] = {}
    by_point: dict[int, _Sums] = {}
    stacks: dict[str, dict[str, list[float]]] = {"cost_usd": {}, "tokens": {}}
    speed_t: dict[tuple[str, int, int], array[int]] = {}  # (model, point, metric) -> bucketed values
    for sel in selected:
        sums = sel.cell.sums
        (by_dims.get(sel.dims) or by_dims.setdefault(sel.dims, _Sums())).add(sums)
        i = index[int(sel.t // step) * step]
        (by_point.get(i) or by_point.setdefault(i, _Sums())).add(sums)
        d = dims[sel.dims]
        stack = d.value(q.stack_by) or "-"
        _bump(stacks["cost_usd"], stack, n, i, sums[COST])
        _bump(stacks["tokens"], stack, n, i, sums[IN] + sums[OUT])
        model = d.model or "-"
        for metric, values in enumerate(sel.cell.hists):
            if values is not None:
                acc = speed_t.get((model, i, metric))
                if acc is None:
                    speed_t[(model, i, metric)] = array("H", values)
                else:
                    acc.extend(values)

    groups: dict[tuple[str, ...], _Sums] = {}
    total = _Sums()
    for idx, t in by_dims.items():
        key = tuple(dims[idx].value(k) for k in q.group_by)
        (groups.get(key) or groups.setdefault(key, _Sums())).add(t.s)
        total.add(t.s)
    daily: dict[str, _Sums] = {}
    waits: dict[str, list[Any]] = {
        "throttle_wait_s": [0.0] * n,
        "retry_wait_s": [0.0] * n,
        "retries": [0] * n,
        "calls": [0] * n,
        "waited_calls": [0] * n,
    }
    for i, t in by_point.items():
        day = datetime.fromtimestamp(times[i], UTC).date().isoformat()
        (daily.get(day) or daily.setdefault(day, _Sums())).add(t.s)
        for name, field_ in (("throttle_wait_s", THROTTLE_S), ("retry_wait_s", RETRY_S)):
            waits[name][i] = t.s[field_]
        for name, field_ in (("retries", RETRIES), ("calls", CALLS), ("waited_calls", WAITED)):
            waits[name][i] = int(t.s[field_])
    iso = [_iso(t) for t in times]
    return {
        "schema": SCHEMA_VERSION,
        "ledger": str(source.path),
        "since": _iso(since) if q.since is not None else None,
        "until": _iso(until) if q.until is not None else None,
        "range": {"from": _iso(since, math.floor), "to": _iso(until, math.ceil), "step_s": step},
        "filters": {k: sorted(v) for k, v in sorted(q.filters.items())},
        "group_by": list(q.group_by),
        "groups": [
            {"key": dict(zip(q.group_by, key, strict=True)), **t.as_dict()}
            for key, t in sorted(groups.items(), key=lambda kv: (-kv[1].s[COST], kv[0]))
        ],
        "daily": [{"date": d, **t.as_dict()} for d, t in sorted(daily.items())],
        "totals": total.as_dict(),
        "forecast": month,
        "series": {
            "times": iso,
            "stack_by": q.stack_by,
            **{k: {name: [round(v, 10) for v in vals] for name, vals in sorted(v.items())} for k, v in stacks.items()},
        },
        "speed": _speed(speed_t, iso),
        "rate_limits": {
            "times": iso,
            **{k: [round(v, 6) for v in vals] for k, vals in waits.items()},
            "longest_waits": top["longest_waits"],
        },
        "slowest": top["slowest"],
        "most_expensive": top["most_expensive"],
        "dimensions": _dimensions(source),
    }


# --- selection -----------------------------------------------------------------------------------------------
def _accepted_dims(source: LedgerSource, filters: dict[str, frozenset[str]]) -> Callable[[int], bool]:
    if not filters:
        return lambda _i: True
    cache: dict[int, bool] = {}

    def accepted(i: int) -> bool:
        ok = cache.get(i)
        if ok is None:
            d = source.dims[i]
            ok = cache[i] = all(d.value(k) in values for k, values in filters.items())
        return ok

    return accepted


def _select(
    source: LedgerSource, conn: Any, since: float, until: float, accepted: Callable[[int], bool]
) -> list[_Selected]:
    """Whole days from day cells (when the series is daily), whole hours from hour cells, and the rest of the
    range from its rows, in cells of one minute."""
    out: list[_Selected] = []
    if until - since <= _RAW_UP_TO:
        return _raw_cells(source, conn, since, until, accepted)
    hour_lo = math.ceil(since / HOUR) * HOUR
    hour_hi = max(hour_lo, int(until // HOUR) * HOUR)
    day_lo = day_hi = hour_lo
    if step_for(until - since) == DAY:
        day_lo = math.ceil(hour_lo / DAY) * DAY
        day_hi = max(day_lo, hour_hi - hour_hi % DAY)
    for day in range(day_lo, day_hi, DAY):
        for idx, cell in source.day(day).items():
            if accepted(idx):
                out.append(_Selected(day, day, day + DAY, idx, cell))
    for lo, hi in ((hour_lo, day_lo), (day_hi, hour_hi)) if day_hi > day_lo else ((hour_lo, hour_hi),):
        for hour in range(lo, hi, HOUR):
            for idx, cell in source.hours.get(hour, {}).items():
                if accepted(idx):
                    out.append(_Selected(hour, hour, hour + HOUR, idx, cell))
    for lo, hi in ((since, hour_lo), (hour_hi, until)):
        if hi > lo:
            out.extend(_raw_cells(source, conn, lo, hi, accepted))
    return out


def _raw_cells(
    source: LedgerSource, conn: Any, lo: float, hi: float, accepted: Callable[[int], bool]
) -> list[_Selected]:
    cells: dict[tuple[int, int], Cell] = {}
    for row in source.rows_between(conn, lo, hi):
        idx = source.dims_id(row)
        if not accepted(idx):
            continue
        key = (int(row[1] // 60) * 60, idx)
        cell = cells.get(key)
        if cell is None:
            cell = cells[key] = Cell()
        cell.add(row)
    return [_Selected(t, max(lo, t), min(hi, t + 60), idx, cell) for (t, idx), cell in cells.items()]


def _windows(source: LedgerSource, selected: list[_Selected]) -> dict[int, dict[tuple[float, float], float]]:
    """For each maximum kept in cells: the time windows (of an hour at most) with calls > 0, and the largest."""
    out: dict[int, dict[tuple[float, float], float]] = {f: {} for f in (MAX_DURATION, MAX_COST, MAX_WAIT)}
    for sel in selected:
        if sel.hi - sel.lo > HOUR:  # a day cell: its hours' cells narrow the rows to read
            parts = ((h, source.hours.get(h, {}).get(sel.dims)) for h in range(int(sel.lo), int(sel.hi), HOUR))
            cells = [((h, h + HOUR), c) for h, c in parts if c is not None]
        else:
            cells = [((sel.lo, sel.hi), sel.cell)]
        for window, cell in cells:
            sums = cell.sums
            for f, windows in out.items():
                top = sums[f]
                if top > 0 and top > windows.get(window, 0.0):
                    windows[window] = top
    return out


def _top(
    source: LedgerSource,
    conn: Any,
    windows: dict[tuple[float, float], float],
    accepted: Callable[[int], bool],
    max_field: int,
    expr: str,
    since: float,
    until: float,
) -> list[dict[str, Any]]:
    """The ``TOP_CALLS`` calls with the largest ``expr`` (> 0). Cells are read again row by row in the order of
    their maximum, until no unread cell can beat the calls found; of equal values, the first found stays."""
    found: list[tuple[float, int, dict[str, Any]]] = []  # min-heap of (value, -order found, call)
    seq = 0
    sql = f"{CALL_SQL} WHERE ts >= ? AND ts < ? AND {expr} > ? ORDER BY {expr} DESC LIMIT ? OFFSET ?"
    conn.row_factory = _dict_row
    try:
        for (lo, hi), top in sorted(windows.items(), key=lambda w: (-w[1], w[0])):
            if len(found) == TOP_CALLS and top <= found[0][0]:
                break
            offset, page = 0, TOP_CALLS
            while True:  # the window's calls, largest first, a page at a time until none can enter
                floor = found[0][0] if len(found) == TOP_CALLS else 0.0
                rows = conn.execute(sql, (max(lo, since), min(hi, until), floor, page, offset)).fetchall()
                for row in rows:
                    key = (
                        row["id"],
                        row["ts"],
                        row["provider"],
                        row["operation"],
                        row["model"],
                        row["service"] or "",
                        row["attributes"],
                    )
                    if not accepted(source.dims_id(key)):
                        continue
                    value = row["throttle_wait_s"] + row["retry_wait_s"] if max_field == MAX_WAIT else row[expr]
                    seq += 1
                    if len(found) < TOP_CALLS:
                        heapq.heappush(found, (value, -seq, row))
                    elif value > found[0][0]:
                        heapq.heapreplace(found, (value, -seq, row))
                    else:
                        break
                else:
                    if len(rows) == page:
                        offset, page = offset + page, page * 4
                        continue
                break
    finally:
        conn.row_factory = None
    return [_call(row) for _v, _o, row in sorted(found, key=lambda x: (-x[0], -x[1]))]


def _dict_row(cursor: Any, row: tuple[Any, ...]) -> dict[str, Any]:
    return {col[0]: value for col, value in zip(cursor.description, row, strict=True)}


def _call(row: dict[str, Any]) -> dict[str, Any]:
    try:
        attrs = json.loads(row["attributes"] or "{}")
    except ValueError:
        attrs = {}
    return {
        "ts": _iso(row["ts"]),
        "provider": row["provider"],
        "model": row["model"],
        "operation": row["operation"],
        "service": row["service"],
        "attributes": attrs,
        "duration_s": row["duration_s"],
        "ttfc_s": row["ttfc_s"],
        "cost_usd": row["cost_usd"],
        "input_tokens": row["input_tokens"],
        "output_tokens": row["output_tokens"],
        "throttle_wait_s": row["throttle_wait_s"],
        "retry_wait_s": row["retry_wait_s"],
        "retries": row["retries"],
        "error_type": row["error_type"],
        "stream_end": row["stream_end"],
        "trace_id": row["trace_id"],
    }


# --- the parts of the report -----------------------------------------------------------------------------------
def _bump(stack: dict[str, list[float]], name: str, n: int, i: int, value: float) -> None:
    values = stack.get(name)
    if values is None:
        values = stack[name] = [0.0] * n
    values[i] += value


def _speed(by_time: dict[tuple[str, int, int], array[int]], times: list[str]) -> dict[str, Any]:
    """p50/p95 of each speed metric by model over the range, and by model at every point of the series."""
    names = list(SPEED)
    by_model: dict[str, list[Counter[int]]] = {}
    series: dict[str, dict[str, list[float | None]]] = {}
    for (model, i, metric), values in by_time.items():
        c = Counter(values)
        totals = by_model.get(model)
        if totals is None:
            totals = by_model[model] = [Counter() for _ in names]
        totals[metric].update(c)
        p50, p95 = percentiles(c, (0.5, 0.95))
        for q, value in (("p50", p50), ("p95", p95)):
            points = series.setdefault(f"{names[metric]}_{q}", {}).setdefault(model, [None] * len(times))
            points[i] = value
    table = []
    for model in sorted(by_model):
        entry: dict[str, Any] = {"model": model}
        for metric, c in zip(names, by_model[model], strict=True):
            p50, p95 = percentiles(c, (0.5, 0.95))
            entry[metric] = {"p50": p50, "p95": p95, "count": sum(c.values())}
        table.append(entry)
    return {
        "by_model": table,
        "times": times,
        "series": {k: dict(sorted(v.items())) for k, v in sorted(series.items())},
    }


def _forecast(source: LedgerSource, conn: Any, now: float, accepted: Callable[[int], bool]) -> dict[str, Any]:
    """Month-to-date cost (UTC, the filters applied, any range) and its straight-line month-end projection."""
    current = datetime.fromtimestamp(now, UTC)
    month_start = datetime(current.year, current.month, 1, tzinfo=UTC).timestamp()
    cost = sum(sel.cell.sums[COST] for sel in _select(source, conn, month_start, now, accepted))
    days = calendar.monthrange(current.year, current.month)[1]
    elapsed_days = (now - month_start) / DAY
    projected = cost / elapsed_days * days if elapsed_days > 0 else 0.0
    return {
        "month": current.strftime("%Y-%m"),
        "month_to_date_usd": round(cost, 10),
        "projected_month_usd": round(projected, 10),
        "method": "month-to-date cost / elapsed days x days in month (UTC)",
    }


def _dimensions(source: LedgerSource) -> dict[str, list[str]]:
    """Every value each filterable key has in the ledger (what the page's filters offer)."""
    values: dict[str, set[str]] = {"provider": set(), "model": set(), "service": set(), "operation": set()}
    for d in source.dims:
        values["provider"].add(d.provider)
        values["model"].add(d.model)
        values["operation"].add(d.operation)
        if d.service:
            values["service"].add(d.service)
        for k, v in d.attrs.items():
            values.setdefault(k, set()).add(str(v))
    return {k: sorted(v) for k, v in values.items()}


def _iso(ts: float, to_microsecond: Callable[[float], int] = round) -> str:
    """ISO 8601 in UTC. The range is written rounded outwards (down for its start, up for its end), so that
    asking again for the range as written covers every call it covered (timestamps have sub-microsecond
    digits that an ISO time cannot hold)."""
    return datetime.fromtimestamp(to_microsecond(ts * 1e6) / 1e6, UTC).isoformat()
