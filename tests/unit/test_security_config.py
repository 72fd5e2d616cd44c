"""Security settings checked with no server: rediss URLs reach kombu and the store as TLS that
verifies certificates, and the pickle canary that tests/e2e/test_security.py relies on fires.
"""

from __future__ import annotations

import pickle
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from imageq.config import Settings
from imageq.worker.app import celery_config, create_app
from imageq.worker.runtime import connect_store


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
