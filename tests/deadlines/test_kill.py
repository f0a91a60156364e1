"""kill -9 with deadlines pending: after a restart they fire (they live in the database, not in memory)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from bot.ids import ActionId
from bot.sandbox import EmulatorConfig
from bot.sandbox.runner import load_seed
from bot.sandbox.server import Emulator
from bot.sandbox.testing import SlackDriver, running_emulator
from tests.deadlines.test_deadlines import FAST


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@asynccontextmanager
async def serve(env: dict[str, str], port: int) -> AsyncIterator[asyncio.subprocess.Process]:
    """``countersign serve`` in its own process, ready when /readyz says so."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "serve", env={**env, "COUNTERSIGN_PORT": str(port)},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the service did not become ready")
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_deadlines_fire_after_kill_9_and_restart(tmp_path: Path) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "fast.yaml").write_text(FAST)
    db = f"sqlite+aiosqlite:///{tmp_path / 'cs.db'}"
    async with running_emulator(EmulatorConfig(), load_seed(manifests)) as emu:
        slack = SlackDriver(emu, timeout=15)
        env = _env(emu, db, manifests)
        key = await _create_key(env)
        port = free_port()
        emu.config.bot_url = f"http://127.0.0.1:{port}/slack/events"
        async with serve(env, port) as proc, aiohttp.ClientSession() as http:
            body = {"action": "deploy", "params": {"version": "9.9.9"}}
            async with http.post(
                f"http://127.0.0.1:{port}/v1/requests", json=body, headers={"Authorization": f"Bearer {key}"}
            ) as resp:
                assert resp.status == 202
            await slack.wait_for_message("C0FIRST", action_id=ActionId.APPROVE)
            os.kill(proc.pid, signal.SIGKILL)  # no cleanup, no goodbye: the 2 s deadline is still pending
            await proc.wait()
        await asyncio.sleep(2.5)  # the deadline passes while nothing runs
        assert slack.messages("C0SECOND") == []
        async with serve(env, port):
            card = await slack.wait_for_message("C0SECOND", action_id=ActionId.APPROVE)
            assert "9.9.9" in repr(card.blocks)


def _env(emu: Emulator, db: str, manifests: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "COUNTERSIGN_"))}
    return {
        **keep,
        "SLACK_BOT_TOKEN": emu.config.bot_token,
        "SLACK_SIGNING_SECRET": emu.config.signing_secret,
        "SLACK_API_URL": emu.api_url,
        "COUNTERSIGN_DATABASE_URL": db,
        "COUNTERSIGN_MANIFESTS": str(manifests),
    }


async def _create_key(env: dict[str, str]) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "tenant", "key", "create", "fast", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode().strip().splitlines()[-1]
