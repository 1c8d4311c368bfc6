"""The live state behind ``instrument()``: settings, tracer, instruments, prices and processors."""

from __future__ import annotations

import json
import logging
from typing import Any

from . import context as _context
from . import semconv as sc
from .config import Settings
from .core.pricing import PriceBook
from .core.result import CallInfo, UsageProcessor, UsageRecord
from .core.usage import Usage
from .errors import CallBlocked
from .providers import SCOPE, Instruments, Providers, _version
from .sinks.session import SessionTotals

log = logging.getLogger("llm_otel")

_ATTR_CACHE_MAX = 4096


class Runtime:
    """Everything a CallRecord needs; one per ``instrument()``."""

    def __init__(self, settings: Settings, providers: Providers, processors: list[UsageProcessor]) -> None:
        self.settings = settings
        self.providers = providers
        self.tracer = providers.tracer_provider.get_tracer(SCOPE, _version())
        self.instruments = Instruments(providers.meter_provider, settings.latest_semconv)
        self.prices = PriceBook(settings.prices)
        self.processors = processors
        self.session = SessionTotals()
        self._metric_keys = tuple(settings.metric_attributes)
        self._attr_cache: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._derived_cache: dict[tuple[Any, ...], tuple[dict[str, Any], dict[str, Any]]] = {}
        self._typed_cache: dict[int, tuple[dict[str, Any], dict[str, dict[str, Any]]]] = {}
        self._reported: set[str] = set()
        self._checks = [proc.before_call for proc in processors if hasattr(proc, "before_call")]
        for proc in processors:
            bind = getattr(proc, "bind", None)
            if bind is not None:
                bind(self)

    # --- attribution / attributes ----------------------------------------------------------------------
    @staticmethod
    def current_attribution() -> dict[str, str]:
        return _context.current()

    def metric_attributes(self, rec: Any, error_type: str | None, with_context: bool = True) -> dict[str, Any]:
        """Low-cardinality metric attributes for a call, cached by value. ``with_context=False`` leaves out the
        allow-listed context keys (for per-server facts such as rate-limit headroom)."""
        ctx = rec.attributes
        keys = self._metric_keys if with_context else ()
        allowed = tuple(ctx.get(k) for k in keys) if ctx and keys else ()
        key = (rec.provider, rec.operation, rec.request_model, rec.response_model, rec.server_address,
               rec.server_port, error_type, allowed)  # fmt: skip
        attrs = self._attr_cache.get(key)
        if attrs is None:
            attrs = {sc.OPERATION_NAME: rec.operation, sc.PROVIDER_NAME: rec.provider}
            if rec.request_model:
                attrs[sc.REQUEST_MODEL] = rec.request_model
            if rec.response_model:
                attrs[sc.RESPONSE_MODEL] = rec.response_model
            if rec.server_address:
                attrs[sc.SERVER_ADDRESS] = rec.server_address
            if rec.server_port:
                attrs[sc.SERVER_PORT] = rec.server_port
            if error_type:
                attrs[sc.ERROR_TYPE] = error_type
            for k, v in zip(keys, allowed, strict=False):
                if v is not None:
                    attrs[sc.CONTEXT_PREFIX + k] = v
            if len(self._attr_cache) > _ATTR_CACHE_MAX:
                self._attr_cache.clear()
            self._attr_cache[key] = attrs
        return attrs

    def with_attr(self, base: dict[str, Any], name: str, value: str) -> dict[str, Any]:
        """``base`` plus one attribute, cached (``base`` is itself a cached dict)."""
        key = (id(base), name, value)
        hit = self._derived_cache.get(key)
        if hit is not None and hit[0] is base:
            return hit[1]
        attrs = {**base, name: value}
        if len(self._derived_cache) > _ATTR_CACHE_MAX:
            self._derived_cache.clear()
        self._derived_cache[key] = (base, attrs)
        return attrs

    def usage_span_attributes(self, usage: Usage, out: dict[str, Any]) -> None:
        if usage.input_tokens is not None:
            out[sc.USAGE_INPUT_TOKENS] = usage.input_tokens
        if usage.output_tokens is not None:
            out[sc.USAGE_OUTPUT_TOKENS] = usage.output_tokens
        if usage.cache_read_tokens is not None:
            out[sc.USAGE_CACHE_READ_INPUT_TOKENS] = usage.cache_read_tokens
        if usage.cache_write_tokens is not None:
            out[sc.USAGE_CACHE_CREATION_INPUT_TOKENS] = usage.cache_write_tokens
            if self.settings.latest_semconv:
                out[sc.LATEST_USAGE_CACHE_WRITE_INPUT_TOKENS] = usage.cache_write_tokens
        if usage.reasoning_tokens is not None:
            out[sc.USAGE_REASONING_OUTPUT_TOKENS] = usage.reasoning_tokens

    def record_usage_metrics(self, usage: Usage, attrs: dict[str, Any]) -> None:
        inst = self.instruments
        latest = inst.latest
        typed_by_kind = self._typed_cache.get(id(attrs))
        if typed_by_kind is None or typed_by_kind[0] is not attrs:
            typed_by_kind = (attrs, {kind: {**attrs, sc.TOKEN_TYPE: kind} for kind in sc.TOKEN_TYPES})
            if len(self._typed_cache) > _ATTR_CACHE_MAX:
                self._typed_cache.clear()
            self._typed_cache[id(attrs)] = typed_by_kind
        typed_attrs = typed_by_kind[1]
        for kind, n in usage.by_type().items():
            typed = typed_attrs[kind]
            inst.tokens.add(n, typed)
            if kind == sc.TOKEN_INPUT or kind == sc.TOKEN_OUTPUT:
                inst.token_usage.record(n, typed)
            if latest is not None:
                latest[kind].add(n, attrs)

    def output_content_attribute(self, text: str, out: dict[str, Any]) -> None:
        out[sc.OUTPUT_MESSAGES] = json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": text}]}])

    # --- cost / processors -----------------------------------------------------------------------------
    def cost(self, provider: str, model: str | None, usage: Usage | None) -> float | None:
        if usage is None:
            return None
        try:
            return self.prices.cost(provider, model, usage)
        except Exception:
            self.report_internal_error("pricing")
            return None

    def check_call(self, record: Any) -> None:
        """Let processors veto a call before its request is sent (budgets with ``action: block``).

        ``CallBlocked`` ends the call's record and reaches the app; any other processor fault is logged."""
        if not self._checks:
            return
        info = CallInfo(record.provider, record.operation, record.request_model, record.attributes)
        try:
            for check in self._checks:
                check(info)
        except CallBlocked as exc:
            record.finish(exc)
            raise
        except Exception:
            self.report_internal_error("before_call processors")

    def dispatch(self, record: UsageRecord) -> None:
        self.session.add(record)
        for proc in self.processors:
            try:
                proc.on_usage(record)
            except Exception:
                self.report_internal_error(f"usage processor {type(proc).__name__}")

    def report_internal_error(self, where: str) -> None:
        """Log an internal fault once per place (with traceback at debug level)."""
        if where not in self._reported:
            self._reported.add(where)
            log.warning("llm-otel: internal error in %s; the call was not affected", where, exc_info=True)
        else:
            log.debug("llm-otel: internal error in %s", where, exc_info=True)
