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

    base_url: str = Field(
        "https://aireiter.com",
        description="Base URL of the API (`https://test.aireiter.com`, or the simulator's).",
    )
    key: SecretStr | None = Field(
        None, description="API key sent as the bearer token; workers need it, producers do not."
    )
    model: str = Field("gpt_image_2_official", description="Model name sent with each job.")
    connect_timeout_s: float = Field(5.0, gt=0, description="Connect timeout of each API call.")
    read_timeout_s: float = Field(30.0, gt=0, description="Read timeout of each API call.")
    user_agent: str = Field(
        "imageq/0.1", description="User-Agent header of API calls, webhooks and downloads."
    )
    reference_images_field: str = Field(
        "image_urls",
        description="Name of the API parameter that carries reference images; the model page"
        " does not name it and its peers use `image_urls`.",
    )


class RedisSettings(BaseModel):
    """The Celery broker and the job store (may be the same server, different databases)."""

    broker_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Celery broker URL (`rediss://` for TLS, `redis://:PASSWORD@host` for auth).",
    )
    store_url: str = Field(
        "redis://127.0.0.1:6379/1", description="Redis URL of the job store (same forms)."
    )
    key_prefix: str = Field("imageq", description="Prefix of every key imageq writes in Redis.")
    record_ttl_s: int = Field(
        7 * 24 * 3600, gt=0, description="How long a job record lives after its last change."
    )
    max_connections: int = Field(
        64,
        ge=4,
        description="Job-store connection pool size per process (raised to concurrency + 4, plus"
        " the poller's most threads in poller mode).",
    )
    sentinels: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Redis Sentinel addresses (`host:port`, comma-separated); when set, the"
        " broker and the job store are on the master they name, and only the database number"
        " (the path) of `broker_url` and `store_url` is used.",
    )
    sentinel_master: str = Field(
        "imageq", description="With sentinels: the name of the monitored master."
    )
    sentinel_password: SecretStr | None = Field(
        None, description="With sentinels: the password of the sentinels themselves."
    )
    password: SecretStr | None = Field(
        None,
        description="With sentinels: the password of the Redis master and replicas (without"
        " sentinels the password goes in the URLs).",
    )
    wait_replicas: int = Field(
        0,
        ge=0,
        description="Replicas that must acknowledge each write a failover must not lose (Redis"
        " `WAIT`); 0 turns the wait off (a single server has no replica).",
    )
    wait_timeout_s: float = Field(
        1.0,
        gt=0,
        description="How long such a write waits for the replicas; past it the write fails with"
        " `WriteNotReplicated`.",
    )

    @field_validator("sentinels", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("sentinels")
    @classmethod
    def _host_and_port(cls, value: list[str]) -> list[str]:
        for address in value:
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"a sentinel address is `host:port`, not {address!r}")
        return value

    @model_validator(mode="after")
    def _no_tls_through_sentinels(self) -> RedisSettings:
        # Refused rather than quietly connecting in clear text to a master meant to be on TLS.
        tls = [url for url in (self.broker_url, self.store_url) if url.startswith("rediss:")]
        if self.sentinels and tls:
            raise ValueError("TLS (`rediss://`) through sentinels is not supported")
        return self


