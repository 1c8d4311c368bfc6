"""One validated Settings object from keyword arguments, environment variables and an optional YAML file.

Precedence, highest first: ``instrument(...)`` keyword arguments, environment (``LLM_OTEL_*``, ``OTEL_*``),
the YAML file named by ``config_file=`` or ``LLM_OTEL_CONFIG``, defaults.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from pathlib import Path

    from pydantic import TypeAdapter, ValidationError

    from .budget.rules import Budget

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
# Settings and ModelPrice are plain dataclasses validated by pydantic (which reads this), so that
# ``instrument()`` with nothing to validate never imports pydantic: see docs/decisions.md, "Start-up".
_FORBID_EXTRA = {"extra": "forbid"}


class ConfigError(ValueError):
    """Invalid llm-otel configuration; the message names the field, the value and where it came from."""


class _FieldError(ValueError):
    """A check on one field that pydantic runs after type validation (``__post_init__``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclasses.dataclass(frozen=True)
class ModelPrice:
    """A user price override in USD per million tokens. Missing cache prices fall back to ``input``."""

    __pydantic_config__ = _FORBID_EXTRA
    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None

    def __post_init__(self) -> None:
        for name in ("input", "output", "cache_read", "cache_write"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise _FieldError(name, f"Input should be greater than or equal to 0 (got {value!r})")


@dataclasses.dataclass
class Settings:
    """Everything llm-otel can be told. See docs/configuration.md."""

    __pydantic_config__ = _FORBID_EXTRA

    endpoint: str | None = None
    """OTLP/HTTP base endpoint (``http://host:4318``); None means no export (embedded ledger only)."""
    service_name: str | None = None
    ledger: bool | str = True
    """True: default path under the user data dir; a string: that file; False: no ledger."""
    capture_content: bool | str = False
    """Prompts and completions: a content-capturing mode (no_content, span_only, event_only, span_and_event)
    or true/false (span_only / no_content). After validation it is a bool; ``content_mode`` keeps the mode."""
    inject_stream_usage: bool = True
    detail_histograms: bool = True
    """The histograms beyond the conventions' per-call points, recorded at each collection (request cost, tokens
    per second, burst, throttle wait, time per output chunk). False records none of their points."""
    metric_attributes: list[str] = dataclasses.field(default_factory=list)
    """``llm_otel.context`` keys that may also go on metrics (they must be low-cardinality)."""
    prices: dict[str, ModelPrice] = dataclasses.field(default_factory=dict)
    """Price overrides keyed by model name or ``provider:model``; they win over genai-prices."""
    latest_semconv: bool = False
    anthropic_native_spans: Literal["off", "child"] = "off"
    """The anthropic SDK's own spans: "off" (ours replace them) or "child" (kept, under ours)."""
    budgets: list[Any] = dataclasses.field(default_factory=list)
    """Spending / token budgets (``Budget`` objects, see docs/budgets.md). Validated by ``load_settings``
    (the budget model loads only when budgets are configured)."""
    budget_state: bool | str = True
    """Budget state file shared by processes: True = default path under the user data dir; False = memory only."""
    budget_store: str | None = None
    """A ``redis://`` URL: budgets shared by every process on every host (then ``budget_state`` is unused)."""
    exit_timeout: float = 0.3
    """Seconds the process may spend at exit exporting the last telemetry of providers llm-otel created, before
    it ends without it (an unreachable collector would otherwise hold the exit for 10 s or more)."""

    def __post_init__(self) -> None:
        from .core.content import MODES, NO_CONTENT, mode_of

        mode = mode_of(self.capture_content)
        if mode is None:
            raise _FieldError("capture_content", f"expected one of {', '.join(MODES)}, true or false "
                              f"(got {self.capture_content!r})")  # fmt: skip
        self.content_mode = mode
        self.capture_content = mode != NO_CONTENT
        endpoint = self.endpoint
        if endpoint is not None:
            if not re.match(r"^https?://[^/\s]+", endpoint):
                raise _FieldError("endpoint", "must be an http:// or https:// URL, for example "
                                  f"http://127.0.0.1:4318 (got {endpoint!r})")  # fmt: skip
            self.endpoint = endpoint.rstrip("/")
        for key in self.metric_attributes:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_.]*$", key):
                raise _FieldError("metric_attributes", f"{key!r} is not a valid attribute key")
        if self.budget_store is not None:
            from .budget.storeurl import StoreUrlError, check

            try:
                self.budget_store = check(self.budget_store) if self.budget_store.strip() else None
            except StoreUrlError as exc:
                raise _FieldError("budget_store", str(exc)) from None
        if self.exit_timeout < 0:
            raise _FieldError("exit_timeout", f"must be 0 or more seconds (got {self.exit_timeout!r})")


@functools.cache
def _settings_adapter() -> TypeAdapter[Settings]:
    from pydantic import TypeAdapter

    return TypeAdapter(Settings)


def _env_bool(name: str, raw: str) -> bool:
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ConfigError(f"environment variable {name}={raw!r}: expected true or false")


def _capture_mode(raw: str) -> str:
    """OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT as the official instrumentations read it: a
    content-capturing mode in any case, or the legacy true/false; anything else warns once and captures
    nothing (content capture fails closed)."""
    from .core.content import MODES, NO_CONTENT, mode_of

    mode = mode_of(raw)
    if mode is None:
        if raw not in _WARNED_CAPTURE:
            _WARNED_CAPTURE.add(raw)
            import logging

            logging.getLogger("llm_otel").warning(
                "llm-otel: OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=%r is not one of %s, true or false; "
                "capturing no content", raw, ", ".join(m.upper() for m in MODES))  # fmt: skip
        return NO_CONTENT
    return mode


_WARNED_CAPTURE: set[str] = set()


def _from_env(env: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    endpoint = env.get("LLM_OTEL_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if endpoint:
        out["endpoint"] = endpoint
    if env.get("OTEL_SERVICE_NAME"):
        out["service_name"] = env["OTEL_SERVICE_NAME"]
    if "LLM_OTEL_LEDGER" in env:
        raw = env["LLM_OTEL_LEDGER"].strip()
        out["ledger"] = False if raw.lower() in _FALSE else raw
    capture = env.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")
    if capture is not None:
        out["capture_content"] = _capture_mode(capture)
    if "LLM_OTEL_INJECT_STREAM_USAGE" in env:
        out["inject_stream_usage"] = _env_bool("LLM_OTEL_INJECT_STREAM_USAGE", env["LLM_OTEL_INJECT_STREAM_USAGE"])
    if "LLM_OTEL_DETAIL_HISTOGRAMS" in env:
        out["detail_histograms"] = _env_bool("LLM_OTEL_DETAIL_HISTOGRAMS", env["LLM_OTEL_DETAIL_HISTOGRAMS"])
    if env.get("LLM_OTEL_METRIC_ATTRIBUTES"):
        out["metric_attributes"] = [k.strip() for k in env["LLM_OTEL_METRIC_ATTRIBUTES"].split(",") if k.strip()]
    if env.get("LLM_OTEL_ANTHROPIC_NATIVE_SPANS"):
        out["anthropic_native_spans"] = env["LLM_OTEL_ANTHROPIC_NATIVE_SPANS"].strip().lower()
    if "LLM_OTEL_BUDGET_STATE" in env:
        raw = env["LLM_OTEL_BUDGET_STATE"].strip()
        out["budget_state"] = False if raw.lower() in _FALSE else raw
    if "LLM_OTEL_BUDGET_STORE" in env:
        out["budget_store"] = env["LLM_OTEL_BUDGET_STORE"].strip()
    if env.get("LLM_OTEL_EXIT_TIMEOUT"):
        out["exit_timeout"] = env["LLM_OTEL_EXIT_TIMEOUT"].strip()
    if "gen_ai_latest_experimental" in env.get("OTEL_SEMCONV_STABILITY_OPT_IN", ""):
        out["latest_semconv"] = True
    return out


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def load_file(path: str | Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Read a YAML config file, substituting ``${VAR}`` and ``${VAR:-default}`` from the environment."""
    from pathlib import Path

    import yaml  # only when a file is used

    env = dict(os.environ) if env is None else env
    shown, path = str(path), Path(path)  # messages name the file as it was given (./llm-otel.yaml)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config file {shown}: cannot read it ({exc.strerror or exc})") from None

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(f"config file {shown}: environment variable {name} is not set (used as ${{{name}}})")

    try:
        data = yaml.safe_load(_VAR.sub(substitute, text)) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {shown}{_yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {shown}: the top level must be a mapping of settings")
    return data


def _yaml_problem(exc: Exception) -> str:
    """``, line 3: mapping values are not allowed here``: PyYAML's error in one line (its own message is a
    multi-line snippet). Lines count from 1, as editors do."""
    mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None)
    if mark is None or not problem:
        first = str(exc).strip().splitlines()
        return f": not valid YAML ({first[0] if first else type(exc).__name__})"
    context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    where = ""
    if context and start is not None and start.line != mark.line:
        where = f" ({context} that starts on line {start.line + 1})"
    return f", line {mark.line + 1}: {problem}{where}"


def _where(loc: tuple[Any, ...], data: dict[str, Any] | None, prefix: str | None) -> str:
    """``budgets.0.limit`` -> ``budgets[monthly-openai].limit``: budgets are named, not numbered."""
    parts = [str(p) for p in loc]
    if prefix is not None:
        return ".".join([prefix, *parts])
    if len(loc) >= 2 and loc[0] == "budgets" and isinstance(loc[1], int):
        items = (data or {}).get("budgets")
        item = items[loc[1]] if isinstance(items, list | tuple) and loc[1] < len(items) else None
        name = item.get("name") if isinstance(item, dict) else getattr(item, "name", None)
        label = f"budgets[{name if isinstance(name, str) and name else loc[1]}]"
        return ".".join([label, *parts[2:]])
    return ".".join(parts) or "(top level)"


def describe_errors(
    exc: ValidationError,
    source: str,
    data: dict[str, Any] | None = None,
    prefix: str | None = None,
    loc_prefix: tuple[Any, ...] = (),
) -> str:
    """One line per validation error: source, field path, message, offending value."""
    lines = []
    for err in exc.errors():
        loc, value = (*loc_prefix, *err["loc"]), err.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        msg = err["msg"].removeprefix("Value error, ")
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, _FieldError):  # a dataclass check: name its field, its message says the value
            loc, msg, shown = (*loc, cause.field), cause.message, ""
        elif err["type"] == "unexpected_keyword_argument":  # pydantic's words for a dataclass: as for a model
            msg = "Extra inputs are not permitted"
        where = _where(loc, data, prefix)
        lines.append(f"{source}: {where}: {msg}{shown}")
    return "; ".join(lines)


#: Fields whose values pydantic would keep as they are when they already have one of these exact types.
_PLAIN_TYPES: dict[str, tuple[type, ...]] = {
    "endpoint": (str,), "service_name": (str,), "ledger": (bool, str), "capture_content": (bool, str),
    "inject_stream_usage": (bool,), "detail_histograms": (bool,), "latest_semconv": (bool,),
    "budget_state": (bool, str), "budget_store": (str,),
}  # fmt: skip


def _plain_settings(values: dict[str, Any]) -> Settings | None:
    """``Settings`` built without pydantic when every value already has its field's exact type (what
    ``instrument(service_name=...)`` and the usual ``OTEL_*`` variables give), so that pydantic is not imported
    for them; None when pydantic must validate (anything else, or a failed check: its error names the field)."""
    for name, value in values.items():
        kinds = _PLAIN_TYPES.get(name)
        if kinds is None or type(value) not in kinds:
            return None
    try:
        return Settings(**values)
    except _FieldError:
        return None


def load_settings(
    overrides: dict[str, Any] | None = None,
    *,
    config_file: str | Path | None = None,
    env: dict[str, str] | None = None,
) -> Settings:
    """Merge defaults, file, environment and keyword overrides into one validated ``Settings``."""
    env = dict(os.environ) if env is None else env
    merged: dict[str, Any] = {}
    source = "instrument() arguments / environment"
    file_name = config_file or env.get("LLM_OTEL_CONFIG")
    if file_name:
        merged.update(load_file(file_name, env))
        source = f"config file {file_name} / environment / instrument() arguments"
    merged.update(_from_env(env))
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
    budgets = merged.pop("budgets", None)
    settings = _plain_settings(merged)
    if settings is None:
        from pydantic import ValidationError

        try:
            settings = _settings_adapter().validate_python(merged)
        except ValidationError as exc:
            raise ConfigError(describe_errors(exc, source, merged)) from None
    if budgets:
        settings.budgets = validate_budgets(budgets, source)
    return settings


def validate_budgets(raw: Any, source: str) -> list[Budget]:
    """Budgets from config data (dicts or ``Budget`` objects), validated; names must be unique."""
    from pydantic import TypeAdapter, ValidationError

    from .budget.rules import NESTED, Budget

    token = NESTED.set(True)
    try:
        budgets: list[Budget] = TypeAdapter(list[Budget]).validate_python(raw)
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc, source, {"budgets": raw}, loc_prefix=("budgets",))) from None
    finally:
        NESTED.reset(token)
    seen: set[str] = set()
    for budget in budgets:
        if budget.name in seen:
            raise ConfigError(f"{source}: budgets: two budgets are named {budget.name!r}; names must be unique")
        seen.add(budget.name)
    return budgets
