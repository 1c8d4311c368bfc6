"""``python -m llm_otel.cli``."""

from . import main

raise SystemExit(main())
