"""The adapter contract for SDKs patched at their public methods (Mistral, Cohere, Ollama, LiteLLM, Google GenAI,
Bedrock). Stainless-generated SDKs have their own, one hook on the client (``_stainless``).

An adapter declares its ``surfaces`` (the SDK methods that are one LLM call each) and the SDK functions that
return the next retry sleep (``retry_sleeps``), and says how to read a request (``request``), a response
(``read_response``) and a stream chunk (``read_chunk``). This base generates the sync, async and
async-generator wrappers once, from what each patched method is. Every reader runs contained: a fault in
ours is reported once and never reaches the user's call or stream.

Two stream shapes exist: ``lazy_streams`` adapters return generators that send nothing until iterated (the
call starts at the first iteration); the others make the request at once and return a stream object, which
is proxied (``wrap_stream``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import wrapt

from .. import semconv as sc
from ..core.call import CURRENT, Call, use_span
from ..core.content import Content
from ..core.streams import AsyncStreamProxy, SyncStreamProxy, _gc_end, observed
from ..core.throttle import retry_reason
from ._base import REQUEST_PARAMS, LLMInstrumentor, new_record, request_attributes, run_async, run_sync


@dataclass(frozen=True)
class Surface:
    """One SDK method (``module``, ``Class.method`` or a function name) that is one LLM call."""

    module: str
    path: str
    operation: str = ""  # gen_ai.operation.name; "" when ``request`` decides per call
    stream: bool = False
    optional: bool = False  # absent in some SDK versions: not worth a log line


@dataclass
class Request:
    """What a call's request says: enough to start its record."""

    operation: str
    model: Any
    url: Any = None
    stream: bool = False
    attributes: dict[str, Any] | None = None
    provider: str | None = None  # when not the adapter's ``provider`` (e.g. Vertex AI through google-genai)
    kwargs: dict[str, Any] | None = None  # call the SDK with these instead (e.g. stream usage requested)
    detail: Any = None  # adapter-specific, handed to ``started``
    content: Content | None = None  # filled from ``read_content`` when content capture is on


