"""The one way to Redis (worker/redis_clients.py): URLs and Sentinel settings to redis-py
clients, kombu's broker URL and options, and redbeat's; no server needed (clients connect only
on their first command)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError
from redbeat.schedulers import get_redis
from redis.sentinel import SentinelConnectionPool

from imageq.config import RedisSettings, Settings
from imageq.worker.app import celery_config, create_app
from imageq.worker.logs import secret_values
from imageq.worker.redis_clients import (
    broker_connection,
    database,
    describe,
    redbeat_connection,
    redis_client,
)
from imageq.worker.store.job_store import DURABLE_FIELDS, survives_failover

REDIS_PW = "redis/pw@1"
SENTINEL_PW = "sentinel-pw-2"
SENTINELS = "10.0.0.1:26379, 10.0.0.2:26380,10.0.0.3:26381"


def sentinel_settings(**changes: Any) -> RedisSettings:
    values: dict[str, Any] = {
        "broker_url": "redis://ignored/2",
        "store_url": "redis://ignored/3",
        "sentinels": SENTINELS,
        "sentinel_master": "prod",
        "password": REDIS_PW,
        "sentinel_password": SENTINEL_PW,
        **changes,
    }
    return RedisSettings(**values)


def test_sentinels_are_split_and_checked() -> None:
    """A comma-separated list of host:port; anything else is refused, naming the value."""
    assert sentinel_settings().sentinels == ["10.0.0.1:26379", "10.0.0.2:26380", "10.0.0.3:26381"]
    with pytest.raises(ValidationError, match="host:port"):
        Settings(_env_file=None, redis={"sentinels": "10.0.0.1"})


def test_tls_through_sentinels_is_refused_not_dropped() -> None:
    """A `rediss://` URL with sentinels would reach the master in clear text: refused."""
    with pytest.raises(ValidationError, match="TLS"):
        sentinel_settings(store_url="rediss://sentinel/1")


@pytest.mark.parametrize(
    ("url", "db"), [("redis://h/0", 0), ("redis://h:1/7", 7), ("redis://h", 0), ("redis://h/", 0)]
)
def test_database_is_the_urls_path(url: str, db: int) -> None:
    """The database number of a URL, 0 without one."""
    assert database(url) == db


def test_without_sentinels_the_urls_are_used_as_given() -> None:
    """The plain form: redis-py's client from the URL, kombu's URL unchanged, no options."""
    settings = RedisSettings(store_url="redis://:pw@127.0.0.1:7001/4")
    kwargs = redis_client(settings, "store", socket_timeout=3).connection_pool.connection_kwargs
    assert (kwargs["port"], kwargs["db"], kwargs["password"]) == (7001, 4, "pw")
    assert kwargs["socket_timeout"] == 3
    broker = broker_connection(settings)
    assert (broker.url, broker.transport_options, broker.use_ssl) == (settings.broker_url, {}, None)
    assert describe(settings, "store") == "redis://127.0.0.1:7001/4"


def test_sentinel_client_asks_the_sentinels_for_the_master() -> None:
    """With sentinels: a Sentinel-managed pool for the master, the role's database, the Redis
    password on the master's side and the sentinels' own on theirs."""
    client = redis_client(sentinel_settings(), "store", socket_timeout=3, max_connections=9)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "prod"
    assert pool.max_connections == 9
    kwargs = pool.connection_kwargs
    assert (kwargs["db"], kwargs["password"], kwargs["socket_timeout"]) == (3, REDIS_PW, 3)
    sentinels = pool.sentinel_manager.sentinels
    assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [26379, 26380, 26381]
    assert {s.connection_pool.connection_kwargs["password"] for s in sentinels} == {SENTINEL_PW}
    broker = redis_client(sentinel_settings(), "broker").connection_pool.connection_kwargs
    assert broker["db"] == 2


def test_kombu_gets_every_sentinel_and_the_master_name() -> None:
    """kombu's form: `sentinel://` URLs joined by `;`, the Redis password on the first (where
    kombu reads it), the master's name and the sentinels' password in the transport options."""
    broker = broker_connection(sentinel_settings())
    assert broker.url == (
        "sentinel://:redis%2Fpw%401@10.0.0.1:26379/2;"
        "sentinel://10.0.0.2:26380/2;sentinel://10.0.0.3:26381/2"
    )
    assert broker.transport_options["master_name"] == "prod"
    assert broker.transport_options["sentinel_kwargs"]["password"] == SENTINEL_PW
    app = create_app(Settings(_env_file=None, redis=sentinel_settings().model_dump()))
    connection = app.connection_for_write()  # no network: kombu connects lazily
    try:
        assert connection.transport_cls == "sentinel"
        assert connection.password == REDIS_PW
        assert len(connection.alt) == 3
        assert connection.transport_options["master_name"] == "prod"
        assert REDIS_PW not in connection.as_uri()
    finally:
        connection.release()
        app.close()


def test_celery_keeps_the_sentinel_options_beside_its_own() -> None:
    """The visibility timeout and pool size still reach the transport; nothing shown by
    Celery (`inspect conf`, Flower) holds a password."""
    settings = Settings(_env_file=None, redis=sentinel_settings().model_dump())
    config = celery_config(settings)
    options = config["broker_transport_options"]
    assert {"master_name", "sentinel_kwargs", "visibility_timeout", "max_connections"} <= set(
        options
    )
    shown = json.dumps(create_app(settings).conf.table(with_defaults=False), default=repr)
    for secret in (REDIS_PW, SENTINEL_PW, "redis%2Fpw%401"):
        assert secret not in shown


def test_redbeat_connects_through_the_sentinels() -> None:
    """redbeat's own Sentinel form: `redis-sentinel://` with the sentinels, the master's name
    (its `service_name`), the database and both passwords in the options."""
    settings = Settings(_env_file=None, redis=sentinel_settings().model_dump())
    config = redbeat_connection(settings.redis)
    assert config["redbeat_redis_url"].startswith("redis-sentinel")
    client = get_redis(create_app(settings))
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "prod"
    assert (pool.connection_kwargs["db"], pool.connection_kwargs["password"]) == (2, REDIS_PW)
    sentinel_kwargs = pool.sentinel_manager.sentinel_kwargs
    assert sentinel_kwargs["password"] == SENTINEL_PW


def test_every_redis_password_is_redacted_and_never_described() -> None:
    """Both passwords go to the log redactor; `describe` and the settings' repr show neither."""
    settings = Settings(_env_file=None, redis=sentinel_settings().model_dump())
    assert {REDIS_PW, SENTINEL_PW} <= set(secret_values(settings))
    for text in (describe(settings.redis, "store"), repr(settings.redis)):
        assert REDIS_PW not in text
        assert SENTINEL_PW not in text
    assert describe(settings.redis, "store") == (
        "sentinel master 'prod' via 10.0.0.1:26379,10.0.0.2:26380,10.0.0.3:26381, db 3"
    )


