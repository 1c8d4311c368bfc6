#!/usr/bin/env bash
# Run the overhead bench in its own venv (.venv-bench): the official OpenAI instrumentation it compares
# against registers an opentelemetry_instrumentor entry point that must stay out of the test suite's .venv.
# Usage: bash bench/run.sh [--quick] [--rounds N] [--only SECTIONS] [--json PATH]
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=.venv-bench/.bench-installed
if [ ! -x .venv-bench/bin/python ]; then
    python3 -m venv .venv-bench
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then  # first run, or the bench extra changed
    .venv-bench/bin/pip install -q -e '.[bench]'
    touch "$stamp"
fi
exec .venv-bench/bin/python bench/overhead.py "$@"
