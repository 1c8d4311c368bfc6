"""Budget definitions: the validated ``Budget`` model, its window arithmetic and its call filters.

A budget is ``limit`` (USD or tokens) per window. Calendar windows (``daily``, ``weekly``, ``monthly``)
start at local midnight / Monday 00:00 / the 1st 00:00 in ``timezone``; a rolling window (``1h``,
``30m``, ``7d``...) is the last that-long, kept in 60 buckets so usage leaves it in steps of 1/60.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo, field_validator

from .. import semconv as sc

Level = Literal["info", "warning", "critical"]
LEVELS: tuple[str, ...] = ("info", "warning", "critical")
CALENDAR_PERIODS = ("daily", "weekly", "monthly")
TOKEN_TYPES: tuple[str, ...] = sc.TOKEN_TYPES
SCOPE_FIELDS = ("provider", "model", "operation", "service")
DEFAULT_THRESHOLDS = (0.5, 0.7, 0.8, 1.0)
DEFAULT_LEVELS = {"warning": 0.7, "critical": 0.9}
PROJECTED = "projected"
MIN_ROLLING_S = 60
ROLLING_BUCKETS = 60
USAGE_FIELDS = {
    "input": "input_tokens",
    "output": "output_tokens",
    "cache_read": "cache_read_tokens",
    "cache_write": "cache_write_tokens",
    "reasoning": "reasoning_tokens",
}
_DURATION = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_UNIT_S = (604800, 86400, 3600, 60, 1)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")

#: True while Settings validates its budgets (Budget() then leaves error reporting to Settings).
NESTED: contextvars.ContextVar[bool] = contextvars.ContextVar("llm_otel_budget_nested", default=False)


def parse_duration(text: str) -> int | None:
    """Seconds in a Prometheus-style duration (``1h``, ``1h30m``, ``7d``), or None if it is not one."""
    m = _DURATION.match(text)
    if not m or not any(m.groups()):
        return None
    return sum(int(v) * unit for v, unit in zip(m.groups(), _UNIT_S, strict=True) if v)


def threshold_label(value: float) -> str:
    """``0.8`` -> ``"0.8"``, ``1`` -> ``"1.0"``: the string used in metric attributes and the state file."""
    return repr(float(value))


def glob_regex(pattern: str) -> str:
    """A ``*`` glob as an anchored-by-caller regular expression (the rest is literal)."""
    return ".*".join(re.escape(part) for part in pattern.split("*"))


class ValueMatcher:
    """One scope entry: exact values and ``*`` globs."""

    __slots__ = ("exact", "patterns")

    def __init__(self, values: tuple[str, ...]) -> None:
        self.exact = frozenset(v for v in values if "*" not in v)
        globs = [glob_regex(v) for v in values if "*" in v]
        self.patterns = re.compile("|".join(f"(?:{g})" for g in globs)) if globs else None

    def __call__(self, value: str | None) -> bool:
        if value is None:
            return False
        if value in self.exact:
            return True
        return self.patterns is not None and self.patterns.fullmatch(value) is not None


class Budget(BaseModel):
    """One budget. See docs/budgets.md for every field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    limit: float = Field(gt=0)
    unit: Literal["USD", "tokens"] = "USD"
    token_types: tuple[str, ...] | None = Field(default=None, validate_default=True)
    """Token budgets: which ``gen_ai.token.type`` values count (default input and output)."""
    period: str
    timezone: str = "UTC"
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
    levels: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_LEVELS))
    """Lowest threshold of each level: a threshold gets the highest level whose floor it reaches, else info."""
    scope: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    group_by: tuple[str, ...] = ()
    action: Literal["alert", "block"] = "alert"
    forecast: bool = True
    forecast_after: float = Field(default=0.1, ge=0, lt=1)
    """Project only after this fraction of the window has passed (early rates are noise)."""
    forecast_level: Level = "warning"

    _rolling_s: int | None = PrivateAttr(default=None)
    _bucket_s: int = PrivateAttr(default=0)
    _tz: ZoneInfo = PrivateAttr()
    _matchers: tuple[tuple[str, ValueMatcher], ...] = PrivateAttr(default=())

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            if NESTED.get():
                raise  # inside Settings: pydantic merges it with the budgets[...] location
            from ..config import ConfigError, describe_errors

            where = f"budget {data.get('name')!r}" if data.get("name") else "budget"
            raise ConfigError(describe_errors(exc, where, prefix=f"budgets[{data.get('name', '?')}]")) from None

    # --- validation ----------------------------------------------------------------------------------------
    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit")
        return value

    @field_validator("token_types")
    @classmethod
    def _token_types(cls, value: tuple[str, ...] | None, info: ValidationInfo) -> tuple[str, ...] | None:
        if value is None:
            return ("input", "output") if info.data.get("unit") == "tokens" else None
        if info.data.get("unit") != "tokens":
            raise ValueError("only applies to unit: tokens")
        if not value:
            raise ValueError("must name at least one token type")
        for kind in value:
            if kind not in TOKEN_TYPES:
                raise ValueError(f"{kind!r} is not a token type; use {', '.join(TOKEN_TYPES)}")
        return tuple(dict.fromkeys(value))

    @field_validator("period")
    @classmethod
    def _period(cls, value: str) -> str:
        if value in CALENDAR_PERIODS:
            return value
        seconds = parse_duration(value)
        if seconds is None:
            raise ValueError("must be daily, weekly, monthly or a rolling duration such as 1h, 30m, 7d or 1h30m")
        if seconds < MIN_ROLLING_S:
            raise ValueError(f"a rolling window must be at least 1m (got {seconds} s)")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("unknown time zone; use an IANA name such as UTC or Europe/Berlin") from None
        return value

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value:
            raise ValueError("must list at least one threshold")
        for t in value:
            if not 0 < t <= 10:
                raise ValueError(f"{t} is not a fraction of the limit in (0, 10] (0.8 means 80%)")
        if len(set(value)) != len(value):
            raise ValueError("must not repeat a threshold")
        return tuple(sorted(value))

    @field_validator("levels")
    @classmethod
    def _levels(cls, value: dict[str, float]) -> dict[str, float]:
        for name, floor in value.items():
            if name not in LEVELS:
                raise ValueError(f"{name!r} is not a level; use info, warning or critical")
            if floor < 0:
                raise ValueError(f"{name}: a level's lowest threshold must be >= 0")
        ordered = [value[n] for n in LEVELS if n in value]
        if ordered != sorted(ordered):
            raise ValueError("floors must rise from info to warning to critical")
        return value

    @field_validator("scope", mode="before")
    @classmethod
    def _scope(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        out: dict[str, tuple[str, ...]] = {}
        for key, raw in value.items():
            if not isinstance(key, str) or not _KEY.match(key):
                raise ValueError(f"{key!r} is not a valid key (provider, model, operation, service or a context key)")
            values = (raw,) if isinstance(raw, str) else raw
            if not isinstance(values, list | tuple) or not values or not all(isinstance(v, str) and v for v in values):
                raise ValueError(f"{key}: must be a non-empty string or a list of them")
            out[key] = tuple(values)
        return out

    @field_validator("group_by", mode="before")
    @classmethod
    def _group_by(cls, value: Any) -> Any:
        keys = (value,) if isinstance(value, str) else value
        if isinstance(keys, list | tuple):
            for key in keys:
                if not isinstance(key, str) or not _KEY.match(key):
                    raise ValueError(
                        f"{key!r} is not a valid key (provider, model, operation, service or a context key)"
                    )
            if len(set(keys)) != len(keys):
                raise ValueError("must not repeat a key")
            return tuple(keys)
        return value

    def model_post_init(self, _context: Any) -> None:
        self._tz = ZoneInfo(self.timezone)
        if self.period not in CALENDAR_PERIODS:
            self._rolling_s = parse_duration(self.period)
            self._bucket_s = max(1, self._rolling_s // ROLLING_BUCKETS)  # type: ignore[operator]
        self._matchers = tuple((key, ValueMatcher(values)) for key, values in self.scope.items())

    # --- derived -------------------------------------------------------------------------------------------
    @property
    def rolling_s(self) -> int | None:
        """Window length in seconds for rolling budgets; None for calendar ones."""
        return self._rolling_s

    @property
    def bucket_s(self) -> int:
        """Rolling budgets: the bucket width (window / 60, at least 1 s)."""
        return self._bucket_s

    @property
    def tz(self) -> ZoneInfo:
        return self._tz

    @property
    def context_keys(self) -> tuple[str, ...]:
        """``llm_otel.context`` keys this budget reads (scope and group_by)."""
        keys = [k for k in (*self.scope, *self.group_by) if k not in SCOPE_FIELDS]
        return tuple(dict.fromkeys(keys))

    def level_of(self, threshold: float) -> str:
        level = "info"
        for name in LEVELS:
            floor = self.levels.get(name)
            if floor is not None and threshold >= floor:
                level = name
        return level

    # --- windows -------------------------------------------------------------------------------------------
    def window(self, ts: float) -> tuple[float, float]:
        """The window containing unix time ``ts``: ``[start, end)`` (rolling: ``(ts - length, ts]``)."""
        if self._rolling_s is not None:
            return ts - self._rolling_s, ts
        return calendar_window(self.period, self._tz, ts)

    def live_after(self, ts: float) -> float:
        """Buckets strictly after this count at ``ts`` (rolling: those ending inside the window)."""
        if self._rolling_s is not None:
            return ts - self._rolling_s - self._bucket_s
        return calendar_window(self.period, self._tz, ts)[0] - 1

    # --- calls ---------------------------------------------------------------------------------------------
    @property
    def matchers(self) -> tuple[tuple[str, ValueMatcher], ...]:
        """Compiled ``scope``: (key, matcher) pairs."""
        return self._matchers


def call_field(key: str, provider: str, operation: str, model: str | None, service: str | None,
               attributes: Mapping[str, str]) -> str | None:  # fmt: skip
    """A call's value for a scope / group_by key: a built-in field or an ``llm_otel.context`` key."""
    if key == "provider":
        return provider
    if key == "model":
        return model
    if key == "operation":
        return operation
    if key == "service":
        return service
    return attributes.get(key)


def scope_matches(matchers: tuple[tuple[str, ValueMatcher], ...], provider: str, operation: str, model: str | None,
                  service: str | None, attributes: Mapping[str, str]) -> bool:  # fmt: skip
    return all(matcher(call_field(key, provider, operation, model, service, attributes)) for key, matcher in matchers)


def group_value(keys: tuple[str, ...], provider: str, operation: str, model: str | None, service: str | None,
                attributes: Mapping[str, str]) -> str:  # fmt: skip
    """One key: its value; several: ``k1=v1,k2=v2``; a missing value is ""."""
    if not keys:
        return ""
    if len(keys) == 1:
        return call_field(keys[0], provider, operation, model, service, attributes) or ""
    return ",".join(f"{k}={call_field(k, provider, operation, model, service, attributes) or ''}" for k in keys)


def calendar_window(period: str, tz: ZoneInfo, ts: float) -> tuple[float, float]:
    """``[start, end)`` of the daily / weekly / monthly window containing ``ts`` in time zone ``tz``."""
    day = datetime.fromtimestamp(ts, tz).date()
    if period == "daily":
        first, nxt = day, day + timedelta(days=1)
    elif period == "weekly":
        first = day - timedelta(days=day.weekday())
        nxt = first + timedelta(days=7)
    else:
        first = day.replace(day=1)
        nxt = (first + timedelta(days=32)).replace(day=1)
    return _midnight(first, tz), _midnight(nxt, tz)


def _midnight(day: date, tz: ZoneInfo) -> float:
    # Where DST skips midnight, fold=0 maps it to the transition instant: the day starts when it starts.
    return datetime.combine(day, time(0), tzinfo=tz).timestamp()


def forecast(budget: Budget, used: float, now: float, start: float, end: float) -> float | None:
    """Projected usage at the window's end at the current rate; None for rolling windows and too early."""
    if budget.rolling_s is not None or end <= start:
        return None
    elapsed = now - start
    if elapsed <= 0 or elapsed < budget.forecast_after * (end - start):
        return None
    return used * (end - start) / elapsed
