"""HTTP clients for the API, compared: CPU per `get_task` and per `submit` through `ApiClient`.

Each row is the same `ApiClient` (same paths, headers, JSON, parsing, metrics) over another
HTTP layer, so the rows differ by the HTTP layer alone:

- `requests` (the first client): a `requests.Session` per thread with the adapter, proxies
  and headers it had (its `_request` as it was, error branches shortened);
- `urllib3 PoolManager`: one manager, each call by its full URL;
- `urllib3 HTTPConnectionPool`: one pool for the base URL's host (imageq's POSTs);
- `libcurl GET + urllib3 POST` (imageq's client now): GETs through pycurl handles;
- `http.client`: one kept stdlib connection, not thread-safe, no pool: a floor for reference.

    python -m bench.http_clients [--calls 2000] [--reps 3] [--threads 16]   # about 1 min

Talks only to a simulator it starts on loopback (answering at once, in its own process). CPU
is this thread's (`time.thread_time`) for one thread, and the process's for `get_task` from
`--threads` threads at once, as a poller's threads call it. The clients run interleaved, in a
rotated order, in each repetition; each figure is the median over repetitions with min to
max, and each client's ratio to `requests` comes from the pairs of the same repetition.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies

from imageq.config import ApiSettings
from imageq.simulator.server import SimulatorProcess
from imageq.simulator.sim_config import SimConfig
from imageq.worker.domain.params import validate_params
from imageq.worker.errors import ApiUnavailable, ApiUnreachable
from imageq.worker.metrics import API_RATE_LIMITED, count_api_request
from imageq.worker.upstream.client import ApiClient
from imageq.worker.upstream.responses import error_for_http
from imageq.worker.upstream.transport import NO_RETRIES, Answer, PoolTransport

API_KEY: Final = "sk-bench-http-0123456789"
BASELINE: Final = "requests (the first client)"
NOW: Final = "libcurl GET + urllib3 POST (imageq now)"
SINGLE_THREADED: Final = "http.client, one connection (reference)"
CALLS: Final = ("get_task", "get_task, threads", "submit")


class RequestsClient(ApiClient):
    """The client as it was before urllib3: its `_session` and the path a call took through
    its `_request`, unchanged (the error branches are shortened: the benchmark meets none)."""

    def __init__(self, settings: ApiSettings) -> None:
        super().__init__(settings, max_connections=1)
        self._local = threading.local()

    def _request(self, method: str, path: str, *, endpoint: str, json_body: Any = None) -> object:
        started = time.monotonic()
        try:
            response = self._session().request(
                method,
                self._base_url + path,
                json=json_body,
                timeout=(self._settings.connect_timeout_s, self._settings.read_timeout_s),
                allow_redirects=False,
            )
        except requests.ConnectTimeout:
            count_api_request(endpoint, None, started=started)
            raise ApiUnreachable(f"{method} {path}: could not connect (timed out)") from None
        except requests.RequestException as error:
            count_api_request(endpoint, None, started=started)
            raise ApiUnavailable(f"{method} {path}: {type(error).__name__}") from None
        count_api_request(endpoint, response.status_code, started=started)
        if response.status_code == 429:
            API_RATE_LIMITED.inc()
        if not 200 <= response.status_code < 300:
            raise error_for_http(response.status_code, response.text, response.headers)
        return response.json()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=2, pool_maxsize=2, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            assert self._settings.key is not None
            session.proxies.update(get_environ_proxies(self._base_url))
            session.trust_env = False
            session.headers.update(self._headers)
            self._local.session = session
        return session


class PoolManagerTransport:
    """One `urllib3.PoolManager`, each request by its full URL."""

    def __init__(self, settings: ApiSettings) -> None:
        self._base_url = settings.base_url.rstrip("/")
        self._manager = urllib3.PoolManager(
            maxsize=1,
            timeout=urllib3.Timeout(
                connect=settings.connect_timeout_s, read=settings.read_timeout_s
            ),
            retries=NO_RETRIES,
        )

    def send(
        self, method: str, path: str, *, body: bytes | None, headers: Mapping[str, str]
    ) -> Answer:
        response = self._manager.urlopen(
            method, self._base_url + path, body=body, headers=headers, redirect=False
        )
        return Answer(response.status, response.headers, response.data)

    def close(self) -> None:
        self._manager.clear()


class HttpClientTransport:
    """One stdlib `http.client` connection, kept open: no pool, no thread safety."""

    def __init__(self, settings: ApiSettings) -> None:
        parts = urlsplit(settings.base_url)
        assert parts.hostname is not None
        self._connection = http.client.HTTPConnection(
            parts.hostname, parts.port, timeout=settings.read_timeout_s
        )

    def send(
        self, method: str, path: str, *, body: bytes | None, headers: Mapping[str, str]
    ) -> Answer:
        self._connection.request(method, path, body=body, headers=dict(headers))
        response = self._connection.getresponse()
        return Answer(response.status, dict(response.getheaders()), response.read())

    def close(self) -> None:
        self._connection.close()


def clients(settings: ApiSettings, threads: int) -> dict[str, ApiClient]:
    return {
        BASELINE: RequestsClient(settings),
        "urllib3 PoolManager": ApiClient(settings, transport=PoolManagerTransport(settings)),
        "urllib3 HTTPConnectionPool": ApiClient(
            settings,
            transport=PoolTransport(
                settings.base_url,
                connect_timeout_s=settings.connect_timeout_s,
                read_timeout_s=settings.read_timeout_s,
                max_connections=threads,
            ),
        ),
        NOW: ApiClient(settings, max_connections=threads),
        SINGLE_THREADED: ApiClient(settings, transport=HttpClientTransport(settings)),
    }


def cpu_us_per_call(call: Callable[[int], object], calls: int, start: int) -> float:
    """This thread's CPU per call, in microseconds, over `calls` calls."""
    before = time.thread_time()
    for n in range(start, start + calls):
        call(n)
    return (time.thread_time() - before) / calls * 1e6


