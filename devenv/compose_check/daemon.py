"""A Docker daemon of the check's own: its own data root (kept between runs, as the image
cache), socket, pidfile and exec root, and no hand on the machine's firewall or forwarding."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from imageq.devenv.compose_check.host import Unavailable

# Where an address pool of its own is unlikely to meet the machine's or another test's.
ADDRESS_POOL: Final = "10.213.0.0/16"
START_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 60.0
# The Debian client, the one made for this daemon (another `docker` may come first on PATH).
DOCKER: Final = "/usr/bin/docker"
COMPOSE: Final = "/usr/bin/docker-compose"


@dataclass(frozen=True)
class DaemonPaths:
    """The daemon's places: `cache` outlives the run, `run` does not."""

    cache: Path
    run: Path

    @property
    def data_root(self) -> Path:
        return self.cache / "docker"

    @property
    def socket(self) -> Path:
        return self.run / "docker.sock"

    @property
    def pidfile(self) -> Path:
        return self.run / "dockerd.pid"

    @property
    def exec_root(self) -> Path:
        return self.run / "exec"


class Daemon:
    """`dockerd` started by `start`, stopped by `stop`; `env` points clients at it."""

    def __init__(self, paths: DaemonPaths, log: Path) -> None:
        self.paths = paths
        self.log = log
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        """The environment for `docker` and `docker-compose`: this daemon, no other's."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "COMPOSE_"))}
        # docker-compose builds through the `docker` found on PATH: Debian's, made for this
        # daemon, before any other.
        path = f"{Path(DOCKER).parent}:{env.get('PATH', '')}"
        return {**env, "PATH": path, "DOCKER_HOST": f"unix://{self.paths.socket}"}

    def start(self) -> None:
        """Start dockerd and wait until it answers; `Unavailable` if it cannot run here."""
        for folder in (self.paths.data_root, self.paths.exec_root):
            folder.mkdir(parents=True, exist_ok=True)
        # --bridge=none: no default docker0; compose makes the networks it needs. The userland
        # proxy (on by default) publishes ports without any firewall rule.
        command = [
            "dockerd",
            f"--data-root={self.paths.data_root}",
            f"--exec-root={self.paths.exec_root}",
            f"--pidfile={self.paths.pidfile}",
            f"--host=unix://{self.paths.socket}",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-forward=false",
            "--ip-masq=false",
            "--bridge=none",
            f"--default-address-pool=base={ADDRESS_POOL},size=24",
        ]
        with self.log.open("w") as log:
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise Unavailable(f"dockerd exited with {self._process.returncode} (its log)")
            if self.answers():
                return
            time.sleep(0.2)
        raise Unavailable(f"dockerd did not answer within {START_TIMEOUT_S:.0f} s")

    def forced_stops(self) -> set[str]:
        """Ids of the containers the daemon SIGKILLed after their stop's grace period ran out."""
        text = self.log.read_text(errors="replace")
        return set(re.findall(r"failed to exit within .*? container=([0-9a-f]{64})", text))

    def answers(self) -> bool:
        result = self.run([DOCKER, "version", "--format", "{{.Server.Version}}"], check=False)
        return result.returncode == 0

    def run(
        self,
        command: Sequence[str],
        *,
        cwd: Path | None = None,
        check: bool = True,
        timeout_s: float = 120.0,
        stdin: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a client command against this daemon; `RuntimeError` with its output if it fails
        and `check`."""
        result = subprocess.run(
            list(command),
            cwd=cwd,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if check and result.returncode != 0:
            output = (result.stdout + result.stderr).strip()[-3000:]
            raise RuntimeError(f"{' '.join(command)} exited {result.returncode}:\n{output}")
        return result

    def stop(self) -> None:
        """SIGTERM the daemon (it stops its containerd and unmounts), then wait for it."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait(timeout=STOP_TIMEOUT_S)
        self._process = None
        clear_run_folder(self.paths.run)


def clear_run_folder(run: Path) -> None:
    """Unmount what is under a daemon's run folder and remove it. dockerd leaves its bind
    mount of the host's network namespace (exec-root/netns/default) mounted when it exits."""
    for point in sorted(mounts_under(run), reverse=True):
        subprocess.run(["umount", point], check=False, capture_output=True, timeout=30)
    shutil.rmtree(run, ignore_errors=True)


def stop_stale_daemons(runs: Path) -> list[str]:
    """A check killed outright (SIGKILL) cannot clean up: stop the daemon its run folder
    names, if that check is gone and the daemon still runs, and clear the folder. What was
    done, one line each."""
    done = []
    for run in sorted(runs.iterdir()) if runs.is_dir() else []:
        if not run.name.isdigit() or Path(f"/proc/{run.name}").exists():
            continue  # a check still running, or not a folder of ours
        pidfile = DaemonPaths(cache=run, run=run).pidfile
        pid = int(pidfile.read_text()) if pidfile.exists() else 0
        command = Path(f"/proc/{pid}/cmdline") if pid else None
        if command and command.exists() and str(run).encode() in command.read_bytes():
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            done.append(f"stopped dockerd {pid} left by check {run.name}")
        clear_run_folder(run)
    return done


def mounts_under(folder: Path) -> list[str]:
    """Mount points at or below `folder`."""
    lines = Path("/proc/self/mounts").read_text().splitlines()
    return [point for line in lines if Path(point := line.split()[1]).is_relative_to(folder)]
