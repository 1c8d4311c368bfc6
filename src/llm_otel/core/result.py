"""What one finished call produced (``CallResult``), and what is known before it starts (``CallInfo``).

A ``CallResult`` is built once, when the call ends, and never changes: every sink (span, metrics, ledger,
session totals, budgets, your own processors) reads the same values. It is a ``NamedTuple``: immutable and
cheap to build on the caller's thread.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .usage import Usage

_NO_ATTRIBUTES: dict[str, str] = {}  # shared default; results never mutate their attribution


class CallResult(NamedTuple):
    """Timings, usage, cost, attribution, error and stream end of one logical LLM call."""

    timestamp: float
    """Unix seconds at call start."""
    provider: str
    operation: str
    request_model: str | None
    response_model: str | None
    usage: Usage | None
    """Known token usage (``None`` when the provider reported none)."""
    usage_complete: bool
    """False when usage is partial or missing (a stream that ended early): no cost is claimed then."""
    cost_usd: float | None
    duration_s: float
    time_to_first_chunk_s: float | None = None
    tokens_per_second: float | None = None
    burst_tokens_per_second: float | None = None
    throttle_wait_s: float = 0.0
    retry_wait_s: float = 0.0
    retries: int = 0
    error_type: str | None = None
    stream_end: str | None = None
    streaming: bool = False
    server_address: str | None = None
    attributes: dict[str, str] = _NO_ATTRIBUTES
    """Attribution from ``llm_otel.context(...)`` (read-only)."""
    span: Any = None
    """The call's span, still open while sinks run (add events to it; do not end it)."""
    server_port: int | None = None
    response_id: str | None = None
    finish_reasons: tuple[str, ...] | None = None
    cost_source: str | None = None
    retry_reasons: tuple[tuple[str, int], ...] = ()
    """``(reason, count)`` pairs: rate_limit, server, connection."""
    ratelimit_requests: int | None = None
    ratelimit_tokens: int | None = None
    chunk_times: tuple[float, ...] | None = None
    """``perf_counter`` times of output chunks (streams)."""
    start_ns: int = 0
    error: BaseException | None = None
    output_text: str | None = None
    """Completion text, only when content capture is on."""
    content: Any = None
    """The request's messages, system instructions and tool definitions (a ``core.content.Content``), only
    when content capture is on."""

    @property
    def trace_id(self) -> str | None:
        """The call's trace id as 32 hex digits (None without a valid span)."""
        ctx = self.span.get_span_context() if self.span is not None else None
        return f"{ctx.trace_id:032x}" if ctx is not None and ctx.is_valid else None

    @property
    def span_id(self) -> str | None:
        """The call's span id as 16 hex digits (None without a valid span)."""
        ctx = self.span.get_span_context() if self.span is not None else None
        return f"{ctx.span_id:016x}" if ctx is not None and ctx.is_valid else None


#: The name processors have always received; the same class.
UsageRecord = CallResult


class CallInfo(NamedTuple):
    """What is known about a call before its request leaves the process (for processors that may block)."""

    provider: str
    operation: str
    request_model: str | None
    attributes: dict[str, str]
