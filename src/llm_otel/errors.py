"""Exceptions llm-otel raises into the app on purpose (everything else of ours is caught and logged)."""

from __future__ import annotations

from datetime import datetime
from typing import Any


class CallBlocked(Exception):
    """Base for processor decisions that stop a call before its request leaves the process."""


class BudgetExceeded(CallBlocked):
    """A budget with ``action: block`` is exhausted: the call was stopped before its request was sent."""

    def __init__(
        self, budget: str, group: str, used: float, limit: float, unit: str, resets_at: datetime | None
    ) -> None:
        self.budget = budget
        self.group = group
        self.used = used
        self.limit = limit
        self.unit = unit
        self.resets_at = resets_at
        who = f"budget {budget!r}" + (f" (group {group!r})" if group else "")
        spec = ".0f" if unit == "tokens" else ".4f"
        amount = f"{used:{spec}} of {limit:{spec}} {unit}"
        when = f"; it resets at {resets_at.isoformat()}" if resets_at is not None else ""
        super().__init__(f"llm-otel: {who} is exhausted: {amount} used{when}. The request was not sent.")

    def __reduce__(self) -> Any:
        return (type(self), (self.budget, self.group, self.used, self.limit, self.unit, self.resets_at))
