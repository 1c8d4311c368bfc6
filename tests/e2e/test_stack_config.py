"""Structural checks of the shipped stack: collector config, docker-compose.yml, Grafana, Prometheus naming.

No Docker engine runs here, so the compose file and the collector config are checked as data: every
pipeline component defined and known to the contrib distribution, hostnames that are compose services,
pinned images, ports on 127.0.0.1 only. The metric names that dashboards and rules query are derived from
the instruments themselves (src/llm_otel/telemetry.py + semconv.py) through both OTLP -> Prometheus
translations, so renaming a metric or changing its unit breaks these tests. The promtool/amtool checks
need the real binaries (``obs_bin`` fixture, tests/e2e/conftest.py). The live end-to-end run is
test_stack_e2e.py; the helpers here are shared with it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COLLECTOR_CONFIG = REPO / "collector-config" / "otelcol.yaml"
COMPOSE = REPO / "docker-compose.yml"
PROM_DIR = REPO / "prometheus"
PROMETHEUS_YML = PROM_DIR / "prometheus.yml"
ALERTMANAGER_YML = PROM_DIR / "alertmanager.yml"
LLM_OTEL_RULES = PROM_DIR / "rules" / "llm-otel.rules.yml"
GRAFANA = REPO / "grafana"
DASHBOARD_DIR = GRAFANA / "dashboards"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "datasources.yml"
DOCKER_DIR = REPO / "docker"

SEVERITIES = ("critical", "warning", "info")
# Receivers of prometheus/alertmanager.yml per severity (routing by severity).
ROUTES = {"critical": "webhook-critical", "warning": "webhook-warning", "info": "webhook-info", "": "webhook-default"}

# Component types of the OpenTelemetry Collector contrib distribution (otel/opentelemetry-collector-contrib,
# the version pinned in docker-compose.yml) that this project may use. A small allow-list, not the full
# manifest (https://github.com/open-telemetry/opentelemetry-collector-releases, distributions/otelcol-contrib/
# manifest.yaml): add a type here after checking that it exists there. Since 0.144 the OTLP exporters are
# otlp_grpc / otlp_http (otlp / otlphttp remain as deprecated aliases).
CONTRIB_COMPONENTS = {
    "receivers": {"otlp", "prometheus", "hostmetrics", "filelog"},
    "processors": {
        *("memory_limiter", "batch", "transform", "resource", "attributes", "filter"),
        *("deltatocumulative", "resourcedetection"),
    },
    "exporters": {"otlp_grpc", "otlp_http", "otlp", "otlphttp", "debug", "prometheusremotewrite", "prometheus"},
    "extensions": {"health_check", "pprof", "zpages"},
}
# Ports the services of docker-compose.yml listen on inside the compose network (the images' defaults,
# or the ports set in their config files, which the tests below read where they can).
DEFAULT_PORTS = {"prometheus": {9090}, "alertmanager": {9093}, "grafana": {3000}, "alert-webhook": {8080}}

# Labels dashboards and rules must never use: Prometheus' OTLP receiver derives them from service.name /
# service.instance.id, vmagent does not create them at all.
PATH_SPECIFIC_LABELS = {"job", "instance"}
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or",
                   "unless", "le"}  # fmt: skip


# ---- the instruments and their Prometheus names -----------------------------------------------------------
@dataclass(frozen=True)
class Instrument:
    name: str
    unit: str
    kind: str  # counter | updowncounter | histogram | gauge


@cache
def instruments() -> tuple[Instrument, ...]:
    """Every instrument llm-otel creates (opt-in names included), read back from an in-memory SDK."""
    from opentelemetry._logs import NoOpLoggerProvider
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import Gauge, Histogram, InMemoryMetricReader, Sum
    from opentelemetry.trace import NoOpTracerProvider

    from llm_otel.budget.processor import BudgetProcessor
    from llm_otel.config import load_settings
    from llm_otel.core.result import CallResult
    from llm_otel.core.usage import Usage
    from llm_otel.providers import Providers
    from llm_otel.runtime import Runtime

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        # One call that exercises every metric (streamed, throttled, priced, with headroom), through a runtime
        # with a budget (utilization gauge, alert counter).
        budgets = BudgetProcessor([{"name": "b", "limit": 1000, "unit": "tokens", "period": "daily"}], state=False)
        settings = load_settings({"ledger": False}, env={"OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental"})
        rt = Runtime(settings, Providers(NoOpTracerProvider(), provider, NoOpLoggerProvider()), [budgets])
        rt.emit(CallResult(
            0.0, "openai", "chat", "m", "m", Usage(10, 5, 1, 1, 1), True, 0.01, 1.0, time_to_first_chunk_s=0.1,
            tokens_per_second=5.0, burst_tokens_per_second=9.0, throttle_wait_s=0.5, retries=1,
            retry_reasons=(("rate_limit", 1),), ratelimit_requests=1, ratelimit_tokens=1, chunk_times=(0.1, 0.2),
        ))  # fmt: skip
        rt.emit(CallResult(0.0, "openai", "chat", "n", "n", Usage(1, 1), True, None, 1.0))  # unpriced
        rt.instruments.budget_alerts.add(1)
        found = []
        for rm in reader.get_metrics_data().resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if isinstance(m.data, Histogram):
                        kind = "histogram"
                    elif isinstance(m.data, Sum):
                        kind = "counter" if m.data.is_monotonic else "updowncounter"
                    elif isinstance(m.data, Gauge):
                        kind = "gauge"
                    else:
                        raise AssertionError(f"unexpected data type for {m.name}: {type(m.data)}")
                    found.append(Instrument(m.name, m.unit or "", kind))
    finally:
        provider.shutdown()
    assert len(found) == len({i.name for i in found}) >= 15, found
    return tuple(sorted(found, key=lambda i: i.name))


_UNITS = {"d": "days", "h": "hours", "min": "minutes", "s": "seconds", "ms": "milliseconds", "us": "microseconds",
          "ns": "nanoseconds", "By": "bytes", "KiBy": "kibibytes", "MiBy": "mebibytes", "GiBy": "gibibytes",
          "TiBy": "tibibytes", "KBy": "kilobytes", "MBy": "megabytes", "GBy": "gigabytes", "TBy": "terabytes",
          "m": "meters", "V": "volts", "A": "amperes", "J": "joules", "W": "watts", "g": "grams",
          "Cel": "celsius", "Hz": "hertz", "1": "", "%": "percent"}  # fmt: skip
_PER_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week", "mo": "month", "y": "year"}


def _clean_unit(unit: str) -> str:
    return re.sub(r"_+", "_", re.sub(r"[^a-zA-Z0-9:]", "_", unit)).strip("_")


def _tail_suffixes(tokens: list[str], inst: Instrument) -> str:
    if inst.kind == "counter":
        tokens = [t for t in tokens if t != "total"] + ["total"]
    if inst.unit == "1" and inst.kind == "gauge":
        tokens = [t for t in tokens if t != "ratio"] + ["ratio"]
    return "_".join(tokens)


def prom_name_legacy(inst: Instrument) -> str:
    """OTLP -> Prometheus name as vmagent (-opentelemetry.usePrometheusNaming, the e2e path), Prometheus
    <= 3.0 and the older collector translator build it: a unit part already among the name's tokens is
    not added again, so llm_otel.tokens_per_second [{token}/s] stays llm_otel_tokens_per_second."""
    tokens = [t for t in re.split(r"[^a-zA-Z0-9]", inst.name) if t]
    main, _, per = (p.strip() for p in inst.unit.partition("/"))
    if main and not re.search(r"[{}]", main):
        main = _clean_unit(_UNITS.get(main, main))
        if main and main not in tokens:
            tokens.append(main)
    if per and not re.search(r"[{}]", per):
        per = _clean_unit(_PER_UNITS.get(per, per))
        if per and per not in tokens:
            tokens += ["per", per]
    return _tail_suffixes(tokens, inst)


def prom_name_otlptranslator(inst: Instrument) -> str:
    """OTLP -> Prometheus name as Prometheus >= 3.1 builds it (github.com/prometheus/otlptranslator,
    UnderscoreEscapingWithSuffixes): the "per" part is one token "per_second", never found among the
    name's tokens, so a name ending in per_second gets it twice."""
    tokens = [t for t in re.split(r"[^a-zA-Z0-9:]", inst.name) if t]
    main, _, per = (p.strip() for p in inst.unit.partition("/"))
    main = _clean_unit(_UNITS.get(main, main)) if main and not re.search(r"[{}]", main) else ""
    per = _clean_unit("per_" + _PER_UNITS.get(per, per)) if per and not re.search(r"[{}]", per) else ""
    if main in tokens:
        main = ""
    if per in tokens or per == "per":
        per = ""
    tokens += [s for s in (main, per) if s]
    return _tail_suffixes(tokens, inst)


