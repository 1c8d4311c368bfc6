"""A local HTTP server that imitates LLM provider APIs.

The test suite drives the real provider SDKs against it, and ``llm-otel demo`` uses it
to produce telemetry without network access or API keys. It uses the standard library
only and binds to the loopback interface.

APIs spoken (request path → ``api`` name used by :meth:`SimulatedProvider.requests` and
:meth:`SimulatedProvider.served_usage`):

* OpenAI, under ``/v1``: ``/chat/completions`` → ``openai.chat``, ``/responses`` →
  ``openai.responses``, ``/embeddings`` → ``openai.embeddings``, ``/completions`` →
  ``openai.completions``.
* Anthropic: ``/v1/messages`` → ``anthropic.messages``, ``/v1/messages/count_tokens``
  → ``anthropic.count_tokens``.
* Google Gemini: ``/{v1,v1beta,v1alpha}/models/{model}:generateContent`` and
  ``:streamGenerateContent`` → ``gemini.generate_content``, ``:embedContent`` and
  ``:batchEmbedContents`` → ``gemini.embed_content``, ``:countTokens`` →
  ``gemini.count_tokens``.
* AWS Bedrock runtime: ``/model/{id}/converse`` and ``/converse-stream`` →
  ``bedrock.converse``, ``/model/{id}/invoke`` and ``/invoke-with-response-stream`` →
  ``bedrock.invoke``.
* Groq (OpenAI wire format under ``/openai/v1``, recognised by the Groq SDK's user agent):
  ``/openai/v1/chat/completions`` → ``groq.chat`` (streams carry ``x_groq.usage`` on the
  final chunk, as Groq does), ``/openai/v1/embeddings`` → ``groq.embeddings``.
* Mistral (OpenAI-like wire format, recognised by the ``mistralai`` SDK's user agent):
  ``/v1/chat/completions`` → ``mistral.chat`` (streams always carry usage on the last
  chunk, as Mistral does), ``/v1/embeddings`` → ``mistral.embeddings``.
* Cohere v2: ``/v2/chat`` → ``cohere.chat`` (SSE when ``"stream": true``, usage in the
  ``message-end`` event), ``/v2/embed`` → ``cohere.embed``. Usage is reported as billed units
  (``in``/``out``); ``tokens`` adds a fixed prompt overhead the way Cohere's raw counts do.
* Ollama: ``/api/chat`` → ``ollama.chat``, ``/api/generate`` → ``ollama.generate`` (NDJSON
  streams, counts on the final ``done: true`` object), ``/api/embed`` → ``ollama.embed``.

Behaviour is chosen per request with scenario tokens, given in the ``x-sim-scenario``
header (comma-separated) or as a model-name suffix after ``+`` (for example
``gpt-4o-mini+429x1,ra=0.05``). See :data:`SCENARIO_HELP`.

Usage numbers use normalized semantics: ``in`` includes cache reads and cache writes,
``out`` includes reasoning. Each API reports them in its own shape (for example
Anthropic's ``input_tokens`` excludes the cache, Gemini's ``candidatesTokenCount``
excludes thoughts).

Run standalone with ``python -m llm_otel.demo.simulated_provider --port N``. For use from
another process there are control endpoints: ``GET /_sim/health``, ``GET /_sim/requests``,
``GET /_sim/usage`` and ``POST /_sim/reset``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import random
import re
import secrets
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import unquote

__all__ = ["SCENARIO_HELP", "SimulatedProvider", "main"]

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
  in=N out=N cached=N cwrite=N reasoning=N
                        usage (in includes cached+cwrite, out includes reasoning;
                        defaults 12, 8, 4, 3, 2)
  rl_req=N rl_tok=N     remaining-requests / remaining-tokens header values
"""

_DEFAULT_RETRY_AFTER = 0.05
_REQUESTS_LIMIT = 10000
_TOKENS_LIMIT = 2000000
_TOKENS_REMAINING = 1999000
_CUT_AFTER = 2
_VOCABULARY = (
    "the quick simulated model answers every prompt with a few short deterministic words "
    "so that tests can check spans metrics and logs without a network"
)
_WORDS = tuple(_VOCABULARY.split())


class _ScenarioError(ValueError):
    """A scenario token could not be understood."""


class _Abort(Exception):
    """The client went away or the server is stopping; stop writing."""


# --------------------------------------------------------------------------------------
# Scenarios and usage
# --------------------------------------------------------------------------------------


@dataclass
class _Scenario:
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
_FLAGS = {"cut", "sse_error", "no_usage", "always_usage"}


def _parse_scenario(texts: list[str]) -> _Scenario:
    """Parse comma-separated scenario strings; later tokens override earlier ones."""
    sc = _Scenario()
    for text in texts:
        for raw in text.split(","):
            token = raw.strip()
            if not token:
                continue
            m = _ERROR_RE.match(token)
            if m:
                sc.errors.extend([int(m.group(1))] * int(m.group(2)))
                continue
            if token in _FLAGS:
                setattr(sc, token, True)
                continue
            key, sep, value = token.partition("=")
            key = key.strip()
            value = value.strip()
            if sep and key == "tool" and value.isidentifier():
                sc.tool = value
                continue
            if not sep or (key not in _INT_KEYS and key not in _FLOAT_KEYS and key != "ra"):
                raise _ScenarioError(f"unknown simulation scenario token {token!r}")
            try:
                if key == "ra":
                    sc.retry_after = None if value.lower() == "none" else float(value)
                    if sc.retry_after is not None and sc.retry_after < 0:
                        raise ValueError(value)
                elif key in _FLOAT_KEYS:
                    number = float(value)
                    if number < 0:
                        raise ValueError(value)
                    setattr(sc, _FLOAT_KEYS[key], number)
                else:
                    number = int(value)
                    if number < 0:
                        raise ValueError(value)
                    setattr(sc, _INT_KEYS[key], number)
            except ValueError:
                raise _ScenarioError(f"bad value in simulation scenario token {token!r}") from None
    if sc.chunks < 1:
        raise _ScenarioError("simulation scenario token 'chunks' must be at least 1")
    if sc.uncached < 0:
        raise _ScenarioError(
            f"simulation scenario: in={sc.input} must be >= cached={sc.cached} + cwrite={sc.cache_write}"
        )
    if sc.visible < 0:
        raise _ScenarioError(f"simulation scenario: out={sc.output} must be >= reasoning={sc.reasoning}")
    return sc


def _norm(input: int, output: int, cache_read: int = 0, cache_write: int = 0, reasoning: int = 0) -> dict[str, int]:
    return {
        "input": input,
        "output": output,
        "cache_read": cache_read,
        "cache_write": cache_write,
        "reasoning": reasoning,
    }


def _full_norm(sc: _Scenario, *, cache_write: bool = True, reasoning: bool = True) -> dict[str, int]:
    return _norm(sc.input, sc.output, sc.cached, sc.cache_write if cache_write else 0, sc.reasoning if reasoning else 0)


# --------------------------------------------------------------------------------------
# Content helpers
# --------------------------------------------------------------------------------------


def _split(text: str, n: int) -> list[str]:
    """Split text into n consecutive pieces (some may be empty if text is short)."""
    size = len(text)
    return [text[size * i // n : size * (i + 1) // n] for i in range(n)]


def _word_pieces(rng: random.Random, n: int) -> list[str]:
    pieces = []
    for i in range(n):
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 3)))
        pieces.append(words if i == 0 else " " + words)
    return pieces


