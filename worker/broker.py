"""kombu's Redis transport, with one client per channel instead of one per command.

kombu builds a new `redis.Redis` for every publish, every ack and every message it files as
unacknowledged (`Channel._create_client`), and redis-py's constructor fills a table of reply
callbacks each time: more CPU than the command it then sends. With a poll being a Celery
message in countdown mode, that is three constructions a poll. A `redis.Redis` over a
connection pool is safe to share between threads (each command borrows a connection of the
pool), so the channel keeps one per pool and hands it out again.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import redis
from kombu.transport import redis as kombu_redis

TRANSPORT = "imageq.worker.broker:Transport"
"""The value of Celery's `broker_transport` that selects it (set by workers at start)."""


def serves(broker_url: str) -> bool:
    """Whether this transport can carry a broker URL: Redis, with or without TLS."""
    return urlsplit(broker_url).scheme in ("redis", "rediss")


class Channel(kombu_redis.Channel):
    _shared_client: redis.Redis | None = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            # The consuming connection (BRPOP) is kombu's own business, made once per channel.
            return super()._create_client(asynchronous=True)
        client = self._shared_client
        # A reconnection gives the channel a new pool: the client follows it.
        if client is None or client.connection_pool is not self.pool:
            client = self._shared_client = super()._create_client()
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel
