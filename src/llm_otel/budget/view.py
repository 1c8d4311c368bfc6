"""The processor's in-memory view: budgets prepared for the hot path, per (budget, group) state, and the
threshold decision shared by the hot path (span events) and the writer (the state file's verdict)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import semconv as sc
from .alerts import BudgetAlert
from .rules import PROJECTED, USAGE_FIELDS, Budget, threshold_label

NEG = float("-inf")
INF = float("inf")
# A USD amount reaches a threshold or limit within one part in a billion of it. Float sums of the same prices
# depend on the order of addition, and the decimal sum is the one meant: ten calls at $0.10 add up to
# 0.9999999999999999, so an exact test would let a $1 blocking budget pass an eleventh call. Token amounts are
# integers, summed exactly. See docs/budgets.md, "When a threshold is reached".
USD_REACH = 1.0 - 1e-9


@dataclass(slots=True)
class Threshold:
    value: float
    amount: float  # the usage that reaches it: value * limit (USD: within USD_REACH)
    label: str
    level: str


class Active:
    """A budget prepared for the hot path (plain attributes; no pydantic lookups per call)."""

    __slots__ = ("amount_index", "amounts", "block", "bucket_s", "budget", "first_at", "forecast", "gauge_attrs",
                 "group_by", "idx", "limit", "matchers", "name", "reach_limit", "rolling", "thresholds", "token_fields",
                 "token_set", "tokens")  # fmt: skip

    def __init__(self, idx: int, budget: Budget) -> None:
        self.idx = idx
        self.budget = budget
        self.name = budget.name
        self.limit = budget.limit
        self.rolling = budget.rolling_s
        self.bucket_s = budget.bucket_s
        self.group_by = budget.group_by
        self.matchers = budget.matchers
        self.forecast = budget.forecast and budget.rolling_s is None
        self.tokens = budget.unit == "tokens"
        reach = 1.0 if self.tokens else USD_REACH
        self.reach_limit = budget.limit * reach  # usage at or above this has reached the limit (blocks, projected)
        self.token_fields = tuple(USAGE_FIELDS[t] for t in budget.token_types or ())
        self.token_set = -1  # index into the processor's distinct token_fields (summed once per call)
        self.amount_index = 0  # index into a call's amounts: 0 USD, 1 + token_set for a token budget
        self.thresholds = tuple(
            Threshold(t, t * budget.limit * reach, threshold_label(t), budget.level_of(t)) for t in budget.thresholds
        )
        self.first_at = self.thresholds[0].amount  # below this no threshold can fire
        # label -> the usage that reaches it (``projected`` is marked as passed once the limit is reached)
        self.amounts = {PROJECTED: self.reach_limit, **{t.label: t.amount for t in self.thresholds}}
        self.block = budget.action == "block"
        self.gauge_attrs: dict[str, dict[str, str]] = {}

    def blocks(self, used: float) -> bool:
        """True when this is a blocking budget and ``used`` has reached its limit."""
        return self.block and used >= self.reach_limit

    def attrs(self, group: str) -> dict[str, str]:
        a = self.gauge_attrs.get(group)
        if a is None:
            if len(self.gauge_attrs) > 4096:
                self.gauge_attrs.clear()
            a = self.gauge_attrs[group] = {sc.BUDGET_NAME: self.name, sc.BUDGET_GROUP: group,
                                           sc.BUDGET_UNIT: self.budget.unit}  # fmt: skip
        return a


class State:
    """One (budget, group) in its current window, as this process sees it."""

    __slots__ = ("bucket", "confirmed", "end", "fc_from", "fc_since", "fc_span", "fired", "next_at", "pending",
                 "start", "synced", "used")  # fmt: skip

    def __init__(self, start: float, end: float) -> None:
        self.start = start  # calendar window start (rolling: -inf)
        self.end = end  # calendar window end (rolling: +inf)
        self.bucket = 0  # rolling: the bucket of the latest call, to expire old ones when it moves
        self.synced: dict[int, float] = {}  # bucket -> shared total from the state file at the last sync
        self.pending: dict[int, list[float]] = {}  # bucket -> [amount, calls] queued, not yet committed
        self.used = 0.0  # synced + pending over live buckets
        self.fired: dict[str, float] = {}  # threshold label -> win, from this process's view or the file
        self.confirmed: dict[str, float] = {}  # the subset the state file has (seeds the memory fallback)
        self.next_at = 0.0  # calendar: below this, no threshold can fire (skip the evaluation)
        # Forecast terms (calendar): projected = used * fc_span / (now - fc_since), considered from fc_from on.
        self.fc_since = start
        self.fc_span = end - start
        self.fc_from = INF

    def add(self, bucket: int, amount: float, calls: int) -> float:
        """Add ``calls`` calls totalling ``amount`` to ``bucket``'s pending usage; the new ``used``."""
        p = self.pending.get(bucket)
        if p is None:
            self.pending[bucket] = [amount, calls]
        else:
            p[0] += amount
            p[1] += calls
        used = self.used = self.used + amount
        return used

    def recompute(self, after: float) -> None:
        used = 0.0
        for b, v in self.synced.items():
            if b > after:
                used += v
        for b, p in self.pending.items():
            if b > after:
                used += p[0]
        self.used = used


#: The hot path's view of one budget in a segment: (state, index into the call's amounts (0: USD, 1 + token
#: set), bucket, budget, group, whether its forecast is tested).
Slot = tuple["State", int, int, Active, str, bool]


