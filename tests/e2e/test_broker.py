"""imageq's Redis transport: kombu's, with one client per channel (worker/broker.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kombu.connection import Connection
from kombu.entity import Exchange, Queue

from imageq.config import Settings
from imageq.devenv.redis_server import RedisServer
from imageq.worker.app import celery_config
from imageq.worker.broker import SENTINEL_TRANSPORT, TRANSPORT, transport_for


@pytest.fixture
def connection(redis_server: RedisServer) -> Iterator[Connection]:
    with Connection(redis_server.url(5), transport=TRANSPORT) as conn:
        yield conn
        channel: Any = conn.default_channel
        channel.client.flushdb()


def test_one_client_per_channel_and_pool(connection: Connection) -> None:
    channel: Any = connection.default_channel
    first = channel._create_client()
    assert channel._create_client() is first
    assert first.connection_pool is channel.pool
    # The consuming (BRPOP) client is kombu's own, on its own pool.
    assert channel._create_client(asynchronous=True) is not first
    channel._pool = None  # what kombu does when it drops its pools on a connection error
    renewed = channel._create_client()
    assert renewed is not first
    assert renewed.connection_pool is channel.pool


def test_messages_go_through_and_acks_clear_the_unacked_store(connection: Connection) -> None:
    queue = Queue("broker-test", Exchange("broker-test", type="direct"), "broker-test")
    with connection.Producer() as producer:
        for n in range(3):
            producer.publish(
                {"n": n},
                exchange=queue.exchange,
                routing_key="broker-test",
                declare=[queue],
                serializer="json",
            )
    received: list[int] = []
    simple = connection.SimpleQueue(queue)
    try:
        for _ in range(3):
            message = simple.get(timeout=5)
            received.append(message.payload["n"])
            message.ack()
    finally:
        simple.close()
    assert sorted(received) == [0, 1, 2]
    channel: Any = connection.default_channel
    client = channel.client
    assert client.hlen("unacked") == 0
    assert client.zcard("unacked_index") == 0


def test_only_workers_take_it(settings: Settings) -> None:
    """Producers, beat and Flower keep kombu's own transport and URL scheme (Flower chooses how
    to read queue lengths by it); a worker sets it at start, for Redis brokers only."""
    assert "broker_transport" not in celery_config(settings)
    assert transport_for("redis://127.0.0.1:6379/0") == TRANSPORT
    assert transport_for("rediss://:pw@redis.example:6380/0") == TRANSPORT
    sentinels = "sentinel://127.0.0.1:26379/0;sentinel://127.0.0.1:26380/0"
    assert transport_for(sentinels) == SENTINEL_TRANSPORT
    assert transport_for("amqp://guest@127.0.0.1:5672//") is None
