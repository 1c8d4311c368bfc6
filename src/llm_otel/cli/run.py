"""``llm-otel run -- COMMAND``: run a program with llm-otel applied, no code changes (like
``opentelemetry-instrument``): a ``sitecustomize`` on PYTHONPATH instruments every Python process."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from ..config import load_settings

BOOTSTRAP = Path(__file__).resolve().parent.parent / "_bootstrap"


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
    return subprocess.call(command, env=env)
