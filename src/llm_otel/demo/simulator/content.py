"""Generated content: deterministic text pieces, JSON that fits a schema, embeddings."""

from __future__ import annotations

import json
import random
from typing import Any

__all__ = ["embedding", "json_from_schema", "split", "word_pieces"]

_VOCABULARY = (
    "the quick simulated model answers every prompt with a few short deterministic words "
    "so that tests can check spans metrics and logs without a network"
)
_WORDS = tuple(_VOCABULARY.split())
_FORMAT_SAMPLES = {
    "date-time": "2025-01-01T00:00:00Z",
    "date": "2025-01-01",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "email": "x@example.com",
    "uri": "http://example.com/",
    "url": "http://example.com/",
}


def split(text: str, n: int) -> list[str]:
    """Split text into n consecutive pieces (some may be empty if text is short)."""
    size = len(text)
    return [text[size * i // n : size * (i + 1) // n] for i in range(n)]


def word_pieces(rng: random.Random, n: int) -> list[str]:
    """n pieces of one to three words each; every piece after the first starts with a space."""
    pieces = []
    for i in range(n):
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 3)))
        pieces.append(words if i == 0 else " " + words)
    return pieces


def json_from_schema(schema: Any) -> str:
    """Compact JSON text of a small value that satisfies ``schema``."""
    return json.dumps(_sample(schema, schema), separators=(",", ":"))


def embedding(rng_seed: str, dims: int) -> list[float]:
    """A deterministic vector of ``dims`` floats in [-1, 1]."""
    rng = random.Random(rng_seed)
    return [round(rng.uniform(-1.0, 1.0), 6) for _ in range(dims)]


def _sample(schema: Any, root: Any, depth: int = 0) -> Any:
    """Build a small value that satisfies a (simple) JSON schema."""
    if depth > 10 or not isinstance(schema, dict):
        return "x"
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return _sample(target, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "any_of", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            non_null = [o for o in options if not (isinstance(o, dict) and o.get("type") in ("null", "NULL"))]
            return _sample((non_null or options)[0], root, depth + 1)
    kind = _kind(schema)
    if kind == "object":
        props = schema.get("properties") or {}
        return {name: _sample(sub, root, depth + 1) for name, sub in props.items()}
    if kind == "array":
        count = int(schema.get("minItems") or schema.get("min_items") or 0)
        return [_sample(schema.get("items"), root, depth + 1) for _ in range(count)]
    if kind == "integer":
        return max(1, int(schema.get("minimum", 1)))
    if kind == "number":
        return float(max(1.0, float(schema.get("minimum", 1.0))))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    fmt = schema.get("format")
    return _FORMAT_SAMPLES.get(fmt, "x") if isinstance(fmt, str) else "x"


def _kind(schema: dict[str, Any]) -> str | None:
    """The schema's type in lower case (the first non-null one), guessed from its keys when absent."""
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if str(k).lower() != "null"]
        kind = kinds[0] if kinds else "null"
    if kind is not None:
        return str(kind).lower()
    if "properties" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return None
