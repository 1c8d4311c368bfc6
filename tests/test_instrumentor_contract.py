"""The OpenTelemetry instrumentor contract: ``XInstrumentor().instrument(tracer_provider=, meter_provider=,
logger_provider=)`` sends that SDK's spans and metric points to the providers given, as every
opentelemetry-python-contrib instrumentation does, even when llm-otel's process-wide runtime already exists
with other providers. Each case runs in a fresh interpreter (instrumentors are process-wide singletons)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from llm_otel.sinks import ledger

# In-memory providers named ``name``, and a function reading back what they received.
PRELUDE = """
import json, os, sys
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

URL = os.environ["SIM_URL"]
MSG = [{"role": "user", "content": "hi"}]
CAPTURED = {}


def providers(name):
    spans, reader, tp = InMemorySpanExporter(), InMemoryMetricReader(), TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(spans))
    CAPTURED[name] = (spans, reader)
    return tp, MeterProvider(metric_readers=[reader]), LoggerProvider()


def report(**extra):
    out = dict(extra)
    for name, (spans, reader) in CAPTURED.items():
        data = reader.get_metrics_data()
        points = {}
        for rm in data.resource_metrics if data else []:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == "gen_ai.client.token.usage":
                        for dp in metric.data.data_points:
                            key = dp.attributes["gen_ai.provider.name"] + "/" + dp.attributes["gen_ai.token.type"]
                            points[key] = dp.sum
        out[name] = {
            "spans": sorted(s.attributes.get("gen_ai.provider.name") for s in spans.get_finished_spans()
                            if s.instrumentation_scope.name == "llm_otel"),
            "token_points": points,
        }
    print("REPORT " + json.dumps(out))
"""

CALLS = {
    "openai": 'openai.OpenAI(base_url=URL + "/v1", api_key="x").chat.completions.create(model="gpt-4o-mini", '
    "messages=MSG)",
    "ollama": 'ollama.Client(host=URL).chat(model="llama3.2", messages=MSG)',
    "mistral": 'Mistral(api_key="x", server_url=URL).chat.complete(model="mistral-small-latest", messages=MSG)',
    "anthropic": 'anthropic.Anthropic(base_url=URL, api_key="x").messages.create(model="claude-3-5-haiku-latest", '
    "max_tokens=64, messages=MSG)",
}
IMPORTS = {
    "openai": "import openai",
    "ollama": "import ollama",
    "mistral": "from mistralai.client import Mistral",
    "anthropic": "import anthropic",
}
CLASSES = {
    "openai": "openai:OpenAIInstrumentor",
    "ollama": "ollama:OllamaInstrumentor",
    "mistral": "mistral:MistralInstrumentor",
    "anthropic": "anthropic:AnthropicInstrumentor",
}
PROVIDER_NAME = {"openai": "openai", "ollama": "ollama", "mistral": "mistral_ai", "anthropic": "anthropic"}


def _import_class(sdk: str) -> str:
    module, cls = CLASSES[sdk].split(":")
    return f"from llm_otel.instrumentors.{module} import {cls}"


def _run(code: str, sim: Any, **env: str) -> dict[str, Any]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLM_OTEL_"))}
    full = {**base, "SIM_URL": sim.base_url, "LLM_OTEL_LEDGER": "off", **env}
    proc = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, env=full)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT "))
    return json.loads(line.removeprefix("REPORT "))


@pytest.mark.parametrize("sdk", ["openai", "ollama", "mistral"])
def test_spans_and_metric_points_go_to_the_providers_given(sim: Any, sdk: str) -> None:
    out = _run(
        f"""
        {_import_class(sdk)}
        tp, mp, lp = providers("given")
        {CLASSES[sdk].split(":")[1]}().instrument(tracer_provider=tp, meter_provider=mp, logger_provider=lp)
        {IMPORTS[sdk]}
        {CALLS[sdk]}
        report()
        """,
        sim,
    )
    name = PROVIDER_NAME[sdk]
    assert out["given"]["spans"] == [name]
    assert out["given"]["token_points"] == {f"{name}/input": 12, f"{name}/output": 8}


def test_providers_given_win_over_the_existing_process_wide_runtime(sim: Any, tmp_path: Path) -> None:
    """The app set global providers and another instrumentor built llm-otel's runtime on them; instrumentors
    given providers send their calls there, the others keep the global ones, and the ledger and
    ``session_usage()`` still see every call."""
    db = tmp_path / "ledger.db"
    out = _run(
        f"""
        from opentelemetry import metrics, trace
        import llm_otel
        {_import_class("anthropic")}
        {_import_class("openai")}
        {_import_class("ollama")}
        gtp, gmp, _ = providers("global")
        trace.set_tracer_provider(gtp)
        metrics.set_meter_provider(gmp)
        AnthropicInstrumentor().instrument()  # no providers: the process-wide runtime, on the global ones
        tp, mp, lp = providers("given")
        OpenAIInstrumentor().instrument(tracer_provider=tp, meter_provider=mp, logger_provider=lp)
        OllamaInstrumentor().instrument(tracer_provider=tp, meter_provider=mp)
        {IMPORTS["anthropic"]}
        {IMPORTS["openai"]}
        {IMPORTS["ollama"]}
        {CALLS["anthropic"]}
        {CALLS["openai"]}
        {CALLS["ollama"]}
        llm_otel.flush()
        report(session_calls=sum(t.calls for t in llm_otel.session_usage().values()))
        """,
        sim,
        LLM_OTEL_LEDGER=str(db),
    )
    assert out["given"]["spans"] == ["ollama", "openai"]
    assert out["global"]["spans"] == ["anthropic"]
    assert set(out["given"]["token_points"]) == {"openai/input", "openai/output", "ollama/input", "ollama/output"}
    assert set(out["global"]["token_points"]) == {"anthropic/input", "anthropic/output"}
    assert out["session_calls"] == 3
    assert sorted(r["provider"] for r in ledger.read_rows(db)) == ["anthropic", "ollama", "openai"]


def test_llm_otel_instrument_then_an_instrumentor_given_providers(sim: Any) -> None:
    """``llm_otel.instrument(tracer_provider=A)`` keeps sending to A; an instrumentor given B before its SDK
    is imported sends that SDK's calls to B."""
    out = _run(
        f"""
        import llm_otel
        {_import_class("mistral")}
        atp, amp, alp = providers("instrument")
        llm_otel.instrument(tracer_provider=atp, meter_provider=amp, logger_provider=alp)
        tp, mp, lp = providers("given")
        MistralInstrumentor().instrument(tracer_provider=tp, meter_provider=mp, logger_provider=lp)
        {IMPORTS["openai"]}
        {IMPORTS["mistral"]}
        {CALLS["openai"]}
        {CALLS["mistral"]}
        report()
        """,
        sim,
    )
    assert out["instrument"]["spans"] == ["openai"]
    assert out["given"]["spans"] == ["mistral_ai"]
    assert set(out["given"]["token_points"]) == {"mistral_ai/input", "mistral_ai/output"}


