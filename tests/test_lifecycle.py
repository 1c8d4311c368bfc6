"""instrument() before or after import, twice, uninstrument() restoring originals, and zero-code runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import openai
import openai._base_client as base

import llm_otel
from llm_otel.sinks import ledger

MSG = [{"role": "user", "content": "hello"}]


def _run_script(code: str, tmp_path: Path, *, argv_prefix: list[str] | None = None, env: dict | None = None) -> Any:
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(code))
    cmd = [*(argv_prefix or [sys.executable]), str(script)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_instrument_before_import_patches_lazily(sim: Any, tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    proc = _run_script(
        f"""
        import sys, llm_otel
        llm_otel.instrument(ledger={str(db)!r})
        assert "openai" not in sys.modules, "instrument() must not import the SDK"
        import openai
        openai.OpenAI(base_url={sim.openai_base_url!r}, api_key="x").chat.completions.create(
            model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}])
        llm_otel.flush()
        print("CALLS", sum(t.calls for t in llm_otel.session_usage().values()))
        """,
        tmp_path,
    )
    assert "CALLS 1" in proc.stdout
    assert [r["input_tokens"] for r in ledger.read_rows(db)] == [12]


def test_instrument_before_import_of_a_namespace_package_sdk(sim: Any, tmp_path: Path) -> None:
    """``mistralai`` has no ``__init__.py``: the import hook must still fire when it is imported later."""
    db = tmp_path / "ledger.db"
    proc = _run_script(
        f"""
        import sys, llm_otel
        llm_otel.instrument(ledger={str(db)!r})
        assert "wrapt" not in sys.modules, "instrument() must not load wrapt before an SDK is imported"
        from mistralai.client import Mistral
        import mistralai, importlib.resources
        assert type(mistralai.__loader__).__name__ == "NamespaceLoader", mistralai.__loader__
        assert importlib.resources.files("mistralai").is_dir()
        Mistral(api_key="x", server_url={sim.base_url!r}).chat.complete(
            model="mistral-small-latest", messages=[{{"role": "user", "content": "hi"}}])
        llm_otel.flush()
        print("CALLS", sum(t.calls for t in llm_otel.session_usage().values()))
        """,
        tmp_path,
    )
    assert "CALLS 1" in proc.stdout
    assert [r["provider"] for r in ledger.read_rows(db)] == ["mistral_ai"]


def test_uninstrument_restores_originals_and_twice_is_harmless(sim: Any, tmp_path: Path) -> None:
    originals = {
        name: base.SyncAPIClient.__dict__[name] for name in ("request", "_sleep_for_retry", "_process_response")
    }
    from telemetry_capture import Capture

    cap = Capture(tmp_path / "l.db")
    again = llm_otel.instrument()  # second call: same runtime, no double patching
    assert again is cap.runtime
    assert base.SyncAPIClient.__dict__["request"] is not originals["request"]
    client = openai.OpenAI(base_url=sim.openai_base_url, api_key="x")
    client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert len(cap.spans()) == 1  # one span, not two
    llm_otel.uninstrument()
    for name, original in originals.items():
        assert base.SyncAPIClient.__dict__[name] is original
    client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert len(cap.spans()) == 1
    # and it can be instrumented again
    cap2 = Capture(tmp_path / "l2.db")
    try:
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        assert len(cap2.spans()) == 1
    finally:
        cap2.close()


def test_cached_with_raw_response_before_instrument_is_still_observed(sim: Any, tmp_path: Path) -> None:
    client = openai.OpenAI(base_url=sim.openai_base_url, api_key="x")
    raw = client.chat.completions.with_raw_response  # cached property binds create before we patch
    from telemetry_capture import Capture

    cap = Capture(None)
    try:
        raw.create(model="gpt-4o-mini", messages=MSG).parse()
        assert dict(cap.span().attributes)["gen_ai.usage.input_tokens"] == 12
    finally:
        cap.close()


def test_zero_code_with_opentelemetry_instrument(sim: Any, tmp_path: Path) -> None:
    otel_instrument = shutil.which("opentelemetry-instrument", path=str(Path(sys.executable).parent))
    assert otel_instrument, "opentelemetry-instrument is installed with opentelemetry-instrumentation"
    db = tmp_path / "zero.db"
    proc = _run_script(
        f"""
        import openai
        c = openai.OpenAI(base_url={sim.openai_base_url!r}, api_key="x")
        c.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}])
        import llm_otel
        llm_otel.flush()
        print("SESSION", sum(t.calls for t in llm_otel.session_usage().values()))
        """,
        tmp_path,
        argv_prefix=[otel_instrument, sys.executable],
        env={
            "LLM_OTEL_LEDGER": str(db),
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
        },
    )
    assert "SESSION 1" in proc.stdout
    assert [r["output_tokens"] for r in ledger.read_rows(db)] == [8]


def test_instrument_is_fast_and_does_no_network_io(tmp_path: Path) -> None:
    proc = _run_script(
        """
        import socket, time
        def no_network(*a, **k):
            raise AssertionError("network I/O during instrument()")
        socket.socket.connect = no_network
        import llm_otel
        t = time.perf_counter()
        llm_otel.instrument(ledger=False)
        print("ELAPSED", time.perf_counter() - t)
        """,
        tmp_path,
    )
    elapsed = float(proc.stdout.split("ELAPSED")[1])
    print(f"instrument() took {elapsed * 1000:.1f} ms")  # the budget (50 ms) is checked in bench/, not here


def test_entry_points_and_instrumentor_triggers_agree_with_the_one_sdk_list() -> None:
    """`opentelemetry-instrument` (entry points) and `instrument()` (SPECS) must patch the same SDKs."""
    import tomllib

    from llm_otel.instrumentors import SPECS, load

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    entry_points = set(pyproject["project"]["entry-points"]["opentelemetry_instrumentor"].values())
    assert entry_points == {f"llm_otel.instrumentors.{module}:{cls}" for _, module, cls in SPECS}
    for trigger, module, cls in SPECS:
        assert load(module, cls).module == trigger, cls
