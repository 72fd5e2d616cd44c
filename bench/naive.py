"""The naive design, the benchmark's reference: one Celery task per job that submits the job,
sleeps between polls until the API says it is done, then POSTs the webhook.

Run as `celery -A bench.naive worker -P gevent -c N -Q naive`: gevent's monkeypatching turns
each `time.sleep` into a greenlet switch, so one process can hold N jobs, each a sleeping
greenlet with its own `requests.Session`. It has none of imageq's guarantees (a lost worker
loses its jobs; nothing stops a second submit) and is here only to be measured against.

Settings come from `NAIVE_*` variables, read once: the worker process is started by the
benchmark, which passes them in its environment; the harness imports only the names.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any, Final

import requests
from celery import Celery
from standardwebhooks import Webhook

RUN_TASK: Final = "bench.naive.run_job"
QUEUE: Final = "naive"
MODEL: Final = "gpt_image_2_official"
_FINISHED: Final = frozenset({"completed", "failed"})
_TIMEOUT_S: Final = (5.0, 30.0)
_WEBHOOK_ATTEMPTS: Final = 3


@dataclass(frozen=True)
class NaiveConfig:
    """What the worker needs; the API key and webhook secret never travel in task messages."""

    broker_url: str
    concurrency: int
    api_url: str
    api_key: str
    webhook_secret: str
    first_delay_s: float
    interval_s: float
    jitter_s: float
    deadline_s: float

    def env(self) -> dict[str, str]:
        """The `NAIVE_*` variables that make a worker with this configuration."""
        return {f"NAIVE_{name.upper()}": str(value) for name, value in vars(self).items()}


@cache
def config() -> NaiveConfig:
    """The worker's configuration, from its environment (defaults for importing only)."""
    env = os.environ
    return NaiveConfig(
        broker_url=env.get("NAIVE_BROKER_URL", "redis://127.0.0.1:6379/2"),
        concurrency=int(env.get("NAIVE_CONCURRENCY", "100")),
        api_url=env.get("NAIVE_API_URL", "http://127.0.0.1:8000"),
        api_key=env.get("NAIVE_API_KEY", ""),
        webhook_secret=env.get("NAIVE_WEBHOOK_SECRET", ""),
        first_delay_s=float(env.get("NAIVE_FIRST_DELAY_S", "15")),
        interval_s=float(env.get("NAIVE_INTERVAL_S", "4")),
        jitter_s=float(env.get("NAIVE_JITTER_S", "1")),
        deadline_s=float(env.get("NAIVE_DEADLINE_S", "180")),
    )


def create_app(broker_url: str, *, concurrency: int) -> Celery:
    """A tiny Celery app of its own: JSON only, one queue, a gevent pool."""
    app = Celery("naive", set_as_current=False)
    app.conf.update(
        broker_url=broker_url,
        broker_connection_retry_on_startup=True,
        # kombu's default of 10 connections per channel loses acks under gevent with more
        # greenlets than that (MaxConnectionsError); keep the pool above the concurrency.
        broker_transport_options={"max_connections": concurrency + 16},
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        worker_pool="gevent",
        worker_concurrency=concurrency,
        task_default_queue=QUEUE,
    )
    return app


app = create_app(config().broker_url, concurrency=config().concurrency)


@app.task(name=RUN_TASK)  # type: ignore[untyped-decorator]  # Celery is untyped
def run_job(job_id: str, params: dict[str, Any], webhook_url: str) -> None:
    """Submit, sleep and poll until the task is done (or the deadline), then notify."""
    settings = config()
    deadline = time.time() + settings.deadline_s
    with requests.Session() as session:
        task_id = _submit(session, settings, job_id, params)
        time.sleep(_jittered(settings.first_delay_s, settings.jitter_s))
        polls, data = 0, {}
        while True:
            data = _query(session, settings, task_id)
            polls += 1
            left_s = deadline - time.time()
            if data.get("status") in _FINISHED or left_s <= 0:
                break
            time.sleep(min(_jittered(settings.interval_s, settings.jitter_s), left_s))
        word = str(data.get("status"))
        status = {"completed": "succeeded", "failed": "failed"}.get(word, "timed_out")
        payload = {
            "job_id": job_id,
            "status": status,
            "remote_task_id": task_id,
            "outputs": [output.get("url") for output in data.get("output") or []],
            "poll_count": polls,
        }
        _notify(session, settings, webhook_url, job_id, payload)


def _submit(
    session: requests.Session, settings: NaiveConfig, job_id: str, params: dict[str, Any]
) -> str:
    response = session.post(
        f"{settings.api_url}/api/openapi/submit",
        json={"model": MODEL, "params": params, "out_task_id": job_id},
        headers=_auth(settings),
        timeout=_TIMEOUT_S,
    )
    response.raise_for_status()
    task_id: str = response.json()["data"][0]["task_id"]
    return task_id


def _query(session: requests.Session, settings: NaiveConfig, task_id: str) -> dict[str, Any]:
    """The task's data, or an empty dict when this poll failed (the next one may work)."""
    try:
        response = session.get(
            f"{settings.api_url}/v1/tasks/{task_id}", headers=_auth(settings), timeout=_TIMEOUT_S
        )
        response.raise_for_status()
        data: dict[str, Any] = response.json()["data"]
    except (requests.RequestException, ValueError, KeyError):
        return {}
    return data


def _notify(
    session: requests.Session,
    settings: NaiveConfig,
    url: str,
    job_id: str,
    payload: dict[str, Any],
) -> None:
    """A signed POST, as imageq sends it (Standard Webhooks), tried a few times."""
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    msg_id = f"msg_{job_id}"
    now = datetime.now(UTC)
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(settings.webhook_secret).sign(msg_id, now, body),
    }
    for attempt in range(_WEBHOOK_ATTEMPTS):
        try:
            response = session.post(url, data=body.encode(), headers=headers, timeout=10)
            if response.ok:
                return
        except requests.RequestException:
            pass
        time.sleep(attempt + 1)


def _auth(settings: NaiveConfig) -> dict[str, str]:
    return {"Authorization": f"Bearer {settings.api_key}"}


def _jittered(delay_s: float, jitter_s: float) -> float:
    return max(0.0, delay_s + random.uniform(-jitter_s, jitter_s))
