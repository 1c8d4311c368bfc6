"""The local usage ledger: one SQLite row per call, written by a background thread off the hot path.

It is the embedded default store (no server needed) behind ``llm-otel report``. Rows are queued in
memory and written in batches; ``flush()`` waits for the queue to drain and runs at interpreter exit.
"""

from __future__ import annotations

import atexit
import collections
import json
import logging
import os
import sqlite3
import threading
import weakref
from pathlib import Path
from typing import Any

from ..core.result import UsageRecord

log = logging.getLogger(__name__)

KNOWN_CONTEXT_COLUMNS = ("job", "task", "agent", "tenant")

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    provider TEXT NOT NULL,
    operation TEXT NOT NULL,
    request_model TEXT,
    response_model TEXT,
    input_tokens INTEGER,
    output_tokens INTEGER,
    cache_read_tokens INTEGER,
    cache_write_tokens INTEGER,
    reasoning_tokens INTEGER,
    usage_complete INTEGER NOT NULL,
    cost_usd REAL,
    duration_s REAL NOT NULL,
    ttfc_s REAL,
    tokens_per_second REAL,
    burst_tokens_per_second REAL,
    throttle_wait_s REAL NOT NULL,
    retry_wait_s REAL NOT NULL,
    retries INTEGER NOT NULL,
    error_type TEXT,
    stream_end TEXT,
    service TEXT,
    job TEXT,
    task TEXT,
    agent TEXT,
    tenant TEXT,
    attributes TEXT NOT NULL,
    trace_id TEXT
);
CREATE INDEX IF NOT EXISTS calls_ts ON calls (ts);
"""
COLUMNS = [
    "ts",
    "provider",
    "operation",
    "request_model",
    "response_model",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "usage_complete",
    "cost_usd",
    "duration_s",
    "ttfc_s",
    "tokens_per_second",
    "burst_tokens_per_second",
    "throttle_wait_s",
    "retry_wait_s",
    "retries",
    "error_type",
    "stream_end",
    "service",
    "job",
    "task",
    "agent",
    "tenant",
    "attributes",
    "trace_id",
]
_ADDED_COLUMNS = {"tokens_per_second": "REAL", "burst_tokens_per_second": "REAL"}
ROWS_PER_STATEMENT = 250  # x 29 columns stays far below SQLite's limit of bound variables


def _insert(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Multi-row INSERTs: ``executemany`` re-takes the GIL for every row, and a writer thread competing with a
    busy caller waits up to a switch interval (5 ms) each time, so it fell behind; one statement per 250 rows
    takes the GIL a handful of times per batch."""
    one = f"({', '.join('?' * len(COLUMNS))})"
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[start : start + ROWS_PER_STATEMENT]
        sql = f"INSERT INTO calls ({', '.join(COLUMNS)}) VALUES {', '.join([one] * len(chunk))}"
        conn.execute(sql, [value for row in chunk for value in row])


def default_path() -> Path:
    """``<user data dir>/llm-otel/ledger.sqlite3`` (XDG on Linux, the platform's equivalent elsewhere)."""
    from platformdirs import user_data_path

    return user_data_path("llm-otel", appauthor=False) / "ledger.sqlite3"


