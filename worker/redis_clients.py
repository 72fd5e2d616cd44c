"""The one way imageq reaches Redis: clients for the job store and the broker's server, and the
connection settings of Celery's broker and of redbeat, all from the Redis settings alone.

Two forms. Without sentinels, `broker_url` and `store_url` name the servers (`redis://` or
`rediss://`, the password in the URL). With sentinels, the master is whatever the sentinels say
it is at the moment of each new connection: a failover drops the open connections, and the next
one reaches the new master, with no restart. Then only the database number (the URL's path) of
`broker_url` and `store_url` counts, the Redis password is `password` and the sentinels' own is
`sentinel_password`.

kombu and redbeat build their clients themselves, from the URL and options made here; redis-py's
`Sentinel` is what all three use underneath.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs, quote, unquote, urlsplit, urlunsplit

import redis
from redis.sentinel import Sentinel

from imageq.config import RedisSettings

Role = Literal["broker", "store"]
"""Which of the two Redis databases: Celery's broker, or the job store."""

_SENTINEL_TIMEOUT_S = 5.0


def redis_client(settings: RedisSettings, role: Role, **options: Any) -> redis.Redis:
    """A client of the broker's or the job store's database; `options` are redis-py's
    connection keywords (timeouts, `max_connections`, `retry` ...)."""
    url = _url(settings, role)
    if not settings.sentinels:
        return redis.Redis.from_url(url, **options)
    sentinel = Sentinel(
        sentinel_addresses(settings),
        sentinel_kwargs=_sentinel_kwargs(settings, options),
        **options,
    )
    client: redis.Redis = sentinel.master_for(
        settings.sentinel_master,
        db=database(url),
        password=_secret(settings.password),
    )
    return client


def describe(settings: RedisSettings, role: Role) -> str:
    """Where a role's Redis is, for messages: no user name, no password."""
    url = _url(settings, role)
    if settings.sentinels:
        via = ",".join(settings.sentinels)
        return f"sentinel master {settings.sentinel_master!r} via {via}, db {database(url)}"
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


@dataclass(frozen=True)
class BrokerConnection:
    """Celery's `broker_url`, its `broker_transport_options` and (for TLS) `broker_use_ssl`."""

    url: str
    transport_options: dict[str, Any] = field(default_factory=dict)
    use_ssl: dict[str, Any] | None = None


def broker_connection(settings: RedisSettings) -> BrokerConnection:
    """kombu's form of the broker: the URL as given, or `sentinel://h1:p1/db;sentinel://h2:p2/db`
    (the Redis password on the first, where kombu reads it) with the master's name and the
    sentinels' password in the transport options."""
    url = settings.broker_url
    if not settings.sentinels:
        return BrokerConnection(url, use_ssl=_broker_tls(url))
    db = database(url)
    password = _secret(settings.password)
    auth = f":{quote(password, safe='')}@" if password else ""
    urls = [
        f"sentinel://{auth if index == 0 else ''}{address}/{db}"
        for index, address in enumerate(settings.sentinels)
    ]
    options = {
        "master_name": settings.sentinel_master,
        "sentinel_kwargs": _sentinel_kwargs(settings, {}),
    }
    return BrokerConnection(";".join(urls), transport_options=options)


def redbeat_connection(settings: RedisSettings) -> dict[str, Any]:
    """Celery settings for redbeat's Redis (the broker's database): its `redis-sentinel://`
    form with sentinels. The credentials go in the options, not the URL: Celery masks a
    `password` key when it shows the configuration (`celery inspect conf`, Flower's worker
    pages), not a URL's."""
    url = settings.broker_url
    options: dict[str, Any] = {"socket_timeout": 10}
    if settings.sentinels:
        return {
            "redbeat_redis_url": "redis-sentinel://",
            "redbeat_redis_options": options
            | {
                "sentinels": sentinel_addresses(settings),
                "service_name": settings.sentinel_master,
                "db": database(url),
                "password": _secret(settings.password),
                "sentinel_kwargs": _sentinel_kwargs(settings, {}),
            },
        }
    parts = urlsplit(url)
    found = {"username": parts.username, "password": parts.password}
    credentials = {name: unquote(value) for name, value in found.items() if value}
    without = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return {
        "redbeat_redis_url": without,
        "redbeat_redis_options": options | {"socket_connect_timeout": 5, **credentials},
    }


def sentinel_addresses(settings: RedisSettings) -> list[tuple[str, int]]:
    """The sentinels as (host, port) pairs."""
    pairs = (address.rpartition(":") for address in settings.sentinels)
    return [(host.strip("[]"), int(port)) for host, _, port in pairs]


def database(url: str) -> int:
    """The database number of a Redis URL (its path; 0 when it has none)."""
    path = urlsplit(url).path.strip("/")
    return int(path) if path.isdigit() else 0


def secret_values(settings: RedisSettings) -> list[str]:
    """The Redis passwords, as they could appear in text (for the log redactor)."""
    values = [urlsplit(url).password for url in (settings.broker_url, settings.store_url)]
    values += [_secret(settings.password), _secret(settings.sentinel_password)]
    return [value for value in values if value]


def _url(settings: RedisSettings, role: Role) -> str:
    return settings.broker_url if role == "broker" else settings.store_url


def _sentinel_kwargs(settings: RedisSettings, options: dict[str, Any]) -> dict[str, Any]:
    # Given explicitly, redis-py takes no socket options from the Redis side for the sentinels.
    kwargs: dict[str, Any] = {
        "socket_timeout": options.get("socket_timeout", _SENTINEL_TIMEOUT_S),
        "socket_connect_timeout": options.get("socket_connect_timeout", _SENTINEL_TIMEOUT_S),
    }
    password = _secret(settings.sentinel_password)
    if password:
        kwargs["password"] = password
    return kwargs


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


def _broker_tls(broker_url: str) -> dict[str, Any] | None:
    """A `rediss://` broker URL without `ssl_cert_reqs` verifies the server's certificate, as
    redis-py does for the job store; kombu alone would fall back to not checking it."""
    parts = urlsplit(broker_url)
    if parts.scheme != "rediss" or "ssl_cert_reqs" in parse_qs(parts.query):
        return None
    return {"ssl_cert_reqs": ssl.CERT_REQUIRED}
