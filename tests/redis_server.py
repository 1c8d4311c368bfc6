"""A real redis-server on 127.0.0.1 for the Redis budget-store tests: started on a free port in a temporary
directory, killed and restarted on the same port when a test asks, and always stopped by its PID.

The binary is ``$REDIS_SERVER`` (``eval "$(bash scripts/fetch-redis.sh)"``, which scripts/test.sh runs), else
``redis-server`` on the PATH, else scripts/fetch-redis.sh is run once. Without one the tests are skipped with
the reason, except under CI (``CI`` set), where that is a failure, as for the end-to-end backends.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FETCH_SCRIPT = REPO_ROOT / "scripts" / "fetch-redis.sh"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _unavailable(request: pytest.FixtureRequest, reason: str) -> NoReturn:
    message = f"redis-server unavailable: {reason}"
    capman = request.config.pluginmanager.getplugin("capturemanager")
    if capman is not None:
        with capman.global_and_fixture_disabled():
            sys.stderr.write(f"\n[tests/redis] {message}\n")
    if _in_ci():
        pytest.fail(f"{message} (CI is set, so this is an error, not a skip)", pytrace=False)
    pytest.skip(message)


def find_binary(request: pytest.FixtureRequest) -> str:
    """``$REDIS_SERVER``, ``redis-server`` on the PATH, or what scripts/fetch-redis.sh fetches."""
    given = os.environ.get("REDIS_SERVER")
    if given:
        if not os.access(given, os.X_OK):
            _unavailable(request, f"REDIS_SERVER={given} is not an executable")
        return given
    found = shutil.which("redis-server")
    if found:
        return found
    cmd = ["bash", str(FETCH_SCRIPT)]
    try:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=600, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        _unavailable(request, f"{shlex.join(cmd)} did not complete: {exc}")
    for line in proc.stdout.splitlines():
        if line.startswith("export REDIS_SERVER="):
            return shlex.split(line.removeprefix("export REDIS_SERVER="))[0]
    tail = "\n".join(proc.stderr.strip().splitlines()[-10:])
    _unavailable(request, f"{shlex.join(cmd)} exited with {proc.returncode} and printed no REDIS_SERVER:\n{tail}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process at a time on ``port``; ``kill()`` + ``start()`` is a crash and a restart."""

    def __init__(self, binary: str, workdir: Path, *, persist: bool = False, password: str | None = None) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.persist = persist
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> RedisServer:
        args = [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.workdir),
                "--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning",
                "--logfile", str(self.workdir / "redis.log")]  # fmt: skip
        if self.persist:
            args += ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
        else:
            args += ["--appendonly", "no", "--save", ""]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                log = (self.workdir / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}: {log}")
            if self._pong():
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer on 127.0.0.1:{self.port} within {timeout} s")
            time.sleep(0.02)

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                auth = f"AUTH {self.password}\r\n" if self.password else ""
                s.sendall(f"{auth}PING\r\n".encode())
                return b"PONG" in s.recv(256) or (bool(auth) and b"PONG" in s.recv(256))
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: a crash (without persistence everything is gone)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def client(self) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, decode_responses=True,
                           socket_timeout=5)  # fmt: skip