class PollingSettings(BaseModel):
    """When to ask the API about a submitted job, and when to give up on it."""

    first_delay_s: float = Field(15.0, ge=0, description="Delay from submit to the first poll.")
    interval_s: float = Field(4.0, gt=0, description="Delay between two polls.")
    jitter_s: float = Field(1.0, ge=0, description="Random spread (plus or minus) of each delay.")
    deadline_s: float = Field(
        180.0, gt=0, description="A job not finished this long after its submit is `timed_out`."
    )
    # p5 of the last 100 is as late as the first poll goes without raising lag p99
    # (`python -m bench.adaptive_model` shows the trade-off).
    adaptive: bool = Field(
        True,
        description="Time the first poll from recent generation times of jobs of the same"
        " quality and resolution.",
    )
    adaptive_percentile: float = Field(
        5.0, gt=0, le=100, description="The adaptive first poll goes at this percentile of them."
    )
    adaptive_min_samples: int = Field(
        10, ge=1, description="With fewer samples than this the fixed first delay is used."
    )
    adaptive_window: int = Field(
        100, ge=1, description="How many recent samples are kept per quality and resolution."
    )
    adaptive_min_s: float = Field(
        10.0,
        ge=0,
        description="The adaptive first poll is never earlier (the API's advice); a"
        " `first_delay_s` set below it lowers this bound to the first delay.",
    )
    adaptive_max_s: float = Field(
        120.0, gt=0, description="The adaptive first poll is never later than this."
    )
    # Polls come at the window's far end unless finishing is likely: on the realistic mix 0.7
    # is the lowest tried that keeps polls per job 40 % below the fixed schedule (lag p99 below
    # it too); 0.3 saves 37 % with the fixed schedule's median lag. `python -m
    # bench.adaptive_model` shows the frontier (bench/results/frontier.md).
    adaptive_chance: float = Field(
        0.7,
        gt=0,
        le=1,
        description="Adaptive schedule after the first poll: where recent jobs of the same"
        " quality and resolution finish within `interval_s` with this chance the next poll"
        " comes after `interval_s`, sooner where likelier (down to `interval_s` - `jitter_s`),"
        " later where less likely (up to `interval_s` + `jitter_s`); lower means less lag and"
        " more polls.",
    )
    adaptive_refresh_s: float = Field(
        30.0,
        ge=0,
        description="How long a worker keeps the generation times it read for the adaptive"
        " first poll and schedule before reading them again, so neither a submit nor a poll"
        " reads them each time.",
    )
    mode: Literal["countdown", "poller"] = Field(
        "countdown",
        description="`countdown`: each poll is a Celery message with a countdown; `poller`: a"
        " thread in each worker takes due polls from the poll schedule in Redis and runs them"
        " on a small pool, without a message per poll.",
    )
    poller_tick_s: float = Field(
        0.25, gt=0, description="With the poller: how often it looks for due polls."
    )
    poller_threads: int = Field(
        16,
        ge=1,
        description="With the poller: how many polls one worker runs at once when it starts,"
        " and the fewest it keeps room for (it grows from there up to `poller_max_threads`;"
        " set both alike for a fixed pool).",
    )
    poller_max_threads: int = Field(
        256,
        ge=1,
        description="With the poller: the most polls one worker runs at once; it grows towards"
        " this while due polls wait for a thread, the process is under `poller_cpu_target` and"
        " more threads poll faster, and shrinks back when idle or over that share.",
    )
    poller_cpu_target: float = Field(
        0.9,
        gt=0,
        le=1,
        description="With the poller: the share of one core (all the worker process's threads"
        " together) above which the poller runs fewer polls at once rather than more.",
    )
    poller_sizing_s: float = Field(
        1.0,
        gt=0,
        description="With the poller: how often it measures its CPU use and backlog and"
        " resizes (the length of one measuring window).",
    )
    poller_idle_s: float = Field(
        10.0,
        gt=0,
        description="With the poller: a poll thread with no poll to run for this long exits"
        " (its stack and what it held go back), so the threads a burst needed do not stay"
        " for the life of the process; the next burst starts them again.",
    )
    poller_release_memory: bool = Field(
        True,
        description="With the poller: at the end of each measuring window (`poller_sizing_s`),"
        " give the C allocator's free memory back to the system (glibc's `malloc_trim`; about"
        " 0.3 ms), so what a burst of polls freed does not stay resident.",
    )
    poller_event_loop: bool = Field(
        True,
        description="With the poller: send the polls' GETs from one thread on libcurl's multi"
        " interface (an event loop), so a poll waiting for the API's answer holds no thread;"
        " the poll threads run only the parts before and after it (off: each poll holds its"
        " thread for the whole request).",
    )
    poller_loop_threads: int = Field(
        4,
        ge=1,
        description="With the poller's event loop: the most threads that handle the API's"
        " answers to polls (the checked write, the next poll; about a millisecond each, under"
        " the GIL, so more threads would not do more of them), started as needed and gone after"
        " `poller_idle_s` idle.",
    )
    poller_notify_threads: int = Field(
        16,
        ge=0,
        description="With the poller: the most threads that send a finished job's follow-ups"
        " (first webhook attempt, callback, download and batch messages), so the poll threads go"
        " on polling; started as needed, they exit after `poller_idle_s` idle; when all are busy"
        " and 64 per thread wait, follow-ups go out as task messages instead; 0 sends them on the"
        " poll thread that finished the job.",
    )

    @model_validator(mode="after")
    def _jitter_below_delays(self) -> PollingSettings:
        if self.jitter_s >= self.interval_s:
            raise ValueError("polling.jitter_s must be smaller than polling.interval_s")
        return self

    @model_validator(mode="after")
    def _poller_pool_in_order(self) -> PollingSettings:
        if self.poller_threads > self.poller_max_threads:
            raise ValueError(
                f"polling.poller_threads ({self.poller_threads}) is the poller's starting and"
                f" least size, so it cannot exceed polling.poller_max_threads"
                f" ({self.poller_max_threads}); raise the second or lower the first"
            )
        return self

    @property
    def adaptive_floor_s(self) -> float:
        """The earliest the adaptive first poll goes: `adaptive_min_s`, or the first delay if
        one was set below it (a user who asks for a first poll at 2 s has a fast API)."""
        if "first_delay_s" in self.model_fields_set:
            return min(self.adaptive_min_s, self.first_delay_s)
        return self.adaptive_min_s

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

    base_delay_s: float = Field(
        1.0, gt=0, description="First backoff delay of submits and downloads, doubled per attempt."
    )
    max_delay_s: float = Field(30.0, gt=0, description="Cap on one backoff delay.")
    outage_window_s: float = Field(
        600.0,
        gt=0,
        description="How long an API that does not answer is waited out: submits are retried"
        " until this long after their first attempt, a job whose deadline passed meanwhile"
        " gets its last check until this long after it, and downloads are retried as long.",
    )


