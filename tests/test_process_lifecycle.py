"""A process's life with llm-otel, seen from outside: a bad config stops the start with one line; the exit is
prompt whatever the collector does, and delivers the last call's telemetry when it answers; ``llm-otel run``
passes SIGTERM and SIGINT (and Ctrl-C, once) to the program and exits with its code."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

EXIT_BUDGET_S = 1.0  # from the app's last line to the process's end

APP = """
import os, llm_otel, openai
llm_otel.instrument()  # endpoint from LLM_OTEL_ENDPOINT
client = openai.OpenAI(base_url=os.environ["SIM_URL"] + "/v1", api_key="x")
for model in ("gpt-4o-mini", "gpt-4o"):
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
print("LAST LINE", flush=True)
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLM_OTEL_"))}
    return {**env, "LLM_OTEL_LEDGER": "off", "LLM_OTEL_BUDGET_STATE": "off", **extra}


def _read_until(proc: subprocess.Popen[str], marker: str, timeout: float = 60.0) -> str:
    """Lines of ``proc``'s stdout up to the one containing ``marker`` (bounded in time)."""
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(max(0.0, deadline - time.monotonic())):
                break
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if marker in line:
                return "".join(seen)
    raise AssertionError(f"{marker!r} not printed; stdout so far: {''.join(seen)!r}")


def _seconds_to_exit(proc: subprocess.Popen[str]) -> float:
    start = time.monotonic()
    proc.wait(timeout=30)
    return time.monotonic() - start


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@contextlib.contextmanager
def _started(cmd: list[str], **kwargs: Any) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, **kwargs)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()