class Segment:
    """The budgets one route of calls counts toward, each with the bucket (window) it counts into, valid for
    calls made in ``[start, end)``. A call queues its segment and its amounts, not one delta per budget: the
    writer sums a batch per segment (a few additions per call) and spreads the sums over the budgets.

    ``slots``: one ``Slot`` per budget with a current state, for the hot path's short loop while the segment
    holds and the processor's states are the ones they were taken from (``gen``); ``missing``: the amount
    indices of the budgets without one (a call adding to one of them is prepared first).

    Deferred counting (see ``BudgetProcessor._defer``): ``room`` holds, per amount index, how much more
    usage the segment's budgets can take before any of them could reach a threshold, the projection or its
    block limit (valid while ``room_gen`` is the processor's); ``acc`` and ``acc_n`` hold the sums and call
    counts of the calls counted here and not yet added to the states."""

    __slots__ = ("acc", "acc_n", "buckets", "end", "entries", "gen", "indices", "missing", "open", "room",
                 "room_at", "room_gen", "slots", "start")  # fmt: skip

    def __init__(self, entries: tuple[tuple[Active, str, int], ...], start: float, end: float, amounts: int) -> None:
        self.entries = entries  # (budget, group, bucket)
        self.buckets = {a.idx: (group, bucket) for a, group, bucket in entries}
        self.start = start
        self.end = end
        self.gen = -1
        self.slots: tuple[Slot, ...] | None = None
        self.missing: tuple[int, ...] = ()
        self.indices: tuple[int, ...] = ()  # the amount indices the slots count
        self.room: list[float] = []
        self.room_gen = -1
        self.room_at = 0.0  # when the room was measured
        self.acc = [0.0] * amounts  # per amount index (``amounts``: how many a call has)
        self.acc_n = [0] * amounts
        self.open = False  # holds deferred calls (listed in the processor's open segments)


class Route:
    """The budgets calls with the same provider, operation, model and context keys count toward."""

    __slots__ = ("blocking", "entries", "segment")

    def __init__(self, entries: tuple[tuple[Active, str, tuple[int, str]], ...]) -> None:
        self.entries = entries  # (budget, group, state key)
        self.blocking = tuple(e for e in entries if e[0].block)
        self.segment: Segment | None = None


def amount_of(a: Active, cost: float | None, tokens: Any) -> tuple[float | None, int]:
    """What one call adds to budget ``a`` (None: nothing, its token types were not reported), and whether it
    is an unpriced call (counted, adding nothing to a USD budget)."""
    if a.tokens:
        return tokens[a.token_set], 0
    if cost is not None:
        return cost, 0
    return 0.0, 1


@dataclass(slots=True)
class Batch:
    totals: dict[tuple[int, str], dict[int, float]] = field(default_factory=dict)
    fired: dict[tuple[int, str], dict[str, float]] = field(default_factory=dict)
    writes: dict[tuple[int, str, int], list[float]] = field(default_factory=dict)  # amount, calls, unpriced, n
    alerts: list[BudgetAlert] = field(default_factory=list)


def decide(a: Active, used: float, fired: Mapping[str, float], arm_after: float, win: float,
           fc: float | None) -> list[tuple[str, bool]]:  # fmt: skip
    """Threshold labels to mark now, each with whether it raises an alert.

    The highest threshold reached fires unless it already fired in this window; the lower ones it jumps
    past are marked without an alert. ``projected`` fires once when the forecast passes the limit (and is
    marked without an alert once the limit itself is reached).
    """
    out: list[tuple[str, bool]] = []
    ths = a.thresholds
    i = len(ths) - 1
    while i >= 0 and used < ths[i].amount:
        i -= 1
    if i >= 0 and fired.get(ths[i].label, NEG) < arm_after:
        out.append((ths[i].label, True))
        for j in range(i):
            if fired.get(ths[j].label, NEG) != win:
                out.append((ths[j].label, False))
    if a.forecast and fired.get(PROJECTED, NEG) < arm_after:
        if used >= a.reach_limit:
            out.append((PROJECTED, False))
        elif fc is not None and fc > a.limit:
            out.append((PROJECTED, True))
    return out


def jumped(a: Active, decisions: list[tuple[str, bool]], before: float) -> tuple[str, ...]:
    """The labels ``decide`` marks without an alert that this call crossed: usage was below them before it.

    Rolling windows re-mark lower thresholds that already fired earlier in the window (so they do not
    re-arm under a sustained overrun); those were not passed by this call.
    """
    return tuple(label for label, alert in decisions if not alert and before < a.amounts[label])


def token_sum(usage: Any, fields: tuple[str, ...]) -> float | None:
    """The counted tokens of one call (None when none of those types was reported)."""
    total = None
    for name in fields:
        n = getattr(usage, name)
        if n is not None:
            total = n if total is None else total + n
    return None if total is None else float(total)


def next_at(a: Active, fired: Mapping[str, float]) -> float:
    """Calendar budgets: the smallest usage at which a threshold above every fired one is reached.
    (Rolling budgets keep the first threshold: theirs re-arm with time.)"""
    top = -1
    for i, t in enumerate(a.thresholds):
        if t.label in fired:
            top = i
    return a.thresholds[top + 1].amount if top + 1 < len(a.thresholds) else INF
