"""kombu's Redis transport, with one client per channel instead of one per command.

kombu builds a new `redis.Redis` for every publish, every ack and every message it files as
unacknowledged (`Channel._create_client`), and redis-py's constructor fills a table of reply
callbacks each time: more CPU than the command it then sends. With a poll being a Celery
message in countdown mode, that is three constructions a poll. A `redis.Redis` over a
connection pool is safe to share between threads (each command borrows a connection of the
pool), so the channel keeps one per pool and hands it out again. The same holds for kombu's
Sentinel channel, whose pool asks the sentinels for the master on each new connection.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import redis
from kombu.transport import redis as kombu_redis

from imageq.worker.held_payload import share_strings

TRANSPORT = "imageq.worker.broker:Transport"
SENTINEL_TRANSPORT = "imageq.worker.broker:SentinelTransport"
_TRANSPORTS = {"redis": TRANSPORT, "rediss": TRANSPORT, "sentinel": SENTINEL_TRANSPORT}


def transport_for(broker_url: str) -> str | None:
    """The value of Celery's `broker_transport` that carries this URL on a client per channel
    (set by workers at start), or None for a scheme kombu's own transport keeps."""
    return _TRANSPORTS.get(urlsplit(broker_url).scheme)


class _SharedClient(kombu_redis.Channel):
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


class Channel(_SharedClient):
    pass


class SentinelChannel(_SharedClient, kombu_redis.SentinelChannel):
    pass


class _SharedStrings(kombu_redis.Transport):
    def _deliver(self, message: Any, queue: str) -> None:
        # Held until due if it has a countdown: its repeated strings shared (held_payload.py).
        super()._deliver(share_strings(message), queue)


class Transport(_SharedStrings):
    Channel = Channel


class SentinelTransport(_SharedStrings, kombu_redis.SentinelTransport):
    Channel = SentinelChannel
