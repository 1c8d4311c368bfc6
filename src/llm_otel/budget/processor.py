"""The budget processor: counts every call into its budgets, fires threshold alerts, blocks when told to.

Hot path (``on_usage``, ``before_call``): in-memory state under one lock, no I/O. ``on_usage`` adds the
call's amount to each budget it counts for, detects a threshold crossing from that in-memory view (and
then adds a span event to the call's still-open span), and queues the deltas. While a call cannot cross
anything it is only summed on its route's segment, and the sums reach the budgets before anything reads
them (``_defer``, ``_settle``; docs/budgets.md, the hot path).

Writer thread: gathers the queued deltas for ``commit_every_s`` and, in one ``BEGIN IMMEDIATE``
transaction on the shared state file, reads the shared totals, replays the batch's calls in order against
them, records every threshold they take past in the fired table and adds the deltas. Only the transaction
that records a threshold emits its alert (log record, metric, Python logging, callbacks), so N processes
sharing the file fire each threshold once between them. The in-memory view then takes the file's totals
(for the keys of the batch at once, for every budget and group every ``refresh_s``), so that the other
processes' usage is seen by ``before_call`` and by the next crossing detection. With ``store="redis://…"``
the same batch runs against Redis (redis_store.py), shared by every host; while Redis is unreachable the
batches are held here, in order, and replayed when it is back. See docs/budgets.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from opentelemetry.metrics import CallbackOptions, Observation

from .. import semconv as sc
from ..core.result import CallInfo, UsageRecord
from ..errors import BudgetExceeded
from ..sinks.metrics import stop_reporting_budgets
from ..sinks.writer import Writer
from .alerts import BudgetAlert, Callback, Emitter
from .rules import (
    PROJECTED,
    Budget,
    calendar_window,
    forecast,
    group_value,
    scope_matches,
)
from .store import Fired, Mark, MemoryStore, SqliteStore, Store, StoreUnavailable, classify, default_path
from .view import INF, NEG, Active, Batch, Route, Segment, Slot, State, amount_of, decide, jumped, next_at, token_sum

log = logging.getLogger("llm_otel.budget")

_ROUTES_MAX = 4096
_SUM_SLACK = 1e-9  # relative margin of a segment's room (deferred sums are added in another order)
_PRUNE_EVERY_S = 600.0

Clock = Callable[[], datetime]


class BudgetProcessor:
    """A usage processor enforcing budgets. Put it first in the processor list (``instrument()`` does).

    ``state``: a path to the shared SQLite state file, True for the default one, False for memory only.
    ``store``: a ``redis://`` URL: budgets shared by every process on every host (``state`` is then unused).
    ``on_alert``: callables given each ``BudgetAlert`` (on the writer thread; exceptions are swallowed).
    ``clock``: returns the current time as an aware datetime (tests inject one).
    """

    def __init__(
        self,
        budgets: Sequence[Budget | Mapping[str, Any]],
        *,
        state: str | Path | bool = True,
        store: str | None = None,
        on_alert: Callback | Iterable[Callback] | None = None,
        clock: Clock | None = None,
        service_name: str | None = None,
        refresh_s: float | None = None,
        retry_s: float = 30.0,
        busy_timeout_s: float = 5.0,
        commit_every_s: float = 0.25,
        batch: int = 4096,
        writer: Writer | None = None,
    ) -> None:
        self.budgets = [b if isinstance(b, Budget) else Budget(**b) for b in budgets]
        self._active = [Active(i, b) for i, b in enumerate(self.budgets)]
        self._blocking = any(a.block for a in self._active)
        # False only while no blocking budget's state is at or over its limit (before_call has nothing to check).
        self._maybe_over = False
        self._ctx_keys = tuple(sorted({k for b in self.budgets for k in b.context_keys}))
        self._token_sets = list(dict.fromkeys(a.token_fields for a in self._active if a.tokens))
        for a in self._active:
            if a.tokens:
                a.token_set = self._token_sets.index(a.token_fields)
                a.amount_index = 1 + a.token_set
        self._routes: dict[tuple[Any, ...], Route] = {}
        self._ends: dict[tuple[int, int], float] = {}  # (budget, window start) -> window end
        self._now: Callable[[], float] = (lambda: clock().timestamp()) if clock is not None else time.time
        self._service = service_name
        self._refresh_s = refresh_s if refresh_s is not None else 0.5
        self._commit_every_s = commit_every_s
        self._retry_s = retry_s
        self._batch = batch
        self._emitter = Emitter(on_alert)
        self._lock = threading.Lock()
        self._states: dict[tuple[int, str], State] = {}
        self._gen = 0  # bumped whenever a state is created or dropped: segments' slots are rebuilt then
        # Deferred counting (on_usage): segments holding calls not yet added to the states, the sum of those
        # calls per amount index over all of them, and a counter that invalidates every segment's room.
        self._open: list[Segment] = []
        self._deferred = [0.0] * (1 + len(self._token_sets))
        self._room_gen = 0
        self._marks: dict[str, Mark] = {}
        self.interval_s = commit_every_s  # WriterClient: how long usage may wait before it is committed
        self.batch_max = batch
        self._last_refresh = 0.0
        self._seen: tuple[int, int] | None = None  # the store's others_version() when the last refresh began
        self._warned = False
        self._internal_reported: set[str] = set()
        self._last_retry = 0.0
        self._last_prune = 0.0
        self._held: list[Any] = []  # calls the store could not take yet (Redis unreachable), in order
        self._folded: dict[tuple[int, str, int], list[float]] = {}  # held calls past held_max, summed
        self._redis: Any = None
        self._db: SqliteStore | None = None
        self._store: Store
        if store is not None:
            from .redis_store import RedisStore

            self._redis = self._store = RedisStore(store, self.budgets)
            self._refresh_s = refresh_s if refresh_s is not None else self._redis.refresh_s
        elif state is False:
            self._store = MemoryStore()
        else:
            path = default_path() if state is True else Path(state).expanduser()
            self._db = SqliteStore(path, busy_timeout_s=busy_timeout_s)
            self._store = self._db
        self._configs = {b.name: b.model_dump(mode="json") for b in self.budgets}
        # Redis is opened on the writer thread: instrument() neither imports the client nor touches the network.
        self._unloaded = self._redis is not None
        if not self._unloaded:
            self._open_and_load()
        self._own_writer = writer is None
        self._writer = writer or Writer("llm-otel-budgets")
        self._lane = self._writer.lane(self)
        if self._unloaded:
            self._writer.start()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork)

    # --- wiring ------------------------------------------------------------------------------------------------
    @property
    def state_path(self) -> Path | None:
        """The shared state file (None when configured memory-only)."""
        return self._db.path if self._db is not None else None

    @property
    def degraded(self) -> bool:
        """True while the shared state is out of reach: the state file is unusable and budgets are kept in this
        process's memory, or Redis is unreachable and budgets carry on locally until it is back."""
        if self._redis is not None:
            return not self._redis.online or bool(self._held or self._folded)
        return self._db is not None and self._store is not self._db

    def bind(self, runtime: Any) -> None:
        """Called by the runtime: telemetry instruments, logger and the service name for ``scope.service``."""
        self._emitter.bind(runtime)
        runtime.metrics.report_budgets(self)
        if self._service is None:
            self._service = runtime.settings.service_name or _resource_service(runtime)
        self._routes.clear()

    # --- hot path ----------------------------------------------------------------------------------------------
    def _route(self, provider: str, operation: str, model: str | None, attrs: Mapping[str, str]) -> Route:
        """The budgets a call counts toward, each with its group and state key; cached by the call's properties."""
        key = (provider, operation, model, tuple(map(attrs.get, self._ctx_keys)) if self._ctx_keys else ())
        route = self._routes.get(key)
        if route is None:
            service = self._service
            groups = [
                (a, group_value(a.group_by, provider, operation, model, service, attrs) if a.group_by else "")
                for a in self._active
                if not a.matchers or scope_matches(a.matchers, provider, operation, model, service, attrs)
            ]
            route = Route(tuple((a, group, (a.idx, group)) for a, group in groups))
            if len(self._routes) >= _ROUTES_MAX:
                self._routes.clear()
            self._routes[key] = route
        return route

    def before_call(self, info: CallInfo) -> None:
        """Raise ``BudgetExceeded`` when a blocking budget this call counts toward is exhausted."""
        if not self._blocking:
            return
        self._writer.start()  # keeps this process's view of the shared totals fresh
        if not self._maybe_over:
            return  # no blocking budget's state has reached its limit
        now = self._now()
        for a, group, key in self._route(info.provider, info.operation, info.request_model, info.attributes).blocking:
            st = self._states.get(key)
            if st is None or not a.blocks(st.used):  # (rolling: used is an upper bound until old buckets expire)
                continue
            if a.rolling is None:
                if not st.start <= now < st.end:
                    continue
                used, resets = st.used, st.end
            else:
                with self._lock:
                    self._settle()
                    used, resets = self._rolling_used(a, st, now)
                if not a.blocks(used):
                    continue
            b = a.budget
            raise BudgetExceeded(b.name, group, used, a.limit, b.unit, datetime.fromtimestamp(resets, b.tz))

    def on_usage(self, record: UsageRecord) -> None:
        usage = record.usage
        if usage is None:
            return
        route = self._route(record.provider, record.operation, record.request_model, record.attributes)
        if not route.entries:
            return
        now = self._now()
        cost = record.cost_usd
        tokens = tuple(token_sum(usage, fields) for fields in self._token_sets) if self._token_sets else ()
        # What amount_of() says per budget, by a budget's amount index: 0 the USD amount (unpriced calls add
        # 0.0), 1 + i the sum of token set i (None: the call reported none of those token types).
        amounts = (cost if cost is not None else 0.0, *tokens)
        crossed: list[BudgetAlert] | None = None
        with self._lock:
            seg = route.segment
            if (
                seg is not None
                and seg.slots is not None
                and seg.gen == self._gen
                and seg.start <= now < seg.end
                and (not seg.missing or all(amounts[i] is None for i in seg.missing))
            ):
                counted = self._defer(seg, amounts, now)
                if not counted:
                    self._settle()
                slots = seg.slots
            else:
                counted = False
                self._settle()
                seg, slots = self._prepare(route, seg, now, amounts)
            if not counted:
                crossed = self._count(slots, amounts, now, record)
            # Queued under the lock: the writer replays calls in the order they changed this view.
            span = record.span  # its context is formatted into ids on the writer, only if an alert needs them
            self._lane.put((now, span.get_span_context() if span is not None else None, seg, cost, tokens))
        self._lane.keep_up()  # outside the lock: the writer takes it
        if crossed and record.span is not None:
            for alert in crossed:
                with contextlib.suppress(Exception):
                    record.span.add_event(sc.BUDGET_ALERT_EVENT, alert.attributes())

    def _defer(self, seg: Segment, amounts: tuple[Any, ...], now: float) -> bool:
        """Count a call on its segment only, when it cannot take any of the segment's budgets to a threshold,
        the projection or a block (caller holds the lock). The test is against ``_deferred``, what every open
        segment holds, an upper bound of what any one state has waiting (while no amount is negative: such a
        call, or a NaN, is counted budget by budget), so it holds across routes sharing a state."""
        if seg.room_gen != self._room_gen or now < seg.room_at:  # (a clock set back lowers the projection's bar)
            self._measure_room(seg, now)
        deferred, room = self._deferred, seg.room
        for i in seg.indices:
            amount = amounts[i]
            if amount is not None and not (amount >= 0.0 and deferred[i] + amount < room[i]):
                return False
        acc, acc_n = seg.acc, seg.acc_n
        for i in seg.indices:
            amount = amounts[i]
            if amount is not None:
                deferred[i] += amount
                acc[i] += amount
                acc_n[i] += 1
        if not seg.open:
            seg.open = True
            self._open.append(seg)
        return True

    def _measure_room(self, seg: Segment, now: float) -> None:
        """Per amount index, the least any of ``seg``'s budgets can still take before a call could cross its next
        threshold, pass its projection (whose bar only rises with time, so ``now`` gives a lower bound) or reach
        its block limit; kept a little short of it, so that summing in another order cannot matter."""
        room = [INF] * len(self._deferred)
        for st, i, _bucket, a, _group, fc in seg.slots or ():
            used = st.used
            r = st.next_at - used
            if fc and PROJECTED not in st.fired and st.fc_span > 0:
                r = min(r, a.limit * (max(now, st.fc_from) - st.fc_since) / st.fc_span - used)
            if a.block:
                r = min(r, a.reach_limit - used)
            if r < INF:
                r -= _SUM_SLACK * (abs(used) + abs(r) + 1.0)
            if r < room[i]:
                room[i] = r
        seg.room = room
        seg.room_gen = self._room_gen
        seg.room_at = now

    def _settle(self) -> None:
        """Add every open segment's deferred calls to their states (caller holds the lock, and calls it before
        anything else reads or changes a state). Every segment's room is measured again on its next call."""
        self._room_gen += 1
        if not self._open:
            return
        for seg in self._open:
            acc, acc_n = seg.acc, seg.acc_n
            for st, i, bucket, a, _group, _fc in seg.slots or ():
                n = acc_n[i]
                if not n:
                    continue
                if a.blocks(st.add(bucket, acc[i], n)):  # (the room keeps it under: a safeguard)
                    self._maybe_over = True
            for i in seg.indices:
                acc[i] = 0.0
                acc_n[i] = 0
            seg.open = False
        self._open = []
        self._deferred = [0.0] * len(self._deferred)

    def _count(self, slots: tuple[Slot, ...], amounts: tuple[Any, ...], now: float, record: UsageRecord
               ) -> list[BudgetAlert] | None:  # fmt: skip
        """Add a call to each state of ``slots`` and decide its crossings (caller holds the lock and has just
        settled: no segment holds deferred calls, and every room will be measured again)."""
        crossed: list[BudgetAlert] | None = None
        for st, i, bucket, a, group, fc in slots:
            amount = amounts[i]
            if amount is None:
                continue
            before = st.used
            used = st.add(bucket, amount, 1)
            if a.blocks(used):
                self._maybe_over = True
            if used >= st.next_at or (
                fc
                and now >= st.fc_from
                and used * st.fc_span > a.limit * (now - st.fc_since)
                and PROJECTED not in st.fired
            ):
                found = self._cross_locally(a, st, group, now, record, before)
                if found:
                    crossed = (crossed or []) + found
        return crossed

    def _prepare(self, route: Route, seg: Segment | None, now: float, amounts: tuple[Any, ...]
                 ) -> tuple[Segment, tuple[Slot, ...]]:  # fmt: skip
        """Make the route's view current for a call at ``now`` (caller holds the lock): a state for every budget
        the call adds to (a new one when its window turned; a rolling one's old buckets expired), a new
        segment when the last one no longer holds, and its slots to count the call with."""
        if seg is not None and not seg.start <= now < seg.end:
            seg = None
        entries: list[tuple[Active, str, int]] | None = [] if seg is None else None
        start, end = NEG, INF
        for a, group, key in route.entries:
            st = self._states.get(key)
            if entries is not None:  # a new segment: each budget's bucket, and how long they all hold
                w_start, w_end, bucket = self._bucket_at(a, st, now)
                entries.append((a, group, bucket))
                start, end = max(start, w_start), min(end, w_end)
            if amounts[a.amount_index] is None:
                continue  # adds nothing: no state needed
            if a.rolling is None:
                if st is None or not st.start <= now < st.end:
                    self._new_state(a, key, now)
            else:
                if st is None:
                    st = self._new_state(a, key, now)
                bucket = int(now // a.bucket_s) * a.bucket_s
                if bucket != st.bucket:
                    st.bucket = bucket
                    self._expire(a, st, now)
        if entries is not None:
            seg = route.segment = Segment(tuple(entries), start, end, len(self._deferred))
        return seg, self._take_slots(route, seg)

    def _take_slots(self, route: Route, seg: Segment) -> tuple[Slot, ...]:
        """``seg``'s slots: one per budget of the route whose state covers the segment. The others (a token
        budget whose types no call of the route reported yet, a state from an older window) are ``missing``:
        a call that adds to one of them is prepared again."""
        slots, missing = [], []
        for (a, group, key), (_a, _group, bucket) in zip(route.entries, seg.entries, strict=True):
            st = self._states.get(key)
            if (
                st is None
                or (a.rolling is None and not (st.start <= seg.start and seg.end <= st.end))
                or (a.rolling is not None and st.bucket != bucket)
            ):
                missing.append(a.amount_index)
            else:
                slots.append((st, a.amount_index, bucket, a, group, a.forecast))
        seg.slots, seg.missing, seg.gen = tuple(slots), tuple(missing), self._gen
        seg.indices = tuple(sorted({slot[1] for slot in slots}))
        seg.room_gen = -1
        return seg.slots

    def _bucket_at(self, a: Active, st: State | None, now: float) -> tuple[float, float, int]:
        """(from, until, bucket): the bucket a call at ``now`` counts into for ``a``, and how long that holds."""
        if a.rolling is not None:
            bucket = int(now // a.bucket_s) * a.bucket_s
            return bucket, bucket + a.bucket_s, bucket
        if st is not None and st.start <= now < st.end:
            return st.start, st.end, int(st.start)
        w_start, w_end = calendar_window(a.budget.period, a.budget.tz, now)
        return w_start, w_end, int(w_start)

    def _new_state(self, a: Active, key: tuple[int, str], now: float) -> State:
        if a.rolling is None:
            start, end = calendar_window(a.budget.period, a.budget.tz, now)
            st = State(start, end)
            self._forecast_terms(a, st)
        else:
            st = State(NEG, INF)
            st.bucket = int(now // a.bucket_s) * a.bucket_s
        st.next_at = a.first_at
        self._states[key] = st
        self._gen += 1
        return st

    def _expire(self, a: Active, st: State, now: float) -> None:
        after = now - a.rolling - a.bucket_s  # type: ignore[operator]
        for b in [b for b in st.synced if b <= after]:
            del st.synced[b]
        st.recompute(after)

    def _rolling_used(self, a: Active, st: State, now: float) -> tuple[float, float]:
        """Used in the rolling window at ``now``, and when enough of it will have expired to be under the limit."""
        d, g = a.rolling, a.bucket_s
        after = now - d - g  # type: ignore[operator]
        per: dict[int, float] = {}
        for b, v in st.synced.items():
            if b > after:
                per[b] = per.get(b, 0.0) + v
        for b, p in st.pending.items():
            if b > after:
                per[b] = per.get(b, 0.0) + p[0]
        used = sum(per.values())
        left = used
        resets = now
        for b in sorted(per):
            if left < a.reach_limit:
                break
            left -= per[b]
            resets = b + g + d  # type: ignore[operator]
        return used, resets

    def _arm(self, a: Active, st: State, now: float) -> tuple[float, float, float, float]:
        """(arm_after, win, window start, window end) for a decision at ``now``."""
        if a.rolling is None:
            return st.start, st.start, st.start, st.end
        return now - a.rolling, now, now - a.rolling, now

    def _forecast_terms(self, a: Active, st: State) -> None:
        if not a.forecast:
            return
        mark = self._marks.get(a.name)
        since = max(st.start, mark.since) if mark is not None else st.start
        st.fc_since = since
        st.fc_span = st.end - since
        st.fc_from = since + a.budget.forecast_after * st.fc_span

    def _forecast(self, a: Active, used: float, now: float, start: float, end: float) -> float | None:
        if not a.forecast:
            return None
        mark = self._marks.get(a.name)
        since = max(start, mark.since) if mark is not None else start
        return forecast(a.budget, used, now, since, end)

    def _cross_locally(self, a: Active, st: State, group: str, now: float, record: UsageRecord,
                       before: float) -> list[BudgetAlert]:  # fmt: skip
        """Threshold decisions in this process's view for a call that took usage from ``before`` to ``st.used``."""
        arm_after, win, w_start, w_end = self._arm(a, st, now)
        used = st.used
        fc = self._forecast(a, used, now, w_start, w_end)
        decisions = decide(a, used, st.fired, arm_after, win, fc)
        out: list[BudgetAlert] = []
        for label, _alert in decisions:
            st.fired[label] = win
        if a.rolling is None:
            st.next_at = next_at(a, st.fired)
        passed = jumped(a, decisions, before)
        for label, alert in decisions:
            if alert:
                out.append(self._alert(a, group, label, used, fc, w_start, w_end, now, passed, record.trace_id,
                                       record.span_id))  # fmt: skip
        return out

    def _alert(self, a: Active, group: str, label: str, used: float, fc: float | None, w_start: float,
               w_end: float, now: float, passed: tuple[str, ...], trace_id: str | None,
               span_id: str | None) -> BudgetAlert:  # fmt: skip
        b = a.budget
        tz = b.tz
        level = b.forecast_level if label == PROJECTED else next(t.level for t in a.thresholds if t.label == label)
        return BudgetAlert(
            budget=b.name, group=group, threshold=label, level=level, used=used, limit=a.limit, unit=b.unit,
            utilization=used / a.limit, forecast=fc, window_start=datetime.fromtimestamp(w_start, tz),
            window_end=datetime.fromtimestamp(w_end, tz), period=b.period, action=b.action,
            fired_at=datetime.fromtimestamp(now, tz), passed=tuple(p for p in passed if label != PROJECTED),
            trace_id=trace_id, span_id=span_id,
        )  # fmt: skip

    # --- on the background writer (WriterClient) -------------------------------------------------------------
    name = "the budget state"
    max_backlog = 1_000_000
    held_max = 100_000  # calls kept for a call-by-call replay while Redis is unreachable (about 15 MB)

    def write(self, batch: list[Any]) -> None:
        """Commit a batch of usage deltas to the shared state, in the order the calls changed this view."""
        try:
            self._load()
            self._commit(batch)
        except Exception:
            self._internal("budget writer")

    def tick(self, force: bool) -> None:
        """Refresh this process's view of the shared totals every ``refresh_s``, and on flush / close unless
        the last refresh is younger than that and nobody else has written to the store since (what this
        process committed is in the view already: each commit takes back the totals of its keys)."""
        try:
            self._load()
        except Exception:
            self._internal("budget writer")
        now = time.monotonic()
        if (self._held or self._folded) and (force or now - self._last_refresh >= self._refresh_s):
            try:
                self._commit([])  # calls held while the store was unreachable: replay them now if it is back
            except Exception:
                self._internal("budget writer")
        if now - self._last_refresh < self._refresh_s and (not force or self._unchanged()):
            return
        try:
            self._maybe_recover()
            self._seen = self._others_version()  # before reading: a write after this is seen next time
            self._refresh()
            self._maybe_prune()
        except Exception:
            self._seen = None
            self._internal("budget writer")
        self._last_refresh = now

    def _others_version(self) -> tuple[int, int] | None:
        """The store's ``others_version`` (None when unknown: the refresh that follows says why)."""
        try:
            return self._store.others_version()
        except (sqlite3.Error, OSError):
            return None

    def _unchanged(self) -> bool:
        """True when the store says nobody else wrote to it since the last refresh began."""
        return self._seen is not None and self._others_version() == self._seen

    def closed(self) -> None:
        """The writer stopped after its final commit: close the state store; the gauge stops reporting it."""
        stop_reporting_budgets(self)
        if (self._held or self._folded) and self._redis is not None and self._redis.online:
            self._redis.settle()  # back from an outage moments ago: send what is held rather than lose it
            self._commit([])
        if self._held or self._folded:
            n = len(self._held) + int(sum(w[3] for w in self._folded.values()))
            log.warning("llm-otel: budget store %s was unreachable at exit: the usage of %d call(s) made since "
                        "was not sent, and their alerts were not raised", self._redis.shown, n)  # fmt: skip
        self._store.close()

    def _commit(self, batch: list[Any]) -> None:
        """Apply ``batch`` (after any calls held back while the store was unreachable, in order)."""
        if self._held or self._folded:
            batch = self._held + batch
            self._held = []
        if not batch and not self._folded:
            return
        folded, self._folded = self._folded, {}
        try:
            result = self._apply(self._store, batch, folded)
        except StoreUnavailable:
            self._hold(batch, folded)
            return
        except (sqlite3.Error, OSError) as exc:
            with contextlib.suppress(Exception):
                self._store.rollback()
            self._degrade(exc)
            result = self._apply(self._store, batch, folded)
        if batch:
            self._absorb(result, batch[-1][0])
        else:
            self._absorb(result, self._now())
        for alert in result.alerts:
            self._emitter.emit(alert)

    def _hold(self, batch: list[Any], folded: dict[tuple[int, str, int], list[float]]) -> None:
        """Keep calls the store could not take (Redis unreachable) for a replay when it is back: their usage
        stays pending in this view (blocks still see it) and their alerts wait for their claims. Past
        ``held_max`` calls the oldest are folded into per-(budget, group, bucket) sums: still counted exactly,
        no longer replayed call by call."""
        self._held = batch
        self._folded = folded
        over = len(self._held) - self.held_max
        if over > 0:
            old, self._held = self._held[:over], self._held[over:]
            for key, w in self._writes_of(old).items():
                f = self._folded.get(key)
                if f is None:
                    self._folded[key] = w
                else:
                    for i in range(4):
                        f[i] += w[i]

    def _apply(self, store: Store, batch: list[Any], folded: Mapping[tuple[int, str, int], list[float]] | None = None
               ) -> Batch:  # fmt: skip
        """Replay the batch's calls in order against the shared totals, inside one write transaction.

        Holding the write lock from the first read to the commit makes "this call took the shared total past
        this threshold, and nobody marked it yet" a decision no other process can race (Redis: the batch's
        writes and reads are one MULTI, and ``fire`` is a first-claimant-wins claim). Keys are independent, so
        each key's calls are replayed in their order; a key whose batch cannot reach anything is only summed.
        ``folded``: usage of calls held too long to replay one by one (added, and counted as already there).
        """
        out = Batch()
        # Per (budget, group): [amount, first now, last now, lowest bucket, highest bucket, {bucket: amount}].
        # Calls are replayed one by one only for keys that could reach a threshold (rare), not for every call.
        per_key: dict[tuple[int, str], list[Any]] = {}
        writes = out.writes = self._writes_of(batch, per_key)
        for key, w in (folded or {}).items():
            have = writes.get(key)
            writes[key] = list(w) if have is None else [x + y for x, y in zip(have, w, strict=True)]
        alerts: list[tuple[int, BudgetAlert]] = []
        pid = os.getpid()
        names = [a.name for a in self._active]
        store.begin([(names[idx], group, bucket, amount, int(calls_n), int(unpriced))
                     for (idx, group, bucket), (amount, calls_n, unpriced, _n) in writes.items()])  # fmt: skip
        try:
            for (idx, group), agg in per_key.items():
                a = self._active[idx]
                if a.rolling is None:
                    first = agg[3]
                    after, arm_after = first - 1, float(first)
                else:
                    first_now = agg[1]
                    after, arm_after = first_now - a.rolling - a.bucket_s, first_now - a.rolling
                totals = out.totals[(idx, group)] = store.usage(a.name, group, after)
                if folded:
                    for (f_idx, f_group, bucket), w in folded.items():
                        if f_idx == idx and f_group == group and bucket > after:
                            totals[bucket] = totals.get(bucket, 0.0) + w[0]
                fired = out.fired[(idx, group)] = store.fired(a.name, group, arm_after)
                if not self._could_fire(a, totals, fired, agg):
                    for bucket, amount in agg[5].items():
                        totals[bucket] = totals.get(bucket, 0.0) + amount
                    continue
                for now, bucket, amount, n in self._calls_of(batch, a, group):
                    prev = totals.get(bucket, 0.0)
                    total = totals[bucket] = prev + amount
                    if a.rolling is None:
                        used = total
                        w_start, w_end = float(bucket), self._window_end(a, bucket)
                        arm_after = win = w_start
                        fc = self._forecast(a, used, now, w_start, w_end) if a.forecast else None
                    else:
                        live = now - a.rolling - a.bucket_s
                        used = 0.0
                        for b2, v in totals.items():
                            if b2 > live:
                                used += v
                        arm_after = w_start = now - a.rolling
                        w_end = win = now
                        fc = None
                    decisions = decide(a, used, fired, arm_after, win, fc)
                    if not decisions:
                        continue
                    before = prev if a.rolling is None else _live_before(totals, live, bucket, prev)
                    passed = jumped(a, decisions, before)
                    trace_id, span_id = _ids(batch[n][1])
                    for label, alert in decisions:
                        fired[label] = win
                        inserted = store.fire(Fired(a.name, group, win, label, now, used, alert, pid))
                        if alert and inserted:
                            alerts.append((n, self._alert(a, group, label, used, fc, w_start, w_end, now, passed,
                                                          trace_id, span_id)))  # fmt: skip
            store.commit()
        except BaseException:
            with contextlib.suppress(Exception):
                store.rollback()
            raise
        alerts.sort(key=lambda pair: pair[0])  # in call order across keys
        out.alerts = [alert for _n, alert in alerts]
        return out

    def _writes_of(self, batch: list[Any], per_key: dict[tuple[int, str], list[Any]] | None = None
                   ) -> dict[tuple[int, str, int], list[float]]:  # fmt: skip
        """The batch summed per (budget, group, bucket): [amount, calls, unpriced calls, calls]; and, into
        ``per_key``, per (budget, group): [amount, first now, last now, lowest bucket, highest bucket, sums]."""
        writes: dict[tuple[int, str, int], list[float]] = {}
        if per_key is None:
            per_key = {}
        # Per segment: [first now, last now, calls, cost, unpriced calls, token sums, calls reporting them].
        per_seg: dict[Segment, list[Any]] = {}
        k = len(self._token_sets)
        for now, _ctx, seg, cost, tokens in batch:
            s = per_seg.get(seg)
            if s is None:
                s = per_seg[seg] = [now, now, 0, 0.0, 0, [0] * k, [0] * k]
            s[1] = now
            s[2] += 1
            if cost is None:
                s[4] += 1
            else:
                s[3] += cost
            for i, n in enumerate(tokens):
                if n is not None:
                    s[5][i] += n
                    s[6][i] += 1
        for seg, (first, last, calls, cost_sum, unpriced, tok_sums, tok_calls) in per_seg.items():
            for a, group, bucket in seg.entries:
                if a.tokens:
                    amount, n, unpriced_n = tok_sums[a.token_set], tok_calls[a.token_set], 0
                    if not n:
                        continue
                else:
                    amount, n, unpriced_n = cost_sum, calls, unpriced
                agg = per_key.get((a.idx, group))
                if agg is None:
                    per_key[(a.idx, group)] = [amount, first, last, bucket, bucket, {bucket: amount}]
                else:
                    agg[0] += amount
                    agg[1] = min(agg[1], first)
                    agg[2] = max(agg[2], last)
                    agg[3] = min(agg[3], bucket)
                    agg[4] = max(agg[4], bucket)
                    sums = agg[5]
                    sums[bucket] = sums.get(bucket, 0.0) + amount
                w = writes.get((a.idx, group, bucket))
                if w is None:
                    writes[(a.idx, group, bucket)] = [amount, float(n), float(unpriced_n), float(n)]
                else:
                    w[0] += amount
                    w[1] += n
                    w[2] += unpriced_n
                    w[3] += n
        return writes

    @staticmethod
    def _calls_of(batch: list[Any], a: Active, group: str) -> Iterator[tuple[float, int, float, int]]:
        """(now, bucket, amount, position in the batch) of each call in ``batch`` that counts toward (a, group)."""
        for n, (now, _ctx, seg, cost, tokens) in enumerate(batch):
            hit = seg.buckets.get(a.idx)
            if hit is None or hit[0] != group:
                continue
            amount, _unpriced = amount_of(a, cost, tokens)
            if amount is not None:
                yield now, hit[1], amount, n

    def _could_fire(self, a: Active, totals: Mapping[int, float], fired: Mapping[str, float], agg: list[Any]) -> bool:
        """A cheap, conservative test: can any call of this batch reach a threshold or the projection?
        ``agg`` is the batch's [amount, first now, last now, lowest bucket, highest bucket, ...] for the key."""
        amount, first_now, last_now, low, high = agg[0], agg[1], agg[2], agg[3], agg[4]
        upper = sum(totals.values()) + amount  # no expiry, every bucket: an upper bound
        if a.rolling is not None:
            return upper >= a.first_at
        if low != high:
            return True  # the batch spans windows: just replay it
        bucket = low
        if upper >= next_at(a, {k: v for k, v in fired.items() if v >= bucket}):
            return True
        if not a.forecast or fired.get(PROJECTED, NEG) >= bucket:
            return False
        start, end = float(bucket), self._window_end(a, bucket)
        mark = self._marks.get(a.name)
        since = max(start, mark.since) if mark is not None else start
        earliest = max(first_now, since + a.budget.forecast_after * (end - since))
        return last_now >= earliest and earliest > since and upper * (end - since) > a.limit * (earliest - since)

    def _window_end(self, a: Active, bucket: int) -> float:
        end = self._ends.get((a.idx, bucket))
        if end is None:
            if len(self._ends) >= _ROUTES_MAX:
                self._ends.clear()
            end = self._ends[(a.idx, bucket)] = calendar_window(a.budget.period, a.budget.tz, float(bucket))[1]
        return end

    def _absorb(self, result: Batch, now: float) -> None:
        """Fold a committed batch back into the in-memory view: shared totals in, own pending out."""
        with self._lock:
            self._settle()  # the batch's calls are all in the states' pending then
            for (idx, group, bucket), w in result.writes.items():
                st = self._states.get((idx, group))
                if st is None:
                    continue
                p = st.pending.get(bucket)
                if p is not None:
                    p[0] -= w[0]
                    p[1] -= w[3]
                    if p[1] <= 0:
                        del st.pending[bucket]
            for key, totals in result.totals.items():
                a = self._active[key[0]]
                st = self._states.get(key)
                if st is None:
                    continue
                self._sync(a, st, totals, result.fired[key], now)

    def _sync(self, a: Active, st: State, totals: Mapping[int, float], fired: Mapping[str, float],
              now: float) -> None:  # fmt: skip
        """Take the state file's view of one (budget, group): caller holds the lock."""
        if a.rolling is None:
            cur = int(st.start)
            st.synced = {cur: totals[cur]} if cur in totals else {}
            after = cur - 1
            live = {k: v for k, v in fired.items() if v >= st.start}
        else:
            after = max(now, st.bucket) - a.rolling - a.bucket_s
            st.synced = {b: v for b, v in totals.items() if b > after}
            live = dict(fired)
        for label, win in live.items():
            if win > st.fired.get(label, NEG):
                st.fired[label] = win
        st.confirmed = live
        st.recompute(after)
        if a.blocks(st.used):
            self._maybe_over = True
        if a.rolling is None:
            st.next_at = next_at(a, st.fired)

    def _refresh(self) -> None:
        """Re-read every budget's current window from the store (other processes' usage, resets)."""
        store = self._store
        now = self._now()
        specs = {}
        for a in self._active:
            arm = a.budget.window(now)[0] if a.rolling is not None else calendar_window(
                a.budget.period, a.budget.tz, now)[0]  # fmt: skip
            specs[a.idx] = (a.name, a.budget.live_after(now), arm)
        try:
            store.prefetch(specs.values())
            marks = store.marks()
            scans = {idx: store.scan(*spec) for idx, spec in specs.items()}
        except StoreUnavailable:
            return  # keep the last known shared totals; the store said so once
        except (sqlite3.Error, OSError) as exc:
            with contextlib.suppress(Exception):
                store.rollback()
            self._degrade(exc)
            return
        with self._lock:
            self._settle()
            for a in self._active:
                old, new = self._marks.get(a.name), marks.get(a.name)
                if new is not None:
                    if old is not None and new.reset_at != old.reset_at:
                        for key in [k for k in self._states if k[0] == a.idx]:
                            del self._states[key]  # reset: start over from the file
                        self._gen += 1
                    self._marks[a.name] = new
                    if old is None or new.since != old.since:
                        for key, st in self._states.items():
                            if key[0] == a.idx and a.rolling is None:
                                self._forecast_terms(a, st)
                rows, fired_rows = scans[a.idx]
                totals: dict[str, dict[int, float]] = {}
                for group, bucket, used, _calls, _unpriced in rows:
                    totals.setdefault(group, {})[bucket] = used
                fired: dict[str, dict[str, float]] = {}
                for f in fired_rows:
                    g = fired.setdefault(f.group, {})
                    g[f.threshold] = max(f.win, g.get(f.threshold, NEG))
                for group in totals.keys() | fired.keys():
                    key = (a.idx, group)
                    st = self._states.get(key)
                    if st is None or (a.rolling is None and not st.start <= now < st.end):
                        st = self._new_state(a, key, now)
                for key in [k for k in self._states if k[0] == a.idx]:
                    st = self._states[key]
                    if a.rolling is None and not st.start <= now < st.end:
                        if not st.pending:
                            del self._states[key]
                            self._gen += 1
                        continue
                    self._sync(a, st, totals.get(key[1], {}), fired.get(key[1], {}), now)
            # Every state was just re-read: over again only where one still is (a window turned, usage expired).
            active = self._active
            self._maybe_over = any(active[i].blocks(st.used) for (i, _g), st in self._states.items())

    def _maybe_prune(self) -> None:
        if time.monotonic() - self._last_prune < _PRUNE_EVERY_S:
            return
        self._last_prune = time.monotonic()
        now = self._now()
        for a in self._active:
            if a.rolling is None:
                continue
            try:
                self._store.prune(a.name, now - 2 * a.rolling - a.bucket_s, now - 2 * a.rolling)
            except (sqlite3.Error, OSError):
                log.debug("llm-otel: pruning budget state failed", exc_info=True)

    # --- the state file: open, fall back to memory, come back ----------------------------------------------
    def _load(self) -> None:
        """Redis: connect, register the budgets and read the shared totals, once, on the writer thread."""
        if self._unloaded:
            self._unloaded = False
            self._open_and_load()

    def _open_and_load(self) -> None:
        now = self._now()
        try:
            self._store.open()
            self._store.register(self._configs, now)
        except StoreUnavailable:
            pass  # Redis: said once; it registers the budgets when it is reachable
        except (sqlite3.Error, OSError) as exc:
            self._degrade(exc)
            self._seed_from_file()
            self._store.register(self._configs, now)
        with contextlib.suppress(StoreUnavailable):
            self._marks = self._store.marks()
        self._refresh()

    def _seed_from_file(self) -> None:
        """A file we cannot write may still be readable: start from what it says (restart semantics hold)."""
        assert self._db is not None and isinstance(self._store, MemoryStore)
        reader = SqliteStore(self._db.path, busy_timeout_s=0.5, readonly=True)
        try:
            reader.open()
            now = self._now()
            marks = reader.marks()
            usage, fired = [], []
            for a in self._active:
                arm = now - a.rolling if a.rolling is not None else calendar_window(a.budget.period, a.budget.tz,
                                                                                    now)[0]  # fmt: skip
                rows, fired_rows = reader.scan(a.name, a.budget.live_after(now), arm)
                usage += [(a.name, group, bucket, used) for group, bucket, used, _c, _u in rows]
                fired += fired_rows
            self._store.seed(usage, fired, marks)
        except (sqlite3.Error, OSError):
            log.debug("llm-otel: budget state file %s is not readable either", self._db.path, exc_info=True)
        finally:
            reader.close()

    def _degrade(self, exc: BaseException) -> None:
        """Carry on in memory, seeded with what was last known from the file."""
        if self._db is None or self._store is not self._db:
            raise exc  # memory store failing is a bug: let the caller report it
        if not self._warned:
            self._warned = True
            log.warning(
                "llm-otel: budget state file %s %s (%s); budgets are tracked in this process's memory until it "
                "can be used again: usage from other processes is not seen, alerts are not de-duplicated across "
                "processes and nothing survives a restart. The app's calls are not affected.",
                self._db.path, classify(exc), exc,
            )  # fmt: skip
        else:
            log.debug("llm-otel: budget state file still unusable: %s", exc)
        with contextlib.suppress(Exception):
            self._db.close()
        mem = MemoryStore()
        with self._lock:
            usage = [
                (self._active[i].name, g, b, v) for (i, g), st in self._states.items() for b, v in st.synced.items()
            ]
            fired = [Fired(self._active[i].name, g, win, label, win, 0.0, True)
                     for (i, g), st in self._states.items() for label, win in st.confirmed.items()]  # fmt: skip
        mem.seed(usage, fired, self._marks)
        mem.register(self._configs, self._now())
        self._store = mem
        self._last_retry = time.monotonic()

    def _maybe_recover(self) -> None:
        if self._db is None or self._store is self._db or time.monotonic() - self._last_retry < self._retry_s:
            return
        self._last_retry = time.monotonic()
        db, mem = self._db, self._store
        assert db is not None and isinstance(mem, MemoryStore)
        try:
            db.open()
            db.register(self._configs, self._now())
            db.replay(mem)
        except (sqlite3.Error, OSError) as exc:
            log.debug("llm-otel: budget state file still unusable: %s", exc)
            with contextlib.suppress(Exception):
                db.close()
            return
        self._store = db
        self._warned = False
        log.warning("llm-otel: budget state file %s is usable again; this process's usage since was added to it",
                    db.path)  # fmt: skip

    # --- lifecycle ---------------------------------------------------------------------------------------------
    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued delta is committed and the in-memory view refreshed. True on success."""
        return self._writer.flush(timeout)

    def close(self) -> None:
        """Commit what is queued. A processor with a writer of its own also stops that writer (and so closes
        the state store); a shared writer closes it when it stops."""
        stop_reporting_budgets(self)
        if self._own_writer:
            self._writer.close()
        else:
            self._writer.flush()

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._seen = None  # the child refreshes on its own connection first
        if self._db is not None:
            self._db.forget()  # the parent's connection; the child opens its own
        if self._redis is not None:
            self._redis.forget()  # the child is a new process: its own id, connections and usage
        self._held, self._folded = [], {}
        self._settle()  # deferred calls count in the child's view like the parent's other uncommitted ones
        for st in self._states.values():
            st.pending.clear()  # the parent commits those

    def _internal(self, where: str) -> None:
        if where not in self._internal_reported:
            self._internal_reported.add(where)
            log.warning("llm-otel: internal error in %s; the app is not affected", where, exc_info=True)
        else:
            log.debug("llm-otel: internal error in %s", where, exc_info=True)

    # --- introspection -------------------------------------------------------------------------------------
    def _current(self) -> list[tuple[Active, str, State, float]]:
        """(budget, group, state, used) for every (budget, group) with a current window, in budget order."""
        now = self._now()
        out = []
        with self._lock:
            self._settle()
            for (idx, group), st in sorted(self._states.items(), key=lambda kv: (kv[0][0], kv[0][1])):
                a = self._active[idx]
                if a.rolling is None:
                    if not st.start <= now < st.end:
                        continue
                    used = st.used
                else:
                    used, _ = self._rolling_used(a, st, now)
                out.append((a, group, st, used))
        return out

    def snapshot(self) -> list[dict[str, Any]]:
        """This process's view: one dict per (budget, group) with used, limit, utilization and fired."""
        return [{"budget": a.name, "group": group, "used": used, "limit": a.limit, "utilization": used / a.limit,
                 "fired": sorted(st.fired)} for a, group, st, used in self._current()]  # fmt: skip

    def utilization_observations(self, options: CallbackOptions) -> list[Observation]:
        """``llm_otel.budget.utilization`` at collection time: this process's view of each current window (the
        meter's gauge callback calls it for every processor that reports there)."""
        return [Observation(used / a.limit, a.attrs(group)) for a, group, _st, used in self._current()]


def _live_before(totals: Mapping[int, float], live: float, bucket: int, prev: float) -> float:
    """Rolling usage just before a replayed call: the live buckets, with ``prev`` for the call's own one."""
    return prev + sum(v for b, v in totals.items() if b > live and b != bucket)


def _ids(ctx: Any) -> tuple[str | None, str | None]:
    """A span context's trace and span ids in hex (None without a valid context)."""
    if ctx is None or not ctx.is_valid:
        return None, None
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"


def _resource_service(runtime: Any) -> str | None:
    resource = getattr(runtime.providers.tracer_provider, "resource", None)
    attrs = getattr(resource, "attributes", None) or {}
    value = attrs.get("service.name")
    return str(value) if value is not None else None