# Svix's schedule: at once, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (about 28 h in all).
DEFAULT_WEBHOOK_SCHEDULE_S = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


class WebhookSettings(BaseModel):
    """Signing and sending of completion webhooks (Standard Webhooks), and the addresses
    imageq may call for a URL it was given: webhooks, output downloads, reference images."""

    # Every secret signs each webhook, so receivers can rotate: add the new secret, switch
    # the receiver, then drop the old one.
    secrets: Annotated[list[SecretStr], NoDecode] = Field(
        [],
        description="Standard Webhooks signing secrets (`whsec_` + base64), comma-separated;"
        " each one signs every webhook.",
    )
    timeout_s: float = Field(10.0, gt=0, description="Timeout of one webhook attempt.")
    schedule_s: Annotated[list[float], NoDecode] = Field(
        list(DEFAULT_WEBHOOK_SCHEDULE_S),
        description="Delay before each webhook attempt, the first counted from completion,"
        " comma-separated; its length is the number of attempts.",
    )
    jitter: float = Field(
        0.1, ge=0, lt=1, description="Random spread (plus or minus, a fraction) of each delay."
    )
    allow_loopback: bool = Field(
        False,
        description="Let webhooks and downloads reach loopback (127.0.0.0/8, ::1), for local"
        " development, the demo and the tests.",
    )
    allowed_networks: Annotated[list[IPvAnyNetwork], NoDecode] = Field(
        [],
        description="Private networks (CIDRs, comma-separated) that webhooks, downloads and"
        " reference images may use; link-local and metadata addresses stay refused.",
    )

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

    enabled: bool = Field(False, description="Save each output before its URL expires.")
    url: str = Field(
        "var/images",
        description="A local directory, or an fsspec URL such as `s3://bucket/prefix`"
        " (`pip install imageq[fsspec]` and the backend's package).",
    )
    max_bytes: int = Field(
        64 * 1024 * 1024, gt=0, description="Largest output accepted, in bytes (64 MiB)."
    )
    connect_timeout_s: float = Field(5.0, gt=0, description="Connect timeout of a download.")
    read_timeout_s: float = Field(30.0, gt=0, description="Read timeout of a download.")
    total_timeout_s: float = Field(120.0, gt=0, description="Cap on one whole download.")
    max_attempts: int = Field(
        4,
        ge=1,
        description="Download attempts before the job completes with the error recorded.",
    )
    endpoint_url: str = Field(
        "",
        description="The S3-compatible endpoint of an `s3://` storage URL, e.g. a MinIO server"
        " (empty: AWS's own endpoint for the region).",
    )
    region: str = Field("", description="The region of an `s3://` storage (empty: the default).")
    access_key_id: SecretStr = Field(
        SecretStr(""),
        description="The access key id of an `s3://` storage (empty: the default AWS chain).",
    )
    secret_access_key: SecretStr = Field(
        SecretStr(""), description="The secret access key that goes with `access_key_id`."
    )
    public_url: str = Field(
        "",
        description="A base http(s) URL that serves the storage URL's objects; each saved"
        " output's record then carries `url`, this base plus its key (empty: none).",
    )


