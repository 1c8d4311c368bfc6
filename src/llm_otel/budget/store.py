"""Budget state: usage per (budget, group, bucket) and fired thresholds.

``SqliteStore`` is the embedded default: one WAL file that every process on the host pointing at it
shares. All writes of a batch happen in one ``BEGIN IMMEDIATE`` transaction, so the read of the shared
total, the threshold decision and the insert of the fired row are atomic across processes.
``MemoryStore`` has the same interface and stands in when the file cannot be used; it keeps a journal of
what it took so that the file can catch up when it becomes usable again. ``RedisStore`` (redis_store.py)
shares budgets across hosts with the same interface.

A batch is ``begin(writes)`` (the usage the batch adds), reads of the shared state *without* those writes
(``usage``, ``fired``), threshold claims (``fire``), then ``commit()``, which makes the writes count.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

SCHEMA_VERSION = "1"
SCHEMA = """
CREATE TABLE IF NOT EXISTS budget_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS budget_defs (
    name TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    reset_at REAL
);
CREATE TABLE IF NOT EXISTS budget_usage (
    budget TEXT NOT NULL,
    grp TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    used REAL NOT NULL,
    calls INTEGER NOT NULL,
    unpriced INTEGER NOT NULL,
    PRIMARY KEY (budget, grp, bucket)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS budget_fired (
    budget TEXT NOT NULL,
    grp TEXT NOT NULL,
    win REAL NOT NULL,
    threshold TEXT NOT NULL,
    fired_at REAL NOT NULL,
    used REAL NOT NULL,
    alerted INTEGER NOT NULL,
    pid INTEGER NOT NULL,
    PRIMARY KEY (budget, grp, win, threshold)
) WITHOUT ROWID;
"""
_ADD = """
INSERT INTO budget_usage (budget, grp, bucket, used, calls, unpriced) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (budget, grp, bucket) DO UPDATE SET
    used = used + excluded.used, calls = calls + excluded.calls, unpriced = unpriced + excluded.unpriced
"""
_FIRE = "INSERT OR IGNORE INTO budget_fired VALUES (?, ?, ?, ?, ?, ?, ?, ?)"


def default_path() -> Path:
    """``<user data dir>/llm-otel/budgets.sqlite3``, shared by every process of the user on this host."""
    from platformdirs import user_data_path

    return user_data_path("llm-otel", appauthor=False) / "budgets.sqlite3"


@dataclass(slots=True)
class Fired:
    """A threshold marked in a window. ``win`` is the window start (calendar) or the firing time (rolling)."""

    budget: str
    group: str
    win: float
    threshold: str
    fired_at: float
    used: float
    alerted: bool
    pid: int = field(default_factory=os.getpid)

    def row(self) -> tuple[Any, ...]:
        return (self.budget, self.group, self.win, self.threshold, self.fired_at, self.used, int(self.alerted),
                self.pid)  # fmt: skip


@dataclass(slots=True)
class Mark:
    """When the state file first saw a budget, and when it was last reset (``llm-otel budget reset``)."""

    created_at: float
    reset_at: float | None = None

    @property
    def since(self) -> float:
        return max(self.created_at, self.reset_at or 0.0)


UsageRow = tuple[str, int, float, int, int]  # group, bucket, used, calls, unpriced
Write = tuple[str, str, int, float, int, int]  # budget, group, bucket, amount, calls, unpriced
ScanSpec = tuple[str, float, float]  # budget, after (buckets), since (fired windows): what a refresh reads


class StoreUnavailable(Exception):
    """The shared store cannot be reached just now (Redis down, slow, restarting): the caller keeps its batch
    and tries again later; budgets carry on in this process. The store has already told the user."""


def classify(exc: BaseException) -> str:
    """A short human reason for a state-file failure."""
    text = str(exc).lower()
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return "is corrupt (not a readable SQLite database)"
    if "readonly" in text or "read-only" in text or isinstance(exc, PermissionError):
        return "cannot be written (read-only)"
    if "unable to open" in text:
        return "cannot be opened or created (check the directory's permissions)"
    if "locked" in text or "busy" in text:
        return "is locked by another process"
    return f"cannot be used ({type(exc).__name__})"


class SqliteStore:
    """The shared state file. Used by one thread at a time (the processor's writer)."""

    def __init__(self, path: str | Path, busy_timeout_s: float = 5.0, readonly: bool = False) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self.readonly = readonly
        self._conn: sqlite3.Connection | None = None
        self._staged: list[Write] = []
        self._opened = 0  # connections opened so far (see others_version)

    def open(self) -> None:
        """Connect, create the schema and prove the file is writable (raises sqlite3.Error / OSError)."""
        if self._conn is not None:
            return
        self._opened += 1
        if self.readonly:
            self._conn = self._open_readonly()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path), timeout=self.busy_timeout_s, isolation_level=None,
                               check_same_thread=False)  # fmt: skip
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(SCHEMA)
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT OR REPLACE INTO budget_meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _open_readonly(self) -> sqlite3.Connection:
        if not self.path.exists():
            raise FileNotFoundError(f"no budget state file at {self.path}")
        error: sqlite3.Error | None = None
        # mode=ro needs the WAL index to be writable or present; immutable=1 reads the file as it is.
        for query in ("mode=ro", "immutable=1"):
            conn = sqlite3.connect(f"file:{self.path}?{query}", uri=True, timeout=self.busy_timeout_s,
                                   isolation_level=None, check_same_thread=False)  # fmt: skip
            try:
                conn.execute("SELECT count(*) FROM budget_defs").fetchone()
                return conn
            except sqlite3.Error as exc:
                conn.close()
                error = error or exc
        raise error  # type: ignore[misc]

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def forget(self) -> None:
        """Drop the connection without closing it (after fork: the parent still owns it)."""
        self._conn = None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            self.open()
        return self._conn  # type: ignore[return-value]

    # --- definitions and marks -----------------------------------------------------------------------------
    def register(self, configs: dict[str, dict[str, Any]], now: float) -> None:
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            for name, config in configs.items():
                c.execute(
                    "INSERT INTO budget_defs (name, config, created_at, updated_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at",
                    (name, json.dumps(config, sort_keys=True), now, now),
                )
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def marks(self) -> dict[str, Mark]:
        return {n: Mark(c, r) for n, c, r in self.conn.execute("SELECT name, created_at, reset_at FROM budget_defs")}

    def definitions(self) -> dict[str, dict[str, Any]]:
        return {n: json.loads(c) for n, c in self.conn.execute("SELECT name, config FROM budget_defs ORDER BY name")}

    def reset(self, budget: str, now: float, config: dict[str, Any] | None = None) -> None:
        """Start ``budget``'s window over: forget its usage and fired thresholds, remember when."""
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            if config is not None:
                c.execute(
                    "INSERT OR IGNORE INTO budget_defs (name, config, created_at, updated_at) VALUES (?, ?, ?, ?)",
                    (budget, json.dumps(config, sort_keys=True), now, now),
                )
            c.execute("UPDATE budget_defs SET reset_at = ? WHERE name = ?", (now, budget))
            c.execute("DELETE FROM budget_usage WHERE budget = ?", (budget,))
            c.execute("DELETE FROM budget_fired WHERE budget = ?", (budget,))
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    # --- the writer's transaction --------------------------------------------------------------------------
    def begin(self, writes: Iterable[Write] = ()) -> None:
        """Take the write lock; ``writes`` are added at ``commit`` (reads until then do not see them)."""
        self.conn.execute("BEGIN IMMEDIATE")
        self._staged = list(writes)

    def commit(self) -> None:
        staged, self._staged = self._staged, []
        if staged:
            self.conn.executemany(_ADD, staged)
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        self._staged = []
        if self._conn is not None and self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    def prefetch(self, specs: Iterable[ScanSpec]) -> None:
        """A refresh is about to ``scan`` these: nothing to do for a local file."""

    def others_version(self) -> tuple[int, int] | None:
        """A value that changes whenever another connection (another process, the CLI) commits to the file;
        this connection's own commits leave it as it is. SQLite's ``data_version`` counts per connection, so
        the value carries which connection it came from (a new one after fork or a reconnect)."""
        conn = self.conn
        return self._opened, conn.execute("PRAGMA data_version").fetchone()[0]

    def usage(self, budget: str, group: str, after: float, upto: float | None = None) -> dict[int, float]:
        """Bucket totals with ``after < bucket`` (and ``bucket <= upto``)."""
        sql = "SELECT bucket, used FROM budget_usage WHERE budget = ? AND grp = ? AND bucket > ?"
        args: tuple[Any, ...] = (budget, group, after)
        if upto is not None:
            sql += " AND bucket <= ?"
            args += (upto,)
        return dict(self.conn.execute(sql, args).fetchall())

    def fired(self, budget: str, group: str, since: float, upto: float | None = None) -> dict[str, float]:
        """Threshold label -> latest ``win`` among rows with ``win >= since`` (and ``win < upto``)."""
        sql = "SELECT threshold, max(win) FROM budget_fired WHERE budget = ? AND grp = ? AND win >= ?"
        args: tuple[Any, ...] = (budget, group, since)
        if upto is not None:
            sql += " AND win < ?"
            args += (upto,)
        return dict(self.conn.execute(sql + " GROUP BY threshold", args).fetchall())

    def add(self, budget: str, group: str, bucket: int, amount: float, calls: int, unpriced: int) -> None:
        self.conn.execute(_ADD, (budget, group, bucket, amount, calls, unpriced))

    def fire(self, fired: Fired) -> bool:
        """Record a fired threshold; False when it was already there (someone else fired it)."""
        return self.conn.execute(_FIRE, fired.row()).rowcount == 1

    # --- reading everything (refresh, status) -------------------------------------------------------------
    def scan(self, budget: str, after: float, since: float) -> tuple[list[UsageRow], list[Fired]]:
        c = self.conn
        rows = c.execute(
            "SELECT grp, bucket, used, calls, unpriced FROM budget_usage WHERE budget = ? AND bucket > ?",
            (budget, after),
        ).fetchall()
        fired = [
            Fired(*r[:6], bool(r[6]), r[7])
            for r in c.execute(
                "SELECT budget, grp, win, threshold, fired_at, used, alerted, pid FROM budget_fired "
                "WHERE budget = ? AND win >= ? ORDER BY fired_at",
                (budget, since),
            )
        ]
        return rows, fired

    def prune(self, budget: str, usage_before: float, fired_before: float) -> None:
        """Forget rolling buckets and firings that can no longer matter (a writer chore, not hot)."""
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            c.execute("DELETE FROM budget_usage WHERE budget = ? AND bucket < ?", (budget, usage_before))
            c.execute("DELETE FROM budget_fired WHERE budget = ? AND win < ?", (budget, fired_before))
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def replay(self, memory: MemoryStore) -> None:
        """Add what ``memory`` took while the file was unusable (usage deltas, fired thresholds)."""
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            for (budget, group, bucket), (amount, calls, unpriced) in memory.journal_usage.items():
                c.execute(_ADD, (budget, group, bucket, amount, calls, unpriced))
            for fired in memory.journal_fired:
                c.execute(_FIRE, fired.row())
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise


