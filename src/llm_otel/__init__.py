"""llm-otel: OpenTelemetry spans, metrics, cost and budgets for every LLM call, in one line.

import llm_otel
llm_otel.instrument()
"""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

from ._api import flush, instrument, ledger_path, session_usage, uninstrument
from .context import context
from .core.result import CallInfo, CallResult, UsageRecord
from .core.usage import Usage
from .errors import BudgetExceeded, CallBlocked
from .sinks import UsageProcessor

if TYPE_CHECKING:
    from .budget.alerts import BudgetAlert
    from .budget.rules import Budget
    from .config import ConfigError, ModelPrice, Settings

# Loaded on first use: they bring in pydantic, which `import llm_otel` does not need.
_LAZY = {"Budget": "budget.rules", "BudgetAlert": "budget.alerts", "ConfigError": "config", "ModelPrice": "config",
         "Settings": "config"}  # fmt: skip


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'llm_otel' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "Budget",
    "BudgetAlert",
    "BudgetExceeded",
    "CallBlocked",
    "CallInfo",
    "CallResult",
    "ConfigError",
    "ModelPrice",
    "Settings",
    "Usage",
    "UsageProcessor",
    "UsageRecord",
    "__version__",
    "context",
    "flush",
    "instrument",
    "ledger_path",
    "session_usage",
    "uninstrument",
]
