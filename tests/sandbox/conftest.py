"""Fixtures for the emulator's own tests: a started emulator on a free port, a manual clock, real clients,
and a whole sandbox (emulator + service)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.sandbox import EmulatorConfig, Ids, ManualClock
from bot.sandbox.runner import Sandbox, SandboxOptions, credentials, load_seed, running_sandbox
from bot.sandbox.server import Emulator
from bot.sandbox.testing import SlackDriver, running_emulator, serve_handler, small_seed

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "slack"

# Opened by the stand-in Bolt apps of the delivery and browser tests when Reject is clicked.
REASON_MODAL = {
    "type": "modal",
    "callback_id": "reject_reason",
    "private_metadata": "r1",
    "title": {"type": "plain_text", "text": "Reject request"},
    "submit": {"type": "plain_text", "text": "Reject"},
    "blocks": [
        {
            "type": "input",
            "block_id": "reason",
            "label": {"type": "plain_text", "text": "Why reject?"},
            "element": {"type": "plain_text_input", "action_id": "text", "multiline": True},
        }
    ],
}


def sample_text(name: str) -> str:
    """A Slack payload sample from tests/fixtures/slack, as text."""
    return (SAMPLES / name).read_text()


def sample(name: str) -> Any:
    """A JSON Slack payload sample from tests/fixtures/slack."""
    return json.loads(sample_text(name))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def emulator(clock: ManualClock) -> AsyncIterator[Emulator]:
    async with running_emulator(EmulatorConfig(), small_seed(), clock=clock, ids=Ids(deterministic=True)) as emu:
        yield emu


@pytest.fixture
def slack(emulator: Emulator) -> SlackDriver:
    return SlackDriver(emulator)


@pytest.fixture
def client(emulator: Emulator) -> AsyncWebClient:
    return AsyncWebClient(token=emulator.config.bot_token, base_url=emulator.api_url)


@pytest.fixture
async def bolt(emulator: Emulator) -> AsyncIterator[AsyncApp]:
    """A real Bolt app (signature verification on) served on a free port; the emulator delivers to it."""
    app = AsyncApp(
        client=AsyncWebClient(token=emulator.config.bot_token, base_url=emulator.api_url),
        signing_secret=emulator.config.signing_secret,
    )

    async def handler(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await app.async_dispatch(await to_bolt_request(request)))

    async with serve_handler(handler) as url:
        emulator.config.bot_url = url
        yield app


@pytest.fixture
async def sandbox(repo_root: Path, tmp_path: Path) -> AsyncIterator[Sandbox]:
    """`countersign sandbox` in-process: the emulator and the real service on free ports, SQLite in tmp_path."""
    options = SandboxOptions(port=0, data_dir=tmp_path / "data", manifests=repo_root / "manifests", rate_limiting=False)
    seed = load_seed(options.manifests)
    async with running_sandbox(seed, credentials(options.data_dir), options) as running:
        yield running
