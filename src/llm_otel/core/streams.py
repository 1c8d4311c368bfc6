"""Stream proxies: the user sees the SDK's stream (same type checks, same chunks), we see every chunk.

The call's record ends exactly once, whichever comes first:
- the stream is read to the end (``completed``) or raises (``error``);
- the consumer stops early: ``break`` out of a ``for`` loop, ``close()``, leaving a ``with`` block, or
  a helper closing the HTTP response directly (``client_closed``);
- the stream object is garbage collected unread or half read (``gc``).
"""

from __future__ import annotations

import contextlib
import sys
import weakref
from collections.abc import Callable
from typing import Any

import wrapt

from .. import semconv as sc
from .call import Call, end_later

#: observe(record, chunk) -> True to pass the chunk on, False to swallow it (a chunk we caused).
Observer = Callable[[Call, Any], bool]


def observed(observe: Observer, record: Call, item: Any) -> bool:
    """Run a chunk observer; a fault in it is ours: logged once, and the chunk goes to the app unchanged."""
    try:
        return observe(record, item)
    except Exception:
        record.rt.report_internal_error("stream chunk observer")
        return True


def _gc_end(record: Call) -> None:
    """Finalizer of a stream the app dropped: its call ends at the next safe point (see ``end_later``)."""
    if not sys.is_finalizing() and not record.ended:
        end_later(record, sc.STREAM_GC)


#: Live ``watch`` references, by id (a weak reference hashes as its referent, which may not be hashable).
#: Held here, not by the stream, so that they fire even when the stream dies in a reference cycle: the
#: collector calls back only weak references that are themselves still reachable.
_WATCHES: dict[int, weakref.KeyedRef] = {}


def _dropped(ref: weakref.KeyedRef) -> None:
    _WATCHES.pop(id(ref), None)
    _gc_end(ref.key)


def watch(stream: Any, record: Call) -> None:
    """End ``record`` as ``gc`` if ``stream`` is collected before the call ended: ``weakref.finalize`` for
    less than half its cost (this runs once per streamed call)."""
    ref = weakref.KeyedRef(stream, _dropped, record)
    _WATCHES[id(ref)] = ref


def _generator_running(stream: Any) -> bool:
    it = getattr(stream, "_iterator", None)
    return bool(getattr(it, "gi_running", False) or getattr(it, "ag_running", False))


def hook_response_close(stream: Any, record: Call, method: str) -> None:
    """End the record when the HTTP response under ``stream`` is closed by someone other than the stream's
    own generator (the SDK stream helpers close the response directly, bypassing the stream object)."""
    response = getattr(stream, "response", None)
    original = getattr(response, method, None) if response is not None else None
    if original is None:
        return

    def close(*args: Any, **kwargs: Any) -> Any:
        # Ignore closes from the stream's own generator (it reports its outcome itself) and repeats.
        if not record.ended and not getattr(response, "is_closed", False) and not _generator_running(stream):
            record.finish(stream_end=sc.STREAM_CLIENT_CLOSED)
        return original(*args, **kwargs)

    with contextlib.suppress(AttributeError, TypeError):  # a response type that refuses instance attributes
        setattr(response, method, close)


def _reyield(self: Any) -> Any:  # the shape ``reyields`` looks for (the SDK's own code, not ``yield from``)
    for item in self._iterator:  # noqa: UP028
        yield item


def reyields(iter_method: Any) -> bool:
    """True when a stream class's ``__iter__`` only re-yields ``self._iterator`` (openai's ``Stream``): a proxy
    given that iterator as ``chunks`` reads it directly, one generator layer less on every chunk."""
    code, ref = getattr(iter_method, "__code__", None), _reyield.__code__
    return code is not None and (code.co_code, code.co_names, code.co_consts) == (ref.co_code, ref.co_names,
                                                                                  ref.co_consts)  # fmt: skip


