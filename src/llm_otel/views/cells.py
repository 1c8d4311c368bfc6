"""The unit of aggregation: one cell sums the ledger rows of one time bucket and one set of dimensions.

A cell keeps exact sums (calls, errors, tokens by type, cost, waits, retries), the largest duration, cost and
wait (to find the top calls without a scan, see ``source.py``), and log-bucketed values for percentiles.

Percentiles come from buckets of width ``GAMMA`` (2 %): the value reported for a bucket is within 1 % of every
value in it. They are nearest-rank percentiles (the value at rank ceil(q x n)) of those bucketed values.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# Column order of the rows the cells are built from (``source.ROW_SQL``).
(
    R_ID,
    R_TS,
    R_PROVIDER,
    R_OPERATION,
    R_MODEL,
    R_SERVICE,
    R_ATTRS,
    R_ERROR,
    R_IN,
    R_OUT,
    R_CACHE_READ,
    R_CACHE_WRITE,
    R_REASONING,
    R_COMPLETE,
    R_COST,
    R_DURATION,
    R_TTFC,
    R_TPS,
    R_BURST,
    R_THROTTLE,
    R_RETRY_WAIT,
    R_RETRIES,
) = range(22)

# Sums kept per cell (indexes into ``Cell.sums``).
(
    CALLS,
    ERRORS,
    BLOCKED,
    IN,
    OUT,
    CACHE_READ,
    CACHE_WRITE,
    REASONING,
    COST,
    PRICED,
    UNPRICED,
    THROTTLE_S,
    RETRY_S,
    RETRIES,
    WAITED,
    MAX_DURATION,
    MAX_COST,
    MAX_WAIT,
) = range(18)
N_SUMS = 18
TOKEN_SUMS = {"input": IN, "output": OUT, "cache_read": CACHE_READ, "cache_write": CACHE_WRITE, "reasoning": REASONING}
# Metrics with percentiles: name -> row column.
SPEED = {"duration_s": R_DURATION, "ttfc_s": R_TTFC, "tokens_per_second": R_TPS, "burst_tokens_per_second": R_BURST}
_SPEED_COLUMNS = tuple(enumerate(SPEED.values()))
BLOCKED_ERROR = "llm_otel.errors.BudgetExceeded"

GAMMA = 1.02
_LOG_GAMMA = math.log(GAMMA)
_log = math.log
_OFFSET = 1000  # bucket of 1.0; buckets 1..65535 cover about 2e-9 .. 4e8
_ZERO = 0  # the bucket of values <= 0


def bucket_of(value: float) -> int:
    if value <= 0:
        return _ZERO
    return min(65535, max(1, round(_log(value) / _LOG_GAMMA) + _OFFSET))


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
        self.sums = [0.0] * N_SUMS
        self.hists: list[array[int] | None] = [None] * len(SPEED)  # in ``SPEED`` order

    def add(self, row: tuple[Any, ...]) -> None:
        s = self.sums
        s[CALLS] += 1
        error = row[R_ERROR]
        if error:
            s[ERRORS] += 1
            if error == BLOCKED_ERROR:
                s[BLOCKED] += 1
        s[IN] += row[R_IN] or 0
        s[OUT] += row[R_OUT] or 0
        s[CACHE_READ] += row[R_CACHE_READ] or 0
        s[CACHE_WRITE] += row[R_CACHE_WRITE] or 0
        s[REASONING] += row[R_REASONING] or 0
        cost = row[R_COST]
        if cost is not None:
            s[COST] += cost
            s[PRICED] += 1
            if cost > s[MAX_COST]:
                s[MAX_COST] = cost
        elif row[R_COMPLETE]:
            s[UNPRICED] += 1
        throttle = row[R_THROTTLE] or 0.0
        retry_wait = row[R_RETRY_WAIT] or 0.0
        if throttle or retry_wait:
            s[THROTTLE_S] += throttle
            s[RETRY_S] += retry_wait
            s[WAITED] += 1
            if throttle + retry_wait > s[MAX_WAIT]:
                s[MAX_WAIT] = throttle + retry_wait
        s[RETRIES] += row[R_RETRIES] or 0
        duration = row[R_DURATION] or 0.0
        if duration > s[MAX_DURATION]:
            s[MAX_DURATION] = duration
        hists = self.hists
        for i, col in _SPEED_COLUMNS:
            value = row[col]
            if value is not None:
                h = hists[i]
                if h is None:
                    h = hists[i] = array("H")
                h.append(bucket_of(value) if value > 0 else _ZERO)

    def absorb(self, other: Cell) -> None:
        """Add another cell's rows (a day's cell from its hours)."""
        s, o = self.sums, other.sums
        for i in range(MAX_DURATION):
            s[i] += o[i]
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
