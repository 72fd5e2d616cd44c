"""A tiny webhook receiver on loopback that records what it gets, for the demo and the tests."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int


class WebhookReceiver:
    """Records every POST; answers `status_for(path, nth)` (200 by default)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self.fail_first: dict[str, int] = {}
        # While set, every request is answered 503, as by a receiver that is down.
        self.down = False
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._lock:
                    seen = 1 + sum(1 for r in receiver.received if r.path == self.path)
                    status = 500 if seen <= receiver.fail_first.get(self.path, 0) else 200
                    if receiver.down:
                        status = 503
                    receiver.received.append(Received(self.path, headers, body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def for_path(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == path]

    def accepted(self) -> dict[str, int]:
        """webhook-id -> how many deliveries of it were answered 2xx."""
        counts: dict[str, int] = {}
        with self._lock:
            for request in self.received:
                if 200 <= request.status < 300:
                    key = request.headers.get("webhook-id", "")
                    counts[key] = counts.get(key, 0) + 1
        return counts

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