def threaded_cpu_us_per_call(call: Callable[[int], object], calls: int, threads: int) -> float:
    """The process's CPU per call, in microseconds, with `threads` threads making `calls`
    calls between them at once."""
    each = max(1, calls // threads)
    ready = threading.Barrier(threads + 1)

    def work() -> None:
        ready.wait()
        for n in range(each):
            call(n)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    before = time.process_time()
    ready.wait()
    for worker in workers:
        worker.join()
    return (time.process_time() - before) / (each * threads) * 1e6


def measure(calls: int, reps: int, threads: int) -> dict[str, Any]:
    params = validate_params("a lighthouse", aspect_ratio="1:1", resolution="1K")
    loadavg = [os.getloadavg()[0]]
    runs: dict[tuple[str, str], list[float]] = {}
    with SimulatorProcess(SimConfig(api_key=API_KEY, latency="fixed:0")) as simulator:
        settings = ApiSettings(base_url=simulator.base_url, key=API_KEY)
        named = clients(settings, threads)
        task_id = named[BASELINE].submit("bench-task", params).task_id
        counter = 0

        def submit_with(client: ApiClient) -> Callable[[int], object]:
            return lambda n: client.submit(f"bench-{n}", params)

        def get_with(client: ApiClient) -> Callable[[int], object]:
            return lambda n: client.get_task(task_id)

        for client in named.values():  # warm up: connections made, caches filled
            cpu_us_per_call(get_with(client), 20, 0)
            cpu_us_per_call(submit_with(client), 20, counter)
            counter += 20
        order = list(named)
        for rep in range(reps):
            for name in order[rep % len(order) :] + order[: rep % len(order)]:
                client = named[name]
                runs.setdefault((name, "get_task"), []).append(
                    cpu_us_per_call(get_with(client), calls, 0)
                )
                if name != SINGLE_THREADED:
                    runs.setdefault((name, "get_task, threads"), []).append(
                        threaded_cpu_us_per_call(get_with(client), calls, threads)
                    )
                runs.setdefault((name, "submit"), []).append(
                    cpu_us_per_call(submit_with(client), calls, counter)
                )
                counter += calls
            loadavg.append(os.getloadavg()[0])
        for client in named.values():
            client.close()
    return {
        "calls": calls,
        "reps": reps,
        "threads": threads,
        "loadavg": [round(x, 2) for x in loadavg],
        "runs": runs,
    }


def render(results: Mapping[str, Any]) -> str:
    runs: dict[tuple[str, str], list[float]] = results["runs"]
    threads = results["threads"]
    lines = [
        f"python -m bench.http_clients --calls {results['calls']} --reps {results['reps']}"
        f" --threads {threads}: CPU µs per call, simulator on loopback answering at once;"
        f" one thread, and get_task from {threads} threads at once (the process's CPU).",
        f"1-minute load average before and after each repetition: {results['loadavg']}",
        "",
        "| HTTP layer under ApiClient | get_task µs (min to max) | x requests (min to max)"
        f" | get_task, {threads} threads, µs | x requests"
        " | submit µs (min to max) | x requests (min to max) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    names = dict.fromkeys(name for name, _ in runs)
    for name in names:
        cells = [name]
        for call in CALLS:
            if (name, call) not in runs:
                cells += ["not thread-safe", ""]
                continue
            values = runs[(name, call)]
            ratios = [a / b for a, b in zip(values, runs[(BASELINE, call)], strict=True)]
            cells.append(
                f"{statistics.median(values):.0f} ({min(values):.0f} to {max(values):.0f})"
            )
            cells.append(
                f"{statistics.median(ratios):.2f} ({min(ratios):.2f} to {max(ratios):.2f})"
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per client, call, rep")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--threads", type=int, default=16, help="threads for the threaded GETs")
    args = parser.parse_args()
    print(render(measure(args.calls, args.reps, args.threads)))


if __name__ == "__main__":
    main()
