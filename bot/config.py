"""Settings, read from the environment in exactly one place (``Settings.from_env``)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import AnyUrl, BaseModel, ConfigDict, Field, SecretStr, ValidationError, ValidationInfo, field_validator

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./countersign.db"
# Where `countersign sandbox` keeps its data, by default: the other commands run in the same directory
# find its database there when no URL is given and ./countersign.db does not exist.
SANDBOX_DATA_DIR = Path(".countersign")
SANDBOX_DATABASE = "countersign.db"
# The drivers each database is reached with (the service is asyncio throughout).
_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}


def normalize_database_url(value: str) -> str:
    """A database URL as the service needs it, from what people write: a file path (``./cs.db``), a
    ``sqlite:///`` or ``postgresql://`` URL without our driver, or a full URL.

    Raises:
        ConfigError: neither a path nor a URL of a database the service speaks.
    """
    value = value.strip()
    if "://" not in value:
        if not value:
            raise ConfigError("the database URL is empty")
        return f"sqlite+aiosqlite:///{Path(value).expanduser()}"
    scheme, rest = value.split("://", 1)
    dialect, _, driver = scheme.partition("+")
    if dialect not in _DRIVERS:
        raise ConfigError(
            f"{value!r} is not a database this service speaks: write a file path, sqlite:///path/to/file.db"
            " or postgresql://user@host/database"
        )
    wanted = _DRIVERS[dialect]
    if driver and f"{_DRIVERS[dialect].split('+')[0]}+{driver}" != wanted:
        raise ConfigError(f"{value!r}: the service reaches this database with {wanted}://, not {scheme}://")
    return f"{wanted}://{rest}"


def command_database_url(env: Mapping[str, str], given: str | None, cwd: Path | None = None) -> str:
    """The database of a store-backed command: ``--database-url``, else ``COUNTERSIGN_DATABASE_URL``,
    else :func:`default_database_url`; normalised either way.

    Raises:
        ConfigError: the URL is neither a path nor a database the service speaks.
    """
    chosen = (given or "").strip() or env.get("COUNTERSIGN_DATABASE_URL", "").strip()
    return normalize_database_url(chosen) if chosen else default_database_url(cwd)


def default_database_url(cwd: Path | None = None) -> str:
    """The database a command uses when none is named: ./countersign.db, or the sandbox's when only it
    exists here (so `countersign tenant key create` after `countersign sandbox` finds the sandbox's data)."""
    here = cwd or Path()
    sandbox = here / SANDBOX_DATA_DIR / SANDBOX_DATABASE
    if not (here / "countersign.db").exists() and sandbox.exists():
        return f"sqlite+aiosqlite:///{sandbox}"
    return DEFAULT_DATABASE_URL


class ConfigError(Exception):
    """Raised when the environment holds a value the service cannot start with."""


class Settings(BaseModel):
    """Everything the service reads from its environment (docs/cli.md, *Environment*)."""

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
    # How often the manifests' directory is read for changed files (docs/manifests.md); 0: only on SIGHUP.
    manifest_poll_seconds: float = Field(default=0.5, ge=0, le=3600)
    # How long an accepted API key is remembered: a revoked key works for at most this long.
    api_key_cache_seconds: float = Field(default=5.0, ge=0, le=300)
    # Database connections this process keeps open. Long polls, the outbox worker, intake and clicks each
    # hold one at a time; past the pool, connections are opened and closed per use (and on PostgreSQL
    # lose their prepared statements), which under load costs more CPU than the queries themselves.
    database_pool_size: int = Field(default=20, ge=1, le=500)
    # Posts to one Slack channel per second (Slack allows about one); 0 leaves them unpaced.
    slack_channel_rate: float = Field(default=1.0, ge=0, le=100)
    # Libraries (Bolt, slack_sdk, aiohttp, SQLAlchemy...) log at this level: Bolt logs a refused
    # request's whole body and signature at INFO, which is nobody's business but a debugging session's.
    library_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    # Where sealed audit events are streamed (docs/audit-streaming.md): an http(s):// URL that takes
    # batches of JSON lines, or a file:/// path appended to and rotated by size; unset: nowhere.
    audit_sink: AnyUrl | None = None
    audit_sink_token: SecretStr | None = None
    audit_sink_max_bytes: int = Field(default=100 * 1024 * 1024, ge=4096)
    audit_sink_backups: int = Field(default=5, ge=1, le=1000)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        try:
            return normalize_database_url(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc

    @field_validator("audit_sink")
    @classmethod
    def _a_sink_we_can_write_to(cls, url: AnyUrl | None) -> AnyUrl | None:
        if url is None:
            return url
        if url.scheme in ("http", "https"):
            if url.username or url.password:
                raise ValueError("no credentials in the URL: put the token in COUNTERSIGN_AUDIT_SINK_TOKEN")
        elif url.scheme != "file":
            raise ValueError("give an http:// or https:// URL, or file:///absolute/path/audit.jsonl")
        elif url.host not in (None, "", "localhost") or not (url.path or "").strip("/"):
            raise ValueError("a file sink is file:///absolute/path/audit.jsonl (three slashes)")
        # The URL names the sink's cursor (store.models.audit.AuditSinkCursor.sink).
        if len(str(url)) > 512:
            raise ValueError("at most 512 characters")
        return url

    @field_validator("audit_sink_token")
    @classmethod
    def _a_token_for_an_http_sink(cls, token: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        sink = info.data.get("audit_sink")
        if token is not None and (sink is None or sink.scheme not in ("http", "https")):
            raise ValueError("only sent to an http(s):// COUNTERSIGN_AUDIT_SINK, and none is set")
        return token

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, service: bool = False) -> Settings:
        """Build settings from an environment mapping; unset or empty variables keep their defaults.

        With ``service``, what ``countersign serve`` cannot run without is required too, and every
        missing or malformed variable is named in one error (not the first, then the next at the
        next start).
        """

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
            "manifest_poll_seconds": get("COUNTERSIGN_MANIFEST_POLL_SECONDS"),
            "database_pool_size": get("COUNTERSIGN_DATABASE_POOL_SIZE"),
            "slack_channel_rate": get("COUNTERSIGN_SLACK_CHANNEL_RATE"),
            "library_log_level": (get("COUNTERSIGN_LIBRARY_LOG_LEVEL") or "").upper() or None,
            "audit_sink": get("COUNTERSIGN_AUDIT_SINK"),
            "audit_sink_token": get("COUNTERSIGN_AUDIT_SINK_TOKEN"),
            "audit_sink_max_bytes": get("COUNTERSIGN_AUDIT_SINK_MAX_BYTES"),
            "audit_sink_backups": get("COUNTERSIGN_AUDIT_SINK_BACKUPS"),
        }
        problems = _missing_for_service(raw) if service else []
        settings = None
        try:
            settings = cls.model_validate({k: v for k, v in raw.items() if v is not None})
        except ValidationError as exc:
            problems += [f"{_VARIABLES.get(str(e['loc'][0]), e['loc'][0])}: {e['msg']}" for e in exc.errors()]
        if problems or settings is None:
            raise ConfigError(f"invalid environment: {'; '.join(problems)}")
        return settings


# The variable behind each setting, for error messages.
_VARIABLES = {
    "slack_bot_token": "SLACK_BOT_TOKEN",
    "slack_signing_secret": "SLACK_SIGNING_SECRET",
    "slack_app_token": "SLACK_APP_TOKEN",
    "slack_api_url": "SLACK_API_URL",
    "database_url": "COUNTERSIGN_DATABASE_URL",
    "manifests_dir": "COUNTERSIGN_MANIFESTS",
    "host": "COUNTERSIGN_HOST",
    "port": "COUNTERSIGN_PORT",
    "log_json": "COUNTERSIGN_LOG_JSON",
    "sweep_every": "COUNTERSIGN_SWEEP_SECONDS",
    "api_key_cache_seconds": "COUNTERSIGN_API_KEY_CACHE_SECONDS",
    "manifest_poll_seconds": "COUNTERSIGN_MANIFEST_POLL_SECONDS",
    "database_pool_size": "COUNTERSIGN_DATABASE_POOL_SIZE",
    "slack_channel_rate": "COUNTERSIGN_SLACK_CHANNEL_RATE",
    "library_log_level": "COUNTERSIGN_LIBRARY_LOG_LEVEL",
    "audit_sink": "COUNTERSIGN_AUDIT_SINK",
    "audit_sink_token": "COUNTERSIGN_AUDIT_SINK_TOKEN",
    "audit_sink_max_bytes": "COUNTERSIGN_AUDIT_SINK_MAX_BYTES",
    "audit_sink_backups": "COUNTERSIGN_AUDIT_SINK_BACKUPS",
}


# What each variable is for, as `countersign serve --help` lists them (docs/cli.md's table says more).
ENVIRONMENT = (
    ("SLACK_BOT_TOKEN", "the bot token, xoxb-... (required)"),
    ("SLACK_SIGNING_SECRET", "verifies Slack's requests (required unless SLACK_APP_TOKEN is set)"),
    ("SLACK_APP_TOKEN", "xapp-...: Socket Mode; Slack's events then come over a WebSocket"),
    ("SLACK_API_URL", "the Web API base URL (an emulator's)"),
    ("COUNTERSIGN_DATABASE_URL", f"a file path or database URL (default {DEFAULT_DATABASE_URL})"),
    ("COUNTERSIGN_MANIFESTS", "the manifests directory (default ./manifests)"),
    ("COUNTERSIGN_HOST / COUNTERSIGN_PORT", "where to listen (default 127.0.0.1:3000)"),
    ("COUNTERSIGN_LOG_JSON", "1: one JSON object a log line"),
    ("COUNTERSIGN_LIBRARY_LOG_LEVEL", "the libraries' log level (default WARNING)"),
    ("COUNTERSIGN_SWEEP_SECONDS", "the deadline sweep's period (default 15)"),
    ("COUNTERSIGN_API_KEY_CACHE_SECONDS", "how long an accepted API key is remembered (default 5)"),
    ("COUNTERSIGN_MANIFEST_POLL_SECONDS", "how often to look for changed manifests (default 0.5; 0: on SIGHUP only)"),
    ("COUNTERSIGN_DATABASE_POOL_SIZE", "database connections per process (default 20)"),
    ("COUNTERSIGN_SLACK_CHANNEL_RATE", "posts a second to one Slack channel (default 1; 0: unpaced)"),
    ("COUNTERSIGN_AUDIT_SINK", "stream sealed audit events to an http(s):// URL or a file:/// path"),
    ("COUNTERSIGN_AUDIT_SINK_TOKEN", "bearer token for the HTTP sink"),
    ("COUNTERSIGN_AUDIT_SINK_MAX_BYTES", "the file sink rotates past this size (default 100 MiB)"),
    ("COUNTERSIGN_AUDIT_SINK_BACKUPS", "the file sink's rotated files kept (default 5)"),
)


def _missing_for_service(raw: Mapping[str, object]) -> list[str]:
    """What the service needs and the environment lacks or holds in the wrong shape, by variable."""
    problems = []
    token, app_token = raw.get("slack_bot_token"), raw.get("slack_app_token")
    if token is None:
        problems.append("SLACK_BOT_TOKEN is not set (the bot token, xoxb-...)")
    elif not str(token).startswith("xox"):
        problems.append("SLACK_BOT_TOKEN does not look like a Slack token (the bot token starts with xoxb-)")
    if app_token is not None and not str(app_token).startswith("xapp-"):
        problems.append("SLACK_APP_TOKEN is not an app-level token (it starts with xapp-)")
    if raw.get("slack_signing_secret") is None and app_token is None:
        problems.append("SLACK_SIGNING_SECRET is not set (needed to verify Slack's requests; or set SLACK_APP_TOKEN)")
    return problems
