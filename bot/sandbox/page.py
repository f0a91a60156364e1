"""The emulator's web page: static files, a long-polled JSON state, and what the page's clicks do."""

from __future__ import annotations

import importlib.resources
import json
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from bot.sandbox.interactions import InteractionError
from bot.sandbox.workspace import JSON, Channel, Message

if TYPE_CHECKING:
    from bot.sandbox.server import Emulator

_STATIC = {"app.js": "text/javascript", "style.css": "text/css", "index.html": "text/html"}


def add_page_routes(app: web.Application, emulator: Emulator) -> None:
    page = Page(emulator)
    app.router.add_get("/", page.index)
    app.router.add_get("/static/{name}", page.static)
    app.router.add_get("/archives/{channel}/{p}", page.permalink)
    app.router.add_get("/_emu/state", page.state)
    app.router.add_post("/_emu/ui/{action}", page.ui)


class Page:
    def __init__(self, emulator: Emulator) -> None:
        self.emu = emulator
        # What the agent API last answered for each sent sample (by index): a reload of the page shows it again.
        self.answers: dict[int, JSON] = {}

    async def index(self, request: web.Request) -> web.Response:
        return _static_file("index.html")

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in _STATIC:
            raise web.HTTPNotFound()
        return _static_file(name)

    async def permalink(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(f"/#{request.match_info['channel']}")

    async def state(self, request: web.Request) -> web.Response:
        """The workspace as the acting user sees it; with ``since``, held until something changes (≤ 25 s)."""
        since = int(request.query.get("since", "-1"))
        if since >= 0:
            await self.emu.wait_changed(since, timeout=25.0)
        return web.json_response(self.snapshot(request.query.get("user", "")))

    def snapshot(self, user: str) -> JSON:
        core = self.emu.core
        ws = core.workspace
        cfg = core.config
        channels = [c for c in ws.channels.values() if not c.is_im or c.members == [user]]
        modal = ws.top_modal(user)
        home = ws.homes.get(user)
        return {
            "version": core.version,
            "as": user,
            "team": {"id": cfg.team_id, "name": cfg.team_name},
            "bot": {"user_id": cfg.bot_user_id, "name": cfg.bot_name, "url": cfg.bot_url},
            "agent_api_url": cfg.agent_api_url,
            "default_user": core.default_user,
            "pools": [
                {"tenant": p.tenant, "name": p.name, "channel": p.channel, "members": p.members} for p in core.pools
            ],
            "command": cfg.command,
            "users": [
                {"id": u.id, "name": u.name, "real_name": u.real_name, "is_admin": u.is_admin}
                for u in ws.users.values()
            ],
            "channels": [self._channel(c, user) for c in channels],
            "modal": None if modal is None else {**modal.data, "errors": modal.errors},
            "home": None if home is None else home.data,
            "samples": [
                {
                    "tenant": s.tenant,
                    "action": s.action,
                    "params": s.params,
                    "context": s.context,
                    "name": s.name,
                    "kind": s.kind,
                }
                for s in core.samples
            ],
            "deliveries": [d.summary() for d in core.deliveries[-15:]],
            "answers": {str(i): a for i, a in self.answers.items()},
        }

    def _channel(self, channel: Channel, user: str) -> JSON:
        def message(m: Message) -> JSON:
            return {
                "ts": m.ts,
                "user": m.user,
                "is_bot": bool(m.bot_id),
                "text": m.text,
                "blocks": m.blocks,
                "edited": bool(m.edited_ts),
                "replies": [message(r) for r in channel.replies(m.ts)] if m.reply_count else [],
            }

        items = [message(m) for m in channel.top_level()]
        for eph in channel.ephemerals:
            if eph.user == user:
                items.append({
                    "ts": eph.ts, "user": "USLACKBOT" if eph.from_slack else core_bot(self.emu), "is_bot": True,
                    "text": eph.text, "blocks": eph.blocks, "ephemeral": True, "thread_ts": eph.thread_ts,
                    "replies": [],
                })  # fmt: skip
        items.sort(key=lambda m: float(m["ts"]))
        return {
            "id": channel.id,
            "name": channel.name,
            "is_im": channel.is_im,
            "is_private": channel.is_private,
            "topic": channel.topic,
            "is_member": user in channel.members,
            "bot_is_member": channel.bot_is_member,
            "members": channel.members,
            "messages": items,
        }

    async def ui(self, request: web.Request) -> web.Response:
        try:
            body: JSON = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text="JSON body expected") from None
        action = request.match_info["action"]
        user = str(body.get("user", ""))
        try:
            if action == "sample":
                return web.json_response(await self.send_sample(int(body.get("index", -1))))
            if action == "request":
                return web.json_response(await self.read_request(str(body.get("tenant", "")), str(body.get("id", ""))))
            delivery: Any
            if action == "click":
                delivery = await self.emu.click(
                    user,
                    action_id=body["action_id"],
                    block_id=body.get("block_id"),
                    channel=body.get("channel"),
                    message_ts=body.get("message_ts"),
                    view_id=body.get("view_id"),
                    value=body.get("value"),
                    inputs=body.get("inputs"),
                )
            elif action == "submit":
                delivery = await self.emu.submit_view(user, body.get("inputs") or {}, view_id=body.get("view_id"))
            elif action == "close":
                delivery = await self.emu.close_view(user, view_id=body.get("view_id"))
            elif action == "dismiss":
                delivery = await self.dismiss_modals(user)
            elif action == "command":
                delivery = await self.emu.command(user, str(body.get("line", "")), channel=str(body.get("channel", "")))
            elif action == "message":
                self.emu.post_user_message(user, str(body.get("channel", "")), str(body.get("text", "")))
                return web.json_response({"ok": True})
            elif action == "home":
                delivery = await self.emu.open_home(user)
            else:
                raise web.HTTPNotFound()
        except (InteractionError, KeyError) as exc:
            return web.json_response({"ok": False, "error": str(exc)})
        summary = delivery.summary() if delivery is not None else {"error": None}
        return web.json_response({"ok": summary["error"] is None, **summary})

    async def dismiss_modals(self, user: str) -> Any:
        """The page reloaded: Slack closes the user's modals, each telling the bot if it asked to be told."""
        delivery = None
        while (view := self.emu.workspace.top_modal(user)) is not None:
            delivery = await self.emu.close_view(user, view_id=view.id) or delivery
        return delivery

    async def send_sample(self, index: int) -> JSON:
        """POST one sample to the agent API as its tenant's agent would, and hand back (and keep) the answer."""
        core = self.emu.core
        if not 0 <= index < len(core.samples):
            return {"ok": False, "error": "no such sample"}
        sample = core.samples[index]
        context = {"summary": sample.name, **sample.context} if sample.name else dict(sample.context)
        if sample.kind == "question":
            body = {**sample.params, "context": dict(sample.context)}  # the question speaks for itself
            answer = await self._agent_call(sample.tenant, "POST", "/v1/questions", body)
        else:
            body = {"action": sample.action, "params": sample.params, "context": context}
            answer = await self._agent_call(sample.tenant, "POST", "/v1/requests", body)
        # With the POST's HTTP status ("sent"), kept while later reads of the request replace the answer.
        self.answers[index] = {**answer, "sent": answer.get("status")}
        core.touch()
        return answer

    async def read_request(self, tenant: str, request_id: str) -> JSON:
        """The request as its agent sees it now, so the panel follows a sent sample to its decision."""
        if not request_id.isalnum():
            return {"ok": False, "error": "no such request"}
        fresh = await self._agent_call(tenant, "GET", f"/v1/requests/{request_id}", None)
        if fresh.get("status") == 404:  # a sent question: its own resource
            fresh = await self._agent_call(tenant, "GET", f"/v1/questions/{request_id}", None)
        if fresh["ok"] and isinstance(fresh.get("answer"), dict) and fresh["answer"].get("status"):
            self._keep_answer(tenant, request_id, fresh)
        return fresh

    def _keep_answer(self, tenant: str, request_id: str, fresh: JSON) -> None:
        """Keep a sent sample's newer answer; the page learns it by the long poll, woken only on a change."""
        changed = False
        for index, kept in self.answers.items():
            answer = kept.get("answer")
            if kept.get("tenant") != tenant or not isinstance(answer, dict) or answer.get("id") != request_id:
                continue
            newer = {**fresh, "sent": kept.get("sent")}
            if newer != kept:
                self.answers[index] = newer
                changed = True
        if changed:
            self.emu.core.touch()

    async def _agent_call(self, tenant: str, method: str, path: str, body: JSON | None) -> JSON:
        base = self.emu.core.config.agent_api_url
        if not base:
            return {"ok": False, "error": "service not running: no agent API URL is configured"}
        key = self.emu.core.config.agent_api_keys.get(tenant, "")
        headers = {"Authorization": f"Bearer {key}"}
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
                session.request(method, f"{base.rstrip('/')}{path}", json=body, headers=headers) as resp,
            ):
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            return {"ok": False, "error": f"service not running at {base} ({exc.__class__.__name__})"}
        try:
            answer: Any = json.loads(text)
        except ValueError:
            answer = text
        return {"ok": 200 <= status < 300, "status": status, "answer": answer, "tenant": tenant}


def core_bot(emulator: Emulator) -> str:
    return emulator.core.config.bot_user_id


def _static_file(name: str) -> web.Response:
    data = importlib.resources.files("bot.sandbox").joinpath("static", name).read_bytes()
    return web.Response(body=data, content_type=_STATIC[name], charset="utf-8", headers={"Cache-Control": "no-store"})
