"""End-to-end: the real service (Bolt, agent API, outbox worker, database) against the Slack emulator.

Every request to the bot is signed by the emulator and verified by Bolt; every Web API call
the bot makes lands in the emulator. Runs on SQLite, and on PostgreSQL when configured.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from bot.callbacks import SIGNATURE_HEADER
from bot.config import Settings
from bot.ids import ActionId, BlockId, CallbackId
from bot.runtime import Runtime
from bot.sandbox import EmulatorConfig, Ids, ManualClock
from bot.sandbox.runner import load_seed
from bot.sandbox.server import Emulator
from bot.sandbox.testing import SlackDriver, running_emulator, serve_app
from store.audit import AuditRecord
from store.outbox import RetryPolicy
from store.uow import uow
from tests.dbsupport import BACKENDS, database_url

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
LAB_MANIFEST = Path(__file__).parent / "manifests" / "lab.yaml"

# People of the example manifests (manifests/acme-support.yaml, manifests/platform/policy.yaml).
ADA, BEN, CHLOE = "U0ADA", "U0BEN", "U0CHLOE"  # acme-support: support_tier_1 (Ada is the admin)
DEV, ERIN = "U0DEV", "U0ERIN"  # acme-support: support_tier_2
OUTSIDER = "U0OUTSIDER"
TIER1 = "C0SUPPORT1"
TIER2 = "C0SUPPORT2"
HAL = "U0HAL"  # platform: platform_team, and its admin
PLATFORM = "C0PLATFORM"
# tests/e2e/manifests/lab.yaml: a crowd of 20, a pool of one, a pool without a channel.
CROWD = "C0CROWD"
CROWD_MEMBERS = [f"U0R{i:02d}" for i in range(1, 21)]
SOLO, SOLO_CHANNEL = "U0SOLO", "C0SOLO"
LAB_ADMIN = "U0LABADMIN"

# Outbox retries in milliseconds, so a test sees several attempts without waiting out real backoffs.
FAST_RETRY = RetryPolicy(base=timedelta(milliseconds=50), cap=timedelta(milliseconds=200), jitter_ratio=0)

T = TypeVar("T")


def refund(order_id: str) -> dict[str, Any]:
    """A $620 refund: acme-support sends it to tier 1's review; its card number and email are sensitive."""
    return {
        "amount": 620,
        "currency": "EUR",
        "customer": {"name": "Ana", "email": "ana@example.com"},
        "card_number": "4111111111111111",
        "order_id": order_id,
    }


