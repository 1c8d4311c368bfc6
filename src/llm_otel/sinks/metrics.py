"""Metrics: per-call points only where the conventions define them; everything else aggregated in process.

On the caller's thread, per call: ``gen_ai.client.operation.duration``, ``gen_ai.client.token.usage`` (input,
output) and, for streams, ``gen_ai.client.operation.time_to_first_chunk``: what the GenAI conventions define
per call, and what every instrumentation pays. Everything else costs the caller one append to a queue of
plain values, which the SDK's collection folds in:

- counters and gauges (``llm_otel.tokens`` by type, cost, unpriced calls, retries, rate-limit headroom in
  requests and in tokens) are running totals per attribute set, reported by observable instruments;
- our other histograms (request cost, tokens per second, burst, throttle wait, time per output chunk) are
  recorded into their histograms then, so per-chunk and per-extension points never run on the call path.

The queue is folded at every collection (and on the caller's thread once ``DEFERRED_MAX`` calls wait), so
every export carries exact totals. Attribute sets are built once per series (provider, operation, models,
server, error, allow-listed keys) and reused. See docs/decisions.md, "What a call pays for metrics". Totals
and the queue belong to the meter (``_Aggregates``), whose observable instruments report them: every sink on
that meter adds to them.

When llm-otel builds the meter provider itself, it exports every ``DEFAULT_EXPORT_INTERVAL_MS`` unless
``OTEL_METRIC_EXPORT_INTERVAL`` is set (docs/metrics.md, "Export interval and dashboards").
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import set_span_in_context

from .. import semconv as sc
from ..core.result import CallResult
from ..core.usage import Usage

SCOPE = "llm_otel"
DEFERRED_MAX = 5_000  # calls waiting for a collection; past this the queue is folded at once
_SERIES_MAX = 2_000  # distinct attribute sets kept; past this new ones share one overflow series
_KINDS = sc.TOKEN_TYPES  # input, output, cache_read, cache_write, reasoning (Usage field order)
# The SDK's default (60 s) leaves Grafana's shortest rate() window, $__rate_interval = 4 x the datasource's
# timeInterval (15 s, grafana/provisioning/datasources/datasources.yml), with at most one sample: empty panels.
# At 15 s it holds 4. tests/test_metrics_citizen.py checks that this, the datasource and every panel agree.
DEFAULT_EXPORT_INTERVAL_MS = 15_000


def export_interval_millis() -> float | None:
    """Export interval for a reader llm-otel creates: None (the SDK reads OTEL_METRIC_EXPORT_INTERVAL) when the
    user set that variable, else ``DEFAULT_EXPORT_INTERVAL_MS``."""
    return None if os.environ.get("OTEL_METRIC_EXPORT_INTERVAL", "").strip() else DEFAULT_EXPORT_INTERVAL_MS


def _version() -> str:
    from .. import __version__

    return __version__


class Instruments:
    """Every synchronous instrument llm-otel records into, created once from one meter."""

    def __init__(self, meter: Any, latest_semconv: bool = False) -> None:
        def hist(name: str, unit: str, buckets: tuple[float, ...], description: str = "") -> Any:
            return meter.create_histogram(
                name, unit=unit, description=description, explicit_bucket_boundaries_advisory=buckets
            )

        self.token_usage = hist(sc.METRIC_TOKEN_USAGE, "{token}", sc.TOKEN_BUCKETS,
                                "Tokens used per call, by gen_ai.token.type.")  # fmt: skip
        self.duration = hist(sc.METRIC_OPERATION_DURATION, "s", sc.DURATION_BUCKETS,
                             "GenAI operation duration, retries included.")  # fmt: skip
        self.time_to_first_chunk = hist(sc.METRIC_TIME_TO_FIRST_CHUNK, "s", sc.DURATION_BUCKETS,
                                        "Call start to the first output chunk.")  # fmt: skip
        self.time_per_output_chunk = hist(sc.METRIC_TIME_PER_OUTPUT_CHUNK, "s", sc.DURATION_BUCKETS,
                                          "Time between consecutive output chunks.")  # fmt: skip
        self.request_cost = hist(sc.METRIC_REQUEST_COST, "USD", sc.COST_BUCKETS, "Cost per call in USD.")
        self.tokens_per_second = hist(sc.METRIC_TOKENS_PER_SECOND, "{token}/s", sc.RATE_BUCKETS,
                                      "Output tokens per second of generation.")  # fmt: skip
        self.burst_tokens_per_second = hist(sc.METRIC_BURST_TOKENS_PER_SECOND, "{token}/s", sc.RATE_BUCKETS,
                                            "Peak output rate over a 250 ms window of chunk arrivals.")  # fmt: skip
        self.throttle_wait = hist(sc.METRIC_THROTTLE_WAIT, "s", (0.0, *sc.DURATION_BUCKETS),
                                  "Time in the SDK's retry sleeps caused by 429s, per call.")  # fmt: skip
        self.budget_alerts = meter.create_counter(
            sc.METRIC_BUDGET_ALERTS, unit="{alert}", description="Budget threshold alerts fired."
        )
        self.latest_ttfc = (
            hist(sc.LATEST_METRIC_TIME_TO_FIRST_CHUNK, "s", sc.DURATION_BUCKETS) if latest_semconv else None
        )


class _Series:
    """One metric attribute set and the totals aggregated under it."""

    __slots__ = ("attrs", "cost", "retries", "tokens", "typed", "unpriced")

    def __init__(self, attrs: dict[str, Any]) -> None:
        self.attrs = attrs
        self.typed = tuple({**attrs, sc.TOKEN_TYPE: kind} for kind in _KINDS)
        self.tokens: list[int | None] = [None] * len(_KINDS)  # None: never reported for this series
        self.cost: float | None = None
        self.unpriced = 0
        self.retries: dict[str, int] = {}


class _Pending(NamedTuple):
    """What one call adds to the totals and histograms, queued until the next collection."""

    series: _Series
    usage: Usage | None
    cost: float | None
    complete: bool
    retry_reasons: tuple[tuple[str, int], ...]
    throttle_wait: float
    rate: float | None
    burst: float | None
    chunk_times: tuple[float, ...] | None
    headroom: _Series | None  # the series the rate-limit headroom belongs to (None: no header seen)
    rl_requests: int | None
    rl_tokens: int | None
    detail: bool  # record this call's points in the histograms (the sink's ``detail_histograms``)


class _Aggregates:
    """The running totals and queued points behind one meter's llm-otel instruments, and their callbacks.

    An SDK meter registers an instrument name once and keeps the callbacks it was first given. Every
    ``MetricsSink`` on the same meter (``instrument()`` again after ``uninstrument()``, an instrumentor given
    its own providers) therefore shares one: each sink's calls are reported, and counters stay monotonic."""

    def __init__(self, meter: Any) -> None:
        self.meter = meter
        self.lock = threading.Lock()
        self.series: dict[tuple[Any, ...], _Series] = {}
        self.headroom: dict[int, list[Any]] = {}  # id(series) -> [attrs, requests, tokens]
        # One ``_Pending`` per call not yet folded: values only, so no span or exception is kept alive.
        self.deferred: list[_Pending] = []
        self.instruments: dict[bool, Instruments] = {}
        self._latest = False
        self._budget_reporters: weakref.WeakSet[Any] | None = None  # what the budget utilization gauge reports
        counter = meter.create_observable_counter
        counter(sc.METRIC_TOKENS, [self._observe_tokens], unit="{token}",
                description="Tokens by type (input includes cache; output reasoning).")  # fmt: skip
        counter(sc.METRIC_COST, [self._observe_cost], unit="USD", description="Cost of GenAI calls in USD.")
        counter(sc.METRIC_UNPRICED_REQUESTS, [self._observe_unpriced], unit="{request}",
                description="Calls with usage but no known price.")  # fmt: skip
        counter(
            sc.METRIC_RETRIES,
            [self._observe_retries],
            unit="{retry}",
            description="Retries made by the SDK, by reason.",
        )
        gauge = meter.create_observable_gauge
        gauge(sc.METRIC_RATELIMIT_REMAINING_REQUESTS, [self._headroom_observer(1)], unit="{request}",
              description="Requests left in the rate-limit window (last response header seen).")  # fmt: skip
        gauge(sc.METRIC_RATELIMIT_REMAINING_TOKENS, [self._headroom_observer(2)], unit="{token}",
              description="Tokens left in the rate-limit window (last response header seen).")  # fmt: skip

    @classmethod
    def of(cls, meter: Any) -> _Aggregates:
        """The aggregates of ``meter``, created (with its observable instruments) on first use."""
        with _AGGREGATES_LOCK:
            try:
                agg = _AGGREGATES.get(meter)
            except TypeError:  # a meter that cannot be weakly referenced: its own aggregates
                return cls(meter)
            if agg is None:
                agg = _AGGREGATES[meter] = cls(meter)
            return agg

    def instruments_for(self, latest_semconv: bool) -> Instruments:
        """The synchronous instruments (created once per meter and flavour; the SDK hands back the same ones)."""
        with _AGGREGATES_LOCK:
            inst = self.instruments.get(latest_semconv)
            if inst is None:
                inst = self.instruments[latest_semconv] = Instruments(self.meter, latest_semconv)
            if latest_semconv and not self._latest:
                self._latest = True
                for i, kind in enumerate(_KINDS):
                    self.meter.create_observable_counter(
                        sc.LATEST_METRIC_USAGE_PREFIX + sc.LATEST_USAGE_METRIC_SUFFIX[kind],
                        [self._latest_observer(i)],
                        unit="{token}",
                    )
            return inst

    def report_budgets(self, processor: Any) -> None:
        """Have this meter's ``llm_otel.budget.utilization`` gauge report ``processor`` (held weakly; the gauge is
        created on first use) through its ``utilization_observations(options)``."""
        with _AGGREGATES_LOCK:
            if self._budget_reporters is None:
                self._budget_reporters = weakref.WeakSet()
                self.meter.create_observable_gauge(
                    sc.METRIC_BUDGET_UTILIZATION, [self._observe_utilization], unit="1",
                    description="Budget used / limit in the current window.")  # fmt: skip
            self._budget_reporters.add(processor)

    # --- at collection --------------------------------------------------------------------------------------
    def record_deferred(self) -> None:
        """Fold the queued calls into the totals and record their histogram points (runs when the SDK collects;
        safe to call any time, from any thread)."""
        with self.lock:
            if not self.deferred:
                return
            batch, self.deferred = self.deferred, []
            self._fold(batch)
        inst = self.instruments.get(False) or self.instruments[True]
        cost, tps, burst = inst.request_cost.record, inst.tokens_per_second.record, inst.burst_tokens_per_second.record
        throttle, gap = inst.throttle_wait.record, inst.time_per_output_chunk.record
        for p in batch:
            if not p.detail:
                continue
            attrs = p.series.attrs
            if p.cost is not None:
                cost(p.cost, attrs)
            throttle(p.throttle_wait, attrs)  # failed calls too: a call that exhausted its retries on 429s lost all
            if p.rate is not None:
                tps(p.rate, attrs)
            if p.burst is not None:
                burst(p.burst, attrs)
            times = p.chunk_times
            if times:
                prev = times[0]
                for t in times[1:]:
                    gap(t - prev, attrs)
                    prev = t

    def _fold(self, batch: list[_Pending]) -> None:
        """Add queued calls to the running totals, in call order (under ``self.lock``)."""
        headroom = self.headroom
        for p in batch:
            series, usage = p.series, p.usage
            if usage is not None:
                tokens = series.tokens
                counts = (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens,
                          usage.reasoning_tokens)  # fmt: skip
                for i, n in enumerate(counts):
                    if n is not None:
                        tokens[i] = (tokens[i] or 0) + n
                if p.cost is not None:
                    series.cost = (series.cost or 0.0) + p.cost
                elif p.complete:
                    series.unpriced += 1
            for reason, n in p.retry_reasons:
                series.retries[reason] = series.retries.get(reason, 0) + n
            if p.headroom is not None:
                slot = headroom.get(id(p.headroom))
                if slot is None:
                    slot = headroom[id(p.headroom)] = [p.headroom.attrs, None, None]
                if p.rl_requests is not None:
                    slot[1] = p.rl_requests
                if p.rl_tokens is not None:
                    slot[2] = p.rl_tokens

    def _snapshot(self) -> list[_Series]:
        self.record_deferred()
        with self.lock:
            return list(self.series.values())

    def _observe_tokens(self, options: CallbackOptions) -> Iterator[Observation]:
        for s in self._snapshot():
            for i, n in enumerate(s.tokens):
                if n is not None:
                    yield Observation(n, s.typed[i])

    def _latest_observer(self, index: int) -> Any:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(s.tokens[index], s.attrs) for s in self._snapshot() if s.tokens[index] is not None]

        return observe

    def _observe_cost(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(s.cost, s.attrs) for s in self._snapshot() if s.cost is not None]

    def _observe_unpriced(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(s.unpriced, s.attrs) for s in self._snapshot() if s.unpriced]

    def _observe_retries(self, options: CallbackOptions) -> Iterator[Observation]:
        for s in self._snapshot():
            for reason, n in list(s.retries.items()):
                yield Observation(n, {**s.attrs, sc.RETRY_REASON: reason})

    def _headroom_observer(self, index: int) -> Callable[[CallbackOptions], list[Observation]]:
        """Callback of one headroom gauge: slot ``index`` 1 is requests, 2 is tokens (see ``_fold``)."""

        def observe(options: CallbackOptions) -> list[Observation]:
            self.record_deferred()
            with self.lock:
                pairs = [(slot[0], slot[index]) for slot in self.headroom.values()]
            return [Observation(value, attrs) for attrs, value in pairs if value is not None]

        return observe

    def _observe_utilization(self, options: CallbackOptions) -> list[Observation]:
        return [obs for proc in list(self._budget_reporters or ()) for obs in proc.utilization_observations(options)]


