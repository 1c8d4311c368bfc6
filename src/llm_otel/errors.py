"""Exceptions llm-otel raises into the app on purpose (everything else of ours is caught and logged)."""

from __future__ import annotations


class CallBlocked(Exception):
    """Base for processor decisions that stop a call before its request leaves the process."""
