"""The usage record every finished call produces, and the processor interface that consumes it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from .usage import Usage


@dataclass(slots=True)
class UsageRecord:
    """What one logical LLM call used: the same measurements that feed the metrics."""

    timestamp: float  # unix seconds at call start
    provider: str
    operation: str
    request_model: str | None
    response_model: str | None
    usage: Usage | None
    usage_complete: bool
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
    attributes: dict[str, str] = field(default_factory=dict)
    trace_id: str | None = None
    span_id: str | None = None
    span: Any = field(default=None, repr=False, compare=False)
    """The call's span, still open while processors run (add events to it; do not end it)."""


@dataclass(slots=True)
class CallInfo:
    """What is known about a call before its request leaves the process (for processors that may block)."""

    provider: str
    operation: str
    request_model: str | None
    attributes: dict[str, str]


class UsageProcessor(Protocol):
    """Consumes usage records. ``before_call`` may raise ``CallBlocked`` to stop a call (budgets);
    ``on_usage`` must not raise (if it does, the error is logged and the app is not affected).
    An optional ``bind(runtime)`` method is called once with the runtime (providers, instruments)."""

    def before_call(self, info: CallInfo) -> None: ...

    def on_usage(self, record: UsageRecord) -> None: ...
