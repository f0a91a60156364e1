"""Starting and stopping the real service: what it checks of Slack before anything else, and how fast it
stops, in HTTP mode and in Socket Mode, whatever is in flight."""

from __future__ import annotations

import asyncio
import io
import logging
import shutil
import signal
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from pydantic import SecretStr

from bot import logs
from bot.config import ConfigError
from bot.runtime import Runtime
from bot.sandbox import EmulatorConfig
from bot.sandbox.runner import load_seed
from bot.sandbox.testing import SlackDriver, running_emulator
from store.uow import uow
from tests.e2e.conftest import MANIFESTS, issue_api_keys, settings_for
from tests.serviceproc import cli, free_port, serve, service_env, until_ok

STOP_WITHIN = 10.0  # seconds from SIGTERM to exit, in every mode


def _manifests_with(tmp_path: Path, old: str, new: str) -> Path:
    """The example manifests with ``old`` replaced by ``new`` in acme-support's."""
    manifests = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, manifests)
    acme = manifests / "acme-support.yaml"
    acme.write_text(acme.read_text().replace(old, new))
    return manifests


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'cs.db'}"


async def test_a_bot_token_slack_refuses_stops_the_start_before_the_database(tmp_path: Path) -> None:
    async with running_emulator(EmulatorConfig(), load_seed(MANIFESTS)) as emu:
        settings = settings_for(emu, _sqlite(tmp_path)).model_copy(
            update={"slack_bot_token": SecretStr("xoxb-revoked")}
        )
        with pytest.raises(ConfigError, match=r"SLACK_BOT_TOKEN was refused by Slack \(invalid_auth\)"):
            await Runtime.build(settings)
    assert not (tmp_path / "cs.db").exists()  # refused before any database work


async def test_pools_written_as_channel_names_get_their_cards_in_those_channels(tmp_path: Path) -> None:
    manifests = _manifests_with(tmp_path, "channel: C0SUPPORT1", 'channel: "#refund-reviews"')
    async with running_emulator(EmulatorConfig(), load_seed(manifests)) as emu:
        channel = emu.workspace.resolve_channel("#refund-reviews")
        assert channel is not None and channel.id.startswith("C")
        runtime = await Runtime.build(settings_for(emu, _sqlite(tmp_path), manifests))
        try:
            await runtime.start(host="127.0.0.1", port=0)
            key = (await issue_api_keys(runtime))["acme-support"]
            body = {"action": "process_refund", "params": {"amount": 900, "currency": "EUR", "order_id": "N-1"}}
            async with aiohttp.ClientSession() as http:
                headers = {"Authorization": f"Bearer {key}"}
                async with http.post(runtime.url + "/v1/requests", json=body, headers=headers) as resp:
                    assert resp.status == 202
            for _ in range(200):
                if list(channel.top_level()):
                    break
                await asyncio.sleep(0.05)
            assert len(list(channel.top_level())) == 1  # the card, in the channel the name stands for
            async with uow(runtime.sessionmaker, read_only=True) as tx:
                pool = (await tx.pools.views("acme-support"))["support_tier_1"]
            assert pool.channel == channel.id  # stored as the id (Slack's history and replies take no names)
        finally:
            await runtime.stop()


async def test_a_channel_name_no_channel_has_stops_the_start_naming_tenant_and_pool(tmp_path: Path) -> None:
    manifests = _manifests_with(tmp_path, "channel: C0SUPPORT2", 'channel: "#no-such-channel"')
    async with running_emulator(EmulatorConfig(), load_seed(MANIFESTS)) as emu:
        with pytest.raises(ConfigError, match="acme-support: pool support_tier_2: no channel #no-such-channel"):
            await Runtime.build(settings_for(emu, _sqlite(tmp_path), manifests))


async def test_socket_mode_without_a_signing_secret_serves_no_slack_route(tmp_path: Path) -> None:
    """Nothing could check a POST's signature, so a forged click gets a 404 and the bot does nothing."""
    async with running_emulator(EmulatorConfig(), load_seed(MANIFESTS)) as emu:
        settings = settings_for(emu, _sqlite(tmp_path)).model_copy(
            update={"slack_signing_secret": None, "slack_app_token": SecretStr("xapp-1-test")}
        )
        runtime = await Runtime.build(settings)
        await runtime.start(host="127.0.0.1", port=0)
        forged = {"payload": '{"type": "block_actions", "user": {"id": "U0ADA"}, "channel": {"id": "U0ADA"}}'}
        try:
            async with aiohttp.ClientSession() as http, http.post(runtime.url + "/slack/events", data=forged) as resp:
                assert resp.status == 404
            assert SlackDriver(emu).calls("chat.postMessage") == []
        finally:
            started = time.monotonic()
            await runtime.stop()  # the Socket Mode client never connected (the emulator has no WebSocket)
            assert time.monotonic() - started < STOP_WITHIN


