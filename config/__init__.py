"""imageq settings: one pydantic-settings root, read once from the environment and `.env`."""

from imageq.config.settings import (
    DEFAULT_WEBHOOK_SCHEDULE_S,
    ApiSettings,
    BudgetSettings,
    CostSettings,
    LimitSettings,
    ObservabilitySettings,
    PollingSettings,
    RedisSettings,
    RetrySettings,
    ScheduleSettings,
    Settings,
    StorageSettings,
    SweepSettings,
    WebhookSettings,
    WorkerSettings,
    get_settings,
)

__all__ = [
    "DEFAULT_WEBHOOK_SCHEDULE_S",
    "ApiSettings",
    "BudgetSettings",
    "CostSettings",
    "LimitSettings",
    "ObservabilitySettings",
    "PollingSettings",
    "RedisSettings",
    "RetrySettings",
    "ScheduleSettings",
    "Settings",
    "StorageSettings",
    "SweepSettings",
    "WebhookSettings",
    "WorkerSettings",
    "get_settings",
]
