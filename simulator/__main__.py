"""Command line: `imageq-simulator --api-key KEY [options]` (`python -m imageq.simulator` too);
serves until SIGINT or SIGTERM.

Prints exactly one line to stdout once it accepts connections, `simulator listening on
http://HOST:PORT (latency realistic, ...)` (the address, then the latency and any setting not at
its default), so a parent process can learn the port (use `--port 0` for a free one).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence

from imageq.simulator.routes import create_app
from imageq.simulator.server import base_url_of, bind, start_runner
from imageq.simulator.sim_config import SimConfig


def parse_args(argv: Sequence[str] | None = None) -> SimConfig:
    """Build a SimConfig from command-line flags; argparse exits with a message on bad input."""
    parser = argparse.ArgumentParser(prog="imageq-simulator", description=__doc__)
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    add("--port", type=int, default=0, help="port to bind; 0 picks a free one (default)")
    add("--api-key", required=True, help="the bearer key clients must send")
    add("--latency", default="realistic", help="fixed:S | uniform:LOW,HIGH | realistic")
    add("--request-delay", default="fixed:0", help="delay before every API answer")
    add("--envelope", choices=("gpt_image_2_official", "platform"), default="gpt_image_2_official")
    add("--v1-tasks", action=argparse.BooleanOptionalAction, default=True,
        help="serve GET /v1/tasks/{id} (--no-v1-tasks: 404 for every id)")  # fmt: skip
    add("--status-words", choices=("canonical", "varied"), default="canonical")
    add("--images-per-task", type=int, default=1)
    add("--fault-rate-429", type=float, default=0.0, help="share of API requests answered 429")
    add("--fault-rate-503", type=float, default=0.0, help="share of API requests answered 503")
    add("--fault-rate-drop", type=float, default=0.0, help="share of queries dropped")
    add("--credits-in-v1-tasks", action="store_true",
        help="credits_used in GET /v1/tasks/{id} answers too (queries: always)")  # fmt: skip
    add("--rate-limit", dest="rate_limit_per_s", type=float, default=0.0,
        help="requests/s per API key; past it, 429 with Retry-After (0: none)")  # fmt: skip
    add("--seed", type=int, default=None, help="seed of latencies, words and random faults")
    args = parser.parse_args(argv)
    try:
        return SimConfig(**vars(args))
    except ValueError as error:
        parser.error(str(error))


async def serve_until_signalled(config: SimConfig) -> None:
    """Serve, announce the address on stdout, and stop cleanly on SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    sock = bind(config.host, config.port)
    runner = await start_runner(create_app(config), sock)
    try:
        print(f"simulator listening on {base_url_of(sock)} ({config.summary()})", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()
        sock.close()


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point (`imageq-simulator`)."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    config = parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_until_signalled(config))


if __name__ == "__main__":
    main()
