"""Every attribute and metric name llm-otel emits, in one place.

Standard names come from the OpenTelemetry GenAI semantic conventions 1.41 (``SCHEMA_URL``;
opentelemetry-semantic-conventions 0.63b0 is the first release with all of them); extensions live under
``llm_otel.``. Dashboards, alert rules and tests are written against these names, so change them here or
nowhere.
"""

from __future__ import annotations

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as _g
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics as _m
from opentelemetry.semconv.attributes import error_attributes as _e
from opentelemetry.semconv.attributes import server_attributes as _s
from opentelemetry.semconv.schemas import Schemas

# The conventions release these names follow: the schema URL on llm-otel's tracer, meter and logger. It must
# exist in the opentelemetry-semantic-conventions floor of pyproject.toml (0.63b0 is generated from 1.41.1).
SCHEMA_URL = Schemas.V1_41_1.value

# --- standard span / metric attributes ---------------------------------------------------------------
OPERATION_NAME = _g.GEN_AI_OPERATION_NAME
PROVIDER_NAME = _g.GEN_AI_PROVIDER_NAME
REQUEST_MODEL = _g.GEN_AI_REQUEST_MODEL
REQUEST_STREAM = _g.GEN_AI_REQUEST_STREAM
REQUEST_MAX_TOKENS = _g.GEN_AI_REQUEST_MAX_TOKENS
REQUEST_TEMPERATURE = _g.GEN_AI_REQUEST_TEMPERATURE
REQUEST_TOP_P = _g.GEN_AI_REQUEST_TOP_P
RESPONSE_MODEL = _g.GEN_AI_RESPONSE_MODEL
RESPONSE_ID = _g.GEN_AI_RESPONSE_ID
RESPONSE_FINISH_REASONS = _g.GEN_AI_RESPONSE_FINISH_REASONS
RESPONSE_TIME_TO_FIRST_CHUNK = _g.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK
USAGE_INPUT_TOKENS = _g.GEN_AI_USAGE_INPUT_TOKENS
USAGE_OUTPUT_TOKENS = _g.GEN_AI_USAGE_OUTPUT_TOKENS
USAGE_CACHE_READ_INPUT_TOKENS = _g.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS
USAGE_CACHE_CREATION_INPUT_TOKENS = _g.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS
USAGE_REASONING_OUTPUT_TOKENS = _g.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS
TOKEN_TYPE = _g.GEN_AI_TOKEN_TYPE
SERVER_ADDRESS = _s.SERVER_ADDRESS
SERVER_PORT = _s.SERVER_PORT
ERROR_TYPE = _e.ERROR_TYPE
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
TOOL_DEFINITIONS = "gen_ai.tool.definitions"
AGENT_NAME = "gen_ai.agent.name"
INFERENCE_DETAILS_EVENT = "gen_ai.client.inference.operation.details"

# Names from the conventions' next release (semantic-conventions-genai main), emitted in addition when
# OTEL_SEMCONV_STABILITY_OPT_IN contains "gen_ai_latest_experimental".
LATEST_USAGE_CACHE_WRITE_INPUT_TOKENS = "gen_ai.usage.cache_write.input_tokens"
LATEST_TOKEN_MODALITY = "gen_ai.token.modality"

# --- provider and operation values -------------------------------------------------------------------
PROVIDER_OPENAI = _g.GenAiProviderNameValues.OPENAI.value
PROVIDER_AZURE_OPENAI = _g.GenAiProviderNameValues.AZURE_AI_OPENAI.value
PROVIDER_ANTHROPIC = _g.GenAiProviderNameValues.ANTHROPIC.value
PROVIDER_GEMINI = _g.GenAiProviderNameValues.GCP_GEMINI.value
PROVIDER_VERTEX_AI = _g.GenAiProviderNameValues.GCP_VERTEX_AI.value
PROVIDER_BEDROCK = _g.GenAiProviderNameValues.AWS_BEDROCK.value
PROVIDER_MISTRAL = _g.GenAiProviderNameValues.MISTRAL_AI.value
PROVIDER_COHERE = _g.GenAiProviderNameValues.COHERE.value
PROVIDER_GROQ = _g.GenAiProviderNameValues.GROQ.value
PROVIDER_DEEPSEEK = _g.GenAiProviderNameValues.DEEPSEEK.value
PROVIDER_X_AI = _g.GenAiProviderNameValues.X_AI.value
PROVIDER_PERPLEXITY = _g.GenAiProviderNameValues.PERPLEXITY.value
PROVIDER_WATSONX = _g.GenAiProviderNameValues.IBM_WATSONX_AI.value
PROVIDER_AZURE_AI_INFERENCE = _g.GenAiProviderNameValues.AZURE_AI_INFERENCE.value
# The conventions list no value for Ollama (local inference server); llm-otel uses this one.
PROVIDER_OLLAMA = "ollama"
OP_CHAT = _g.GenAiOperationNameValues.CHAT.value
OP_TEXT_COMPLETION = _g.GenAiOperationNameValues.TEXT_COMPLETION.value
OP_EMBEDDINGS = _g.GenAiOperationNameValues.EMBEDDINGS.value
OP_GENERATE_CONTENT = _g.GenAiOperationNameValues.GENERATE_CONTENT.value

