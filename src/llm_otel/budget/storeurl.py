"""``budget_store`` URLs: parsed and checked without importing the Redis client, shown with the password masked.

``redis://[user:password@]host[:port][/db][?options]``, ``rediss://`` (TLS) and ``unix:///path.sock?db=N``.
llm-otel's own options travel in the query string and are taken out before the rest reaches the client:
``refresh`` (seconds between reads of the shared totals, default 1), ``timeout`` (socket timeout in seconds,
default 1) and ``prefix`` (key prefix, default ``llm-otel``). Other query options go to redis-py unchanged.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit

SCHEMES = ("redis", "rediss", "unix")
DEFAULT_REFRESH_S = 1.0
DEFAULT_TIMEOUT_S = 1.0
DEFAULT_PREFIX = "llm-otel"


class StoreUrlError(ValueError):
    """A ``budget_store`` value that is not a usable Redis URL; the message says why (password masked)."""


@dataclass(frozen=True)
class StoreUrl:
    """A checked Redis URL: ``client_url`` for redis-py, ``shown`` for people (never the password)."""

    client_url: str
    shown: str
    refresh_s: float = DEFAULT_REFRESH_S
    timeout_s: float = DEFAULT_TIMEOUT_S
    prefix: str = DEFAULT_PREFIX
    extra: dict[str, str] = field(default_factory=dict)


def mask(url: str) -> str:
    """``url`` with any password replaced by ``***`` (also in a ``password=`` query option)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        cred, host = netloc.rsplit("@", 1)
        # user:password -> user:***; a lone credential may be a password written without the colon: hide it too
        netloc = f"{cred.split(':', 1)[0]}:***@{host}" if ":" in cred else f"***@{host}"
    query = parts.query
    if query:
        pairs = [(k, "***" if k.lower() == "password" else v) for k, v in parse_qsl(query, keep_blank_values=True)]
        query = urlencode(pairs, safe="*/")
    return _join(parts.scheme, netloc, parts.path, query)


def parse(url: str) -> StoreUrl:
    """Check ``url`` and split off llm-otel's options. Raises ``StoreUrlError`` (one line, password masked)."""
    shown = mask(url)
    if not isinstance(url, str) or not url.strip():
        raise StoreUrlError("expected a redis://, rediss:// or unix:// URL, for example redis://127.0.0.1:6379/0")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise StoreUrlError(f"{shown!r} is not a valid URL ({exc})") from None
    if parts.scheme not in SCHEMES:
        raise StoreUrlError(f"unsupported scheme {parts.scheme + '://' if parts.scheme else '(none)'} in {shown!r}: "
                            "expected redis://host:6379/0, rediss:// (TLS) or unix:///path/to/redis.sock")  # fmt: skip
    if parts.scheme == "unix":
        if not parts.path:
            raise StoreUrlError(f"{shown!r} names no socket path (unix:///path/to/redis.sock)")
    else:
        if not parts.hostname:
            raise StoreUrlError(f"{shown!r} names no host (redis://host:6379/0)")
        if port == 0:
            raise StoreUrlError(f"{shown!r}: port 0 is not a port")
        db = parts.path.strip("/")
        if db and not db.isdigit():
            raise StoreUrlError(f"{shown!r}: the path must be a database number such as /0 (got /{db})")
    options: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in ("refresh", "timeout", "prefix"):
            options[key] = value
        else:
            rest.append((key, value))
    if "db" in dict(rest) and not dict(rest)["db"].isdigit():
        raise StoreUrlError(f"{shown!r}: db must be a number (got {dict(rest)['db']!r})")
    refresh = _seconds(options.get("refresh"), DEFAULT_REFRESH_S, "refresh", shown, 0.05)
    timeout = _seconds(options.get("timeout"), DEFAULT_TIMEOUT_S, "timeout", shown, 0.01)
    prefix = options.get("prefix", DEFAULT_PREFIX)
    if not prefix or any(c in prefix for c in " *?[]{}"):
        raise StoreUrlError(f"{shown!r}: prefix must be non-empty, without spaces or * ? [ ] {{ }} (got {prefix!r})")
    client = _join(parts.scheme, parts.netloc, parts.path, urlencode(rest))
    return StoreUrl(client, mask(client), refresh, timeout, prefix, dict(rest))


def _join(scheme: str, netloc: str, path: str, query: str) -> str:
    """Like ``urlunsplit``, but keeps ``//`` with an empty host (``unix:///path``), as redis-py requires (and
    adds no ``://`` to a value that had no scheme)."""
    head = f"{scheme}://{netloc}" if scheme else netloc
    return head + path + (f"?{query}" if query else "")


def _seconds(raw: str | None, default: float, name: str, shown: str, least: float) -> float:
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise StoreUrlError(f"{shown!r}: {name} must be a number of seconds (got {raw!r})") from None
    if not value >= least:
        raise StoreUrlError(f"{shown!r}: {name} must be at least {least} s (got {raw})")
    return value


def check(value: str) -> str:
    """The ``budget_store`` setting's check: a valid URL, and the client installed. Returns the URL as given."""
    parse(value)
    if importlib.util.find_spec("redis") is None:
        raise StoreUrlError(f"{mask(value)!r} needs the Redis client: pip install 'llm-otel[redis]'")
    return value
