"""HTTP clients for webhooks, compared: CPU per signed webhook POST through the address guard.

Each row sends the same signed `WebhookRequest` to a receiver on loopback, through the guard
(every new connection resolved once and its address checked), without following redirects:

- `requests (until now)`: a guarded `requests.Session` per thread (`CheckedAdapter`), the
  POST sent with `stream=True` and closed unread, as `WebhookSender` did until now; closing an
  unread response closes its connection, so every webhook opened a new one;
- `urllib3 guarded PoolManager (imageq now)`: `WebhookSender` now, one `OutboundClient`
  shared by the threads; the answer closed unread, its connection with it, as before;
- `urllib3 guarded PoolManager, connection kept (not adopted)`: the same client, a small
  answer read and its connection kept for the next webhook to that receiver.

    python -m bench.hook_clients [--calls 2000] [--reps 3]   # about 1 min

Talks only to a receiver it starts on loopback, in its own process (an aiohttp server
answering 200 with an empty body). CPU is this thread's (`time.thread_time`). The clients run
interleaved, in a rotated order, in each repetition; each figure is the median over
repetitions with min to max, and each ratio to `requests` comes from the pairs of one
repetition.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import requests
import urllib3
from aiohttp import web
from requests.adapters import HTTPAdapter

from imageq.simulator.server import base_url_of, bind, start_runner
from imageq.worker.errors import UnsafeTarget
from imageq.worker.upstream.responses import parse_retry_after
from imageq.worker.webhooks.addresses import TargetPolicy
from imageq.worker.webhooks.connecting import CheckedPoolManager
from imageq.worker.webhooks.guard import target_host
from imageq.worker.webhooks.outbound import OutboundClient
from imageq.worker.webhooks.sending import DeliveryAttempt, WebhookSender
from imageq.worker.webhooks.signing import WebhookRequest, build_webhook

BASELINE: Final = "requests (until now)"
POLICY: Final = TargetPolicy(allow_loopback=True)
SECRET: Final = "whsec_YmVuY2gtaG9vay1jbGllbnRzLXNlY3JldC0wMTIz"  # noqa: S105 -- made up
USER_AGENT: Final = "imageq-bench"
TIMEOUT_S: Final = 5.0


# --- the path until now: requests sessions with the checked adapter ----------------------------


class CheckedAdapter(HTTPAdapter):
    """The requests adapter webhooks went through until now: every connection checked."""

    def __init__(self, policy: TargetPolicy) -> None:
        self._policy = policy
        super().__init__()

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        self.poolmanager = CheckedPoolManager(
            self._policy, num_pools=connections, maxsize=maxsize, block=block, **pool_kwargs
        )

    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        target_host(request.url or "", field="URL")
        return super().send(request, *args, **kwargs)


class RequestsSender:
    """`WebhookSender.send` as it was: a guarded session per thread, the answer never read."""

    def __init__(self, policy: TargetPolicy) -> None:
        self._policy = policy
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False
            session.headers["User-Agent"] = USER_AGENT
            adapter = CheckedAdapter(self._policy)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            self._local.session = session
        return session

    def send(self, request: WebhookRequest) -> DeliveryAttempt:
        started, clock = time.time(), time.perf_counter()
        try:
            with self._session().post(
                request.url,
                data=request.body.encode(),
                headers=dict(request.headers),
                timeout=TIMEOUT_S,
                allow_redirects=False,
                stream=True,
            ) as response:
                pass
        except UnsafeTarget as error:
            return DeliveryAttempt(started, time.perf_counter() - clock, error=str(error))
        except requests.RequestException as error:
            return DeliveryAttempt(started, time.perf_counter() - clock, error=type(error).__name__)
        return DeliveryAttempt(
            at=started,
            duration_s=time.perf_counter() - clock,
            http_status=response.status_code,
            retry_after_s=parse_retry_after(response.headers.get("Retry-After")),
        )

    def close(self) -> None:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is not None:
            session.close()


class KeepingSender(WebhookSender):
    """Not adopted, for comparison: the answer's body read when it is small and the
    connection kept for the next webhook to that receiver."""

    def __init__(self, client: OutboundClient) -> None:
        super().__init__(client, timeout_s=TIMEOUT_S)
        self._client_kept = client
        self._timeout_kept = urllib3.Timeout(connect=TIMEOUT_S, read=TIMEOUT_S)

    def send(self, request: WebhookRequest) -> DeliveryAttempt:
        started, clock = time.time(), time.perf_counter()
        response = self._client_kept.request(
            "POST",
            request.url,
            body=request.body.encode(),
            headers=request.headers,
            timeout=self._timeout_kept,
        )
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) <= 1024:
            response.read()
            response.release_conn()
        else:
            response.close()
            response.release_conn()
        return DeliveryAttempt(
            at=started,
            duration_s=time.perf_counter() - clock,
            http_status=response.status,
            retry_after_s=parse_retry_after(response.headers.get("Retry-After")),
        )


def senders() -> tuple[dict[str, Any], list[Any]]:
    """The senders by name, and what to close after."""
    baseline = RequestsSender(POLICY)
    closing, keeping = (OutboundClient(POLICY, user_agent=USER_AGENT) for _ in range(2))
    named = {
        BASELINE: baseline,
        "urllib3 guarded PoolManager (imageq now)": WebhookSender(closing, timeout_s=TIMEOUT_S),
        "urllib3 guarded PoolManager, connection kept (not adopted)": KeepingSender(keeping),
    }
    return named, [baseline, closing, keeping]


# --- the receiver, in its own process -----------------------------------------------------------


async def _serve() -> None:
    async def receive(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=200)

    sock = bind("127.0.0.1", 0)
    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = await start_runner(app, sock)
    print(f"{base_url_of(sock)}/hook", flush=True)
    # Serve until the parent closes our stdin.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


class Receiver:
    """`with Receiver() as url:` a receiver process answering 200 to POST `url`."""

    def __enter__(self) -> str:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.hook_clients", "--receiver"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        url = self._process.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            self._process.kill()
            raise RuntimeError(f"the receiver did not start (said {url!r})")
        return url

    def __exit__(self, *exc: object) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)


# --- measuring ---------------------------------------------------------------------------------


def cpu_us_per_call(
    send: Callable[[WebhookRequest], DeliveryAttempt], request: WebhookRequest, calls: int
) -> float:
    """This thread's CPU per send, in microseconds, over `calls` sends; every one delivered."""
    before = time.thread_time()
    for _ in range(calls):
        attempt = send(request)
        if not attempt.delivered:
            raise RuntimeError(f"a webhook was not delivered: {attempt}")
    return (time.thread_time() - before) / calls * 1e6


