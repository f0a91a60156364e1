"""Running the sandbox: the emulator and its page, seeded from the manifests, until told to stop.

The approval service is not part of it yet; when it is, it starts here next to the emulator with
``bot_url``/``agent_api_url`` pointing at it and the same bot token and signing secret.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bot.sandbox.core import EmulatorConfig
from bot.sandbox.seed import WorkspaceSeed, seed_from_policies
from bot.sandbox.server import Emulator, create_emulator

CREDENTIALS_FILE = "slack-emulator.json"


class SandboxError(Exception):
    """Raised when the sandbox cannot start (bad manifests, unusable data directory)."""


@dataclass
class SandboxCredentials:
    bot_token: str
    signing_secret: str


@dataclass
class SandboxOptions:
    host: str = "127.0.0.1"
    port: int = 3300
    bot_url: str | None = None  # the service's /slack/events, once there is one
    agent_api_url: str | None = None  # the service's base URL for /v1/requests
    agent_api_keys: dict[str, str] = field(default_factory=dict)


def load_seed(manifests: Path) -> WorkspaceSeed:
    """The workspace the manifests describe; refuses invalid manifests as the service will."""
    import policy

    if not manifests.is_dir():
        raise SandboxError(f"no manifests directory at {manifests}")
    result = policy.load_dir(manifests)
    if result.errors:
        lines = "\n".join(f"  {p}" for p in result.errors)
        raise SandboxError(f"the manifests in {manifests} have errors:\n{lines}")
    return seed_from_policies(result)


def credentials(data_dir: Path) -> SandboxCredentials:
    """The emulator's bot token and signing secret, kept in the data directory so they survive restarts."""
    path = data_dir / CREDENTIALS_FILE
    if path.exists():
        data = json.loads(path.read_text())
        return SandboxCredentials(data["bot_token"], data["signing_secret"])
    creds = SandboxCredentials(f"xoxb-sandbox-{secrets.token_hex(12)}", secrets.token_hex(20))
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(creds.__dict__, indent=2) + "\n")
        os.chmod(path, 0o600)
    except OSError as exc:
        raise SandboxError(f"cannot write {path}: {exc}") from exc
    return creds


async def run_sandbox(
    seed: WorkspaceSeed,
    creds: SandboxCredentials,
    options: SandboxOptions,
    *,
    stop: asyncio.Event,
    on_ready: Callable[[Emulator], None] | None = None,
) -> None:
    """Serve the emulator until ``stop`` is set, then shut down gracefully."""
    config = EmulatorConfig(
        bot_token=creds.bot_token,
        signing_secret=creds.signing_secret,
        bot_url=options.bot_url,
        agent_api_url=options.agent_api_url,
        agent_api_keys=dict(options.agent_api_keys),
        rate_limiting=True,
    )
    emulator = create_emulator(config, seed)
    await emulator.start(options.host, options.port)
    try:
        if on_ready is not None:
            on_ready(emulator)
        await stop.wait()
    finally:
        await emulator.stop()
