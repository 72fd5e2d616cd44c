"""Where a poller-mode worker's memory per job in flight goes: `python -m bench.poller_memory`.

    python -m bench.poller_memory [--n 100,1000] [--reps 1] [--processes 2]
        [--variant NAME=VAR=VALUE,VAR=VALUE ...] [--trace] [--idle-after 0]

Runs poller-mode imageq workers (`bench.memory_probe`: the worker as the benchmark runs it,
plus a probe) on the simulator, the realistic completion mix at times x `--scale`, as
`bench.run` does, hands over N jobs at once and waits for every notification. Worker RSS is
sampled every 0.5 s, its idle baseline read before any job (as `bench.run` does); at the idle
baseline and at each new peak, each process's memory by kind of mapping (`bench.smaps`:
thread stacks, malloc arenas, heap, other anonymous, files) and what the probe reports (threads
by name, connection objects, tracemalloc's top lines with `--trace`). Prints per round the
growth (peak - idle) by kind, and per variant the marginal growth per job from the smallest N
to the largest (medians over the repetitions), the figure issue 17 sets at 5 KB.

Each `--variant` adds worker environment variables (`MALLOC_ARENA_MAX=2`,
`IMAGEQ_POLLING__POLLER_IDLE_S=...`); variants run interleaved, in alternating order per
repetition. `--idle-after S` also reads RSS S seconds after the last notification.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from bench import procfs, smaps
from bench.designs import (
    API_KEY,
    PRODUCTION,
    CleanEnvWorker,
    Round,
    imageq_values,
    start_all,
    stop_all,
)
from bench.webhook_sink import ArrivalReceiver
from bench.workload import make_history, make_jobs
from imageq.config import PollingSettings, Settings
from imageq.devenv.redis_server import RedisServer
from imageq.devenv.worker_process import settings_env
from imageq.producers.api import ImageQueue
from imageq.simulator.server import start_simulator_process, stop_simulator_process
from imageq.worker.runtime import connect_store

_REPO: Final = Path(__file__).resolve().parent.parent
SAMPLE_EVERY_S: Final = 0.5
PROBE_EVERY_S: Final = 3.0
WAIT_MARGIN_S: Final = 60.0


class ProbedWorker(CleanEnvWorker):
    """The benchmark's imageq worker, run through `bench.memory_probe`."""

    def command(self) -> list[str]:
        command = super().command()
        return [command[0], "-m", "bench.memory_probe", *command[3:]]


@dataclass
class Reading:
    """One moment of the workers: summed RSS, memory by kind, threads, the probes' reports."""

    rss_kb: int = 0
    kinds: dict[str, smaps.Kind] = field(default_factory=dict)
    tasks: int = 0
    probes: list[dict[str, Any]] = field(default_factory=list)


