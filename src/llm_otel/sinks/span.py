"""The span sink: the call's outcome as attributes and status on its span, then the span's end.

It runs last, so the sinks before it (budgets, your processors) can still add events to the open span.
"""

from __future__ import annotations

import json
from typing import Any

from opentelemetry.trace import Status, StatusCode

from .. import semconv as sc
from ..core.content import output_messages
from ..core.result import CallResult


def usage_attributes(r: CallResult, out: dict[str, Any], latest_semconv: bool) -> None:
    """The conventions' ``gen_ai.usage.*`` attributes for the usage that is known."""
    usage = r.usage
    if usage is None:
        return
    if usage.input_tokens is not None:
        out[sc.USAGE_INPUT_TOKENS] = usage.input_tokens
    if usage.output_tokens is not None:
        out[sc.USAGE_OUTPUT_TOKENS] = usage.output_tokens
    if usage.cache_read_tokens is not None:
        out[sc.USAGE_CACHE_READ_INPUT_TOKENS] = usage.cache_read_tokens
    if usage.cache_write_tokens is not None:
        out[sc.USAGE_CACHE_CREATION_INPUT_TOKENS] = usage.cache_write_tokens
        if latest_semconv:
            out[sc.LATEST_USAGE_CACHE_WRITE_INPUT_TOKENS] = usage.cache_write_tokens
    if usage.reasoning_tokens is not None:
        out[sc.USAGE_REASONING_OUTPUT_TOKENS] = usage.reasoning_tokens


def content_attributes(r: CallResult) -> dict[str, Any]:
    """The call's captured content under the conventions' names (structured values)."""
    out: dict[str, Any] = {}
    content = r.content
    if content is not None:
        if content.system:
            out[sc.SYSTEM_INSTRUCTIONS] = content.system
        if content.input:
            out[sc.INPUT_MESSAGES] = content.input
        if content.tools:
            out[sc.TOOL_DEFINITIONS] = content.tools
    if r.output_text:
        out[sc.OUTPUT_MESSAGES] = output_messages(r.output_text, r.finish_reasons)
    return out


class SpanSink:
    """Sets the result on the call's span and ends it at the call's end time."""

    def __init__(self, latest_semconv: bool = False, content: bool = False) -> None:
        self._latest = latest_semconv
        self._content = content  # content capture puts messages on spans (span_only, span_and_event)

    def on_usage(self, r: CallResult) -> None:
        span = r.span
        if span is None:
            return
        if span.is_recording():
            span.set_attributes(self._attributes(r))
            if r.error is not None:
                span.set_status(Status(StatusCode.ERROR, str(r.error)[:256]))
        span.end(end_time=r.start_ns + int(r.duration_s * 1e9))

    def _attributes(self, r: CallResult) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if r.response_model:
            out[sc.RESPONSE_MODEL] = r.response_model
        if r.response_id:
            out[sc.RESPONSE_ID] = r.response_id
        if r.finish_reasons:
            out[sc.RESPONSE_FINISH_REASONS] = r.finish_reasons
        usage_attributes(r, out, self._latest)
        out[sc.USAGE_COMPLETE] = r.usage_complete
        if r.cost_usd is not None:
            out[sc.COST_USD] = r.cost_usd
        if r.cost_source is not None:
            out[sc.COST_SOURCE] = r.cost_source
        if r.throttle_wait_s or r.retry_wait_s or r.retries:
            out[sc.THROTTLE_WAIT_S] = r.throttle_wait_s
            out[sc.RETRY_WAIT_S] = r.retry_wait_s
            out[sc.RETRIES] = r.retries
        if r.time_to_first_chunk_s is not None:
            out[sc.RESPONSE_TIME_TO_FIRST_CHUNK] = r.time_to_first_chunk_s
        if r.tokens_per_second is not None:
            out[sc.TOKENS_PER_SECOND] = r.tokens_per_second
        if r.burst_tokens_per_second is not None:
            out[sc.BURST_TOKENS_PER_SECOND] = r.burst_tokens_per_second
        if r.stream_end is not None:
            out[sc.STREAM_END] = r.stream_end
            out[sc.STREAM_CHUNKS] = len(r.chunk_times) if r.chunk_times is not None else 0
        if r.ratelimit_requests is not None:
            out[sc.RATELIMIT_REMAINING_REQUESTS] = r.ratelimit_requests
        if r.ratelimit_tokens is not None:
            out[sc.RATELIMIT_REMAINING_TOKENS] = r.ratelimit_tokens
        if self._content:
            for name, value in content_attributes(r).items():
                out[name] = json.dumps(value, default=str, ensure_ascii=False)
        if r.error_type is not None:
            out[sc.ERROR_TYPE] = r.error_type
        return out
