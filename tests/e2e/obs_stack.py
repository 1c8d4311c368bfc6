"""A real metrics + alerting stack for end-to-end tests, without Docker.

Pipeline::

    OTel SDK --OTLP/HTTP--> vmagent --remote write--> Prometheus --rules--> Alertmanager
                                                                            --webhook--> in-process sink

The binaries come from ``scripts/fetch-backends.sh`` (Debian packages unpacked into a
cache directory, ``$OBS_BIN``). Everything listens on 127.0.0.1 on free ports, and every
process is started in its own process group and killed on exit.

Facts this harness relies on:

* Debian's Prometheus has no OTLP receiver, so vmagent receives OTLP and remote-writes to
  Prometheus. ``-opentelemetry.usePrometheusNaming`` is mandatory: without it vmagent
  forwards dotted names, which Prometheus drops. With it, a Counter ``llm_otel.cost`` with
  unit ``USD`` becomes ``llm_otel_cost_USD_total``; a Histogram ``gen_ai.client.token.usage``
  with unit ``{token}`` becomes ``gen_ai_client_token_usage_{bucket,count,sum}``; resource
  attributes become labels (``service_name``...), and there is no ``job``/``instance``.
* vmagent drops *delta* Sums and Histograms silently: export with CUMULATIVE temporality.
* Prometheus only learns its static Alertmanager about 5 s after start, and by default
  re-sends alerts only every minute: the harness sets ``--rules.alert.resend-delay=1s`` and
  waits until ``/api/v1/alertmanagers`` lists an active one.
* vmagent may deliver blocks out of order: one queue plus ``out_of_order_time_window``.
"""

from __future__ import annotations

import atexit
import contextlib
import gzip
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

REQUIRED_BINARIES = ("prometheus", "promtool", "amtool", "alertmanager", "vmagent")
WEBHOOK_URL_PLACEHOLDER = "${WEBHOOK_URL}"
LOG_TAIL_LINES = 40
_HTTP_TIMEOUT = 5.0
_POLL_INTERVAL = 0.1


def find_bin_dir() -> Path | None:
    """The directory named by ``$OBS_BIN`` (set by ``scripts/fetch-backends.sh``), or None."""
    value = os.environ.get("OBS_BIN", "").strip()
    return Path(value) if value else None


def missing_binaries(bin_dir: Path) -> list[str]:
    """Names from REQUIRED_BINARIES that are not executable files in ``bin_dir``."""
    return [n for n in REQUIRED_BINARIES if not os.access(bin_dir / n, os.X_OK)]


class ObsStackError(RuntimeError):
    """The stack could not start, a process died, or an API call failed."""


