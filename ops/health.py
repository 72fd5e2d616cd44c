"""Health checks: the broker, the job store, the API, the workers and the scheduled runs, each
bounded in time.

`run_checks(settings)` runs them side by side; `imageq health [--json] [--skip NAME]
[--timeout S]` (cli/checks.py) prints them and exits 0 when every check passed and 1 when any
failed, so it serves as a container healthcheck. No detail holds the API key or a Redis
password.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Final
from urllib.parse import urlsplit

import redis
from kombu.exceptions import OperationalError
from pydantic import ValidationError
from redis.backoff import NoBackoff
from redis.retry import Retry

from imageq.config import Settings, get_settings
from imageq.producers.scheduling.schedule_health import schedule_verdict
from imageq.producers.scheduling.schedule_records import ScheduleRecords
from imageq.worker.app import create_app
from imageq.worker.errors import ApiRejected, ApiUnavailable, AuthenticationFailed, RateLimited
from imageq.worker.logs import secret_values
from imageq.worker.redis_clients import Role, describe, redis_client
from imageq.worker.upstream.client import ApiClient

DEFAULT_TIMEOUT_S: Final = 5.0
# How long to collect ping replies: Celery's own default. A worker answers from its consumer
# thread, busy or not, so a live one replies well within it.
PING_WINDOW_S: Final = 1.0
HEALTHY: Final = 0
UNHEALTHY: Final = 1


class CheckName(StrEnum):
    """The checks, in the order they are reported."""

    BROKER = "broker"  # the Celery broker answers PING
    STORE = "store"  # the job store answers PING
    API = "api"  # the API answers an authenticated query and accepts the key
    WORKERS = "workers"  # at least one worker answers a Celery ping
    SCHEDULES = "schedules"  # every scheduled run can run: see schedule_health.schedule_verdict


@dataclass(frozen=True)
class Check:
    """One check's outcome; `detail` says what was seen, and never holds a secret."""

    name: str
    ok: bool
    detail: str
    duration_s: float


Probe = Callable[[Settings, float], tuple[bool, str]]


def run_checks(
    settings: Settings, *, skip: Collection[str] = (), timeout_s: float = DEFAULT_TIMEOUT_S
) -> list[Check]:
    """Every check not skipped, run at once; each gives up after about `timeout_s`."""
    unknown = set(skip) - set(CheckName)
    if unknown:
        raise ValueError(f"no such check: {', '.join(sorted(unknown))}")
    names = [name for name in CheckName if name not in skip]
    with ThreadPoolExecutor(max_workers=max(len(names), 1)) as pool:
        futures = [pool.submit(_timed, name, settings, timeout_s) for name in names]
    secrets = secret_values(settings)
    return [_redacted(future.result(), secrets) for future in futures]


def evaluate(*, skip: Collection[str] = (), timeout_s: float = DEFAULT_TIMEOUT_S) -> list[Check]:
    """`run_checks` on the process's settings; settings that do not load are a failed check."""
    try:
        settings = get_settings()
    except ValidationError as error:
        # Without the input values: a refused secret would otherwise be printed back.
        problems = "; ".join(
            f"{'.'.join(map(str, item['loc'])) or 'settings'}: {item['msg']}"
            for item in error.errors(include_input=False, include_url=False)
        )
        return [Check("settings", False, problems, 0.0)]
    return run_checks(settings, skip=skip, timeout_s=timeout_s)


def exit_code(checks: Sequence[Check]) -> int:
    """HEALTHY (0) when every check passed, UNHEALTHY (1) otherwise."""
    return HEALTHY if all(check.ok for check in checks) else UNHEALTHY


def render(checks: Sequence[Check], *, as_json: bool) -> str:
    """The report: one JSON object, or one line per check and a verdict."""
    healthy = exit_code(checks) == HEALTHY
    if as_json:
        return json.dumps({"healthy": healthy, "checks": [asdict(check) for check in checks]})
    lines = [
        f"{'ok' if check.ok else 'FAIL':<5}{check.name:<9}{check.duration_s:6.3f} s  {check.detail}"
        for check in checks
    ]
    lines.append("healthy" if healthy else "unhealthy")
    return "\n".join(lines)


def check_broker(settings: Settings, timeout_s: float) -> tuple[bool, str]:
    return _ping_redis(settings, "broker", timeout_s)


def check_store(settings: Settings, timeout_s: float) -> tuple[bool, str]:
    return _ping_redis(settings, "store", timeout_s)


