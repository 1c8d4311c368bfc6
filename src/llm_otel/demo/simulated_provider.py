"""The simulated LLM provider (see :mod:`llm_otel.demo.simulator` for the APIs it speaks and its scenario tokens).

Run standalone with ``python -m llm_otel.demo.simulated_provider --port N``.
"""

from __future__ import annotations

import sys

from .simulator import SCENARIO_HELP, SimulatedProvider, main

__all__ = ["SCENARIO_HELP", "SimulatedProvider", "main"]

if __name__ == "__main__":
    sys.exit(main())
