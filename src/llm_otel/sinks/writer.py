"""The background writer: one thread that does the disk (and later network) work of every sink.

A sink registers a ``WriterClient`` and gets a ``Lane``: ``lane.put(item)`` is all the caller's thread does
(a deque append, no lock, no wake-up). The thread wakes every ``interval_s`` of its most impatient client,
hands each client the items waiting in its lane (at most ``batch_max`` per cycle, everything on ``flush()``),
and lets it do periodic work (``tick``). Lanes are bounded: past ``max_backlog`` items a lane drops new
ones, counts them and warns once. A lane ``CATCH_UP_AT`` items behind makes its caller wait for the writer
(``Lane.keep_up``). At interpreter exit every writer flushes and stops; after ``fork()`` the
child starts with empty lanes (the parent writes what was queued) and its own thread on first use.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import threading
import weakref
from typing import Any, Protocol

from ..core.call import end_orphans

log = logging.getLogger("llm_otel")

# A CPU-bound app thread that drops the GIL briefly and often (the openai SDK reads os.urandom on every call)
# keeps it from this thread for seconds at a time: CPython hands the GIL to a waiting thread only after 5 ms
# without a switch, and every brief drop counts as one. The queue then grows without bound, and so does the
# process's memory (rows queued for seconds fragment the allocator's arenas). So once a lane is CATCH_UP_AT
# items behind, the caller that queued the last one waits while the writer writes them (about 10 µs per ledger
# row: some 10-25 ms per 1,000 calls). An app whose calls wait on the network never gets here.
CATCH_UP_AT = 1_000
CATCH_UP_TIMEOUT_S = 2.0  # past this the caller goes on, and no caller waits again until the lane has drained


class WriterClient(Protocol):
    """What a sink gives the writer."""

    name: str
    interval_s: float  # how long items may wait before they are written
    batch_max: int  # items handed to one ``write`` call outside flushes
    max_backlog: int  # items a lane holds before it drops new ones

    def write(self, batch: list[Any]) -> None:
        """Write ``batch`` (on the writer thread). Must not raise; the writer logs it if it does."""

    def tick(self, force: bool) -> None:
        """Periodic work after each cycle (``force`` on flush and close)."""

    def closed(self) -> None:
        """The writer has written everything and stopped: release resources."""


class Lane:
    """A client's queue; ``put`` is the only call made on the caller's thread."""

    __slots__ = ("client", "dropped", "items", "last_write", "limit", "stalled", "writer")

    def __init__(self, writer: Writer, client: WriterClient) -> None:
        self.writer = writer
        self.client = client
        self.items: collections.deque[Any] = collections.deque()
        self.limit = client.max_backlog
        self.dropped = 0
        self.last_write = 0.0
        self.stalled = False

    def put(self, item: Any) -> bool:
        """Queue ``item`` for the writer thread. False (and counted) when the lane is full."""
        if len(self.items) >= self.limit:
            self.dropped += 1
            if self.dropped == 1:
                log.warning("llm-otel: %s is %d items behind; dropping new ones", self.client.name, self.limit)
            return False
        self.items.append(item)
        if self.writer._thread is None:
            self.writer._start()
        return True

    def keep_up(self) -> None:
        """Sinks call it after ``put``, holding no lock: once the lane is ``CATCH_UP_AT`` items behind, wait
        until the writer has written what is queued. Not on a writer thread, nor while a wait that timed out
        has left the lane behind."""
        if len(self.items) < CATCH_UP_AT:
            return
        writer = self.writer
        if self.stalled or writer._thread is None or writer._closed or _on_a_writer_thread():
            return  # on a writer thread (its own, or another writer's): the two could wait on each other
        if not writer.flush(CATCH_UP_TIMEOUT_S):
            self.stalled = True
            log.warning("llm-otel: %s is %d items behind and did not catch up in %.0f s; calls go on without "
                        "waiting for it", self.client.name, len(self.items), CATCH_UP_TIMEOUT_S)  # fmt: skip


class Writer:
    """One background thread serving every registered client; see the module docstring."""

    def __init__(self, name: str = "llm-otel-writer") -> None:
        self.name = name
        self._lanes: list[Lane] = []
        self._interval = 0.25
        self._reset_threading()
        self._closed = False
        _WRITERS.add(self)

    def _reset_threading(self) -> None:
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._flushes: list[threading.Event] = []
        self._stop = False
        self._final = False  # the thread has taken its last round: later flushes are not waited for

    def lane(self, client: WriterClient) -> Lane:
        """Register ``client``; its sink puts items into the returned lane."""
        lane = Lane(self, client)
        with self._lock:
            self._lanes = [*self._lanes, lane]
            self._interval = min(c.client.interval_s for c in self._lanes)
        return lane

    def start(self) -> None:
        """Start the thread now (it also starts on the first ``put``): for clients with periodic work."""
        if self._thread is None:
            self._start()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                _WRITER_THREADS.add(self._thread)
                self._thread.start()

    # --- the thread -------------------------------------------------------------------------------------------
    def _run(self) -> None:
        import time

        while True:
            self._wake.wait(self._interval)
            with self._lock:
                self._wake.clear()
                flushes, self._flushes = self._flushes, []
                stop = self._final = self._stop
            force = bool(flushes) or stop
            end_orphans()  # streams dropped by the app (a safe point: no lock held here)
            now = time.monotonic()
            for lane in self._lanes:
                self._serve(lane, now, force)
            for event in flushes:
                event.set()
            if stop:
                for lane in self._lanes:
                    self._guard(lane.client.closed, lane.client)
                return

    def _serve(self, lane: Lane, now: float, force: bool) -> None:
        client, items = lane.client, lane.items
        if items and (force or now - lane.last_write >= client.interval_s):
            lane.last_write = now
            while items:
                take = len(items) if force else min(len(items), client.batch_max)
                batch = [items.popleft() for _ in range(take)]
                self._guard(client.write, client, batch)
                if not force:
                    break
            if lane.stalled and len(items) < CATCH_UP_AT:
                lane.stalled = False
        self._guard(client.tick, client, force)

    @staticmethod
    def _guard(fn: Any, client: WriterClient, *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            log.warning("llm-otel: internal error in %s (background writer)", client.name, exc_info=True)

    # --- control ----------------------------------------------------------------------------------------------
    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is written. True on success."""
        if self._thread is None:
            return not any(lane.items for lane in self._lanes)
        done = threading.Event()
        with self._lock:
            if self._final:  # stopped, or stopping after its last round: nothing more will be written
                return not any(lane.items for lane in self._lanes)
            self._flushes.append(done)
        self._wake.set()
        return done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, stop the thread and close every client (idempotent; runs at exit)."""
        if self._closed:
            return
        self._closed = True
        if self._thread is None:
            for lane in self._lanes:
                if lane.items:
                    self._guard(lane.client.write, lane.client, list(lane.items))
                    lane.items.clear()
                self._guard(lane.client.closed, lane.client)
            return
        with self._lock:
            self._stop = True
        self._wake.set()
        self._thread.join(timeout)

    def _after_fork(self) -> None:
        self._reset_threading()
        for lane in self._lanes:
            lane.items = collections.deque()


_WRITERS: weakref.WeakSet[Writer] = weakref.WeakSet()
_WRITER_THREADS: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


def _on_a_writer_thread() -> bool:
    return threading.current_thread() in _WRITER_THREADS


def _close_all() -> None:
    for writer in list(_WRITERS):
        writer.close()


def _after_fork_all() -> None:
    for writer in list(_WRITERS):
        writer._after_fork()


atexit.register(_close_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_all)
