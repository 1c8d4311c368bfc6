"""The Overview and Cost dashboards with llm-otel's DEFAULT export settings, against real Prometheus.

    app (this file run as a script: llm_otel.instrument() with no OTEL_METRIC_EXPORT_INTERVAL, the stack
    workload's calls against the simulated provider) --OTLP/HTTP--> vmagent --remote write--> Prometheus

While the app is still making calls, EVALUATE_AFTER_S after it instrumented itself (a few default export
intervals), every Prometheus query of every Overview and Cost panel is evaluated the way Grafana shows it:
variables at "All", ``$__interval`` / ``$__rate_interval`` / ``$__range`` as Grafana derives them from the
provisioned datasource's ``timeInterval`` and the dashboard's default time range; instant targets at now, range
targets over the range with step ``$__interval``. Each must have data up to now, and the Requests / s and
Tokens / s stats must be above 0. With the SDK's own 60 s default nothing has been exported by then, and even
later a 1 min window never holds the two samples ``rate()`` needs.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

APP_MAX_S = 90  # the app stops by itself after this, whatever happens to the test
EVALUATE_AFTER_S = 50  # after instrument(): three exports at llm-otel's default 15 s
APP_START_TIMEOUT_S = 60
ROUND_PACE_S = 0.5
TEST_BUDGET_S = 120
DASHBOARDS = ("llm-otel-overview.json", "llm-otel-cost.json")
POSITIVE_STATS = ("Requests / s", "Tokens / s")


# ---- the app (subprocess) ------------------------------------------------------------------------------------
def app(started_file: Path, stop_file: Path) -> int:
    """Instrument with the environment's settings only, then make the stack workload's calls in rounds until
    ``stop_file`` appears or APP_MAX_S passes; returns the number of calls."""
    import openai
    from test_stack_workload import MAX_RETRIES, PLAN, TENANTS

    import llm_otel
    from llm_otel.demo.simulated_provider import SimulatedProvider
    from llm_otel.demo.workload import one_call

    llm_otel.instrument()
    partial = started_file.with_suffix(".partial")
    partial.write_text(repr(time.time()))
    partial.replace(started_file)  # atomically: the test reads it as soon as it exists
    deadline, calls = time.monotonic() + APP_MAX_S, 0
    with SimulatedProvider(latency=0.005) as sim:
        client = openai.OpenAI(base_url=sim.openai_base_url, api_key="sk-e2e", max_retries=MAX_RETRIES)
        clients = SimpleNamespace(openai=client, anthropic=None)
        while not stop_file.exists() and time.monotonic() < deadline:
            for i, (kind, model, scenario) in enumerate(PLAN):
                tenant = TENANTS[(calls + i) % len(TENANTS)]
                # openai.APIError: the plan's one call that fails for good
                with llm_otel.context(tenant=tenant), contextlib.suppress(openai.APIError):
                    one_call(clients, kind, model, scenario)
            calls += len(PLAN)
            time.sleep(ROUND_PACE_S)
    llm_otel.uninstrument()
    return calls


# ---- the test --------------------------------------------------------------------------------------------------
def app_env(service: str, otlp_metrics_url: str) -> dict[str, str]:
    """Default export settings: no OTEL_* or LLM_OTEL_* from the caller, only where to send and who we are."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLM_OTEL_"))}
    env.update(
        OTEL_SERVICE_NAME=service,
        OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=otlp_metrics_url,
        LLM_OTEL_METRIC_ATTRIBUTES="tenant",  # the Cost dashboard's $attribute panels group by it
        LLM_OTEL_LEDGER="false",
    )
    return env


def wait_started(proc: subprocess.Popen, started_file: Path, log: Path) -> float:
    """Unix time at which the app had instrumented itself."""
    deadline = time.monotonic() + APP_START_TIMEOUT_S
    while not started_file.exists():
        assert proc.poll() is None, f"app exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"app did not start in {APP_START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}"
        time.sleep(0.1)
    return float(started_file.read_text())