class MemoryStore:
    """This process's state only: used when the state file cannot be (or is asked not to be) used."""

    path: Path | None = None

    def __init__(self) -> None:
        self._usage: dict[tuple[str, str, int], list[float]] = {}
        self._fired: dict[tuple[str, str, float, str], Fired] = {}
        self._marks: dict[str, Mark] = {}
        self._configs: dict[str, dict[str, Any]] = {}
        self.journal_usage: dict[tuple[str, str, int], list[float]] = {}
        self.journal_fired: list[Fired] = []
        self._staged: list[Write] = []

    def seed(
        self, usage: Iterable[tuple[str, str, int, float]], fired: Iterable[Fired], marks: dict[str, Mark]
    ) -> None:
        """Start from what was last known from the file (not journaled: the file already has it)."""
        for budget, group, bucket, used in usage:
            self._usage[(budget, group, bucket)] = [used, 0, 0]
        for f in fired:
            self._fired[(f.budget, f.group, f.win, f.threshold)] = f
        self._marks.update({k: Mark(m.created_at, m.reset_at) for k, m in marks.items()})

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def forget(self) -> None:
        pass

    def register(self, configs: dict[str, dict[str, Any]], now: float) -> None:
        for name, config in configs.items():
            self._configs[name] = config
            self._marks.setdefault(name, Mark(now))

    def marks(self) -> dict[str, Mark]:
        return dict(self._marks)

    def definitions(self) -> dict[str, dict[str, Any]]:
        return dict(self._configs)

    def reset(self, budget: str, now: float, config: dict[str, Any] | None = None) -> None:
        self._marks.setdefault(budget, Mark(now)).reset_at = now
        for key in [k for k in self._usage if k[0] == budget]:
            del self._usage[key]
        for key in [k for k in self._fired if k[0] == budget]:
            del self._fired[key]

    def begin(self, writes: Iterable[Write] = ()) -> None:
        self._staged = list(writes)

    def commit(self) -> None:
        staged, self._staged = self._staged, []
        for write in staged:
            self.add(*write)

    def rollback(self) -> None:
        self._staged = []

    def prefetch(self, specs: Iterable[ScanSpec]) -> None:
        pass

    def others_version(self) -> tuple[int, int] | None:
        return None  # unknown: every refresh reads it (cheap, in memory)

    def usage(self, budget: str, group: str, after: float, upto: float | None = None) -> dict[int, float]:
        return {
            b: v[0]
            for (bn, g, b), v in self._usage.items()
            if bn == budget and g == group and b > after and (upto is None or b <= upto)
        }

    def fired(self, budget: str, group: str, since: float, upto: float | None = None) -> dict[str, float]:
        out: dict[str, float] = {}
        for (bn, g, win, th), _f in self._fired.items():
            if bn == budget and g == group and win >= since and (upto is None or win < upto):
                out[th] = max(win, out.get(th, win))
        return out

    def add(self, budget: str, group: str, bucket: int, amount: float, calls: int, unpriced: int) -> None:
        for table in (self._usage, self.journal_usage):
            row = table.setdefault((budget, group, bucket), [0.0, 0, 0])
            row[0] += amount
            row[1] += calls
            row[2] += unpriced

    def fire(self, fired: Fired) -> bool:
        key = (fired.budget, fired.group, fired.win, fired.threshold)
        if key in self._fired:
            return False
        self._fired[key] = fired
        self.journal_fired.append(fired)
        return True

    def scan(self, budget: str, after: float, since: float) -> tuple[list[UsageRow], list[Fired]]:
        rows = [
            (g, b, v[0], int(v[1]), int(v[2])) for (bn, g, b), v in self._usage.items() if bn == budget and b > after
        ]
        fired = sorted((f for f in self._fired.values() if f.budget == budget and f.win >= since),
                       key=lambda f: f.fired_at)  # fmt: skip
        return rows, fired

    def prune(self, budget: str, usage_before: float, fired_before: float) -> None:
        for key in [k for k in self._usage if k[0] == budget and k[2] < usage_before]:
            del self._usage[key]
        for key in [k for k in self._fired if k[0] == budget and k[2] < fired_before]:
            del self._fired[key]


class Store(Protocol):
    """What the processor and ``llm-otel budget`` use: SqliteStore, MemoryStore and RedisStore."""

    def open(self) -> None: ...
    def close(self) -> None: ...
    def forget(self) -> None: ...
    def register(self, configs: dict[str, dict[str, Any]], now: float) -> None: ...
    def marks(self) -> dict[str, Mark]: ...
    def definitions(self) -> dict[str, dict[str, Any]]: ...
    def reset(self, budget: str, now: float, config: dict[str, Any] | None = None) -> None: ...
    def begin(self, writes: Iterable[Write] = ()) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def usage(self, budget: str, group: str, after: float, upto: float | None = None) -> dict[int, float]: ...
    def fired(self, budget: str, group: str, since: float, upto: float | None = None) -> dict[str, float]: ...
    def fire(self, fired: Fired) -> bool: ...
    def prefetch(self, specs: Iterable[ScanSpec]) -> None: ...
    def others_version(self) -> tuple[int, int] | None: ...
    def scan(self, budget: str, after: float, since: float) -> tuple[list[UsageRow], list[Fired]]: ...
    def prune(self, budget: str, usage_before: float, fired_before: float) -> None: ...
