"""The floor: minimal instrumentation written by hand with plain OpenTelemetry API calls.

Per call: one CLIENT span ``chat {model}`` (request attributes at start, response attributes at end) and
exactly the three metric points the official OpenAI instrumentation records: one
``gen_ai.client.operation.duration`` point and two ``gen_ai.client.token.usage`` points (input, output).
For streams it asks for the usage chunk itself, reads model / id / finish reason / usage from the chunks it
iterates, and records the same points at the end. Nothing here comes from llm_otel.
"""

from __future__ import annotations

import time
from typing import Any

from opentelemetry.context import Context
from opentelemetry.trace import SpanKind
from workloads import A_MAX_TOKENS, A_MESSAGES, A_MODEL, HOST, MESSAGES, MODEL, PORT

# The bucket boundaries the GenAI semantic conventions recommend (the official instrumentation uses them too).
DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]
_perf = time.perf_counter
_NO_SPAN = Context()


class Floor:
    """Hand-written instrumentation around each workload's call."""

    def __init__(self, tracer_provider: Any, meter_provider: Any, extension_points: bool = False) -> None:
        """``extension_points``: also record the three points per call that llm-otel adds to the conventions' (see
        ``_finish``); ``bench/instructions.py`` uses it to show what keeping them costs at the least."""
        self.tracer = tracer_provider.get_tracer("bench.floor")
        meter = meter_provider.get_meter("bench.floor")
        self.extension_points = extension_points
        if extension_points:
            self.cost = meter.create_histogram("bench.floor.request.cost", unit="USD")
            self.throttle_wait = meter.create_histogram("bench.floor.throttle.wait", unit="s")
            self.tokens_per_second = meter.create_histogram("bench.floor.tokens_per_second", unit="{token}/s")
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s", explicit_bucket_boundaries_advisory=DURATION_BUCKETS
        )
        self.token_usage = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}", explicit_bucket_boundaries_advisory=TOKEN_BUCKETS
        )

    # --- shared -----------------------------------------------------------------------------------------------
    @staticmethod
    def _start_attrs(provider: str, model: str) -> dict[str, Any]:
        return {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": model,
            "server.address": HOST,
            "server.port": PORT,
        }

    def _finish(self, span: Any, start: dict[str, Any], duration: float, response_model: str, response_id: str,
                finish: list[str], input_tokens: int, output_tokens: int) -> None:  # fmt: skip
        span.set_attributes(
            {
                "gen_ai.response.model": response_model,
                "gen_ai.response.id": response_id,
                "gen_ai.response.finish_reasons": finish,
                "gen_ai.usage.input_tokens": input_tokens,
                "gen_ai.usage.output_tokens": output_tokens,
            }
        )
        attrs = {**start, "gen_ai.response.model": response_model}
        self.duration.record(duration, attrs)
        self.token_usage.record(input_tokens, {**attrs, "gen_ai.token.type": "input"})
        self.token_usage.record(output_tokens, {**attrs, "gen_ai.token.type": "output"})
        if self.extension_points:  # made-up values: only the SDK's cost per point matters here
            # No exemplars (an empty context), as llm-otel records them at collection, outside any span.
            self.cost.record(input_tokens * 1.5e-7 + output_tokens * 6e-7, attrs, _NO_SPAN)
            self.throttle_wait.record(0.0, attrs, _NO_SPAN)
            self.tokens_per_second.record(output_tokens / duration, attrs, _NO_SPAN)

    # --- openai -----------------------------------------------------------------------------------------------
    def chat(self, client: Any) -> Any:
        start = self._start_attrs("openai", MODEL)
        with self.tracer.start_as_current_span(f"chat {MODEL}", kind=SpanKind.CLIENT, attributes=start) as span:
            t0 = _perf()
            resp = client.chat.completions.create(model=MODEL, messages=MESSAGES)
            duration = _perf() - t0
            u = resp.usage
            finish = [c.finish_reason for c in resp.choices]
            self._finish(span, start, duration, resp.model, resp.id, finish, u.prompt_tokens, u.completion_tokens)
        return resp

    async def chat_async(self, client: Any) -> Any:
        start = self._start_attrs("openai", MODEL)
        with self.tracer.start_as_current_span(f"chat {MODEL}", kind=SpanKind.CLIENT, attributes=start) as span:
            t0 = _perf()
            resp = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
            duration = _perf() - t0
            u = resp.usage
            finish = [c.finish_reason for c in resp.choices]
            self._finish(span, start, duration, resp.model, resp.id, finish, u.prompt_tokens, u.completion_tokens)
        return resp

    def stream(self, client: Any) -> None:
        start = self._start_attrs("openai", MODEL)
        with self.tracer.start_as_current_span(f"chat {MODEL}", kind=SpanKind.CLIENT, attributes=start) as span:
            t0 = _perf()
            chunks = client.chat.completions.create(
                model=MODEL,
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
            )
            model = rid = None
            finish: list[str] = []
            usage = None
            for chunk in chunks:
                if model is None:
                    model, rid = chunk.model, chunk.id
                for choice in chunk.choices:
                    if choice.finish_reason:
                        finish.append(choice.finish_reason)
                if chunk.usage is not None:
                    usage = chunk.usage
            duration = _perf() - t0
            self._finish(span, start, duration, model, rid, finish, usage.prompt_tokens, usage.completion_tokens)

    # --- anthropic --------------------------------------------------------------------------------------------
    def anthropic_message(self, client: Any) -> Any:
        start = self._start_attrs("anthropic", A_MODEL)
        with self.tracer.start_as_current_span(f"chat {A_MODEL}", kind=SpanKind.CLIENT, attributes=start) as span:
            t0 = _perf()
            msg = client.messages.create(model=A_MODEL, max_tokens=A_MAX_TOKENS, messages=A_MESSAGES)
            duration = _perf() - t0
            u = msg.usage
            # The conventions count cached input as input.
            inp = u.input_tokens + (u.cache_read_input_tokens or 0) + (u.cache_creation_input_tokens or 0)
            self._finish(span, start, duration, msg.model, msg.id, [msg.stop_reason], inp, u.output_tokens)
        return msg

    def anthropic_stream(self, client: Any) -> None:
        start = self._start_attrs("anthropic", A_MODEL)
        with self.tracer.start_as_current_span(f"chat {A_MODEL}", kind=SpanKind.CLIENT, attributes=start) as span:
            t0 = _perf()
            events = client.messages.create(model=A_MODEL, max_tokens=A_MAX_TOKENS, messages=A_MESSAGES, stream=True)
            model = rid = None
            finish: list[str] = []
            inp = out = 0
            for event in events:
                kind = event.type
                if kind == "message_start":
                    m = event.message
                    model, rid, u = m.model, m.id, m.usage
                    inp = u.input_tokens + (u.cache_read_input_tokens or 0) + (u.cache_creation_input_tokens or 0)
                elif kind == "message_delta":
                    out = event.usage.output_tokens
                    if event.delta.stop_reason:
                        finish.append(event.delta.stop_reason)
            duration = _perf() - t0
            self._finish(span, start, duration, model, rid, finish, inp, out)
