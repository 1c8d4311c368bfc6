"""How fast ``llm-otel ui`` answers on a big ledger: 1 million rows over 30 days by default.

    .venv/bin/python bench/ui_views.py [--rows 1000000] [--ledger PATH] [--repeat 3]

Fills a ledger with a synthetic history (``llm_otel.demo.history``: 5 models, 4 jobs, 5 tenants, streams,
throttled and failed calls, spread over 30 days; written with the ledger's own schema, not through SDK calls,
so a million rows take about a minute), then starts the real ``llm-otel ui`` server in this process and times over HTTP:

- the first read of the ledger (cold), and an incremental refresh after 1,000 more rows;
- one ``/api/report`` request per range and filter the page offers; the page's views all come from that one
  answer. Best and worst of ``--repeat`` requests.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from llm_otel.demo.history import fill
from llm_otel.ui.server import LedgerView, UiServer, wait_loaded


def get(url: str) -> tuple[float, dict]:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as r:
        body = json.loads(r.read())
    return time.perf_counter() - start, body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--ledger", default=None, help="reuse (or create) this ledger file")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    path = Path(args.ledger) if args.ledger else Path(tempfile.mkdtemp(prefix="llm-otel-ui-bench-")) / "ledger.db"
    if not path.exists():
        start = time.perf_counter()
        fill(path, args.rows)
        print(f"filled {path} with {args.rows:,} rows in {time.perf_counter() - start:.0f} s")
    view = LedgerView(path, lambda: {"source": None, "entries": [], "note": "no budgets (bench)"}, None)
    server = UiServer(0, view)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    start = time.perf_counter()
    view.start()
    wait_loaded(view, timeout=600)
    cold = time.perf_counter() - start
    print(f"first read: {view.source.rows:,} rows in {cold:.1f} s ({view.state}); "
          f"max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")  # fmt: skip
    queries = [("1h", "range=1h"), ("24h", "range=24h"), ("7d", "range=7d"), ("30d", "range=30d"),
               ("all", "range=all"), ("30d, tenant=acme", "range=30d&f.tenant=acme"),
               ("7d, by job, stacked by tenant", "range=7d&group_by=job&stack_by=tenant"),
               ("30d, model=gpt-4o, tenant=acme,hooli", "range=30d&f.model=gpt-4o&f.tenant=acme,hooli")]  # fmt: skip
    print(f"\n{'query':<40} {'calls':>10} {'best s':>8} {'worst s':>8}")
    worst_all = 0.0
    for name, qs in queries:
        times, body = [], {}
        for _ in range(args.repeat):
            took, body = get(f"{server.url}api/report?{qs}")
            times.append(took)
        worst_all = max(worst_all, max(times))
        print(f"{name:<40} {body['totals']['calls']:>10,} {min(times):>8.3f} {max(times):>8.3f}")
    fill(path, 1000, days=0.01, seed=2)
    start = time.perf_counter()
    view.refresh()
    print(f"\nincremental refresh after 1,000 new rows: {time.perf_counter() - start:.3f} s "
          f"({view.source.rows:,} rows)")  # fmt: skip
    print(f"slowest answer: {worst_all:.3f} s ({'under' if worst_all < 1 else 'OVER'} 1 s)")
    server.shutdown()
    view.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
