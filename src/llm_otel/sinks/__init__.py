"""Sinks: each consumes a finished call's CallResult and emits one signal (span, metrics, ledger, session
totals); budgets and user processors plug in through the same interface."""