class ObsStackTimeout(ObsStackError, TimeoutError):
    """A bounded wait ran out of time."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http_get(url: str, timeout: float = _HTTP_TIMEOUT) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    return "\n".join(text.splitlines()[-lines:])


class _Process:
    """One child process in its own process group, logging to ``log_path``."""

    def __init__(self, name: str, argv: list[str], log_path: Path, cwd: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,  # own process group: killpg reaches everything
            )
        self._reaped = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    def exit_status(self) -> int | None:
        """The exit status if the process has ended, without reaping it (the zombie keeps
        the PID and process group id reserved until stop())."""
        if self._reaped:
            return self.popen.returncode
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return self.popen.poll()
        if info is None:
            return None
        return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status

    def stop(self, timeout: float = 5.0) -> None:
        if self._reaped:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, timeout)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)
            try:
                self.popen.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # Members of the group that outlived the leader (there should be none).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self._reaped = self.popen.returncode is not None

    def describe(self) -> str:
        status = self.exit_status()
        state = "running" if status is None else f"exited with status {status}"
        return f"--- {self.name} (pid {self.pid}, {state}); last lines of {self.log_path}:\n{_tail(self.log_path)}"


class _WebhookHandler(BaseHTTPRequestHandler):
    server: _WebhookServer

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            payload = {"_raw": body.decode("utf-8", "replace")}
        self.server.record(payload, self.path)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _WebhookServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, record: Callable[[dict[str, Any], str], None]) -> None:
        super().__init__(("127.0.0.1", 0), _WebhookHandler)
        self.record = record
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/alert"


class ObsStack:
    """Alertmanager + Prometheus + vmagent + webhook sink, as a context manager.

    ``rule_files`` are Prometheus rule files (absolute or relative paths). ``alertmanager_config``
    replaces the default Alertmanager YAML; the text ``${WEBHOOK_URL}`` in it is replaced by
    the in-process webhook's URL. The default routes every alert (no grouping) to the webhook
    with ``send_resolved: true`` and 0.5 s/1 s group wait/interval.
    """

    def __init__(
        self,
        bin_dir: Path,
        workdir: Path,
        rule_files: Sequence[Path] = (),
        alertmanager_config: str | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        self.bin_dir = Path(bin_dir).absolute()
        self.workdir = Path(workdir).absolute()
        self.rule_files = [Path(p).resolve() for p in rule_files]
        self.alertmanager_config = alertmanager_config
        self.start_timeout = start_timeout
        self.processes: list[_Process] = []
        self._webhook: _WebhookServer | None = None
        self._payloads: list[dict[str, Any]] = []
        self._paths: list[str] = []
        self._payloads_lock = threading.Lock()
        self.am_url = ""
        self.prom_url = ""
        self.vmagent_url = ""
        self.otlp_metrics_url = ""
        self.webhook_url = ""
        self.start_seconds: float | None = None

    # ---- lifecycle --------------------------------------------------------------------
    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        missing = missing_binaries(self.bin_dir)
        if missing:
            raise ObsStackError(f"{self.bin_dir} lacks {', '.join(missing)}; run scripts/fetch-backends.sh")
        absent = [str(p) for p in self.rule_files if not p.is_file()]
        if absent:  # Prometheus would silently load nothing for them
            raise ObsStackError(f"rule files not found: {', '.join(absent)}")
        t0 = time.monotonic()
        deadline = t0 + self.start_timeout
        atexit.register(self.stop)
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self._webhook = _WebhookServer(self._record_payload)
            self._webhook.thread.start()
            self.webhook_url = self._webhook.url
            self._start_alertmanager(deadline)
            self._start_prometheus(deadline)
            self._start_vmagent(deadline)
            self._wait_ready(f"{self.prom_url}/-/ready", deadline, "Prometheus ready")
            self._wait_ready(f"{self.vmagent_url}/health", deadline, "vmagent ready")
            self._wait_for(
                lambda: bool(self._prom_api("/api/v1/alertmanagers")["activeAlertmanagers"]),
                deadline,
                "Prometheus to list an active Alertmanager",
            )
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0

    def stop(self) -> None:
        """Kill every process this stack started (process groups) and stop the webhook."""
        atexit.unregister(self.stop)
        errors = []
        for proc in reversed(self.processes):
            try:
                proc.stop()
            except (
                OSError,
                subprocess.SubprocessError,
            ) as e:  # keep stopping the others
                errors.append(f"{proc.name}: {e!r}")
        webhook, self._webhook = self._webhook, None
        if webhook is not None:
            webhook.shutdown()
            webhook.server_close()
            webhook.thread.join(timeout=5)
        if errors:
            raise ObsStackError("failed to stop: " + "; ".join(errors))

    def _spawn(self, name: str, argv: list[str]) -> _Process:
        proc = _Process(name, argv, self.workdir / f"{name}.log", self.workdir)
        self.processes.append(proc)
        return proc

    def _start_with_free_port(
        self,
        name: str,
        argv_for: Callable[[int], list[str]],
        ready_path: str,
        deadline: float,
    ) -> int:
        """Start a process on a free port; retry on another port if it lost the race."""
        for attempt in range(3):
            port = _free_port()
            proc = self._spawn(name if attempt == 0 else f"{name}-{attempt}", argv_for(port))
            try:
                self._wait_ready(f"http://127.0.0.1:{port}{ready_path}", deadline, f"{name} ready")
                return port
            except ObsStackError:
                if proc.exit_status() is None or "address already in use" not in _tail(proc.log_path):
                    raise
                proc.stop()
                self.processes.remove(proc)
        raise ObsStackError(f"{name}: no free port after 3 attempts\n{self._process_report()}")

    def _start_alertmanager(self, deadline: float) -> None:
        if self.alertmanager_config is None:
            config = json.dumps(  # JSON is YAML
                {
                    "route": {
                        "receiver": "webhook",
                        "group_by": ["..."],
                        "group_wait": "500ms",
                        "group_interval": "1s",
                        "repeat_interval": "1h",
                    },
                    "receivers": [
                        {
                            "name": "webhook",
                            "webhook_configs": [{"url": self.webhook_url, "send_resolved": True}],
                        }
                    ],
                },
                indent=2,
            )
        else:
            config = self.alertmanager_config.replace(WEBHOOK_URL_PLACEHOLDER, self.webhook_url)
        config_file = self.workdir / "alertmanager.yml"
        config_file.write_text(config)
        port = self._start_with_free_port(
            "alertmanager",
            lambda port: [
                str(self.bin_dir / "alertmanager"),
                f"--config.file={config_file}",
                f"--storage.path={self.workdir / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",  # no HA gossip (default would be 0.0.0.0:9094)
            ],
            "/-/ready",
            deadline,
        )
        self.am_url = f"http://127.0.0.1:{port}"

    def _start_prometheus(self, deadline: float) -> None:
        am_host = self.am_url.removeprefix("http://")
        config = {
            "global": {"scrape_interval": "15s", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in self.rule_files],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [am_host]}]}]},
            "storage": {"tsdb": {"out_of_order_time_window": "30m"}},
        }
        config_file = self.workdir / "prometheus.yml"
        config_file.write_text(json.dumps(config, indent=2))
        # /-/healthy answers as soon as the web server listens; /-/ready is awaited later so
        # that the ~5 s Alertmanager discovery overlaps with vmagent's start.
        port = self._start_with_free_port(
            "prometheus",
            lambda port: [
                str(self.bin_dir / "prometheus"),
                f"--config.file={config_file}",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--storage.tsdb.path={self.workdir / 'prom-data'}",
                "--web.enable-remote-write-receiver",
                "--rules.alert.resend-delay=1s",
            ],
            "/-/healthy",
            deadline,
        )
        self.prom_url = f"http://127.0.0.1:{port}"

    def _start_vmagent(self, deadline: float) -> None:
        port = self._start_with_free_port(
            "vmagent",
            lambda port: [
                str(self.bin_dir / "vmagent"),
                f"-httpListenAddr=127.0.0.1:{port}",
                f"-remoteWrite.url={self.prom_url}/api/v1/write",
                f"-remoteWrite.tmpDataPath={self.workdir / 'vmagent-data'}",
                "-remoteWrite.forcePromProto=true",
                "-remoteWrite.queues=1",
                "-remoteWrite.flushInterval=200ms",
                "-opentelemetry.usePrometheusNaming",
            ],
            "/health",
            deadline,
        )
        self.vmagent_url = f"http://127.0.0.1:{port}"
        self.otlp_metrics_url = f"{self.vmagent_url}/opentelemetry/v1/metrics"

    # ---- waiting ----------------------------------------------------------------------
    def _process_report(self) -> str:
        return "\n".join(p.describe() for p in self.processes)

    def check_alive(self) -> None:
        """Raise ObsStackError, with the log tails, if a process of the stack has died."""
        dead = [p for p in self.processes if p.exit_status() is not None]
        if dead:
            names = ", ".join(p.name for p in dead)
            raise ObsStackError(f"process died: {names}\n{self._process_report()}")

    def _wait_for(self, condition: Callable[[], bool], deadline: float, what: str) -> None:
        last_error: Exception | None = None
        while True:
            self.check_alive()
            try:
                if condition():
                    return
            except (OSError, ValueError, KeyError, ObsStackError) as e:
                last_error = e
            if time.monotonic() >= deadline:
                raise ObsStackTimeout(
                    f"timed out waiting for {what} (last error: {last_error!r})\n{self._process_report()}"
                )
            time.sleep(_POLL_INTERVAL)

    def _wait_ready(self, url: str, deadline: float, what: str) -> None:
        self._wait_for(lambda: _http_get(url, timeout=1.0)[0] == 200, deadline, what)

    # ---- queries ----------------------------------------------------------------------
    def _prom_api(self, path: str, params: dict[str, str] | None = None) -> Any:
        url = f"{self.prom_url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        status, body = _http_get(url)
        try:
            doc = json.loads(body)
        except ValueError as e:
            raise ObsStackError(f"GET {url}: HTTP {status}, not JSON: {body[:200]!r}") from e
        if status != 200 or doc.get("status") != "success":
            raise ObsStackError(f"GET {url}: HTTP {status}: {doc.get('error', doc)}")
        return doc["data"]

    def prom_api(self, path: str, **params: str) -> Any:
        """``data`` of any Prometheus HTTP API GET, e.g. ``prom_api("/api/v1/alerts")``."""
        return self._prom_api(path, params)

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query (at ``at``, a Unix time, or now); returns the result vector (a scalar/string
        comes back as one element with an empty ``metric``)."""
        params = {"query": promql} if at is None else {"query": promql, "time": f"{at:.3f}"}
        data = self._prom_api("/api/v1/query", params)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def wait_query(
        self,
        promql: str,
        predicate: Callable[[list[dict[str, Any]]], bool] = bool,
        timeout: float = 15.0,
    ) -> list[dict[str, Any]]:
        """Poll ``query(promql)`` until ``predicate(result)`` is true (default: non-empty)."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            result = self.query(promql)
            if predicate(result):
                return result
            if time.monotonic() >= deadline:
                raise ObsStackTimeout(f"after {timeout} s, {promql!r} still gives {result!r}\n{self._process_report()}")
            time.sleep(_POLL_INTERVAL)

    def webhook_payloads(self) -> list[dict[str, Any]]:
        """Every JSON body the webhook received so far, oldest first."""
        with self._payloads_lock:
            return list(self._payloads)

    def webhook_requests(self) -> list[tuple[str, dict[str, Any]]]:
        """Every (request path, JSON body) the webhook received so far, oldest first. Alertmanager
        configs can route to ``${WEBHOOK_URL}/something`` to make the receiver visible in the path."""
        with self._payloads_lock:
            return list(zip(self._paths, self._payloads, strict=True))

    def _record_payload(self, payload: dict[str, Any], path: str = "") -> None:
        with self._payloads_lock:
            self._payloads.append(payload)
            self._paths.append(path)

    def wait_webhook(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20.0) -> dict[str, Any]:
        """Wait for a webhook payload for which ``predicate(payload)`` is true; return it."""
        deadline = time.monotonic() + timeout
        while True:
            for payload in self.webhook_payloads():
                if predicate(payload):
                    return payload
            self.check_alive()
            if time.monotonic() >= deadline:
                raise ObsStackTimeout(
                    f"no matching webhook payload after {timeout} s; got "
                    f"{json.dumps(self.webhook_payloads())[:2000]}\n{self._process_report()}"
                )
            time.sleep(_POLL_INTERVAL)


class _OtlpSinkHandler(BaseHTTPRequestHandler):
    server: OtlpSink

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            body = gzip.decompress(body)
        self.server.count(self.path, len(body), body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class OtlpSink(ThreadingHTTPServer):
    """A stand-in OTLP/HTTP receiver for the signals no backend here can take (traces, logs).

    Answers every POST with 200 and an empty body (an empty Export*ServiceResponse), counts the
    requests and bytes per path (``/v1/traces``, ``/v1/logs``) and keeps the (protobuf) bodies of
    ``/v1/logs``, which :meth:`log_records` decodes. Use as a context manager.
    """

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _OtlpSinkHandler)
        self.requests: dict[str, int] = {}
        self.bytes: dict[str, int] = {}
        self._log_bodies: list[bytes] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def count(self, path: str, size: int, body: bytes = b"") -> None:
        with self._lock:
            self.requests[path] = self.requests.get(path, 0) + 1
            self.bytes[path] = self.bytes.get(path, 0) + size
            if path == "/v1/logs":
                self._log_bodies.append(body)

    def log_records(self) -> list[dict[str, Any]]:
        """Every log record received on ``/v1/logs`` so far, decoded: ``event_name``, ``severity_number``,
        ``severity_text``, ``body`` (string), ``attributes`` and ``resource`` (dicts of plain values),
        ``trace_id`` / ``span_id`` (hex, "" when unset)."""
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

        def plain(value: Any) -> Any:  # an AnyValue
            kind = value.WhichOneof("value")
            if kind == "array_value":
                return [plain(v) for v in value.array_value.values]
            if kind == "kvlist_value":
                return {kv.key: plain(kv.value) for kv in value.kvlist_value.values}
            return getattr(value, kind) if kind else None

        with self._lock:
            bodies = list(self._log_bodies)
        out = []
        for body in bodies:
            request = ExportLogsServiceRequest()
            request.ParseFromString(body)
            for rl in request.resource_logs:
                resource = {kv.key: plain(kv.value) for kv in rl.resource.attributes}
                for sl in rl.scope_logs:
                    for rec in sl.log_records:
                        attributes = {kv.key: plain(kv.value) for kv in rec.attributes}
                        out.append({
                            "event_name": getattr(rec, "event_name", "") or attributes.get("event.name", ""),
                            "severity_number": rec.severity_number,
                            "severity_text": rec.severity_text,
                            "body": plain(rec.body) if rec.HasField("body") else None,
                            "attributes": attributes,
                            "resource": resource,
                            "trace_id": rec.trace_id.hex(),
                            "span_id": rec.span_id.hex(),
                        })  # fmt: skip
        return out

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)
