"""Canned provider responses on an in-process transport, and the plain SDK calls each workload makes.

The real openai and anthropic SDKs talk to a ``MockTransport`` of the HTTP library they were built on
(``httpx`` for openai 2.x, ``httpx2`` for openai 3.x and anthropic 2.x): no sockets, no network. Bodies are
built once; the handler only decides between JSON and SSE (and whether the caller asked for a usage chunk).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from types import ModuleType
from typing import Any

import anthropic
import openai

HOST = "bench.invalid"
PORT = 8080  # explicit, so that every arm reports server.port (an implicit :80 is left out by some)
MODEL = "gpt-4o-mini"
RESPONSE_MODEL = "gpt-4o-mini-2024-07-18"
MESSAGES = [{"role": "user", "content": "Say hello in five words."}]  # lean: the SDK's own work is the noise floor
USAGE = {
    "prompt_tokens": 120,
    "completion_tokens": 40,
    "total_tokens": 160,
    "prompt_tokens_details": {"cached_tokens": 64, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 8, "audio_tokens": 0},
}
A_MODEL = "claude-3-5-haiku-latest"
A_RESPONSE_MODEL = "claude-3-5-haiku-20241022"
A_MESSAGES = MESSAGES
A_MAX_TOKENS = 64  # required by the anthropic API
A_USAGE = {"input_tokens": 500, "cache_read_input_tokens": 1500, "cache_creation_input_tokens": 0, "output_tokens": 200}
ASYNC_FANOUT = 100  # async calls gathered concurrently per measurement unit


def http_module(sdk: ModuleType) -> ModuleType:
    """The HTTP library an SDK's client is built on (``httpx2`` or ``httpx``)."""
    base = __import__(f"{sdk.__name__}._base_client", fromlist=["_"])
    mod = getattr(base, "httpx2", None) or getattr(base, "httpx", None)
    if mod is None:
        raise RuntimeError(f"cannot tell which HTTP library {sdk.__name__} {sdk.__version__} uses")
    return mod


# --- openai ----------------------------------------------------------------------------------------------------
def _completion_body() -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": RESPONSE_MODEL,
            "system_fingerprint": "fp_bench",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello there, nice to meet!", "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": USAGE,
        }
    ).encode()


