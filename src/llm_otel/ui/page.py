"""The page's files, and the page as one self-contained HTML file (``llm-otel report --format html``)."""

from __future__ import annotations

import json
import os
from importlib import resources
from typing import Any

ASSETS = ("index.html", "app.js", "app.css", "chart.umd.min.js", "chart.js.LICENSE.md")
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".md": "text/plain"}
_DATA_TAG = '<script id="report-data" type="application/json">null</script>'
_INLINED = {
    '<link rel="stylesheet" href="assets/app.css">': ("style", "app.css"),
    '<script src="assets/chart.umd.min.js"></script>': ("script", "chart.umd.min.js"),
    '<script src="assets/app.js"></script>': ("script", "app.js"),
}


def asset(name: str) -> tuple[bytes, str] | None:
    """A packaged asset's bytes and content type, or None for any other name."""
    if name not in ASSETS:
        return None
    data = resources.files(__package__).joinpath("assets", name).read_bytes()
    kind = _TYPES[os.path.splitext(name)[1]]
    return data, f"{kind}; charset=utf-8"


def trace_url(given: str | None = None) -> str | None:
    """The trace UI link template (``{trace_id}`` in it): ``--trace-url``, else ``LLM_OTEL_TRACE_URL``."""
    url = given or os.environ.get("LLM_OTEL_TRACE_URL") or None
    return url if url and "{trace_id}" in url else None


def with_page_fields(report: dict[str, Any], state: str, message: str | None, rows: int, trace: str | None
                     ) -> dict[str, Any]:  # fmt: skip
    """The report plus what only the page needs: the ledger's state and the trace link template."""
    return {**report, "status": {"state": state, "message": message, "rows": rows}, "config": {"trace_url": trace}}


def render_report(report: dict[str, Any], trace: str | None = None) -> str:
    """The page with its script, styles, chart library and this report inlined: opens with no server."""
    html = _text("index.html")
    for tag, (element, name) in _INLINED.items():
        body = _text(name)
        if element == "script":
            body = body.replace("</script", "<\\/script")
        html = html.replace(tag, f"<{element}>\n{body}\n</{element}>")
    state = "ok" if report.get("totals", {}).get("calls") else "empty"
    data = with_page_fields(report, state, None, report.get("totals", {}).get("calls", 0), trace_url(trace))
    embedded = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return html.replace(_DATA_TAG, f'<script id="report-data" type="application/json">{embedded}</script>')


def _text(name: str) -> str:
    return resources.files(__package__).joinpath("assets", name).read_text(encoding="utf-8")