class LimitSettings(BaseModel):
    """A cap on jobs in flight against the API, shared by every worker through Redis."""

    max_in_flight: int = Field(
        0,
        ge=0,
        description="Cap on jobs in flight against the API across all workers, each holding a"
        " slot from its submit until it finishes (0: no cap).",
    )
    interactive_reserve: int = Field(
        0,
        ge=0,
        description="Slots of that cap only interactive jobs may use, so a bulk run never"
        " starves them.",
    )
    slot_wait_s: float = Field(
        2.0, gt=0, description="How long a submit waits before asking again for a slot."
    )

    @model_validator(mode="after")
    def _reserve_below_cap(self) -> LimitSettings:
        if self.max_in_flight and self.interactive_reserve >= self.max_in_flight:
            raise ValueError("limits.interactive_reserve must be below limits.max_in_flight")
        return self


class BudgetSettings(BaseModel):
    """A request budget per API key, shared by every worker through Redis, and the fleet-wide
    pause after a 429 (both off by default)."""

    requests_per_s: float = Field(
        0.0,
        ge=0,
        description="Requests per second all workers together may send with the API key"
        " (0: no budget).",
    )
    burst: int = Field(
        5, ge=1, description="Requests the budget lets through at once after an idle spell."
    )
    priority: Literal["polls", "none"] = Field(
        "polls",
        description="`polls`: polls go first (submits leave `poll_reserve` requests of the burst"
        " to polls and book less far ahead); `none`: first come, first served.",
    )
    poll_reserve: int = Field(
        1, ge=0, description="Requests of the burst only polls may use, with priority `polls`."
    )
    late_s: float = Field(
        0.05,
        ge=0,
        description="How late after its turn a request may still go (later, it takes a new"
        " turn); the budget keeps `requests_per_s x late_s + 1` requests of the burst in hand so"
        " that late requests never push a window past the rate plus the burst.",
    )
    horizon_s: float = Field(
        2.0,
        gt=0,
        description="How far ahead a waiting request may book its turn (polls; submits half of"
        " it with priority `polls`); one that would wait longer asks again later.",
    )
    pause_on_429: bool = Field(
        False,
        description="After any 429, no worker calls the key until the pause ends, then one probe"
        " goes first (on whenever `requests_per_s` is set).",
    )
    pause_base_s: float = Field(
        2.0,
        gt=0,
        description="The pause after a 429 without Retry-After, doubled on each 429 in a row.",
    )
    pause_max_s: float = Field(
        60.0, gt=0, description="The longest pause after a 429, Retry-After included."
    )
    probe_lease_s: float = Field(
        10.0,
        gt=0,
        description="How long the one probe after a pause holds the key before another worker"
        " may probe instead.",
    )
    max_deadline_extension_s: float = Field(
        300.0,
        ge=0,
        description="Most a job's poll deadline is moved, in total, for polls a pause delayed.",
    )

    @property
    def active(self) -> bool:
        """Whether workers ask Redis before each API request."""
        return self.requests_per_s > 0 or self.pause_on_429


