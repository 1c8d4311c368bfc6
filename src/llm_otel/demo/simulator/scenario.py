"""Scenario tokens: how one request should behave, and the usage it reports in normalized form."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["SCENARIO_HELP", "Scenario", "ScenarioError", "full_norm", "norm", "parse_scenario"]

SCENARIO_HELP = """\
Scenario tokens (header x-sim-scenario, comma-separated, or model suffix after '+'):
  429xN, 500xN, 503xN   the first N attempts answer with that status (may be chained)
  ra=S | ra=none        retry-after seconds on those errors (default 0.05)
  ra_ms=MS              retry-after-ms on those errors (Bedrock: x-amz-retry-after)
  ttft=S                streams: delay before the first event; others: extra delay
  slow=S                streams: delay between content chunks
  chunks=N              number of content chunks (default 4)
  cut                   streams: drop the connection after 2 content chunks
  sse_error             streams: send an error event after 2 content chunks
  no_usage              never report usage
  always_usage          OpenAI streams: send the usage chunk even when not requested
  content_filter        OpenAI chat streams: open with Azure's content-filter chunk
                        (empty id and model, prompt_filter_results, no choices)
  empty_delta           OpenAI /v1/completions streams: the final chunk's choice also
                        carries "delta": {} (as some OpenAI-compatible servers send it)
  tool=NAME             Gemini: answer with a call to function NAME until it is answered
  in=N out=N cached=N cwrite=N reasoning=N
                        usage (in includes cached+cwrite, out includes reasoning;
                        defaults 12, 8, 4, 3, 2)
  rl_req=N rl_tok=N     remaining-requests / remaining-tokens header values
"""

_DEFAULT_RETRY_AFTER = 0.05


class ScenarioError(ValueError):
    """A scenario token could not be understood."""


@dataclass
class Scenario:
    """The parsed scenario tokens of one request (defaults: a plain, successful answer)."""

    errors: list[int] = field(default_factory=list)
    retry_after: float | None = _DEFAULT_RETRY_AFTER
    retry_after_ms: int | None = None
    ttft: float = 0.0
    slow: float = 0.0
    chunks: int = 4
    cut: bool = False
    sse_error: bool = False
    no_usage: bool = False
    always_usage: bool = False
    content_filter: bool = False
    empty_delta: bool = False
    input: int = 12
    cached: int = 4
    cache_write: int = 3
    output: int = 8
    reasoning: int = 2
    rl_req: int | None = None
    rl_tok: int | None = None
    tool: str | None = None  # Gemini: ask the client to call this function first (automatic function calling)

    @property
    def uncached(self) -> int:
        """Input tokens that were neither read from nor written to a cache."""
        return self.input - self.cached - self.cache_write

    @property
    def visible(self) -> int:
        """Output tokens that are not reasoning."""
        return self.output - self.reasoning


_ERROR_RE = re.compile(r"^(429|500|503)x(\d+)$")
_FLOAT_KEYS = {"ttft": "ttft", "slow": "slow"}
_INT_KEYS = {
    "chunks": "chunks",
    "in": "input",
    "out": "output",
    "cached": "cached",
    "cwrite": "cache_write",
    "reasoning": "reasoning",
    "rl_req": "rl_req",
    "rl_tok": "rl_tok",
    "ra_ms": "retry_after_ms",
}
_FLAGS = {"cut", "sse_error", "no_usage", "always_usage", "content_filter", "empty_delta"}


def parse_scenario(texts: list[str]) -> Scenario:
    """Parse comma-separated scenario strings; later tokens override earlier ones."""
    sc = Scenario()
    for text in texts:
        for raw in text.split(","):
            token = raw.strip()
            if token:
                _apply(sc, token)
    if sc.chunks < 1:
        raise ScenarioError("simulation scenario token 'chunks' must be at least 1")
    if sc.uncached < 0:
        raise ScenarioError(
            f"simulation scenario: in={sc.input} must be >= cached={sc.cached} + cwrite={sc.cache_write}"
        )
    if sc.visible < 0:
        raise ScenarioError(f"simulation scenario: out={sc.output} must be >= reasoning={sc.reasoning}")
    return sc


def _apply(sc: Scenario, token: str) -> None:
    """Apply one token to ``sc``."""
    m = _ERROR_RE.match(token)
    if m:
        sc.errors.extend([int(m.group(1))] * int(m.group(2)))
        return
    if token in _FLAGS:
        setattr(sc, token, True)
        return
    key, sep, value = token.partition("=")
    key = key.strip()
    value = value.strip()
    if sep and key == "tool" and value.isidentifier():
        sc.tool = value
        return
    if not sep or (key not in _INT_KEYS and key not in _FLOAT_KEYS and key != "ra"):
        raise ScenarioError(f"unknown simulation scenario token {token!r}")
    if key == "ra" and value.lower() == "none":
        sc.retry_after = None
        return
    try:
        number = int(value) if key in _INT_KEYS else float(value)
        if number < 0:
            raise ValueError(value)
    except ValueError:
        raise ScenarioError(f"bad value in simulation scenario token {token!r}") from None
    setattr(sc, "retry_after" if key == "ra" else _INT_KEYS.get(key) or _FLOAT_KEYS[key], number)


def norm(input: int, output: int, cache_read: int = 0, cache_write: int = 0, reasoning: int = 0) -> dict[str, int]:
    """Usage in normalized form (``input`` includes the cache, ``output`` includes reasoning)."""
    return {
        "input": input,
        "output": output,
        "cache_read": cache_read,
        "cache_write": cache_write,
        "reasoning": reasoning,
    }


def full_norm(sc: Scenario, *, cache_write: bool = True, reasoning: bool = True) -> dict[str, int]:
    """The scenario's whole usage, leaving out what an API does not report."""
    return norm(sc.input, sc.output, sc.cached, sc.cache_write if cache_write else 0, sc.reasoning if reasoning else 0)