# --- opentelemetry-instrument with an invalid configuration --------------------------------------------------
ZERO_CODE_APP = """
import os, openai, llm_otel
reply = openai.OpenAI(base_url=os.environ["SIM_URL"] + "/v1", api_key="x").chat.completions.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
print("APP RAN", reply.usage.prompt_tokens, "instrumented calls:", len(llm_otel.session_usage()))
"""


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ("ledger: off\nservice_name: bot\nendpoint: http: //x\n", ", line 3: mapping values are not allowed here"),
        ("budgets:\n  - {name: x, limit: -5, unit: USD, period: daily}\n", "budgets[x].limit: Input should be greater"),
    ],
    ids=["malformed", "invalid"],
)
def test_zero_code_with_an_invalid_config_prints_one_line_and_the_app_runs(
    sim: Any, tmp_path: Path, config: str, problem: str
) -> None:
    otel_instrument = Path(sys.executable).parent / "opentelemetry-instrument"
    cfg, app = tmp_path / "llm-otel.yaml", tmp_path / "app.py"
    cfg.write_text(config)
    app.write_text(ZERO_CODE_APP)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLM_OTEL_"))}
    env.update(SIM_URL=sim.base_url, LLM_OTEL_CONFIG=str(cfg), OTEL_TRACES_EXPORTER="none",
               OTEL_METRICS_EXPORTER="none", OTEL_LOGS_EXPORTER="none")  # fmt: skip
    proc = subprocess.run([str(otel_instrument), sys.executable, str(app)], capture_output=True, text=True,
                          timeout=120, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "APP RAN 12 instrumented calls: 0"  # the app ran, uninstrumented
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"llm-otel: not instrumenting this process: config file {cfg}"), lines[0]
    assert problem in lines[0]
