"""`make compose-check`: build and run the compose stack for real, on a Docker daemon of the
check's own, then take it all down (docs/compose.md).

Exit 0 when every step passed, or when Docker cannot be had here (no root, no apt: it says so
and skips); 1 when a step failed. Whatever happens, the stack goes down, the daemon stops and
the host is checked for anything left behind.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Final, TypeVar

from imageq.devenv.compose_check import images
from imageq.devenv.compose_check.base_image import ensure_base_image
from imageq.devenv.compose_check.daemon import (
    COMPOSE,
    DOCKER,
    Daemon,
    DaemonPaths,
    stop_stale_daemons,
)
from imageq.devenv.compose_check.host import Unavailable, read_host_state, require_docker
from imageq.devenv.compose_check.scenario import DEMO, MONITORING, Scenario
from imageq.devenv.compose_check.stack import (
    PROJECT,
    CheckSecrets,
    Ports,
    Stack,
    copy_project,
    write_settings,
)

CACHE: Final = Path("/var/cache/imageq-compose")
RUN: Final = Path("/run/imageq-compose")
ROOT: Final = Path(__file__).resolve().parents[2]
T = TypeVar("T")


class Report:
    """Each step's outcome and duration, printed as it goes."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.failed: list[str] = []

    def step(self, name: str, action: Callable[[], T]) -> T:
        """Run `action`, saying when it starts and how long it took; its result."""
        start = time.monotonic()
        print(f"compose-check: {name} ...", flush=True)
        result = action()
        print(f"compose-check: {name}: done in {time.monotonic() - start:.1f} s", flush=True)
        return result

    def elapsed_s(self) -> float:
        return time.monotonic() - self.started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="compose-check", description=__doc__)
    parser.add_argument("--cache", type=Path, default=CACHE, help="kept between runs")
    parser.add_argument("--source", type=Path, default=ROOT, help="the repository to check")
    args = parser.parse_args(argv)
    try:
        require_docker()
    except Unavailable as reason:
        print(f"compose-check: SKIPPED, Docker cannot be had here: {reason}")
        return 0
    args.cache.mkdir(parents=True, exist_ok=True)
    with (args.cache / "lock").open("w") as lock:
        # One run at a time per cache: a daemon's data root is its alone.
        fcntl.flock(lock, fcntl.LOCK_EX)
        for line in stop_stale_daemons(RUN):
            print(f"compose-check: {line}")
        return run_locked(args.cache, args.source)


