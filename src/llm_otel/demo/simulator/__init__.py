"""A local HTTP server that imitates LLM provider APIs.

The test suite drives the real provider SDKs against it, and ``llm-otel demo`` uses it to produce telemetry
without network access or API keys. It uses the standard library only and binds to the loopback interface.

APIs spoken (request path → ``api`` name used by :meth:`SimulatedProvider.requests` and
:meth:`SimulatedProvider.served_usage`; the table is in :mod:`.routes`, one module per wire format):

* OpenAI (:mod:`.openai`, :mod:`.openai_responses`), under ``/v1``: ``/chat/completions`` → ``openai.chat``,
  ``/responses`` → ``openai.responses``, ``/embeddings`` → ``openai.embeddings``, ``/completions`` →
  ``openai.completions``. Chat completions honour ``n``: choice ``i`` finishes with ``"stop"`` (``i`` even) or
  ``"length"`` (``i`` odd); a stream sends each piece once per choice, one choice per chunk, then one finish
  chunk per choice; usage is not multiplied. Azure OpenAI's ``/openai/deployments/{name}/...`` and
  ``/openai/v1/...`` paths serve the same routes.
* Groq (OpenAI wire format under ``/openai/v1``, recognised by the Groq SDK's user agent):
  ``/openai/v1/chat/completions`` → ``groq.chat`` (streams carry ``x_groq.usage`` on the final chunk, as Groq
  does), ``/openai/v1/embeddings`` → ``groq.embeddings``.
* Mistral (OpenAI-like wire format, recognised by the ``mistralai`` SDK's user agent): ``/v1/chat/completions``
  → ``mistral.chat`` (streams always carry usage on the last chunk, as Mistral does), ``/v1/embeddings`` →
  ``mistral.embeddings``.
* Anthropic (:mod:`.anthropic`): ``/v1/messages`` → ``anthropic.messages``, ``/v1/messages/count_tokens`` →
  ``anthropic.count_tokens``. Vertex AI's ``/projects/{p}/locations/{r}/publishers/anthropic/models/{model}``
  ``:rawPredict`` and ``:streamRawPredict`` (``AnthropicVertex``; optionally under ``/v1``) → ``anthropic.vertex``,
  answered like ``/v1/messages`` with the model taken from the path.
* Google Gemini (:mod:`.gemini`): ``/{v1,v1beta,v1alpha}/models/{model}:generateContent`` and
  ``:streamGenerateContent`` → ``gemini.generate_content``, ``:embedContent`` and ``:batchEmbedContents`` →
  ``gemini.embed_content``, ``:countTokens`` → ``gemini.count_tokens``.
* AWS Bedrock runtime (:mod:`.bedrock`): ``/model/{id}/converse`` and ``/converse-stream`` → ``bedrock.converse``,
  ``/model/{id}/invoke`` and ``/invoke-with-response-stream`` → ``bedrock.invoke`` (also what ``AnthropicBedrock``
  posts to). InvokeModel bodies follow the model id, after an optional region prefix such as ``us.``:
  ``amazon.titan-text*`` (``inputTextTokenCount``, ``results[].completionReason``; stream chunks with
  ``outputText`` and ``totalOutputTextTokenCount``), ``amazon.nova*`` (``output.message``, ``stopReason``,
  ``usage``; stream chunks ``messageStart``, ``contentBlockDelta``, ``contentBlockStop``, ``messageStop``,
  ``metadata``), ``meta.llama*`` (``generation``, ``prompt_token_count``, ``generation_token_count``,
  ``stop_reason``), and Anthropic Messages bodies for ``anthropic.*`` and any other model. Stream chunks are
  base64 JSON in event-stream ``chunk`` events; the last carries ``amazon-bedrock-invocationMetrics``.
* Cohere (:mod:`.cohere`). v2: ``/v2/chat`` → ``cohere.chat`` (SSE when ``"stream": true``, usage in the
  ``message-end`` event), ``/v2/embed`` → ``cohere.embed``. v1: ``/v1/chat`` → ``cohere.chat_v1``,
  ``/v1/generate`` → ``cohere.generate`` (streams are newline-delimited JSON, ``application/stream+json``, ending
  with a ``stream-end`` object that carries the whole response), ``/v1/embed`` → ``cohere.embed_v1``. Usage is
  reported as billed units (``in``/``out``); ``tokens`` adds a fixed prompt overhead the way Cohere's raw counts
  do; v1 reports no cache counts.
* Ollama (:mod:`.ollama`): ``/api/chat`` → ``ollama.chat``, ``/api/generate`` → ``ollama.generate`` (NDJSON
  streams, counts on the final ``done: true`` object), ``/api/embed`` → ``ollama.embed``.

Behaviour is chosen per request with scenario tokens (:mod:`.scenario`), given in the ``x-sim-scenario`` header
(comma-separated) or as a model-name suffix after ``+`` (for example ``gpt-4o-mini+429x1,ra=0.05``). See
:data:`SCENARIO_HELP`; among them ``content_filter`` (an Azure content-filter chunk opens OpenAI chat streams)
and ``empty_delta`` (the final chunk of a ``/v1/completions`` stream also carries ``"delta": {}``).

Usage numbers use normalized semantics: ``in`` includes cache reads and cache writes, ``out`` includes
reasoning. Each API reports them in its own shape (for example Anthropic's ``input_tokens`` excludes the cache,
Gemini's ``candidatesTokenCount`` excludes thoughts).

Run standalone with ``python -m llm_otel.demo.simulated_provider --port N`` (or ``python -m
llm_otel.demo.simulator``). For use from another process there are control endpoints: ``GET /_sim/health``,
``GET /_sim/requests``, ``GET /_sim/usage`` and ``POST /_sim/reset``.
"""

from __future__ import annotations

from .cli import main
from .scenario import SCENARIO_HELP
from .server import SimulatedProvider

__all__ = ["SCENARIO_HELP", "SimulatedProvider", "main"]
