"""The HTTP server: connection handling, request bookkeeping, and :class:`SimulatedProvider`, its public face."""

from __future__ import annotations

import contextlib
import hashlib
import re
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from .exchange import Abort, Exchange
from .routes import resolve
from .scenario import ScenarioError, parse_scenario

__all__ = ["Handler", "SimulatedProvider"]

_ERROR_MESSAGES = {
    429: "Rate limit reached (simulated).",
    500: "The server had an error while processing your request (simulated).",
    503: "The service is temporarily overloaded (simulated).",
}


class Handler(BaseHTTPRequestHandler):
    """Hands every request to the provider, on a keep-alive HTTP/1.1 connection."""

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
    """One daemon thread per connection, each tracked so :meth:`SimulatedProvider.stop` can close it."""

    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], provider: SimulatedProvider) -> None:
        self.provider = provider
        self._track_lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._conn_threads: set[threading.Thread] = set()
        super().__init__(address, Handler)

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


def _read_body(handler: Handler) -> bytes:
    """The request body, by Content-Length or chunked transfer encoding."""
    length = handler.headers.get("Content-Length")
    if length is not None:
        return handler.rfile.read(int(length)) if int(length) > 0 else b""
    if "chunked" not in (handler.headers.get("Transfer-Encoding") or "").lower():
        return b""
    parts = []
    while True:
        size_line = handler.rfile.readline(65537)
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while handler.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(parts)
        parts.append(handler.rfile.read(size))
        handler.rfile.readline(65537)


class SimulatedProvider:
    """Stdlib HTTP server imitating OpenAI, Anthropic, Gemini, Bedrock, Cohere and Ollama APIs.

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
        """Swap one response's delivered usage in the totals (``old`` out, ``new`` in)."""
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

    def _next_attempt(self, ex: Exchange, path: str) -> int:
        """0 for a first try: from the SDK's retry-count header, else counted per path, body and call id."""
        retry_count = ex.headers.get("x-stainless-retry-count")
        if retry_count is not None:
            try:
                return max(0, int(retry_count))
            except ValueError:
                pass
        amz = ex.headers.get("amz-sdk-request")
        if amz:
            m = re.search(r"attempt=(\d+)", amz)
            if m:
                return max(0, int(m.group(1)) - 1)
        key = (path, hashlib.sha1(ex.raw_body).hexdigest(), ex.headers.get("x-sim-call-id") or "")
        with self._lock:
            attempt = self._attempts.get(key, 0)
            self._attempts[key] = attempt + 1
        return attempt

    def _handle(self, handler: Handler) -> None:
        """Serve one request; an unexpected failure answers 500, or drops the connection mid-response."""
        ex = Exchange(self, handler)
        try:
            self._dispatch(ex)
        except Abort:
            handler.close_connection = True
        except Exception as exc:
            if ex.headers_sent:
                handler.close_connection = True
            else:
                try:
                    ex.error(500, f"simulated provider internal error: {exc!r}")
                except Abort:
                    handler.close_connection = True

    def _dispatch(self, ex: Exchange) -> None:
        """Parse the request, look up its route, apply the scenario's errors and latency, answer in its format."""
        raw_path, _, query = ex.handler.path.partition("?")
        ex.raw_body = _read_body(ex.handler)
        if raw_path.startswith("/_sim/"):
            self._control(ex, raw_path)
            return
        match = resolve(raw_path, ex.handler.headers.get("user-agent") or "")
        ex.read_request(match)
        path = match.path if match else raw_path
        attempt = self._next_attempt(ex, path) if match else 0
        self._record(ex, path, query, attempt)
        if match is None:
            ex.error(404, f"simulated provider: no route for {ex.handler.command} {raw_path}")
        elif self._screen(ex, path, attempt):
            match.route.handler(ex)

    def _record(self, ex: Exchange, path: str, query: str, attempt: int) -> None:
        """Add the request to :meth:`requests`; its status and usage are filled in as the answer is sent."""
        with self._lock:
            self._served += 1
            ex.served_seq = self._served
            ex.record = {
                "path": path,
                "query": query,
                "method": ex.handler.command,
                "headers": ex.headers,
                "body": ex.body,
                "status": None,
                "attempt": attempt,
                "api": ex.api,
                "model": ex.model,
                "stream": ex.stream,
                "scenario": ex.scenario_text,
                "usage": None,
            }
            self._requests.append(ex.record)

    def _screen(self, ex: Exchange, path: str, attempt: int) -> bool:
        """The behaviour common to every route; False when it already answered (bad request, scenario error)."""
        try:
            ex.scenario = parse_scenario([ex.scenario_text])
        except ScenarioError as exc:
            ex.delay(self.latency)
            ex.error(400, str(exc))
            return False
        ex.delay(self.latency)
        if ex.handler.command != "POST":
            ex.error(405, f"simulated provider: {ex.handler.command} not supported on {path}")
            return False
        if ex.bad_body:
            ex.error(400, "simulated provider: request body is not a JSON object")
            return False
        if ex.body is None:
            ex.body = {}
        if attempt < len(ex.scenario.errors):
            status = ex.scenario.errors[attempt]
            ex.error(status, _ERROR_MESSAGES[status], retryable=True)
            return False
        if not ex.stream:
            ex.delay(ex.scenario.ttft)
        return True

    def _control(self, ex: Exchange, path: str) -> None:
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
