"""Running the sandbox: the Slack emulator with its page and the real service, in one process.

The service (``bot.runtime.Runtime``) runs on an SQLite file in the data directory; the emulator
and the service share the bot token and signing secret, the emulator delivers clicks to the
service's ``/slack/events`` and the page's sample panel posts to its agent API with one key per
tenant, created on first start and kept next to the emulator's credentials.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from pydantic import SecretStr

import policy
from bot.clock import Clock
from bot.config import ConfigError, Settings
from bot.runtime import Runtime
from bot.sandbox.clock import Clock as EmulatorClock
from bot.sandbox.clock import Ids
from bot.sandbox.core import EmulatorConfig
from bot.sandbox.seed import WorkspaceSeed, seed_from_policies
from bot.sandbox.server import Emulator, create_emulator
from bot.service.cardrepair import repost_lost_cards
from store.uow import uow

log = logging.getLogger(__name__)

CREDENTIALS_FILE = "slack-emulator.json"
KEYS_FILE = "agent-keys.json"
DATABASE_FILE = "countersign.db"


class SandboxError(Exception):
    """Raised when the sandbox cannot start (bad manifests, unusable data directory)."""


@dataclass
class SandboxCredentials:
    bot_token: str
    signing_secret: str


@dataclass
class SandboxOptions:
    host: str = "127.0.0.1"
    port: int = 3300  # the page and the emulated Web API (0: any free port)
    service_port: int = 0  # the service: /slack/events, /v1/..., health (0: any free port)
    data_dir: Path = Path(".countersign")
    manifests: Path = Path("manifests")
    # Slack's per-channel pace (about 1 post/s): on, so the sandbox shows the bot waiting its turn.
    rate_limiting: bool = True
    # Set bot_url to deliver to a service running elsewhere; the sandbox then starts none of its own.
    bot_url: str | None = None
    agent_api_url: str | None = None
    agent_api_keys: dict[str, str] = field(default_factory=dict)


@dataclass
class Sandbox:
    """What is running: the emulator, the service (unless external) and the agents' keys."""

    emulator: Emulator
    runtime: Runtime | None
    keys: dict[str, str]
    keys_path: Path | None
    database_path: Path | None

    @property
    def page_url(self) -> str:
        return self.emulator.url + "/"

    @property
    def agent_api_url(self) -> str | None:
        return self.emulator.config.agent_api_url


def load_seed(manifests: Path) -> WorkspaceSeed:
    """The workspace the manifests describe; refuses invalid manifests as the service will."""
    if not manifests.is_dir():
        raise SandboxError(f"no manifests directory at {manifests} (name yours with --manifests DIR)")
    result = policy.load_dir(manifests)
    if result.errors:
        lines = "\n".join(f"  {p}" for p in result.errors)
        raise SandboxError(f"the manifests in {manifests} have errors:\n{lines}")
    return seed_from_policies(result)


