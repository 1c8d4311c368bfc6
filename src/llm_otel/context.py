"""Attribution: ``with llm_otel.context(job=..., tenant=...):`` tags every call made inside the block."""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_EMPTY: dict[str, str] = {}  # shared and never mutated: context() always builds a new dict
_ATTRIBUTION: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("llm_otel_attribution", default=_EMPTY)

AttributeValue = str | int | float | bool


@contextmanager
def context(**attributes: Any) -> Iterator[dict[str, str]]:
    """Attach attribution keys (job, task, agent, tenant, or any other) to calls made inside the block.

    Keys go on spans and ledger rows as ``llm_otel.<key>``; on metrics only when allow-listed with
    ``instrument(metric_attributes=[...])``; ``agent`` also as ``gen_ai.agent.name``. A key that would
    overwrite or shadow one of llm-otel's own attributes (``retries``, ``cost`` ...) raises ``ValueError``.
    Nested blocks merge; inner values win. Thread- and asyncio-safe.
    """
    for key in attributes:
        if not key.isidentifier():
            raise ValueError(f"llm_otel.context: {key!r} is not a valid attribute key")
        if key in reserved_keys():
            raise ValueError(f"llm_otel.context: {key!r} is reserved: llm-otel's own attributes use "
                             f"llm_otel.{key}; choose another key")  # fmt: skip
    merged = {**_ATTRIBUTION.get(), **{k: str(v) for k, v in attributes.items() if v is not None}}
    token = _ATTRIBUTION.set(merged)
    try:
        yield merged
    finally:
        _ATTRIBUTION.reset(token)


@functools.cache
def reserved_keys() -> frozenset[str]:
    """Keys a user may not use: the first name after ``llm_otel.`` of every attribute llm-otel sets."""
    from . import semconv as sc

    prefix = sc.CONTEXT_PREFIX
    names = (v for v in vars(sc).values() if isinstance(v, str) and v.startswith(prefix))
    return frozenset(name[len(prefix) :].split(".", 1)[0] for name in names)


def current() -> dict[str, str]:
    """The attribution in effect here (do not mutate)."""
    return _ATTRIBUTION.get()
