"""The webhook receiver of `make compose-check`'s stack: a service on the compose network
that answers every POST 200 and lists what it got at `GET /received` (path, `webhook-id`).

Run inside a container as `python -m imageq.devenv.compose_check.receiver PORT`; the check
reads the list with `docker-compose exec`, so nothing of it is published on the host.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def serve(port: int) -> None:
    """Serve on every interface of the container until killed."""
    received: list[dict[str, str]] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                received.append(
                    {"path": self.path, "webhook_id": self.headers.get("webhook-id", "")}
                )
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            with lock:
                body = json.dumps(received).encode()
            self.send_response(200 if self.path == "/received" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()  # noqa: S104 (in its container)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
