"""The ledger, read-only, as hourly cells that grow as the ledger does.

The first ``refresh()`` reads every row once; later ones read only rows with a higher id (rows are
appended). Ranges that start or end inside an hour read that part of the hour's rows again, through the
ledger's time index, so every figure is exact for any range. Decision and figures: docs/decisions.md.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..sinks.ledger import COLUMNS
from .cells import R_ATTRS, R_ID, R_MODEL, R_OPERATION, R_PROVIDER, R_SERVICE, R_TS, ROW_COLUMNS, Cell, Dims

HOUR = 3600
DAY = 86400
ROW_SQL = f"SELECT {', '.join(ROW_COLUMNS)} FROM calls"
CALL_SQL = (
    "SELECT id, ts, provider, operation, COALESCE(response_model, request_model, '') AS model, service, attributes, "
    "input_tokens, output_tokens, cache_read_tokens, cost_usd, duration_s, ttfc_s, throttle_wait_s, retry_wait_s, "
    "retries, error_type, stream_end, trace_id FROM calls"
)
_FETCH = 20_000


class LedgerUnavailable(Exception):
    """The ledger cannot be read (missing, not a ledger, corrupt or locked); the message is one line."""


class LedgerSource:
    """Hourly cells of one ledger file, keyed by hour start and dimensions id."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.hours: dict[int, dict[int, Cell]] = {}
        self._days: dict[int, dict[int, Cell]] = {}  # whole UTC days, merged from their hours on first use
        self.dims: list[Dims] = []
        self._dims_ids: dict[tuple[str, str, str, str, str], int] = {}
        self.last_id = 0
        self.rows = 0
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self._lock = threading.Lock()

    # --- reading ---------------------------------------------------------------------------------------------
    def connect(self) -> sqlite3.Connection:
        """A read-only connection; ``LedgerUnavailable`` says why there is none."""
        if not self.path.exists():
            raise LedgerUnavailable(f"no ledger at {self.path} (run something instrumented first, or pass --ledger)")
        try:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=2.0, check_same_thread=False)
            present = {r[1] for r in conn.execute("PRAGMA table_info(calls)")}
            _ensure_ln(conn)
        except sqlite3.DatabaseError as exc:
            raise LedgerUnavailable(f"cannot read ledger {self.path}: {_why(exc)}") from None
        missing = set(COLUMNS) - present
        if missing:
            conn.close()
            raise LedgerUnavailable(
                f"{self.path} is not an llm-otel ledger (missing columns: {', '.join(sorted(missing))})"
            )
        return conn

    def refresh(self, since: float | None = None) -> int:
        """Add the rows written since the last refresh (from ``since`` on, on the first); returns how many."""
        with self._lock:
            conn = self.connect()
            try:
                if self.last_id == 0 and since is not None:
                    sql, params = ROW_SQL + " WHERE ts >= ? ORDER BY id", (since,)
                else:
                    sql, params = ROW_SQL + " WHERE id > ? ORDER BY id", (self.last_id,)
                added = self._add_all(conn.execute(sql, params))
                if added:
                    self.first_ts, self.last_ts = conn.execute("SELECT MIN(ts), MAX(ts) FROM calls").fetchone()
                return added
            except sqlite3.DatabaseError as exc:
                raise LedgerUnavailable(f"cannot read ledger {self.path}: {_why(exc)}") from None
            finally:
                conn.close()

    def rows_between(self, conn: sqlite3.Connection, lo: float, hi: float) -> Iterator[tuple[Any, ...]]:
        """Rows with ``lo <= ts < hi`` (through the time index) in the cells' row shape."""
        for batch in _batches(conn.execute(ROW_SQL + " WHERE ts >= ? AND ts < ?", (lo, hi))):
            yield from batch

    def dims_id(self, row: tuple[Any, ...]) -> int:
        key = (row[R_PROVIDER], row[R_OPERATION], row[R_MODEL], row[R_SERVICE], row[R_ATTRS])
        idx = self._dims_ids.get(key)
        if idx is None:
            try:
                attrs = {str(k): str(v) for k, v in json.loads(key[4]).items()}
            except (ValueError, AttributeError):
                attrs = {}
            idx = self._dims_ids[key] = len(self.dims)
            self.dims.append(Dims(key[0], key[1], key[2], key[3], attrs))
        return idx

    def day(self, day: int) -> dict[int, Cell]:
        """The cells of the UTC day starting at ``day``, merged from its hours (kept until a row for it arrives)."""
        cells = self._days.get(day)
        if cells is None:
            cells = {}
            for hour in range(day, day + DAY, HOUR):
                for idx, cell in self.hours.get(hour, {}).items():
                    merged = cells.get(idx)
                    if merged is None:
                        merged = cells[idx] = Cell()
                    merged.absorb(cell)
            self._days[day] = cells
        return cells

    def _add_all(self, cursor: sqlite3.Cursor) -> int:
        hours = self.hours
        dims_id = self.dims_id
        added = 0
        for batch in _batches(cursor):
            for row in batch:
                hour = int(row[R_TS] // HOUR) * HOUR
                cells = hours.get(hour)
                if cells is None:
                    cells = hours[hour] = {}
                idx = dims_id(row)
                cell = cells.get(idx)
                if cell is None:
                    cell = cells[idx] = Cell()
                cell.add(row)
                self._days.pop(hour - hour % DAY, None)
            added += len(batch)
            self.last_id = max(self.last_id, batch[-1][R_ID])
        self.rows += added
        return added


def _ensure_ln(conn: sqlite3.Connection) -> None:
    """SQLite's ``ln`` (built in where SQLite has its math functions; Python's otherwise)."""
    try:
        conn.execute("SELECT ln(2.0)").fetchone()
    except sqlite3.OperationalError:
        conn.create_function("ln", 1, math.log, deterministic=True)


def _batches(cursor: sqlite3.Cursor) -> Iterator[list[tuple[Any, ...]]]:
    """The cursor's rows, ``_FETCH`` at a time (memory stays flat on a big ledger)."""
    return iter(lambda: cursor.fetchmany(_FETCH), [])


def _why(exc: sqlite3.Error) -> str:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return f"{text} (another process holds a write lock; retrying)"
    if "not a database" in text or "malformed" in text:
        return f"{text} (the file is corrupt or not SQLite)"
    return text
