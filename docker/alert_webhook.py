"""A webhook receiver for Alertmanager that prints every notification (the `alert-webhook` service).

Alertmanager (prometheus/alertmanager.yml) posts to /critical, /warning, /info or /default depending on
the alert's severity; `docker compose logs -f alert-webhook` shows what would have paged, posted or
ticketed. Standard library only; listens on 0.0.0.0:8080 inside the compose network.
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            payload = json.loads(body)
        except ValueError:
            payload = {"raw": body.decode("utf-8", "replace")}
        route = self.path.strip("/") or "default"
        for alert in payload.get("alerts", []):
            labels = alert.get("labels", {})
            summary = alert.get("annotations", {}).get("summary", "")
            print(f"[{route}] {alert.get('status', '?').upper()} {labels.get('alertname', '?')} {labels} {summary}")
        sys.stdout.flush()
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # health check
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    print("alert-webhook listening on :8080", flush=True)
    ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
