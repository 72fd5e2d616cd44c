"""A tiny webhook receiver that records what it gets, for the demo and the tests: in-process on
loopback, or as its own process (`python -m imageq.devenv.webhook_receiver --host H --port P`),
which serves its counts at `GET /_receiver/counts` for a test that cannot read its memory."""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

COUNTS_PATH: Final = "/_receiver/counts"


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    client: str = ""  # the sender's address
    at: float = 0.0  # when it arrived (epoch seconds)


class WebhookReceiver:
    """Records every POST; answers `status_for(path, nth)` (200 by default)."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
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
                    received = Received(
                        self.path, headers, body, status, self.client_address[0], time.time()
                    )
                    receiver.received.append(received)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                if self.path != COUNTS_PATH:
                    self.send_error(404)
                    return
                body = json.dumps(receiver.counts()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
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

    def counts(self) -> dict[str, Any]:
        """What `GET /_receiver/counts` serves: deliveries answered 2xx by the address that
        sent them, and by webhook-id each one's sender and arrival time, in order."""
        by_client: dict[str, int] = {}
        by_id: dict[str, list[dict[str, Any]]] = {}
        with self._lock:
            for request in self.received:
                if 200 <= request.status < 300:
                    by_client[request.client] = by_client.get(request.client, 0) + 1
                    key = request.headers.get("webhook-id", "")
                    by_id.setdefault(key, []).append({"client": request.client, "at": request.at})
        return {"accepted_by_client": by_client, "accepted_by_id": by_id}

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def main(argv: Sequence[str] | None = None) -> None:
    """Serve until SIGTERM or SIGINT; print one line, `webhook receiver listening on URL`, once
    it accepts connections."""
    parser = argparse.ArgumentParser(prog="python -m imageq.devenv.webhook_receiver")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with WebhookReceiver(host=args.host, port=args.port) as receiver:
        print(f"webhook receiver listening on {receiver.base_url}", flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
