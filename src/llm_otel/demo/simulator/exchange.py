"""One request/response exchange: the parsed request, response writing, stream plans, error bodies, headers."""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .scenario import Scenario

if TYPE_CHECKING:
    from .routes import Match
    from .server import Handler, SimulatedProvider

__all__ = ["Abort", "Exchange", "Step", "StreamPlan", "json_line", "sse"]

_REQUESTS_LIMIT = 10000
_TOKENS_LIMIT = 2000000
_TOKENS_REMAINING = 1999000
_CUT_AFTER = 2


class Abort(Exception):
    """The client went away or the server is stopping; stop writing."""


@dataclass
class Step:
    """One piece of a streamed response."""

    kind: str  # "pre", "content" or "post"
    data: bytes | Callable[[], bytes]  # a callable is built at send time
    usage: dict[str, int] | None = None  # normalized usage delivered once this step is written


@dataclass
class StreamPlan:
    """A whole streamed response: its steps, and what to send instead on ``sse_error``."""

    content_type: str
    steps: list[Step]
    error: bytes
    headers: dict[str, str] = field(default_factory=dict)


def sse(data: Any, event: str | None = None, sep: str = "\n\n") -> bytes:
    """One server-sent event (``data`` as JSON unless it is already a string)."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}{sep}".encode()


def json_line(data: Any) -> bytes:
    """One line of newline-delimited JSON."""
    return json.dumps(data, separators=(",", ":")).encode() + b"\n"


class Exchange:
    """State for one request: parsed inputs, scenario and response writing."""

    def __init__(self, provider: SimulatedProvider, handler: Handler) -> None:
        self.provider = provider
        self.handler = handler
        self.started = time.monotonic()
        self.family = "unknown"
        self.flavour = ""  # an OpenAI-compatible provider's quirks: "groq", "mistral"
        self.api = "unknown"
        self.model = ""
        self.stream = False
        self.headers: dict[str, str] = {}
        self.body: Any = None
        self.bad_body = False
        self.raw_body = b""
        self.scenario_text = ""
        self.scenario = Scenario()
        self.record: dict[str, Any] | None = None
        self.served_seq = 0
        self.rng = random.Random(0)
        self.usage: dict[str, int] | None = None
        self.headers_sent = False

    def read_request(self, match: Match | None) -> None:
        """Take the route, lowercased headers, JSON body, model, stream flag and scenario text from the request."""
        for k, v in self.handler.headers.items():
            k = k.lower()
            self.headers[k] = f"{self.headers[k]}, {v}" if k in self.headers else v
        if self.raw_body:
            try:
                self.body = json.loads(self.raw_body)
            except ValueError:
                self.bad_body = True
        self.bad_body = self.bad_body or (bool(self.raw_body) and not isinstance(self.body, dict))
        model = ""
        if match is not None:
            route = match.route
            self.family, self.api, self.flavour = route.family, route.api, route.flavour
            body = self.body if isinstance(self.body, dict) else None
            if match.model is not None:
                model = match.model
            elif body is not None:
                model = str(body.get("model") or "")
            if route.stream is not None:
                self.stream = route.stream
            elif body is not None:
                self.stream = bool(body.get("stream", route.stream_default))
        self.model, _, suffix = model.partition("+")
        self.scenario_text = ",".join(t for t in (self.headers.get("x-sim-scenario", ""), suffix) if t)
        self.rng = random.Random(f"{self.provider.seed}:{hashlib.sha1(self.raw_body).hexdigest()}")

    # -- timing -------------------------------------------------------------------------

    def delay(self, seconds: float) -> None:
        """Sleep, but wake up (and abort) when the server stops."""
        if seconds > 0 and self.provider._stopping.wait(seconds):
            raise Abort()

    def elapsed_ms(self) -> int:
        """Milliseconds since the request arrived."""
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
            raise Abort() from None

    def _send_head(self, status: int, headers: dict[str, str]) -> None:
        """Send the status line and headers."""
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
            raise Abort() from None
        self.headers_sent = True

    def send_json(
        self, status: int, payload: Any, headers: dict[str, str] | None = None, usage: dict[str, int] | None = None
    ) -> None:
        """Send a complete JSON response with Content-Length (keep-alive friendly)."""
        data = json.dumps(payload, separators=(",", ":")).encode()
        all_headers = {"Content-Type": "application/json"}
        all_headers.update(_family_headers(self, status))
        all_headers.update(headers or {})
        all_headers["Content-Length"] = str(len(data))
        previous = self.usage
        if usage is not None:
            self._set_usage(usage)
        try:
            self._send_head(status, all_headers)
            self._write(data)
        except Abort:
            if usage is not None:
                self._set_usage(previous)
            raise

    def run_stream(self, plan: StreamPlan) -> None:
        """Send a chunked streaming response, applying ttft/slow/cut/sse_error."""
        sc = self.scenario
        headers = {"Content-Type": plan.content_type, "Cache-Control": "no-cache"}
        headers.update(_family_headers(self, 200))
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
        """Write one HTTP chunk (nothing for empty data)."""
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
    """Seconds for a retry-after header: an integer when whole."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _rfc3339(seconds_from_now: float) -> str:
    """UTC time ``seconds_from_now`` from now, RFC 3339."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds_from_now))


# --------------------------------------------------------------------------------------
# Error bodies and response headers, per provider family
# --------------------------------------------------------------------------------------

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
    """An error body and extra headers the way the provider family sends them."""
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


def _family_headers(ex: Exchange, status: int) -> dict[str, str]:
    """Request-id, timing and rate-limit headers the way the provider family sends them."""
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