class SweepSettings(BaseModel):
    """The sweeper, which re-sends work that a lost worker or message left overdue."""

    # With grace_s this bounds recovery: a job whose message was lost resumes within
    # grace_s + interval_s of when its work was due.
    interval_s: float = Field(5.0, gt=0, description="How often the beat runs the sweeper.")
    grace_s: float = Field(
        15.0,
        gt=0,
        description="How overdue work must be before the sweeper sends it again, and how long a"
        " worker holds a piece of work (a webhook attempt: at least its timeout + 1 s).",
    )
    batch_size: int = Field(1000, ge=1, description="Most jobs one sweep looks at.")


class ObservabilitySettings(BaseModel):
    """Metrics and logs."""

    metrics_port: int = Field(
        9108, ge=0, le=65535, description="The worker serves Prometheus metrics here (0: off)."
    )
    log_format: Literal["auto", "json", "console"] = Field(
        "auto",
        description="`json`: one JSON object a line; `console`: for people; `auto`: console on"
        " a terminal, JSON otherwise.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="The lowest level logged."
    )
    # Off by default: they cost a poll about 5 % of its CPU and say little imageq's own do not.
    log_task_lines: bool = Field(
        False, description="Also log Celery's `received` and `succeeded` lines for every task."
    )
    exporter_port: int = Field(
        9109,
        ge=0,
        le=65535,
        description="Port of `imageq metrics-exporter`, which serves the cluster-wide metrics"
        " (queue depths, jobs in flight, the in-flight cap's use, poll lag) once for all workers.",
    )


class WorkerSettings(BaseModel):
    """The Celery worker and its queues."""

    pool: Literal["threads", "prefork", "solo", "gevent"] = Field(
        "threads", description="Celery pool of the worker; threads suit its HTTP-bound work."
    )
    concurrency: int = Field(
        32, ge=1, description="Celery concurrency (see `bench/results/pools/` for threads)."
    )
    submit_queue: str = Field("imageq.submit", description="Queue of interactive jobs' submits.")
    bulk_submit_queue: str = Field("imageq.submit.bulk", description="Queue of bulk jobs' submits.")
    poll_queue: str = Field("imageq.poll", description="Queue of poll tasks.")
    download_queue: str = Field("imageq.download", description="Queue of output downloads.")
    notify_queue: str = Field(
        "imageq.notify", description="Queue of callbacks and webhook attempts."
    )
    max_countdown_s: float = Field(
        240.0,
        gt=0,
        description="Longest countdown of any message; longer waits (webhook retries hours"
        " apart) are made of hops, so no message is held past the visibility timeout.",
    )
    # Countdown tasks are fetched at once and held until due, hence the margin.
    visibility_timeout_s: int = Field(
        600,
        gt=0,
        description="A message fetched longer ago than this is handed out again; at least twice"
        " the longest countdown.",
    )
    task_events: bool = Field(
        False,
        description=(
            "Send Celery task events (received, started, succeeded, failed), so that Flower"
            " lists every task with its arguments; they cost CPU on every task (docs/flower.md)."
        ),
    )