def grafana_expr(expr: str, variables: dict[str, str], intervals: dict[str, float]) -> str:
    """The PromQL Grafana sends: interval variables as seconds, template variables as their "All" values."""
    for name, value in sorted(intervals.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(name, f"{value:g}s")
    for name in sorted(variables, key=len, reverse=True):
        expr = re.sub(rf"\$(?:{name}\b|\{{{name}\}})", lambda _m, v=variables[name]: v, expr)
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr


def finite_points(result: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """(timestamp, value) of every finite sample of an instant vector or a range matrix."""
    out = []
    for series in result:
        for ts, value in series.get("values") or [series["value"]]:
            if math.isfinite(float(value)):
                out.append((float(ts), float(value)))
    return out


def evaluate(stack: Any, target: dict, expr: str, now: float, intervals: dict[str, float]) -> list[tuple[float, float]]:
    """Run one panel target as Grafana does: instant at now, or a range query over the dashboard's range."""
    if target.get("instant"):
        return finite_points(stack.query(expr, at=now))
    step = intervals["$__interval"]
    data = stack.prom_api("/api/v1/query_range", query=expr, start=f"{now - intervals['$__range']:.3f}",
                          end=f"{now:.3f}", step=f"{step:g}")  # fmt: skip
    return finite_points(data["result"])


def check_dashboards(stack: Any, now: float) -> tuple[list[str], dict[str, float], int]:
    """Evaluate every Prometheus target of DASHBOARDS at ``now``: (failures, latest value of each stat in
    POSITIVE_STATS, targets checked)."""
    import test_metrics_citizen as mc
    from test_stack_config import variable_values

    failures, stats, checked = [], {}, 0
    for name in DASHBOARDS:
        dash = mc.dashboards()[name]
        intervals = mc.grafana_intervals(mc.time_interval_s(), mc.dashboard_range_s(dash))
        for title, target in mc.prometheus_targets(dash):
            expr = grafana_expr(target["expr"], variable_values(dash), intervals)
            points = evaluate(stack, target, expr, now, intervals)
            checked += 1
            recent = [p for p in points if p[0] >= now - intervals["$__rate_interval"]]
            if not recent:
                failures.append(f"{name}: {title!r} [{target['refId']}]: no data up to now for {expr}")
            elif name == DASHBOARDS[0] and title in POSITIVE_STATS:
                stats[title] = max(recent)[1]
    return failures, stats, checked


def test_overview_and_cost_panels_have_data_with_default_export_settings(obs_bin: Path, tmp_path: Path) -> None:
    from obs_stack import ObsStack
    from test_metrics_citizen import dashboards, prometheus_targets

    t0 = time.monotonic()
    started_file, stop_file, log = tmp_path / "started", tmp_path / "stop", tmp_path / "app.log"
    with ObsStack(obs_bin, tmp_path / "stack") as stack, open(log, "w") as out:
        env = app_env(f"llm-otel-defaults-{uuid.uuid4().hex[:8]}", stack.otlp_metrics_url)
        assert "OTEL_METRIC_EXPORT_INTERVAL" not in env
        cmd = [sys.executable, __file__, "--started", str(started_file), "--stop", str(stop_file)]
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            started = wait_started(proc, started_file, log)
            time.sleep(max(0.0, started + EVALUATE_AFTER_S - time.time()))
            assert proc.poll() is None, f"the app stopped early:\n{log.read_text()[-3000:]}"
            now = time.time()
            failures, stats, checked = check_dashboards(stack, now)
        finally:
            stop_file.touch()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
    elapsed = time.monotonic() - t0
    print(f"\n{checked} panel queries checked {now - started:.0f} s after instrument(); stats {stats}; "
          f"{elapsed:.0f} s in all; app: {log.read_text().strip()[-200:]}")  # fmt: skip
    assert not failures, "\n".join(failures)
    expected = sum(len(prometheus_targets(dashboards()[name])) for name in DASHBOARDS)
    assert checked == expected >= 30
    assert set(stats) == set(POSITIVE_STATS) and all(v > 0 for v in stats.values()), stats
    assert proc.returncode == 0, log.read_text()[-3000:]
    assert elapsed < TEST_BUDGET_S, f"took {elapsed:.0f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the app of test_default_dashboards.py")
    parser.add_argument("--started", type=Path, required=True, help="written once instrument() returned")
    parser.add_argument("--stop", type=Path, required=True, help="the app stops when this file appears")
    args = parser.parse_args(argv)
    print(f"APP-CALLS {app(args.started, args.stop)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
