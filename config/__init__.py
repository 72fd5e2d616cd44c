"""imageq settings: one pydantic-settings root, read once from the environment and `.env`."""

from config.settings import (
    ApiSettings,
    PollingSettings,
    RedisSettings,
    RetrySettings,
    Settings,
    WebhookSettings,
    WorkerSettings,
    get_settings,
)

__all__ = [
    "ApiSettings",
    "PollingSettings",
    "RedisSettings",
    "RetrySettings",
    "Settings",
    "WebhookSettings",
    "WorkerSettings",
    "get_settings",
]
