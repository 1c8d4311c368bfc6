"""Where budget state lives in Redis: key names, their expiry, and how values are written.

Every key starts with ``<prefix>:budget:`` (prefix ``llm-otel`` unless the URL says ``?prefix=``).

==============================================  ======  ==================================================
key                                             type    content
==============================================  ======  ==================================================
``alive``                                       string  a token; missing or new means Redis lost its data
``config`` / ``created`` / ``reset`` / ``gen``  hash    per budget name: definition (JSON), first seen,
                                                        last reset, reset generation
``u:<budget>:<gen>:<epoch>:<group>``            hash    ``<bucket>|<process>`` -> ``used calls unpriced``:
                                                        each process's own cumulative usage (idempotent)
``g:<budget>:<gen>:<epoch>``                    set     the groups with usage in that epoch
``f:<budget>:<gen>:<group>:<threshold>``        string  ``alerted|win|fired_at|used|owner``: the claim
==============================================  ======  ==================================================

``epoch`` is the window start for calendar budgets, and for rolling ones a chunk of one window length
(a rolling window's buckets live in two chunks). ``gen`` changes on ``llm-otel budget reset``, so usage
sent by a process that has not seen the reset yet lands in keys nobody reads. Usage and group keys expire
``MARGIN_S`` after the last window they can count for ends; a claim ``MARGIN_S`` after its window ends; the
small per-budget hashes and ``alive`` ``META_TTL_S`` after the last process touched them.
"""

from __future__ import annotations

from .rules import PROJECTED, Budget, calendar_window, threshold_label

MARGIN_S = 3600  # also absorbs clock differences between hosts and Redis
META_TTL_S = 40 * 86400  # longer than the longest window (a month)

# A threshold claim. An alert is claimed when there is no claim in the caller's window yet (the stored win is
# older than arm_after), when the claim there is only a mark (a process jumped past this threshold on the way
# to a higher one: the batch that really crossed it was written first and is claiming it now), or when it is
# this process's own claim for the same decision (a batch retried after its commit failed). An alert already
# claimed is never claimed again. A mark without an alert is written only where there is no claim, and moves
# a rolling claim's win forward (keeping whether it alerted), so the lower thresholds re-arm with the higher.
# KEYS[1] claim key; ARGV: value, win, arm_after, alert (1/0), expire at (unix ms), owner. Returns 1 if won.
CLAIM_LUA = """
local old = redis.call('GET', KEYS[1])
if old then
  local flag, win, owner = string.match(old, '^(%d)|([^|]*)|[^|]*|[^|]*|(.*)$')
  if owner == ARGV[6] and win == ARGV[2] then return 1 end
  if tonumber(win) >= tonumber(ARGV[3]) then
    if ARGV[4] == '1' and flag == '0' then
      redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[5])
      return 1
    end
    if ARGV[4] == '0' and tonumber(ARGV[2]) > tonumber(win) then
      redis.call('SET', KEYS[1], flag .. string.sub(ARGV[1], 2), 'PXAT', ARGV[5])
    end
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[5])
return 1
"""