def run_locked(cache: Path, source: Path) -> int:
    # SIGTERM (CI's timeout) unwinds like Ctrl-C, so the teardown below runs either way.
    signal.signal(signal.SIGTERM, _interrupt)
    report = Report()
    paths = DaemonPaths(cache=cache, run=RUN / str(os.getpid()))
    before = read_host_state((paths.run, paths.cache))
    with tempfile.TemporaryDirectory(prefix="imageq-compose-check-") as tmp:
        daemon = Daemon(paths, cache / "dockerd.log")
        folder = Path(tmp) / PROJECT
        try:
            run_check(daemon, source, folder, cache, report)
        except Unavailable as reason:
            print(f"compose-check: SKIPPED, Docker cannot be had here: {reason}")
            return 0
        except Exception as error:  # any failure is reported, then everything is cleaned up
            traceback.print_exc()
            report.failed.append(f"{type(error).__name__}: {error}")
        finally:
            teardown(daemon, folder, report)
    after = read_host_state((paths.run, paths.cache))
    report.failed += before.differences(after)
    report.failed += leftover_processes(paths)
    with contextlib.suppress(OSError):
        paths.run.rmdir()
    verdict = "FAILED" if report.failed else "passed"
    for problem in report.failed:
        print(f"compose-check: problem: {problem}")
    print(f"compose-check: {verdict} in {report.elapsed_s():.0f} s")
    return 1 if report.failed else 0


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_check(daemon: Daemon, source: Path, folder: Path, cache: Path, report: Report) -> None:
    check = CheckSecrets.new()
    ports = Ports.free()
    report.step(
        "start dockerd (own data root and socket, no iptables, no forwarding)", daemon.start
    )
    clear_leftovers(daemon)
    copy_project(source, folder)
    base, origin = report.step("base image", lambda: ensure_base_image(daemon, cache))
    print(f"compose-check: base image {base} ({origin})")
    local = report.step(
        "Redis and Prometheus images from Debian's packages",
        lambda: images.build_local_images(daemon, folder, base),
    )
    write_settings(folder, check, ports, {"PYTHON_IMAGE": base, **local})
    stack = Stack(daemon, folder)
    report.step(
        "docker-compose build (the project's Dockerfile)", lambda: images.build_imageq(stack)
    )
    report.step(
        "images",
        lambda: check_images(daemon, check, [*images.IMAGEQ_IMAGES, *local.values()], report),
    )
    scenario = Scenario(stack, check, ports)
    for name, step in (
        ("--profile demo up -d, two workers, all healthy", scenario.demo_up),
        ("jobs from the host, webhooks", scenario.jobs_and_webhooks),
        ("imageq health in a container", scenario.health_in_container),
        ("Flower lists the workers", scenario.flower_lists_workers),
        ("a worker container SIGKILLed mid-run", scenario.kill_worker_mid_run),
        ("up -d --scale worker=3", scenario.scale_to_three),
        ("--profile monitoring up -d", scenario.monitoring),
        ("Redis's volume across down/up", scenario.redis_survives_down_up),
        ("no secret in the logs", scenario.logs_hold_no_secret),
        ("down -v", scenario.down),
    ):
        report.step(name, step)
    for note in scenario.notes:
        print(f"compose-check: {note}")
    report.failed += scenario.problems


def clear_leftovers(daemon: Daemon) -> None:
    """Containers, volumes and networks an interrupted run left in the kept data root."""
    containers = daemon.run([DOCKER, "ps", "-aq"]).stdout.split()
    if containers:
        print(f"compose-check: removing {len(containers)} containers of an interrupted run")
        daemon.run([DOCKER, "rm", "--force", "--volumes", *containers], timeout_s=300)
    daemon.run([DOCKER, "volume", "prune", "--force"], timeout_s=300)
    daemon.run([DOCKER, "network", "prune", "--force"], timeout_s=300)


def check_images(daemon: Daemon, check: CheckSecrets, tags: list[str], report: Report) -> None:
    for tag in tags:
        user = images.image_user(daemon, tag)
        health = images.has_healthcheck(daemon, tag)
        print(f"compose-check: {tag}: {images.image_size_mb(daemon, tag):.0f} MB, uid {user}")
        if user == "0":
            report.failed.append(f"{tag} runs as root")
        if tag in images.IMAGEQ_IMAGES and not health:
            report.failed.append(f"{tag} has no HEALTHCHECK")
        if tag in images.IMAGEQ_IMAGES:  # the only builds that ran with the secrets at hand
            secrets = (check.api_key, check.webhook_secret)
            report.failed += images.secret_findings(daemon, tag, secrets)


def teardown(daemon: Daemon, folder: Path, report: Report) -> None:
    """Whatever state the run left: the stack down (volumes too), then the daemon stopped."""
    if daemon.answers() and (folder / "docker-compose.yml").exists():
        result = daemon.run(
            [COMPOSE, *DEMO, *MONITORING, "down", "-v", "--remove-orphans", "--timeout", "10"],
            cwd=folder,
            check=False,
            timeout_s=300,
        )
        if result.returncode != 0:
            report.failed.append(f"docker-compose down -v failed: {result.stderr[-500:]}")
        # Images a rebuild replaced (untagged) would pile up in the kept data root.
        daemon.run([DOCKER, "image", "prune", "--force"], check=False, timeout_s=300)
    daemon.stop()


def leftover_processes(paths: DaemonPaths) -> list[str]:
    """Processes still naming the daemon's folders (dockerd, containerd, shims, proxies)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                if str(paths.run) in command:
                    found.append(f"process left behind: {proc.name} {command[:120]}")
    return found


if __name__ == "__main__":
    sys.exit(main())
