"""What a person does in Slack, turned into the payloads Slack sends, and the bot's acks applied."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote, urlencode

from bot.sandbox.blockkit import check_message_blocks, check_view
from bot.sandbox.core import Core
from bot.sandbox.delivery import FORM, JSON_TYPE, Deliverer, Delivery
from bot.sandbox.views import ViewsApi, state_values
from bot.sandbox.webapi import WebApi
from bot.sandbox.webargs import ApiError
from bot.sandbox.workspace import JSON, Channel, View, Workspace

# What a person types: @name, @group-handle, #channel (not inside an already escaped <...>).
_TYPED = re.compile(r"(?<![<\w|])([@#])([\w.\-]+)")


def escape_mentions(workspace: Workspace, text: str) -> str:
    """A command's text as Slack sends it for a command with ``should_escape: true``: a typed ``@erin``
    becomes ``<@U0ERIN|erin>``, ``@reviewers`` ``<!subteam^S0…|@reviewers>``, ``#general``
    ``<#C0…|general>``; a name nobody has stays as typed."""

    def escaped(match: re.Match[str]) -> str:
        sigil, name = match.groups()
        if sigil == "#":
            channel = workspace.channel_by_name(name)
            return f"<#{channel.id}|{channel.name}>" if channel is not None else match.group(0)
        user = next((u for u in workspace.users.values() if name in (u.name, u.id)), None)
        if user is not None:
            return f"<@{user.id}|{user.name}>"
        group = next((g for g in workspace.usergroups.values() if g.handle == name), None)
        return f"<!subteam^{group.id}|@{group.handle}>" if group is not None else match.group(0)

    return _TYPED.sub(escaped, text)


class InteractionError(LookupError):
    """Raised when an interaction names something the workspace does not have (a user, a button...)."""


