"""Budgets: threshold alerts and hard limits over the same usage that feeds the cost and token metrics.

``Budget`` is the validated definition; ``BudgetProcessor`` the usage processor ``instrument(budgets=...)``
installs; ``BudgetAlert`` what ``on_alert`` callbacks receive. See docs/budgets.md.
"""

from __future__ import annotations

from typing import Any

from .rules import Budget

__all__ = ["Budget", "BudgetAlert", "BudgetProcessor"]


def __getattr__(name: str) -> Any:
    # Imported lazily: config.py imports this package for Budget, and the processor imports config's users.
    if name == "BudgetProcessor":
        from .processor import BudgetProcessor

        return BudgetProcessor
    if name == "BudgetAlert":
        from .alerts import BudgetAlert

        return BudgetAlert
    raise AttributeError(name)