@dataclass
class Agent:
    """An agent calling the API with one tenant's key."""

    url: str
    key: str
    http: aiohttp.ClientSession

    async def call(
        self, method: str, path: str, body: Any = None, *, wait: int = 0, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        hdrs = {"Authorization": f"Bearer {self.key}", **(headers or {})}
        if wait:
            hdrs["Prefer"] = f"wait={wait}"
        async with self.http.request(method, self.url + path, json=body, headers=hdrs) as resp:
            return resp.status, await resp.json(content_type=None)

    async def ask(self, action: str, params: dict[str, Any], **extra: Any) -> tuple[int, Any]:
        wait = extra.pop("wait", 0)
        return await self.call("POST", "/v1/requests", {"action": action, "params": params, **extra}, wait=wait)


@dataclass
class Stack:
    emulator: Emulator
    runtime: Runtime
    slack: SlackDriver
    http: aiohttp.ClientSession
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.runtime.url

    def agent(self, tenant: str = "acme-support") -> Agent:
        return Agent(self.url, self.keys[tenant], self.http)

    async def audit(self, tenant: str, request_id: str) -> list[AuditRecord]:
        async with uow(self.runtime.sessionmaker, read_only=True) as tx:
            return await tx.audit.for_request(tenant, request_id)

    async def secret(self, tenant: str) -> str:
        async with uow(self.runtime.sessionmaker) as tx:
            return await tx.tenants.callback_secret(tenant, now=self.runtime.clock.now())

    async def reject(self, user: str, reason: str, *, channel: str = TIER1) -> None:
        """``user`` clicks Reject on the newest card in ``channel`` and gives ``reason`` in the modal."""
        await self.slack.click(user, channel=channel, action_id=ActionId.REJECT)
        await self.slack.wait_for_modal(user, callback_id=CallbackId.REJECT_REASON)
        await self.slack.submit_modal(user, {f"{BlockId.REJECT_REASON}/reason": reason})


async def issue_api_keys(runtime: Runtime) -> dict[str, str]:
    """A fresh agent API key for every tenant the runtime serves."""
    async with uow(runtime.sessionmaker) as tx:
        return {
            tenant: (await tx.tenants.create_api_key(tenant, now=runtime.clock.now())).key
            for tenant in runtime.policies.tenants
        }


async def eventually(probe: Callable[[], Awaitable[T | None]], *, what: str, timeout: float = 15) -> T:
    """Poll an async ``probe`` (a database read) until it is truthy; for state that has no wake-up event."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await probe()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what} (last: {result!r})")
        await asyncio.sleep(0.02)


@dataclass
class Endpoint:
    """The agent's callback endpoint: answers ``failures`` 500s, then 200s; keeps what it received."""

    url: str = ""
    failures: int = 0
    on_success: Callable[[bytes, str], object] | None = None  # what the agent does with a callback it accepts
    received: list[tuple[bytes, str, int]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        status = 500 if len(self.received) < self.failures else 200
        raw, signature = await request.read(), request.headers.get(SIGNATURE_HEADER, "")
        if status == 200 and self.on_success is not None:
            self.on_success(raw, signature)
        self.received.append((raw, signature, status))
        self.changed.set()
        return web.json_response({"ok": status == 200}, status=status)

    async def wait_for(self, count: int, timeout: float = 10) -> None:
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                self.changed.clear()
                await self.changed.wait()


@asynccontextmanager
async def callback_endpoint(
    failures: int = 0, on_success: Callable[[bytes, str], object] | None = None
) -> AsyncIterator[Endpoint]:
    """An :class:`Endpoint` listening on ``POST /countersign`` of a free port for the duration of the block."""
    endpoint = Endpoint(failures=failures, on_success=on_success)
    app = web.Application()
    app.router.add_post("/countersign", endpoint.handle)
    async with serve_app(app) as base:
        endpoint.url = base + "/countersign"
        yield endpoint


def settings_for(emulator: Emulator, db_url: str, manifests: Path = MANIFESTS) -> Settings:
    return Settings(
        slack_bot_token=SecretStr(emulator.config.bot_token),
        slack_signing_secret=SecretStr(emulator.config.signing_secret),
        slack_api_url=emulator.api_url,
        database_url=db_url,
        manifests_dir=manifests,
        slack_channel_rate=0,  # unpaced: the emulator has no rate limit unless a test sets one
    )


@pytest.fixture(params=BACKENDS)
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with database_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    """The example manifests plus the test-only ``lab`` tenant."""
    directory = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, directory)
    shutil.copy(LAB_MANIFEST, directory / LAB_MANIFEST.name)
    return directory


@pytest.fixture
async def stack(db_url: str, manifests: Path) -> AsyncIterator[Stack]:
    async with running_stack(db_url, manifests) as stack:
        yield stack


@asynccontextmanager
async def running_stack(db_url: str, manifests: Path, **settings: Any) -> AsyncIterator[Stack]:
    """The emulator and one service on ``db_url`` serving ``manifests`` (what the ``stack`` fixture gives);
    ``settings`` override the test settings."""
    seed = load_seed(manifests)
    async with running_emulator(EmulatorConfig(), seed, clock=ManualClock(), ids=Ids(deterministic=True)) as emu:
        runtime = await Runtime.build(settings_for(emu, db_url, manifests).model_copy(update=settings))
        await runtime.start(host="127.0.0.1", port=0)
        emu.config.bot_url = runtime.url + "/slack/events"
        async with aiohttp.ClientSession() as http:
            stack = Stack(emu, runtime, SlackDriver(emu, timeout=10), http, await issue_api_keys(runtime))
            try:
                yield stack
            finally:
                await runtime.stop()
