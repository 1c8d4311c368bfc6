"""The same budgets as Prometheus alerting rules over the cost and token counters, plus promtool tests.

For fleets beyond one host: every process exports ``llm_otel.cost`` / ``llm_otel.tokens``, Prometheus
sums them, and these rules alert on the sum. Windows are rolling (``increase(...[1d])`` is the last 24 h
at evaluation time), not the processor's calendar windows; docs/budgets.md explains the difference.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import yaml

from ..config import ConfigError, Settings
from .rules import CALENDAR_PERIODS, SCOPE_FIELDS, Budget, ValueMatcher, threshold_label

COST_METRIC = "llm_otel_cost_USD_total"
TOKENS_METRIC = "llm_otel_tokens_total"
TOKEN_TYPE_LABEL = "gen_ai_token_type"
RECORD = "llm_otel:budget_utilization:ratio"
ALERT_PREFIX = "LLMBudget_"
GROUP_NAME = "llm-otel-budgets"
CALENDAR_RANGE = {"daily": "1d", "weekly": "7d", "monthly": "30d"}
SCOPE_LABELS = {
    "provider": "gen_ai_provider_name",
    "model": "gen_ai_request_model",
    "operation": "gen_ai_operation_name",
    "service": "service_name",
}
RULES_FILE = "llm-otel-budgets.rules.yml"
TESTS_FILE = "llm-otel-budgets.rules.test.yml"
_RE_SPECIAL = re.compile(r"([.+*?()|\[\]{}^$\\])")
_OUT_OF_SCOPE = "zz-out-of-scope"
_GROUP_VALUE = "g1"


def label_for(key: str) -> str:
    """Prometheus label of a scope / group_by key (OTel attribute names with dots become underscores)."""
    return SCOPE_LABELS.get(key) or "llm_otel_" + re.sub(r"[^A-Za-z0-9_]", "_", key)


def alert_name(budget: Budget) -> str:
    """One alert name per budget (``LLMBudget_daily_openai``), so promtool tests and silences can pick it."""
    return ALERT_PREFIX + re.sub(r"[^A-Za-z0-9_]", "_", budget.name)


def range_for(budget: Budget) -> str:
    return CALENDAR_RANGE.get(budget.period, budget.period)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _matcher(label: str, values: Sequence[str]) -> str:
    if len(values) == 1 and "*" not in values[0]:
        return f"{label}={_quote(values[0])}"
    alternatives = [".*".join(_RE_SPECIAL.sub(r"\\\1", part) for part in v.split("*")) for v in values]
    return f"{label}=~{_quote('|'.join(alternatives))}"


def selector(budget: Budget) -> str:
    """The counter with the budget's scope (and token types) as label matchers."""
    matchers = []
    if budget.unit == "tokens":
        matchers.append(_matcher(TOKEN_TYPE_LABEL, budget.token_types or ()))
    for key, values in budget.scope.items():
        matchers.append(_matcher(label_for(key), values))
    metric = TOKENS_METRIC if budget.unit == "tokens" else COST_METRIC
    return f"{metric}{{{', '.join(matchers)}}}" if matchers else metric


def utilization_expr(budget: Budget) -> str:
    by = ", ".join(label_for(k) for k in budget.group_by)
    total = f"sum by ({by}) " if by else "sum "
    return f"{total}(increase({selector(budget)}[{range_for(budget)}])) / {budget.limit!r}"


def check(settings: Settings) -> None:
    """Raise ConfigError when a budget cannot be expressed over the exported metrics."""
    problems = []
    allowed = set(settings.metric_attributes)
    names: dict[str, str] = {}
    for b in settings.budgets:
        other = names.setdefault(alert_name(b), b.name)
        if other != b.name:
            problems.append(f"budgets[{b.name}].name: gives the same Prometheus alert name {alert_name(b)} as "
                            f"budget {other!r}; rename one of them")  # fmt: skip
        for where, keys in (("scope", tuple(b.scope)), ("group_by", b.group_by)):
            for key in keys:
                if key not in SCOPE_FIELDS and key not in allowed:
                    problems.append(
                        f"budgets[{b.name}].{where}: {key!r} is an llm_otel.context key that is not in "
                        f"metric_attributes, so it is not on the metrics these rules query; add it to "
                        f"metric_attributes (only low-cardinality keys belong there)"
                    )
    if problems:
        raise ConfigError("; ".join(problems))


