"""`make demo`: imageq end to end on this machine, with no set-up beyond `make`.

Starts a Redis of its own (AOF on, under var/), never one that merely answers on the
configured URL; `IMAGEQ_DEMO__USE_CONFIGURED_REDIS=true` makes it use the configured one.
Uses the real API if `IMAGEQ_API__KEY` is set, else the simulator with shortened polling.
Then it starts a worker, enqueues a handful of jobs over several ratios and resolutions,
shows their progress live, and prints each result with where its images were saved.
"""

from __future__ import annotations

import secrets
import sys
import time
from base64 import b64encode
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from imageq.config import Settings, get_settings
from imageq.devenv.redis_server import RedisServer, is_reachable
from imageq.devenv.webhook_receiver import WebhookReceiver
from imageq.devenv.worker_process import WorkerProcess, settings_env
from imageq.ops.palette import STATUS_COLOURS
from imageq.ops.terminal_text import shown
from imageq.producers.api import ImageQueue
from imageq.producers.verify import verify_webhook
from imageq.simulator.server import start_simulator_process
from imageq.worker.domain.job import Job
from imageq.worker.errors import InvalidParams, WebhookVerificationFailed
from imageq.worker.outputs.storage import mask_userinfo
from imageq.worker.webhooks.signing import webhook_id

VAR = Path("var/demo")
JOBS: list[dict[str, Any]] = [
    {"prompt": "Ancient castle under the starry sky", "aspect_ratio": "16:9", "resolution": "2K"},
    {"prompt": "A lighthouse in a storm, oil painting", "aspect_ratio": "9:16", "resolution": "1K",
     "quality": "medium"},
    {"prompt": "Isometric tiny city at dawn", "aspect_ratio": "1:1", "resolution": "1K",
     "quality": "low"},
    {"prompt": "Panorama of a desert canyon at noon", "aspect_ratio": "21:9", "resolution": "4K"},
    {"prompt": "Portrait of a red fox in fresh snow", "aspect_ratio": "4:5", "resolution": "2K"},
]  # fmt: skip
SIMULATED_EXTRAS: list[dict[str, Any]] = [
    {"prompt": "A prompt the safety review refuses sim:unsafe", "aspect_ratio": "3:2",
     "resolution": "1K"},
]  # fmt: skip
REFUSED: dict[str, Any] = {"prompt": "A square poster, as large as possible", "aspect_ratio": "1:1",
           "resolution": "4K"}  # fmt: skip


def main() -> int:
    console = Console(soft_wrap=True)
    started = time.monotonic()
    base = get_settings()
    overrides: dict[str, Any] = {}
    with ExitStack() as stack:
        if base.demo.use_configured_redis:
            if (problem := _configured_redis_problem(base)) is not None:
                console.print(shown(problem), style="red")
                return 1
            console.print(shown(f"Redis: the configured one, {_configured_redis_text(base)}"))
        else:
            server = stack.enter_context(RedisServer(data_dir=VAR / "redis", append_only=True))
            overrides["redis"] = {"broker_url": server.url(0), "store_url": server.url(1)}
            console.print(
                f"Redis: started its own on {server.url()} (AOF under {VAR / 'redis'}); "
                "IMAGEQ_DEMO__USE_CONFIGURED_REDIS=true uses IMAGEQ_REDIS__* instead"
            )
        simulated = base.api.key is None
        if simulated:
            key = "sk-demo-" + secrets.token_hex(8)
            process, url = start_simulator_process(
                ["--api-key", key, "--latency", "uniform:4,12", "--status-words", "varied"]
            )
            stack.callback(_stop, process)
            overrides["api"] = {"base_url": url, "key": key}
            overrides["polling"] = {"first_delay_s": 3, "interval_s": 1, "jitter_s": 0.3}
            console.print(f"[dim]no IMAGEQ_API__KEY: using the API simulator at {url}")
        receiver = stack.enter_context(WebhookReceiver())
        # The receiver (and the simulator's output URLs) are on loopback, which webhooks and
        # downloads may reach only with this setting; nothing else private is opened.
        overrides["webhook"] = {"allow_loopback": True}
        if not base.webhook.secrets:
            overrides["webhook"]["secrets"] = "whsec_" + b64encode(secrets.token_bytes(24)).decode()
        overrides["storage"] = {"enabled": True, "url": str((VAR / "images").resolve())}
        settings = Settings(**overrides)
        log_path = VAR / "worker.log"
        log_path.unlink(missing_ok=True)
        stack.enter_context(WorkerProcess(settings_env(overrides), log_path, name="imageq-demo"))
        console.print(f"[dim]worker started, logging to {log_path}")

        queue = ImageQueue(settings)
        job_ids = _enqueue_all(console, queue, JOBS + (SIMULATED_EXTRAS if simulated else []),
                               webhook_url=f"{receiver.base_url}/demo-hook")  # fmt: skip
        limit_s = settings.polling.deadline_s + 60
        jobs = _follow(console, queue, job_ids, limit_s=limit_s)
        secrets_ = [secret.get_secret_value() for secret in settings.webhook.secrets]
        _report(console, jobs, receiver, secrets_)
    console.print(f"\ndemo finished in {time.monotonic() - started:.1f} s")
    return 0 if all(job.is_terminal for job in jobs) else 1


