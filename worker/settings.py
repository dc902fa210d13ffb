"""One typed settings object: every knob of CONTRACT.md, read from the environment and `.env`."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SANDBOX_BASE_URL = "https://api-sandbox.flexfactor.io/v1"
PLACEHOLDERS = {"changeme", "change-me", "secret", "xxx"}


class Settings(BaseSettings):
    """All configuration. Secrets are ``SecretStr`` so they never print in a repr or a log."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    database_url: str = Field("sqlite:///./flexmit.db", alias="FLEXMIT_DATABASE_URL")
    # redis://... in production; file:///dir selects the embedded single-host mode (demo):
    # the shared rate limiter, token cache and suppression keys then live in lock-guarded files.
    redis_url: str = Field("redis://localhost:6379/0", alias="FLEXMIT_REDIS_URL")
    broker_url_override: str | None = Field(None, alias="FLEXMIT_BROKER_URL")

    flexfactor_base_url: str = Field(SANDBOX_BASE_URL, alias="FLEXFACTOR_BASE_URL")
    flexfactor_app_key: SecretStr | None = Field(None, alias="FLEXFACTOR_APP_KEY")
    flexfactor_app_secret: SecretStr | None = Field(None, alias="FLEXFACTOR_APP_SECRET")
    flexfactor_mid: str | None = Field(None, alias="FLEXFACTOR_MID")
    flexfactor_site_id: str | None = Field(None, alias="FLEXFACTOR_SITE_ID")
    flexfactor_tokenization_key: SecretStr | None = Field(
        None, alias="FLEXFACTOR_TOKENIZATION_KEY"
    )
    flexfactor_webhook_key: SecretStr | None = Field(None, alias="FLEXFACTOR_WEBHOOK_KEY")
    flexfactor_mode: Literal["managed", "sync"] = Field("managed", alias="FLEXFACTOR_MODE")
    flexfactor_rate_limit: float = Field(10.0, gt=0, alias="FLEXFACTOR_RATE_LIMIT")
    flexfactor_timeout_s: float = Field(10.0, gt=0, alias="FLEXFACTOR_TIMEOUT_S")

    expiry_days: int = Field(21, ge=14, alias="FLEXMIT_EXPIRY_DAYS")
    merchant_tz: str = Field("UTC", alias="FLEXMIT_MERCHANT_TZ")
    intake_token: SecretStr | None = Field(None, alias="FLEXMIT_INTAKE_TOKEN")
    billing_callback_url: str | None = Field(None, alias="FLEXMIT_BILLING_CALLBACK_URL")
    billing_callback_secret: SecretStr | None = Field(None, alias="FLEXMIT_BILLING_CALLBACK_SECRET")
    webhook_tolerance_s: int = Field(300, gt=0, alias="FLEXMIT_WEBHOOK_TOLERANCE_S")
    # Fraction of FLEXFACTOR_RATE_LIMIT actually used: the gap absorbs scheduling and network
    # jitter so arrivals at FlexFactor never bunch above the limit in any one second.
    rate_headroom: float = Field(0.97, gt=0, le=1, alias="FLEXMIT_RATE_HEADROOM")
    rate_max_wait_s: float = Field(30.0, gt=0, alias="FLEXMIT_RATE_MAX_WAIT_S")
    claim_lease_s: int = Field(120, gt=0, alias="FLEXMIT_CLAIM_LEASE_S")
    # Orders named by one evaluate message: claimed and recorded together, one POST each.
    evaluate_batch: int = Field(20, ge=1, le=100, alias="FLEXMIT_EVALUATE_BATCH")
    redispatch_after_s: int = Field(60, gt=0, alias="FLEXMIT_REDISPATCH_AFTER_S")
    # New orders allowed to wait in the broker at once (default: a minute at the rate limit,
    # at least 100); the rest wait as rows and the sweep sends them as the window drains.
    dispatch_window: int | None = Field(None, gt=0, alias="FLEXMIT_DISPATCH_WINDOW")
    sweep_interval_s: float = Field(15.0, gt=0, alias="FLEXMIT_SWEEP_INTERVAL_S")
    # Re-check ladders, seconds after the previous try (the last step repeats). JSON lists.
    unknown_ladder_s: list[int] = Field(
        [10, 30, 120, 300, 900, 3600], alias="FLEXMIT_UNKNOWN_LADDER_S"
    )
    unsent_ladder_s: list[int] = Field([5, 15, 30, 60, 120], alias="FLEXMIT_UNSENT_LADDER_S")
    sync_ladder_s: list[int] = Field([3600, 14400, 43200, 86400], alias="FLEXMIT_SYNC_LADDER_S")
    pending_ladder_s: list[int] = Field([3600, 86400], alias="FLEXMIT_PENDING_LADDER_S")
    push_ladder_s: list[int] = Field(
        [60, 300, 1800, 7200, 43200, 86400], alias="FLEXMIT_PUSH_LADDER_S"
    )
    log_format: Literal["auto", "json", "console"] = Field("auto", alias="FLEXMIT_LOG_FORMAT")
    log_level: str = Field("INFO", alias="FLEXMIT_LOG_LEVEL")

    @field_validator("merchant_tz")
    @classmethod
    def _known_tz(cls, value: str) -> str:
        ZoneInfo(value)  # raises for an unknown zone name: fail at start, not at midnight
        return value

    @field_validator("flexfactor_base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @model_validator(mode="after")
    def _no_placeholder_secrets(self) -> Settings:
        for name in ("flexfactor_app_secret", "intake_token", "billing_callback_secret"):
            secret = getattr(self, name, None)
            if secret is not None and secret.get_secret_value().lower() in PLACEHOLDERS:
                raise ValueError(f"{name} is still a placeholder; set a real value")
        return self

    def to_env(self) -> dict[str, str]:
        """These settings as environment variables, for child processes (workers, beat)."""
        env: dict[str, str] = {}
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            if value is None or info.alias is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[info.alias] = json.dumps(value) if isinstance(value, list) else str(value)
        return env

    @property
    def broker_url(self) -> str:
        """The Celery broker: FLEXMIT_BROKER_URL, else the Redis URL."""
        return self.broker_url_override or self.redis_url

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.merchant_tz)

    @property
    def embedded(self) -> bool:
        """True in the single-host embedded mode (no Redis server; file-backed shared state)."""
        return self.redis_url.startswith("file://")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once. Tests build ``Settings(...)`` directly instead."""
    return Settings()