def _group_text(budget: Budget, groups: dict[str, str] | None) -> str:
    if not budget.group_by:
        return ""
    shown = [(k, groups[label_for(k)] if groups else f"{{{{ $labels.{label_for(k)} }}}}") for k in budget.group_by]
    return " for " + ", ".join(f"{k}={v}" for k, v in shown)


def _amount(budget: Budget) -> str:
    """``2000000 tokens`` or ``12.5 USD``: plain digits, never scientific notation."""
    limit = budget.limit
    text = str(int(limit)) if float(limit).is_integer() else f"{limit:.10f}".rstrip("0").rstrip(".")
    return f"{text} {budget.unit}"


def _annotations(budget: Budget, label: str, value: float | None = None,
                 groups: dict[str, str] | None = None) -> dict[str, str]:  # fmt: skip
    """Alert annotations: templates, or (``value``, ``groups`` given) the text promtool should expand them to."""
    shown = f"{value:.3f}" if value is not None else '{{ printf "%.3f" $value }}'
    window = range_for(budget)
    calendar = (
        f" llm-otel's in-process budget uses the calendar {budget.period} window ({budget.timezone}); this rule "
        f"uses the rolling last {window}, summed over every process that exports metrics."
        if budget.period in CALENDAR_PERIODS
        else f" The window is the rolling last {window}, summed over every process that exports metrics."
    )
    return {
        "summary": f"LLM budget {budget.name}{_group_text(budget, groups)} is at {shown} of {_amount(budget)} "
        f"({budget.period}), threshold {label}",
        "description": f"increase({selector(budget)}[{window}]) divided by the limit {_amount(budget)} reached "
        f"{label}.{calendar}",
    }


def _labels(budget: Budget, label: str, level: str) -> dict[str, str]:
    return {"severity": level, "budget": budget.name, "threshold": label, "unit": budget.unit,
            "period": budget.period}  # fmt: skip


def rules(settings: Settings) -> dict[str, Any]:
    """The rule file as data: per budget a recording rule for utilization and one alert per threshold."""
    check(settings)
    out: list[dict[str, Any]] = []
    for b in settings.budgets:
        out.append({"record": RECORD, "expr": utilization_expr(b), "labels": {"budget": b.name}})
        ths = b.thresholds
        for i, t in enumerate(ths):
            label = threshold_label(t)
            # Each alert covers one band [t_i, t_i+1): only the highest threshold reached is firing.
            upper = f" < {ths[i + 1]!r}" if i + 1 < len(ths) else ""
            out.append({
                "alert": alert_name(b),
                "expr": f"{RECORD}{{budget={_quote(b.name)}}} >= {t!r}{upper}",
                "labels": _labels(b, label, b.level_of(t)),
                "annotations": _annotations(b, label),
            })  # fmt: skip
    return {"groups": [{"name": GROUP_NAME, "rules": out}]}


HEADER = """\
# Generated by `llm-otel rules` from the budgets in the llm-otel configuration. Do not edit: regenerate.
# Prometheus windows are rolling (increase over the last 1d / 7d / 30d / the given duration), not the
# calendar windows of llm-otel's in-process budget processor. See docs/budgets.md.
"""


def render_rules(settings: Settings) -> str:
    return HEADER + _dump(rules(settings))


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, width=4096, allow_unicode=True)


# --- promtool unit tests ----------------------------------------------------------------------------------
def _duration(seconds: float) -> str:
    """A Prometheus duration: ``5m``, ``1h30m``, ``2s500ms``."""
    ms = round(seconds * 1000)
    out = ""
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        if ms >= size:
            out += f"{ms // size}{unit}"
            ms %= size
    return out or "0s"


def _window_s(budget: Budget) -> int:
    return {"daily": 86400, "weekly": 7 * 86400, "monthly": 30 * 86400}.get(budget.period) or budget.rolling_s or 0


def _inside(values: Sequence[str]) -> str:
    """A value that ``values`` (exact or ``*`` globs) matches."""
    exact = [v for v in values if "*" not in v]
    return exact[0] if exact else values[0].replace("*", "x")