def read_workers(pids: Sequence[int]) -> Reading:
    kinds = {kind: smaps.Kind(0, 0) for kind in smaps.KINDS}
    for pid in pids:
        for kind, found in smaps.of_process(pid).items():
            kinds[kind] = smaps.Kind(
                kinds[kind].count + found.count, kinds[kind].rss_kb + found.rss_kb
            )
    tasks = sum(
        len(os.listdir(f"/proc/{pid}/task")) for pid in pids if os.path.isdir(f"/proc/{pid}")
    )
    return Reading(procfs.rss_bytes(pids) // 1024, kinds, tasks)


def probe(pids: Sequence[int], folder: Path, *, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """Ask each worker for its probe report and return them (those that came in time)."""
    before = set(folder.glob("*.json"))
    for pid in pids:
        os.kill(pid, signal.SIGUSR2)
    give_up = time.monotonic() + timeout_s
    while time.monotonic() < give_up:
        new = set(folder.glob("*.json")) - before
        if len(new) >= len(pids):
            return [json.loads(path.read_text()) for path in sorted(new)]
        time.sleep(0.05)
    return [json.loads(path.read_text()) for path in sorted(set(folder.glob("*.json")) - before)]


class PeakWatch:
    """Samples RSS every 0.5 s in a thread; at each new peak reads the kinds, and at most every
    3 s the probes too, so the reading kept is the one at (or near) the peak."""

    def __init__(self, pids: Sequence[int], folder: Path) -> None:
        self._pids, self._folder = pids, folder
        self.peak = Reading()
        self.probed_at_peak: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-watch", daemon=True)

    def __enter__(self) -> PeakWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        probed_at = 0.0
        while not self._stop.wait(SAMPLE_EVERY_S):
            rss_kb = procfs.rss_bytes(self._pids) // 1024
            if rss_kb <= self.peak.rss_kb:
                continue
            self.peak = read_workers(self._pids)
            if time.monotonic() - probed_at >= PROBE_EVERY_S:
                self.probed_at_peak = probe(self._pids, self._folder)
                probed_at = time.monotonic()


def run_round(
    *, n: int, seed: int, scale: float, processes: int, env: dict[str, str], trace: bool,
    idle_after_s: float, log_dir: Path,
) -> dict[str, Any]:  # fmt: skip
    timing = replace(
        PRODUCTION,
        first_delay_s=PRODUCTION.first_delay_s * scale,
        interval_s=PRODUCTION.interval_s * scale,
        jitter_s=PRODUCTION.jitter_s * scale,
    )
    jobs = make_jobs(n, seed=seed, latency="realistic", scale=scale)
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="imageq-probe-")))
        server = stack.enter_context(RedisServer())
        simulator, api_url = start_simulator_process(
            ["--api-key", API_KEY, "--latency", "realistic", "--request-delay", "fixed:0.05",
             "--seed", str(seed)]
        )  # fmt: skip
        stack.callback(stop_simulator_process, simulator)
        receiver = stack.enter_context(ArrivalReceiver())
        parts = Round(
            redis_url=server.url().rsplit("/", 1)[0],
            api_url=api_url,
            webhook_url=receiver.url,
            timing=timing,
            processes=processes,
            n=n,
            log_dir=log_dir,
        )
        values = imageq_values(parts, concurrency=32)
        values["polling"]["mode"] = "poller"
        settings = Settings(_env_file=None, **copy.deepcopy(values))
        store = connect_store(settings)
        window = PollingSettings().adaptive_window
        history = make_history(window, seed=seed, latency="realistic", scale=scale)
        for (quality, resolution), times in history.items():
            for seconds in times:
                store.add_generation_sample(quality, resolution, seconds, window=window)
        queue = ImageQueue(settings, store=store)
        worker_env = {
            **settings_env(values),
            **env,
            "BENCH_PROBE_DIR": str(folder),
            # A variant's own PYTHONPATH goes first: another tree's code, to compare with.
            "PYTHONPATH": os.pathsep.join(
                filter(None, [env.get("PYTHONPATH"), str(_REPO), os.environ.get("PYTHONPATH")])
            ),
        }
        if trace:
            worker_env["PYTHONTRACEMALLOC"] = "1"
        workers = start_all(
            [
                ProbedWorker(
                    worker_env,
                    log_dir / f"worker-n{n}-{index}.log",
                    name=f"memory{index}",
                    loglevel="INFO",
                    extra_args=("-P", "threads"),
                )
                for index in range(processes)
            ]
        )
        stack.callback(stop_all, workers)
        pids = [worker.pid for worker in workers]
        time.sleep(4 * SAMPLE_EVERY_S)  # "ready" comes before the last imports settle
        samples = []
        for _ in range(4):
            time.sleep(SAMPLE_EVERY_S)
            samples.append(procfs.rss_bytes(pids) // 1024)
        idle = read_workers(pids)
        idle.rss_kb = int(statistics.median(samples))
        idle.probes = probe(pids, folder)
        with PeakWatch(pids, folder) as watch:
            started = time.monotonic()
            for job in jobs:
                queue.enqueue(
                    job.prompt,
                    aspect_ratio=job.aspect_ratio,
                    resolution=job.resolution,
                    quality=job.quality,
                    job_id=job.job_id,
                    webhook_url=receiver.url,
                )
            give_up = started + timing.deadline_s + WAIT_MARGIN_S
            while receiver.notified() < n and time.monotonic() < give_up:
                time.sleep(0.2)
            took_s = time.monotonic() - started
        peak = watch.peak
        peak.probes = watch.probed_at_peak
        after_kb = after_tasks = None
        if idle_after_s > 0:
            time.sleep(idle_after_s)
            after = read_workers(pids)
            after_kb, after_tasks = after.rss_kb, after.tasks
        notified = receiver.notified()
    return {
        "n": n,
        "notified": notified,
        "took_s": round(took_s, 1),
        "idle": _plain(idle),
        "peak": _plain(peak),
        "growth_kb": peak.rss_kb - idle.rss_kb,
        "growth_by_kind_kb": {k: peak.kinds[k].rss_kb - idle.kinds[k].rss_kb for k in smaps.KINDS},
        "after_kb": after_kb,
        "after_tasks": after_tasks,
    }


def _plain(reading: Reading) -> dict[str, Any]:
    return {
        "rss_kb": reading.rss_kb,
        "tasks": reading.tasks,
        "kinds": {k: {"count": v.count, "rss_kb": v.rss_kb} for k, v in reading.kinds.items()},
        "probes": reading.probes,
    }


def print_round(variant: str, result: dict[str, Any]) -> None:
    idle, peak = result["idle"], result["peak"]
    print(
        f"\n[{variant}] N = {result['n']}: notified {result['notified']}/{result['n']} in"
        f" {result['took_s']} s, load average {os.getloadavg()[0]:.2f}; RSS idle"
        f" {idle['rss_kb'] / 1024:.1f} MiB, peak {peak['rss_kb'] / 1024:.1f} MiB, growth"
        f" {result['growth_kb'] / 1024:.1f} MiB = {result['growth_kb'] / result['n']:.2f} KB per"
        f" job; OS threads {idle['tasks']} -> {peak['tasks']}"
        + (
            f"; {result['after_kb'] / 1024:.1f} MiB and {result['after_tasks']} threads after"
            if result["after_kb"] is not None
            else ""
        )
    )
    print(f"  {'kind':<16} {'idle KB':>9} {'peak KB':>9} {'growth KB':>10} {'mappings':>12}")
    for kind in smaps.KINDS:
        i, p = idle["kinds"][kind], peak["kinds"][kind]
        print(
            f"  {kind:<16} {i['rss_kb']:>9} {p['rss_kb']:>9} {p['rss_kb'] - i['rss_kb']:>10}"
            f" {i['count']:>5} -> {p['count']:<5}"
        )
    stacks = peak["kinds"]["thread stacks"]
    if stacks["count"]:
        print(f"  per thread stack at peak: {stacks['rss_kb'] / stacks['count']:.1f} KB")
    for when in ("idle", "peak"):
        for report in result[when]["probes"]:
            print(f"  probe {when} pid {report['pid']}: RSS {report['rss_kb']} KB,"
                  f" threads {report['threads']}")  # fmt: skip
            print(f"    objects {report['objects']}")
            if "top_lines" in report and when == "peak":
                print(f"    traced {report['traced_kb']} KB; top lines:")
                for line in report["top_lines"][:10]:
                    print(f"      {line['kb']:>7} KB {line['count']:>7}  {line['where']}")


def marginal(results: list[dict[str, Any]]) -> tuple[float, dict[str, float]] | None:
    """KB per job from the smallest N to the largest: medians over repetitions at each N."""
    by_n: dict[int, list[dict[str, Any]]] = {}
    for result in results:
        by_n.setdefault(result["n"], []).append(result)
    if len(by_n) < 2:
        return None
    low, high = min(by_n), max(by_n)

    def median(n: int, key: str, kind: str | None = None) -> float:
        values = [float(r[key] if kind is None else r[key][kind]) for r in by_n[n]]
        return statistics.median(values)

    total = (median(high, "growth_kb") - median(low, "growth_kb")) / (high - low)
    kinds = {
        kind: (median(high, "growth_by_kind_kb", kind) - median(low, "growth_by_kind_kb", kind))
        / (high - low)
        for kind in smaps.KINDS
    }
    return total, kinds


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    name, _, rest = text.partition("=")
    env = dict(pair.split("=", 1) for pair in rest.split(",") if pair)
    return name, env


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--n", default="100,1000", help="jobs in flight, comma-separated")
    add("--reps", type=int, default=1)
    add("--processes", type=int, default=2)
    add("--scale", type=float, default=0.3, help="times completion times and the schedule")
    add("--seed", type=int, default=17)
    add("--variant", action="append", default=[], help="NAME=VAR=VALUE,VAR=VALUE")
    add("--trace", action="store_true", help="tracemalloc in the workers (slower; top lines)")
    add("--idle-after", type=float, default=0.0, help="also read RSS this long after the end")
    add("--json", type=Path, default=None, help="write every round's readings here")
    add("--logs", type=Path, default=None, help="keep the workers' logs here")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # a TextIOWrapper
    variants = [parse_variant(text) for text in args.variant] or [("as is", {})]
    ns = [int(part) for part in args.n.split(",")]
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in variants}
    with tempfile.TemporaryDirectory(prefix="imageq-memory-") as scratch:
        log_dir = args.logs or Path(scratch)
        for rep in range(args.reps):
            for n in ns:
                order = variants if rep % 2 == 0 else variants[::-1]
                for name, env in order:
                    result = run_round(
                        n=n, seed=args.seed + rep, scale=args.scale, processes=args.processes,
                        env=env, trace=args.trace, idle_after_s=args.idle_after, log_dir=log_dir,
                    )  # fmt: skip
                    result["variant"], result["rep"] = name, rep
                    result["load_average"] = os.getloadavg()[0]
                    results[name].append(result)
                    print_round(name, result)
    print("\nMarginal worker RSS per job in flight (medians over repetitions at each N):")
    for name, found in results.items():
        got = marginal(found)
        if got is None:
            continue
        total, kinds = got
        parts = ", ".join(f"{kind} {value:.2f}" for kind, value in kinds.items())
        loads = [r["load_average"] for r in found]
        print(
            f"  {name}: {total:.2f} KB per job ({parts}); load average"
            f" {min(loads):.2f}-{max(loads):.2f}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
