"""Fixtures for the end-to-end tests against real Prometheus / Alertmanager / vmagent.

The binaries come from ``$OBS_BIN`` (``eval "$(bash scripts/fetch-backends.sh)"``). If it
is unset, the ``obs_bin`` fixture runs ``scripts/fetch-backends.sh`` once per session. When
the backends cannot be had, the tests that need them are skipped with the reason, except
under CI (``CI`` set), where that is a failure.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import pytest

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:  # make `import obs_stack` work in every import mode
    sys.path.insert(0, str(_HERE))

from obs_stack import find_bin_dir, missing_binaries  # noqa: E402

REPO_ROOT = _HERE.parents[1]
FETCH_SCRIPT = REPO_ROOT / "scripts" / "fetch-backends.sh"
FETCH_TIMEOUT_S = 900


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _unavailable(request: pytest.FixtureRequest, reason: str) -> NoReturn:
    """Skip (or fail under CI) with ``reason``, and print it even without ``-rs``."""
    message = f"observability backends unavailable: {reason}"
    capman = request.config.pluginmanager.getplugin("capturemanager")
    if capman is not None:
        with capman.global_and_fixture_disabled():
            sys.stderr.write(f"\n[tests/e2e] {message}\n")
    if _in_ci():
        pytest.fail(f"{message} (CI is set, so this is an error, not a skip)", pytrace=False)
    pytest.skip(message)


def _fetch(request: pytest.FixtureRequest) -> Path:
    cmd = ["bash", str(FETCH_SCRIPT)]
    try:
        proc = subprocess.run(
            cmd,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=FETCH_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        _unavailable(request, f"{shlex.join(cmd)} did not complete: {e}")
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        _unavailable(request, f"{shlex.join(cmd)} exited with {proc.returncode}:\n{tail}")
    for line in proc.stdout.splitlines():
        if line.startswith("export OBS_BIN="):
            return Path(shlex.split(line.removeprefix("export OBS_BIN="))[0])
    _unavailable(request, f"{shlex.join(cmd)} printed no OBS_BIN line:\n{proc.stdout}")


@pytest.fixture(scope="session")
def obs_bin(request: pytest.FixtureRequest) -> Path:
    """Directory with prometheus, promtool, amtool, alertmanager and vmagent."""
    bin_dir = find_bin_dir()
    source = "$OBS_BIN"
    if bin_dir is None:
        bin_dir = _fetch(request)
        source = str(FETCH_SCRIPT.relative_to(REPO_ROOT))
    missing = missing_binaries(bin_dir)
    if missing:
        _unavailable(request, f"{bin_dir} (from {source}) lacks {', '.join(missing)}")
    return bin_dir