def _configured_redis_problem(settings: Settings) -> str | None:
    """Why the configured Redis cannot be used, or None."""
    for url in (settings.redis.broker_url, settings.redis.store_url):
        if not is_reachable(url):
            return (
                "IMAGEQ_DEMO__USE_CONFIGURED_REDIS is set but no Redis answers at"
                f" {mask_userinfo(url)}: start it, or unset the setting to let the demo start"
                " its own"
            )
    return None


def _configured_redis_text(settings: Settings) -> str:
    """Broker and store URLs, passwords masked."""
    broker, store = settings.redis.broker_url, settings.redis.store_url
    return f"broker {mask_userinfo(broker)}, job store {mask_userinfo(store)}"


def _enqueue_all(
    console: Console, queue: ImageQueue, rows: list[dict[str, Any]], *, webhook_url: str
) -> list[str]:
    job_ids = [queue.enqueue(**row, webhook_url=webhook_url) for row in rows]
    try:
        queue.enqueue(**REFUSED)
    except InvalidParams as error:
        console.print(Text("refused at enqueue, as it should be:", "yellow"), shown(error))
    return job_ids


def _follow(
    console: Console, queue: ImageQueue, job_ids: list[str], *, limit_s: float
) -> list[Job]:
    give_up = time.monotonic() + limit_s
    jobs = [queue.get(job_id) for job_id in job_ids]
    with Live(_table(jobs), console=console, refresh_per_second=4) as live:
        while not all(_settled(job) for job in jobs) and time.monotonic() < give_up:
            time.sleep(0.25)
            jobs = [queue.get(job_id) for job_id in job_ids]
            live.update(_table(jobs))
    return jobs


def _settled(job: Job) -> bool:
    """Finished, outputs saved, and every notification out (or given up)."""
    pending = (job.downloads_state, job.callback_state, job.webhook_state)
    return job.is_terminal and "pending" not in pending


def _table(jobs: list[Job]) -> Table:
    table = Table(title="imageq demo")
    for column in ("job", "ratio", "res", "quality", "status", "polls", "seconds"):
        table.add_column(column)
    now = time.time()
    for job in jobs:
        colour = STATUS_COLOURS[job.status].terminal
        table.add_row(
            job.job_id[:15],
            job.params["aspect_ratio"],
            job.params["resolution"],
            job.params["quality"],
            f"[{colour}]{job.status}[/]",
            str(job.poll_count),
            f"{(job.finished_at or now) - job.created_at:.1f}",
        )
    return table


def _report(
    console: Console, jobs: list[Job], receiver: WebhookReceiver, secrets_: list[str]
) -> None:
    for job in jobs:
        # Prompts, URLs and the API's messages are data: `shown`, never markup.
        console.print()
        console.print(Text(job.job_id, "bold"), shown(f"{job.status}: {job.params['prompt']!r}"))
        if job.error:
            console.print(shown(f"  reason: {job.error['type']}: {job.error['message']}"))
        for output in job.outputs:
            console.print(shown(f"  {output['width']}x{output['height']}  {output['url']}"))
            saved = output.get("saved")
            if saved:
                console.print(
                    shown(
                        f"  saved by the worker to {saved['location']}"
                        f" ({saved['bytes']:,} bytes, sha256 {saved['sha256'][:16]}…)"
                    )
                )
            else:
                console.print(shown(f"  not saved: {output.get('download_error')}"))
        hooks = [
            r for r in receiver.received if r.headers.get("webhook-id") == webhook_id(job.job_id)
        ]
        verified = sum(_verifies(hook.body, hook.headers, secrets_) for hook in hooks)
        console.print(f"  webhooks received: {len(hooks)}, signature verified: {verified}")


def _verifies(body: bytes, headers: dict[str, str], secrets_: list[str]) -> bool:
    try:
        verify_webhook(body, headers, secrets_)
    except WebhookVerificationFailed:
        return False
    return True


def _stop(process: Any) -> None:
    process.terminate()
    process.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
