"""``llm-otel ui``: a read-only HTTP server on 127.0.0.1 for the page and its report API.

One thread keeps the ledger's cells current (``LedgerSource.refresh`` every ``REFRESH_S``); requests build
reports from them under the same lock. The server answers only GET, only for its own host name (a page on
another site cannot reach it through DNS rebinding), and only with its own files and reports.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..views import LedgerSource, LedgerUnavailable, Query, build
from .page import asset, with_page_fields

REFRESH_S = 2.0
RANGES = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}


class QueryError(ValueError):
    """A bad query parameter; the message names it."""


class LedgerView:
    """The ledger's cells, kept current by a background thread, and the reports built from them."""

    def __init__(self, ledger: Path, budgets: Callable[[], dict[str, Any]], trace_url: str | None) -> None:
        self.ledger = ledger
        self.budgets = budgets
        self.trace_url = trace_url
        self.source = LedgerSource(ledger)
        self.state, self.message = "loading", None
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="llm-otel-ui-refresh", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def refresh(self) -> None:
        """Read new rows; a ledger that shrank or was replaced is read again from the start."""
        try:
            with self.lock:
                if self.source.rows and self._replaced():
                    self.source = LedgerSource(self.ledger)
                self.source.refresh()
            self.state, self.message = ("ok" if self.source.rows else "empty"), None
        except LedgerUnavailable as exc:
            self.state, self.message = "error", str(exc)

    def _replaced(self) -> bool:
        conn = self.source.connect()
        try:
            (top,) = conn.execute("SELECT COALESCE(MAX(id), 0) FROM calls").fetchone()
        finally:
            conn.close()
        return top < self.source.last_id

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(REFRESH_S)

    def report(self, params: dict[str, list[str]]) -> dict[str, Any]:
        """The report for a query string, with the ledger's state; an error state instead of an exception."""
        rows = self.source.rows
        if self.state in ("loading", "error"):
            return with_page_fields({}, self.state, self.message, rows, self.trace_url)
        query = parse_query(params)
        try:
            with self.lock:
                data = build(self.source, query)
        except LedgerUnavailable as exc:
            return with_page_fields({}, "error", str(exc), rows, self.trace_url)
        data["budgets"] = self.budgets()
        return with_page_fields(data, self.state, self.message, self.source.rows, self.trace_url)


def parse_query(params: dict[str, list[str]]) -> Query:
    """``range=1h|24h|7d|30d|all`` or ``since``/``until`` (ISO), ``group_by``, ``stack_by``, ``f.KEY=V1,V2``."""
    from ..cli.report import ReportError, parse_when

    def one(name: str, default: str | None = None) -> str | None:
        values = params.get(name)
        return values[-1] if values else default

    since = until = None
    try:
        if one("since") or one("until"):
            since = parse_when(one("since")).timestamp() if one("since") else None
            until = parse_when(one("until"), end=True).timestamp() if one("until") else None
        else:
            span = one("range", "24h")
            if span != "all":
                if span not in RANGES:
                    raise QueryError(f"range={span!r}: use one of 1h, 24h, 7d, 30d, all")
                since = datetime.now(UTC).timestamp() - RANGES[span]
    except ReportError as exc:
        raise QueryError(str(exc)) from None
    group_by = tuple(k for k in (one("group_by", "provider,model") or "").split(",") if k) or ("provider", "model")
    filters = {
        name[2:]: frozenset(v for v in values[-1].split(",") if v)
        for name, values in params.items()
        if name.startswith("f.") and len(name) > 2 and values and values[-1]
    }
    return Query(since=since, until=until, filters=filters, group_by=group_by, stack_by=one("stack_by", "model"))


class _Handler(BaseHTTPRequestHandler):
    server: UiServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if not self._host_ok():
            return self._send(HTTPStatus.FORBIDDEN, b"unknown host\n", "text/plain")
        url = urlsplit(self.path)
        if url.path in ("/", "/index.html"):
            data, kind = asset("index.html") or (b"", "")
            return self._send(HTTPStatus.OK, data, kind)
        if url.path.startswith("/assets/"):
            found = asset(url.path.removeprefix("/assets/"))
            if found is not None:
                return self._send(HTTPStatus.OK, *found)
        if url.path == "/api/report":
            try:
                body = self.server.view.report(parse_qs(url.query))
                status = HTTPStatus.OK
            except QueryError as exc:
                body, status = {"error": str(exc)}, HTTPStatus.BAD_REQUEST
            return self._send(status, json.dumps(body).encode(), "application/json")
        return self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

    def _host_ok(self) -> bool:
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
        return host in ("127.0.0.1", "localhost")

    def _send(self, status: HTTPStatus, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the terminal shows the URL and ledger problems, not every request


class UiServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, view: LedgerView) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.view = view

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


def wait_loaded(view: LedgerView, timeout: float) -> None:
    """Wait for the first read of the ledger (or its failure), at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while view.state == "loading" and time.monotonic() < deadline:
        time.sleep(0.05)
