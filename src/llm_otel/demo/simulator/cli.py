"""Command line: run the simulated provider in the foreground."""

from __future__ import annotations

import argparse
import os
import signal
import threading
from typing import Any

from .scenario import SCENARIO_HELP
from .server import SimulatedProvider

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the simulated provider in the foreground until --max-seconds or a signal."""
    parser = argparse.ArgumentParser(
        prog="python -m llm_otel.demo.simulated_provider",
        description="Serve simulated LLM provider APIs on 127.0.0.1.",
        epilog=SCENARIO_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind (default 0: pick a free one)")
    parser.add_argument("--port-file", help="write the bound port number to this file")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="stop after this long (default 600)")
    parser.add_argument("--seed", type=int, default=0, help="seed for generated text and embeddings")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added before every response")
    args = parser.parse_args(argv)

    done = threading.Event()

    def _on_signal(signum: int, frame: Any) -> None:
        done.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)

    provider = SimulatedProvider(args.host, args.port, seed=args.seed, latency=args.latency).start()
    try:
        if args.port_file:
            tmp = f"{args.port_file}.tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(f"{provider.port}\n")
            os.replace(tmp, args.port_file)
        print(provider.base_url, flush=True)
        done.wait(args.max_seconds)
    finally:
        provider.stop()
    return 0
