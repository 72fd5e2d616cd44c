"""All of imageq's settings, in nested groups, from `IMAGEQ_<GROUP>__<NAME>` variables.

Nothing else in imageq reads the environment: code takes a `Settings` (or one group of it)
as an argument, and entry points get theirs from `get_settings()`.
"""

from __future__ import annotations

import base64
import binascii
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from imageq.worker.errors import InvalidSettings
from imageq.worker.webhooks.addresses import allowed_network_problem


class ApiSettings(BaseModel):
    """Where and how to reach the aireiter API."""

    base_url: str = "https://aireiter.com"
    key: SecretStr | None = None
    model: str = "gpt_image_2_official"
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(30.0, gt=0)
    user_agent: str = "imageq/0.1"
    # The model page does not name the field for reference images; peers use `image_urls`.
    reference_images_field: str = "image_urls"


class RedisSettings(BaseModel):
    """The Celery broker and the job store (may be the same server, different databases)."""

    broker_url: str = "redis://127.0.0.1:6379/0"
    store_url: str = "redis://127.0.0.1:6379/1"
    key_prefix: str = "imageq"
    record_ttl_s: int = Field(7 * 24 * 3600, gt=0)
    max_connections: int = Field(64, ge=4)


class PollingSettings(BaseModel):
    """When to ask the API about a submitted job, and when to give up on it."""

    first_delay_s: float = Field(15.0, ge=0)
    interval_s: float = Field(4.0, gt=0)
    jitter_s: float = Field(1.0, ge=0)
    deadline_s: float = Field(180.0, gt=0)
    # Adaptive first poll: at this percentile of recent generation times of the same quality
    # and resolution, within [adaptive_min_s, adaptive_max_s], once there are enough samples.
    # p5 of the last 100 is as late as it goes without raising lag p99 (`bench.adaptive_model`).
    adaptive: bool = True
    adaptive_percentile: float = Field(5.0, gt=0, le=100)
    adaptive_min_samples: int = Field(10, ge=1)
    adaptive_window: int = Field(100, ge=1)
    adaptive_min_s: float = Field(10.0, ge=0)
    adaptive_max_s: float = Field(120.0, gt=0)
    # "countdown": each poll is a Celery message with a countdown (the classic chain).
    # "poller": a thread in each worker takes due polls from the poll schedule in Redis and
    # runs them on a small thread pool, without a Celery message per poll.
    mode: Literal["countdown", "poller"] = "countdown"
    poller_tick_s: float = Field(0.25, gt=0)
    poller_threads: int = Field(16, ge=1)

    @model_validator(mode="after")
    def _jitter_below_delays(self) -> PollingSettings:
        if self.jitter_s >= self.interval_s:
            raise ValueError("polling.jitter_s must be smaller than polling.interval_s")
        return self

    @property
    def max_retry_wait_s(self) -> float:
        """The longest a poll waits on a Retry-After: a few intervals, the deadline rules."""
        return 10 * self.interval_s

    @property
    def longest_countdown_s(self) -> float:
        first = max(self.first_delay_s, self.adaptive_max_s if self.adaptive else 0.0)
        return max(first, self.interval_s) + self.jitter_s


class RetrySettings(BaseModel):
    """Backoff for transient API errors (5xx, 429, timeouts); never for final ones."""

    base_delay_s: float = Field(1.0, gt=0)
    max_delay_s: float = Field(30.0, gt=0)
    # An API that does not answer is waited out this long, not turned into an outcome: a
    # submit is retried until this long after its first attempt, and a job whose deadline
    # passed while the API was away gets its last check until this long after the deadline.
    outage_window_s: float = Field(600.0, gt=0)


# Svix's schedule: at once, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (about 28 h in all).
DEFAULT_WEBHOOK_SCHEDULE_S = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