@pytest.mark.parametrize(
    ("create", "changes", "durable"),
    [
        (True, {}, True),
        (False, {"status": "succeeded", "finished_at": 1.0}, True),
        (False, {"remote_task_id": "t", "submit_sent_until": 9.0}, True),
        (False, {"submit_sent_until": 9.0}, True),
        (False, {"webhook_state": "sending", "webhook_lease_until": 3.0}, True),
        (False, {"downloads_state": "done"}, True),
        (False, {"poll_count": 3, "poll_token": 4, "next_poll_at": 5.0}, False),
        (False, {"submit_attempts": 2, "submit_lease_until": 5.0}, False),
    ],
)
def test_which_writes_must_survive_a_failover(
    create: bool, changes: dict[str, Any], durable: bool
) -> None:
    """Creation and the fields in DURABLE_FIELDS wait for replicas; a poll's bookkeeping not."""
    assert survives_failover(create=create, changes=changes) is durable
    assert "status" in DURABLE_FIELDS


def test_flower_reads_the_queues_through_the_sentinels() -> None:
    """Flower builds its queue reader from the app's broker URI and transport options, as its
    Broker page does: a Sentinel reader for the master, with the Redis password. (It reads
    database 0 whatever the URL says: docs/operating.md tells to keep the broker there.)"""
    broker = pytest.importorskip("flower.utils.broker")  # the `ops` extra
    redis_settings = sentinel_settings(broker_url="redis://sentinel/0")
    settings = Settings(_env_file=None, redis=redis_settings.model_dump())
    app = create_app(settings)
    with app.connection() as connection:
        uri = connection.as_uri(include_password=True)
    options = app.conf.broker_transport_options
    reader = broker.Broker(uri, broker_options=options, broker_use_ssl=None)
    assert isinstance(reader, broker.RedisSentinel)
    assert reader.master_name == "prod"
    kwargs = reader.redis.connection_pool.connection_kwargs
    assert kwargs["password"] == REDIS_PW
    assert kwargs.get("db", 0) == 0
    app.close()