def _sample_from_schema(schema: Any, root: Any, depth: int = 0) -> Any:
    """Build a small value that satisfies a (simple) JSON schema."""
    if depth > 10 or not isinstance(schema, dict):
        return "x"
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return _sample_from_schema(target, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "any_of", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            non_null = [o for o in options if not (isinstance(o, dict) and o.get("type") in ("null", "NULL"))]
            return _sample_from_schema((non_null or options)[0], root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if str(k).lower() != "null"]
        kind = kinds[0] if kinds else "null"
    kind = str(kind).lower() if kind is not None else None
    if kind is None:
        if "properties" in schema:
            kind = "object"
        elif "items" in schema:
            kind = "array"
    if kind == "object":
        props = schema.get("properties") or {}
        return {name: _sample_from_schema(sub, root, depth + 1) for name, sub in props.items()}
    if kind == "array":
        count = int(schema.get("minItems") or schema.get("min_items") or 0)
        return [_sample_from_schema(schema.get("items"), root, depth + 1) for _ in range(count)]
    if kind == "integer":
        return max(1, int(schema.get("minimum", 1)))
    if kind == "number":
        return float(max(1.0, float(schema.get("minimum", 1.0))))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    fmt = schema.get("format")
    if fmt == "date-time":
        return "2025-01-01T00:00:00Z"
    if fmt == "date":
        return "2025-01-01"
    if fmt == "uuid":
        return "00000000-0000-4000-8000-000000000000"
    if fmt == "email":
        return "x@example.com"
    if fmt in ("uri", "url"):
        return "http://example.com/"
    return "x"


def _json_from_schema(schema: Any) -> str:
    return json.dumps(_sample_from_schema(schema, schema), separators=(",", ":"))


def _embedding(rng_seed: str, dims: int) -> list[float]:
    rng = random.Random(rng_seed)
    return [round(rng.uniform(-1.0, 1.0), 6) for _ in range(dims)]


def _sse(data: Any, event: str | None = None, sep: str = "\n\n") -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}{sep}".encode()


def _aws_event(headers: dict[str, str], payload: bytes) -> bytes:
    """Encode one AWS event-stream message (prelude CRC32 and message CRC32)."""
    encoded = b""
    for name, value in headers.items():
        n = name.encode()
        v = value.encode()
        encoded += bytes([len(n)]) + n + b"\x07" + struct.pack(">H", len(v)) + v
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    message = prelude + struct.pack(">I", zlib.crc32(prelude) & 0xFFFFFFFF) + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message) & 0xFFFFFFFF)


def _aws_json_event(event_type: str, payload: Any) -> bytes:
    return _aws_event(
        {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"},
        json.dumps(payload, separators=(",", ":")).encode(),
    )


def _aws_exception(exception_type: str, message: str) -> bytes:
    return _aws_event(
        {":exception-type": exception_type, ":content-type": "application/json", ":message-type": "exception"},
        json.dumps({"message": message}).encode(),
    )


def _rfc3339(seconds_from_now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds_from_now))


# --------------------------------------------------------------------------------------
# Stream plans
# --------------------------------------------------------------------------------------


@dataclass
class _Step:
    kind: str  # "pre", "content" or "post"
    data: bytes | Callable[[], bytes]  # a callable is built at send time
    usage: dict[str, int] | None = None


@dataclass
class _StreamPlan:
    content_type: str
    steps: list[_Step]
    error: bytes
    headers: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# One request/response exchange
# --------------------------------------------------------------------------------------


class _Exchange:
    """State for one request: parsed inputs, scenario and response writing."""

    def __init__(self, provider: SimulatedProvider, handler: _Handler) -> None:
        self.provider = provider
        self.handler = handler
        self.started = time.monotonic()
        self.family = "unknown"
        self.flavour = ""  # an OpenAI-compatible provider's quirks: "groq", "mistral"
        self.api = "unknown"
        self.model = ""
        self.stream = False
        self.body: Any = None
        self.raw_body = b""
        self.scenario = _Scenario()
        self.record: dict[str, Any] | None = None
        self.served_seq = 0
        self.rng = random.Random(0)
        self.usage: dict[str, int] | None = None
        self.headers_sent = False

    # -- timing -------------------------------------------------------------------------

    def delay(self, seconds: float) -> None:
        """Sleep, but wake up (and abort) when the server stops."""
        if seconds > 0 and self.provider._stopping.wait(seconds):
            raise _Abort()

    def elapsed_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)

    # -- usage accounting ---------------------------------------------------------------

    def _set_usage(self, usage: dict[str, int] | None) -> dict[str, int] | None:
        """Make ``usage`` this response's latest delivered usage; return the previous one."""
        previous = self.usage
        self.provider._replace_usage((self.api, self.model), previous, usage)
        self.usage = usage
        if self.record is not None:
            self.record["usage"] = dict(usage) if usage else None
        return previous

    # -- writing ------------------------------------------------------------------------

    def _write(self, data: bytes, usage: dict[str, int] | None = None) -> None:
        """Write bytes; usage is committed before the write and rolled back on failure."""
        previous = self.usage
        if usage is not None:
            self._set_usage(usage)
        try:
            self.handler.wfile.write(data)
        except OSError:
            if usage is not None:
                self._set_usage(previous)
            self.handler.close_connection = True
            raise _Abort() from None

    def _send_head(self, status: int, headers: dict[str, str]) -> None:
        if self.record is not None:
            self.record["status"] = status
        h = self.handler
        try:
            h.send_response(status)
            for name, value in headers.items():
                h.send_header(name, value)
            h.end_headers()
        except OSError:
            h.close_connection = True
            raise _Abort() from None
        self.headers_sent = True

    def send_json(
        self, status: int, payload: Any, headers: dict[str, str] | None = None, usage: dict[str, int] | None = None
    ) -> None:
        """Send a complete JSON response with Content-Length (keep-alive friendly)."""
        data = json.dumps(payload, separators=(",", ":")).encode()
        all_headers = {"Content-Type": "application/json"}
        all_headers.update(self.provider._family_headers(self, status))
        all_headers.update(headers or {})
        all_headers["Content-Length"] = str(len(data))
        previous = self.usage
        if usage is not None:
            self._set_usage(usage)
        try:
            self._send_head(status, all_headers)
            self._write(data)
        except _Abort:
            if usage is not None:
                self._set_usage(previous)
            raise

    def run_stream(self, plan: _StreamPlan) -> None:
        """Send a chunked streaming response, applying ttft/slow/cut/sse_error."""
        sc = self.scenario
        headers = {"Content-Type": plan.content_type, "Cache-Control": "no-cache"}
        headers.update(self.provider._family_headers(self, 200))
        headers.update(plan.headers)
        headers["Transfer-Encoding"] = "chunked"
        self._send_head(200, headers)
        self.delay(sc.ttft)
        total_content = sum(1 for s in plan.steps if s.kind == "content")
        trigger = min(_CUT_AFTER, total_content)
        sent_content = 0
        for step in plan.steps:
            if step.kind == "content":
                if sent_content > 0:
                    self.delay(sc.slow)
                sent_content += 1
            data = step.data() if callable(step.data) else step.data
            self._chunk(data, step.usage)
            if step.kind == "content" and sent_content == trigger and (sc.cut or sc.sse_error):
                if sc.cut:
                    self.cut()
                    return
                self._chunk(plan.error)
                break
        self._write(b"0\r\n\r\n")

    def _chunk(self, data: bytes, usage: dict[str, int] | None = None) -> None:
        if data:
            self._write(b"%x\r\n%s\r\n" % (len(data), data), usage)

    def cut(self) -> None:
        """Drop the connection without the terminating chunk."""
        self.handler.close_connection = True
        with contextlib.suppress(OSError):
            self.handler.connection.shutdown(socket.SHUT_RDWR)

    def error(self, status: int, message: str, *, retryable: bool = False) -> None:
        """Send an error response in the format of the provider family."""
        body, headers = _error_payload(self.family, status, message)
        if retryable:
            sc = self.scenario
            if sc.retry_after is not None:
                headers["retry-after"] = _fmt_float(sc.retry_after)
            if sc.retry_after_ms is not None:
                headers["retry-after-ms"] = str(sc.retry_after_ms)
            if self.family == "gemini" and isinstance(body.get("error"), dict):
                delay = sc.retry_after_ms / 1000 if sc.retry_after_ms is not None else sc.retry_after
                if delay is not None:
                    info = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{delay:g}s"}
                    body["error"]["details"] = [info]
            if self.family == "bedrock":
                if sc.retry_after_ms is not None:
                    headers["x-amz-retry-after"] = str(sc.retry_after_ms)
                elif sc.retry_after is not None:
                    headers["x-amz-retry-after"] = str(round(sc.retry_after * 1000))
        self.send_json(status, body, headers)