class Layout:
    """Key names and expiries for one prefix; budgets must be known (``know``) before their keys are used."""

    def __init__(self, prefix: str) -> None:
        self.root = f"{prefix}:budget"
        self.alive = f"{self.root}:alive"
        self.config = f"{self.root}:config"
        self.created = f"{self.root}:created"
        self.reset = f"{self.root}:reset"
        self.gen = f"{self.root}:gen"
        self.meta = (self.config, self.created, self.reset, self.gen)
        self.budgets: dict[str, Budget] = {}
        self._labels: dict[str, tuple[str, ...]] = {}

    def know(self, budget: Budget) -> None:
        self.budgets[budget.name] = budget
        labels = [threshold_label(t) for t in budget.thresholds]
        if budget.forecast and budget.rolling_s is None:
            labels.append(PROJECTED)
        self._labels[budget.name] = tuple(labels)

    def labels(self, name: str) -> tuple[str, ...]:
        return self._labels[name]

    # --- keys ------------------------------------------------------------------------------------------------
    def usage(self, name: str, gen: int, epoch: int, group: str) -> str:
        return f"{self.root}:u:{name}:{gen}:{epoch}:{group}"

    def groups(self, name: str, gen: int, epoch: int) -> str:
        return f"{self.root}:g:{name}:{gen}:{epoch}"

    def claim(self, name: str, gen: int, group: str, label: str) -> str:
        return f"{self.root}:f:{name}:{gen}:{group}:{label}"

    def pattern(self, name: str) -> str:
        """Every usage, group and claim key of a budget (all generations), for SCAN."""
        return f"{self.root}:[ugf]:{name}:*"

    @staticmethod
    def gen_of(key: str, name: str) -> int | None:
        """The generation in a key from ``pattern(name)``."""
        rest = key.split(f":{name}:", 1)[1] if f":{name}:" in key else ""
        head = rest.split(":", 1)[0]
        return int(head) if head.isdigit() else None

    # --- epochs and expiry -----------------------------------------------------------------------------------
    def epoch(self, name: str, bucket: int) -> int:
        span = self.budgets[name].rolling_s
        return bucket if span is None else bucket // span * span

    def usage_expiry(self, name: str, epoch: int) -> int:
        """Unix seconds after which nothing in that epoch can count."""
        b = self.budgets[name]
        if b.rolling_s is None:
            return int(calendar_window(b.period, b.tz, float(epoch))[1]) + MARGIN_S
        return epoch + 2 * b.rolling_s + b.bucket_s + MARGIN_S

    def claim_expiry(self, name: str, win: float) -> int:
        b = self.budgets[name]
        if b.rolling_s is None:
            return int(calendar_window(b.period, b.tz, win)[1]) + MARGIN_S
        return int(win) + b.rolling_s + MARGIN_S

    def arm_after(self, name: str, win: float) -> float:
        """A claim with a win before this is from an earlier window: it no longer counts."""
        span = self.budgets[name].rolling_s
        return win if span is None else win - span

    def epochs(self, name: str, after: float, upto: float) -> list[int]:
        """Epochs that hold buckets in ``(after, upto]``."""
        b = self.budgets[name]
        if b.rolling_s is None:
            out, ts = [], after + 1
            while ts <= upto and len(out) < 400:
                start, end = calendar_window(b.period, b.tz, ts)
                out.append(int(start))
                ts = end
            return out
        span = b.rolling_s
        first = int(after + 1) // span * span
        return list(range(first, int(upto) // span * span + 1, span))

    def live_until(self, name: str, after: float) -> float:
        """For a refresh reading buckets after ``after``: the latest bucket that can exist yet."""
        b = self.budgets[name]
        if b.rolling_s is None:
            return after + 1  # the current window only
        return after + b.rolling_s + 2 * b.bucket_s


def field(bucket: int, proc: str) -> str:
    return f"{bucket}|{proc}"


def split_field(text: str) -> tuple[int, str]:
    bucket, proc = text.split("|", 1)
    return int(bucket), proc


def usage_value(row: list[float]) -> str:
    return f"{row[0]!r} {int(row[1])} {int(row[2])}"


def parse_usage(text: str) -> tuple[float, int, int]:
    used, calls, unpriced = text.split()
    return float(used), int(calls), int(unpriced)


def claim_value(alerted: bool, win: float, fired_at: float, used: float, owner: str) -> str:
    return f"{int(alerted)}|{float(win)!r}|{float(fired_at)!r}|{float(used)!r}|{owner}"


def parse_claim(text: str) -> tuple[bool, float, float, float, str]:
    alerted, win, fired_at, used, owner = text.split("|", 4)
    return alerted == "1", float(win), float(fired_at), float(used), owner