class MethodInstrumentor(LLMInstrumentor):
    """Base of the method adapters; see the module docstring."""

    provider: ClassVar[str]  # gen_ai.provider.name
    surfaces: ClassVar[tuple[Surface, ...]]
    retry_sleeps: ClassVar[tuple[tuple[str, str], ...]] = ()  # (module, function) returning the next sleep
    request_params: ClassVar[tuple[tuple[str, str], ...]] = REQUEST_PARAMS
    lazy_streams: ClassVar[bool] = False

    # --- what an adapter provides ----------------------------------------------------------------------------
    def server_url(self, instance: Any, kwargs: dict[str, Any]) -> Any:
        """The base URL the client sends to (a string or an httpx URL), or None."""
        return None

    def request(self, surface: Surface, instance: Any, args: Any, kwargs: dict[str, Any]) -> Request | None:
        """Read the call's request; None passes it through unrecorded (not an LLM call)."""
        return Request(surface.operation, kwargs.get("model"), self.url_of(instance, kwargs), surface.stream,
                       request_attributes(kwargs, self.request_params))  # fmt: skip

    def url_of(self, instance: Any, kwargs: dict[str, Any]) -> Any:
        """``server_url``, or None when it fails (the call is still recorded, without its address)."""
        try:
            return self.server_url(instance, kwargs)
        except Exception:
            return None

    def read_content(self, surface: Surface, request: Request, args: Any, kwargs: dict[str, Any]) -> Content | None:
        """The request's messages, system instructions and tools (called only when content capture is on)."""
        return None

    def started(self, record: Call, request: Request) -> None:
        """Called once the record exists (e.g. to keep adapter state in ``record.extra``)."""

    def read_response(self, record: Call, result: Any) -> None:
        """Copy model, id, finish reasons, usage (and output when captured) from a complete response."""
        raise NotImplementedError

    def read_chunk(self, record: Call, chunk: Any) -> bool:
        """Read one stream chunk (call ``record.output_chunk()`` for each one that carries output). Return
        True to hand it to the app; False hides a chunk the app did not ask for (an injected usage chunk)."""
        raise NotImplementedError

    def chunk_reader(self, record: Call) -> Callable[[Call, Any], bool]:
        return self.read_chunk

    def wrap_stream(self, record: Call, result: Any, is_async: bool) -> Any:
        """The stream to hand the user (a proxy that reads each chunk), or None when ``result`` is no stream."""
        if not hasattr(result, "__anext__" if is_async else "__next__"):
            return None
        proxy = SelfClosingAsyncStream if is_async else SelfClosingStream
        return proxy(result, record, self.chunk_reader(record))

    def retry_status(self, args: Any, kwargs: dict[str, Any]) -> int | None:
        """The HTTP status being retried, from the arguments of a ``retry_sleeps`` function."""
        return None

    def extra_patches(self) -> None:
        """Further patches (request hops, attempts ...)."""

    # --- patching --------------------------------------------------------------------------------------------
    def patch(self) -> None:
        p = self._patcher
        for surface in self.surfaces:
            original = p.find(surface.module, surface.path, optional=surface.optional)
            if original is not None:
                p.wrap(surface.module, surface.path, self._wrapper(surface, getattr(original, "__func__", original)))
        for module, function in self.retry_sleeps:
            p.wrap(module, function, self._retry_sleep)
        self.extra_patches()

    def _wrapper(self, surface: Surface, original: Any) -> Callable[..., Any]:
        if inspect.isasyncgenfunction(original):
            return functools.partial(self._call_asyncgen, surface)
        if inspect.iscoroutinefunction(original):
            return functools.partial(self._call_async, surface)
        return functools.partial(self._call_sync, surface)

    # --- the generated wrappers ------------------------------------------------------------------------------
    def _call_sync(self, surface: Surface, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        request = self._read_request(surface, instance, args, kwargs)
        if request is None:
            return wrapped(*args, **kwargs)
        send = kwargs if request.kwargs is None else request.kwargs
        if request.stream and self.lazy_streams:
            return observed_iter(lambda: self._start(request), wrapped(*args, **send), self.read_chunk)
        record = self._start(request)
        if record is None:
            return wrapped(*args, **kwargs)
        result = run_sync(record, wrapped, args, send)
        if inspect.isawaitable(result):  # a sync function that returned a coroutine (litellm, acompletion=True)
            return self._end_later(record, result)
        return self._end(record, result, False)

    async def _call_async(self, surface: Surface, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        request = self._read_request(surface, instance, args, kwargs)
        if request is None:
            return await wrapped(*args, **kwargs)
        send = kwargs if request.kwargs is None else request.kwargs
        if request.stream and self.lazy_streams:  # an async generator comes back; nothing is sent yet
            return observed_aiter(lambda: self._start(request), await wrapped(*args, **send), self.read_chunk)
        record = self._start(request)
        if record is None:
            return await wrapped(*args, **kwargs)
        return self._end(record, await run_async(record, wrapped, args, send), True)

    def _call_asyncgen(self, surface: Surface, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        request = self._read_request(surface, instance, args, kwargs)
        if request is None:
            return wrapped(*args, **kwargs)
        send = kwargs if request.kwargs is None else request.kwargs
        return observed_aiter(lambda: self._start(request), wrapped(*args, **send), self.read_chunk)

    async def _end_later(self, record: Call, awaitable: Any) -> Any:
        return self._end(record, await run_async(record, _await, (awaitable,), {}), True)

    # --- contained steps -------------------------------------------------------------------------------------
    def _read_request(self, surface: Surface, instance: Any, args: Any, kwargs: Any) -> Request | None:
        try:
            request = self.request(surface, instance, args, kwargs)
        except Exception:
            self.rt.report_internal_error(f"{self.provider} request")
            return None
        if request is not None and self.rt.settings.capture_content:
            try:
                request.content = self.read_content(surface, request, args, kwargs)
            except Exception:
                self.rt.report_internal_error(f"{self.provider} request content")
        return request

    def _start(self, request: Request) -> Call | None:
        record = new_record(self.rt, self.provider, request.provider or self.provider, request.operation,
                            request.model, request.url, request.stream, request.attributes)  # fmt: skip
        if record is not None:
            record.content = request.content
            try:
                self.started(record, request)
            except Exception:
                self.rt.report_internal_error(f"{self.provider} call start")
        return record

    def _end(self, record: Call, result: Any, is_async: bool) -> Any:
        try:
            if record.streaming and not self.lazy_streams:
                stream = self.wrap_stream(record, result, is_async)
                if stream is not None:
                    return stream
            self.read_response(record, result)
        except Exception:
            self.rt.report_internal_error(f"{self.provider} response")
        record.finish()
        return result

    def _retry_sleep(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        seconds = wrapped(*args, **kwargs)
        record = CURRENT.get()
        if record is not None:
            try:
                record.add_retry_sleep(float(seconds), retry_reason(self.retry_status(args, kwargs)))
            except Exception:
                record.rt.report_internal_error(f"{self.provider} retry sleep")
        return seconds


async def _await(awaitable: Any) -> Any:
    return await awaitable


def status_of(response: Any) -> int | None:
    """The integer ``status_code`` of an HTTP response (or an exception's ``response``), else None."""
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


# --- lazy streams --------------------------------------------------------------------------------------------------
def observed_iter(start: Callable[[], Call | None], inner: Iterator[Any], observe: Callable[..., Any]) -> Any:
    """Iterate an SDK's lazy stream generator (nothing is sent until the first ``next``): the call starts at
    the first iteration and ends exactly once, on exhaustion, error or ``close()`` / ``break``."""
    record = start()
    if record is None:
        yield from inner
        return
    end = sc.STREAM_COMPLETED
    try:
        while True:
            token = CURRENT.set(record)
            try:
                with use_span(record):
                    item = next(inner)
            except StopIteration:
                break
            finally:
                CURRENT.reset(token)
            observed(observe, record, item)
            yield item
    except GeneratorExit:
        end = sc.STREAM_CLIENT_CLOSED
        close = getattr(inner, "close", None)
        if close is not None:
            close()
        raise
    except BaseException as exc:
        record.finish(exc, stream_end=sc.STREAM_ERROR)
        raise
    finally:
        record.finish(stream_end=end)


async def observed_aiter(
    start: Callable[[], Call | None], inner: AsyncIterator[Any], observe: Callable[..., Any]
) -> Any:
    """Async twin of :func:`observed_iter`; cancellation ends the call as ``client_closed``."""
    record = start()
    if record is None:
        async for item in inner:
            yield item
        return
    end = sc.STREAM_COMPLETED
    try:
        while True:
            token = CURRENT.set(record)
            try:
                with use_span(record):
                    item = await inner.__anext__()
            except StopAsyncIteration:
                break
            finally:
                CURRENT.reset(token)
            observed(observe, record, item)
            yield item
    except (GeneratorExit, asyncio.CancelledError):
        end = sc.STREAM_CLIENT_CLOSED
        close = getattr(inner, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()
        raise
    except BaseException as exc:
        record.finish(exc, stream_end=sc.STREAM_ERROR)
        raise
    finally:
        record.finish(stream_end=end)


# --- stream objects ------------------------------------------------------------------------------------------------
class SelfClosingStream(SyncStreamProxy):
    """Proxy for a stream object whose own generator closes its HTTP response when it ends (Mistral's
    ``EventStream``, LiteLLM's stream iterators): the generic proxy's response-close hook, meant for helpers
    that close the response behind the stream's back, would end such a stream as ``client_closed`` just
    before its last item, so it is not installed. ``break``, ``close()``, ``with`` and GC still end the call."""

    def __init__(self, wrapped: Any, record: Call, observe: Any) -> None:
        wrapt.ObjectProxy.__init__(self, wrapped)
        self._self_record = record
        self._self_observe = observe
        weakref.finalize(self, _gc_end, record).atexit = False


class SelfClosingAsyncStream(AsyncStreamProxy):
    """Async twin of :class:`SelfClosingStream`."""

    def __init__(self, wrapped: Any, record: Call, observe: Any) -> None:
        wrapt.ObjectProxy.__init__(self, wrapped)
        self._self_record = record
        self._self_observe = observe
        weakref.finalize(self, _gc_end, record).atexit = False
