"""Anthropic SDK (2.x): messages create / stream / parse, the beta messages resource, raw responses.

``messages.stream()`` and ``messages.parse()`` do not go through ``create``; they do go through the client's
``request``, which is where the shared Stainless wiring hooks. Stream usage: ``message_start`` carries input
and cache tokens, each ``message_delta`` carries the cumulative output count (overwrite, don't add).

The SDK ships its own OpenTelemetry span, on by default. By default ours replaces it (the SDK's is switched
off while llm-otel is instrumenting, so a call has one span and its tokens are counted once). With
``anthropic_native_spans: child`` the SDK's span is kept as a child of ours; metrics are ours alone either way.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from .. import semconv as sc
from ..core import content
from ..core.call import Call
from ..core.content import Content
from ..core.usage import Usage, field, from_anthropic
from ._stainless import Observer, StainlessInstrumentor

_perf = time.perf_counter


def apply_message(record: Call, body: Any) -> None:
    """A complete Message (non-stream response)."""
    if body is None or isinstance(body, (str, bytes)):
        return
    record.response_model = field(body, "model") or record.response_model
    record.response_id = field(body, "id") or record.response_id
    reason = field(body, "stop_reason")
    if reason:
        record.finish_reasons = [reason]
    if record.output_text is None and record.rt.settings.capture_content:
        blocks = field(body, "content") or []
        record.output_text = ["".join(field(b, "text") or "" for b in blocks)]
    usage = from_anthropic(field(body, "usage"))
    if usage is not None:
        record.usage = usage
        record.usage_complete = True


def _merge_delta(current: Usage | None, delta: Usage | None, raw: Any) -> Usage | None:
    """``message_delta`` usage is cumulative: its fields replace those from ``message_start``."""
    if delta is None:
        return current
    if current is None:
        return delta
    has_input = field(raw, "input_tokens") is not None
    return Usage(
        input_tokens=delta.input_tokens if has_input else current.input_tokens,
        output_tokens=delta.output_tokens if delta.output_tokens is not None else current.output_tokens,
        cache_read_tokens=delta.cache_read_tokens if delta.cache_read_tokens is not None else current.cache_read_tokens,
        cache_write_tokens=(
            delta.cache_write_tokens if delta.cache_write_tokens is not None else current.cache_write_tokens
        ),
        reasoning_tokens=delta.reasoning_tokens if delta.reasoning_tokens is not None else current.reasoning_tokens,
    )


def observe_event(record: Call, event: Any) -> bool:
    """One raw stream event (``RawMessageStreamEvent``)."""
    kind = getattr(event, "type", None)
    if kind == "content_block_delta":
        record.chunk_times.append(_perf())  # record.output_chunk(), inlined: once per delta
        if record.output_text is not None:
            text = getattr(event.delta, "text", None)
            if text:
                record.output_text.append(text)
    elif kind == "message_start":
        message = event.message
        record.response_model = message.model
        record.response_id = message.id
        usage = from_anthropic(message.usage)
        if usage is not None:
            usage.output_tokens = None  # a placeholder until message_delta reports the real count
            usage.reasoning_tokens = None
        record.usage = usage
    elif kind == "message_delta":
        raw = getattr(event, "usage", None)
        if raw is not None:
            record.usage = _merge_delta(record.usage, from_anthropic_delta(raw), raw)
            record.usage_complete = record.usage is not None and record.usage.output_tokens is not None
        reason = getattr(event.delta, "stop_reason", None)
        if reason:
            record.finish_reasons = [reason]
    return True


def from_anthropic_delta(raw: Any) -> Usage | None:
    """``MessageDeltaUsage``: output always, input and cache fields only sometimes."""
    out = field(raw, "output_tokens")
    if out is None:
        return None
    full = from_anthropic({
        "input_tokens": field(raw, "input_tokens") or 0,
        "output_tokens": out,
        "cache_read_input_tokens": field(raw, "cache_read_input_tokens"),
        "cache_creation_input_tokens": field(raw, "cache_creation_input_tokens"),
        "output_tokens_details": field(raw, "output_tokens_details"),
    })  # fmt: skip
    return full


_CLOUD_CLIENTS = (
    ("AnthropicBedrock", sc.PROVIDER_BEDROCK),
    ("AsyncAnthropicBedrock", sc.PROVIDER_BEDROCK),
    ("AnthropicVertex", sc.PROVIDER_VERTEX_AI),
    ("AsyncAnthropicVertex", sc.PROVIDER_VERTEX_AI),
)
_PROVIDER_BY_TYPE: dict[type, str] = {}


class AnthropicInstrumentor(StainlessInstrumentor):
    """Instruments the ``anthropic`` package."""

    dependencies: ClassVar[tuple[str, ...]] = ("anthropic >= 0.40",)
    provider_name: ClassVar[str] = sc.PROVIDER_ANTHROPIC
    operations: ClassVar[dict[str, str]] = {"/v1/messages": sc.OP_CHAT}
    ratelimit_headers: ClassVar[tuple[str, str]] = (
        "anthropic-ratelimit-requests-remaining",
        "anthropic-ratelimit-tokens-remaining",
    )

    def provider_for(self, client: Any) -> str:
        """``aws.bedrock`` / ``gcp.vertex_ai`` for the Bedrock and Vertex clients: the spend is billed there."""
        cls = type(client)
        name = _PROVIDER_BY_TYPE.get(cls)
        if name is None:
            names = {c.__name__ for c in cls.__mro__}
            name = next((p for client_name, p in _CLOUD_CLIENTS if client_name in names), self.provider_name)
            _PROVIDER_BY_TYPE[cls] = name
        return name

    def apply_response(self, record: Call, body: Any) -> None:
        apply_message(record, body)

    def content_of(self, path: str, body: dict[str, Any]) -> Content | None:
        return content.anthropic(body)

    def stream_observer(self, record: Call, stream: Any, path: str | None) -> Observer:
        return observe_event

    def extra_patches(self) -> None:
        if self.rt.settings.anthropic_native_spans == "child":
            return
        import anthropic._base_client as base

        prop = base.BaseClient.__dict__.get("_tracer")
        if isinstance(prop, property):
            # The SDK starts its span only when the client has a tracer: report "none" while we instrument.
            self._patcher.replace(base.BaseClient, "_tracer", property(lambda client: None, doc=prop.__doc__))
