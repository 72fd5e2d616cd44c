"""A webhook receiver that checks imageq's signatures, on the standard library alone.

    python examples/signed_webhook_receiver.py --port 8808

It listens on 127.0.0.1, takes the secrets from `IMAGEQ_WEBHOOK__SECRETS` (the same variable
the workers sign with), and answers each POST:

- 204 and `verified <webhook-id>: job <job id> <status>` for a good signature, first time;
- 204 and `already seen <webhook-id>` for a retry or replay of one it has (deduplication);
- 400 and `refused: <reason>` for a missing or wrong signature or a stale timestamp.

Copy it as a starting point: store the payload where `verified` is printed.
"""

from __future__ import annotations

import argparse
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from imageq import verify_webhook
from imageq.config import get_settings
from imageq.worker.errors import WebhookVerificationFailed


def serve(port: int, secrets: list[str]) -> None:
    """Serve on 127.0.0.1:`port` until interrupted."""
    seen: set[str] = set()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            try:
                payload = verify_webhook(body, dict(self.headers.items()), secrets)
            except WebhookVerificationFailed as error:
                self._answer(400, f"refused: {error}")
                return
            message_id = self.headers["webhook-id"]
            with lock:
                first = message_id not in seen
                seen.add(message_id)
            if first:
                self._answer(
                    204, f"verified {message_id}: job {payload['job_id']} {payload['status']}"
                )
            else:
                self._answer(204, f"already seen {message_id}")

        def _answer(self, status: int, line: str) -> None:
            print(line, flush=True)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass  # one line per webhook, printed above, is enough

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"webhook receiver listening on http://127.0.0.1:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8808, help="port on 127.0.0.1 (default 8808)")
    port = parser.parse_args().port
    secrets = [secret.get_secret_value() for secret in get_settings().webhook.secrets]
    if not secrets:
        parser.error("IMAGEQ_WEBHOOK__SECRETS is not set: give it the workers' signing secret(s)")
    serve(port, secrets)


if __name__ == "__main__":
    main()