_AGGREGATES: weakref.WeakKeyDictionary[Any, _Aggregates] = weakref.WeakKeyDictionary()
_AGGREGATES_LOCK = threading.RLock()


def stop_reporting_budgets(processor: Any) -> None:
    """No utilization gauge reports ``processor`` any more (its writer has closed)."""
    with _AGGREGATES_LOCK:
        for agg in list(_AGGREGATES.values()):
            if agg._budget_reporters is not None:
                agg._budget_reporters.discard(processor)


_NO_CONTEXT: dict[str, str] = {}
_EMPTY_OTEL_CONTEXT = Context()  # the base of each call's points' context: only its span


class MetricsSink:
    """Records each call's metrics; see the module docstring."""

    def __init__(self, meter_provider: Any, metric_keys: tuple[str, ...] = (), latest_semconv: bool = False,
                 detail_histograms: bool = True) -> None:  # fmt: skip
        """``detail_histograms``: False records no point in the histograms filled at collection (request cost,
        tokens per second, burst, throttle wait, time per output chunk); their totals are still counted."""
        self.meter = meter = meter_provider.get_meter(SCOPE, _version(), schema_url=sc.SCHEMA_URL)
        self._detail = detail_histograms
        self._agg = agg = _Aggregates.of(meter)
        self.instruments = agg.instruments_for(latest_semconv)
        self._keys = metric_keys
        self._lock = agg.lock
        self._series = agg.series

    # --- per call (caller's thread) ------------------------------------------------------------------------
    def _series_for(self, r: CallResult, with_context: bool = True) -> _Series:
        keys = self._keys if with_context else ()
        # The allow-listed context values, with their keys: sinks with other keys share these series.
        allowed = (keys, tuple(map((r.attributes or _NO_CONTEXT).get, keys))) if keys else ()
        key = (r.provider, r.operation, r.request_model, r.response_model, r.server_address, r.server_port,
               r.error_type if with_context else None, allowed)  # fmt: skip
        series = self._series.get(key)
        if series is None:
            with self._lock:
                series = self._series.get(key)
                if series is None:
                    series = self._series[key] = _Series(self._attributes(r, allowed, with_context))
        return series

    def _attributes(self, r: CallResult, allowed: tuple[Any, ...], with_context: bool) -> dict[str, Any]:
        if len(self._series) >= _SERIES_MAX:
            return {sc.OPERATION_NAME: r.operation, sc.PROVIDER_NAME: r.provider, "otel.metric.overflow": True}
        attrs: dict[str, Any] = {sc.OPERATION_NAME: r.operation, sc.PROVIDER_NAME: r.provider}
        if r.request_model:
            attrs[sc.REQUEST_MODEL] = r.request_model
        if r.response_model:
            attrs[sc.RESPONSE_MODEL] = r.response_model
        if r.server_address:
            attrs[sc.SERVER_ADDRESS] = r.server_address
        if r.server_port:
            attrs[sc.SERVER_PORT] = r.server_port
        if r.error_type and with_context:
            attrs[sc.ERROR_TYPE] = r.error_type
        if allowed:
            for k, v in zip(*allowed, strict=True):
                if v is not None:
                    attrs[sc.CONTEXT_PREFIX + k] = v
        return attrs

    def on_usage(self, r: CallResult) -> None:
        series = self._series_for(r)
        inst = self.instruments
        # The call's own span as the points' context, whatever is current when the call ends (the app's span,
        # or nothing after a stream is read to its end): the SDK's exemplars then link these points to it.
        ctx = set_span_in_context(r.span, _EMPTY_OTEL_CONTEXT) if r.span is not None else None
        inst.duration.record(r.duration_s, series.attrs, ctx)
        usage = r.usage
        if usage is not None:
            if usage.input_tokens is not None:
                inst.token_usage.record(usage.input_tokens, series.typed[0], ctx)
            if usage.output_tokens is not None:
                inst.token_usage.record(usage.output_tokens, series.typed[1], ctx)
        if r.time_to_first_chunk_s is not None:
            inst.time_to_first_chunk.record(r.time_to_first_chunk_s, series.attrs, ctx)
            if inst.latest_ttfc is not None:
                inst.latest_ttfc.record(r.time_to_first_chunk_s, series.attrs, ctx)
        headroom = None
        if r.ratelimit_requests is not None or r.ratelimit_tokens is not None:
            # Headroom belongs to the account and server, not to a tenant or an error: no context keys.
            headroom = series if not self._keys and r.error_type is None else self._series_for(r, with_context=False)
        pending = _Pending(series, usage, r.cost_usd, r.usage_complete, r.retry_reasons, r.throttle_wait_s,
                           r.tokens_per_second, r.burst_tokens_per_second, r.chunk_times, headroom,
                           r.ratelimit_requests, r.ratelimit_tokens, self._detail)  # fmt: skip
        agg = self._agg
        with self._lock:
            deferred = agg.deferred
            deferred.append(pending)
            backlog = len(deferred)
        if backlog >= DEFERRED_MAX:
            agg.record_deferred()

    def report_budgets(self, processor: Any) -> None:
        """Report ``processor``'s budgets on the ``llm_otel.budget.utilization`` gauge of this sink's meter."""
        self._agg.report_budgets(processor)

    # --- at collection --------------------------------------------------------------------------------------
    def record_deferred(self) -> None:
        """Record the queued histogram points (runs when the SDK collects; safe to call any time)."""
        self._agg.record_deferred()
