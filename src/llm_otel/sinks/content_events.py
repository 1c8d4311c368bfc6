"""Content capture as events (``event_only`` / ``span_and_event``): one ``gen_ai.client.inference.operation.details``
log record per call, in the call's trace, with the conventions' attributes and the captured messages as
structured values."""

from __future__ import annotations

from typing import Any

from opentelemetry.trace import set_span_in_context

from .. import semconv as sc
from ..core.result import CallResult
from .span import content_attributes, usage_attributes


class InferenceDetailsEvents:
    """Emits the inference details event of every call through the runtime's logger provider."""

    def __init__(self, logger: Any) -> None:
        self._logger = logger

    def on_usage(self, r: CallResult) -> None:
        attrs: dict[str, Any] = {sc.OPERATION_NAME: r.operation, sc.PROVIDER_NAME: r.provider}
        for name, value in ((sc.REQUEST_MODEL, r.request_model), (sc.RESPONSE_MODEL, r.response_model),
                            (sc.RESPONSE_ID, r.response_id), (sc.ERROR_TYPE, r.error_type)):  # fmt: skip
            if value is not None:
                attrs[name] = value
        if r.finish_reasons:
            attrs[sc.RESPONSE_FINISH_REASONS] = list(r.finish_reasons)
        usage_attributes(r, attrs, latest_semconv=False)
        attrs.update(content_attributes(r))
        context = set_span_in_context(r.span) if r.span is not None else None
        self._logger.emit(
            timestamp=r.start_ns + int(r.duration_s * 1e9),
            context=context,
            event_name=sc.INFERENCE_DETAILS_EVENT,
            attributes=attrs,
        )
