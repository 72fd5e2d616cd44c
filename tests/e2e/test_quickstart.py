"""The README's quick start, run as written: block by block, line by line.

The blocks marked `<!-- quickstart -->` run in order, in a fresh directory that holds a link to
`examples/`, with the virtual environment's `bin` first on PATH and no IMAGEQ_* variable but
the ones the README exports. Two things differ from a reader's shell, both on loopback: the
README's fixed ports (Redis 6379, simulator 8900, receiver 8808) become free ones, with a Redis
this test starts; and the worker's metrics port, which the README leaves at its default, is a
free one too, so that tests running at once do not collide.

Shell lines ending in `&` start in the background, as the README says; the others run in one
bash per group, carrying the exported variables on. Before a foreground group runs, the test
waits (bounded) until the background processes are ready, as the README tells its reader to.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest

from imageq.devenv.redis_server import RedisServer, free_port

ROOT = Path(__file__).parents[2]
README = ROOT / "README.md"
MARKER = "<!-- quickstart -->"
README_PORTS = {"redis": 6379, "simulator": 8900, "receiver": 8808}
READY_TIMEOUT_S = 60.0
STEP_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class Block:
    """One fenced block of the quick start: its language and its text."""

    language: str
    text: str


def quickstart_blocks(markdown: str) -> list[Block]:
    """Every fenced block that follows a quickstart marker, in order."""
    pattern = re.compile(re.escape(MARKER) + r"\s*\n```(\w+)\n(.*?)\n```", re.DOTALL)
    return [Block(language, text) for language, text in pattern.findall(markdown)]


def shell_lines(text: str) -> list[str]:
    """Commands of a shell block: continuations joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", "", text)
    return [
        line.strip()
        for line in joined.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def with_ports(text: str, ports: dict[int, int]) -> str:
    """The text with each of the README's loopback ports replaced by the test's."""
    for old, new in ports.items():
        text = re.sub(rf"(?<=127\.0\.0\.1:){old}\b|(?<=--port ){old}\b", str(new), text)
    return text


def test_blocks_are_found_and_use_every_port() -> None:
    """The markers are in place, and each port the test remaps is one the text uses."""
    blocks = quickstart_blocks(README.read_text())
    assert [block.language for block in blocks] == ["sh", "sh", "sh", "python"]
    text = "\n".join(block.text for block in blocks)
    for port in README_PORTS.values():
        assert re.search(rf"(127\.0\.0\.1:|--port ){port}\b", text), port


class Session:
    """A reader's shell: exported variables carried on, background processes kept."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        self.background: list[subprocess.Popen[bytes]] = []

    def run_foreground(self, lines: list[str]) -> subprocess.CompletedProcess[str]:
        env_file = self.workdir / ".env-after"
        script = "set -euo pipefail\n" + "\n".join(lines) + f'\nenv -0 > "{env_file}"\n'
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=STEP_TIMEOUT_S,
            check=False,
        )
        assert done.returncode == 0, (
            f"{lines} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        )
        pairs = (item.split("=", 1) for item in env_file.read_text().split("\0") if "=" in item)
        self.env = dict(pairs)
        return done

    def start_background(self, line: str) -> None:
        command = line.removesuffix("&").strip()
        process = subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            cwd=self.workdir,
            env=self.env,
            start_new_session=True,
        )
        self.background.append(process)

    def run_python(self, text: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["python", "-"],
            input=text,
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=STEP_TIMEOUT_S,
            check=False,
        )
        assert done.returncode == 0, f"python block exited {done.returncode}:\n{done.stderr}"
        return done

    def stop(self) -> None:
        for process in self.background:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.background:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)


def wait_until(
    condition: Callable[[], bool], what: str, timeout_s: float = READY_TIMEOUT_S
) -> None:
    give_up = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < give_up, f"gave up after {timeout_s:g} s waiting for {what}"
        time.sleep(0.2)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def session(tmp_path: Path) -> Iterator[tuple[Session, dict[int, int]]]:
    with RedisServer() as redis_server:
        ports = {
            README_PORTS["redis"]: redis_server.port,
            README_PORTS["simulator"]: free_port(),
            README_PORTS["receiver"]: free_port(),
        }
        (tmp_path / "examples").symlink_to(ROOT / "examples")
        env = {name: value for name, value in os.environ.items() if not name.startswith("IMAGEQ_")}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env["IMAGEQ_OBSERVABILITY__METRICS_PORT"] = str(free_port())
        shell = Session(tmp_path, env)
        try:
            yield shell, ports
        finally:
            shell.stop()


@pytest.mark.timeout(300)
def test_the_quick_start_runs_as_written(session: tuple[Session, dict[int, int]]) -> None:
    """Every quick-start block succeeds; both jobs succeed; the receiver verifies both webhooks."""
    shell, ports = session
    outputs: list[str] = []
    for block in quickstart_blocks(README.read_text()):
        text = with_ports(block.text, ports)
        if block.language == "python":
            wait_for_background(shell, ports)
            outputs.append(shell.run_python(text).stdout)
            continue
        foreground: list[str] = []
        for line in shell_lines(text):
            if line.endswith("&"):
                if foreground:
                    outputs.append(shell.run_foreground(foreground).stdout)
                    foreground = []
                shell.start_background(line)
            else:
                foreground.append(line)
        if foreground:
            if shell.background:
                wait_for_background(shell, ports)
            outputs.append(shell.run_foreground(foreground).stdout)

    assert len(shell.background) == 3, "the simulator, a worker and the receiver"
    cli_output, python_output = outputs[-2], outputs[-1]
    assert "succeeded" in cli_output, cli_output
    job_id, status = python_output.split()[:2]
    assert status == "succeeded", python_output
    log = shell.workdir / "var" / "quickstart" / "receiver.log"
    wait_until(lambda: f"verified msg_{job_id}: job {job_id} succeeded" in log.read_text(),
               f"the receiver to verify {job_id}'s webhook", timeout_s=30)  # fmt: skip
    verified = re.findall(r"^verified msg_\S+: job \S+ succeeded$", log.read_text(), re.MULTILINE)
    assert len(verified) == 2, log.read_text()
    assert "refused" not in log.read_text()


def wait_for_background(shell: Session, ports: dict[int, int]) -> None:
    """Bounded: the simulator and receiver accept connections and `imageq health` passes."""
    for process in shell.background:
        assert process.poll() is None, f"a background process exited with {process.returncode}"
    for name in ("simulator", "receiver"):
        port = ports[README_PORTS[name]]
        wait_until(partial(port_open, port), f"the {name} on port {port}")

    def healthy() -> bool:
        checked = subprocess.run(
            ["imageq", "health", "--json"],
            cwd=shell.workdir,
            env=shell.env,
            capture_output=True,
            timeout=30,
            check=False,
        )
        return checked.returncode == 0

    wait_until(healthy, "imageq health to pass (the worker answering)")
