"""``llm-otel run -- COMMAND``: run a program with llm-otel applied, no code changes (like
``opentelemetry-instrument``): a ``sitecustomize`` on PYTHONPATH instruments every Python process.

The wrapper passes SIGTERM and SIGINT on to the program and exits with its exit code (128 + N when signal N
ended it), so that stopping it (``docker stop``, systemd, Ctrl-C) stops the program gracefully: the program's
own handlers and llm-otel's final flush run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..config import load_settings

BOOTSTRAP = Path(__file__).resolve().parent.parent / "_bootstrap"
FORWARDED = (signal.SIGTERM, signal.SIGINT)
# Reset to their defaults in the program, as subprocess does (Python ignores SIGPIPE, for one).
_DEFAULTED = tuple(getattr(signal, name) for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ") if hasattr(signal, name))
_SI_KERNEL = 0x80  # Linux si_code of a signal the kernel sent: the terminal's Ctrl-C to its foreground group


class RunError(ValueError):
    """The command cannot be started; the message is one line for the user."""


def run(command: list[str], config: str | None = None) -> int:
    """Run ``command`` with instrumentation; returns its exit code. The configuration is validated first."""
    if not command:
        raise RunError("nothing to run: use llm-otel run -- python app.py")
    env = dict(os.environ)
    if config:
        env["LLM_OTEL_CONFIG"] = str(Path(config).resolve())
    load_settings(env=env)  # a bad config fails here, with its message, before the program starts
    if shutil.which(command[0], path=env.get("PATH")) is None and not Path(command[0]).exists():
        raise RunError(f"command not found: {command[0]}")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(BOOTSTRAP), env.get("PYTHONPATH", "")) if p)
    if hasattr(signal, "sigtimedwait"):
        return _exit_code(_spawn_and_wait(command, env))
    return _exit_code(_call_with_handlers(command, env))  # macOS, Windows


def _exit_code(status: int) -> int:
    """A negative status (killed by signal N) as shells report it: 128 + N."""
    return 128 - status if status < 0 else status


def _spawn_and_wait(command: list[str], env: dict[str, str]) -> int:
    """Block the forwarded signals (and SIGCHLD), start the program with the usual mask, and take each
    signal synchronously (``sigtimedwait``): no window in which the wrapper dies and leaves it running."""
    watched = {*FORWARDED, signal.SIGCHLD}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    try:
        try:
            pid = os.posix_spawnp(command[0], command, env, setsigmask=previous, setsigdef=_DEFAULTED)
        except OSError as exc:
            raise RunError(f"cannot run {command[0]}: {exc.strerror or exc}") from None
        return _wait_forwarding(pid, watched)
    finally:
        for _ in watched:  # signals that came after the program ended must not kill the wrapper now
            if signal.sigtimedwait(watched, 0) is None:
                break
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _wait_forwarding(pid: int, watched: set[signal.Signals]) -> int:
    """Forward SIGTERM / SIGINT to ``pid`` until it ends; its wait status as an exit code."""
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        info = signal.sigtimedwait(watched, 1.0)  # SIGCHLD ends the wait when the program ends
        if info is not None and info.si_signo != signal.SIGCHLD and not _program_has_it(info, pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, info.si_signo)


def _program_has_it(info: Any, pid: int) -> bool:
    """Ctrl-C in a terminal signals the whole foreground process group, the program included: forwarding it
    too would interrupt the program twice (the second time in its clean-up)."""
    if not sys.platform.startswith("linux") or info.si_code != _SI_KERNEL:
        return False
    try:
        return os.getpgid(pid) == os.getpgrp()
    except ProcessLookupError:
        return True


def _call_with_handlers(command: list[str], env: dict[str, str]) -> int:
    """Where signals cannot be waited for synchronously: handlers that forward them to the program."""
    procs: list[subprocess.Popen[bytes]] = []

    def forward(signum: int, _frame: Any) -> None:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)

    previous = {signum: signal.signal(signum, forward) for signum in FORWARDED}
    try:
        procs.append(subprocess.Popen(command, env=env))
        return procs[0].wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
