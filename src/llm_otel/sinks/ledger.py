"""The local usage ledger: one SQLite row per call, written by a background thread off the hot path.

It is the embedded default store (no server needed) behind ``llm-otel report``. Rows are queued in
memory and written in batches by the background writer (``writer.py``); ``flush()`` waits for the queue to
drain, and the writer flushes at interpreter exit.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

from ..core.result import CallResult
from .writer import Writer

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
ROWS_PER_STATEMENT = 50  # x 29 columns stays far below SQLite's limit of bound variables
_ONE_ROW = f"({', '.join('?' * len(COLUMNS))})"
_INSERT_ONE = f"INSERT INTO calls ({', '.join(COLUMNS)}) VALUES {_ONE_ROW}"
_INSERT_MANY = f"INSERT INTO calls ({', '.join(COLUMNS)}) VALUES {', '.join([_ONE_ROW] * ROWS_PER_STATEMENT)}"


# sqlite3 binds None through its adaptation protocol, which raises and clears two AttributeErrors per value
# (about 3,500 CPU instructions each; the nine Nones of a chat row were half its insert). A float NaN binds as
# SQL NULL directly: SQLite stores no NaN (sqlite3_bind_double of NaN binds NULL), so rows read back as before.
_NULL = float("nan")


def _insert(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Two fixed statement shapes: a multi-row INSERT for full chunks of ``ROWS_PER_STATEMENT`` rows (few GIL
    hand-offs per batch) and ``executemany`` of the one-row INSERT for the rest. sqlite3 caches every distinct
    statement per connection, so statements built per batch size would each stay in memory. None is bound
    as ``_NULL``."""
    full = len(rows) - len(rows) % ROWS_PER_STATEMENT
    for start in range(0, full, ROWS_PER_STATEMENT):
        values = [_NULL if v is None else v for row in rows[start : start + ROWS_PER_STATEMENT] for v in row]
        conn.execute(_INSERT_MANY, values)
    if full < len(rows):
        conn.executemany(_INSERT_ONE, [[_NULL if v is None else v for v in row] for row in rows[full:]])


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


def _queued_row(rec: CallResult, service: str | None) -> tuple[Any, ...]:
    """The row as queued on the caller's thread: attribution and trace id are formatted by the writer."""
    u = rec.usage
    span = rec.span
    ctx = span.get_span_context() if span is not None else None
    return (
        rec.timestamp, rec.provider, rec.operation, rec.request_model, rec.response_model,
        u.input_tokens if u else None, u.output_tokens if u else None,
        u.cache_read_tokens if u else None, u.cache_write_tokens if u else None,
        u.reasoning_tokens if u else None,
        int(rec.usage_complete), rec.cost_usd, rec.duration_s, rec.time_to_first_chunk_s,
        rec.tokens_per_second, rec.burst_tokens_per_second,
        rec.throttle_wait_s, rec.retry_wait_s, rec.retries, rec.error_type, rec.stream_end, service,
        rec.attributes, ctx.trace_id if ctx is not None and ctx.is_valid else None,
    )  # fmt: skip


_NO_CONTEXT_COLUMNS = (None,) * len(KNOWN_CONTEXT_COLUMNS)


def _final_row(queued: tuple[Any, ...]) -> tuple[Any, ...]:
    attrs, trace_id = queued[-2], queued[-1]
    trace = f"{trace_id:032x}" if trace_id is not None else None
    if not attrs:
        return (*queued[:-2], *_NO_CONTEXT_COLUMNS, "{}", trace)
    known = tuple(attrs.get(k) for k in KNOWN_CONTEXT_COLUMNS)
    return (*queued[:-2], *known, json.dumps(attrs, sort_keys=True), trace)


MAX_BACKLOG = 100_000  # rows waiting for the writer; past this, new rows are dropped (counted, warned once)
RETRY_OPEN_S = 30.0  # after a write error, rows are dropped (counted) until this long has passed
WRITER_CACHE_KIB = 256


class Ledger:
    """A sink that appends every call to the SQLite ledger, through the background writer.

    ``on_usage`` builds one row tuple and queues it; the writer thread formats and inserts queued rows in
    one transaction per cycle. The caller waits only when the writer is far behind (``Lane.keep_up``).
    """

    name = "the usage ledger"
    interval_s = 0.25
    batch_max = 5_000
    max_backlog = MAX_BACKLOG

    def __init__(self, path: str | Path | None, service: str | None = None, writer: Writer | None = None) -> None:
        self._path = Path(path) if path is not None else None  # None: the default, resolved on first use
        self._service = service
        self._own_writer = writer is None
        self._writer = writer or Writer("llm-otel-ledger")
        self._lane = self._writer.lane(self)
        self._conn: sqlite3.Connection | None = None
        self._failed_at: float | None = None
        self.lost = 0  # rows that could not be written

    @property
    def path(self) -> Path:
        """The ledger file (the default one under the user data dir unless another was given)."""
        if self._path is None:
            self._path = default_path()  # platformdirs is imported here, not at instrument()
        return self._path

    @property
    def dropped(self) -> int:
        """Rows dropped because the writer was ``MAX_BACKLOG`` rows behind, plus rows that failed to write."""
        return self._lane.dropped + self.lost

    def on_usage(self, record: CallResult) -> None:
        self._lane.put(_queued_row(record, self._service))
        self._lane.keep_up()

    def write(self, batch: list[tuple[Any, ...]]) -> None:
        """Insert queued rows (writer thread). On an error, warn once and drop rows for ``RETRY_OPEN_S``."""
        import time

        if self._failed_at is not None and time.monotonic() - self._failed_at < RETRY_OPEN_S:
            self.lost += len(batch)
            return
        try:
            if self._conn is None:
                self._conn = connect(self.path)
                # Appends touch a few pages at the end of the table and its time index: a small page cache keeps
                # the writer's memory flat as the ledger grows (SQLite's default grows to 2 MiB).
                self._conn.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
            with self._conn:
                _insert(self._conn, [_final_row(row) for row in batch])
            self._failed_at = None
        except (sqlite3.Error, OSError) as exc:
            self.lost += len(batch)
            if self._failed_at is None:
                log.warning(
                    "llm-otel: cannot write the usage ledger %s (%s); rows are dropped until it is writable "
                    "(retried every %d s). Set LLM_OTEL_LEDGER to a writable path or to 'off'.",
                    self.path, exc, RETRY_OPEN_S,
                )  # fmt: skip
            self._failed_at = time.monotonic()
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def tick(self, force: bool) -> None:
        pass

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued row is written. True on success."""
        return self._writer.flush(timeout)

    def close(self) -> None:
        """Write what is queued. A ledger with a writer of its own also stops that writer."""
        if self._own_writer:
            self._writer.close()
        else:
            self._writer.flush()

    def closed(self) -> None:
        """The writer stopped after its final write: release the connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


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
