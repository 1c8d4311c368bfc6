"""CallRecord: the life of one logical LLM call, from request to the end of its response or stream.

A record starts the span, collects timings, retry sleeps, headers and usage while the call runs, and
``finish()`` (exactly once, whoever calls it first) turns them into span attributes, metric points and a
``UsageRecord`` for the processors (ledger, budgets, session totals).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from .. import semconv as sc
from .result import UsageRecord
from .usage import Usage

if TYPE_CHECKING:
    from ..runtime import Runtime

log = logging.getLogger(__name__)

#: The call in progress in this thread / asyncio task (retry sleeps accumulate into it). It also carries the
#: nesting rule: an instrumented SDK call that starts while a call is current is part of that call (the
#: outermost instrumented layer owns it, e.g. litellm over the openai SDK) and records nothing of its own.
CURRENT: contextvars.ContextVar[CallRecord | None] = contextvars.ContextVar("llm_otel_call", default=None)


@contextlib.contextmanager
def detached() -> Iterator[None]:
    """Run user code that an SDK calls back in the middle of a call (tools under automatic function calling)
    outside that call: LLM calls it makes are calls of their own, not part of the current one."""
    token = CURRENT.set(None)
    try:
        yield
    finally:
        CURRENT.reset(token)


BURST_WINDOW_S = 0.25
_perf = time.perf_counter


def error_type_name(exc: BaseException) -> str:
    """The public dotted class name: ``openai.RateLimitError`` (private modules such as ``openai._exceptions``
    are dropped), ``google.genai.errors.ClientError``, or the bare name for builtins."""
    cls = type(exc)
    public = []
    for part in cls.__module__.split("."):
        if part.startswith("_"):
            break
        public.append(part)
    if not public or public == ["builtins"]:
        return cls.__qualname__
    return f"{'.'.join(public)}.{cls.__qualname__}"


def burst_rate(times: list[float], tokens: int, window: float = BURST_WINDOW_S) -> float | None:
    """Peak output rate: the most chunks arriving within any ``window`` seconds, times tokens per chunk,
    divided by the window (or by the whole generation span when that is shorter). See docs/metrics.md."""
    n = len(times)
    if n < 2 or tokens <= 0:
        return None
    span = times[-1] - times[0]
    if span <= 0:
        return None
    per_chunk = tokens / n
    best = 0
    lo = 0
    for hi in range(n):
        while times[hi] - times[lo] > window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best * per_chunk / min(window, span)


class CallRecord:
    """Mutable state of one call; see the module docstring."""

    __slots__ = (
        "_once",
        "attributes",
        "chunk_times",
        "extra",
        "finish_reasons",
        "operation",
        "output_text",
        "provider",
        "request_model",
        "response_id",
        "response_model",
        "retries",
        "retry_s",
        "rl_requests",
        "rl_tokens",
        "rt",
        "server_address",
        "server_port",
        "span",
        "start_ns",
        "streaming",
        "swallow_usage_chunk",
        "t0",
        "throttle_s",
        "usage",
        "usage_complete",
    )  # fmt: skip

    def __init__(
        self,
        rt: Runtime,
        provider: str,
        operation: str,
        request_model: str | None,
        server_address: str | None,
        server_port: int | None,
        streaming: bool,
        span_attributes: dict[str, Any] | None = None,
    ) -> None:
        self.rt = rt
        self.provider = provider
        self.operation = operation
        self.request_model = request_model
        self.server_address = server_address
        self.server_port = server_port
        self.streaming = streaming
        self.attributes = rt.current_attribution()
        self.response_model: str | None = None
        self.response_id: str | None = None
        self.finish_reasons: list[str] | None = None
        self.usage: Usage | None = None
        self.usage_complete = False
        self.throttle_s = 0.0
        self.retry_s = 0.0
        self.retries: dict[str, int] | None = None
        self.rl_requests: int | None = None
        self.rl_tokens: int | None = None
        self.chunk_times: list[float] | None = [] if streaming else None
        self.output_text: list[str] | None = [] if (streaming and rt.settings.capture_content) else None
        self.swallow_usage_chunk = False
        self.extra: dict[str, Any] | None = None  # per-SDK scratch state (e.g. Gemini request hops)
        self._once = threading.Lock()
        attrs = {
            sc.OPERATION_NAME: operation,
            sc.PROVIDER_NAME: provider,
        }
        if request_model:
            attrs[sc.REQUEST_MODEL] = request_model
        if server_address:
            attrs[sc.SERVER_ADDRESS] = server_address
        if server_port:
            attrs[sc.SERVER_PORT] = server_port
        if streaming:
            attrs[sc.REQUEST_STREAM] = True
        if span_attributes:
            attrs.update(span_attributes)
        for key, value in self.attributes.items():
            attrs[sc.CONTEXT_PREFIX + key] = value
        self.start_ns = time.time_ns()
        self.span = rt.tracer.start_span(
            f"{operation} {request_model}" if request_model else operation,
            kind=SpanKind.CLIENT,
            attributes=attrs,
            start_time=self.start_ns,
        )
        self.t0 = _perf()

    # --- events during the call ------------------------------------------------------------------------
    def add_retry_sleep(self, seconds: float, reason: str) -> None:
        """Called from the SDK's retry sleep hook: 429 sleeps are throttle, others retry wait."""
        if reason == sc.RETRY_RATE_LIMIT:
            self.throttle_s += seconds
        else:
            self.retry_s += seconds
        retries = self.retries if self.retries is not None else {}
        retries[reason] = retries.get(reason, 0) + 1
        self.retries = retries

    def set_ratelimit(self, remaining_requests: int | None, remaining_tokens: int | None) -> None:
        self.rl_requests = remaining_requests
        self.rl_tokens = remaining_tokens

    def output_chunk(self) -> None:
        """A chunk carrying output arrived."""
        self.chunk_times.append(_perf())  # type: ignore[union-attr]

    # --- the end -----------------------------------------------------------------------------------------
    @property
    def ended(self) -> bool:
        return self._once.locked()

    def finish(self, error: BaseException | None = None, stream_end: str | None = None) -> None:
        """End the call exactly once; later calls do nothing. Never raises."""
        if not self._once.acquire(blocking=False):
            return
        t_end = _perf()
        try:
            self._finish(t_end, error, stream_end)
        except Exception:
            self.rt.report_internal_error("finishing a call")
            with contextlib.suppress(Exception):
                self.span.end()

    def _finish(self, t_end: float, error: BaseException | None, stream_end: str | None) -> None:
        rt = self.rt
        duration = t_end - self.t0
        usage = self.usage
        known = usage is not None and usage.known
        error_type = error_type_name(error) if error is not None else None
        retries_total = sum(self.retries.values()) if self.retries else 0
        complete = known and self.usage_complete
        # Partial usage (a stream that ended early) is recorded as far as it is known, but no cost is claimed.
        cost = rt.cost(self.provider, self.response_model or self.request_model, usage) if complete else None
        cost_source = sc.COST_SOURCE_LOCAL
        if cost is None and complete and self.extra is not None and "fallback_cost" in self.extra:
            # Unpriced here, but the layer that made the call reported a figure (LiteLLM's own cost).
            cost, cost_source = self.extra["fallback_cost"]

        ttfc = None
        tps = burst = None
        times = self.chunk_times
        if times:
            ttfc = times[0] - self.t0
            if known and usage.output_tokens and len(times) > 1 and times[-1] > times[0]:  # type: ignore[union-attr]
                tps = usage.output_tokens / (times[-1] - times[0])  # type: ignore[union-attr]
                burst = burst_rate(times, usage.output_tokens)  # type: ignore[union-attr, arg-type]
        elif not self.streaming and known and usage.output_tokens and error is None:  # type: ignore[union-attr]
            active = duration - self.throttle_s - self.retry_s
            if active > 0:
                tps = usage.output_tokens / active  # type: ignore[union-attr]

        # span
        span = self.span
        if span.is_recording():
            sattrs: dict[str, Any] = {}
            if self.response_model:
                sattrs[sc.RESPONSE_MODEL] = self.response_model
            if self.response_id:
                sattrs[sc.RESPONSE_ID] = self.response_id
            if self.finish_reasons:
                sattrs[sc.RESPONSE_FINISH_REASONS] = self.finish_reasons
            if known:
                rt.usage_span_attributes(usage, sattrs)  # type: ignore[arg-type]
            sattrs[sc.USAGE_COMPLETE] = complete
            if cost is not None:
                sattrs[sc.COST_USD] = cost
                sattrs[sc.COST_SOURCE] = cost_source
            elif complete:
                sattrs[sc.COST_SOURCE] = sc.COST_SOURCE_UNPRICED
            elif known:
                sattrs[sc.COST_SOURCE] = sc.COST_SOURCE_INCOMPLETE
            if self.throttle_s or self.retry_s or retries_total:
                sattrs[sc.THROTTLE_WAIT_S] = self.throttle_s
                sattrs[sc.RETRY_WAIT_S] = self.retry_s
                sattrs[sc.RETRIES] = retries_total
            if ttfc is not None:
                sattrs[sc.RESPONSE_TIME_TO_FIRST_CHUNK] = ttfc
            if tps is not None:
                sattrs[sc.TOKENS_PER_SECOND] = tps
            if burst is not None:
                sattrs[sc.BURST_TOKENS_PER_SECOND] = burst
            if stream_end is not None:
                sattrs[sc.STREAM_END] = stream_end
                sattrs[sc.STREAM_CHUNKS] = len(times) if times is not None else 0
            if self.rl_requests is not None:
                sattrs[sc.RATELIMIT_REMAINING_REQUESTS] = self.rl_requests
            if self.rl_tokens is not None:
                sattrs[sc.RATELIMIT_REMAINING_TOKENS] = self.rl_tokens
            if self.output_text:
                rt.output_content_attribute("".join(self.output_text), sattrs)
            if error is not None:
                sattrs[sc.ERROR_TYPE] = error_type
                span.set_status(Status(StatusCode.ERROR, str(error)[:256]))
            span.set_attributes(sattrs)
        end_time = self.start_ns + int(duration * 1e9)

        # metrics
        mattrs = rt.metric_attributes(self, error_type)
        inst = rt.instruments
        inst.duration.record(duration, mattrs)
        if known:
            rt.record_usage_metrics(usage, mattrs)  # type: ignore[arg-type]
            if cost is not None:
                inst.cost.add(cost, mattrs)
                inst.request_cost.record(cost, mattrs)
            elif complete:
                inst.unpriced.add(1, mattrs)
        inst.throttle_wait.record(self.throttle_s, mattrs)  # failed calls too: a 429-exhausted call lost it all
        if self.retries:
            for reason, n in self.retries.items():
                inst.retries.add(n, rt.with_attr(mattrs, sc.RETRY_REASON, reason))
        if ttfc is not None:
            inst.time_to_first_chunk.record(ttfc, mattrs)
            if inst.latest is not None:
                inst.latest_ttfc.record(ttfc, mattrs)
            record_gap = inst.time_per_output_chunk.record
            prev = times[0]  # type: ignore[index]
            for t in times[1:]:  # type: ignore[index]
                record_gap(t - prev, mattrs)
                prev = t
        if tps is not None:
            inst.tokens_per_second.record(tps, mattrs)
        if burst is not None:
            inst.burst_tokens_per_second.record(burst, mattrs)
        if self.rl_requests is not None or self.rl_tokens is not None:
            # Headroom belongs to the account and server, not to a tenant: no context keys here.
            rl_attrs = rt.metric_attributes(self, None, with_context=False)
            if self.rl_requests is not None:
                inst.ratelimit_remaining.set(self.rl_requests, rt.with_attr(rl_attrs, sc.RATELIMIT_KIND, "requests"))
            if self.rl_tokens is not None:
                inst.ratelimit_remaining.set(self.rl_tokens, rt.with_attr(rl_attrs, sc.RATELIMIT_KIND, "tokens"))

        # processors
        ctx = span.get_span_context()
        usage_record = UsageRecord(
            timestamp=self.start_ns / 1e9,
            provider=self.provider,
            operation=self.operation,
            request_model=self.request_model,
            response_model=self.response_model,
            usage=usage if known else None,
            usage_complete=complete,
            cost_usd=cost,
            duration_s=duration,
            time_to_first_chunk_s=ttfc,
            tokens_per_second=tps,
            burst_tokens_per_second=burst,
            throttle_wait_s=self.throttle_s,
            retry_wait_s=self.retry_s,
            retries=retries_total,
            error_type=error_type,
            stream_end=stream_end,
            streaming=self.streaming,
            server_address=self.server_address,
            attributes=self.attributes,
            trace_id=f"{ctx.trace_id:032x}" if ctx.is_valid else None,
            span_id=f"{ctx.span_id:016x}" if ctx.is_valid else None,
            span=span,
        )
        rt.dispatch(usage_record)
        usage_record.span = None  # processors that queue the record (ledger) must not keep the span alive
        span.end(end_time=end_time)  # after the processors, so they can add events (budget alerts) to it


class _CurrentSpan:
    """Makes a span current for a ``with`` block; a lighter ``trace.use_span`` (no exception recording)."""

    __slots__ = ("_span", "_token")

    def __init__(self, span: Any) -> None:
        self._span = span

    def __enter__(self) -> None:
        self._token = otel_context.attach(trace.set_span_in_context(self._span))

    def __exit__(self, *exc_info: Any) -> None:
        otel_context.detach(self._token)


def use_span(record: CallRecord) -> _CurrentSpan:
    """Context manager making the call's span current (so HTTP client spans nest under it)."""
    return _CurrentSpan(record.span)
