"""Settings, read from the environment in exactly one place (``Settings.from_env``)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./countersign.db"


class ConfigError(Exception):
    """Raised when the environment holds a value the service cannot start with."""


class Settings(BaseModel):
    """Everything the service reads from its environment (the README's *Running it*)."""

    model_config = ConfigDict(frozen=True)

    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str | None = None
    database_url: str = DEFAULT_DATABASE_URL
    manifests_dir: Path = Path("./manifests")
    host: str = "127.0.0.1"
    port: int = Field(default=3000, ge=0, le=65535)
    log_json: bool = False
    # How often the scheduler sweeps for deadlines it was not woken for (a safety net).
    sweep_every: timedelta = timedelta(seconds=15)
    # How long an accepted API key is remembered: a revoked key works for at most this long.
    api_key_cache_seconds: float = Field(default=5.0, ge=0, le=300)
    # Database connections this process keeps open. Long polls, the outbox worker, intake and clicks each
    # hold one at a time; past the pool, connections are opened and closed per use (and on PostgreSQL
    # lose their prepared statements), which under load costs more CPU than the queries themselves.
    database_pool_size: int = Field(default=20, ge=1, le=500)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from an environment mapping; unset or empty variables keep their defaults."""

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        raw: dict[str, object] = {
            "slack_bot_token": get("SLACK_BOT_TOKEN"),
            "slack_signing_secret": get("SLACK_SIGNING_SECRET"),
            "slack_app_token": get("SLACK_APP_TOKEN"),
            "slack_api_url": get("SLACK_API_URL"),
            "database_url": get("COUNTERSIGN_DATABASE_URL"),
            "manifests_dir": get("COUNTERSIGN_MANIFESTS"),
            "host": get("COUNTERSIGN_HOST"),
            "port": get("COUNTERSIGN_PORT"),
            "log_json": get("COUNTERSIGN_LOG_JSON"),
            "sweep_every": get("COUNTERSIGN_SWEEP_SECONDS"),
            "api_key_cache_seconds": get("COUNTERSIGN_API_KEY_CACHE_SECONDS"),
            "database_pool_size": get("COUNTERSIGN_DATABASE_POOL_SIZE"),
        }
        try:
            return cls.model_validate({k: v for k, v in raw.items() if v is not None})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"invalid environment: {problems}") from exc