def _fmt_float(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


_OPENAI_ERRORS = {
    400: ("invalid_request_error", "invalid_request"),
    404: ("invalid_request_error", "not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", "server_error"),
    503: ("server_error", "service_unavailable"),
}
_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
}
_GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_BEDROCK_ERRORS = {
    400: "ValidationException",
    404: "ResourceNotFoundException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}


def _error_payload(family: str, status: int, message: str) -> tuple[Any, dict[str, str]]:
    if family == "cohere":
        return {"message": message}, {}
    if family == "ollama":
        return {"error": message}, {}
    if family == "anthropic":
        kind = _ANTHROPIC_ERRORS.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}, {}
    if family == "gemini":
        body = {"code": status, "message": message, "status": _GOOGLE_STATUS.get(status, "UNKNOWN")}
        return {"error": body}, {}
    if family == "bedrock":
        kind = _BEDROCK_ERRORS.get(status, "InternalServerException")
        return {"message": message}, {"x-amzn-errortype": kind}
    kind, code = _OPENAI_ERRORS.get(status, ("server_error", "server_error"))
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}, {}


# --------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 300
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging."""

    def do_POST(self) -> None:
        self.server.provider._handle(self)

    do_GET = do_POST
    do_PUT = do_POST
    do_DELETE = do_POST


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], provider: SimulatedProvider) -> None:
        self.provider = provider
        self._track_lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._conn_threads: set[threading.Thread] = set()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), which can be slow; skip it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection, args=(request, client_address), name="simulated-provider-conn", daemon=True
        )
        with self._track_lock:
            self._conns.add(request)
            self._conn_threads.add(thread)
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            # A broken connection must not kill the server.
            with contextlib.suppress(Exception):
                self.finish_request(request, client_address)
        finally:
            self.shutdown_request(request)
            with self._track_lock:
                self._conns.discard(request)
                self._conn_threads.discard(threading.current_thread())

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about connection errors."""

    def close_connections(self) -> list[threading.Thread]:
        """Shut down all open client connections; return the threads serving them."""
        with self._track_lock:
            conns = list(self._conns)
            threads = list(self._conn_threads)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        return threads


# --------------------------------------------------------------------------------------
# Routing
# --------------------------------------------------------------------------------------

_OPENAI_ROUTES = {
    "/v1/chat/completions": "openai.chat",
    "/v1/responses": "openai.responses",
    "/v1/embeddings": "openai.embeddings",
    "/v1/completions": "openai.completions",
}
_AZURE_RE = re.compile(r"^/openai/(?:deployments/[^/]+|v1)(?P<rest>/.*)$")
_ANTHROPIC_ROUTES = {"/v1/messages": "anthropic.messages", "/v1/messages/count_tokens": "anthropic.count_tokens"}
_COHERE_ROUTES = {"/v2/chat": "cohere.chat", "/v2/embed": "cohere.embed"}
_OLLAMA_ROUTES = {"/api/chat": "ollama.chat", "/api/generate": "ollama.generate", "/api/embed": "ollama.embed"}
# OpenAI-compatible APIs told apart by the SDK's user agent: (user-agent fragment, path prefix, api prefix).
_OPENAI_FLAVOURS = (("groq/python", "/openai/v1/", "groq"), ("mistral-client-python", "/v1/", "mistral"))
_GEMINI_RE = re.compile(r"^/(?:v1|v1beta|v1beta1|v1alpha)/(?:.*/)?models/(?P<model>[^/]+?):(?P<method>[A-Za-z]+)$")
_GEMINI_METHODS = {
    "generateContent": "gemini.generate_content",
    "streamGenerateContent": "gemini.generate_content",
    "embedContent": "gemini.embed_content",
    "batchEmbedContents": "gemini.embed_content",
    "countTokens": "gemini.count_tokens",
}
_BEDROCK_RE = re.compile(r"^/model/(?P<model>.+)/(?P<op>converse|converse-stream|invoke|invoke-with-response-stream)$")


# --------------------------------------------------------------------------------------
# The public server
# --------------------------------------------------------------------------------------