def series_names(base: str, inst: Instrument) -> set[str]:
    if inst.kind == "histogram":
        return {f"{base}_bucket", f"{base}_sum", f"{base}_count"}
    return {base}


@cache
def collector_unit_overrides() -> dict[str, str]:
    """metric name -> unit, from the collector's transform statements ``set(metric.unit, "U") where
    metric.name == "N"`` in the metrics pipeline (applied before the Prometheus exporter)."""
    config = collector_config()
    out: dict[str, str] = {}
    for proc_id in config["service"]["pipelines"]["metrics"]["processors"]:
        if proc_id.split("/")[0] != "transform":
            continue
        for group in config["processors"][proc_id].get("metric_statements", []):
            statements = group["statements"] if isinstance(group, dict) else [group]
            for stmt in statements:
                m = re.fullmatch(r'set\(metric\.unit, "([^"]*)"\) where metric\.name == "([^"]+)"', stmt.strip())
                assert m, f"unrecognised transform statement in {COLLECTOR_CONFIG.name}: {stmt!r}"
                out[m.group(2)] = m.group(1)
    return out


def expected_series(path: str) -> dict[str, Instrument]:
    """Prometheus series name -> instrument, for the "vmagent" (test) or "prometheus" (compose) path."""
    out: dict[str, Instrument] = {}
    overrides = collector_unit_overrides()
    for inst in instruments():
        if path == "vmagent":
            base = prom_name_legacy(inst)
        else:
            unit = overrides.get(inst.name, inst.unit)
            base = prom_name_otlptranslator(Instrument(inst.name, unit, inst.kind))
        for s in series_names(base, inst):
            out[s] = inst
    return out