def measure(calls: int, reps: int) -> dict[str, Any]:
    loadavg = [os.getloadavg()[0]]
    runs: dict[str, list[float]] = {}
    with Receiver() as url:
        request = build_webhook(
            url,
            {"job_id": "bench", "status": "completed", "outputs": [{"url": "http://x/0.png"}]},
            job_id="bench",
            secrets=[SECRET],
            now=datetime.now(UTC),
        )
        named, closers = senders()
        for sender in named.values():  # warm up: imports, pools, caches
            cpu_us_per_call(sender.send, request, 20)
        order = list(named)
        for rep in range(reps):
            for name in order[rep % len(order) :] + order[: rep % len(order)]:
                sender = named[name]
                runs.setdefault(name, []).append(cpu_us_per_call(sender.send, request, calls))
            loadavg.append(os.getloadavg()[0])
        for closer in closers:
            closer.close()
    return {"calls": calls, "reps": reps, "loadavg": [round(x, 2) for x in loadavg], "runs": runs}


def render(results: Mapping[str, Any]) -> str:
    runs: dict[str, list[float]] = results["runs"]
    lines = [
        f"python -m bench.hook_clients --calls {results['calls']} --reps {results['reps']}:"
        " CPU µs per signed webhook POST through the address guard, one thread, a receiver"
        " on loopback answering 200 at once.",
        f"1-minute load average before and after each repetition: {results['loadavg']}",
        "",
        "| HTTP layer under WebhookSender | µs per webhook (min to max)"
        " | x requests (min to max) |",
        "|---|---:|---:|",
    ]
    for name, values in runs.items():
        ratios = [a / b for a, b in zip(values, runs[BASELINE], strict=True)]
        lines.append(
            f"| {name} | {statistics.median(values):.0f} ({min(values):.0f} to"
            f" {max(values):.0f}) | {statistics.median(ratios):.2f} ({min(ratios):.2f} to"
            f" {max(ratios):.2f}) |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="webhooks per client and rep")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--receiver", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receiver:
        asyncio.run(_serve())
        return
    print(render(measure(args.calls, args.reps)))


if __name__ == "__main__":
    main()
