"""Security settings checked with no server: rediss URLs reach kombu and the store as TLS that
verifies certificates, the pickle canary that tests/e2e/test_security.py relies on fires, and
the address guard's settings say what they allow by intent.
"""

from __future__ import annotations

import pickle
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import ValidationError

from imageq.config import Settings
from imageq.config.settings import describe_invalid
from imageq.worker.app import celery_config, create_app
from imageq.worker.runtime import connect_store
from imageq.worker.webhooks.addresses import TargetPolicy
from imageq.worker.webhooks.guard import target_policy


@dataclass(frozen=True)
class Canary:
    """Touches `path` when unpickled: proof that something deserialized the message."""

    path: Path

    def __reduce__(self) -> tuple[Any, ...]:
        return Path.touch, (self.path,)


def test_canary_fires_when_unpickled(tmp_path: Path) -> None:
    """The canary works: unpickling it creates its file (so its absence in the e2e test means
    something)."""
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(Canary(probe)))  # noqa: S301  # our own bytes, to test the canary
    assert probe.exists()


# -- TLS --------------------------------------------------------------------------------------

TLS_URL = "rediss://:pw@redis.example:6380/{db}?ssl_cert_reqs=required"


def test_rediss_url_is_kept_and_verifies_certificates() -> None:
    """A rediss URL with ssl_cert_reqs=required reaches Celery/kombu and the store as TLS."""
    settings = Settings(
        _env_file=None,
        api={"key": "k"},
        redis={"broker_url": TLS_URL.format(db=0), "store_url": TLS_URL.format(db=1)},
    )
    assert celery_config(settings)["broker_url"] == TLS_URL.format(db=0)
    app = create_app(settings)  # no network: kombu connects lazily
    connection = app.connection_for_write()
    try:
        # Outside a worker, kombu's own transport and URL scheme (workers: worker/broker.py)
        assert connection.transport_cls == "rediss"
        assert connection.ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
        assert connection.as_uri() == "rediss://:**@redis.example:6380/0"
    finally:
        connection.release()
        app.close()
    pool = connect_store(settings)._redis.connection_pool
    assert pool.connection_class is redis.SSLConnection
    assert pool.connection_kwargs["ssl_cert_reqs"] == "required"


def test_bare_rediss_url_still_verifies_the_broker_certificate() -> None:
    """`rediss://host` without options verifies the broker's certificate, as the store does."""
    url = "rediss://:pw@redis.example:6380/{db}"
    settings = Settings(
        _env_file=None,
        api={"key": "k"},
        redis={"broker_url": url.format(db=0), "store_url": url.format(db=1)},
    )
    pool = connect_store(settings)._redis.connection_pool
    assert pool.connection_kwargs.get("ssl_cert_reqs", "required") == "required"
    app = create_app(settings)
    connection = app.connection_for_write()
    try:
        assert connection.ssl["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    finally:
        connection.release()
        app.close()


# -- the address guard's settings -------------------------------------------------------------


def test_old_blanket_switch_stops_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """IMAGEQ_WEBHOOK__ALLOW_PRIVATE_TARGETS opened metadata endpoints too: it is refused at
    start, true or false, with a message naming the two settings that replace it."""
    for value in ("true", "false"):
        monkeypatch.setenv("IMAGEQ_WEBHOOK__ALLOW_PRIVATE_TARGETS", value)
        with pytest.raises(ValidationError) as caught:
            Settings(_env_file=None)
        message = describe_invalid(caught.value)
        assert "IMAGEQ_WEBHOOK__ALLOW_PRIVATE_TARGETS is gone" in message
        assert "IMAGEQ_WEBHOOK__ALLOW_LOOPBACK" in message
        assert "IMAGEQ_WEBHOOK__ALLOWED_NETWORKS" in message


def test_guard_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback is off and no network is listed by default; CIDRs come comma-separated."""
    assert target_policy(Settings(_env_file=None).webhook) == TargetPolicy()
    monkeypatch.setenv("IMAGEQ_WEBHOOK__ALLOW_LOOPBACK", "true")
    monkeypatch.setenv(
        "IMAGEQ_WEBHOOK__ALLOWED_NETWORKS", "10.20.0.0/16, fd12:3456::/48,192.168.7.8"
    )
    policy = target_policy(Settings(_env_file=None).webhook)
    assert policy.allow_loopback
    assert [str(network) for network in policy.allowed_networks] == [
        "10.20.0.0/16",
        "fd12:3456::/48",
        "192.168.7.8/32",
    ]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("127.0.0.0/8", "covers loopback, which only IMAGEQ_WEBHOOK__ALLOW_LOOPBACK allows"),
        ("0.0.0.0/0", "covers loopback"),
        ("169.254.169.254", "link-local address, which imageq never calls"),
        ("10.0.0.5/8", "not a valid IPv4 or IPv6 network"),  # host bits set: a typo?
        ("10.0.0.0/8,intranet", "not a valid IPv4 or IPv6 network"),
    ],
)
def test_allow_list_entries_are_checked_at_start(value: str, problem: str) -> None:
    """An entry that covers loopback, opens only never-allowed addresses, or is no network
    stops the start, named as its variable."""
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, webhook={"allowed_networks": value})
    message = describe_invalid(caught.value)
    assert "IMAGEQ_WEBHOOK__ALLOWED_NETWORKS" in message
    assert problem in message
