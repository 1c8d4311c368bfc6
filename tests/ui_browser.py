"""Helpers for the browser tests: Debian's Chromium (``scripts/fetch-chromium.sh``) driven by Playwright, the
``llm-otel ui`` server in a subprocess, and the check that every number on a page equals the JSON report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "ui"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def chromium_path() -> str:
    """``$CHROMIUM`` or the one scripts/fetch-chromium.sh unpacked; skip (fail under CI) without one."""
    path = os.environ.get("CHROMIUM") or str(REPO_ROOT / ".cache" / "chromium" / "bin" / "chromium")
    if not os.access(path, os.X_OK):
        message = 'Chromium unavailable: run `eval "$(bash scripts/fetch-chromium.sh)"` (scripts/test.sh does)'
        if _in_ci():
            pytest.fail(f"{message} (CI is set, so this is an error, not a skip)", pytrace=False)
        pytest.skip(message)
    return path


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_OTEL_", "OTEL_"))}
    return subprocess.run(
        [sys.executable, "-m", "llm_otel.cli", *args], capture_output=True, text=True, env=env, timeout=120, check=check
    )


def json_report(*args: str) -> dict[str, Any]:
    return json.loads(cli("report", "--format", "json", *args).stdout)


@contextmanager
def ui_server(*args: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``llm-otel ui --port 0 ARGS`` until the block ends; yields its URL and the process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_OTEL_", "OTEL_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_otel.cli", "ui", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert "http://127.0.0.1:" in line, (
            f"llm-otel ui printed {line!r}; stderr: {proc.stderr.read() if proc.stderr else ''}"
        )
        url = line.split()[2]
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def resolve(data: Any, path: str) -> Any:
    for part in path.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def page_numbers(page: Any) -> list[tuple[str, str]]:
    return page.eval_on_selector_all("[data-key]", "els => els.map(e => [e.dataset.key, e.dataset.value])")


def assert_numbers_equal(page: Any, report: dict[str, Any], approx: tuple[str, ...] = ()) -> int:
    """Every ``[data-key]`` number on the page equals the report's value at that path; returns how many."""
    shown = page_numbers(page)
    assert shown, "the page shows no numbers"
    for key, value in shown:
        expected = resolve(report, key)
        if expected is None:
            assert value == "", f"{key}: page {value!r}, report null"
        elif any(key.endswith(a) for a in approx):
            assert float(value) == pytest.approx(expected, rel=1e-3), key
        else:
            assert float(value) == expected, f"{key}: page {value!r}, report {expected!r}"
    return len(shown)


def wait_render(page: Any, after: int = 0, timeout: float = 20.0) -> int:
    """Wait until the page finished a render after the ``after``-th one; returns the render count. (Polled from
    here: the page's content security policy forbids the ``eval`` that Playwright's ``wait_for_function`` uses.)"""
    deadline = time.monotonic() + timeout
    while True:
        renders = int(page.get_attribute("body", "data-renders") or 0)
        if renders > after and page.get_attribute("body", "data-ready") == "1":
            return renders
        assert time.monotonic() < deadline, f"no render after the {after}th in {timeout} s"
        time.sleep(0.05)


def shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