def credentials(data_dir: Path) -> SandboxCredentials:
    """The emulator's bot token and signing secret, kept in the data directory so they survive restarts."""
    path = data_dir / CREDENTIALS_FILE
    if path.exists():
        try:
            data = json.loads(path.read_text())
            return SandboxCredentials(data["bot_token"], data["signing_secret"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SandboxError(f"{path} is unreadable ({exc}); delete it to get new credentials") from exc
    creds = SandboxCredentials(f"xoxb-sandbox-{secrets.token_hex(12)}", secrets.token_hex(20))
    _prepare_data_dir(data_dir)
    _write_private(path, creds.__dict__)
    return creds


def _prepare_data_dir(data_dir: Path) -> None:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        ignore = data_dir / ".gitignore"
        if not ignore.exists():
            # The directory holds a database and secrets: keep it out of the user's repository.
            ignore.write_text("*\n")
    except OSError as exc:
        raise SandboxError(f"cannot use the data directory {data_dir}: {exc}") from exc


def _write_private(path: Path, data: object) -> None:
    """Write JSON readable by the owner only, replacing the file atomically (never a half-written key)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
        os.chmod(tmp, 0o600)  # O_CREAT's mode does not apply to a leftover temp file
        os.replace(tmp, path)
    except OSError as exc:
        raise SandboxError(f"cannot write {path}: {exc}") from exc


def _read_keys(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {}  # unreadable: new keys replace it
    if not isinstance(data, dict):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, str)}


async def ensure_api_keys(runtime: Runtime, path: Path) -> dict[str, str]:
    """One working API key per tenant: the saved one if the database still accepts it, else a new one.

    A deleted database, a revoked key or a tenant added to the manifests each get a fresh key;
    the file is rewritten only when something changed.
    """
    saved = _read_keys(path)
    keys: dict[str, str] = {}
    async with uow(runtime.sessionmaker) as tx:
        for tenant in sorted(runtime.policies.tenants):
            key = saved.get(tenant)
            if key is None or await tx.tenants.authenticate(key) != tenant:
                key = (
                    await tx.tenants.create_api_key(
                        tenant, now=runtime.clock.now(), actor="sandbox", name="sandbox-agent"
                    )
                ).key
            keys[tenant] = key
    if keys != saved:
        _write_private(path, keys)
    return keys


def service_settings(emulator: Emulator, creds: SandboxCredentials, options: SandboxOptions) -> Settings:
    """The service's settings: this emulator's Web API and credentials, SQLite in the data directory."""
    database = (options.data_dir / DATABASE_FILE).resolve()
    return Settings(
        slack_bot_token=SecretStr(creds.bot_token),
        slack_signing_secret=SecretStr(creds.signing_secret),
        slack_api_url=emulator.api_url,
        database_url=f"sqlite+aiosqlite:///{database}",
        manifests_dir=options.manifests,
        host=options.host,
        port=options.service_port,
    )


@asynccontextmanager
async def running_sandbox(
    seed: WorkspaceSeed,
    creds: SandboxCredentials,
    options: SandboxOptions,
    *,
    clock: Clock | None = None,
    emulator_clock: EmulatorClock | None = None,
    ids: Ids | None = None,
) -> AsyncIterator[Sandbox]:
    """The emulator and the service, started and wired together for the duration of the block.

    Raises:
        SandboxError: the service refuses the manifests or the configuration.
        OSError: a port is taken.
    """
    config = EmulatorConfig(
        bot_token=creds.bot_token,
        signing_secret=creds.signing_secret,
        bot_url=options.bot_url,
        agent_api_url=options.agent_api_url,
        agent_api_keys=dict(options.agent_api_keys),
        rate_limiting=options.rate_limiting,
    )
    emulator = create_emulator(config, seed, clock=emulator_clock, ids=ids)
    await emulator.start(options.host, options.port)
    runtime: Runtime | None = None
    try:
        if options.bot_url is not None:
            yield Sandbox(emulator, None, dict(options.agent_api_keys), None, None)
            return
        _prepare_data_dir(options.data_dir)
        try:
            runtime = await Runtime.build(service_settings(emulator, creds, options), clock=clock)
        except (policy.ManifestError, ConfigError) as exc:
            raise SandboxError(f"the service refuses to start: {exc}") from exc
        # This workspace starts empty each time; the database remembers cards it no longer has. Queued
        # before the service starts: a deadline that passed while it was stopped fires at once, and its
        # notes must find the card posted again, not the one that is gone (or they land at the top level).
        reposted = await repost_lost_cards(runtime.sessionmaker, partial(_in_workspace, emulator), runtime.clock.now())
        if reposted:
            log.info("posting %d card(s) again: the emulated workspace starts empty", reposted)
        url = await runtime.start(options.host, options.service_port)
        keys_path = options.data_dir / KEYS_FILE
        keys = await ensure_api_keys(runtime, keys_path)
        config.bot_url = url + "/slack/events"
        config.agent_api_url = url
        config.agent_api_keys = dict(keys)
        emulator.core.touch()  # an open page learns the agent API URL at once
        yield Sandbox(emulator, runtime, keys, keys_path, options.data_dir / DATABASE_FILE)
    finally:
        try:
            if runtime is not None:
                await runtime.stop()
        finally:
            await emulator.stop()


def _in_workspace(emulator: Emulator, channel: str, ts: str) -> bool:
    found = emulator.workspace.channels.get(channel)
    return found is not None and found.find(ts) is not None


async def run_sandbox(
    seed: WorkspaceSeed,
    creds: SandboxCredentials,
    options: SandboxOptions,
    *,
    stop: asyncio.Event,
    on_ready: Callable[[Sandbox], None] | None = None,
    clock: Clock | None = None,
) -> None:
    """Serve the emulator and the service until ``stop`` is set, then shut both down gracefully."""
    async with running_sandbox(seed, creds, options, clock=clock) as sandbox:
        if on_ready is not None:
            on_ready(sandbox)
        await stop.wait()


__all__ = [
    "CREDENTIALS_FILE",
    "DATABASE_FILE",
    "KEYS_FILE",
    "Sandbox",
    "SandboxCredentials",
    "SandboxError",
    "SandboxOptions",
    "credentials",
    "ensure_api_keys",
    "load_seed",
    "run_sandbox",
    "running_sandbox",
]
