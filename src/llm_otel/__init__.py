"""llm-otel: OpenTelemetry spans, metrics, cost and budgets for every LLM call, in one line.

import llm_otel
llm_otel.instrument()
"""

from __future__ import annotations

__version__ = "0.1.0"

from ._api import flush, instrument, ledger_path, session_usage, uninstrument
from .budget.alerts import BudgetAlert
from .budget.rules import Budget
from .config import ConfigError, ModelPrice, Settings
from .context import context
from .core.result import CallInfo, CallResult, UsageRecord
from .core.usage import Usage
from .errors import BudgetExceeded, CallBlocked
from .sinks import UsageProcessor

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
