"""Helpers for tests that drive a bot through the emulator: start it, act as people, wait, inject faults.

async with running_emulator(EmulatorConfig(bot_url=bot_url), small_seed()) as emulator:
    slack = SlackDriver(emulator)
    await slack.click("U0ADA", channel="C0SUPPORT1", action_id="approve", text="Refund")
    await slack.wait_for_message("C0SUPPORT1", text="Approved by")
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from aiohttp import web

from bot.sandbox.clock import Clock, Ids
from bot.sandbox.core import ApiCall, EmulatorConfig
from bot.sandbox.delivery import Delivery
from bot.sandbox.faults import Fault
from bot.sandbox.seed import ChannelSeed, UsergroupSeed, UserSeed, WorkspaceSeed
from bot.sandbox.server import Emulator, create_emulator
from bot.sandbox.workspace import Channel, Ephemeral, Message, View

T = TypeVar("T")


def small_seed() -> WorkspaceSeed:
    """Three reviewers in #reviews, an admin, a user group; plus the agent owner and outsider."""
    reviewers = ["U0ADA", "U0BEN", "U0CHLOE"]
    return WorkspaceSeed(
        users=[UserSeed("U0ADA", is_admin=True), UserSeed("U0BEN"), UserSeed("U0CHLOE"), UserSeed("U0DEV")],
        channels=[
            ChannelSeed("C0REVIEWS", "reviews", [*reviewers, "U0AGENTOWNER", "U0OUTSIDER"]),
            ChannelSeed("C0PRIVATE", "private-ops", ["U0ADA"], is_private=True, bot_is_member=False),
            ChannelSeed("C0QUIET", "quiet", ["U0DEV"], bot_is_member=False),
        ],
        usergroups=[UsergroupSeed("S0REVIEWERS", "reviewers", reviewers)],
    )


@asynccontextmanager
async def running_emulator(
    config: EmulatorConfig | None = None,
    seed: WorkspaceSeed | None = None,
    *,
    clock: Clock | None = None,
    ids: Ids | None = None,
) -> AsyncIterator[Emulator]:
    """An emulator listening on a free port of 127.0.0.1 for the duration of the block."""
    emulator = create_emulator(config, seed, clock=clock, ids=ids)
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


