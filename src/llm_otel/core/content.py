"""Prompt and completion content in the conventions' message schema, read only when content capture is on.

- ``gen_ai.input.messages``: ``[{"role", "parts": [...], "name"?}]``
- ``gen_ai.system_instructions``: ``[part, ...]``
- ``gen_ai.tool.definitions``: ``[{"type": "function", "name", "description"?, "parameters"?}]``
- ``gen_ai.output.messages``: ``[{"role": "assistant", "parts": [...], "finish_reason"}]``

Parts: ``{"type": "text", "content"}``, ``{"type": "tool_call", "id", "name", "arguments"}``,
``{"type": "tool_call_response", "id", "response"}``; anything else (images, audio, documents) is kept as
``{"type": <the provider's type>}`` without its data. One reader per wire format; each accepts dicts and SDK
objects alike. Only the message, system and tool fields of a request are read: never headers, client
options or credentials.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from .usage import field

#: The conventions' content-capturing modes (``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``).
NO_CONTENT, SPAN_ONLY, EVENT_ONLY, SPAN_AND_EVENT = "no_content", "span_only", "event_only", "span_and_event"
MODES = (NO_CONTENT, SPAN_ONLY, EVENT_ONLY, SPAN_AND_EVENT)
Part = dict[str, Any]
Message = dict[str, Any]


class Content(NamedTuple):
    """A request's content in the conventions' schema (None where the request has none)."""

    input: list[Message] | None = None
    system: list[Part] | None = None
    tools: list[dict[str, Any]] | None = None


def text(value: Any) -> Part:
    return {"type": "text", "content": value}


def tool_call(call_id: Any, name: Any, arguments: Any) -> Part:
    return {"type": "tool_call", "id": call_id, "name": name, "arguments": arguments}


def tool_response(call_id: Any, response: Any) -> Part:
    return {"type": "tool_call_response", "id": call_id, "response": _plain(response)}


def _json(value: Any) -> Any:
    """Tool arguments arrive as JSON text from most providers: parsed when they parse."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return _plain(value)


def _plain(value: Any) -> Any:
    """A JSON-ready copy of an SDK object (pydantic models, dicts, lists, scalars)."""
    dump = getattr(value, "model_dump", None)
    if dump is not None:
        return dump(mode="json", exclude_none=True)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def _role(value: Any) -> str:
    role = str(getattr(value, "value", value) or "user").lower()
    return {"developer": "system", "model": "assistant", "chatbot": "assistant"}.get(role, role)


