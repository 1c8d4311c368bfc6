#!/usr/bin/env bash
# Install everything the test suite needs and run all of it: lint, unit and SDK tests, end-to-end tests
# against real Prometheus/Alertmanager/vmagent (fetched from Debian by scripts/fetch-backends.sh), the Redis
# budget-store tests against a real redis-server (scripts/fetch-redis.sh), and the
# OpenAI tests again under openai 2.x (the major that LiteLLM users get), and the browser tests of
# `llm-otel ui` in Debian's headless Chromium (scripts/fetch-chromium.sh), with screenshots in test-artifacts/ui/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

venv() {  # venv DIR EXTRA_PIP_ARGS...
    local dir=$1; shift
    [ -x "$dir/bin/python" ] || "$PY" -m venv "$dir"
    "$dir/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]' "$@"
}

echo "== installing (.venv: openai 3.x and the other SDKs)" >&2
venv .venv 'openai>=3'
.venv/bin/ruff check .
.venv/bin/ruff format --check .

echo "== fetching observability backends" >&2
if exports=$(bash scripts/fetch-backends.sh); then
    eval "$exports"
else
    echo "warning: backends could not be fetched; the e2e tests will say why" >&2
fi
echo "== fetching redis-server (budget store tests)" >&2
if exports=$(bash scripts/fetch-redis.sh); then
    eval "$exports"
else
    echo "warning: redis-server could not be fetched; the Redis budget tests will say why" >&2
fi

echo "== fetching chromium (browser tests of llm-otel ui)" >&2
if exports=$(bash scripts/fetch-chromium.sh); then
    eval "$exports"
else
    echo "warning: chromium could not be fetched; the browser tests will say why" >&2
fi

echo "== test suite (openai 3.x)" >&2
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"

echo "== OpenAI and LiteLLM tests under openai 2.x (.venv-openai2)" >&2
# LiteLLM <= 1.106 pins openai < 3 (newer releases accept 2.x and 3.x, and run with 3.x in .venv above).
venv .venv-openai2 'openai>=2,<3' 'litellm<1.107'
.venv-openai2/bin/python -m pytest -q -p no:cacheprovider \
    tests/test_openai_surfaces.py tests/test_streams.py tests/test_throttle.py tests/test_concurrency.py \
    tests/test_faults.py tests/test_lifecycle.py tests/test_providers_more.py \
    tests/test_content_capture.py tests/test_instrumentor_contract.py tests/test_process_lifecycle.py \
    tests/test_metrics_citizen.py tests/test_first_hour_tables.py tests/test_budget_redis.py
