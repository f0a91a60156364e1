"""State shared by the Web API, the deliveries and the page: config, clock, ids, workspace, records."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from bot.sandbox.clock import Clock, Ids
from bot.sandbox.faults import Faults
from bot.sandbox.workspace import JSON, Workspace

# The bot scopes of app.yaml; a method needing another one answers missing_scope.
DEFAULT_SCOPES = (
    "chat:write",
    "chat:write.public",
    "commands",
    "users:read",
    "usergroups:read",
    "channels:read",
    "channels:join",
    "groups:read",
    "channels:history",
    "groups:history",
    "im:history",
    "im:write",
)


@dataclass
class EmulatorConfig:
    """Who the app is in the emulated workspace, its credentials, and where Slack would deliver to."""

    # Fixed, public defaults: they only ever unlock this emulator (the sandbox may pass random ones).
    bot_token: str = "xoxb-sandbox-0000000000-countersign"  # noqa: S105
    signing_secret: str = "sandbox-signing-secret-0123456789abcdef"  # noqa: S105
    verification_token: str = "sandbox-verification-token"  # noqa: S105
    team_id: str = "T0SANDBOX"
    team_name: str = "Countersign Sandbox"
    domain: str = "countersign-sandbox"
    app_id: str = "A0COUNTERSIGN"
    bot_id: str = "B0COUNTERSIGN"
    bot_user_id: str = "U0COUNTERSIGN"
    bot_name: str = "countersign"
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    # Where interactions, commands and events are POSTed (the bot's /slack/events); None: nothing listens.
    bot_url: str | None = None
    # The agent API base URL the page's sample panel posts to, and the key per tenant.
    agent_api_url: str | None = None
    agent_api_keys: dict[str, str] = field(default_factory=dict)
    command: str = "/hitl"
    home_tab_enabled: bool = True
    ack_timeout: float = 3.0
    trigger_ttl: float = 3.0
    response_url_ttl: float = 30 * 60
    response_url_uses: int = 5
    rate_limiting: bool = False


@dataclass
class ApiCall:
    """One Web API call as the emulator received and answered it."""

    method: str
    args: JSON
    status: int
    response: JSON
    at: float

    @property
    def ok(self) -> bool:
        return self.status == 200 and bool(self.response.get("ok"))


@dataclass
class Trigger:
    user: str
    issued_at: float
    used: bool = False


@dataclass
class ResponseUrl:
    """A response_url handed to the bot with an interaction or a command."""

    id: str
    user: str
    channel: str | None
    created_at: float
    message_ts: str | None = None  # the message the interaction came from, for replace/delete_original
    is_ephemeral: bool = False
    uses: int = 0


@dataclass
class SampleRequest:
    """An agent request the page can send to the agent API."""

    tenant: str
    action: str
    params: JSON = field(default_factory=dict)
    context: JSON = field(default_factory=dict)
    name: str | None = None
    kind: str = "request"  # or "question": params are then the body of POST /v1/questions


@dataclass
class PoolInfo:
    """A reviewer pool of a manifest, so the page can say who may approve in which channel."""

    tenant: str
    name: str
    channel: str | None  # channel id
    members: list[str] = field(default_factory=list)


@dataclass
class Core:
    config: EmulatorConfig
    clock: Clock
    ids: Ids
    workspace: Workspace
    faults: Faults
    samples: list[SampleRequest] = field(default_factory=list)
    pools: list[PoolInfo] = field(default_factory=list)
    default_user: str | None = None  # who the page acts as first (a reviewer, so the first click counts)
    calls: list[ApiCall] = field(default_factory=list)
    deliveries: list[Any] = field(default_factory=list)  # list[Delivery]; typed loosely to avoid a cycle
    triggers: dict[str, Trigger] = field(default_factory=dict)
    response_urls: dict[str, ResponseUrl] = field(default_factory=dict)
    base_url: str = ""
    version: int = 0
    closing: bool = False
    _changed: asyncio.Event | None = None

    def touch(self) -> None:
        """Something visible changed: wake the page's long polls and the tests' waits."""
        self.version += 1
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait_changed(self, since: int, timeout: float) -> int:
        """Wait until ``version`` moves past ``since`` or ``timeout`` elapses; returns the version."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.version <= since and not self.closing:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            if self._changed is None:
                self._changed = asyncio.Event()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                break
        return self.version

    def close(self) -> None:
        self.closing = True
        self.touch()

    def issue_trigger(self, user: str) -> str:
        trigger_id = self.ids.trigger_id(self.clock.now())
        self.triggers[trigger_id] = Trigger(user, self.clock.now())
        return trigger_id

    def issue_response_url(
        self, *, kind: str, user: str, channel: str | None, message_ts: str | None = None, is_ephemeral: bool = False
    ) -> str:
        rid = self.ids.make("", 12)
        self.response_urls[rid] = ResponseUrl(rid, user, channel, self.clock.now(), message_ts, is_ephemeral)
        return f"{self.base_url}/hooks/{kind}/{self.config.team_id}/{rid}/{self.ids.secret(24)}"

    def user_name(self, user_id: str) -> str:
        user = self.workspace.users.get(user_id)
        return user.name if user else user_id