# ---- PromQL in dashboards and rules --------------------------------------------------------------------------
def dashboards() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARD_DIR.glob("*.json"))}


def all_panels(dashboard: dict) -> list[dict]:
    out = []
    for panel in dashboard.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))  # collapsed rows
    return out


def datasource_uid(obj: dict, default: str | None = None) -> str | None:
    ds = obj.get("datasource")
    return ds.get("uid") if isinstance(ds, dict) else default


@dataclass(frozen=True)
class Query:
    where: str  # "file: panel title [refId]"
    expr: str
    datasource: str


def dashboard_queries() -> list[Query]:
    """Every query of every panel, annotation and query variable of every shipped dashboard."""
    out = []
    for name, dash in dashboards().items():
        for panel in all_panels(dash):
            for t in panel.get("targets", []):
                uid = datasource_uid(t, datasource_uid(panel))
                expr = t.get("expr") if uid != "tempo" else t.get("query")
                out.append(Query(f"{name}: {panel['title']!r} [{t.get('refId')}]", expr, uid))
        for anno in dash["annotations"]["list"]:
            if anno.get("builtIn"):
                continue
            out.append(Query(f"{name}: annotation {anno['name']!r}", anno["expr"], datasource_uid(anno)))
        for var in dash["templating"]["list"]:
            if var["type"] == "query":
                out.append(Query(f"{name}: variable ${var['name']}", var["query"]["query"], datasource_uid(var)))
    return out


def rule_files() -> list[Path]:
    """The files prometheus.yml loads (its rule_files globs, relative to its directory)."""
    files: list[Path] = []
    for pattern in yaml.safe_load(PROMETHEUS_YML.read_text())["rule_files"]:
        files.extend(sorted(PROM_DIR.glob(pattern)))
    return files


def rules_in(path: Path) -> list[dict]:
    return [r for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]]


def promtool_test_files() -> list[Path]:
    """promtool unit-test files: ``*.rules.test.yml`` next to their rule files (how `llm-otel rules --out`
    writes them), or anything in a tests/ directory under prometheus/."""
    return sorted({*PROM_DIR.rglob("*.test.yml"), *PROM_DIR.glob("tests/*.yml")})


def recording_rules() -> dict[str, set[str]]:
    """Recording rule name -> the static labels it adds, over every loaded rule file."""
    out: dict[str, set[str]] = {}
    for path in rule_files():
        for rule in rules_in(path):
            if "record" in rule:
                out.setdefault(rule["record"], set()).update(rule.get("labels") or {})
    return out


def rule_queries() -> list[Query]:
    return [
        Query(f"{p.relative_to(PROM_DIR.parent)}: {r.get('alert') or r.get('record')}", r["expr"], "prometheus")
        for p in rule_files()
        for r in rules_in(p)
    ]


def promql_queries() -> list[Query]:
    return [q for q in [*dashboard_queries(), *rule_queries()] if q.datasource == "prometheus"]


def variable_values(dashboard: dict) -> dict[str, str]:
    """What each Grafana variable is replaced by when a query is checked: its "All" regex for query
    variables, its current value for custom ones."""
    out = {}
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            out[var["name"]] = var["allValue"]
        else:
            current = var["current"]["value"]
            out[var["name"]] = current if isinstance(current, str) else current[0]
    return out


GRAFANA_INTERVALS = {"$__rate_interval": "1m", "$__range": "5m", "$__interval": "15s"}


def substitute(expr: str, values: dict[str, str]) -> str:
    """Grafana variables -> text Prometheus accepts ($service -> .+ inside =~, $__range -> 5m, ...)."""
    for var, value in GRAFANA_INTERVALS.items():
        expr = expr.replace(var, value)
    for name in sorted(values, key=len, reverse=True):
        expr = re.sub(rf"\$(?:{name}\b|\{{{name}\}})", lambda _m, v=values[name]: v, expr)
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr


def split_label_values(expr: str) -> tuple[str, str | None]:
    """A Grafana ``label_values(selector, label)`` variable query -> (selector, label); PromQL -> (expr, None)."""
    m = re.fullmatch(r"\s*label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*", expr, re.S)
    return (m.group(1), m.group(2)) if m else (expr, None)


def metric_names_in(expr: str) -> set[str]:
    """Metric names in a PromQL expression. House style (checked by the next function): every metric
    selector has a {...} matcher list or a [range] right after the name."""
    expr, _ = split_label_values(expr)
    expr = re.sub(r"^\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*$", r"\1{}", expr)  # a bare selector: label_values(m, l)
    names = set(re.findall(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*(?=[{\[])", expr))
    return {n for n in names if n not in PROMQL_KEYWORDS}


def bare_identifiers(expr: str) -> set[str]:
    """Identifiers that look like our metrics but are not followed by {/[: would escape metric_names_in."""
    expr, _ = split_label_values(expr)
    expr = re.sub(r"^\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*$", r"\1{}", expr)
    no_strings = re.sub(r'"[^"]*"', '""', expr)
    no_groupings = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", no_strings)
    no_matchers = re.sub(r"\{[^}]*\}", "{}", no_groupings)
    idents = set(re.findall(r"\b((?:gen_ai|llm_otel)_[A-Za-z0-9_:]*)\b(?!\s*[{\[(])", no_matchers))
    return idents


def label_names_in(expr: str) -> set[str]:
    """Label names in groupings (by/without/on/ignoring/group_*) and matchers of a PromQL expression."""
    expr, label = split_label_values(expr)
    no_strings = re.sub(r'"[^"]*"', '""', expr)
    labels: set[str] = {label} if label else set()
    for group in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", no_strings):
        labels.update(x.strip() for x in group.split(",") if x.strip())
    for matchers in re.findall(r"\{([^}]*)\}", no_strings):
        labels.update(re.findall(r"([A-Za-z_$][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", matchers))
    return labels


def metric_attribute_labels() -> set[str]:
    """Prometheus labels of llm-otel's metric attributes (docs/metrics.md), from semconv."""
    from llm_otel import semconv as sc

    attrs = [sc.OPERATION_NAME, sc.PROVIDER_NAME, sc.REQUEST_MODEL, sc.RESPONSE_MODEL, sc.SERVER_ADDRESS,
             sc.SERVER_PORT, sc.ERROR_TYPE, sc.TOKEN_TYPE, sc.RETRY_REASON, sc.BUDGET_NAME,
             sc.BUDGET_GROUP, sc.BUDGET_LEVEL, sc.BUDGET_THRESHOLD, sc.BUDGET_UNIT]  # fmt: skip
    return {re.sub(r"[^a-zA-Z0-9_]", "_", a) for a in attrs}


def context_label_prefix() -> str:
    from llm_otel import semconv as sc

    return re.sub(r"[^a-zA-Z0-9_]", "_", sc.CONTEXT_PREFIX)


def promoted_resource_labels() -> set[str]:
    attrs = yaml.safe_load(PROMETHEUS_YML.read_text())["otlp"]["promote_resource_attributes"]
    return {re.sub(r"[^a-zA-Z0-9_]", "_", a) for a in attrs}


# ---- collector / compose ---------------------------------------------------------------------------------
@cache
def collector_config() -> dict[str, Any]:
    return yaml.safe_load(COLLECTOR_CONFIG.read_text())


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def service_ports() -> dict[str, set[int]]:
    """Ports each compose service listens on inside the compose network."""
    ports = {name: set(p) for name, p in DEFAULT_PORTS.items()}
    tempo = yaml.safe_load((DOCKER_DIR / "tempo.yaml").read_text())
    ports["tempo"] = {tempo["server"]["http_listen_port"]} | {
        int(p["endpoint"].rsplit(":", 1)[1]) for p in tempo["distributor"]["receivers"]["otlp"]["protocols"].values()
    }
    ports["loki"] = {yaml.safe_load((DOCKER_DIR / "loki.yaml").read_text())["server"]["http_listen_port"]}
    col = collector_config()
    ports["collector"] = {int(p["endpoint"].rsplit(":", 1)[1]) for p in col["receivers"]["otlp"]["protocols"].values()}
    ports["collector"].add(int(col["extensions"]["health_check"]["endpoint"].rsplit(":", 1)[1]))
    return ports


def host_port(endpoint: str) -> tuple[str, int]:
    parts = urlsplit(endpoint if "://" in endpoint else f"grpc://{endpoint}")
    assert parts.hostname and parts.port, f"endpoint {endpoint!r} needs an explicit host and port"
    return parts.hostname, parts.port


def all_urls(obj: Any) -> list[str]:
    if isinstance(obj, dict):
        return [u for v in obj.values() for u in all_urls(v)]
    if isinstance(obj, list):
        return [u for v in obj for u in all_urls(v)]
    if isinstance(obj, str):
        return re.findall(r"https?://[A-Za-z0-9._-]+:\d+[^\s'\"]*", obj)
    return []


# ==== tests: collector ========================================================================================
def test_collector_pipelines_use_defined_contrib_components() -> None:
    config = collector_config()
    service = config["service"]
    for ext in service.get("extensions", []):
        assert ext in config.get("extensions", {}), f"extension {ext} used but not defined"
    assert set(service["pipelines"]) == {"metrics", "traces", "logs"}
    used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set()}
    for name, pipeline in service["pipelines"].items():
        assert pipeline.get("receivers") and pipeline.get("exporters"), f"pipeline {name} incomplete"
        for kind in ("receivers", "processors", "exporters"):
            for comp in pipeline.get(kind, []):
                assert comp in (config.get(kind) or {}), f"pipeline {name}: {kind[:-1]} {comp} is not defined"
                used[kind].add(comp)
        processors = pipeline.get("processors", [])
        assert processors[0] == "memory_limiter", f"pipeline {name}: memory_limiter must come first"
        assert "batch" in processors, f"pipeline {name}: no batch processor"
    for kind in ("receivers", "processors", "exporters", "extensions"):
        for comp in config.get(kind) or {}:
            ctype = comp.split("/", 1)[0]
            assert ctype in CONTRIB_COMPONENTS[kind], f"{kind[:-1]} type {ctype!r} is not in the contrib allow-list"
            if kind != "extensions":
                assert comp in used[kind], f"{kind[:-1]} {comp} is defined but no pipeline uses it"
    assert "health_check" in service["extensions"]
    for proto in ("grpc", "http"):
        assert config["receivers"]["otlp"]["protocols"][proto]["endpoint"].startswith("0.0.0.0:")


def test_collector_routes_each_signal_to_its_backend() -> None:
    config = collector_config()
    exporters, pipelines = config["exporters"], config["service"]["pipelines"]
    (metrics,) = pipelines["metrics"]["exporters"]
    assert metrics.split("/")[0] == "otlp_http"
    host, port = host_port(exporters[metrics]["endpoint"])
    assert (host, port) == ("prometheus", 9090)
    # otlp_http appends /v1/metrics: Prometheus' OTLP receiver is /api/v1/otlp/v1/metrics.
    assert urlsplit(exporters[metrics]["endpoint"]).path.rstrip("/") == "/api/v1/otlp"
    (traces,) = pipelines["traces"]["exporters"]
    assert host_port(exporters[traces]["endpoint"])[0] == "tempo"
    (logs,) = pipelines["logs"]["exporters"]
    assert urlsplit(exporters[logs]["endpoint"]).path.rstrip("/") == "/otlp"
    assert host_port(exporters[logs]["endpoint"])[0] == "loki"


def test_collector_endpoints_are_compose_services() -> None:
    services = compose()["services"]
    ports = service_ports()
    for name, exporter in collector_config()["exporters"].items():
        endpoint = exporter.get("endpoint") or exporter.get("metrics_endpoint")
        host, port = host_port(endpoint)
        assert host in services, f"exporter {name}: host {host!r} is not a docker-compose service"
        assert port in ports[host], f"exporter {name}: {host} does not listen on {port} (it does on {ports[host]})"


# ==== tests: Prometheus naming ================================================================================
def test_vmagent_and_prometheus_paths_give_the_same_names() -> None:
    """With the collector's unit fix, Prometheus' own OTLP receiver (compose) and vmagent (e2e) agree."""
    vm, prom = expected_series("vmagent"), expected_series("prometheus")
    assert set(vm) == set(prom), f"only vmagent: {set(vm) - set(prom)}; only Prometheus: {set(prom) - set(vm)}"
    # Without the fix Prometheus >= 3.1 would double the per-second suffix: the fix is still needed.
    raw = {prom_name_otlptranslator(i) for i in instruments()}
    assert "llm_otel_tokens_per_second_per_second" in raw
    assert collector_unit_overrides(), "the collector's unit fix for the per-second histograms is missing"


def test_naming_model_matches_documented_examples() -> None:
    names = {i.name: prom_name_legacy(i) for i in instruments()}
    assert names["llm_otel.cost"] == "llm_otel_cost_USD_total"
    assert names["llm_otel.tokens"] == "llm_otel_tokens_total"
    assert names["gen_ai.client.operation.duration"] == "gen_ai_client_operation_duration_seconds"
    assert names["gen_ai.client.token.usage"] == "gen_ai_client_token_usage"
    assert names["llm_otel.budget.utilization"] == "llm_otel_budget_utilization_ratio"
    assert names["llm_otel.tokens_per_second"] == "llm_otel_tokens_per_second"
    assert names["llm_otel.ratelimit.remaining_requests"] == "llm_otel_ratelimit_remaining_requests"
    assert names["llm_otel.ratelimit.remaining_tokens"] == "llm_otel_ratelimit_remaining_tokens"
    # The otlptranslator model against its own test cases (prometheus/otlptranslator metric_namer_test.go).
    assert prom_name_otlptranslator(Instrument("requests", "1/s", "gauge")) == "requests_per_second"
    assert prom_name_otlptranslator(Instrument("throughput", "By/s", "gauge")) == "throughput_bytes_per_second"
    assert prom_name_otlptranslator(Instrument("cpu_usage", "1", "gauge")) == "cpu_usage_ratio"
    assert prom_name_otlptranslator(Instrument("response_time_seconds", "s", "gauge")) == "response_time_seconds"
    assert prom_name_otlptranslator(Instrument("custom_metric", "By/{custom}", "gauge")) == "custom_metric_bytes"


def test_every_metric_in_dashboards_and_rules_is_derived_from_semconv() -> None:
    known = set(expected_series("vmagent")) | set(recording_rules())  # recorded series are defined by the rules
    queries = promql_queries()
    assert len(queries) > 40
    used: set[str] = set()
    for q in queries:
        names = metric_names_in(q.expr)
        bare = bare_identifiers(q.expr) - names
        assert not bare, f"{q.where}: write metric selectors as name{{...}} ({bare})"
        unknown = names - known
        assert not unknown, f"{q.where}: {unknown} is not the Prometheus name of any llm-otel instrument"
        used |= names
    # The dashboards cover every family llm-otel emits (opt-in next-release names excepted).
    families = {i.name for s, i in expected_series("vmagent").items() if s in used}
    dashboard_metrics = {n for q in dashboard_queries() for n in metric_names_in(q.expr)}
    assert not dashboard_metrics - set(expected_series("vmagent")), "dashboards query recorded series only"
    missing = {i.name for i in instruments()} - families
    assert {m for m in missing if not m.startswith("gen_ai.client.inference.")} == set()


def test_labels_in_dashboards_and_rules_exist_on_both_paths() -> None:
    """Metric attributes exist on both paths; resource attributes only when promoted (Prometheus path)."""
    metric_labels = metric_attribute_labels()
    promoted = promoted_resource_labels()
    assert "service_name" in promoted
    prefix = context_label_prefix()
    recorded_labels = set().union(*recording_rules().values())  # static labels of recording rules
    for q in promql_queries():
        labels = label_names_in(q.expr) - {"le"}
        assert not labels & PATH_SPECIFIC_LABELS, f"{q.where}: {labels & PATH_SPECIFIC_LABELS} exist on one path only"
        for label in labels:
            if label.startswith("$"):  # Grafana variable naming a label: its value must be allowed too
                continue
            ok = label in metric_labels or label in promoted or label.startswith(prefix) or label in recorded_labels
            assert ok, f"{q.where}: label {label!r} is neither a metric attribute nor a promoted resource attribute"
    for name, dash in dashboards().items():
        for var, value in variable_values(dash).items():
            if var not in ("service", "provider", "model"):
                assert value.startswith(prefix), f"{name}: ${var}={value!r} must be an llm_otel_<key> label"


# ==== tests: Prometheus / Alertmanager configs ================================================================
def test_prometheus_config_structure() -> None:
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    # Picks up the budget rules `llm-otel rules --out prometheus/rules` writes, and not their promtool tests.
    assert config["rule_files"] == ["rules/*.rules.yml"]
    assert config["otlp"]["translation_strategy"] == "UnderscoreEscapingWithSuffixes"
    (am,) = config["alerting"]["alertmanagers"]
    (target,) = am["static_configs"][0]["targets"]
    host, port = target.split(":")
    assert host in compose()["services"] and int(port) in service_ports()[host]
    assert [p.name for p in rule_files()], "no rule files"
    for path in rule_files():
        assert "tests" not in yaml.safe_load(path.read_text()), f"{path}: a promtool test file among the rules"
    for test in promtool_test_files():
        assert test not in rule_files(), f"{test} would be loaded as a rule file"


def test_rules_have_severity_and_production_windows() -> None:
    for path in rule_files():
        for rule in rules_in(path):
            if "alert" in rule:
                assert rule.get("labels", {}).get("severity") in SEVERITIES, f"{path.name}: {rule['alert']}"
                assert rule.get("annotations", {}).get("summary"), f"{path.name}: {rule['alert']} has no summary"
    for rule in rules_in(LLM_OTEL_RULES):
        minutes = int(re.fullmatch(r"(\d+)m", rule["for"]).group(1))
        assert minutes >= 5, f"{rule['alert']}: for {rule['for']} is too short for production"


def test_alertmanager_routes_by_severity_to_webhooks() -> None:
    config = yaml.safe_load(ALERTMANAGER_YML.read_text())
    services = compose()["services"]
    receivers = {r["name"]: r for r in config["receivers"]}
    for route in config["route"]["routes"]:
        assert route["receiver"] in receivers
    assert {r["receiver"] for r in config["route"]["routes"]} | {config["route"]["receiver"]} == set(ROUTES.values())
    for name, receiver in receivers.items():
        (hook,) = receiver["webhook_configs"]
        host, port = host_port(hook["url"])
        assert host in services and port in service_ports()[host], f"{name}: {hook['url']}"
        assert hook["send_resolved"] is True


# ==== tests: docker-compose ===================================================================================
def test_compose_images_pinned_and_ports_local() -> None:
    services = compose()["services"]
    assert {"collector", "prometheus", "alertmanager", "tempo", "loki", "grafana", "demo"} <= set(services)
    for name, svc in services.items():
        if "build" in svc:
            dockerfile = REPO / svc["build"]["context"] / svc["build"]["dockerfile"]
            (base,) = re.findall(r"^FROM\s+(\S+)", dockerfile.read_text(), re.M)
            images = [base]
        else:
            images = [svc["image"]]
        for image in images:
            repo, _, tag = image.rpartition(":")
            assert repo and tag and tag != "latest" and re.search(r"\d+\.\d+", tag), f"{name}: {image} not pinned"
        for port in svc.get("ports", []):
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), f"{name}: port {port!r} not on 127.0.0.1"


def test_compose_grafana_password_from_environment() -> None:
    grafana = compose()["services"]["grafana"]
    password = grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    # Required from the environment (or .env): compose refuses to start without it, no default.
    assert re.fullmatch(r"\$\{GF_SECURITY_ADMIN_PASSWORD:\?[^}]+\}", password), password
    assert "GF_SECURITY_ADMIN_PASSWORD__FILE" not in grafana["environment"]


def test_compose_data_in_named_volumes_and_mounted_files_exist() -> None:
    doc = compose()
    services, volumes = doc["services"], set(doc["volumes"])
    data_dirs = {"prometheus": "/prometheus", "alertmanager": "/alertmanager", "tempo": "/var/tempo",
                 "loki": "/loki", "grafana": "/var/lib/grafana"}  # fmt: skip
    for name, svc in services.items():
        mounts = {}
        for vol in svc.get("volumes", []):
            source, target = vol.split(":")[:2]
            mounts[target] = source
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in volumes, f"{name}: volume {source} not declared"
        if name in data_dirs:
            assert mounts.get(data_dirs[name]) in volumes, f"{name}: {data_dirs[name]} is not a named volume"


def test_compose_wiring_matches_configs() -> None:
    """Every host:port a config points at is a compose service listening on that port."""
    services = compose()["services"]
    ports = service_ports()
    demo = services["demo"]
    assert demo["command"] == ["llm-otel", "demo", "--otlp", "http://collector:4318", "--forever", "--rate", "2"]
    sources = {
        "demo command": " ".join(demo["command"]),
        DATASOURCES.name: yaml.safe_load(DATASOURCES.read_text()),
        ALERTMANAGER_YML.name: yaml.safe_load(ALERTMANAGER_YML.read_text()),
        COLLECTOR_CONFIG.name: collector_config()["exporters"],
    }
    checked = 0
    for where, obj in sources.items():
        for url in all_urls(obj):
            host, port = host_port(url)
            assert host in services, f"{where}: {url}: no compose service {host!r}"
            assert port in ports[host], f"{where}: {url}: {host} listens on {ports[host]}"
            checked += 1
    assert checked >= 8
    prom = services["prometheus"]["command"]
    assert "--web.enable-otlp-receiver" in prom
    mounts = dict(v.split(":")[1::-1] for v in services["collector"]["volumes"])
    assert mounts["/etc/otelcol-contrib/config.yaml"] == "./collector-config/otelcol.yaml"
    dockerfile = (DOCKER_DIR / "demo.Dockerfile").read_text()
    assert "pip install '.[demo]'" in dockerfile


# ==== tests: Grafana ===========================================================================================
def provisioned_datasources() -> dict[str, dict]:
    return {d["uid"]: d for d in yaml.safe_load(DATASOURCES.read_text())["datasources"]}


def test_datasources_link_traces_and_logs() -> None:
    ds = provisioned_datasources()
    assert {d["type"] for d in ds.values()} == {"prometheus", "tempo", "loki"}
    tempo = next(d for d in ds.values() if d["type"] == "tempo")
    loki = next(d for d in ds.values() if d["type"] == "loki")
    assert tempo["jsonData"]["tracesToLogsV2"]["datasourceUid"] == loki["uid"]
    assert tempo["jsonData"]["tracesToLogsV2"]["filterByTraceID"] is True
    (derived,) = loki["jsonData"]["derivedFields"]
    assert derived["datasourceUid"] == tempo["uid"]


def test_dashboards_are_generated_and_valid() -> None:
    generated = subprocess.run(
        [sys.executable, str(GRAFANA / "generate.py"), "--check"], capture_output=True, text=True
    )
    assert generated.returncode == 0, generated.stderr
    uids = set(provisioned_datasources())
    dashes = dashboards()
    assert set(dashes) == {"llm-otel-overview.json", "llm-otel-cost.json", "llm-otel-budgets.json"}
    assert len({d["uid"] for d in dashes.values()}) == len(dashes)
    for name, dash in dashes.items():
        panels = all_panels(dash)
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        for p in panels:
            assert p["gridPos"]["x"] >= 0 and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, f"{name}: {p['title']}"
            if p["type"] != "row":
                assert datasource_uid(p) in uids, f"{name}: {p['title']}: unknown datasource"
                assert p.get("targets"), f"{name}: {p['title']} has no query"
                for t in p["targets"]:
                    assert datasource_uid(t, datasource_uid(p)) in uids
        for anno in dash["annotations"]["list"]:
            if not anno.get("builtIn"):
                assert datasource_uid(anno) in uids
        variables = {v["name"]: v for v in dash["templating"]["list"]}
        assert {"service", "provider", "model"} <= set(variables), f"{name}: variables {set(variables)}"
        text = json.dumps([p.get("targets", []) for p in panels])
        for var in variables:
            assert f"${var}" in text, f"{name}: ${var} is defined but no panel uses it"
        for var in ("service", "provider", "model"):
            assert variables[var]["datasource"]["uid"] in uids


def test_dashboard_queries_substitute_cleanly() -> None:
    for name, dash in dashboards().items():
        values = variable_values(dash)
        for q in dashboard_queries():
            if q.where.startswith(name) and q.datasource == "prometheus":
                substitute(q.expr, values)  # raises on a leftover $


# ==== tests: real promtool / amtool ========================================================================
def run_tool(binary: Path, *args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(binary).absolute()), *map(str, args)], capture_output=True, text=True, timeout=60, cwd=cwd
    )


