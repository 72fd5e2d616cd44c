"""What an event loop would save a poller: a poll's GET from threads, or from one thread.

    python -m bench.curl_multi [--concurrency 64,256] [--seconds 8] [--reps 3]   # about 2 min

The poller runs each poll on a thread of its own while its GET waits for the API, so the
threads it needs grow with the polls in flight (rate x the API's answer time), and so do its
memory and its thread switches. An event loop would keep the same GETs in flight from one
thread. This measures the HTTP part of both, the same way:

- `threads`: C threads, each sending `GET /v1/tasks/{id}` in a loop through a libcurl handle
  of its own with a kept connection (as the poller's threads do through `CurlTransport`);
- `multi`: one thread keeping C of the same GETs in flight through libcurl's multi interface.

Each answer is parsed as the client parses it (`json.loads`, then `parse_task`). Each
(mode, C) runs in a fresh process against a simulator on loopback that answers after 50 ms
(`bench.run`'s delay), for `--seconds`; the modes run interleaved, in alternating order per
repetition. Per run: the process's CPU per GET, GETs per second, and its RSS growth per GET in
flight (peak over the RSS before the first request). Ratios multi/threads come from the pairs
of the same repetition: median (min to max). Loopback only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from io import BytesIO
from typing import Any, Final

import pycurl

from bench import procfs
from bench.measures import spread_of
from imageq.config import ApiSettings
from imageq.simulator.server import start_simulator_process, stop_simulator_process
from imageq.worker.domain.params import validate_params
from imageq.worker.upstream.client import TASK_PATH, ApiClient
from imageq.worker.upstream.responses import parse_task

API_KEY: Final = "sk-bench-multi-0123456789"
MODES: Final = ("threads", "multi")


def rss_kb() -> float:
    return procfs.rss_bytes([os.getpid()]) / 1024


def new_handle(url: str, headers: list[str]) -> pycurl.Curl:
    handle = pycurl.Curl()
    handle.setopt(pycurl.NOSIGNAL, 1)
    handle.setopt(pycurl.URL, url)
    handle.setopt(pycurl.HTTPHEADER, headers)
    handle.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
    handle.setopt(pycurl.TIMEOUT_MS, 30_000)
    return handle


def perform_threads(url: str, headers: list[str], concurrency: int, seconds: float) -> int:
    """C threads, each GETting in a loop through its own handle, until `seconds` pass."""
    done = [0] * concurrency
    stop = threading.Event()

    def loop(slot: int) -> None:
        handle = new_handle(url, headers)
        while not stop.is_set():
            body = BytesIO()
            handle.setopt(pycurl.WRITEDATA, body)
            handle.perform()
            parse_task(json.loads(body.getvalue()))
            done[slot] += 1
        handle.close()

    threads = [threading.Thread(target=loop, args=(n,)) for n in range(concurrency)]
    for thread in threads:
        thread.start()
    time.sleep(seconds)  # the measured run's length, not a wait on a condition
    stop.set()
    for thread in threads:
        thread.join()
    return sum(done)


def perform_multi(url: str, headers: list[str], concurrency: int, seconds: float) -> int:
    """One thread keeping C GETs in flight through one multi handle, until `seconds` pass."""
    multi = pycurl.CurlMulti()
    bodies: dict[pycurl.Curl, BytesIO] = {}

    def start(handle: pycurl.Curl) -> None:
        bodies[handle] = BytesIO()
        handle.setopt(pycurl.WRITEDATA, bodies[handle])
        multi.add_handle(handle)

    for _ in range(concurrency):
        start(new_handle(url, headers))
    done = 0
    ends = time.monotonic() + seconds
    while bodies:
        while multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
            pass
        _, finished, failed = multi.info_read()
        if failed:
            raise RuntimeError(f"GET failed: {failed[0][2]}")
        for handle in finished:
            multi.remove_handle(handle)
            parse_task(json.loads(bodies.pop(handle).getvalue()))
            done += 1
            if time.monotonic() < ends:
                start(handle)
            else:
                handle.close()
        if bodies and not finished:
            multi.select(1.0)
    multi.close()
    return done


def child(mode: str, concurrency: int, seconds: float, url: str) -> dict[str, Any]:
    """One run in this process: CPU, GETs and RSS growth."""
    headers = [f"Authorization: Bearer {API_KEY}", "Accept: application/json"]
    pycurl.Curl().close()  # libcurl's one-time set-up, outside the growth
    sampling = threading.Event()
    idle = peak = rss_kb()

    def sample() -> None:
        nonlocal peak
        while not sampling.wait(0.05):
            peak = max(peak, rss_kb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    cpu, wall = time.process_time(), time.monotonic()
    run = perform_threads if mode == "threads" else perform_multi
    gets = run(url, headers, concurrency, seconds)
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    sampling.set()
    sampler.join()
    peak = max(peak, rss_kb())
    return {
        "mode": mode,
        "concurrency": concurrency,
        "gets": gets,
        "gets_s": gets / wall,
        "cpu_us_per_get": cpu / gets * 1e6,
        "rss_kb_per_get_in_flight": (peak - idle) / concurrency,
    }


def measure(concurrencies: list[int], seconds: float, reps: int) -> dict[str, Any]:
    loads = [os.getloadavg()[0]]
    process, base_url = start_simulator_process(
        ["--api-key", API_KEY, "--latency", "fixed:3600", "--request-delay", "fixed:0.05"]
    )
    runs: list[dict[str, Any]] = []
    try:
        client = ApiClient(ApiSettings(base_url=base_url, key=API_KEY))
        params = validate_params("a lighthouse", aspect_ratio="1:1", resolution="1K")
        task_id = client.submit("bench-multi", params).task_id  # running for the whole run
        client.close()
        url = base_url + TASK_PATH.format(task_id=task_id)
        for rep in range(reps):
            for concurrency in concurrencies:
                for mode in MODES if rep % 2 == 0 else MODES[::-1]:
                    args = ["--child", mode, str(concurrency), str(seconds), url]
                    out = subprocess.run(  # noqa: S603 -- a fixed command, no shell
                        [sys.executable, "-m", "bench.curl_multi", *args],
                        check=True,
                        capture_output=True,
                        text=True,
                    ).stdout
                    runs.append({**json.loads(out), "rep": rep})
            loads.append(os.getloadavg()[0])
    finally:
        stop_simulator_process(process, timeout_s=5)
    return {"seconds": seconds, "reps": reps, "loadavg": loads, "runs": runs}


def render(results: dict[str, Any]) -> str:
    runs = results["runs"]
    lines = [
        f"python -m bench.curl_multi --concurrency"
        f" {','.join(str(c) for c in sorted({r['concurrency'] for r in runs}))}"
        f" --seconds {results['seconds']:g} --reps {results['reps']}: the simulator on loopback"
        " answering after 50 ms; per run a fresh process.",
        "1-minute load average before and after each repetition: "
        + ", ".join(f"{x:.2f}" for x in results["loadavg"]),
        "",
        "| GETs in flight | mode | CPU µs per GET | GETs/s | RSS KB per GET in flight"
        " | CPU multi/threads | RSS multi/threads |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]

    def cell(values: list[float], digits: int = 0) -> str:
        return spread_of(values).text(f"{{:.{digits}f}}")

    for concurrency in sorted({r["concurrency"] for r in runs}):
        by_mode = {
            mode: sorted(
                (r for r in runs if r["mode"] == mode and r["concurrency"] == concurrency),
                key=lambda r: r["rep"],
            )
            for mode in MODES
        }
        for mode in MODES:
            mine = by_mode[mode]
            ratios = ["", ""]
            if mode == "multi":
                pairs = list(zip(by_mode["multi"], by_mode["threads"], strict=True))
                ratios = [
                    cell([m[key] / t[key] for m, t in pairs], 2)
                    for key in ("cpu_us_per_get", "rss_kb_per_get_in_flight")
                ]
            lines.append(
                f"| {concurrency} | {mode} | {cell([r['cpu_us_per_get'] for r in mine])}"
                f" | {cell([r['gets_s'] for r in mine])}"
                f" | {cell([r['rss_kb_per_get_in_flight'] for r in mine], 1)}"
                f" | {ratios[0]} | {ratios[1]} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        mode, concurrency, seconds, url = sys.argv[2:6]
        print(json.dumps(child(mode, int(concurrency), float(seconds), url)))
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--concurrency", default="64,256", help="GETs in flight, comma-separated")
    parser.add_argument("--seconds", type=float, default=8.0, help="per run (default 8)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    args = parser.parse_args()
    concurrencies = [int(part) for part in args.concurrency.split(",")]
    print(render(measure(concurrencies, args.seconds, args.reps)))


if __name__ == "__main__":
    main()
