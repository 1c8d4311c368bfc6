"""``llm-otel ui``: serve the local page until Ctrl-C (or SIGTERM)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from typing import Any

from ..ui.server import LedgerView, UiServer, wait_loaded


def serve(args: argparse.Namespace) -> int:
    from ..ui.page import trace_url
    from . import CliError, ledger_path
    from .budget import snapshot
    from .report import ReportError

    try:
        ledger = ledger_path(args)
    except ReportError as exc:
        raise CliError(str(exc)) from None
    view = LedgerView(ledger, lambda: snapshot(args), trace_url(args.trace_url))
    try:
        server = UiServer(args.port, view)
    except OSError as exc:
        raise CliError(f"cannot listen on 127.0.0.1:{args.port} ({exc.strerror or exc}): pass --port N "
                       f"(0 picks a free one)") from None  # fmt: skip
    started = time.monotonic()
    view.start()
    print(f"llm-otel ui: {server.url}  (ledger {ledger}; read-only; Ctrl-C to stop)", flush=True)
    threading.Thread(target=_say_when_read, args=(view, started), daemon=True).start()
    signal.signal(signal.SIGTERM, _interrupt)
    if args.open:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve_forever(poll_interval=0.25)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        view.stop()
    return 0


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


def _say_when_read(view: LedgerView, started: float) -> None:
    """One line once the ledger is read, or why it cannot be (the page says the same)."""
    wait_loaded(view, timeout=3600)
    if view.state == "error":
        print(f"llm-otel ui: {view.message} (the page says so too; retrying every few seconds)", file=sys.stderr,
              flush=True)  # fmt: skip
    else:
        print(f"llm-otel ui: read {view.source.rows:,} calls in {time.monotonic() - started:.1f} s", flush=True)