class Interactions:
    def __init__(self, core: Core, api: WebApi, views: ViewsApi, deliverer: Deliverer) -> None:
        self.core = core
        self.api = api
        self.views = views
        self.deliverer = deliverer

    def _user(self, user_id: str) -> JSON:
        user = self.core.workspace.users.get(user_id)
        if user is None:
            raise InteractionError(f"no user {user_id}")
        return {"id": user.id, "username": user.name, "name": user.name, "team_id": self.core.config.team_id}

    def _base(self, kind: str, user: str) -> JSON:
        cfg = self.core.config
        return {
            "type": kind,
            "user": self._user(user),
            "api_app_id": cfg.app_id,
            "token": cfg.verification_token,
            "trigger_id": self.core.issue_trigger(user),
            "team": {"id": cfg.team_id, "domain": cfg.domain},
            "enterprise": None,
            "is_enterprise_install": False,
        }

    async def _send_payload(self, kind: str, user: str, payload: JSON) -> Delivery:
        body = "payload=" + quote(json.dumps(payload, separators=(",", ":")), safe="")
        return await self.deliverer.post(kind=kind, user=user, payload=payload, body=body, content_type=FORM)

    # -- buttons ------------------------------------------------------------------------------------------
    async def click(
        self,
        user: str,
        *,
        action_id: str,
        channel: str | None = None,
        message_ts: str | None = None,
        view_id: str | None = None,
        block_id: str | None = None,
        value: str | None = None,
        inputs: dict[str, Any] | None = None,
    ) -> Delivery:
        """Click a button (or pick ``value`` in a select) in a message, an ephemeral, a modal or Home."""
        payload = self._base("block_actions", user)
        if view_id:
            view = self.core.workspace.find_view(view_id)
            if view is None or view.user != user:
                raise InteractionError(f"no view {view_id} open for {user}")
            blocks = view.data["blocks"]
            view.data["state"] = {"values": state_values(view.data, inputs or {})}
            payload["container"] = {"type": "view", "view_id": view.id}
            payload["view"] = view.data
            payload["state"] = view.data["state"]
        else:
            ch = self.core.workspace.resolve_channel(channel or "")
            if ch is None or message_ts is None:
                raise InteractionError(f"no channel {channel} / message {message_ts}")
            message = ch.find(message_ts)
            ephemeral = next((e for e in ch.ephemerals if e.ts == message_ts and e.user == user), None)
            if message is None and ephemeral is None:
                raise InteractionError(f"no message {message_ts} in {ch.id} visible to {user}")
            blocks = message.blocks if message else ephemeral.blocks if ephemeral else []
            payload["container"] = {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": ch.id,
                "is_ephemeral": message is None,
            }
            payload["channel"] = {"id": ch.id, "name": ch.name}
            if message is not None:
                # Ephemeral messages are not echoed back in block_actions (inferred from Slack's behaviour).
                payload["message"] = (
                    self.api.bot_message_api(message) if message.bot_id else message.to_api(self.core.config.team_id)
                )
            payload["state"] = {"values": state_values({"blocks": blocks}, inputs or {})}
            payload["response_url"] = self.core.issue_response_url(
                kind="actions", user=user, channel=ch.id, message_ts=message_ts, is_ephemeral=message is None
            )
        payload["actions"] = [self._action(blocks, action_id, block_id, value)]
        return await self._send_payload("block_actions", user, payload)

    def _action(self, blocks: list[JSON], action_id: str, block_id: str | None, value: str | None) -> JSON:
        for block in blocks:
            if block_id and block.get("block_id") != block_id:
                continue
            elements = list(block.get("elements") or [])
            for key in ("accessory", "element"):
                if key in block:
                    elements.append(block[key])
            for el in elements:
                if isinstance(el, dict) and el.get("action_id") == action_id:
                    action: JSON = {"action_id": action_id, "block_id": block["block_id"]}
                    if el["type"] == "button":
                        action.update(text=el.get("text"), value=el.get("value"), type="button")
                        if "style" in el:
                            action["style"] = el["style"]
                    else:
                        options = {o.get("value"): o for o in el.get("options") or []}
                        action.update(type=el["type"], selected_option=options.get(value))
                    action["action_ts"] = self.core.ids.ts(self.core.clock.now())
                    return action
        raise InteractionError(f"no element with action_id {action_id!r}")

    # -- modals ---------------------------------------------------------------------------------------------
    async def submit(self, user: str, inputs: dict[str, Any] | None = None, *, view_id: str | None = None) -> Delivery:
        """Press Submit on the user's top modal; the bot's ack decides what the modal does next."""
        view = self._modal(user, view_id)
        view.data["state"] = {"values": state_values(view.data, inputs or {})}
        missing = self._missing_required(view)
        payload = self._base("view_submission", user)
        payload["view"] = view.data
        payload["response_urls"] = []
        if missing:
            # Slack's client refuses to submit and marks the fields; the bot never hears of it.
            view.errors = dict.fromkeys(missing, "Please complete this required field.")
            self.core.touch()
            raise InteractionError(f"required inputs missing: {', '.join(missing)}")
        delivery = await self._send_payload("view_submission", user, payload)
        if delivery.ok:
            self._apply_view_ack(user, view, delivery)
        self.core.touch()
        return delivery

    def _modal(self, user: str, view_id: str | None) -> View:
        stack = self.core.workspace.modals.get(user) or []
        view = next((v for v in stack if v.id == view_id), None) if view_id else (stack[-1] if stack else None)
        if view is None:
            raise InteractionError(f"no modal open for {user}")
        return view

    def _missing_required(self, view: View) -> list[str]:
        missing = []
        for block in view.data["blocks"]:
            if block.get("type") != "input" or block.get("optional"):
                continue
            state = view.data["state"]["values"].get(block["block_id"], {})
            entry: JSON = next(iter(state.values()), {})
            chosen = [v for k, v in entry.items() if k != "type"]
            if not any(chosen):
                missing.append(block["block_id"])
        return missing

    def _apply_view_ack(self, user: str, view: View, delivery: Delivery) -> None:
        ack = delivery.ack_json()
        if ack is None and delivery.ack_body.strip():
            delivery.error, delivery.detail = "invalid_ack", "ack body is not JSON"
            return
        action = (ack or {}).get("response_action")
        stack = self.core.workspace.modals.get(user, [])
        if action == "errors":
            view.errors = {str(k): str(v) for k, v in (ack or {}).get("errors", {}).items()}
        elif action in ("update", "push"):
            spec = (ack or {}).get("view")
            errors = check_view(spec)
            if errors:
                delivery.error, delivery.detail = "invalid_ack", "; ".join(errors)
                return
            assert isinstance(spec, dict)
            try:
                self.views.replace(view, spec) if action == "update" else self.views.push(user, spec)
            except ApiError as exc:
                delivery.error, delivery.detail = "invalid_ack", exc.error
        elif action == "clear":
            self.core.workspace.modals.pop(user, None)
        elif action is None:
            if view in stack:
                stack.remove(view)
            if not stack:
                self.core.workspace.modals.pop(user, None)
        else:
            delivery.error, delivery.detail = "invalid_ack", f"unknown response_action {action!r}"
        delivery.effects.append(action or "close")

    async def close(self, user: str, *, view_id: str | None = None) -> Delivery | None:
        """Close the top modal (Cancel); ``view_closed`` reaches the bot only with ``notify_on_close``."""
        view = self._modal(user, view_id)
        stack = self.core.workspace.modals.get(user, [])
        clear = view.data.get("clear_on_close")
        if clear or len(stack) <= 1:
            self.core.workspace.modals.pop(user, None)
        else:
            stack.remove(view)
        self.core.touch()
        if not view.data.get("notify_on_close"):
            return None
        payload = self._base("view_closed", user)
        payload.pop("trigger_id")
        payload.update(view=view.data, is_cleared=bool(clear))
        return await self._send_payload("view_closed", user, payload)

    # -- slash commands ---------------------------------------------------------------------------------------
    async def command(self, user: str, line: str, *, channel: str) -> Delivery:
        """Type ``line`` (e.g. ``"/hitl pools"``) in ``channel``; a non-empty ack becomes a message."""
        ch = self.core.workspace.resolve_channel(channel)
        if ch is None:
            raise InteractionError(f"no channel {channel}")
        command, _, text = line.strip().partition(" ")
        cfg = self.core.config
        response_url = self.core.issue_response_url(kind="commands", user=user, channel=ch.id)
        fields = {
            "token": cfg.verification_token,
            "team_id": cfg.team_id,
            "team_domain": cfg.domain,
            "channel_id": ch.id,
            "channel_name": "directmessage" if ch.is_im else ch.name,
            "user_id": user,
            "user_name": self._user(user)["name"],
            "command": command,
            "text": escape_mentions(self.core.workspace, text.strip()),
            "api_app_id": cfg.app_id,
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": self.core.issue_trigger(user),
        }
        body = urlencode(fields)
        delivery = await self.deliverer.post(
            kind="slash_command", user=user, payload=fields, body=body, content_type=FORM
        )
        if delivery.ok:
            self._apply_command_ack(user, ch, delivery)
        if delivery.error:
            # What Slack itself tells the user when the app fails to answer a command.
            notice = f'{command} failed with the error "{delivery.error}"'
            self.api.post_ephemeral(ch, user, notice, [], thread_ts=None, from_slack=True)
        return delivery

    def _apply_command_ack(self, user: str, channel: Channel, delivery: Delivery) -> None:
        if not delivery.ack_body.strip():
            return
        ack = delivery.ack_json() if "json" in delivery.ack_content_type or delivery.ack_body.startswith("{") else None
        message: JSON = ack if ack is not None else {"text": delivery.ack_body}
        blocks = message.get("blocks")
        if blocks is not None and check_message_blocks(blocks):
            delivery.error, delivery.detail = "invalid_ack", "; ".join(check_message_blocks(blocks))
            return
        text = str(message.get("text") or "")
        if message.get("response_type") == "in_channel":
            self.api.post_as_bot(channel, text, blocks or [], thread_ts=None)
        else:
            self.api.post_ephemeral(channel, user, text, blocks or [], thread_ts=None)

    # -- App Home -------------------------------------------------------------------------------------------
    async def open_home(self, user: str, *, tab: str = "home") -> Delivery:
        """The user opens the app's Home tab: ``app_home_opened``, with the view once one was published."""
        self._user(user)
        cfg = self.core.config
        now = self.core.clock.now()
        event: JSON = {
            "type": "app_home_opened",
            "user": user,
            "channel": self.api.dm_channel(user).id,
            "tab": tab,
            "event_ts": self.core.ids.ts(now),
        }
        home = self.core.workspace.homes.get(user)
        if home is not None:
            event["view"] = home.data
        envelope = {
            "token": cfg.verification_token,
            "team_id": cfg.team_id,
            "api_app_id": cfg.app_id,
            "event": event,
            "type": "event_callback",
            "event_id": self.core.ids.make("Ev"),
            "event_time": int(now),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": cfg.team_id,
                    "user_id": cfg.bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
            "event_context": "4-" + self.core.ids.secret(40),
        }
        body = json.dumps(envelope, separators=(",", ":"))
        return await self.deliverer.post(
            kind="event_callback", user=user, payload=envelope, body=body, content_type=JSON_TYPE
        )