class WebhookSettings(BaseModel):
    """Signing and sending of completion webhooks (Standard Webhooks), and the addresses
    imageq may call for a URL it was given: webhooks, output downloads, reference images."""

    # Every secret signs each webhook, so receivers can rotate: add the new secret, switch
    # the receiver, then drop the old one. Comma-separated in the environment.
    secrets: Annotated[list[SecretStr], NoDecode] = []
    timeout_s: float = Field(10.0, gt=0)
    # Delay before each attempt, the first counted from completion; its length is the number
    # of attempts. Comma-separated in the environment.
    schedule_s: Annotated[list[float], NoDecode] = list(DEFAULT_WEBHOOK_SCHEDULE_S)
    jitter: float = Field(0.1, ge=0, lt=1)
    # Beyond global addresses: loopback (development, tests), and the private networks a
    # deployment names (CIDRs, comma-separated). Link-local and metadata addresses: never.
    allow_loopback: bool = False
    allowed_networks: Annotated[list[IPvAnyNetwork], NoDecode] = []

    @model_validator(mode="before")
    @classmethod
    def _no_blanket_switch(cls, data: object) -> object:
        # The old switch opened every private address, metadata endpoints included; rather than
        # guess which of that was meant, the start stops and names the two settings by intent.
        if isinstance(data, dict) and "allow_private_targets" in data:
            raise ValueError(
                "IMAGEQ_WEBHOOK__ALLOW_PRIVATE_TARGETS is gone: remove it, and set"
                " IMAGEQ_WEBHOOK__ALLOW_LOOPBACK=true for a receiver on this machine, or"
                " IMAGEQ_WEBHOOK__ALLOWED_NETWORKS=<CIDRs> for private networks"
            )
        return data

    @field_validator("secrets", "schedule_s", "allowed_networks", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("schedule_s")
    @classmethod
    def _schedule_is_sane(cls, value: list[float]) -> list[float]:
        if not value or any(delay < 0 for delay in value):
            raise ValueError("webhook.schedule_s needs at least one delay, none negative")
        return value

    @field_validator("secrets")
    @classmethod
    def _secrets_are_standard(cls, value: list[SecretStr]) -> list[SecretStr]:
        for secret in value:
            try:
                base64.b64decode(secret.get_secret_value().removeprefix("whsec_"), validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("webhook.secrets: each is whsec_ followed by base64") from None
        return value

    @field_validator("allowed_networks")
    @classmethod
    def _networks_by_intent(cls, value: list[IPvAnyNetwork]) -> list[IPvAnyNetwork]:
        for network in value:
            if (problem := allowed_network_problem(network)) is not None:
                raise ValueError(problem)
        return value


class StorageSettings(BaseModel):
    """Saving outputs before their URLs expire (off unless enabled)."""

    enabled: bool = False
    # A local directory, or an fsspec URL such as s3://bucket/prefix (pip install imageq[fsspec]).
    url: str = "var/images"
    max_bytes: int = Field(64 * 1024 * 1024, gt=0)
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(30.0, gt=0)
    total_timeout_s: float = Field(120.0, gt=0)
    max_attempts: int = Field(4, ge=1)


class LimitSettings(BaseModel):
    """A cap on jobs in flight against the API, shared by every worker through Redis."""

    # 0 means no cap. A job holds a slot from its submit until it finishes.
    max_in_flight: int = Field(0, ge=0)
    # Slots only interactive jobs may use, so a bulk run never starves them.
    interactive_reserve: int = Field(0, ge=0)
    # How long a submit waits before asking again for a slot.
    slot_wait_s: float = Field(2.0, gt=0)

    @model_validator(mode="after")
    def _reserve_below_cap(self) -> LimitSettings:
        if self.max_in_flight and self.interactive_reserve >= self.max_in_flight:
            raise ValueError("limits.interactive_reserve must be below limits.max_in_flight")
        return self


class SweepSettings(BaseModel):
    """The sweeper, which re-sends work that a lost worker or message left overdue."""

    # How often the beat runs it; with grace_s this bounds recovery: a job whose message was
    # lost resumes within grace_s + interval_s of when its work was due.
    interval_s: float = Field(5.0, gt=0)
    grace_s: float = Field(15.0, gt=0)
    batch_size: int = Field(1000, ge=1)


class ObservabilitySettings(BaseModel):
    """Metrics and logs."""

    # The worker serves Prometheus metrics on this port (0: off).
    metrics_port: int = Field(9108, ge=0, le=65535)
    # "json": one JSON object a line; "console": for people; "auto": console on a terminal.
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Celery's two lines per task ("received", "succeeded") cost a poll about 5 % of its CPU
    # and say little that imageq's own lines do not; on for debugging.
    log_task_lines: bool = False


class WorkerSettings(BaseModel):
    """The Celery worker and its queues."""

    pool: Literal["threads", "prefork", "solo", "gevent"] = "threads"
    concurrency: int = Field(32, ge=1)
    submit_queue: str = "imageq.submit"
    bulk_submit_queue: str = "imageq.submit.bulk"
    poll_queue: str = "imageq.poll"
    download_queue: str = "imageq.download"
    notify_queue: str = "imageq.notify"
    # Longer waits (webhook retries hours apart) are made of hops of at most this length, so
    # no message is held past the visibility timeout.
    max_countdown_s: float = Field(240.0, gt=0)
    # A message fetched longer ago than this is handed out again, so it must stay well above
    # the longest countdown (countdown tasks are fetched at once and held until due).
    visibility_timeout_s: int = Field(600, gt=0)
    task_events: bool = Field(
        False,
        description=(
            "Send Celery task events (received, started, succeeded, failed), so that Flower"
            " lists every task with its arguments; they cost CPU on every task (docs/flower.md)."
        ),
    )


class ScheduleSettings(BaseModel):
    """Scheduled bulk runs: the schedule file, where their manifests go, and the beat's lock."""

    # A TOML file of [[run]] tables (see the README); unset or missing: nothing is scheduled.
    file: str | None = None
    manifest_dir: str = "var/manifests"
    # The active beat renews a lock in Redis on every loop; a standby beat takes over once it
    # has lapsed, so this must outlast a few loops.
    lock_timeout_s: int = Field(30, gt=0)
    loop_interval_s: float = Field(5.0, gt=0)

    @model_validator(mode="after")
    def _lock_outlasts_loops(self) -> ScheduleSettings:
        if self.lock_timeout_s < 2 * self.loop_interval_s:
            raise ValueError(
                "schedule.lock_timeout_s must be at least twice schedule.loop_interval_s,"
                " or the active beat loses its lock between two loops"
            )
        return self


class Settings(BaseSettings):
    """The root of all settings. `IMAGEQ_API__KEY=...` sets `api.key`, and so on."""

    model_config = SettingsConfigDict(
        env_prefix="IMAGEQ_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    api: ApiSettings = ApiSettings()
    redis: RedisSettings = RedisSettings()
    polling: PollingSettings = PollingSettings()
    retry: RetrySettings = RetrySettings()
    webhook: WebhookSettings = WebhookSettings()
    storage: StorageSettings = StorageSettings()
    limits: LimitSettings = LimitSettings()
    sweep: SweepSettings = SweepSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    worker: WorkerSettings = WorkerSettings()
    schedule: ScheduleSettings = ScheduleSettings()

    @model_validator(mode="after")
    def _visibility_above_countdowns(self) -> Settings:
        longest = max(
            self.polling.longest_countdown_s, self.retry.max_delay_s, self.worker.max_countdown_s
        )
        if self.worker.visibility_timeout_s < 2 * longest:
            raise ValueError(
                f"worker.visibility_timeout_s ({self.worker.visibility_timeout_s}) must be at least"
                f" twice the longest countdown ({longest:g} s), or held messages run twice"
            )
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once; `InvalidSettings` names each invalid variable."""
    try:
        return Settings()
    except ValidationError as error:
        raise InvalidSettings(describe_invalid(error)) from None


def describe_invalid(error: ValidationError) -> str:
    """One line per invalid setting, named as its environment variable."""
    lines = []
    for problem in error.errors():
        path = [str(part) for part in problem["loc"]]
        name = "IMAGEQ_" + "__".join(path).upper() if path else "the settings as a whole"
        lines.append(f"{name}: {problem['msg'].removeprefix('Value error, ')}")
    return "invalid imageq settings:\n  " + "\n  ".join(lines)