@asynccontextmanager
async def serve_app(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on a free port of 127.0.0.1 for the duration of the block; yields its base URL."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def serve_handler(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> AsyncIterator[str]:
    """Serve one aiohttp handler on ``POST /slack/events`` of a free port; yields that URL."""
    app = web.Application()
    app.router.add_post("/slack/events", handler)
    async with serve_app(app) as base:
        yield base + "/slack/events"


def message_text(message: Message | Ephemeral) -> str:
    """The message's text and every text in its blocks, for matching."""
    parts = [message.text]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "text" and isinstance(value, str):
                    parts.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(message.blocks)
    return "\n".join(parts)


def action_ids(message: Message | Ephemeral) -> set[str]:
    found: set[str] = set()
    for block in message.blocks:
        for el in [*(block.get("elements") or []), block.get("accessory"), block.get("element")]:
            if isinstance(el, dict) and "action_id" in el:
                found.add(el["action_id"])
    return found


def _matches(message: Message | Ephemeral, text: str | None, action_id: str | None) -> bool:
    return (text is None or text in message_text(message)) and (action_id is None or action_id in action_ids(message))


class SlackDriver:
    """Acts as people in the emulated workspace and waits for the bot's effects (no fixed sleeps)."""

    def __init__(self, emulator: Emulator, *, timeout: float = 5.0) -> None:
        self.emulator = emulator
        self.timeout = timeout

    # -- reading ---------------------------------------------------------------------------------------------
    def _channel(self, channel: str) -> Channel:
        found = self.emulator.workspace.resolve_channel(channel)
        if found is None:
            raise LookupError(f"no channel {channel}")
        return found

    def messages(self, channel: str) -> list[Message]:
        """Top-level messages of a channel, oldest first."""
        return list(self._channel(channel).top_level())

    def thread(self, channel: str, ts: str) -> list[Message]:
        """The replies under ``ts``, oldest first."""
        return list(self._channel(channel).replies(ts))

    def ephemerals(self, user: str, channel: str | None = None) -> list[Ephemeral]:
        channels = [self._channel(channel)] if channel else list(self.emulator.workspace.channels.values())
        return [e for c in channels for e in c.ephemerals if e.user == user]

    def find_message(self, channel: str, *, text: str | None = None, action_id: str | None = None) -> Message | None:
        """The newest message (top-level or reply) with ``text`` in it and/or a control ``action_id``."""
        for message in reversed(self._channel(channel).messages):
            if _matches(message, text, action_id):
                return message
        return None

    def modal(self, user: str) -> View | None:
        return self.emulator.workspace.top_modal(user)

    def home(self, user: str) -> View | None:
        return self.emulator.workspace.homes.get(user)

    def calls(self, method: str) -> list[ApiCall]:
        return [c for c in self.emulator.calls if c.method == method]

    # -- waiting -----------------------------------------------------------------------------------------------
    async def wait_until(self, probe: Callable[[], T | None], *, what: str, timeout: float | None = None) -> T:
        """Re-evaluate ``probe`` on every emulator change (and every 50 ms) until it is truthy."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.timeout if timeout is None else timeout)
        while True:
            version = self.emulator.core.version
            result = probe()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"timed out waiting for {what}")
            await self.emulator.wait_changed(version, min(remaining, 0.05))

    async def wait_for_message(
        self,
        channel: str,
        *,
        text: str | None = None,
        action_id: str | None = None,
        predicate: Callable[[Message], bool] | None = None,
        timeout: float | None = None,
    ) -> Message:
        def probe() -> Message | None:
            for message in reversed(self._channel(channel).messages):
                if _matches(message, text, action_id) and (predicate is None or predicate(message)):
                    return message
            return None

        return await self.wait_until(probe, what=f"a message in {channel} ({text!r}, {action_id!r})", timeout=timeout)

    async def wait_for_ephemeral(
        self, user: str, *, text: str | None = None, channel: str | None = None, timeout: float | None = None
    ) -> Ephemeral:
        def probe() -> Ephemeral | None:
            return next((e for e in reversed(self.ephemerals(user, channel)) if _matches(e, text, None)), None)

        return await self.wait_until(probe, what=f"an ephemeral for {user} ({text!r})", timeout=timeout)

    async def wait_for_call(
        self,
        method: str,
        *,
        predicate: Callable[[ApiCall], bool] | None = None,
        after: int = 0,
        timeout: float | None = None,
    ) -> ApiCall:
        """The first call of ``method`` (from index ``after`` of ``emulator.calls``) matching ``predicate``."""

        def probe() -> ApiCall | None:
            for call in self.emulator.calls[after:]:
                if call.method == method and (predicate is None or predicate(call)):
                    return call
            return None

        return await self.wait_until(probe, what=f"a {method} call", timeout=timeout)

    async def wait_for_modal(self, user: str, *, callback_id: str | None = None, timeout: float | None = None) -> View:
        def probe() -> View | None:
            view = self.modal(user)
            return view if view and (callback_id is None or view.data["callback_id"] == callback_id) else None

        return await self.wait_until(probe, what=f"a modal for {user} ({callback_id!r})", timeout=timeout)

    async def wait_for_home(self, user: str, *, text: str | None = None, timeout: float | None = None) -> View:
        def probe() -> View | None:
            home = self.home(user)
            if home is None:
                return None
            fake = Message("", "", "", home.data["blocks"], "")
            return home if text is None or text in message_text(fake) else None

        return await self.wait_until(probe, what=f"a home view for {user} ({text!r})", timeout=timeout)

    # -- acting ------------------------------------------------------------------------------------------------
    async def click(
        self,
        user: str,
        *,
        channel: str,
        action_id: str,
        text: str | None = None,
        message_ts: str | None = None,
        block_id: str | None = None,
        value: str | None = None,
    ) -> Delivery:
        """Click ``action_id`` on the newest message in ``channel`` that has it (and ``text``), as ``user``.

        Looks at the channel's messages and thread replies, then at ``user``'s ephemerals there.
        """
        if message_ts is None:
            message = await self.wait_for_message(channel, text=text, action_id=action_id)
            message_ts = message.ts
            own = [e for e in self.ephemerals(user, channel) if _matches(e, text, action_id)]
            if own and float(own[-1].ts) > float(message_ts):
                message_ts = own[-1].ts
        return await self.emulator.click(
            user, channel=channel, message_ts=message_ts, action_id=action_id, block_id=block_id, value=value
        )

    async def click_in_view(
        self,
        user: str,
        *,
        action_id: str,
        home: bool = False,
        inputs: dict[str, Any] | None = None,
        value: str | None = None,
    ) -> Delivery:
        """Click a button in ``user``'s open modal (or their Home tab with ``home=True``)."""
        view = self.home(user) if home else await self.wait_for_modal(user)
        if view is None:
            raise LookupError(f"{user} has no home view")
        return await self.emulator.click(user, view_id=view.id, action_id=action_id, inputs=inputs, value=value)

    async def submit_modal(
        self, user: str, inputs: dict[str, Any] | None = None, *, callback_id: str | None = None
    ) -> Delivery:
        """Fill ``inputs`` (keys: block_id, action_id or "block_id/action_id") and press Submit."""
        view = await self.wait_for_modal(user, callback_id=callback_id)
        return await self.emulator.submit_view(user, inputs, view_id=view.id)

    async def command(self, user: str, line: str, *, channel: str = "general") -> Delivery:
        return await self.emulator.command(user, line, channel=channel)

    async def open_home(self, user: str) -> Delivery:
        return await self.emulator.open_home(user)

    def fail_next(self, method: str, **kwargs: Any) -> Fault:
        """See ``Faults.fail_next``: error, status, retry_after, delay, times."""
        return self.emulator.faults.fail_next(method, **kwargs)
