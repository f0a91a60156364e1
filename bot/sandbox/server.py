"""The emulator: one aiohttp server for the Web API, response_urls and the page, built by a factory."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from bot.sandbox.clock import Clock, Ids, SystemClock
from bot.sandbox.core import ApiCall, Core, EmulatorConfig, SampleRequest
from bot.sandbox.delivery import Deliverer, Delivery
from bot.sandbox.faults import Faults
from bot.sandbox.hooks import HookError, ResponseUrls
from bot.sandbox.interactions import InteractionError, Interactions
from bot.sandbox.page import add_page_routes
from bot.sandbox.seed import WorkspaceSeed, build_workspace
from bot.sandbox.views import ViewsApi
from bot.sandbox.webapi import NEEDED_SCOPE, PER_CHANNEL_SCOPE, WebApi
from bot.sandbox.webargs import ApiError, arg_str
from bot.sandbox.workspace import JSON, Message, Workspace

log = logging.getLogger(__name__)

JSON_CONTENT = "application/json; charset=utf-8"


class Emulator:
    """A local Slack: Web API at ``api_url``, deliveries to ``config.bot_url``, a page at ``url``."""

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        seed: WorkspaceSeed | None = None,
        *,
        clock: Clock | None = None,
        ids: Ids | None = None,
    ) -> None:
        self.config = config or EmulatorConfig()
        seed = seed or WorkspaceSeed()
        clock = clock or SystemClock()
        workspace = build_workspace(
            seed, team_id=self.config.team_id, team_name=self.config.team_name, domain=self.config.domain
        )
        self.core = Core(
            self.config, clock, ids or Ids(), workspace, Faults(clock, rate_limiting=self.config.rate_limiting)
        )
        self.core.samples = list(seed.samples)
        self.core.pools = list(seed.pools)
        self.core.default_user = seed.default_user
        self.api = WebApi(self.core)
        self.views = ViewsApi(self.core)
        self.hooks = ResponseUrls(self.core, self.api)
        self.deliverer = Deliverer(self.core)
        self.interactions = Interactions(self.core, self.api, self.views, self.deliverer)
        self._methods = {**self.api.methods, **self.views.methods}
        self._runner: web.AppRunner | None = None

    # -- state --------------------------------------------------------------------------------------------
    @property
    def clock(self) -> Clock:
        return self.core.clock

    @property
    def workspace(self) -> Workspace:
        return self.core.workspace

    @property
    def faults(self) -> Faults:
        return self.core.faults

    @property
    def calls(self) -> list[ApiCall]:
        return self.core.calls

    @property
    def deliveries(self) -> list[Delivery]:
        return self.core.deliveries

    @property
    def samples(self) -> list[SampleRequest]:
        return self.core.samples

    @property
    def url(self) -> str:
        if not self.core.base_url:
            raise RuntimeError("the emulator is not started")
        return self.core.base_url

    @property
    def api_url(self) -> str:
        """The ``base_url`` for slack_sdk's clients (it ends with ``/api/``)."""
        return self.url + "/api/"

    # -- lifecycle ------------------------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self._web_api)
        app.router.add_post("/hooks/{kind}/{team}/{rid}/{secret}", self._response_url)
        add_page_routes(app, self)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0: a free port); returns the base URL."""
        self._runner = web.AppRunner(self.build_app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        sockets = self._runner.addresses
        bound_port = sockets[0][1]
        self.core.base_url = f"http://{host}:{bound_port}"
        self.core.closing = False
        return self.core.base_url

    async def stop(self) -> None:
        self.core.close()
        await self.deliverer.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Emulator:
        if not self.core.base_url or self._runner is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_changed(self, since: int, timeout: float) -> int:
        return await self.core.wait_changed(since, timeout)

    # -- what people do (see Interactions for the arguments) ----------------------------------------------
    async def click(self, user: str, **kwargs: Any) -> Delivery:
        return await self.interactions.click(user, **kwargs)

    async def submit_view(
        self, user: str, inputs: dict[str, Any] | None = None, *, view_id: str | None = None
    ) -> Delivery:
        return await self.interactions.submit(user, inputs, view_id=view_id)

    async def close_view(self, user: str, *, view_id: str | None = None) -> Delivery | None:
        return await self.interactions.close(user, view_id=view_id)

    async def command(self, user: str, line: str, *, channel: str = "general") -> Delivery:
        return await self.interactions.command(user, line, channel=channel)

    async def open_home(self, user: str) -> Delivery:
        return await self.interactions.open_home(user)

    def post_user_message(self, user: str, channel: str, text: str, *, thread_ts: str | None = None) -> Message:
        """A person writes in a channel (no event reaches the bot: the app subscribes to none)."""
        found = self.workspace.resolve_channel(channel)
        if found is None or user not in self.workspace.users:
            raise InteractionError(f"no channel {channel} or user {user}")
        message = Message(found.id, self.core.ids.ts(self.clock.now()), text, [], user, thread_ts=thread_ts)
        parent = found.find(thread_ts) if thread_ts else None
        if parent is not None:
            parent.thread_ts, parent.reply_count, parent.latest_reply = parent.ts, parent.reply_count + 1, message.ts
        found.messages.append(message)
        self.core.touch()
        return message

    # -- HTTP handlers ----------------------------------------------------------------------------------------
    async def _web_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: JSON = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                try:
                    body = await request.json()
                except ValueError:
                    return _api_response(200, {"ok": False, "error": "invalid_json"})
                if isinstance(body, dict):
                    args.update(body)
            else:
                args.update(await request.post())
        status, body, headers = await self._call(method, args, request.headers.get("Authorization", ""))
        logged = {k: v for k, v in args.items() if k != "token"}
        self.core.calls.append(ApiCall(method, logged, status, body, self.core.clock.now()))
        self.core.touch()
        return _api_response(status, body, headers)

    async def _call(self, method: str, args: JSON, authorization: str) -> tuple[int, JSON, dict[str, str]]:
        handler = self._methods.get(method)
        if handler is None:
            return 200, {"ok": False, "error": "unknown_method"}, {}
        token = authorization.removeprefix("Bearer ").strip() if authorization.startswith("Bearer ") else ""
        token = token or arg_str(args, "token")
        headers: dict[str, str] = {}
        slow = 0.0
        try:
            if not token:
                raise ApiError("not_authed")
            if token != self.config.bot_token:
                raise ApiError("invalid_auth")
            fault = self.core.faults.take_fault(method)
            if fault is not None and fault.error:
                await asyncio.sleep(fault.delay)
                extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                raise ApiError(fault.error, status=fault.status, headers=extra)
            if fault is not None:
                slow = fault.delay
            wait = self.core.faults.check_rate(method, arg_str(args, "channel") or None)
            if wait is not None:
                raise ApiError("ratelimited", status=429, headers={"Retry-After": str(wait)})
            if NEEDED_SCOPE.get(method) not in (None, *PER_CHANNEL_SCOPE):
                self.api.check_scope(method)  # conversations.* check it per channel type
            body = handler(args)
        except ApiError as exc:
            status, body, headers = exc.status, {"ok": False, "error": exc.error, **exc.extra}, exc.headers
        else:
            status = 200
            if method == "auth.test":
                headers["x-oauth-scopes"] = ",".join(self.config.scopes)
        # A slow answer, not a slow call: what the call does is done (a message is posted at once), so a
        # client that gives up waiting cannot tell whether it happened, as with Slack.
        await asyncio.sleep(slow)
        return status, body, headers

    async def _response_url(self, request: web.Request) -> web.Response:
        raw = await request.text()
        try:
            text = self.hooks.post(request.match_info["rid"], raw)
            status = 200
        except HookError as exc:
            text, status = exc.text, exc.status
        self.core.calls.append(
            ApiCall("response_url", {"body": raw}, status, {"ok": status == 200, "text": text}, self.core.clock.now())
        )
        self.core.touch()
        return web.Response(status=status, text=text, content_type="text/plain")


def _api_response(status: int, body: JSON, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(body).encode(), headers={"Content-Type": JSON_CONTENT, **(headers or {})}
    )


def create_emulator(
    config: EmulatorConfig | None = None,
    seed: WorkspaceSeed | None = None,
    *,
    clock: Clock | None = None,
    ids: Ids | None = None,
) -> Emulator:
    """A new emulator, not yet listening: ``await emulator.start()`` (or ``async with``)."""
    return Emulator(config, seed, clock=clock, ids=ids)