class SimulatedProvider:
    """Stdlib HTTP server imitating OpenAI, Anthropic, Gemini and Bedrock runtime APIs.

    Use as a context manager or call :meth:`start` / :meth:`stop`. The server binds to
    127.0.0.1 (port 0 picks a free port) and serves each connection on its own daemon
    thread. ``seed`` makes generated text and embeddings deterministic; ``latency``
    (seconds) is added before every response.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, seed: int = 0, latency: float = 0.0) -> None:
        if host == "localhost":
            host = "127.0.0.1"
        if not host.startswith("127."):
            raise ValueError(f"SimulatedProvider binds to loopback only, not {host!r}")
        self._host = host
        self._port = int(port)
        self.seed = int(seed)
        self.latency = float(latency)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._requests: list[dict[str, Any]] = []
        self._usage: dict[tuple[str, str], dict[str, int]] = {}
        self._attempts: dict[tuple[str, str, str], int] = {}
        self._served = 0

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> SimulatedProvider:
        """Bind and serve in a background thread; returns self."""
        if self._server is not None:
            raise RuntimeError("SimulatedProvider is already started")
        self._stopping.clear()
        self._server = _Server((self._host, self._port), self)
        self._port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="simulated-provider", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close every connection and join the server threads."""
        server = self._server
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        threads = server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
        deadline = time.monotonic() + 5
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._server is None and self._port == 0:
            raise RuntimeError("SimulatedProvider is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (Anthropic, Gemini and Bedrock base URL)."""
        return f"http://{self._host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """``base_url + "/v1"`` (OpenAI base URL)."""
        return self.base_url + "/v1"

    # -- inspection ------------------------------------------------------------------------

    def requests(self) -> list[dict[str, Any]]:
        """Every request served, oldest first.

        Each entry has ``path``, ``method``, ``headers`` (lowercased), ``body`` (parsed
        JSON or None), ``status``, ``attempt`` (0-based), ``api``, and also ``query``,
        ``model``, ``stream``, ``scenario`` and ``usage`` (normalized usage delivered,
        or None).
        """
        with self._lock:
            return [dict(r) for r in self._requests]

    def served_usage(self) -> dict[tuple[str, str], dict[str, int]]:
        """Totals of the usage actually delivered to clients, keyed by ``(api, model)``.

        Values: ``calls``, ``input`` (includes cache read and write), ``output``
        (includes reasoning), ``cache_read``, ``cache_write``, ``reasoning``. For a
        stream, the last usage snapshot that was sent counts (so a cut OpenAI stream
        counts nothing, a cut Anthropic stream counts its ``message_start`` usage).
        """
        with self._lock:
            return {k: dict(v) for k, v in self._usage.items() if v["calls"]}

    def reset(self) -> None:
        """Forget recorded requests, usage totals and attempt counters."""
        with self._lock:
            self._requests.clear()
            self._usage.clear()
            self._attempts.clear()
            self._served = 0

    # -- internals -------------------------------------------------------------------------

    def _replace_usage(self, key: tuple[str, str], old: dict[str, int] | None, new: dict[str, int] | None) -> None:
        with self._lock:
            totals = self._usage.setdefault(
                key, {"calls": 0, "input": 0, "output": 0, "cache_read": 0, "cache_write": 0, "reasoning": 0}
            )
            if old is not None:
                totals["calls"] -= 1
                for name, value in old.items():
                    totals[name] -= value
            if new is not None:
                totals["calls"] += 1
                for name, value in new.items():
                    totals[name] += value

    def _family_headers(self, ex: _Exchange, status: int) -> dict[str, str]:
        sc = ex.scenario
        if sc.rl_req is not None:
            remaining_requests = sc.rl_req
        elif status == 429:
            remaining_requests = 0
        else:
            remaining_requests = max(0, _REQUESTS_LIMIT - ex.served_seq)
        remaining_tokens = sc.rl_tok if sc.rl_tok is not None else _TOKENS_REMAINING
        rid = secrets.token_hex(12)
        if ex.family == "openai":
            return {
                "x-request-id": f"req_{rid}",
                "openai-processing-ms": str(ex.elapsed_ms()),
                "openai-version": "2020-10-01",
                "x-ratelimit-limit-requests": str(_REQUESTS_LIMIT),
                "x-ratelimit-remaining-requests": str(remaining_requests),
                "x-ratelimit-limit-tokens": str(_TOKENS_LIMIT),
                "x-ratelimit-remaining-tokens": str(remaining_tokens),
                "x-ratelimit-reset-requests": "1s",
                "x-ratelimit-reset-tokens": "6m0s",
            }
        if ex.family == "anthropic":
            return {
                "request-id": f"req_{rid}",
                "anthropic-ratelimit-requests-limit": str(_REQUESTS_LIMIT),
                "anthropic-ratelimit-requests-remaining": str(remaining_requests),
                "anthropic-ratelimit-requests-reset": _rfc3339(1),
                "anthropic-ratelimit-tokens-limit": str(_TOKENS_LIMIT),
                "anthropic-ratelimit-tokens-remaining": str(remaining_tokens),
                "anthropic-ratelimit-tokens-reset": _rfc3339(360),
            }
        if ex.family == "gemini":
            return {"x-goog-request-id": rid, "server-timing": f"gfet4t7; dur={ex.elapsed_ms()}"}
        if ex.family == "bedrock":
            return {"x-amzn-requestid": f"{rid[:8]}-{rid[8:12]}-{rid[12:16]}-{rid[16:20]}-{rid[20:24]}0000000"}
        return {}

    def _next_attempt(self, handler: _Handler, path: str, raw_body: bytes) -> int:
        headers = handler.headers
        retry_count = headers.get("x-stainless-retry-count")
        if retry_count is not None:
            try:
                return max(0, int(retry_count))
            except ValueError:
                pass
        amz = headers.get("amz-sdk-request")
        if amz:
            m = re.search(r"attempt=(\d+)", amz)
            if m:
                return max(0, int(m.group(1)) - 1)
        key = (path, hashlib.sha1(raw_body).hexdigest(), headers.get("x-sim-call-id") or "")
        with self._lock:
            attempt = self._attempts.get(key, 0)
            self._attempts[key] = attempt + 1
        return attempt

    def _read_body(self, handler: _Handler) -> bytes:
        length = handler.headers.get("Content-Length")
        if length is not None:
            return handler.rfile.read(int(length)) if int(length) > 0 else b""
        if "chunked" in (handler.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                size_line = handler.rfile.readline(65537)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while handler.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(handler.rfile.read(size))
                handler.rfile.readline(65537)
            return b"".join(parts)
        return b""

    def _handle(self, handler: _Handler) -> None:
        ex = _Exchange(self, handler)
        try:
            self._dispatch(ex)
        except _Abort:
            handler.close_connection = True
        except Exception as exc:
            if ex.headers_sent:
                handler.close_connection = True
            else:
                try:
                    ex.error(500, f"simulated provider internal error: {exc!r}")
                except _Abort:
                    handler.close_connection = True

    def _dispatch(self, ex: _Exchange) -> None:
        handler = ex.handler
        raw_path, _, query = handler.path.partition("?")
        ex.raw_body = self._read_body(handler)
        if raw_path.startswith("/_sim/"):
            self._control(ex, raw_path)
            return

        # Route. Azure OpenAI puts the deployment in the path: /openai/deployments/{name}/chat/completions.
        user_agent = (handler.headers.get("user-agent") or "").lower()
        flavour = next(
            (f for ua, prefix, f in _OPENAI_FLAVOURS if ua in user_agent and raw_path.startswith(prefix)), ""
        )
        azure = _AZURE_RE.match(raw_path)
        if azure:
            raw_path = "/v1" + azure.group("rest")
        model_raw = ""
        op = ""
        if raw_path in _OPENAI_ROUTES:
            ex.family, ex.api = "openai", _OPENAI_ROUTES[raw_path]
            if flavour:
                ex.flavour = flavour
                ex.api = flavour + ex.api.removeprefix("openai")
        elif raw_path in _ANTHROPIC_ROUTES:
            ex.family, ex.api = "anthropic", _ANTHROPIC_ROUTES[raw_path]
        elif raw_path in _COHERE_ROUTES:
            ex.family, ex.api = "cohere", _COHERE_ROUTES[raw_path]
        elif raw_path in _OLLAMA_ROUTES:
            ex.family, ex.api = "ollama", _OLLAMA_ROUTES[raw_path]
        else:
            m = _GEMINI_RE.match(raw_path)
            if m and m.group("method") in _GEMINI_METHODS:
                ex.family, ex.api = "gemini", _GEMINI_METHODS[m.group("method")]
                op = m.group("method")
                model_raw = unquote(m.group("model"))
                ex.stream = op == "streamGenerateContent"
            else:
                m = _BEDROCK_RE.match(raw_path)
                if m:
                    op = m.group("op")
                    ex.family = "bedrock"
                    ex.api = "bedrock.converse" if op.startswith("converse") else "bedrock.invoke"
                    model_raw = unquote(m.group("model"))
                    ex.stream = op in ("converse-stream", "invoke-with-response-stream")

        lowered: dict[str, str] = {}
        for k, v in handler.headers.items():
            k = k.lower()
            lowered[k] = f"{lowered[k]}, {v}" if k in lowered else v
        headers = lowered

        body: Any = None
        bad_json = False
        if ex.raw_body:
            try:
                body = json.loads(ex.raw_body)
            except ValueError:
                bad_json = True
        ex.body = body
        if ex.family in ("openai", "anthropic", "cohere", "ollama") and isinstance(body, dict):
            model_raw = str(body.get("model") or "")
            ex.stream = bool(body.get("stream", ex.family == "ollama"))  # Ollama streams unless told not to
            if ex.api in ("cohere.embed", "ollama.embed"):
                ex.stream = False

        model, _, suffix = model_raw.partition("+")
        ex.model = model
        scenario_texts = [headers.get("x-sim-scenario", ""), suffix]
        ex.rng = random.Random(f"{self.seed}:{hashlib.sha1(ex.raw_body).hexdigest()}")

        attempt = self._next_attempt(handler, raw_path, ex.raw_body) if ex.family != "unknown" else 0
        with self._lock:
            self._served += 1
            ex.served_seq = self._served
            ex.record = {
                "path": raw_path,
                "query": query,
                "method": handler.command,
                "headers": headers,
                "body": body,
                "status": None,
                "attempt": attempt,
                "api": ex.api,
                "model": model,
                "stream": ex.stream,
                "scenario": ",".join(t for t in scenario_texts if t),
                "usage": None,
            }
            self._requests.append(ex.record)

        if ex.family == "unknown":
            ex.error(404, f"simulated provider: no route for {handler.command} {raw_path}")
            return
        try:
            ex.scenario = _parse_scenario(scenario_texts)
        except _ScenarioError as exc:
            ex.delay(self.latency)
            ex.error(400, str(exc))
            return
        ex.delay(self.latency)
        if handler.command != "POST":
            ex.error(405, f"simulated provider: {handler.command} not supported on {raw_path}")
            return
        if bad_json or (ex.raw_body and not isinstance(body, dict)):
            ex.error(400, "simulated provider: request body is not a JSON object")
            return
        if ex.body is None:
            ex.body = {}
        sc = ex.scenario
        if attempt < len(sc.errors):
            status = sc.errors[attempt]
            messages = {
                429: "Rate limit reached (simulated).",
                500: "The server had an error while processing your request (simulated).",
                503: "The service is temporarily overloaded (simulated).",
            }
            ex.error(status, messages[status], retryable=True)
            return
        if not ex.stream:
            ex.delay(sc.ttft)

        if ex.family == "openai":
            _OPENAI_HANDLERS["openai." + ex.api.partition(".")[2]](ex)
        elif ex.family == "anthropic":
            if ex.api == "anthropic.count_tokens":
                ex.send_json(200, {"input_tokens": sc.input})
            else:
                _anthropic_messages(ex)
        elif ex.family == "gemini":
            _gemini(ex, op)
        elif ex.family == "cohere":
            _cohere(ex)
        elif ex.family == "ollama":
            _ollama(ex)
        else:
            _bedrock(ex, op)

    def _control(self, ex: _Exchange, path: str) -> None:
        """Out-of-process inspection: GET /_sim/health, /_sim/requests, /_sim/usage; POST /_sim/reset."""
        if path == "/_sim/health":
            payload: Any = {"ok": True}
        elif path == "/_sim/requests":
            payload = self.requests()
        elif path == "/_sim/usage":
            payload = [{"api": api, "model": model, **v} for (api, model), v in self.served_usage().items()]
        elif path == "/_sim/reset":
            self.reset()
            payload = {"ok": True}
        else:
            ex.send_json(404, {"error": {"message": f"unknown control path {path}"}})
            return
        ex.send_json(200, payload)


# --------------------------------------------------------------------------------------
# OpenAI
# --------------------------------------------------------------------------------------


def _openai_usage(sc: _Scenario) -> dict[str, Any]:
    return {
        "prompt_tokens": sc.input,
        "completion_tokens": sc.output,
        "total_tokens": sc.input + sc.output,
        "prompt_tokens_details": {"cached_tokens": sc.cached, "cache_write_tokens": sc.cache_write, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": sc.reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _flavour_usage(ex: _Exchange) -> tuple[dict[str, Any], dict[str, int]]:
    """Usage as this OpenAI-compatible provider reports it, and its normalized form."""
    sc = ex.scenario
    if ex.flavour == "mistral":  # prompt caching only: no cache-write or reasoning counts
        usage = {
            "prompt_tokens": sc.input,
            "completion_tokens": sc.output,
            "total_tokens": sc.input + sc.output,
            "prompt_tokens_details": {"cached_tokens": sc.cached},
        }
        return usage, _full_norm(sc, cache_write=False, reasoning=False)
    usage = _openai_usage(sc)
    if ex.flavour == "groq":  # Groq adds its timings
        usage.update(queue_time=0.01, prompt_time=0.002, completion_time=0.02, total_time=0.022)
    return usage, _full_norm(sc)


def _openai_text(ex: _Exchange, schema_holder: Any) -> list[str]:
    """Content pieces; JSON matching the schema when structured output is requested."""
    n = ex.scenario.chunks
    if isinstance(schema_holder, dict):
        kind = schema_holder.get("type")
        if kind == "json_schema":
            spec = schema_holder.get("json_schema", schema_holder)
            schema = spec.get("schema") if isinstance(spec, dict) else None
            return _split(_json_from_schema(schema or {}), n)
        if kind == "json_object":
            return _split('{"result":"x"}', n)
    return _word_pieces(ex.rng, n)


def _openai_error_chunk() -> dict[str, Any]:
    return {
        "error": {
            "message": "The server had an error while streaming (simulated).",
            "type": "server_error",
            "param": None,
            "code": "server_error",
        }
    }


def _openai_chat(ex: _Exchange) -> None:
    sc, body = ex.scenario, ex.body
    pieces = _openai_text(ex, body.get("response_format"))
    cid = f"chatcmpl-{secrets.token_hex(12)}"
    created = int(time.time())
    common = {
        "id": cid,
        "created": created,
        "model": ex.model,
        "system_fingerprint": "fp_simulated",
        "service_tier": "default",
    }
    usage_obj, full = _flavour_usage(ex)
    norm = None if sc.no_usage else full
    if not ex.stream:
        payload: dict[str, Any] = {
            **common,
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(pieces), "refusal": None, "annotations": []},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
        }
        if not sc.no_usage:
            payload["usage"] = usage_obj
        ex.send_json(200, payload, usage=norm)
        return
    options = body.get("stream_options") or {}
    include = (bool(options.get("include_usage")) or sc.always_usage) and not sc.no_usage
    if ex.flavour == "mistral":
        include = False  # Mistral puts usage on its last chunk whatever the request says

    def chunk(delta: dict[str, Any], finish: str | None, **extra: Any) -> bytes:
        data: dict[str, Any] = {
            **common,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include:
            data["usage"] = None
        data.update(extra)
        return _sse(data)

    steps = [_Step("pre", chunk({"role": "assistant", "content": "", "refusal": None}, None))]
    steps += [_Step("content", chunk({"content": p}, None)) for p in pieces]
    if ex.flavour == "groq" and not sc.no_usage:  # the final chunk's x_groq.usage, sent on every Groq stream
        steps.append(_Step("post", chunk({}, "stop", x_groq={"id": f"req_{cid[9:]}", "usage": usage_obj}), norm))
    elif ex.flavour == "mistral" and not sc.no_usage:
        steps.append(_Step("post", chunk({}, "stop", usage=usage_obj), norm))
    else:
        steps.append(_Step("post", chunk({}, "stop")))
    if include:
        data = {**common, "object": "chat.completion.chunk", "choices": [], "usage": usage_obj}
        steps.append(_Step("post", _sse(data), norm))
    steps.append(_Step("post", _sse("[DONE]")))
    ex.run_stream(_StreamPlan("text/event-stream; charset=utf-8", steps, _sse(_openai_error_chunk())))


def _openai_completions(ex: _Exchange) -> None:
    sc, body = ex.scenario, ex.body
    pieces = _word_pieces(ex.rng, sc.chunks)
    common = {
        "id": f"cmpl-{secrets.token_hex(12)}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": ex.model,
        "system_fingerprint": "fp_simulated",
    }
    norm = None if sc.no_usage else _full_norm(sc)
    if not ex.stream:
        payload: dict[str, Any] = {
            **common,
            "choices": [{"text": "".join(pieces), "index": 0, "logprobs": None, "finish_reason": "stop"}],
        }
        if not sc.no_usage:
            payload["usage"] = _openai_usage(sc)
        ex.send_json(200, payload, usage=norm)
        return
    options = body.get("stream_options") or {}
    include = (bool(options.get("include_usage")) or sc.always_usage) and not sc.no_usage

    def chunk(text: str, finish: str | None) -> bytes:
        data: dict[str, Any] = {
            **common,
            "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}],
        }
        if include:
            data["usage"] = None
        return _sse(data)

    steps = [_Step("content", chunk(p, None)) for p in pieces]
    steps.append(_Step("post", chunk("", "stop")))
    if include:
        steps.append(_Step("post", _sse({**common, "choices": [], "usage": _openai_usage(sc)}), norm))
    steps.append(_Step("post", _sse("[DONE]")))
    ex.run_stream(_StreamPlan("text/event-stream; charset=utf-8", steps, _sse(_openai_error_chunk())))


def _openai_embeddings(ex: _Exchange) -> None:
    sc, body = ex.scenario, ex.body
    raw = body.get("input", "")
    inputs = raw if isinstance(raw, list) and raw and not isinstance(raw[0], int) else [raw]
    dims = int(body.get("dimensions") or 8)
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, item in enumerate(inputs):
        vector = _embedding(f"{ex.provider.seed}:{json.dumps(item)}", dims)
        embedding: Any = vector
        if as_base64:
            embedding = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    payload: dict[str, Any] = {"id": f"emb-{secrets.token_hex(8)}", "object": "list", "data": data, "model": ex.model}
    norm = None
    if not sc.no_usage:
        payload["usage"] = {"prompt_tokens": sc.input, "total_tokens": sc.input}
        if ex.flavour == "mistral":
            payload["usage"]["completion_tokens"] = 0
        norm = _norm(sc.input, 0)
    ex.send_json(200, payload, usage=norm)


def _responses_usage(sc: _Scenario) -> dict[str, Any]:
    return {
        "input_tokens": sc.input,
        "input_tokens_details": {"cached_tokens": sc.cached, "cache_write_tokens": sc.cache_write},
        "output_tokens": sc.output,
        "output_tokens_details": {"reasoning_tokens": sc.reasoning},
        "total_tokens": sc.input + sc.output,
    }


def _openai_responses(ex: _Exchange) -> None:
    sc, body = ex.scenario, ex.body
    text_cfg = body.get("text") if isinstance(body.get("text"), dict) else {}
    pieces = _openai_text(ex, text_cfg.get("format"))
    text = "".join(pieces)
    rid = f"resp_{secrets.token_hex(16)}"
    mid = f"msg_{secrets.token_hex(16)}"
    created = int(time.time())
    usage = None if sc.no_usage else _responses_usage(sc)
    norm = None if sc.no_usage else _full_norm(sc)

    def response(status: str, output: list[Any], usage_obj: Any, error: Any = None) -> dict[str, Any]:
        return {
            "id": rid,
            "object": "response",
            "created_at": created,
            "status": status,
            "background": False,
            "error": error,
            "incomplete_details": None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "model": ex.model,
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": body.get("previous_response_id"),
            "store": True,
            "temperature": 1.0,
            "text": text_cfg or {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": usage_obj,
            "metadata": {},
        }

    def message(status: str, content_text: str | None) -> dict[str, Any]:
        content = []
        if content_text is not None:
            content = [{"type": "output_text", "text": content_text, "annotations": [], "logprobs": []}]
        return {"id": mid, "type": "message", "status": status, "role": "assistant", "content": content}

    if not ex.stream:
        ex.send_json(200, response("completed", [message("completed", text)], usage), usage=norm)
        return

    seq = iter(range(1_000_000))

    def ev(kind: str, **fields: Any) -> bytes:
        return _sse({"type": kind, "sequence_number": next(seq), **fields}, event=kind)

    part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    steps = [
        _Step("pre", ev("response.created", response=response("in_progress", [], None))),
        _Step("pre", ev("response.in_progress", response=response("in_progress", [], None))),
        _Step("pre", ev("response.output_item.added", output_index=0, item=message("in_progress", None))),
        _Step("pre", ev("response.content_part.added", item_id=mid, output_index=0, content_index=0, part=part)),
    ]
    for p in pieces:
        steps.append(
            _Step(
                "content",
                ev("response.output_text.delta", item_id=mid, output_index=0, content_index=0, delta=p, logprobs=[]),
            )
        )
    done_part = {**part, "text": text}
    steps += [
        _Step(
            "post",
            ev("response.output_text.done", item_id=mid, output_index=0, content_index=0, text=text, logprobs=[]),
        ),
        _Step("post", ev("response.content_part.done", item_id=mid, output_index=0, content_index=0, part=done_part)),
        _Step("post", ev("response.output_item.done", output_index=0, item=message("completed", text))),
        _Step(
            "post", ev("response.completed", response=response("completed", [message("completed", text)], usage)), norm
        ),
    ]
    error = ev(
        "error", code="server_error", message="The server had an error while streaming (simulated).", param=None
    ) + ev(
        "response.failed",
        response=response(
            "failed",
            [],
            None,
            {"code": "server_error", "message": "The server had an error while streaming (simulated)."},
        ),
    )
    ex.run_stream(_StreamPlan("text/event-stream; charset=utf-8", steps, error))


_OPENAI_HANDLERS: dict[str, Callable[[_Exchange], None]] = {
    "openai.chat": _openai_chat,
    "openai.responses": _openai_responses,
    "openai.embeddings": _openai_embeddings,
    "openai.completions": _openai_completions,
}


# --------------------------------------------------------------------------------------
# Anthropic (also used for Bedrock InvokeModel bodies)
# --------------------------------------------------------------------------------------


def _anthropic_usage(sc: _Scenario, output: int, *, thinking: bool) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "input_tokens": sc.uncached,
        "cache_creation_input_tokens": sc.cache_write,
        "cache_read_input_tokens": sc.cached,
        "output_tokens": output,
    }
    if thinking and sc.reasoning and output == sc.output:
        usage["output_tokens_details"] = {"thinking_tokens": sc.reasoning}
    return usage


def _anthropic_text(ex: _Exchange) -> list[str]:
    body = ex.body
    fmt = None
    config = body.get("output_config")
    if isinstance(config, dict) and isinstance(config.get("format"), dict):
        fmt = config["format"]
    elif isinstance(body.get("output_format"), dict):
        fmt = body["output_format"]
    if fmt and fmt.get("type") == "json_schema":
        return _split(_json_from_schema(fmt.get("schema") or {}), ex.scenario.chunks)
    return _word_pieces(ex.rng, ex.scenario.chunks)


def _anthropic_message(ex: _Exchange, text: str, *, thinking: bool) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": f"msg_{secrets.token_hex(12)}",
        "type": "message",
        "role": "assistant",
        "model": ex.model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
    }
    if not ex.scenario.no_usage:
        payload["usage"] = _anthropic_usage(ex.scenario, ex.scenario.output, thinking=thinking)
    return payload


def _anthropic_events(
    ex: _Exchange, pieces: list[str], *, thinking: bool
) -> tuple[list[tuple[str, str, dict[str, Any], dict[str, int] | None]], dict[str, Any]]:
    """Anthropic stream events as (kind, event name, data, normalized usage snapshot)."""
    sc = ex.scenario
    message: dict[str, Any] = {
        "id": f"msg_{secrets.token_hex(12)}",
        "type": "message",
        "role": "assistant",
        "model": ex.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
    }
    start_usage = None
    final_usage = None
    delta_usage: dict[str, Any] | None = None
    if not sc.no_usage:
        message["usage"] = _anthropic_usage(sc, 1, thinking=False)
        start_usage = _norm(sc.input, 1, sc.cached, sc.cache_write, 0)
        delta_usage = _anthropic_usage(sc, sc.output, thinking=thinking)
        final_usage = _full_norm(sc, reasoning=thinking)
    message_delta: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
    }
    if delta_usage is not None:
        message_delta["usage"] = delta_usage
    events: list[tuple[str, str, dict[str, Any], dict[str, int] | None]] = [
        ("pre", "message_start", {"type": "message_start", "message": message}, start_usage),
        (
            "pre",
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            None,
        ),
        ("pre", "ping", {"type": "ping"}, None),
    ]
    for p in pieces:
        events.append(
            (
                "content",
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}},
                None,
            )
        )
    events += [
        ("post", "content_block_stop", {"type": "content_block_stop", "index": 0}, None),
        ("post", "message_delta", message_delta, final_usage),
        ("post", "message_stop", {"type": "message_stop"}, None),
    ]
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded (simulated)."}}
    return events, error


def _anthropic_messages(ex: _Exchange) -> None:
    pieces = _anthropic_text(ex)
    if not ex.stream:
        norm = None if ex.scenario.no_usage else _full_norm(ex.scenario)
        ex.send_json(200, _anthropic_message(ex, "".join(pieces), thinking=True), usage=norm)
        return
    events, error = _anthropic_events(ex, pieces, thinking=True)
    steps = [_Step(kind, _sse(data, event=name), usage) for kind, name, data, usage in events]
    ex.run_stream(_StreamPlan("text/event-stream; charset=utf-8", steps, _sse(error, event="error")))


# --------------------------------------------------------------------------------------
# Google Gemini
# --------------------------------------------------------------------------------------


def _gemini_usage(sc: _Scenario, candidates: int, thoughts: int) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "promptTokenCount": sc.input,
        "candidatesTokenCount": candidates,
        "totalTokenCount": sc.input + candidates + thoughts,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": sc.input}],
    }
    if sc.cached:
        usage["cachedContentTokenCount"] = sc.cached
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def _gemini_text(ex: _Exchange) -> list[str]:
    config = ex.body.get("generationConfig") or ex.body.get("generation_config") or {}
    if isinstance(config, dict) and config.get("responseMimeType") == "application/json":
        schema = config.get("responseJsonSchema") or config.get("responseSchema") or {}
        return _split(_json_from_schema(schema), ex.scenario.chunks)
    return _word_pieces(ex.rng, ex.scenario.chunks)


def _gemini(ex: _Exchange, op: str) -> None:
    sc, body = ex.scenario, ex.body
    if op == "countTokens":
        ex.send_json(200, {"totalTokens": sc.input})
        return
    if op in ("embedContent", "batchEmbedContents"):
        requests = body.get("requests") if op == "batchEmbedContents" else [body]
        embeddings = []
        for item in requests or []:
            dims = int(item.get("outputDimensionality") or 8) if isinstance(item, dict) else 8
            content = item.get("content") if isinstance(item, dict) else item
            embeddings.append({"values": _embedding(f"{ex.provider.seed}:{json.dumps(content)}", dims)})
        if op == "embedContent":
            ex.send_json(200, {"embedding": embeddings[0] if embeddings else {"values": []}})
        else:
            ex.send_json(200, {"embeddings": embeddings})
        return
    pieces = _gemini_text(ex)
    response_id = secrets.token_hex(8)
    answered = any(
        isinstance(part, dict) and ("functionResponse" in part or "function_response" in part)
        for content in body.get("contents") or []
        if isinstance(content, dict)
        for part in content.get("parts") or []
    )
    call_tool = sc.tool is not None and not answered

    def candidate(text: str, finish: bool) -> dict[str, Any]:
        part: dict[str, Any] = {"functionCall": {"name": sc.tool, "args": {}}} if call_tool else {"text": text}
        cand: dict[str, Any] = {"content": {"parts": [part], "role": "model"}, "index": 0}
        if finish:
            cand["finishReason"] = "STOP"
        return cand

    if not ex.stream:
        payload: dict[str, Any] = {
            "candidates": [candidate("".join(pieces), True)],
            "modelVersion": ex.model,
            "responseId": response_id,
        }
        norm = None
        if not sc.no_usage:
            payload["usageMetadata"] = _gemini_usage(sc, sc.visible, sc.reasoning)
            norm = _full_norm(sc, cache_write=False)
        ex.send_json(200, payload, usage=norm)
        return
    steps = []
    n = len(pieces)
    for i, p in enumerate(pieces, start=1):
        last = i == n
        data: dict[str, Any] = {"candidates": [candidate(p, last)], "modelVersion": ex.model, "responseId": response_id}
        norm = None
        if not sc.no_usage:
            candidates = sc.visible * i // n
            thoughts = sc.reasoning if last else 0
            data["usageMetadata"] = _gemini_usage(sc, candidates, thoughts)
            norm = _norm(sc.input, candidates + thoughts, sc.cached, 0, thoughts)
        steps.append(_Step("content", _sse(data, sep="\r\n\r\n"), norm))
    error = _sse(
        {"error": {"code": 500, "message": "Internal error while streaming (simulated).", "status": "INTERNAL"}},
        sep="\r\n\r\n",
    )
    ex.run_stream(_StreamPlan("text/event-stream", steps, error))


# --------------------------------------------------------------------------------------
# Cohere v2
# --------------------------------------------------------------------------------------

#: Cohere's raw ``tokens.input_tokens`` include its own prompt template; only billed units are charged.
_COHERE_TEMPLATE_TOKENS = 30


def _cohere_usage(sc: _Scenario) -> dict[str, Any]:
    return {
        "billed_units": {"input_tokens": sc.input, "output_tokens": sc.output},
        "tokens": {"input_tokens": sc.input + _COHERE_TEMPLATE_TOKENS, "output_tokens": sc.output},
        "cached_tokens": sc.cached,
    }


def _cohere(ex: _Exchange) -> None:
    sc, body = ex.scenario, ex.body
    rid = str(secrets.token_hex(16))
    norm = None if sc.no_usage else _full_norm(sc, cache_write=False, reasoning=False)
    if ex.api == "cohere.embed":
        texts = body.get("texts") or body.get("inputs") or []
        kinds = body.get("embedding_types") or ["float"]
        dims = int(body.get("output_dimension") or 8)
        vectors = [_embedding(f"{ex.provider.seed}:{json.dumps(t)}", dims) for t in texts]
        payload: dict[str, Any] = {
            "id": rid,
            "response_type": "embeddings_by_type",
            "embeddings": {kind: vectors for kind in kinds},
            "texts": texts,
            "meta": {"api_version": {"version": "2"}},
        }
        if not sc.no_usage:
            payload["meta"]["billed_units"] = {"input_tokens": sc.input}
            norm = _norm(sc.input, 0)
        ex.send_json(200, payload, usage=norm)
        return
    pieces = _word_pieces(ex.rng, sc.chunks)
    if not ex.stream:
        payload = {
            "id": rid,
            "finish_reason": "COMPLETE",
            "message": {"role": "assistant", "content": [{"type": "text", "text": "".join(pieces)}]},
        }
        if not sc.no_usage:
            payload["usage"] = _cohere_usage(sc)
        ex.send_json(200, payload, usage=norm)
        return
    start = {"message": {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}}
    steps = [
        _Step("pre", _sse({"id": rid, "type": "message-start", "delta": start})),
        _Step(
            "pre",
            _sse(
                {"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}}
            ),
        ),
    ]
    steps += [
        _Step("content", _sse({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": p}}}}))
        for p in pieces
    ]
    end: dict[str, Any] = {"finish_reason": "COMPLETE"}
    if not sc.no_usage:
        end["usage"] = _cohere_usage(sc)
    steps += [
        _Step("post", _sse({"type": "content-end", "index": 0})),
        _Step("post", _sse({"id": rid, "type": "message-end", "delta": end}), norm),
    ]
    error = _sse({"id": rid, "type": "message-end", "delta": {"finish_reason": "ERROR", "error": "simulated"}})
    ex.run_stream(_StreamPlan("text/event-stream", steps, error))


# --------------------------------------------------------------------------------------
# Ollama
# --------------------------------------------------------------------------------------


def _ollama_line(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode() + b"\n"


def _ollama(ex: _Exchange) -> None:
    sc, body = ex.scenario, ex.body
    created = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    norm = None if sc.no_usage else _norm(sc.input, sc.output)  # no cache or reasoning counts
    if ex.api == "ollama.embed":
        raw = body.get("input", "")
        inputs = raw if isinstance(raw, list) else [raw]
        dims = int(body.get("dimensions") or 8)
        payload: dict[str, Any] = {
            "model": ex.model,
            "embeddings": [_embedding(f"{ex.provider.seed}:{json.dumps(i)}", dims) for i in inputs],
            "total_duration": 1_000_000,
            "load_duration": 100_000,
        }
        if not sc.no_usage:
            payload["prompt_eval_count"] = sc.input
            norm = _norm(sc.input, 0)
        ex.send_json(200, payload, usage=norm)
        return
    chat = ex.api == "ollama.chat"
    pieces = _word_pieces(ex.rng, sc.chunks)

    def part(text: str) -> dict[str, Any]:
        base: dict[str, Any] = {"model": ex.model, "created_at": created}
        if chat:
            base["message"] = {"role": "assistant", "content": text}
        else:
            base["response"] = text
        return base

    def final(text: str) -> dict[str, Any]:
        data = {**part(text), "done": True, "done_reason": "stop"}
        data.update(total_duration=ex.elapsed_ms() * 1_000_000, load_duration=100_000)
        if not sc.no_usage:
            data.update(prompt_eval_count=sc.input, prompt_eval_duration=2_000_000,
                        eval_count=sc.output, eval_duration=20_000_000)  # fmt: skip
        if not chat:
            data["context"] = [1, 2, 3]
        return data

    if not ex.stream:
        ex.send_json(200, final("".join(pieces)), usage=norm)
        return
    steps = [_Step("content", _ollama_line({**part(p), "done": False})) for p in pieces]
    steps.append(_Step("post", lambda: _ollama_line(final("")), norm))
    ex.run_stream(_StreamPlan("application/x-ndjson", steps, _ollama_line({"error": "simulated stream error"})))


# --------------------------------------------------------------------------------------
# AWS Bedrock runtime
# --------------------------------------------------------------------------------------


def _bedrock_usage(sc: _Scenario) -> dict[str, Any]:
    return {
        "inputTokens": sc.uncached,
        "outputTokens": sc.output,
        "totalTokens": sc.input + sc.output,
        "cacheReadInputTokens": sc.cached,
        "cacheWriteInputTokens": sc.cache_write,
    }


def _bedrock(ex: _Exchange, op: str) -> None:
    sc = ex.scenario
    norm = None if sc.no_usage else _full_norm(sc, reasoning=False)
    if op == "converse":
        pieces = _word_pieces(ex.rng, sc.chunks)
        payload: dict[str, Any] = {
            "output": {"message": {"role": "assistant", "content": [{"text": "".join(pieces)}]}},
            "stopReason": "end_turn",
            "metrics": {"latencyMs": ex.elapsed_ms()},
        }
        if not sc.no_usage:
            payload["usage"] = _bedrock_usage(sc)
        ex.send_json(200, payload, usage=norm)
        return
    if op == "converse-stream":
        pieces = _word_pieces(ex.rng, sc.chunks)
        steps = [_Step("pre", _aws_json_event("messageStart", {"role": "assistant"}))]
        steps += [
            _Step("content", _aws_json_event("contentBlockDelta", {"delta": {"text": p}, "contentBlockIndex": 0}))
            for p in pieces
        ]
        steps += [
            _Step("post", _aws_json_event("contentBlockStop", {"contentBlockIndex": 0})),
            _Step("post", _aws_json_event("messageStop", {"stopReason": "end_turn"})),
        ]
        usage = None if sc.no_usage else _bedrock_usage(sc)

        def metadata() -> bytes:
            payload: dict[str, Any] = {"metrics": {"latencyMs": ex.elapsed_ms()}}
            if usage is not None:
                payload["usage"] = usage
            return _aws_json_event("metadata", payload)

        steps.append(_Step("post", metadata, norm))
        ex.run_stream(
            _StreamPlan(
                "application/vnd.amazon.eventstream",
                steps,
                _aws_exception("modelStreamErrorException", "Model stream error (simulated)."),
            )
        )
        return

    # InvokeModel: Anthropic-format bodies.
    pieces = _anthropic_text(ex)
    if op == "invoke":
        headers = {"x-amzn-bedrock-invocation-latency": str(ex.elapsed_ms())}
        if not sc.no_usage:
            headers.update(
                {
                    "x-amzn-bedrock-input-token-count": str(sc.uncached),
                    "x-amzn-bedrock-output-token-count": str(sc.output),
                    "x-amzn-bedrock-cache-read-input-token-count": str(sc.cached),
                    "x-amzn-bedrock-cache-write-input-token-count": str(sc.cache_write),
                }
            )
        ex.send_json(200, _anthropic_message(ex, "".join(pieces), thinking=False), headers, usage=norm)
        return
    events, _ = _anthropic_events(ex, pieces, thinking=False)
    first_byte: list[int] = []

    def chunk(data: dict[str, Any]) -> bytes:
        encoded = base64.b64encode(json.dumps(data, separators=(",", ":")).encode()).decode()
        return _aws_json_event("chunk", {"bytes": encoded})

    def first(data: dict[str, Any]) -> Callable[[], bytes]:
        def build() -> bytes:
            first_byte.append(ex.elapsed_ms())
            return chunk(data)

        return build

    def last(data: dict[str, Any]) -> Callable[[], bytes]:
        def build() -> bytes:
            if sc.no_usage:
                return chunk(data)
            metrics = {
                "inputTokenCount": sc.uncached,
                "outputTokenCount": sc.output,
                "invocationLatency": ex.elapsed_ms(),
                "firstByteLatency": first_byte[0] if first_byte else 0,
                "cacheReadInputTokenCount": sc.cached,
                "cacheWriteInputTokenCount": sc.cache_write,
            }
            return chunk({**data, "amazon-bedrock-invocationMetrics": metrics})

        return build

    steps: list[_Step] = []
    for index, (kind, _name, data, usage) in enumerate(events):
        if index == 0:
            steps.append(_Step(kind, first(data), usage))
        elif index == len(events) - 1:
            steps.append(_Step(kind, last(data), usage))
        else:
            steps.append(_Step(kind, chunk(data), usage))
    ex.run_stream(
        _StreamPlan(
            "application/vnd.amazon.eventstream",
            steps,
            _aws_exception("modelStreamErrorException", "Model stream error (simulated)."),
            {"x-amzn-bedrock-content-type": "application/json"},
        )
    )


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the simulated provider in the foreground until --max-seconds or a signal."""
    parser = argparse.ArgumentParser(
        prog="python -m llm_otel.demo.simulated_provider",
        description="Serve simulated LLM provider APIs on 127.0.0.1.",
        epilog=SCENARIO_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind (default 0: pick a free one)")
    parser.add_argument("--port-file", help="write the bound port number to this file")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="stop after this long (default 600)")
    parser.add_argument("--seed", type=int, default=0, help="seed for generated text and embeddings")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added before every response")
    args = parser.parse_args(argv)

    done = threading.Event()

    def _on_signal(signum: int, frame: Any) -> None:
        done.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)

    provider = SimulatedProvider(args.host, args.port, seed=args.seed, latency=args.latency).start()
    try:
        if args.port_file:
            tmp = f"{args.port_file}.tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(f"{provider.port}\n")
            os.replace(tmp, args.port_file)
        print(provider.base_url, flush=True)
        done.wait(args.max_seconds)
    finally:
        provider.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
