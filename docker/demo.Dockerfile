# The demo load container of docker-compose.yml: real OpenAI SDK calls against llm-otel's simulated
# provider, instrumented by llm_otel.instrument(), exported over OTLP/HTTP to the collector.
# Build context: the repository root (docker compose build demo).
FROM python:3.12.8-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install '.[demo]' && useradd --create-home --uid 10001 demo

USER demo
WORKDIR /home/demo
# Export metrics every 5 s (the SDK default is 60 s) so the dashboards fill within a minute.
ENV OTEL_METRIC_EXPORT_INTERVAL=5000 \
    LLM_OTEL_METRIC_ATTRIBUTES=tenant
CMD ["llm-otel", "demo", "--otlp", "http://collector:4318", "--forever", "--rate", "2"]
