"""kill -9 with deadlines pending: after a restart they fire (they live in the database, not in memory)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import aiohttp

from bot.ids import ActionId
from bot.sandbox import EmulatorConfig
from bot.sandbox.runner import load_seed
from bot.sandbox.testing import SlackDriver, running_emulator
from tests.deadlines.test_deadlines import FAST
from tests.serviceproc import cli, free_port, serve, service_env


async def test_deadlines_fire_after_kill_9_and_restart(tmp_path: Path) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "fast.yaml").write_text(FAST)
    db = f"sqlite+aiosqlite:///{tmp_path / 'cs.db'}"
    async with running_emulator(EmulatorConfig(), load_seed(manifests)) as emu:
        slack = SlackDriver(emu, timeout=15)
        env = service_env(emu, db, manifests)
        key = (await cli(env, "tenant", "key", "create", "fast")).strip().splitlines()[-1]
        port = free_port()
        emu.config.bot_url = f"http://127.0.0.1:{port}/slack/events"
        async with serve(env, port, tmp_path / "serve.log") as proc, aiohttp.ClientSession() as http:
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
        async with serve(env, port, tmp_path / "serve.log"):
            card = await slack.wait_for_message("C0SECOND", action_id=ActionId.APPROVE)
            assert "9.9.9" in repr(card.blocks)
