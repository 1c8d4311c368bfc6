"""Retry-sleep hooks: time spent in an SDK's own retry sleeps, added to the call in progress.

Sleeps after a 429 are throttle (time lost to rate limits); others are retry wait. The call in progress is
found through a ContextVar, so threads and asyncio tasks each accumulate into their own call.
"""

from __future__ import annotations

import time
from typing import Any

from .. import semconv as sc
from .call import CURRENT

_perf = time.perf_counter


def retry_reason(status: int | None) -> str:
    """rate_limit for 429, connection when there was no response, server otherwise (5xx, 408, 409)."""
    if status is None:
        return sc.RETRY_CONNECTION
    return sc.RETRY_RATE_LIMIT if status == 429 else sc.RETRY_SERVER


def stainless_sleep_sync(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Wrapper for ``SyncAPIClient._sleep_for_retry`` (openai, anthropic, groq: keyword ``response=``)."""
    record = CURRENT.get()
    if record is None:
        return wrapped(*args, **kwargs)
    start = _perf()
    try:
        return wrapped(*args, **kwargs)
    finally:
        status = getattr(kwargs.get("response"), "status_code", None)
        record.add_retry_sleep(_perf() - start, retry_reason(status))


async def stainless_sleep_async(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Async twin of :func:`stainless_sleep_sync`."""
    record = CURRENT.get()
    if record is None:
        return await wrapped(*args, **kwargs)
    start = _perf()
    try:
        return await wrapped(*args, **kwargs)
    finally:
        status = getattr(kwargs.get("response"), "status_code", None)
        record.add_retry_sleep(_perf() - start, retry_reason(status))


def header_int(headers: Any, name: str) -> int | None:
    """An integer header value, or None when absent or not an integer."""
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(value)  # the usual form; "1e3" or "99.0" fall through to float
    except ValueError:
        pass
    try:
        return int(float(value))
    except (ValueError, OverflowError):
        return None