def _targets(ths: Sequence[float]) -> list[tuple[float, int | None]]:
    """Utilizations to feed, ascending, each with the index of the threshold alert expected there (None: none).

    Each band [t_i, t_i+1) is probed just above its threshold and just below the next one, so that a wrong
    boundary on either side makes an alert appear or disappear.
    """
    out: list[tuple[float, int | None]] = [(ths[0] / 2, None)]
    for i, t in enumerate(ths):
        upper = ths[i + 1] if i + 1 < len(ths) else t + 0.1
        delta = min(0.001, (upper - t) / 4)
        out += [(t + delta, i), (upper - delta, i)]
    return out


def _series(metric: str, labels: dict[str, str]) -> str:
    inner = ", ".join(f"{k}={_quote(v)}" for k, v in labels.items())
    return f"{metric}{{{inner}}}"


def _fmt(value: float) -> str:
    return repr(float(value))


def tests(settings: Settings, rules_file: str = RULES_FILE) -> dict[str, Any]:
    """promtool unit tests: per budget, usage stepping through every threshold band, plus series that must
    not count (out of scope, uncounted token types) so that a missing matcher fails the test."""
    check(settings)
    budgets = list(settings.budgets)
    steps = 2 * max(len(b.thresholds) for b in budgets) + 2 if budgets else 2
    # Every sample must stay inside every window so that increase() sees the series from its zero start.
    interval = max(0.001, min(_window_s(b) for b in budgets) / (2 * steps)) if budgets else 60.0
    interval = float(int(interval)) if interval >= 1 else round(interval, 3)
    cases = []
    for b in budgets:
        metric = TOKENS_METRIC if b.unit == "tokens" else COST_METRIC
        labels: dict[str, str] = {}
        if b.unit == "tokens":
            labels[TOKEN_TYPE_LABEL] = (b.token_types or ("input",))[0]
        for key, values in b.scope.items():
            labels[label_for(key)] = _inside(values)
        for key in b.group_by:
            labels.setdefault(label_for(key), _GROUP_VALUE)
        targets = _targets(b.thresholds)
        values = [0.0] + [b.limit * u for u, _ in targets]
        big = " ".join(_fmt(b.limit * 1000 * (i + 1)) for i in range(len(values) - 1))
        input_series = [{"series": _series(metric, labels), "values": " ".join(_fmt(v) for v in values)}]
        if b.scope:
            key, vals = next(iter(b.scope.items()))
            if not ValueMatcher(vals)(_OUT_OF_SCOPE):
                outside = {**labels, label_for(key): _OUT_OF_SCOPE}
                input_series.append({"series": _series(metric, outside), "values": f"0 {big}"})
        if b.unit == "tokens":
            uncounted = [t for t in ("input", "output", "cache_read", "cache_write", "reasoning")
                         if t not in (b.token_types or ())]  # fmt: skip
            if uncounted:
                other = {**labels, TOKEN_TYPE_LABEL: uncounted[0]}
                input_series.append({"series": _series(metric, other), "values": f"0 {big}"})
        group_labels = {label_for(k): labels[label_for(k)] for k in b.group_by}
        checks = []
        for step, (_u, idx) in enumerate(targets, start=1):
            expected = []
            if idx is not None:
                t = b.thresholds[idx]
                label = threshold_label(t)
                expected.append({
                    "exp_labels": {**group_labels, **_labels(b, label, b.level_of(t))},
                    "exp_annotations": _annotations(b, label, values[step] / b.limit, group_labels),
                })  # fmt: skip
            checks.append({"eval_time": _duration(step * interval), "alertname": alert_name(b), "exp_alerts": expected})
        cases.append({"name": f"budget {b.name}", "interval": _duration(interval), "input_series": input_series,
                      "alert_rule_test": checks})  # fmt: skip
    return {"rule_files": [rules_file], "evaluation_interval": _duration(interval), "tests": cases}


def render_tests(settings: Settings, rules_file: str = RULES_FILE) -> str:
    return "# Generated by `llm-otel rules`: run with `promtool test rules` next to the rules file.\n" + _dump(
        tests(settings, rules_file)
    )