def connect(path: str | Path) -> sqlite3.Connection:
    """Open (creating if needed) a ledger database in WAL mode."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=10, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA)
    # Ledgers written by an older llm-otel lack newer columns: add them (existing rows get NULL).
    present = {row[1] for row in conn.execute("PRAGMA table_info(calls)")}
    for name, kind in _ADDED_COLUMNS.items():
        if name not in present:
            conn.execute(f"ALTER TABLE calls ADD COLUMN {name} {kind}")
    return conn


def _row(rec: UsageRecord, service: str | None) -> tuple[Any, ...]:
    u = rec.usage
    attrs = rec.attributes
    return (
        rec.timestamp, rec.provider, rec.operation, rec.request_model, rec.response_model,
        u.input_tokens if u else None, u.output_tokens if u else None,
        u.cache_read_tokens if u else None, u.cache_write_tokens if u else None,
        u.reasoning_tokens if u else None,
        int(rec.usage_complete), rec.cost_usd, rec.duration_s, rec.time_to_first_chunk_s,
        rec.tokens_per_second, rec.burst_tokens_per_second,
        rec.throttle_wait_s, rec.retry_wait_s, rec.retries, rec.error_type, rec.stream_end, service,
        *(attrs.get(k) for k in KNOWN_CONTEXT_COLUMNS),
        json.dumps(attrs, sort_keys=True), rec.trace_id,
    )  # fmt: skip


MAX_BACKLOG = 200_000  # rows waiting for the writer; past this, new rows are dropped (counted, warned once)
FLUSH_INTERVAL_S = 0.25
_LEDGERS: weakref.WeakSet[Ledger] = weakref.WeakSet()


class Ledger:
    """A usage processor that appends every record to the SQLite ledger.

    ``on_usage`` only appends to an in-memory deque (no lock, no thread wake-up); a writer thread drains it
    every ``FLUSH_INTERVAL_S`` in one transaction, so the caller never waits on disk or on the writer.
    """

    def __init__(self, path: str | Path, service: str | None = None) -> None:
        self.path = Path(path)
        self._service = service
        self._pending: collections.deque[UsageRecord | threading.Event | None] = collections.deque()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._failed = False
        self._closed = False
        self.dropped = 0
        _LEDGERS.add(self)

    def on_usage(self, record: UsageRecord) -> None:
        if self._thread is None:
            self._start()
        if len(self._pending) >= MAX_BACKLOG:
            self.dropped += 1
            if self.dropped == 1:
                log.warning("llm-otel: the ledger writer is %d rows behind; dropping rows (%s)", MAX_BACKLOG, self.path)
            return
        self._pending.append(record)

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="llm-otel-ledger", daemon=True)
                self._thread.start()

    def _after_fork(self) -> None:
        self._pending = collections.deque()
        self._wake = threading.Event()
        self._thread = None
        self._start_lock = threading.Lock()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        rows: list[tuple[Any, ...]] = []
        pending = self._pending
        while True:
            self._wake.wait(FLUSH_INTERVAL_S)
            self._wake.clear()
            waiters: list[threading.Event] = []
            stop = False
            while pending:
                item = pending.popleft()
                if item is None:
                    stop = True
                elif isinstance(item, threading.Event):
                    waiters.append(item)
                else:
                    rows.append(_row(item, self._service))
            if rows and not self._failed:
                try:
                    if conn is None:
                        conn = connect(self.path)
                    with conn:
                        _insert(conn, rows)
                    rows.clear()
                except (sqlite3.Error, OSError) as exc:
                    # Keep the rows in memory and say so once; telemetry and the app carry on.
                    self._failed = True
                    log.warning(
                        "llm-otel: cannot write the usage ledger %s (%s); keeping rows in memory only. "
                        "Set LLM_OTEL_LEDGER to a writable path or to 'off'.",
                        self.path,
                        exc,
                    )
            for event in waiters:
                event.set()
            if stop:
                if conn is not None:
                    conn.close()
                return

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued record is written. True on success."""
        if self._thread is None:
            return True
        done = threading.Event()
        self._pending.append(done)
        self._wake.set()
        return done.wait(timeout)

    def close(self) -> None:
        """Flush and stop the writer thread (idempotent; runs at exit)."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._pending.append(None)
            self._wake.set()
            self._thread.join(timeout=10)


def _close_all() -> None:
    for book in list(_LEDGERS):
        book.close()


def _after_fork_all() -> None:
    for book in list(_LEDGERS):
        book._after_fork()


atexit.register(_close_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_all)


def read_rows(path: str | Path, where: str = "", params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Ledger rows as dicts (for reports and tests)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no ledger at {path}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        conn.row_factory = sqlite3.Row
        cur = conn.execute(f"SELECT * FROM calls {where} ORDER BY ts", params)
        return [dict(r) for r in cur.fetchall()]
    finally:
        conn.close()