# --- exit ----------------------------------------------------------------------------------------------------
class _Collector:
    """A tiny OTLP/HTTP receiver on 127.0.0.1: records each POST to /v1/traces, /v1/metrics, /v1/logs."""

    def __init__(self) -> None:
        self.received: list[tuple[str, bytes]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                ok = self.path in ("/v1/traces", "/v1/metrics", "/v1/logs")
                if ok:
                    received.append((self.path, body))
                self.send_response(200 if ok else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _Collector:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def spans(self) -> list[dict[str, Any]]:
        out = []
        for path, body in self.received:
            if path == "/v1/traces":
                for rs in ExportTraceServiceRequest.FromString(body).resource_spans:
                    for ss in rs.scope_spans:
                        out += [{a.key: _value(a.value) for a in span.attributes} for span in ss.spans]
        return out

    def token_points(self) -> dict[tuple[str, str], float]:
        """(request model, token type) -> the gen_ai.client.token.usage sum, as last received."""
        out = {}
        for path, body in self.received:
            if path != "/v1/metrics":
                continue
            for rm in ExportMetricsServiceRequest.FromString(body).resource_metrics:
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        if metric.name == "gen_ai.client.token.usage":
                            for dp in metric.histogram.data_points:
                                attrs = {a.key: _value(a.value) for a in dp.attributes}
                                out[attrs["gen_ai.request.model"], attrs["gen_ai.token.type"]] = dp.sum
        return out


def _value(v: Any) -> Any:
    return getattr(v, v.WhichOneof("value")) if v.WhichOneof("value") else None


@contextlib.contextmanager
def _closed_port() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    yield f"http://127.0.0.1:{port}"  # nothing listens: connections are refused


@contextlib.contextmanager
def _silent_collector() -> Iterator[str]:
    with socket.socket() as s:  # accepts connections (the kernel does) and never answers
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.parametrize("collector", [_closed_port, _silent_collector], ids=["refused", "silent"])
def test_exit_is_prompt_whatever_the_collector_does(sim: Any, tmp_path: Path, collector: Any) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP)
    with collector() as url, (tmp_path / "stderr").open("w+") as err:
        env = _env(SIM_URL=sim.base_url, LLM_OTEL_ENDPOINT=url)
        with _started([sys.executable, str(app)], env=env, stderr=err) as proc:
            _read_until(proc, "LAST LINE")
            elapsed = _seconds_to_exit(proc)
        err.seek(0)
        stderr = err.read()
    assert proc.returncode == 0, stderr
    assert elapsed < EXIT_BUDGET_S, f"exit took {elapsed:.2f} s after the app's last line"
    assert "telemetry not exported within" in stderr  # the user is told what was dropped


def test_exit_delivers_the_last_calls_span_and_metric_points(sim: Any, tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP)
    with _Collector() as collector:
        env = _env(SIM_URL=sim.base_url, LLM_OTEL_ENDPOINT=collector.url)
        with _started([sys.executable, str(app)], env=env, stderr=subprocess.PIPE) as proc:
            _read_until(proc, "LAST LINE")
            elapsed = _seconds_to_exit(proc)
            assert proc.stderr is not None
            stderr = proc.stderr.read()
            proc.stderr.close()
        spans, points = collector.spans(), collector.token_points()
    assert proc.returncode == 0, stderr
    assert stderr == ""
    assert elapsed < EXIT_BUDGET_S, f"exit took {elapsed:.2f} s after the app's last line"
    assert sorted(s["gen_ai.request.model"] for s in spans) == ["gpt-4o", "gpt-4o-mini"]
    assert {s["gen_ai.usage.input_tokens"] for s in spans} == {12}
    assert points[("gpt-4o", "input")] == 12 and points[("gpt-4o", "output")] == 8


# --- llm-otel run: signals -----------------------------------------------------------------------------------
def _wrapper(app: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "llm_otel.cli", "run", "--", sys.executable, str(app), *args]


HANDLING_APP = """
import os, signal, sys, time
def handler(signum, frame):
    with open(sys.argv[1], "w") as f:
        f.write(signal.Signals(signum).name)
    sys.exit(0)
signal.signal(signal.SIGTERM, handler)
signal.signal(signal.SIGINT, handler)
print("PID", os.getpid(), flush=True)
time.sleep(60)
"""


def _child_pid(stdout: str) -> int:
    return int(stdout.split("PID")[1].split()[0])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_run_passes_the_signal_to_the_program_and_exits_with_its_code(tmp_path: Path, signum: int) -> None:
    app, out = tmp_path / "app.py", tmp_path / "handled"
    app.write_text(HANDLING_APP)
    with _started(_wrapper(app, str(out)), env=_env()) as wrapper:
        child = _child_pid(_read_until(wrapper, "PID"))
        try:
            wrapper.send_signal(signum)
            elapsed = _seconds_to_exit(wrapper)
            assert wrapper.returncode == 0  # the program's own exit code
            assert out.read_text() == signal.Signals(signum).name  # its handler ran
            assert elapsed < 5.0
            assert not _alive(child), "the program outlived the wrapper"
        finally:
            if _alive(child):
                os.kill(child, signal.SIGKILL)


def test_run_reports_death_by_signal_as_128_plus_n(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text('import os, time\nprint("PID", os.getpid(), flush=True)\ntime.sleep(60)\n')
    with _started(_wrapper(app), env=_env()) as wrapper:
        child = _child_pid(_read_until(wrapper, "PID"))
        try:
            wrapper.send_signal(signal.SIGTERM)
            _seconds_to_exit(wrapper)
            assert wrapper.returncode == 128 + signal.SIGTERM
            assert not _alive(child)
        finally:
            if _alive(child):
                os.kill(child, signal.SIGKILL)


COUNTING_APP = """
import os, signal, sys, time
count = []
signal.signal(signal.SIGINT, lambda signum, frame: count.append(signum))
print("PID", os.getpid(), flush=True)
deadline = time.monotonic() + 30
while not count and time.monotonic() < deadline:
    time.sleep(0.01)
time.sleep(0.5)  # a second SIGINT, if any, arrives meanwhile
with open(sys.argv[1], "w") as f:
    f.write(str(len(count)))
"""

# Runs the command in a new session whose controlling terminal is stdin (a pty), as a shell would.
IN_TERMINAL = """
import fcntl, os, sys, termios
os.setsid()
fcntl.ioctl(0, termios.TIOCSCTTY, 0)
os.execv(sys.argv[1], sys.argv[1:])
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pty and si_code semantics checked on Linux")
def test_run_ctrl_c_in_a_terminal_reaches_the_program_once(tmp_path: Path) -> None:
    import pty

    app, out = tmp_path / "app.py", tmp_path / "count"
    app.write_text(COUNTING_APP)
    master, slave = pty.openpty()
    try:
        with _started(
            [sys.executable, "-c", IN_TERMINAL, *_wrapper(app, str(out))], env=_env(), stdin=slave
        ) as wrapper:
            child = _child_pid(_read_until(wrapper, "PID"))
            try:
                os.write(master, b"\x03")  # Ctrl-C: the terminal signals its foreground group, program included
                _seconds_to_exit(wrapper)
                assert wrapper.returncode == 0
                assert out.read_text() == "1"
            finally:
                if _alive(child):
                    os.kill(child, signal.SIGKILL)
    finally:
        os.close(slave)
        os.close(master)


# --- start: configuration errors -----------------------------------------------------------------------------
def test_a_malformed_config_file_is_one_line_naming_file_line_and_problem(tmp_path: Path) -> None:
    cfg = tmp_path / "llm-otel.yaml"
    cfg.write_text("service_name: bot\nledger: off\nendpoint: http: //x\n")
    proc = subprocess.run([sys.executable, "-m", "llm_otel.cli", "run", "--config", str(cfg), "--", sys.executable,
                           "-c", "print('ran')"], capture_output=True, text=True, timeout=60, env=_env())  # fmt: skip
    assert proc.returncode == 2
    assert proc.stdout == ""  # the program did not start
    assert proc.stderr.splitlines() == [
        f"llm-otel: configuration error: config file {cfg}, line 3: mapping values are not allowed here"
    ]


def test_an_invalid_exit_timeout_is_named() -> None:
    proc = subprocess.run([sys.executable, "-m", "llm_otel.cli", "run", "--", sys.executable, "-c", "print('ran')"],
                          capture_output=True, text=True, timeout=60, env=_env(LLM_OTEL_EXIT_TIMEOUT="-1"))  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "exit_timeout: must be 0 or more seconds (got -1.0)" in proc.stderr
