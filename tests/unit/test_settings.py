"""Settings: nested environment variables, secrets kept secret, unsafe combinations refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from imageq.config import Settings
from imageq.worker.app import celery_config
from imageq.worker.upstream.client import ApiClient


def test_nested_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """IMAGEQ_<GROUP>__<NAME> reaches the nested field."""
    monkeypatch.setenv("IMAGEQ_API__BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("IMAGEQ_API__KEY", "sk-very-secret")
    monkeypatch.setenv("IMAGEQ_POLLING__FIRST_DELAY_S", "12.5")
    settings = Settings(_env_file=None)
    assert settings.api.base_url == "http://127.0.0.1:9"
    assert settings.polling.first_delay_s == 12.5
    assert settings.api.key is not None
    assert settings.api.key.get_secret_value() == "sk-very-secret"
    assert "sk-very-secret" not in repr(settings)
    assert "sk-very-secret" not in str(settings.model_dump())
    assert "sk-very-secret" not in repr(ApiClient(settings.api))


def test_defaults_follow_the_api_guidance() -> None:
    """First poll after 15 s, every 4 s, give up after 180 s."""
    polling = Settings(_env_file=None).polling
    assert (polling.first_delay_s, polling.interval_s, polling.deadline_s) == (15, 4, 180)


def test_visibility_timeout_must_exceed_countdowns() -> None:
    """A visibility timeout shorter than twice the longest countdown is refused."""
    with pytest.raises(ValidationError, match="visibility_timeout_s"):
        Settings(_env_file=None, worker={"visibility_timeout_s": 20})


def test_celery_is_json_only_with_late_acks() -> None:
    """No pickle, late acks, prefetch 1, separate queues (submit, poll, download, notify)."""
    config = celery_config(Settings(_env_file=None))
    assert config["accept_content"] == ["json"]
    assert config["task_serializer"] == "json"
    assert config["task_acks_late"] is True
    assert config["worker_prefetch_multiplier"] == 1
    assert len({route["queue"] for route in config["task_routes"].values()}) == 4
    assert config["broker_transport_options"]["visibility_timeout"] >= 2 * 19
