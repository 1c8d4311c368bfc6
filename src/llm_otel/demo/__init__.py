"""Demo helpers for llm-otel."""
