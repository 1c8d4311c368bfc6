"""Cost in USD from token usage: user overrides first, then genai-prices' offline data.

genai-prices' general calculator costs ~100 us per call, too much for the hot path. For models whose
token prices are flat (no tiers), the price is linear in the token counts, so we probe genai-prices once
per (provider, model, day) for the cost of one million tokens of each kind and reuse those coefficients.
Tiered models fall back to genai-prices on every call. tests/test_pricing.py checks both paths agree.
An unknown model is "unpriced": ``None``, never zero.
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from ..config import ModelPrice
from .usage import Usage

log = logging.getLogger(__name__)

_MTOK = 1_000_000
# genai-prices provider ids for our provider names, where they differ.
_PROVIDER_IDS = {"azure.ai.openai": "azure", "gcp.gemini": "google", "gcp.vertex_ai": "google",
                 "aws.bedrock": "aws", "mistral_ai": "mistral", "x_ai": "x-ai"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class LinearPrice:
    """USD per token for each partition of input and output."""

    uncached_input: float
    cache_read: float
    cache_write: float
    output: float

    def cost(self, usage: Usage) -> float:
        inp = usage.input_tokens or 0
        cr = usage.cache_read_tokens or 0
        cw = usage.cache_write_tokens or 0
        return (
            max(inp - cr - cw, 0) * self.uncached_input
            + cr * self.cache_read
            + cw * self.cache_write
            + (usage.output_tokens or 0) * self.output
        )


def _from_override(price: ModelPrice) -> LinearPrice:
    return LinearPrice(
        uncached_input=price.input / _MTOK,
        cache_read=(price.cache_read if price.cache_read is not None else price.input) / _MTOK,
        cache_write=(price.cache_write if price.cache_write is not None else price.input) / _MTOK,
        output=price.output / _MTOK,
    )


class _GenaiPricesModel:
    """One genai-prices model: linear coefficients when its prices are flat, else the full calculator."""

    def __init__(self, model: Any, provider: Any, when: _dt.datetime) -> None:
        from genai_prices.types import TieredPrices

        self._model, self._provider = model, provider
        prices = model.get_prices(when)
        tiered = any(isinstance(v, TieredPrices) for v in vars(prices).values())
        self.linear = None if tiered else self._probe(when)

    def _total(self, when: _dt.datetime, **counts: int) -> float:
        from genai_prices import Usage as GPUsage

        calc = self._model.calc_price(GPUsage(**counts), self._provider, genai_request_timestamp=when)
        return float(calc.total_price)

    def _probe(self, when: _dt.datetime) -> LinearPrice:
        m = _MTOK
        base = self._total(when, input_tokens=m)
        return LinearPrice(
            uncached_input=base / m,
            cache_read=self._total(when, input_tokens=m, cache_read_tokens=m) / m,
            cache_write=self._total(when, input_tokens=m, cache_write_tokens=m) / m,
            output=self._total(when, output_tokens=m) / m,
        )

    def cost(self, usage: Usage, when: _dt.datetime) -> float:
        if self.linear is not None:
            return self.linear.cost(usage)
        return self._total(
            when,
            input_tokens=usage.input_tokens or 0,
            cache_read_tokens=usage.cache_read_tokens or 0,
            cache_write_tokens=usage.cache_write_tokens or 0,
            output_tokens=usage.output_tokens or 0,
        )


FREE = LinearPrice(0.0, 0.0, 0.0, 0.0)
#: Built-in provider-wide prices, used when no user override matches: a local Ollama server sends no token
#: bill. Users replace one with a ``provider:*`` override (or per model with ``provider:model`` / ``model``).
PROVIDER_DEFAULTS: dict[str, LinearPrice] = {"ollama": FREE}


class PriceBook:
    """Thread-safe cost lookup with a per-(provider, model, day) cache.

    Order: user override for ``provider:model``, then ``model``, then ``provider:*``; the built-in provider
    default (:data:`PROVIDER_DEFAULTS`); genai-prices."""

    def __init__(self, overrides: dict[str, ModelPrice] | None = None) -> None:
        self._overrides = {k: _from_override(v) for k, v in (overrides or {}).items()}
        self._provider_prices = {**PROVIDER_DEFAULTS}
        for key, price in self._overrides.items():
            provider, sep, model = key.partition(":")
            if sep and model == "*":
                self._provider_prices[provider] = price
        # (provider, model) -> (UTC day, price): prices can change by date, so an entry holds for its day only.
        self._cache: dict[tuple[str, str], tuple[int, LinearPrice | _GenaiPricesModel | None]] = {}
        self._lock = threading.Lock()

    def cost(self, provider: str, model: str | None, usage: Usage) -> float | None:
        """USD for ``usage`` of ``model``, or None when the model has no known price."""
        if not model or not usage.known:
            return None
        day = int(time.time() // 86400)
        hit = self._cache.get((provider, model))
        if hit is None or hit[0] != day:
            price = self._resolve(provider, model)
            with self._lock:
                if len(self._cache) >= _CACHE_MAX:
                    self._cache.clear()
                self._cache[(provider, model)] = (day, price)
        else:
            price = hit[1]
        if price is None:
            return None
        if type(price) is LinearPrice:
            return price.cost(usage)
        return price.cost(usage, _dt.datetime.now(_dt.UTC))  # type: ignore[union-attr]

    def _resolve(self, provider: str, model: str) -> LinearPrice | _GenaiPricesModel | None:
        """The price of ``model`` today: flat coefficients when they are linear, else genai-prices' model."""
        override = self._overrides.get(f"{provider}:{model}") or self._overrides.get(model)
        if override is None:
            override = self._provider_prices.get(provider)
        if override is not None:
            return override
        entry = self._lookup(provider, model, _dt.datetime.now(_dt.UTC))
        return entry.linear if entry is not None and entry.linear is not None else entry

    @staticmethod
    def _lookup(provider: str, model: str, when: _dt.datetime) -> _GenaiPricesModel | None:
        from genai_prices import data_snapshot

        try:
            snapshot = data_snapshot.get_snapshot()
            gp_provider, gp_model = snapshot.find_provider_model(
                model, None, _PROVIDER_IDS.get(provider, provider), None
            )
        except LookupError:
            log.debug("no price for %s model %s", provider, model)
            return None
        return _GenaiPricesModel(gp_model, gp_provider, when)


_CACHE_MAX = 4_096  # (provider, model) pairs; past this the cache starts over


def pricing_data_version() -> str:
    """The genai-prices package version (its bundled data snapshot)."""
    from importlib.metadata import version

    return version("genai-prices")