class SyncStreamProxy(wrapt.ObjectProxy):  # type: ignore[misc]
    """Wraps a synchronous SDK stream; see the module docstring. ``chunks``: the iterator the stream's own
    ``__iter__`` would only re-yield (see ``reyields``), read directly."""

    _self_chunks: Any = None

    def __init__(self, wrapped: Any, record: Call, observe: Observer, chunks: Any = None) -> None:
        super().__init__(wrapped)
        self._self_record = record
        self._self_observe = observe
        if chunks is not None:
            self._self_chunks = chunks
        watch(self, record)
        hook_response_close(wrapped, record, "close")

    def __iter__(self) -> Any:
        record, observe = self._self_record, self._self_observe
        chunks = self._self_chunks
        try:
            for item in self.__wrapped__ if chunks is None else chunks:
                try:  # ``observed``, inlined: this loop runs once per chunk
                    keep = observe(record, item)
                except Exception:
                    record.rt.report_internal_error("stream chunk observer")
                    keep = True
                if keep:
                    yield item
        except GeneratorExit:
            record.finish(stream_end=sc.STREAM_CLIENT_CLOSED)
            raise
        except BaseException as exc:
            record.finish(exc, stream_end=sc.STREAM_ERROR)
            raise
        record.finish(stream_end=sc.STREAM_COMPLETED)

    def __next__(self) -> Any:
        record, observe = self._self_record, self._self_observe
        while True:
            try:
                item = self.__wrapped__.__next__()
            except StopIteration:
                record.finish(stream_end=sc.STREAM_COMPLETED)
                raise
            except BaseException as exc:
                record.finish(exc, stream_end=sc.STREAM_ERROR)
                raise
            if observed(observe, record, item):
                return item

    def __enter__(self) -> SyncStreamProxy:
        self.__wrapped__.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(*exc_info)
        finally:
            self._self_record.finish(stream_end=sc.STREAM_CLIENT_CLOSED)

    def close(self) -> Any:
        try:
            return self.__wrapped__.close()
        finally:
            self._self_record.finish(stream_end=sc.STREAM_CLIENT_CLOSED)


def _cancelled(exc: BaseException) -> bool:
    """GeneratorExit or asyncio's CancelledError (checked by name: importing llm-otel doesn't import asyncio)."""
    cls = type(exc)
    return isinstance(exc, GeneratorExit) or (cls.__name__ == "CancelledError" and cls.__module__.startswith("asyncio"))


async def _next_chunk(proxy: AsyncStreamProxy, iterator: Any) -> Any:
    """The next chunk the app sees from ``iterator``, observed; ends the record on the stream's end."""
    record, observe = proxy._self_record, proxy._self_observe
    while True:
        try:
            item = await iterator.__anext__()
        except StopAsyncIteration:
            record.finish(stream_end=sc.STREAM_COMPLETED)
            raise
        except BaseException as exc:
            if _cancelled(exc):
                record.finish(stream_end=sc.STREAM_CLIENT_CLOSED)
            else:
                record.finish(exc, stream_end=sc.STREAM_ERROR)
            raise
        if observed(observe, record, item):
            return item


class _AsyncChunks:
    """What ``async for`` iterates over an ``AsyncStreamProxy``: a plain iterator object, not an async
    generator. An async generator of ours, abandoned by ``break``, is closed by asyncio in a task of its
    own, racing the tasks that close the SDK's and the HTTP client's generators under it: asyncio then
    prints "aclose(): asynchronous generator is already running", which the uninstrumented SDK never
    does. Dropped before the end (``break``), it ends the call as ``client_closed``."""

    __slots__ = ("_iterator", "_proxy")

    def __init__(self, proxy: AsyncStreamProxy) -> None:
        self._proxy = proxy
        wrapped = proxy.__wrapped__
        # The SDK stream's own __anext__ where it has one (no generator layer of its own is left open).
        self._iterator = wrapped if hasattr(type(wrapped), "__anext__") else wrapped.__aiter__()

    def __aiter__(self) -> _AsyncChunks:
        return self

    async def __anext__(self) -> Any:
        return await _next_chunk(self._proxy, self._iterator)

    def __del__(self) -> None:
        record = self._proxy._self_record
        if not record.ended and not sys.is_finalizing():
            end_later(record, sc.STREAM_CLIENT_CLOSED)  # a finalizer: see ``end_later``


class AsyncStreamProxy(wrapt.ObjectProxy):  # type: ignore[misc]
    """Wraps an asynchronous SDK stream; see the module docstring."""

    def __init__(self, wrapped: Any, record: Call, observe: Observer) -> None:
        super().__init__(wrapped)
        self._self_record = record
        self._self_observe = observe
        watch(self, record)
        hook_response_close(wrapped, record, "aclose")

    def __aiter__(self) -> Any:
        return _AsyncChunks(self)

    async def __anext__(self) -> Any:
        return await _next_chunk(self, self.__wrapped__)

    async def __aenter__(self) -> AsyncStreamProxy:
        await self.__wrapped__.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(*exc_info)
        finally:
            self._self_record.finish(stream_end=sc.STREAM_CLIENT_CLOSED)

    async def close(self) -> Any:
        try:
            return await self.__wrapped__.close()
        finally:
            self._self_record.finish(stream_end=sc.STREAM_CLIENT_CLOSED)

    async def aclose(self) -> Any:
        try:
            closer = getattr(self.__wrapped__, "aclose", None) or self.__wrapped__.close
            return await closer()
        finally:
            self._self_record.finish(stream_end=sc.STREAM_CLIENT_CLOSED)
