"""The route table: request path (and, for OpenAI-compatible APIs, the SDK's user agent) → how it is served."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from urllib.parse import unquote

from . import anthropic, bedrock, cohere, gemini, ollama, openai, openai_responses
from .exchange import Exchange

__all__ = ["Match", "Route", "resolve"]


@dataclass(frozen=True)
class Route:
    """How one API is served."""

    family: str  # error-body and header format: openai, anthropic, gemini, bedrock, cohere or ollama
    api: str  # the name used by SimulatedProvider.requests() and served_usage()
    handler: Callable[[Exchange], None]  # writes the answer in the wire format
    stream: bool | None = None  # fixed by the path; None: the body's "stream" field decides
    stream_default: bool = False  # the body's "stream" when it is absent
    flavour: str = ""  # an OpenAI-compatible provider's quirks: "groq", "mistral"


@dataclass(frozen=True)
class Match:
    """A request's route, the path to record, and the model when the path names it."""

    route: Route
    path: str
    model: str | None = None  # None: the body's "model"


_PATHS: dict[str, Route] = {
    "/v1/chat/completions": Route("openai", "openai.chat", openai.chat),
    "/v1/responses": Route("openai", "openai.responses", openai_responses.responses),
    "/v1/embeddings": Route("openai", "openai.embeddings", openai.embeddings, stream=False),
    "/v1/completions": Route("openai", "openai.completions", openai.completions),
    "/v1/messages": Route("anthropic", "anthropic.messages", anthropic.messages),
    "/v1/messages/count_tokens": Route("anthropic", "anthropic.count_tokens", anthropic.count_tokens, stream=False),
    "/v1/chat": Route("cohere", "cohere.chat_v1", cohere.chat_v1),
    "/v1/generate": Route("cohere", "cohere.generate", cohere.generate),
    "/v1/embed": Route("cohere", "cohere.embed_v1", cohere.embed_v1, stream=False),
    "/v2/chat": Route("cohere", "cohere.chat", cohere.chat),
    "/v2/embed": Route("cohere", "cohere.embed", cohere.embed, stream=False),
    "/api/chat": Route("ollama", "ollama.chat", ollama.chat, stream_default=True),  # Ollama streams unless told not to
    "/api/generate": Route("ollama", "ollama.generate", ollama.generate, stream_default=True),
    "/api/embed": Route("ollama", "ollama.embed", ollama.embed, stream=False),
}

#: Azure OpenAI puts the deployment in the path: /openai/deployments/{name}/chat/completions (or /openai/v1/...).
_AZURE_RE = re.compile(r"^/openai/(?:deployments/[^/]+|v1)(?P<rest>/.*)$")
#: OpenAI-compatible APIs told apart by the SDK's user agent: (user-agent fragment, path prefix, flavour).
_OPENAI_FLAVOURS = (("groq/python", "/openai/v1/", "groq"), ("mistral-client-python", "/v1/", "mistral"))

#: Paths that name the model, each with its routes by the ``op`` group.
_PATTERNS: tuple[tuple[re.Pattern[str], dict[str, Route]], ...] = (
    (
        re.compile(
            r"^(?:/v1(?:beta1)?)?/projects/[^/]+/locations/[^/]+/publishers/anthropic/models/"
            r"(?P<model>[^/:]+):(?P<op>rawPredict|streamRawPredict)$"
        ),
        dict.fromkeys(("rawPredict", "streamRawPredict"), Route("anthropic", "anthropic.vertex", anthropic.messages)),
    ),
    (
        re.compile(r"^/(?:v1|v1beta|v1beta1|v1alpha)/(?:.*/)?models/(?P<model>[^/]+?):(?P<op>[A-Za-z]+)$"),
        {
            "generateContent": Route("gemini", "gemini.generate_content", gemini.generate_content, stream=False),
            "streamGenerateContent": Route("gemini", "gemini.generate_content", gemini.generate_content, stream=True),
            "embedContent": Route("gemini", "gemini.embed_content", gemini.embed_content, stream=False),
            "batchEmbedContents": Route("gemini", "gemini.embed_content", gemini.batch_embed_contents, stream=False),
            "countTokens": Route("gemini", "gemini.count_tokens", gemini.count_tokens, stream=False),
        },
    ),
    (
        re.compile(r"^/model/(?P<model>.+)/(?P<op>converse|converse-stream|invoke|invoke-with-response-stream)$"),
        {
            "converse": Route("bedrock", "bedrock.converse", bedrock.converse, stream=False),
            "converse-stream": Route("bedrock", "bedrock.converse", bedrock.converse, stream=True),
            "invoke": Route("bedrock", "bedrock.invoke", bedrock.invoke, stream=False),
            "invoke-with-response-stream": Route("bedrock", "bedrock.invoke", bedrock.invoke, stream=True),
        },
    ),
)


def resolve(path: str, user_agent: str) -> Match | None:
    """The route serving ``path`` (without the query string), or None."""
    azure = _AZURE_RE.match(path)
    canonical = "/v1" + azure.group("rest") if azure else path
    route = _PATHS.get(canonical)
    if route is not None and route.family == "openai":
        return Match(_flavoured(route, path, user_agent.lower()), canonical)
    if route is not None and not azure:
        return Match(route, path)
    for pattern, routes in _PATTERNS:
        m = pattern.match(path)
        if m and m.group("op") in routes:
            return Match(routes[m.group("op")], path, unquote(m.group("model")))
    return None


def _flavoured(route: Route, raw_path: str, user_agent: str) -> Route:
    """The OpenAI route as served to Groq's or Mistral's SDK."""
    for fragment, prefix, flavour in _OPENAI_FLAVOURS:
        if fragment in user_agent and raw_path.startswith(prefix):
            return replace(route, api=flavour + route.api.removeprefix("openai"), flavour=flavour)
    return route