# --- OpenAI-style chat (OpenAI, Groq, Mistral, Cohere v2, Ollama, LiteLLM) -------------------------------------
def chat_parts(content: Any) -> list[Part]:
    """A message's content: a string, or a list of typed parts (``text`` / ``input_text`` / ... and others)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [text(content)]
    if not isinstance(content, (list, tuple)):
        return [{"type": str(field(content, "type") or type(content).__name__)}]
    parts: list[Part] = []
    for item in content:
        if isinstance(item, str):
            parts.append(text(item))
            continue
        value = field(item, "text")
        kind = str(field(item, "type") or "text")
        parts.append(text(value) if isinstance(value, str) else {"type": kind})
    return parts


def _tool_call(call: Any) -> Part:
    function = field(call, "function") or call
    return tool_call(field(call, "id"), field(function, "name"), _json(field(function, "arguments")))


def chat_messages(messages: Any) -> list[Message] | None:
    """OpenAI chat messages (and their look-alikes): roles, text, tool calls and tool results."""
    if not isinstance(messages, (list, tuple)):
        return None
    out: list[Message] = []
    for m in messages:
        role = _role(field(m, "role"))
        if role == "tool":
            parts = [tool_response(field(m, "tool_call_id"), field(m, "content"))]
        else:
            parts = chat_parts(field(m, "content"))
            parts += [_tool_call(c) for c in field(m, "tool_calls") or ()]
        message: Message = {"role": role, "parts": parts}
        if isinstance(field(m, "name"), str):
            message["name"] = field(m, "name")
        out.append(message)
    return out


def function_tools(tools: Any) -> list[dict[str, Any]] | None:
    """Tool definitions: OpenAI chat (``{type, function: {...}}``), Responses and Anthropic (flat, with
    ``parameters`` or ``input_schema``); other tool types (web search ...) keep their type."""
    if not isinstance(tools, (list, tuple)) or not tools:
        return None
    out = []
    for tool in tools:
        spec = field(tool, "function") or tool
        name = field(spec, "name")
        if name is None:
            out.append({"type": str(field(tool, "type") or "unknown")})
            continue
        definition = {"type": "function", "name": name}
        if field(spec, "description"):
            definition["description"] = field(spec, "description")
        schema = field(spec, "parameters") or field(spec, "input_schema")
        if schema is not None:
            definition["parameters"] = _plain(schema)
        out.append(definition)
    return out


def chat(params: Any) -> Content:
    """An OpenAI-style chat request (``messages``, ``tools``)."""
    return Content(chat_messages(field(params, "messages")), None, function_tools(field(params, "tools")))


def prompt(params: Any, key: str = "prompt", system_key: str | None = None) -> Content:
    """A text-completion request: the prompt as one user message (a list of prompts, one each)."""
    value = field(params, key)
    prompts = value if isinstance(value, list) else [value] if value is not None else []
    system = field(params, system_key) if system_key else None
    return Content(
        [{"role": "user", "parts": [text(_plain(p))]} for p in prompts] or None,
        [text(system)] if isinstance(system, str) else None,
    )


# --- OpenAI Responses -------------------------------------------------------------------------------------------
def responses(params: Any) -> Content:
    """``input`` (a string or items), ``instructions`` and ``tools``."""
    items = field(params, "input")
    messages: list[Message] = []
    for item in [items] if isinstance(items, str) else items or ():
        kind = "message" if isinstance(item, str) else field(item, "type") or "message"
        if kind == "message":
            role = "user" if isinstance(item, str) else _role(field(item, "role"))
            messages.append(
                {
                    "role": role,
                    "parts": chat_parts(item if isinstance(item, str) else field(item, "content")),
                }
            )
        elif kind == "function_call":
            call = tool_call(field(item, "call_id"), field(item, "name"), _json(field(item, "arguments")))
            messages.append({"role": "assistant", "parts": [call]})
        elif kind == "function_call_output":
            messages.append({"role": "tool", "parts": [tool_response(field(item, "call_id"), field(item, "output"))]})
        else:
            messages.append({"role": "user", "parts": [{"type": str(kind)}]})
    instructions = field(params, "instructions")
    return Content(
        messages or None,
        [text(instructions)] if isinstance(instructions, str) else None,
        function_tools(field(params, "tools")),
    )


# --- Anthropic --------------------------------------------------------------------------------------------------
def _anthropic_parts(content: Any) -> list[Part]:
    if isinstance(content, str):
        return [text(content)]
    parts: list[Part] = []
    for block in content or ():
        kind = field(block, "type")
        if kind == "text":
            parts.append(text(field(block, "text")))
        elif kind == "tool_use":
            parts.append(tool_call(field(block, "id"), field(block, "name"), _plain(field(block, "input"))))
        elif kind == "tool_result":
            parts.append(tool_response(field(block, "tool_use_id"), field(block, "content")))
        else:
            parts.append({"type": str(kind)})
    return parts


def anthropic(params: Any) -> Content:
    """``messages`` (content strings or blocks), ``system`` and ``tools``."""
    messages = field(params, "messages")
    system = field(params, "system")
    return Content(
        [{"role": _role(field(m, "role")), "parts": _anthropic_parts(field(m, "content"))} for m in messages]
        if isinstance(messages, (list, tuple))
        else None,
        _anthropic_parts(system) if system else None,
        function_tools(field(params, "tools")),
    )


# --- Google GenAI -----------------------------------------------------------------------------------------------
def _gemini_parts(content: Any) -> list[Part]:
    if isinstance(content, str):
        return [text(content)]
    raw = field(content, "parts")
    parts: list[Part] = []
    for part in raw if raw is not None else [content]:
        if isinstance(part, str) or isinstance(field(part, "text"), str):
            parts.append(text(part if isinstance(part, str) else field(part, "text")))
        elif field(part, "function_call") is not None:
            call = field(part, "function_call")
            parts.append(tool_call(field(call, "id"), field(call, "name"), _plain(field(call, "args"))))
        elif field(part, "function_response") is not None:
            resp = field(part, "function_response")
            parts.append(tool_response(field(resp, "id"), field(resp, "response")))
        else:
            parts.append({"type": "blob" if field(part, "inline_data") is not None else "unknown"})
    return parts


def gemini(params: Any) -> Content:
    """``contents`` (a string, parts or Content objects), ``config.system_instruction`` and ``config.tools``."""
    contents = field(params, "contents")
    items = contents if isinstance(contents, list) else [contents] if contents is not None else []
    messages = [{"role": _role(field(c, "role")), "parts": _gemini_parts(c)} for c in items]
    config = field(params, "config")
    system = field(config, "system_instruction")
    tools = [f for t in field(config, "tools") or () for f in field(t, "function_declarations") or ()]
    return Content(messages or None, _gemini_parts(system) if system is not None else None, function_tools(tools))


# --- Bedrock Converse -------------------------------------------------------------------------------------------
def _converse_parts(blocks: Any) -> list[Part]:
    parts: list[Part] = []
    for block in blocks or ():
        if not isinstance(block, dict):
            continue
        if "text" in block:
            parts.append(text(block["text"]))
        elif "toolUse" in block:
            use = block["toolUse"]
            parts.append(tool_call(use.get("toolUseId"), use.get("name"), _plain(use.get("input"))))
        elif "toolResult" in block:
            parts.append(tool_response(block["toolResult"].get("toolUseId"), block["toolResult"].get("content")))
        else:
            parts.append({"type": next(iter(block), "unknown")})
    return parts


def converse(params: Any) -> Content:
    """Converse ``messages``, ``system`` blocks and ``toolConfig.tools[].toolSpec``."""
    messages = params.get("messages") if isinstance(params, dict) else None
    tools = [(t or {}).get("toolSpec") for t in ((params.get("toolConfig") or {}).get("tools") or ())]
    specs = [
        {
            "name": s.get("name"),
            "description": s.get("description"),
            "parameters": (s.get("inputSchema") or {}).get("json"),
        }
        for s in tools
        if s
    ]
    return Content(
        [{"role": _role(m.get("role")), "parts": _converse_parts(m.get("content"))} for m in messages or ()] or None,
        _converse_parts(params.get("system")) or None,
        function_tools(specs),
    )


# --- Cohere v1 --------------------------------------------------------------------------------------------------
def cohere_v1(params: Any) -> Content:
    """``chat_history`` + ``message``, ``preamble``, ``tools`` (v1 chat)."""
    history = [
        {"role": _role(field(m, "role")), "parts": [text(field(m, "message"))]}
        for m in field(params, "chat_history") or ()
    ]
    if field(params, "message") is not None:
        history.append({"role": "user", "parts": [text(field(params, "message"))]})
    preamble = field(params, "preamble")
    tools = [{"name": field(t, "name"), "description": field(t, "description")} for t in field(params, "tools") or ()]
    return Content(history or None, [text(preamble)] if preamble else None, function_tools(tools))


# --- the output -------------------------------------------------------------------------------------------------
def output_messages(output_text: str, finish_reasons: tuple[str, ...] | None) -> list[Message]:
    """The completion as one assistant message (its finish reason when the provider reported one)."""
    message: Message = {"role": "assistant", "parts": [text(output_text)]}
    if finish_reasons:
        message["finish_reason"] = finish_reasons[0]
    return [message]


def mode_of(value: Any) -> str | None:
    """A capture setting as one of ``MODES``: booleans and true/false words as the conventions' legacy
    switch (on: span_only), mode names in any case; None when it is none of these."""
    if isinstance(value, bool):
        return SPAN_ONLY if value else NO_CONTENT
    word = str(value).strip().lower()
    if word in MODES:
        return word
    if word in ("true", "1", "yes", "on"):
        return SPAN_ONLY
    return NO_CONTENT if word in ("false", "0", "no", "off", "") else None
