"""A background loop that crashes is logged and started again; shutdown stops every loop."""

from __future__ import annotations

import asyncio

import pytest

from bot.supervisor import Supervisor


async def test_a_crashing_loop_is_restarted_until_it_runs(caplog: pytest.LogCaptureFixture) -> None:
    supervisor = Supervisor(first_backoff=0.001, max_backoff=0.002)
    runs = 0
    steady = asyncio.Event()

    async def flaky(stop: asyncio.Event) -> None:
        nonlocal runs
        runs += 1
        if runs <= 2:
            raise ConnectionError("the database went away")
        steady.set()
        await stop.wait()

    supervisor.start("outbox-worker", flaky)
    await asyncio.wait_for(steady.wait(), timeout=5)
    assert supervisor.restarts("outbox-worker") == 2
    assert supervisor.status() == {"outbox-worker": "ok"}
    assert caplog.text.count("background task outbox-worker crashed") == 2
    await supervisor.close()
    assert supervisor.status() == {"outbox-worker": "stopped"}


async def test_close_cancels_a_loop_that_ignores_stop() -> None:
    supervisor = Supervisor()

    async def stubborn(stop: asyncio.Event) -> None:
        await asyncio.sleep(3600)

    supervisor.start("stubborn", stubborn)
    await asyncio.sleep(0)
    await supervisor.close(timeout=0.01)
    assert supervisor.status() == {"stubborn": "stopped"}