def check_api(settings: Settings, timeout_s: float) -> tuple[bool, str]:
    """Query a made-up `out_task_id`: "no such task" means reachable and the key accepted."""
    if settings.api.key is None:
        return False, "IMAGEQ_API__KEY is not set"
    api = settings.api.model_copy(
        update={
            "connect_timeout_s": min(settings.api.connect_timeout_s, timeout_s),
            "read_timeout_s": min(settings.api.read_timeout_s, timeout_s),
        }
    )
    where = _origin(settings.api.base_url)
    client = ApiClient(api, max_connections=1)
    try:
        client.find_by_out_task_id(f"imageq-health-{uuid.uuid4().hex}")
    except AuthenticationFailed as error:
        return False, f"{where} refused the key (HTTP {error.http_status})"
    except RateLimited:
        return True, f"{where} answered 429: reachable, rate limited"
    except ApiUnavailable as error:
        return False, f"{where} unavailable: {error.message}"
    except ApiRejected as error:
        # Any refusal other than 401/403 comes after the key was checked.
        return True, f"{where} reachable, key accepted (HTTP {error.http_status}: {error.message})"
    finally:
        client.close()
    return True, f"{where} reachable, key accepted"


def check_workers(settings: Settings, timeout_s: float) -> tuple[bool, str]:
    """A Celery ping over the broker: at least one worker must answer."""
    try:
        names = ping_workers(settings, timeout_s)
    except (OperationalError, OSError) as error:
        return False, f"broker unreachable: {type(error).__name__}: {error}"
    if not names:
        return False, f"no worker answered a ping within {min(PING_WINDOW_S, timeout_s):g} s"
    shown = ", ".join(names[:5]) + (", …" if len(names) > 5 else "")
    return True, f"{len(names)} worker(s) answered: {shown}"


def check_schedules(settings: Settings, timeout_s: float) -> tuple[bool, str]:
    """Scheduled runs the workers cannot run: a failed last tick, a live worker without the
    scheduler's schedule file, or no beat publishing the schedule."""
    client = redis_client(
        settings.redis,
        "store",
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
    )
    records = ScheduleRecords(
        client, prefix=settings.redis.key_prefix, ttl_s=settings.redis.record_ttl_s
    )
    try:
        published = records.published_schedule()
        names = [run["name"] for run in (published or {}).get("runs", [])]
        if published is None:
            names = records.ticked_runs()
        last = {name: next(iter(records.ticks(name, limit=1)), None) for name in names}
        reports = records.worker_reports()
    except redis.RedisError as error:
        return False, f"{describe(settings.redis, 'store')}: {type(error).__name__}: {error}"
    finally:
        client.close()
    try:
        live: list[str] | None = ping_workers(settings, timeout_s) if names else []
    except (OperationalError, OSError):
        live = None  # the broker check says why
    return schedule_verdict(published, last, reports, live, now=time.time())


def ping_workers(settings: Settings, timeout_s: float) -> list[str]:
    """The names of the workers that answer a Celery ping over the broker, sorted."""
    app = create_app(settings)
    try:
        with app.connection_for_write(
            connect_timeout=timeout_s,
            transport_options={"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s},
        ) as connection:
            # Bounded here, since publishing the ping would otherwise retry for seconds.
            connection.ensure_connection(
                max_retries=1, interval_start=0, interval_step=0, timeout=timeout_s
            )
            replies = app.control.ping(timeout=min(PING_WINDOW_S, timeout_s), connection=connection)
    finally:
        app.close()
    return sorted(name for reply in replies for name in reply)


PROBES: Final[dict[CheckName, Probe]] = {
    CheckName.BROKER: check_broker,
    CheckName.STORE: check_store,
    CheckName.API: check_api,
    CheckName.WORKERS: check_workers,
    CheckName.SCHEDULES: check_schedules,
}


def _timed(name: CheckName, settings: Settings, timeout_s: float) -> Check:
    started = time.monotonic()
    try:
        ok, detail = PROBES[name](settings, timeout_s)
    except Exception as error:  # a health check reports every failure, expected or not
        ok, detail = False, f"{type(error).__name__}: {error}"
    return Check(name.value, ok, detail, round(time.monotonic() - started, 3))


def _ping_redis(settings: Settings, role: Role, timeout_s: float) -> tuple[bool, str]:
    # No retries: redis-py's default three would multiply the timeout.
    where = describe(settings.redis, role)
    client = redis_client(
        settings.redis,
        role,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        client.ping()
    except redis.RedisError as error:
        return False, f"{where}: {type(error).__name__}: {error}"
    finally:
        client.close()
    return True, f"{where}: PONG"


def _origin(url: str) -> str:
    """scheme://host:port/path of a URL, without its user and password."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


def _redacted(check: Check, secrets: Sequence[str]) -> Check:
    detail = check.detail
    for secret in secrets:
        detail = detail.replace(secret, "***")
    return Check(check.name, check.ok, detail, check.duration_s)