def _openai_sse(chunks: int, include_usage: bool) -> bytes:
    """Like the real API: a role chunk, ``chunks`` content chunks, a finish chunk, [a usage chunk], [DONE]."""
    head = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1_700_000_000,
            "model": RESPONSE_MODEL, "system_fingerprint": "fp_bench"}  # fmt: skip
    extra = {"usage": None} if include_usage else {}

    def choice(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

    events = [{**head, "choices": [choice({"role": "assistant", "content": "", "refusal": None})], **extra}]
    events += [{**head, "choices": [choice({"content": f"tok{i} "})], **extra} for i in range(chunks)]
    events.append({**head, "choices": [choice({}, "stop")], **extra})
    if include_usage:
        events.append({**head, "choices": [], "usage": USAGE})
    return ("".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n").encode()


class OpenAIHandler:
    """MockTransport handler for the chat completions endpoint."""

    def __init__(self, chunks: int) -> None:
        self.http = http_module(openai)
        self.chunks = chunks
        self.completion = _completion_body()
        self.sse = {usage: _openai_sse(chunks, usage) for usage in (False, True)}
        limits = {"x-ratelimit-remaining-requests": "9999", "x-ratelimit-remaining-tokens": "1999000"}
        self.json_headers = {"content-type": "application/json", **limits}
        self.sse_headers = {"content-type": "text/event-stream", **limits}

    def __call__(self, request: Any) -> Any:
        body = json.loads(request.content)
        if body.get("stream"):
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return self.http.Response(200, headers=self.sse_headers, content=self.sse[usage])
        return self.http.Response(200, headers=self.json_headers, content=self.completion)


def openai_client(chunks: int) -> openai.OpenAI:
    handler = OpenAIHandler(chunks)
    http = handler.http.Client(transport=handler.http.MockTransport(handler))
    return openai.OpenAI(api_key="x", base_url=f"http://{HOST}:{PORT}/v1", http_client=http, max_retries=0)


def async_openai_client(chunks: int) -> openai.AsyncOpenAI:
    handler = OpenAIHandler(chunks)
    http = handler.http.AsyncClient(transport=handler.http.MockTransport(handler))
    return openai.AsyncOpenAI(api_key="x", base_url=f"http://{HOST}:{PORT}/v1", http_client=http, max_retries=0)


def chat(client: openai.OpenAI) -> Any:
    """One non-stream chat completion."""
    return client.chat.completions.create(model=MODEL, messages=MESSAGES)


def stream(client: openai.OpenAI) -> None:
    """One streamed chat completion, iterated to the end (the app asks for no usage chunk)."""
    for _ in client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True):
        pass


async def chat_async(client: openai.AsyncOpenAI) -> Any:
    return await client.chat.completions.create(model=MODEL, messages=MESSAGES)


def gathered(loop: asyncio.AbstractEventLoop, call: Callable[[], Any], n: int = ASYNC_FANOUT) -> Callable[[], None]:
    """A unit of the async workload: ``n`` calls gathered concurrently, run to completion on ``loop``."""

    async def unit() -> None:
        await asyncio.gather(*(call() for _ in range(n)))

    return lambda: loop.run_until_complete(unit())


# --- anthropic -------------------------------------------------------------------------------------------------
_A_MESSAGE = {"id": "msg_bench", "type": "message", "role": "assistant", "model": A_RESPONSE_MODEL,
              "content": [{"type": "text", "text": "Hello there, nice to meet!"}], "stop_reason": "end_turn",
              "stop_sequence": None, "usage": A_USAGE}  # fmt: skip


def _anthropic_sse(chunks: int) -> bytes:
    def ev(kind: str, data: dict[str, Any]) -> str:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n"

    start = {**_A_MESSAGE, "content": [], "stop_reason": None, "usage": {**A_USAGE, "output_tokens": 1}}
    parts = [ev("message_start", {"message": start}),
             ev("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})]  # fmt: skip
    parts += [ev("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": f"tok{i} "}})
              for i in range(chunks)]  # fmt: skip
    parts += [ev("content_block_stop", {"index": 0}),
              ev("message_delta", {"delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                   "usage": {"output_tokens": A_USAGE["output_tokens"]}}),
              ev("message_stop", {})]  # fmt: skip
    return "".join(parts).encode()


class AnthropicHandler:
    """MockTransport handler for the messages endpoint."""

    def __init__(self, chunks: int) -> None:
        self.http = http_module(anthropic)
        self.message = json.dumps(_A_MESSAGE).encode()
        self.sse = _anthropic_sse(chunks)
        limits = {"anthropic-ratelimit-requests-remaining": "99", "anthropic-ratelimit-tokens-remaining": "9999"}
        self.json_headers = {"content-type": "application/json", "request-id": "req_bench", **limits}
        self.sse_headers = {"content-type": "text/event-stream", "request-id": "req_bench", **limits}

    def __call__(self, request: Any) -> Any:
        if json.loads(request.content).get("stream"):
            return self.http.Response(200, headers=self.sse_headers, content=self.sse)
        return self.http.Response(200, headers=self.json_headers, content=self.message)


def anthropic_client(chunks: int) -> anthropic.Anthropic:
    handler = AnthropicHandler(chunks)
    http = handler.http.Client(transport=handler.http.MockTransport(handler))
    return anthropic.Anthropic(api_key="x", base_url=f"http://{HOST}:{PORT}", http_client=http, max_retries=0)


def anthropic_message(client: anthropic.Anthropic) -> Any:
    """One non-stream ``messages.create``."""
    return client.messages.create(model=A_MODEL, max_tokens=A_MAX_TOKENS, messages=A_MESSAGES)


def anthropic_stream(client: anthropic.Anthropic) -> None:
    """One ``messages.create(stream=True)``, iterated to the end."""
    for _ in client.messages.create(model=A_MODEL, max_tokens=A_MAX_TOKENS, messages=A_MESSAGES, stream=True):
        pass
