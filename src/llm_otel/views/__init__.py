"""Views over the local ledger: what ``llm-otel report`` prints and what ``llm-otel ui`` shows.

``LedgerSource`` reads the ledger (read-only) into hourly cells; ``build(source, Query(...))`` gives the report
for a time range and filters. Only ``build``'s dict reaches a page, so a page and the JSON report agree.
"""

from .build import Query, build, step_for
from .source import LedgerSource, LedgerUnavailable

__all__ = ["LedgerSource", "LedgerUnavailable", "Query", "build", "step_for"]