# Token types: the conventions define input/output for gen_ai.client.token.usage; llm_otel.tokens adds
# the cache and reasoning partitions (subsets of input and output respectively).
TOKEN_INPUT = "input"
TOKEN_OUTPUT = "output"
TOKEN_CACHE_READ = "cache_read"
TOKEN_CACHE_WRITE = "cache_write"
TOKEN_REASONING = "reasoning"
TOKEN_TYPES = (TOKEN_INPUT, TOKEN_OUTPUT, TOKEN_CACHE_READ, TOKEN_CACHE_WRITE, TOKEN_REASONING)

# --- llm_otel span-only attributes ---------------------------------------------------------------------
COST_USD = "llm_otel.cost.usd"
COST_SOURCE = "llm_otel.cost.source"  # local | litellm | unpriced | incomplete
COST_LITELLM_USD = "llm_otel.cost.litellm_usd"  # LiteLLM's own figure for the call, for comparison
VIA = "llm_otel.via"  # the routing layer the user called (litellm) when it is not the provider's SDK
THROTTLE_WAIT_S = "llm_otel.throttle.wait_s"
RETRY_WAIT_S = "llm_otel.retry.wait_s"
RETRIES = "llm_otel.retries"
TOKENS_PER_SECOND = "llm_otel.tokens_per_second"
BURST_TOKENS_PER_SECOND = "llm_otel.burst.tokens_per_second"
USAGE_COMPLETE = "llm_otel.usage.complete"
STREAM_END = "llm_otel.stream.end"  # completed | error | client_closed | gc
STREAM_CHUNKS = "llm_otel.stream.chunks"
RATELIMIT_REMAINING_REQUESTS = "llm_otel.ratelimit.remaining_requests"
RATELIMIT_REMAINING_TOKENS = "llm_otel.ratelimit.remaining_tokens"
CONTEXT_PREFIX = "llm_otel."  # llm_otel.context(job=...) -> span attribute llm_otel.job

COST_SOURCE_LOCAL = "local"
COST_SOURCE_UNPRICED = "unpriced"
COST_SOURCE_INCOMPLETE = "incomplete"  # usage only partly known (stream ended early): no cost is claimed
COST_SOURCE_LITELLM = "litellm"  # no local price; the cost LiteLLM reported for the call

VIA_LITELLM = "litellm"

STREAM_COMPLETED = "completed"
STREAM_ERROR = "error"
STREAM_CLIENT_CLOSED = "client_closed"
STREAM_GC = "gc"

# --- metrics ---------------------------------------------------------------------------------------------
METRIC_TOKEN_USAGE = _m.GEN_AI_CLIENT_TOKEN_USAGE
METRIC_OPERATION_DURATION = _m.GEN_AI_CLIENT_OPERATION_DURATION
METRIC_TIME_TO_FIRST_CHUNK = _m.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK
METRIC_TIME_PER_OUTPUT_CHUNK = _m.GEN_AI_CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK

METRIC_TOKENS = "llm_otel.tokens"
METRIC_COST = "llm_otel.cost"
METRIC_REQUEST_COST = "llm_otel.request.cost"
METRIC_UNPRICED_REQUESTS = "llm_otel.unpriced.requests"
METRIC_TOKENS_PER_SECOND = "llm_otel.tokens_per_second"
METRIC_BURST_TOKENS_PER_SECOND = "llm_otel.burst.tokens_per_second"
METRIC_THROTTLE_WAIT = "llm_otel.throttle.wait"
METRIC_RETRIES = "llm_otel.retries"
# One gauge per header kind, so that each has its own unit (requests and tokens never share a series).
METRIC_RATELIMIT_REMAINING_REQUESTS = "llm_otel.ratelimit.remaining_requests"  # unit {request}
METRIC_RATELIMIT_REMAINING_TOKENS = "llm_otel.ratelimit.remaining_tokens"  # unit {token}
METRIC_BUDGET_UTILIZATION = "llm_otel.budget.utilization"
METRIC_BUDGET_ALERTS = "llm_otel.budget.alerts"

# Next-release metric names (opt-in, see above).
LATEST_METRIC_USAGE_PREFIX = "gen_ai.client.inference.usage."  # + input_tokens, output_tokens, ...
LATEST_METRIC_TIME_TO_FIRST_CHUNK = "gen_ai.client.inference.time_to_first_chunk"
LATEST_METRIC_TIME_PER_OUTPUT_CHUNK = "gen_ai.client.inference.time_per_output_chunk"
LATEST_USAGE_METRIC_SUFFIX = {
    TOKEN_INPUT: "input_tokens",
    TOKEN_OUTPUT: "output_tokens",
    TOKEN_CACHE_READ: "cache_read.input_tokens",
    TOKEN_CACHE_WRITE: "cache_write.input_tokens",
    TOKEN_REASONING: "reasoning.output_tokens",
}

# Budget metric / log attributes (budget processor).
BUDGET_NAME = "llm_otel.budget.name"
BUDGET_GROUP = "llm_otel.budget.group"  # the group_by value ("" when the budget has no group_by)
BUDGET_LEVEL = "llm_otel.budget.level"  # info | warning | critical
BUDGET_THRESHOLD = "llm_otel.budget.threshold"
BUDGET_UNIT = "llm_otel.budget.unit"  # USD | tokens
BUDGET_ALERT_EVENT = "llm_otel.budget.alert"  # log record event name

RETRY_REASON = "llm_otel.retry.reason"  # rate_limit | server | connection
RETRY_RATE_LIMIT = "rate_limit"
RETRY_SERVER = "server"
RETRY_CONNECTION = "connection"

# --- bucket advice -------------------------------------------------------------------------------------
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
COST_BUCKETS = (1e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5, 1.0, 5.0, 10.0)
RATE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
