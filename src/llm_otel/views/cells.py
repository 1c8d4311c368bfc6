"""The unit of aggregation: one cell sums the ledger rows of one time bucket and one set of dimensions.

A cell keeps exact sums (calls, errors, tokens by type, cost, waits, retries), the largest duration, cost and
wait (to find the top calls without a scan, see ``source.py``), and log-bucketed values for percentiles.

Percentiles come from buckets of width ``GAMMA`` (2 %): the value reported for a bucket is within 1 % of every
value in it. They are nearest-rank percentiles (the value at rank ceil(q x n)) of those bucketed values. SQLite
computes the buckets and the row's contributions (``ROW_COLUMNS``), so that adding a row is cheap in Python.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from operator import add
from typing import Any

GAMMA = 1.02
_OFFSET = 1000  # bucket of 1.0; buckets 1..65535 cover about 2e-9 .. 4e8
_ZERO = 0  # the bucket of values <= 0

# Sums kept per cell (indexes into ``Cell.sums``), then the maxima.
(CALLS, ERRORS, BLOCKED, IN, OUT, CACHE_READ, CACHE_WRITE, REASONING, COST, PRICED, UNPRICED, THROTTLE_S,
 RETRY_S, RETRIES, WAITED, MAX_DURATION, MAX_COST, MAX_WAIT) = range(18)  # fmt: skip
N_SUMS = 18
TOKEN_SUMS = {"input": IN, "output": OUT, "cache_read": CACHE_READ, "cache_write": CACHE_WRITE,
              "reasoning": REASONING}  # fmt: skip
# Metrics with percentiles, in the order of ``Cell.hists``.
SPEED = ("duration_s", "ttfc_s", "tokens_per_second", "burst_tokens_per_second")
BLOCKED_ERROR = "llm_otel.errors.BudgetExceeded"


def _bucket_sql(column: str) -> str:
    index = f"CAST(ROUND(ln({column}) / {math.log(GAMMA)!r}) AS INTEGER) + {_OFFSET}"
    return f"CASE WHEN {column} IS NULL THEN NULL WHEN {column} <= 0 THEN {_ZERO} ELSE MIN(65535, MAX(1, {index})) END"


_WAIT = "COALESCE(throttle_wait_s, 0.0) + COALESCE(retry_wait_s, 0.0)"
# The row a cell is built from, prepared by SQLite: the dimensions, then one value per sum in ``Cell.sums``
# order (so adding a row is adding two lists), then the speed values' buckets. ``source.py`` selects it.
ROW_COLUMNS = (
    "id", "ts", "provider", "operation", "COALESCE(response_model, request_model, '')", "COALESCE(service, '')",
    "COALESCE(attributes, '{}')",
    # sums
    "1", "error_type IS NOT NULL", f"COALESCE(error_type = '{BLOCKED_ERROR}', 0)",
    "COALESCE(input_tokens, 0)", "COALESCE(output_tokens, 0)", "COALESCE(cache_read_tokens, 0)",
    "COALESCE(cache_write_tokens, 0)", "COALESCE(reasoning_tokens, 0)", "COALESCE(cost_usd, 0.0)",
    "cost_usd IS NOT NULL", "cost_usd IS NULL AND usage_complete <> 0", "COALESCE(throttle_wait_s, 0.0)",
    "COALESCE(retry_wait_s, 0.0)", "COALESCE(retries, 0)",
    f"{_WAIT} > 0",
    # maxima
    "COALESCE(duration_s, 0.0)", "COALESCE(cost_usd, 0.0)", _WAIT,
    # buckets
    *(_bucket_sql(c) for c in ("duration_s", "ttfc_s", "tokens_per_second", "burst_tokens_per_second")),
)  # fmt: skip
R_ID, R_TS, R_PROVIDER, R_OPERATION, R_MODEL, R_SERVICE, R_ATTRS = range(7)
_SUMS = slice(7, 7 + MAX_DURATION)
_MAX = 7 + MAX_DURATION  # first of the three maxima
_BUCKETS = 7 + N_SUMS  # first of the four buckets


def value_of(bucket: int) -> float:
    """The value a bucket stands for (within 1 % of every value in it)."""
    return 0.0 if bucket == _ZERO else GAMMA ** (bucket - _OFFSET)


def percentiles(counts: Counter[int], qs: Iterable[float]) -> list[float | None]:
    """Nearest-rank percentiles of bucketed values (None when there are none)."""
    n = sum(counts.values())
    if not n:
        return [None for _ in qs]
    ordered = sorted(counts.items())
    out: list[float | None] = []
    for q in qs:
        rank = max(1, math.ceil(q * n))
        seen = 0
        for bucket, c in ordered:
            seen += c
            if seen >= rank:
                out.append(round(value_of(bucket), 6))
                break
    return out


@dataclass(frozen=True, slots=True)
class Dims:
    """The dimensions a cell is keyed by: provider, operation, model, service and the attribution keys."""

    provider: str
    operation: str
    model: str
    service: str
    attrs: dict[str, str]

    def value(self, key: str) -> str:
        """The value a report groups or filters by (``""`` when the call did not have it)."""
        if key == "provider":
            return self.provider
        if key == "model":
            return self.model
        if key == "operation":
            return self.operation
        if key == "service":
            return self.service
        return str(self.attrs.get(key, ""))


class Cell:
    """The sums, maxima and bucketed speed values of the rows added to it."""

    __slots__ = ("hists", "sums")

    def __init__(self) -> None:
        self.sums = [0] * N_SUMS
        self.hists: list[array[int] | None] = [None] * len(SPEED)  # in ``SPEED`` order

    def add(self, row: tuple[Any, ...]) -> None:
        """Add one prepared row (``ROW_COLUMNS``). Unrolled: it runs once per ledger row on a first read."""
        s = self.sums
        s[:MAX_DURATION] = map(add, s[:MAX_DURATION], row[_SUMS])
        if row[_MAX] > s[MAX_DURATION]:
            s[MAX_DURATION] = row[_MAX]
        if row[_MAX + 1] > s[MAX_COST]:
            s[MAX_COST] = row[_MAX + 1]
        if row[_MAX + 2] > s[MAX_WAIT]:
            s[MAX_WAIT] = row[_MAX + 2]
        duration, ttfc, tps, burst = row[_BUCKETS:]
        hists = self.hists
        if duration is not None:
            (hists[0] or self._hist(0)).append(duration)
        if ttfc is not None:
            (hists[1] or self._hist(1)).append(ttfc)
        if tps is not None:
            (hists[2] or self._hist(2)).append(tps)
        if burst is not None:
            (hists[3] or self._hist(3)).append(burst)

    def _hist(self, i: int) -> array[int]:
        h = self.hists[i] = array("H")
        return h

    def absorb(self, other: Cell) -> None:
        """Add another cell's rows (a day's cell from its hours)."""
        s, o = self.sums, other.sums
        s[:MAX_DURATION] = map(add, s[:MAX_DURATION], o[:MAX_DURATION])
        for i in range(MAX_DURATION, N_SUMS):
            if o[i] > s[i]:
                s[i] = o[i]
        for i, h in enumerate(other.hists):
            if h is not None:
                mine = self.hists[i]
                if mine is None:
                    self.hists[i] = array("H", h)
                else:
                    mine.extend(h)
