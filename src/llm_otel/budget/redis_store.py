"""``RedisStore``: budget state shared by every process on every host, in Redis (or Valkey).

The processor's store interface (see store.py), with network round trips only on the writer thread:

- ``begin(writes)`` is one MULTI/EXEC: each (budget, group, bucket) the batch adds to is written as this
  process's new *cumulative* usage (``HSET key <bucket>|<process> <total>``), and the same transaction reads
  every process's fields for the batch's keys and its threshold claims. Writing absolute values makes a
  retried or timed-out write harmless, and lets a process re-assert everything it sent after Redis lost it.
  ``usage`` then answers "the shared total before this batch", as SQLite does inside its transaction.
- ``fire`` claims a threshold with a Lua compare-and-set (first claimant wins; redis_layout.CLAIM_LUA).
- ``commit`` only moves the batch into this process's acknowledged totals (the write went out in ``begin``).

Any failure (unreachable, timeout, auth, a read-only replica) raises ``StoreUnavailable``: the processor holds
the batch and replays it later. One warning per outage; after it, and after Redis lost its data (the
``alive`` token changed), this process re-asserts its usage, its budgets and the claims it knows, and makes
no new batch for ``settle_s`` so that every other live process has re-asserted its own first.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

from . import storeurl
from .redis_layout import (
    CLAIM_LUA,
    META_TTL_S,
    Layout,
    claim_value,
    field,
    parse_claim,
    parse_usage,
    split_field,
    usage_value,
)
from .rules import Budget
from .store import Fired, Mark, ScanSpec, StoreUnavailable, UsageRow, Write

log = logging.getLogger("llm_otel.budget")

_BACKOFF_MAX_S = 5.0
_CLAIMS_MAX = 100_000


def _proc_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class RedisStore:
    """See the module docstring. Used by one thread at a time (the processor's writer, or the CLI)."""

    path = None  # no state file

    def __init__(self, url: str, budgets: Iterable[Budget] = (), *, settle_s: float | None = None,
                 warn: bool = True) -> None:  # fmt: skip
        self.url = storeurl.parse(url)
        self._warn = log.warning if warn else log.debug  # the CLI reports failures as its own one-line errors
        self.shown = self.url.shown
        self.refresh_s = self.url.refresh_s
        self.settle_s = settle_s if settle_s is not None else 2 * self.refresh_s + 1.0
        self.keys = Layout(self.url.prefix)
        self.know(budgets)
        self._client: Any = None
        self._claim: Any = None
        self._proc = _proc_id()
        # (budget, group) -> bucket -> [used, calls, unpriced]: this process's acknowledged cumulative usage
        self._own: dict[tuple[str, str], dict[int, list[float]]] = {}
        self._gen: dict[str, int] = {}
        self._claims: dict[str, tuple[str, int]] = {}  # claim key -> (value, expires at): re-asserted after a loss
        self._configs: dict[str, dict[str, Any]] = {}
        self._marks: dict[str, Mark] = {}
        self._token: str | None = None  # the ``alive`` token this process last saw
        self._reassert = True  # first contact, after an outage, after a data loss
        self._settle_next = False  # after an outage or a data loss: hold new batches for settle_s
        self.online = True
        self._failures = 0
        self._next_try = 0.0
        self._hold_until = 0.0
        self._next_expire = 0.0
        # the current batch
        self._staged: dict[tuple[str, str], dict[int, list[float]]] = {}  # (budget, group) -> bucket -> delta
        self._base: dict[tuple[str, str], dict[int, float]] = {}  # the shared total before this batch
        self._seen: dict[tuple[str, str], dict[str, tuple[Any, ...]]] = {}  # label -> parsed claim
        self._made: dict[str, tuple[str, int]] = {}
        # the current refresh
        self._scans: dict[str, tuple[list[UsageRow], list[Fired]]] = {}
        self._marks_fresh = False

    def know(self, budgets: Iterable[Budget]) -> None:
        """Budgets whose keys this store may touch (their windows decide key names and expiry)."""
        for b in budgets:
            self.keys.know(b)

    # --- connection and failures ---------------------------------------------------------------------------
    def _redis(self) -> Any:
        if self._client is None:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            t = self.url.timeout_s
            self._client = redis.Redis.from_url(
                self.url.client_url, socket_timeout=t, socket_connect_timeout=t, retry=Retry(NoBackoff(), 0),
                decode_responses=True, health_check_interval=0)  # fmt: skip
            self._claim = self._client.register_script(CLAIM_LUA)
        return self._client

    def _run(self, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(client)``; any Redis or socket failure becomes ``StoreUnavailable`` (warned once)."""
        if not self.online and time.monotonic() < self._next_try:
            raise StoreUnavailable(f"budget store {self.shown} is unreachable")
        try:
            import redis
        except ImportError as exc:  # the setting's check makes this rare: installed, then removed
            self._down(f"needs the Redis client ({exc}): pip install 'llm-otel[redis]'")
        try:
            result = fn(self._redis())
        except (redis.RedisError, OSError) as exc:
            self._down(_reason(exc))
        if not self.online:
            self.online = True
            self._failures = 0
            self._warn("llm-otel: budget store %s is reachable again; this process's usage and alerts held "
                        "meanwhile are being sent", self.shown)  # fmt: skip
        return result

    def _down(self, reason: str) -> Any:
        self._failures += 1
        self._reassert = self._settle_next = True  # Redis may have restarted without its data meanwhile
        self._next_try = time.monotonic() + min(_BACKOFF_MAX_S, 0.25 * 2**self._failures)
        with contextlib.suppress(Exception):
            if self._client is not None:
                self._client.connection_pool.disconnect()
        if self.online:
            self.online = False
            self._warn("llm-otel: budget store %s %s; budgets carry on in this process on the last known shared "
                        "totals, and its usage and alerts are held until the store is back. The app's calls are "
                        "not affected.", self.shown, reason)  # fmt: skip
        else:
            log.debug("llm-otel: budget store %s still unavailable: %s", self.shown, reason)
        raise StoreUnavailable(f"budget store {self.shown} {reason}")

    # --- lifecycle -------------------------------------------------------------------------------------------
    def open(self) -> None:
        """Connect and check the store answers (raises ``StoreUnavailable``, after one warning)."""
        self._run(lambda r: r.ping())

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    def forget(self) -> None:
        """After fork: the child is another process, with its own id, connections and usage."""
        self._client = None
        self._proc = _proc_id()
        self._own.clear()
        self._staged, self._made = {}, {}
        self._reassert = True

    # --- definitions and marks -----------------------------------------------------------------------------
    def register(self, configs: dict[str, dict[str, Any]], now: float) -> None:
        self._configs.update(configs)
        for name in configs:
            self._marks.setdefault(name, Mark(now))
        self._reassert = True
        self._ensure()

    def marks(self) -> dict[str, Mark]:
        if not self._marks_fresh:
            self._read_meta()
        self._marks_fresh = False
        return {k: Mark(m.created_at, m.reset_at) for k, m in self._marks.items()}

    def definitions(self) -> dict[str, dict[str, Any]]:
        raw = self._run(lambda r: r.hgetall(self.keys.config))
        return {name: json.loads(config) for name, config in sorted(raw.items())}

    def reset(self, budget: str, now: float, config: dict[str, Any] | None = None) -> None:
        """Start ``budget`` over: a new generation (running processes move to it), then drop the old keys."""
        k = self.keys

        def bump(r: Any) -> int:
            p = r.pipeline(transaction=True)
            p.hincrby(k.gen, budget, 1)
            p.hset(k.reset, budget, repr(now))
            p.hsetnx(k.created, budget, repr(now))
            if config is not None:
                p.hsetnx(k.config, budget, json.dumps(config, sort_keys=True))
            for key in k.meta:
                p.expire(key, META_TTL_S)
            return int(p.execute()[0])

        gen = self._run(bump)

        def drop(r: Any) -> None:
            old = [key for key in r.scan_iter(match=k.pattern(budget), count=1000) if k.gen_of(key, budget) != gen]
            for i in range(0, len(old), 500):
                r.delete(*old[i : i + 500])

        self._run(drop)
        self._on_gen(budget, gen)

    def _read_meta(self) -> None:
        k = self.keys

        def read(r: Any) -> list[Any]:
            p = r.pipeline(transaction=False)
            p.get(k.alive)
            p.hgetall(k.gen)
            p.hgetall(k.created)
            p.hgetall(k.reset)
            return p.execute()

        self._take_meta(*self._run(read))

    def _take_meta(self, token: str | None, gens: dict[str, str], created: dict[str, str],
                   resets: dict[str, str]) -> bool:  # fmt: skip
        """Adopt what Redis says; True when Redis lost its data since this process last looked."""
        if self._token is not None and token != self._token:
            self._reassert = self._settle_next = True
            return True
        for name, gen in gens.items():
            self._on_gen(name, int(gen))
        for name, ts in created.items():
            reset = resets.get(name)
            self._marks[name] = Mark(float(ts), float(reset) if reset is not None else None)
        return False

    def _on_gen(self, name: str, gen: int) -> None:
        if self._gen.get(name, 0) == gen:
            return
        if name in self._gen or gen > 0:  # a reset: usage before it no longer counts, here either
            for key in [key for key in self._own if key[0] == name]:
                del self._own[key]
            mine = f"{self.keys.root}:f:{name}:"
            self._claims = {key: v for key, v in self._claims.items() if not key.startswith(mine)}
        self._gen[name] = gen

    # --- re-assertion: first contact, back after an outage, after Redis lost its data -------------------------
    def _ensure(self) -> None:
        if not self._reassert:
            return
        self._run(self._assert_all)
        self._reassert = False
        if self._settle_next:
            self._settle_next = False
            self._hold_until = time.monotonic() + self.settle_s

    def _assert_all(self, r: Any) -> None:
        """Write back this process's budgets, usage and known claims (idempotent), and adopt the token."""
        k, now = self.keys, time.time()
        p = r.pipeline(transaction=False)
        p.set(k.alive, secrets.token_hex(8), nx=True, ex=META_TTL_S)
        for name, config in self._configs.items():
            p.hset(k.config, name, json.dumps(config, sort_keys=True))
        for name, mark in self._marks.items():
            p.hsetnx(k.created, name, repr(mark.created_at))
            if mark.reset_at is not None:
                p.hsetnx(k.reset, name, repr(mark.reset_at))
        for name, gen in self._gen.items():
            if gen:
                p.hsetnx(k.gen, name, gen)
        for key in k.meta:
            p.expire(key, META_TTL_S)
        self._queue_usage(p, {key: rows for key, rows in self._own.items() if key[0] in k.budgets}, now)
        for key, (value, expires) in list(self._claims.items()):
            if expires <= now:
                del self._claims[key]
            else:
                p.set(key, value, nx=True, pxat=expires * 1000)
        p.get(k.alive)
        p.hgetall(k.gen)
        p.hgetall(k.created)
        p.hgetall(k.reset)
        out = p.execute()
        self._token = None
        self._take_meta(*out[-4:])
        self._token = out[-4]

    def _queue_usage(self, p: Any, rows: dict[tuple[str, str], dict[int, list[float]]], now: float) -> None:
        """HSET each row as this process's field, index its group, and (re)set the keys' expiry."""
        k = self.keys
        expiring: dict[str, int] = {}
        for (name, group), buckets in rows.items():
            gen = self._gen.get(name, 0)
            for bucket, row in buckets.items():
                epoch = k.epoch(name, bucket)
                expires = k.usage_expiry(name, epoch)
                if expires <= now:
                    continue
                ukey, gkey = k.usage(name, gen, epoch, group), k.groups(name, gen, epoch)
                p.hset(ukey, field(bucket, self._proc), usage_value(row))
                p.sadd(gkey, group)
                expiring[ukey] = expiring[gkey] = expires
        for key, expires in expiring.items():
            p.expireat(key, expires)

    # --- the writer's batch --------------------------------------------------------------------------------
    def begin(self, writes: Iterable[Write] = ()) -> None:
        self._staged = {}
        for name, group, bucket, amount, calls, unpriced in writes:
            self._staged.setdefault((name, group), {})[bucket] = [amount, calls, unpriced]
        self._made = {}
        for _attempt in range(3):
            self._ensure()
            self._settled()
            if self._exchange():
                return
        raise StoreUnavailable(f"budget store {self.shown}: budgets keep changing under this batch")

    def _exchange(self) -> bool:
        """One MULTI: write the batch as cumulative values, read its keys. False: retry (reset or data loss)."""
        k, now = self.keys, time.time()
        new: dict[tuple[str, str], dict[int, list[float]]] = {}
        for key, deltas in self._staged.items():
            own = self._own.get(key, {})
            new[key] = {b: [x + y for x, y in zip(own.get(b, (0.0, 0, 0)), d, strict=True)] for b, d in deltas.items()}
        epochs: dict[tuple[str, str], list[int]] = {}
        for (name, group), deltas in self._staged.items():
            b = k.budgets[name]
            if b.rolling_s is None:
                epochs[(name, group)] = sorted(set(deltas))
            else:
                epochs[(name, group)] = k.epochs(name, min(deltas) - b.rolling_s - b.bucket_s - 1, max(deltas))

        def exchange(r: Any) -> list[Any]:
            p = r.pipeline(transaction=True)
            p.get(k.alive)
            p.hgetall(k.gen)
            self._queue_usage(p, new, now)
            for (name, group), eps in epochs.items():
                gen = self._gen.get(name, 0)
                for epoch in eps:
                    p.hgetall(k.usage(name, gen, epoch, group))
                p.mget([k.claim(name, gen, group, label) for label in k.labels(name)])
            return p.execute()

        out = self._run(exchange)
        token, gens = out[0], out[1]
        if self._token is not None and token != self._token:
            self._reassert = self._settle_next = True  # Redis lost its data: re-assert, then write and read again
            return False
        names = {name for name, _g in epochs}
        if any(int(gens.get(name, 0)) != self._gen.get(name, 0) for name in names):
            for name in names:
                self._on_gen(name, int(gens.get(name, 0)))
            return False  # a reset moved the budget to a new generation: write there instead
        results = iter(out[len(out) - sum(len(e) + 1 for e in epochs.values()) :])
        self._base, self._seen = {}, {}
        for (name, group), eps in epochs.items():
            base: dict[int, float] = {}
            for _epoch in eps:
                for text, value in next(results).items():
                    bucket, proc = split_field(text)
                    if proc != self._proc:
                        base[bucket] = base.get(bucket, 0.0) + parse_usage(value)[0]
            for bucket, row in self._own.get((name, group), {}).items():  # this process: what it knows it sent
                base[bucket] = base.get(bucket, 0.0) + row[0]
            self._base[(name, group)] = base
            self._seen[(name, group)] = self._claims_in(name, group, next(results))
        return True

    def _claims_in(self, name: str, group: str, values: list[str | None]) -> dict[str, tuple[Any, ...]]:
        """label -> (alerted, win, fired_at, used, owner) of the claims in ``values`` (one per label)."""
        k, gen = self.keys, self._gen.get(name, 0)
        out: dict[str, tuple[Any, ...]] = {}
        for label, value in zip(k.labels(name), values, strict=True):
            if value is None:
                continue
            key = k.claim(name, gen, group, label)
            claim = parse_claim(value)
            if claim[4] == self._proc and key not in self._claims:
                continue  # this process's claim from a batch that did not commit: it is decided again
            out[label] = claim
            if claim[4] != self._proc and len(self._claims) < _CLAIMS_MAX:
                self._claims[key] = (value, k.claim_expiry(name, claim[1]))
        return out

    def usage(self, budget: str, group: str, after: float, upto: float | None = None) -> dict[int, float]:
        base = self._base.get((budget, group), {})
        return {b: v for b, v in base.items() if b > after and (upto is None or b <= upto)}

    def fired(self, budget: str, group: str, since: float, upto: float | None = None) -> dict[str, float]:
        seen = self._seen.get((budget, group), {})
        return {label: c[1] for label, c in seen.items() if c[1] >= since and (upto is None or c[1] < upto)}

    def _settled(self) -> None:
        """After an outage or a data loss, batches wait ``settle_s`` for every live process to re-assert its
        usage and claims: a batch replayed on a total that lacks someone's usage could pass over a threshold."""
        if time.monotonic() < self._hold_until:
            raise StoreUnavailable("waiting for the other processes to re-assert their usage and claims")

    def settle(self) -> None:
        """Wait out the settling period (at exit: the held usage is sent rather than lost)."""
        time.sleep(max(0.0, min(self.settle_s, self._hold_until - time.monotonic())))

    def fire(self, fired: Fired) -> bool:
        """Claim a threshold; True only for the first claimant (or this process retrying its own claim)."""
        self._settled()
        k, name = self.keys, fired.budget
        key = k.claim(name, self._gen.get(name, 0), fired.group, fired.threshold)
        value = claim_value(fired.alerted, fired.win, fired.fired_at, fired.used, self._proc)
        expires = k.claim_expiry(name, fired.win)
        args = [value, repr(float(fired.win)), repr(float(k.arm_after(name, fired.win))), int(fired.alerted),
                expires * 1000, self._proc]  # fmt: skip
        won = self._run(lambda r: self._claim(keys=[key], args=args, client=r))
        self._made[key] = (value, expires)
        return int(won) == 1

    def commit(self) -> None:
        for key, deltas in self._staged.items():
            own = self._own.setdefault(key, {})
            for bucket, delta in deltas.items():
                row = own.get(bucket)
                if row is None:
                    own[bucket] = list(delta)
                else:
                    for i in range(3):
                        row[i] += delta[i]
        if len(self._claims) < _CLAIMS_MAX:
            self._claims.update(self._made)
        self._staged, self._made = {}, {}
        self._expire_own()

    def rollback(self) -> None:
        self._staged, self._made = {}, {}

    def _expire_own(self) -> None:
        """Forget this process's usage in buckets whose keys have expired (bounded memory)."""
        now = time.monotonic()
        if now < self._next_expire:
            return
        self._next_expire = now + 60.0
        wall, k = time.time(), self.keys
        for key, rows in list(self._own.items()):
            for bucket in [b for b in rows if k.usage_expiry(key[0], k.epoch(key[0], b)) <= wall]:
                del rows[bucket]
            if not rows:
                del self._own[key]

    # --- reading everything (refresh, status) -------------------------------------------------------------
    def others_version(self) -> tuple[int, int] | None:
        return None  # unknown: every refresh reads the shared totals

    def prefetch(self, specs: Iterable[ScanSpec]) -> None:
        """Read what ``scan`` will be asked for, in two pipelined round trips."""
        specs = [s for s in specs if s[0] in self.keys.budgets]
        for _attempt in range(3):
            self._ensure()
            if self._read_all(specs):
                return
        raise StoreUnavailable(f"budget store {self.shown}: budgets keep changing under this refresh")

    def _read_all(self, specs: list[ScanSpec]) -> bool:
        k = self.keys

        def groups(r: Any) -> list[Any]:
            p = r.pipeline(transaction=False)
            p.get(k.alive)
            p.hgetall(k.gen)
            p.hgetall(k.created)
            p.hgetall(k.reset)
            for key in (k.alive, *k.meta):
                p.expire(key, META_TTL_S)
            for name, after, _since in specs:
                gen = self._gen.get(name, 0)
                for epoch in k.epochs(name, after, k.live_until(name, after)):
                    p.smembers(k.groups(name, gen, epoch))
            return p.execute()

        gens_before = dict(self._gen)
        out = self._run(groups)
        if self._take_meta(*out[:4]) or self._gen != gens_before:
            return False
        sets = iter(out[4 + 1 + len(k.meta) :])
        plan: list[tuple[str, int, list[str]]] = []
        for name, after, _since in specs:
            members: set[str] = set()
            epochs = k.epochs(name, after, k.live_until(name, after))
            for _epoch in epochs:
                members |= next(sets)
            members |= {g for (n, g) in self._own if n == name}
            plan.append((name, self._gen.get(name, 0), sorted(members)))

        def read(r: Any) -> list[Any]:
            p = r.pipeline(transaction=False)
            for (name, after, _since), (_n, gen, members) in zip(specs, plan, strict=True):
                for epoch in k.epochs(name, after, k.live_until(name, after)):
                    for group in members:
                        p.hgetall(k.usage(name, gen, epoch, group))
                for group in members:
                    p.mget([k.claim(name, gen, group, label) for label in k.labels(name)])
            return p.execute()

        results = iter(self._run(read))
        self._scans = {}
        for (name, after, since), (_n, _gen, members) in zip(specs, plan, strict=True):
            rows: dict[tuple[str, int], list[float]] = {}
            for _epoch in k.epochs(name, after, k.live_until(name, after)):
                for group in members:
                    for text, value in next(results).items():
                        bucket, proc = split_field(text)
                        if proc != self._proc and bucket > after:
                            row = rows.setdefault((group, bucket), [0.0, 0, 0])
                            used, calls, unpriced = parse_usage(value)
                            row[0] += used
                            row[1] += calls
                            row[2] += unpriced
            for (n, group), own in self._own.items():
                for bucket, mine in own.items():
                    if n == name and bucket > after:
                        row = rows.setdefault((group, bucket), [0.0, 0, 0])
                        for i in range(3):
                            row[i] += mine[i]
            fired: list[Fired] = []
            for group in members:
                for label, (alerted, win, at, used, owner) in self._claims_in(name, group, next(results)).items():
                    if win >= since:
                        fired.append(Fired(name, group, win, label, at, used, alerted, _pid_of(owner)))
            fired.sort(key=lambda f: f.fired_at)
            self._scans[name] = ([(g, b, r[0], int(r[1]), int(r[2])) for (g, b), r in rows.items()], fired)
        self._marks_fresh = True
        return True

    def scan(self, budget: str, after: float, since: float) -> tuple[list[UsageRow], list[Fired]]:
        if budget not in self._scans:
            if budget not in self.keys.budgets:
                return [], []
            self.prefetch([(budget, after, since)])
            self._marks_fresh = False
        return self._scans.pop(budget, ([], []))

    def prune(self, budget: str, usage_before: float, fired_before: float) -> None:
        """Nothing to do: every key expires on its own after its window."""


def _pid_of(owner: str) -> int:
    parts = owner.split(":")
    return int(parts[-2]) if len(parts) >= 3 and parts[-2].isdigit() else 0


def _reason(exc: BaseException) -> str:
    """A short human reason for a Redis failure (never the URL's password: redis-py does not print it)."""
    name = type(exc).__name__
    text = " ".join(str(exc).split()) or name
    low = text.lower()
    if name == "AuthenticationError" or "wrongpass" in low or "noauth" in low or "invalid password" in low:
        return f"refused the credentials (check the user and password in the URL): {text}"
    if "readonly" in low:
        return f"is a read-only replica (point budget_store at the primary): {text}"
    if name in ("TimeoutError", "timeout") or "timed out" in low:
        return f"did not answer in time ({text})"
    if name == "ConnectionError" or isinstance(exc, OSError):
        return f"is unreachable ({text})"
    return f"failed ({name}: {text})"
