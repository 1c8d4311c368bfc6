"""The workload the stack end-to-end test runs in a subprocess, plus a quick check of its plan.

``python tests/e2e/test_stack_workload.py --rounds N --pace S`` starts the simulated provider,
calls ``llm_otel.instrument()`` (configured only through the environment the test sets:
``OTEL_SERVICE_NAME``, ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT``, ``OTEL_METRIC_EXPORT_INTERVAL``,
``LLM_OTEL_METRIC_ATTRIBUTES=tenant``...) and makes real OpenAI SDK calls in rounds. Every round
makes every call of :data:`PLAN` once, so every series grows after its first export and
``rate()``/``increase()`` see it move. At the end it flushes and prints one JSON line: what the
simulated provider served and what llm-otel's session recorded.

The plan covers every dashboard panel and every alert rule that can fire from the demo: streams
(time to first chunk, time per output chunk, burst), 429 throttling, 5xx retries, calls that fail
after the SDK gives up (error rate), an unpriced model, rate-limit headers (one model is nearly out of
headroom), every token type, and the allow-listed context attribute ``tenant``. With budgets configured
(``LLM_OTEL_CONFIG``), the result also lists every budget alert the ``on_alert`` callback received.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from types import SimpleNamespace
from typing import Any

# (kind, model, scenario). Scenario tokens: see llm_otel.demo.simulated_provider.SCENARIO_HELP.
PLAN: list[tuple[str, str, str]] = [
    ("chat", "gpt-4o-mini", "in=900,cached=600,cwrite=0,out=120,reasoning=0"),
    ("chat_stream", "gpt-4o-mini", "ttft=0.03,slow=0.004,chunks=16,in=700,cached=0,cwrite=0,out=220,reasoning=0"),
    ("chat", "gpt-4o", "in=2400,cached=1800,cwrite=0,out=300,reasoning=0"),
    ("responses", "o4-mini", "in=1500,cached=0,cwrite=0,out=900,reasoning=640"),
    ("responses_stream", "gpt-4.1", "ttft=0.04,slow=0.003,chunks=20,in=1200,cached=0,cwrite=0,out=400,reasoning=0"),
    ("embeddings", "text-embedding-3-small", "in=512,cached=0,cwrite=0"),
    # Throttled once (429 with retry-after), then served: throttle wait and rate_limit retries.
    ("chat", "gpt-4o-mini", "429x1,ra=0.15,in=800,cached=0,cwrite=0,out=90,reasoning=0"),
    # A 5xx retried once, then served: server retries.
    ("chat", "gpt-4o", "500x1,ra=0.02,in=800,cached=0,cwrite=0,out=90,reasoning=0"),
    # Fails for good (the client gives up after max_retries): error.type on the metrics, and an error rate of
    # 100% for this model (the critical error-rate alert).
    ("chat", "gpt-4.1-mini", "500x9,ra=0.01"),
    # A model genai-prices does not know: unpriced requests.
    ("chat", "acme-private-finetune", "in=400,cached=0,cwrite=0,out=50,reasoning=0"),
    # Nearly out of rate-limit headroom (remaining requests / tokens headers).
    ("chat", "gpt-4.1-nano", "rl_req=3,rl_tok=4000,in=300,cached=0,cwrite=0,out=40,reasoning=0"),
]
TENANTS = ("acme", "globex", "initech")
MAX_RETRIES = 1


def run(rounds: int, pace: float) -> dict[str, Any]:
    import openai

    import llm_otel
    from llm_otel.demo.simulated_provider import SimulatedProvider
    from llm_otel.demo.workload import one_call

    alerts: list[dict[str, Any]] = []

    def on_alert(alert: Any) -> None:  # runs on llm-otel's budget writer thread
        alerts.append({"budget": alert.budget, "group": alert.group, "threshold": alert.threshold,
                       "level": alert.level, "passed": list(alert.passed), "used": alert.used,
                       "trace_id": alert.trace_id, "span_id": alert.span_id})  # fmt: skip

    llm_otel.instrument(ledger=False, on_alert=on_alert)
    errors = 0
    calls = 0
    with SimulatedProvider(latency=0.005) as sim:
        client = openai.OpenAI(base_url=sim.openai_base_url, api_key="sk-e2e", max_retries=MAX_RETRIES)
        clients = SimpleNamespace(openai=client, anthropic=None)  # the plan makes OpenAI calls only
        for r in range(rounds):
            started = time.monotonic()
            for i, (kind, model, scenario) in enumerate(PLAN):
                with llm_otel.context(tenant=TENANTS[(r + i) % len(TENANTS)], job="stack-e2e"):
                    try:
                        one_call(clients, kind, model, scenario)
                    except openai.APIError:
                        errors += 1
                calls += 1
            time.sleep(max(0.0, pace - (time.monotonic() - started)))
        served = sim.served_usage()
    llm_otel.flush()  # ledger, budget usage (alerts, utilization gauges), then telemetry
    # One more export, collected after every value is final: data points stamped >= final_at are complete
    # (a periodic export may have caught the last calls' counters before the budget writer committed them).
    final_at = time.time()
    llm_otel.flush()
    session = llm_otel.session_usage()
    served_tokens: dict[str, int] = {}
    for totals in served.values():
        for name, value in totals.items():
            if name != "calls":
                served_tokens[name] = served_tokens.get(name, 0) + value
    result = {
        "calls": calls,
        "errors": errors,
        "served_tokens": served_tokens,
        "session_tokens": _session_tokens(session),
        "session_cost_usd": sum(t.cost_usd or 0.0 for t in session.values()),
        "priced_models": sorted(m for (_, m), t in session.items() if t.cost_usd),
        "budget_alerts": alerts,
        "final_at": final_at,
    }
    llm_otel.uninstrument()
    return result


def _session_tokens(session: dict[Any, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for totals in session.values():
        for name, value in totals.tokens.items():
            out[name] = out.get(name, 0) + value
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--pace", type=float, default=0.6, help="minimum seconds per round")
    args = parser.parse_args(argv)
    result = run(args.rounds, args.pace)
    print("WORKLOAD-RESULT " + json.dumps(result), flush=True)
    return 0


def test_plan_covers_the_panels_and_alerts() -> None:
    """The plan has what the dashboards and alert rules need (the e2e run checks that exactly the one
    failing call per round fails, so every scenario string is understood by the simulated provider)."""
    kinds = {kind for kind, _, _ in PLAN}
    assert {"chat", "chat_stream", "responses", "responses_stream", "embeddings"} <= kinds
    scenarios = ",".join(s for _, _, s in PLAN)
    for token in ("429x1", "500x1", "500x9", "rl_req=", "rl_tok=", "ttft=", "reasoning=640", "cached=600"):
        assert token in scenarios, token
    assert [s for _, _, s in PLAN if "500x9" in s] == ["500x9,ra=0.01"]  # the only call that fails for good
    assert any(model == "acme-private-finetune" for _, model, _ in PLAN)
    assert len({model for _, model, _ in PLAN}) >= 6


if __name__ == "__main__":
    sys.exit(main())
