"""Ledger rows hold what the call had: its values, and SQL NULL (not a number, not a string) where a value is
unknown, in both statement shapes the writer uses (a multi-row INSERT and single rows)."""

from __future__ import annotations

import sqlite3
from typing import Any

import openai

import llm_otel
from llm_otel.sinks.ledger import COLUMNS, ROWS_PER_STATEMENT

MSG = [{"role": "user", "content": "hello"}]


def test_unknown_values_are_sql_null_and_known_ones_are_kept(sim: Any, capture: Any) -> None:
    client = openai.OpenAI(base_url=sim.openai_base_url, api_key="x")
    calls = ROWS_PER_STATEMENT + 3  # one full multi-row statement and three single rows in one write
    with llm_otel.context(tenant="acme"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    for _ in range(calls - 1):
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    llm_otel.flush()
    conn = sqlite3.connect(capture.ledger_path)
    types = conn.execute(f"SELECT {', '.join(f'typeof({c})' for c in COLUMNS)} FROM calls ORDER BY id").fetchall()
    conn.close()
    assert len(types) == calls
    for row in types:
        kinds = dict(zip(COLUMNS, row, strict=True))
        # A plain chat call has no time to first chunk, error, stream end or burst rate.
        for column in ("ttfc_s", "error_type", "stream_end", "burst_tokens_per_second", "job"):
            assert kinds[column] == "null", (column, kinds[column])
        assert kinds["input_tokens"] == kinds["output_tokens"] == "integer"
        assert kinds["duration_s"] == "real" and kinds["provider"] == kinds["trace_id"] == "text"
    assert types[0][COLUMNS.index("tenant")] == "text" and {r[COLUMNS.index("tenant")] for r in types[1:]} == {"null"}
    rows = capture.ledger_rows()
    spans = capture.spans()
    assert [r["input_tokens"] for r in rows] == [s.attributes["gen_ai.usage.input_tokens"] for s in spans]
    assert rows[0]["tenant"] == "acme" and rows[1]["tenant"] is None and rows[-1]["ttfc_s"] is None