async def test_sigterm_answers_the_long_polls_in_flight_and_stops_within_seconds(tmp_path: Path) -> None:
    async with running_emulator(EmulatorConfig(), load_seed(MANIFESTS)) as emu:
        env = service_env(emu, _sqlite(tmp_path), MANIFESTS)
        await cli(env, "db", "upgrade")
        key = (await cli(env, "tenant", "key", "create", "acme-support")).strip().splitlines()[-1]
        port = free_port()
        async with serve(env, port, tmp_path / "serve.log") as proc, aiohttp.ClientSession() as http:
            base, headers = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {key}"}
            body = {"action": "process_refund", "params": {"amount": 900, "currency": "EUR", "order_id": "T-1"}}
            async with http.post(base + "/v1/requests", json=body, headers=headers) as resp:
                request_id = (await resp.json())["id"]

            async def long_poll() -> tuple[int, str]:
                wait = {**headers, "Prefer": "wait=60"}
                async with http.get(f"{base}/v1/requests/{request_id}", headers=wait) as resp:
                    return resp.status, (await resp.json())["status"]

            polling = asyncio.create_task(long_poll())
            await asyncio.sleep(0.5)  # the poll is waiting on the decision
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(polling, STOP_WITHIN) == (202, "pending")  # answered, not cut off
            assert await asyncio.wait_for(proc.wait(), STOP_WITHIN) == 0
            assert time.monotonic() - started < STOP_WITHIN


async def test_sigterm_stops_socket_mode_while_slack_is_unreachable(tmp_path: Path) -> None:
    async with running_emulator(EmulatorConfig(), load_seed(MANIFESTS)) as emu:
        env = service_env(emu, _sqlite(tmp_path), MANIFESTS)
    # The emulator is gone: nothing answers at SLACK_API_URL any more.
    del env["SLACK_SIGNING_SECRET"]
    env |= {"SLACK_APP_TOKEN": "xapp-1-test", "COUNTERSIGN_PORT": str(port := free_port())}
    log = tmp_path / "serve.log"
    with log.open("ab") as sink:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "serve", env=env, stderr=sink)
    try:
        await until_ok(port, "/healthz", log)  # up, not ready: the Socket Mode client cannot connect
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), STOP_WITHIN) == 0
        assert time.monotonic() - started < STOP_WITHIN
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert "Slack is unreachable" in log.read_text()


async def test_libraries_do_not_log_a_forged_requests_body(tmp_path: Path) -> None:
    """Bolt logs a refused signature's body and signature at INFO: at the libraries' WARNING, not at all.
    Logging is set up first, then the service built, as ``countersign serve`` does (Bolt copies levels
    onto its loggers when the app is built)."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level, {n: logging.getLogger(n).level for n in logs.LIBRARIES}
    out = io.StringIO()
    try:
        logs.configure(json_lines=False)
        root.handlers[0].setStream(out)  # type: ignore[attr-defined]
        async with running_emulator(EmulatorConfig(), load_seed(MANIFESTS)) as emu:
            runtime = await Runtime.build(settings_for(emu, _sqlite(tmp_path)))
            try:
                await runtime.start(host="127.0.0.1", port=0)
                body = {"payload": '{"type": "block_actions", "marker": "FORGED-BODY-MARKER"}'}
                signed = {"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=" + "0" * 64}
                async with (
                    aiohttp.ClientSession() as http,
                    http.post(runtime.url + "/slack/events", data=body, headers=signed) as resp,
                ):
                    assert resp.status == 401
            finally:
                await runtime.stop()
    finally:
        root.handlers[:], level, levels = saved
        root.setLevel(level)
        for name, old in levels.items():
            logging.getLogger(name).setLevel(old)
    assert "countersign serving on" in out.getvalue()  # our own INFO lines still show
    assert "FORGED-BODY-MARKER" not in out.getvalue()
