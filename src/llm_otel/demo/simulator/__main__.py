"""``python -m llm_otel.demo.simulator``: the same as ``python -m llm_otel.demo.simulated_provider``."""

import sys

from .cli import main

sys.exit(main())
