"""Call: the life of one logical LLM call, from request to the end of its response or stream.

A record starts the span, collects timings, retry sleeps, headers and usage while the call runs, and
``finish()`` (exactly once, whoever calls it first) turns them into one immutable ``CallResult`` that the
runtime hands to every sink (span, metrics, ledger, session totals, budgets). Measuring happens here;
emitting happens in ``llm_otel.sinks``.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from .. import semconv as sc
from .result import CallResult
from .usage import Usage

if TYPE_CHECKING:
    from ..runtime import Runtime
    from .content import Content

log = logging.getLogger(__name__)

#: The call in progress in this thread / asyncio task (retry sleeps accumulate into it). It also carries the
#: nesting rule: an instrumented SDK call that starts while a call is current is part of that call (the
#: outermost instrumented layer owns it, e.g. litellm over the openai SDK) and records nothing of its own.
CURRENT: contextvars.ContextVar[Call | None] = contextvars.ContextVar("llm_otel_call", default=None)


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

#: Calls whose stream was garbage-collected, waiting to be ended: (record, when, how it ended). A finalizer
#: may run at any allocation, including inside a sink holding its lock in this very thread; ending the call
#: there would deadlock. They are ended at the next safe point: the next call, the writer thread's next
#: round (every 0.25 s when the ledger or budgets are on), ``flush()``, ``uninstrument()`` or exit.
_ORPHANS: collections.deque[tuple[Call, float, str]] = collections.deque()


def end_later(record: Call, stream_end: str) -> None:
    """End ``record`` at the next safe point (for finalizers); the end time is now."""
    _ORPHANS.append((record, _perf(), stream_end))


def end_orphans() -> None:
    """End the calls queued by ``end_later`` (call only where no llm-otel lock is held)."""
    while _ORPHANS:
        try:
            record, at, stream_end = _ORPHANS.popleft()
        except IndexError:  # another thread took the last one
            return
        record.finish(stream_end=stream_end, at=at)


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
    if span <= window:  # every chunk falls within one window
        return n * per_chunk / span
    best = 0
    lo = 0
    first = times[0]
    for hi, t in enumerate(times):
        if t - first > window:
            while t - times[lo] > window:
                lo += 1
            first = times[lo]
        if hi - lo >= best:
            best = hi - lo + 1
    return best * per_chunk / min(window, span)


class Call:
    """Mutable state of one call; see the module docstring."""

    __slots__ = (
        "_once",
        "attributes",
        "chunk_times",
        "content",
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
        if _ORPHANS:  # a safe point: no llm-otel lock is held while a call starts
            end_orphans()
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
        self.content: Content | None = None  # the request's messages, when content capture is on
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
        if self.attributes:
            for key, value in self.attributes.items():
                attrs[sc.CONTEXT_PREFIX + key] = value
            if "agent" in self.attributes:
                attrs[sc.AGENT_NAME] = self.attributes["agent"]
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

    def finish(
        self, error: BaseException | None = None, stream_end: str | None = None, at: float | None = None
    ) -> None:
        """End the call exactly once (``at``: when it ended, default now); later calls do nothing. Never raises."""
        if not self._once.acquire(blocking=False):
            return
        t_end = _perf() if at is None else at
        try:
            self._finish(t_end, error, stream_end)
        except Exception:
            self.rt.report_internal_error("finishing a call")
            with contextlib.suppress(Exception):
                self.span.end()

    def _finish(self, t_end: float, error: BaseException | None, stream_end: str | None) -> None:
        """Turn what was measured into one ``CallResult`` and hand it to the sinks."""
        rt = self.rt
        duration = t_end - self.t0
        usage = self.usage
        known = usage is not None and usage.known
        complete = known and self.usage_complete
        # Partial usage (a stream that ended early) is recorded as far as it is known, but no cost is claimed.
        cost = rt.cost(self.provider, self.response_model or self.request_model, usage) if complete else None
        if cost is not None:
            cost_source = sc.COST_SOURCE_LOCAL
        elif complete and self.extra is not None and "fallback_cost" in self.extra:
            # Unpriced here, but the layer that made the call reported a figure (LiteLLM's own cost).
            cost, cost_source = self.extra["fallback_cost"]
        elif complete:
            cost_source = sc.COST_SOURCE_UNPRICED
        else:
            cost_source = sc.COST_SOURCE_INCOMPLETE if known else None

        ttfc = tps = burst = None
        times = self.chunk_times
        output = usage.output_tokens if known else None  # type: ignore[union-attr]
        if times:
            ttfc = times[0] - self.t0
            if output and len(times) > 1 and times[-1] > times[0]:
                tps = output / (times[-1] - times[0])
                burst = burst_rate(times, output)
        elif not self.streaming and output and error is None:
            active = duration - self.throttle_s - self.retry_s
            if active > 0:
                tps = output / active

        retries = self.retries
        rt.emit(
            CallResult(
                self.start_ns / 1e9, self.provider, self.operation, self.request_model, self.response_model,
                usage if known else None, complete, cost, duration, ttfc, tps, burst, self.throttle_s,
                self.retry_s, sum(retries.values()) if retries else 0,
                error_type_name(error) if error is not None else None, stream_end, self.streaming,
                self.server_address, self.attributes, self.span, self.server_port, self.response_id,
                tuple(self.finish_reasons) if self.finish_reasons else None, cost_source,
                tuple(retries.items()) if retries else (), self.rl_requests, self.rl_tokens,
                tuple(times) if times is not None else None, self.start_ns, error,
                "".join(self.output_text) if self.output_text else None, self.content,
            )
        )  # fmt: skip


class _CurrentSpan:
    """Makes a span current for a ``with`` block; a lighter ``trace.use_span`` (no exception recording)."""

    __slots__ = ("_span", "_token")

    def __init__(self, span: Any) -> None:
        self._span = span

    def __enter__(self) -> None:
        self._token = otel_context.attach(trace.set_span_in_context(self._span))

    def __exit__(self, *exc_info: Any) -> None:
        otel_context.detach(self._token)


def use_span(record: Call) -> _CurrentSpan:
    """Context manager making the call's span current (so HTTP client spans nest under it)."""
    return _CurrentSpan(record.span)
