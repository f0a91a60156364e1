"""Manifest files edited on disk are served without a restart, on every replica; a broken edit is kept
out (the last good version serves), logged with its file, line and column, and told to the tenant's admins."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.runtime import Runtime
from bot.sandbox import EmulatorConfig
from bot.sandbox.runner import load_seed
from bot.sandbox.testing import running_emulator
from bot.sandbox.workspace import Message
from tests.dbsupport import POSTGRES_SKIP_REASON, database_url, postgres_url
from tests.e2e.conftest import ADA, Agent, Stack, eventually, running_stack, settings_for
from tests.serviceproc import cli, free_port, serve, service_env

ACME = "acme-support.yaml"
THRESHOLD = "if: amount > 500"


def refund(amount: int, order_id: str) -> dict[str, Any]:
    return {
        "amount": amount,
        "currency": "EUR",
        "customer": {"name": "Ana"},
        "card_number": "4111",
        "order_id": order_id,
    }


def edit(manifests: Path, old: str, new: str) -> None:
    path = manifests / ACME
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


async def outcome(agent: Agent, amount: int, order_id: str) -> str:
    status, body = await agent.ask("process_refund", refund(amount, order_id))
    assert status in (200, 201, 202), body
    return str(body["status"])


async def served(agent: Agent, amount: int, expected: str) -> None:
    """Until a fresh request of ``amount`` comes back ``expected`` (each probe is a new request)."""
    tries = iter(range(10_000))

    async def probe() -> bool:
        return await outcome(agent, amount, f"probe-{next(tries)}") == expected

    await eventually(probe, what=f"a {amount} refund to be {expected}", timeout=20)


def told(stack: Stack) -> list[Message]:
    """The admin's DMs about a broken manifest."""
    try:
        return [m for m in stack.slack.messages(ADA) if "last good version" in m.text]
    except LookupError:  # no DM yet
        return []


async def test_an_edited_threshold_is_served_without_a_restart(stack: Stack, manifests: Path) -> None:
    agent = stack.agent()
    assert await outcome(agent, 550, "before") == "pending"
    edit(manifests, THRESHOLD, "if: amount > 600")
    await served(agent, 550, "auto_approved")
    assert await outcome(agent, 620, "still-reviewed") == "pending"


async def test_a_broken_edit_keeps_the_last_good_version_and_the_admins_are_told(
    stack: Stack, manifests: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="bot.service.manifests")
    agent = stack.agent()
    edit(manifests, THRESHOLD, "if: amount >> 500")
    [dm] = await stack.slack.wait_until(lambda: told(stack), what="a DM to the admin", timeout=20)
    number = (manifests / ACME).read_text().splitlines().index("    if: amount >> 500") + 1
    line = f"{ACME}:{number}:"  # the line of the broken condition, then its column
    assert line in dm.text and "acme-support" in dm.text
    assert any(line in r.getMessage() for r in caplog.records)
    assert await outcome(agent, 550, "kept") == "pending"  # the last good version still decides
    assert await outcome(agent, 120, "small") == "auto_approved"

    edit(manifests, "if: amount >> 500", "if: amount > 600")  # fixed: served, and nobody is told again
    await served(agent, 550, "auto_approved")
    assert len(told(stack)) == 1


async def test_without_polling_an_edit_waits_for_a_reload_on_demand(db_url: str, manifests: Path) -> None:
    """``COUNTERSIGN_MANIFEST_POLL_SECONDS=0``: nothing is read until SIGHUP (which pokes the watcher)."""
    async with running_stack(db_url, manifests, manifest_poll_seconds=0) as stack:
        agent = stack.agent()
        edit(manifests, THRESHOLD, "if: amount > 600")
        await asyncio.sleep(1.0)  # two polls' worth: long enough for a poller to have seen it
        assert await outcome(agent, 550, "not-yet") == "pending"
        assert stack.runtime.manifest_watcher is not None
        stack.runtime.manifest_watcher.poke()
        await served(agent, 550, "auto_approved")


@asynccontextmanager
async def replica(stack: Stack, db_url: str, manifests: Path) -> AsyncIterator[Runtime]:
    runtime = await Runtime.build(settings_for(stack.emulator, db_url, manifests))
    await runtime.start(host="127.0.0.1", port=0)
    try:
        yield runtime
    finally:
        await runtime.stop()


async def test_every_replica_serves_the_edit(tmp_path: Path, manifests: Path) -> None:
    if postgres_url() is None:
        pytest.skip(POSTGRES_SKIP_REASON)
    async with (
        database_url("postgres", tmp_path) as url,
        running_stack(url, manifests) as stack,
        replica(stack, url, manifests) as second,
    ):
        agents = [stack.agent(), Agent(second.url, stack.keys["acme-support"], stack.http)]
        for agent in agents:
            assert await outcome(agent, 550, f"before-{agent.url}") == "pending"
        edit(manifests, THRESHOLD, "if: amount > 600")
        for agent in agents:
            await served(agent, 550, "auto_approved")


async def test_sighup_reloads_countersign_serve(tmp_path: Path, manifests: Path) -> None:
    """The real process, not polling: an edit is served after SIGHUP."""
    async with running_emulator(EmulatorConfig(), load_seed(manifests)) as emu:
        env = service_env(emu, f"sqlite+aiosqlite:///{tmp_path / 'cs.db'}", manifests)
        env["COUNTERSIGN_MANIFEST_POLL_SECONDS"] = "0"
        await cli(env, "db", "upgrade")
        key = (await cli(env, "tenant", "key", "create", "acme-support")).strip().splitlines()[-1]
        port = free_port()
        async with serve(env, port, tmp_path / "serve.log") as proc, aiohttp.ClientSession() as http:
            agent = Agent(f"http://127.0.0.1:{port}", key, http)
            assert await outcome(agent, 550, "before") == "pending"
            edit(manifests, THRESHOLD, "if: amount > 600")
            await asyncio.sleep(1.0)
            assert await outcome(agent, 550, "not-yet") == "pending"
            proc.send_signal(signal.SIGHUP)
            await served(agent, 550, "auto_approved")
            assert proc.returncode is None  # reloaded, not stopped
