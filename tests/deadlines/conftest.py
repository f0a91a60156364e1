"""The whole service with a frozen clock: tests move time and fire deadlines, never sleep through them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from bot.clock import FrozenClock
from bot.runtime import Runtime
from bot.sandbox import EmulatorConfig, Ids, ManualClock
from bot.sandbox.runner import load_seed
from bot.sandbox.testing import SlackDriver, running_emulator
from tests.dbsupport import BACKENDS, database_url
from tests.e2e.conftest import MANIFESTS, Stack, issue_api_keys, settings_for


@pytest.fixture(params=BACKENDS)
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with database_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
async def timed(db_url: str, clock: FrozenClock) -> AsyncIterator[Stack]:
    async with started(db_url, clock) as stack:
        yield stack


class started:
    """An emulator plus a Runtime on the given database and clock (an async context manager)."""

    def __init__(
        self, db_url: str, clock: FrozenClock, manifests: Path = MANIFESTS, *, real_clock: bool = False
    ) -> None:
        self.db_url, self.clock, self.manifests, self.real_clock = db_url, clock, manifests, real_clock

    async def __aenter__(self) -> Stack:
        self._emu_cm = running_emulator(
            EmulatorConfig(), load_seed(self.manifests), clock=ManualClock(), ids=Ids(deterministic=True)
        )
        emu = await self._emu_cm.__aenter__()
        settings = settings_for(emu, self.db_url, self.manifests).model_copy(update={"sweep_every": timedelta(hours=1)})
        runtime = await Runtime.build(settings, clock=None if self.real_clock else self.clock)
        await runtime.start(host="127.0.0.1", port=0)
        emu.config.bot_url = runtime.url + "/slack/events"
        self._http = aiohttp.ClientSession()
        self.stack = Stack(emu, runtime, SlackDriver(emu, timeout=10), self._http, await issue_api_keys(runtime))
        return self.stack

    async def __aexit__(self, *exc: object) -> None:
        await self.stack.runtime.stop()
        await self._http.close()
        await self._emu_cm.__aexit__(None, None, None)
