"""The service under test for benchmarks: the Slack emulator plus the real Runtime on SQLite, one API key."""

from __future__ import annotations

import functools
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from bot.config import Settings
from bot.runtime import Runtime
from bot.sandbox import EmulatorConfig
from bot.sandbox.runner import load_seed
from bot.sandbox.server import Emulator
from bot.sandbox.testing import running_emulator
from store.uow import uow

ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def bench_manifests() -> Path:
    """The example manifests with acme-support's agent API rate limits lifted: a benchmark measures what
    the service can take, and its load generator (one API key, thousands of requests a second) is the
    runaway agent the default limits are there to stop. Written once per process, to a temporary folder."""
    directory = Path(tempfile.mkdtemp(prefix="cs-bench-manifests-"))
    shutil.copytree(ROOT / "manifests", directory, dirs_exist_ok=True)
    with (directory / "acme-support.yaml").open("a") as acme:
        acme.write("\nrate_limits:\n  per_key: {rate: 1000000}\n  per_tenant: {rate: 1000000}\n")
    return directory


@dataclass
class Stack:
    emulator: Emulator
    runtime: Runtime
    key: str  # an acme-support API key


@asynccontextmanager
async def service(database: Path | str, emulator: Emulator | None = None) -> AsyncIterator[Stack]:
    """Start the service against ``emulator`` (or a new one) with SQLite at ``database`` (a path) or
    the database a URL names."""
    if emulator is None:
        seed = load_seed(bench_manifests())
        async with running_emulator(EmulatorConfig(), seed) as emu, service(database, emu) as stack:
            yield stack
        return
    settings = Settings(
        slack_bot_token=SecretStr(emulator.config.bot_token),
        slack_signing_secret=SecretStr(emulator.config.signing_secret),
        slack_api_url=emulator.api_url,
        database_url=database if isinstance(database, str) else f"sqlite+aiosqlite:///{database}",
        manifests_dir=bench_manifests(),
        slack_channel_rate=0,  # unpaced: the figures are of the service, not of Slack's 1/s per channel
    )
    runtime = await Runtime.build(settings)
    await runtime.start(host="127.0.0.1", port=0)
    emulator.config.bot_url = runtime.url + "/slack/events"
    try:
        async with uow(runtime.sessionmaker) as tx:
            key = (await tx.tenants.create_api_key("acme-support", now=runtime.clock.now())).key
        yield Stack(emulator, runtime, key)
    finally:
        await runtime.stop()