def test_promtool_check_rules(obs_bin: Path) -> None:
    for path in rule_files():
        result = run_tool(obs_bin / "promtool", "check", "rules", path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout + result.stderr


def test_promtool_test_rules(obs_bin: Path) -> None:
    tests = promtool_test_files()
    assert PROM_DIR / "rules" / "llm-otel.rules.test.yml" in tests
    tested = {(t.parent / f).resolve() for t in tests for f in yaml.safe_load(t.read_text())["rule_files"]}
    assert not set(rule_files()) - tested, f"rule files without promtool tests: {set(rule_files()) - tested}"
    for test in tests:
        result = run_tool(obs_bin / "promtool", "test", "rules", test.name, cwd=test.parent)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout


def test_promtool_check_config(obs_bin: Path, tmp_path: Path) -> None:
    """Debian's promtool is 2.53: it predates the otlp: block (Prometheus >= 2.54/3.0, checked structurally
    above), so the copy it checks leaves that block out; everything else is the shipped file, with the rule
    file globs made absolute so that they resolve from the temporary directory."""
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    config.pop("otlp")
    config["rule_files"] = [str(PROM_DIR / p) for p in config["rule_files"]]
    copy = tmp_path / "prometheus.yml"
    copy.write_text(yaml.safe_dump(config))
    result = run_tool(obs_bin / "promtool", "check", "config", copy)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert f"SUCCESS: {len(rule_files())} rule files found" in out


def test_amtool_check_config(obs_bin: Path, tmp_path: Path) -> None:
    result = run_tool(obs_bin / "amtool", "check-config", ALERTMANAGER_YML)
    assert result.returncode == 0, result.stdout + result.stderr
    # The commented Slack and PagerDuty examples are valid once uncommented.
    text = ALERTMANAGER_YML.read_text()
    uncommented = re.sub(r"^    # (pagerduty_configs:|slack_configs:)", r"    \1", text, flags=re.M)
    uncommented = re.sub(r"^    #(   .*)$", r"   \1", uncommented, flags=re.M)
    assert "pagerduty_configs:\n      - routing_key_file" in uncommented
    assert "slack_configs:\n      - api_url_file" in uncommented
    (tmp_path / "am.yml").write_text(uncommented)
    result = run_tool(obs_bin / "amtool", "check-config", tmp_path / "am.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("severity", [*SEVERITIES, ""])
def test_amtool_routes_by_severity(obs_bin: Path, severity: str) -> None:
    labels = ["alertname=LLMErrorRateHigh", "service_name=svc"] + ([f"severity={severity}"] if severity else [])
    result = run_tool(obs_bin / "amtool", "config", "routes", "test", f"--config.file={ALERTMANAGER_YML}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == [ROUTES[severity]], result.stdout