class ScheduleSettings(BaseModel):
    """Scheduled bulk runs: the schedule file, where their manifests go, and the beat's lock."""

    file: str | None = Field(
        None,
        description="The schedule file of scheduled runs (TOML, `[[run]]` tables); unset or"
        " missing: nothing is scheduled.",
    )
    manifest_dir: str = Field(
        "var/manifests",
        description="Where each scheduled batch's manifest is written, as `{batch_id}.jsonl`.",
    )
    # The active beat renews the lock on every loop, so it must outlast a few loops.
    lock_timeout_s: int = Field(
        30,
        gt=0,
        description="Beat's lock in Redis: a standby beat takes over this long after the active"
        " one stops renewing it; at least twice the loop interval.",
    )
    loop_interval_s: float = Field(
        5.0, gt=0, description="The longest beat sleeps between two looks at the schedule."
    )

    @model_validator(mode="after")
    def _lock_outlasts_loops(self) -> ScheduleSettings:
        if self.lock_timeout_s < 2 * self.loop_interval_s:
            raise ValueError(
                "schedule.lock_timeout_s must be at least twice schedule.loop_interval_s,"
                " or the active beat loses its lock between two loops"
            )
        return self


class CostSettings(BaseModel):
    """What jobs cost, in the API's credits: recording, estimates and batch budgets."""

    query_after_completion: bool = Field(
        False,
        description="When a finished job's poll answer lacks `credits_used`, make one POST query"
        " by its task id to learn it (one more request per job).",
    )
    sample_window: int = Field(
        50,
        ge=1,
        description="How many recent jobs' credits are kept per quality and resolution.",
    )
    estimate_min_samples: int = Field(
        3,
        ge=1,
        description="Fewest recent jobs of a quality and resolution for `bulk --estimate` to"
        " call its estimate for them sound.",
    )
    default_job_credits: float = Field(
        100.0,
        ge=0,
        description="What a job is reckoned to cost, for a batch budget's in-flight reserve,"
        " while no job of its quality and resolution has reported credits.",
    )


class DemoSettings(BaseModel):
    """`make demo` only: which Redis it may use."""

    use_configured_redis: bool = Field(
        False,
        description="Let `make demo` use the Redis of `IMAGEQ_REDIS__BROKER_URL` and"
        " `IMAGEQ_REDIS__STORE_URL` instead of starting one of its own.",
    )


class Settings(BaseSettings):
    """The root of all settings. `IMAGEQ_API__KEY=...` sets `api.key`, and so on."""

    model_config = SettingsConfigDict(
        env_prefix="IMAGEQ_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    api: ApiSettings = Field(ApiSettings(), description="Where and how to reach the API.")
    redis: RedisSettings = Field(RedisSettings(), description="The broker and the job store.")
    polling: PollingSettings = Field(
        PollingSettings(), description="When to poll a job, and when to give up."
    )
    retry: RetrySettings = Field(RetrySettings(), description="Backoff for transient errors.")
    webhook: WebhookSettings = Field(
        WebhookSettings(), description="Webhook signing and sending, and the address guard."
    )
    storage: StorageSettings = Field(StorageSettings(), description="Saving outputs.")
    limits: LimitSettings = Field(LimitSettings(), description="The cap on jobs in flight.")
    budget: BudgetSettings = Field(
        BudgetSettings(), description="The request budget per API key and the pause on 429."
    )
    sweep: SweepSettings = Field(SweepSettings(), description="The sweeper.")
    observability: ObservabilitySettings = Field(
        ObservabilitySettings(), description="Metrics and logs."
    )
    worker: WorkerSettings = Field(WorkerSettings(), description="The worker and its queues.")
    schedule: ScheduleSettings = Field(ScheduleSettings(), description="Scheduled bulk runs.")
    cost: CostSettings = Field(CostSettings(), description="What jobs and batches cost.")
    demo: DemoSettings = Field(DemoSettings(), description="`make demo` only.")

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
