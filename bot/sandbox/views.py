"""views.open/push/update/publish: modal stacks per user and one Home tab per user."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from bot.sandbox.blockkit import check_view
from bot.sandbox.core import Core
from bot.sandbox.webapi import normalize_blocks
from bot.sandbox.webargs import ApiError, arg_json, arg_str, invalid_arguments
from bot.sandbox.workspace import JSON, View

MAX_STACK = 3  # "A modal can hold up to 3 views at a time in a view stack"
MAX_VIEW_BYTES = 250_000


class ViewsApi:
    def __init__(self, core: Core) -> None:
        self.core = core
        self.methods: dict[str, Callable[[JSON], JSON]] = {
            "views.open": self.views_open,
            "views.push": self.views_push,
            "views.update": self.views_update,
            "views.publish": self.views_publish,
        }

    def parse_view(self, args: JSON, *, kind: str) -> JSON:
        view = arg_json(args, "view")
        if view is None:
            raise invalid_arguments("missing required field: view")
        if len(json.dumps(view)) > MAX_VIEW_BYTES:
            raise ApiError("view_too_large")
        errors = check_view(view)
        if not errors and view.get("type") != kind:
            errors = [f"must be {kind} [json-pointer:/view/type]"]
        if errors:
            raise invalid_arguments(*errors)
        assert isinstance(view, dict)
        return view

    def take_trigger(self, args: JSON) -> str:
        """The user a trigger belongs to; a trigger works once, within ``trigger_ttl`` seconds."""
        trigger_id = arg_str(args, "trigger_id") or arg_str(args, "interactivity_pointer")
        if not trigger_id:
            raise invalid_arguments("missing required field: trigger_id")
        trigger = self.core.triggers.get(trigger_id)
        if trigger is None:
            raise ApiError("invalid_trigger_id")
        if trigger.used:
            raise ApiError("exchanged_trigger_id")
        if self.core.clock.now() - trigger.issued_at > self.core.config.trigger_ttl:
            raise ApiError("expired_trigger_id")
        trigger.used = True
        return trigger.user

    def build(self, spec: JSON, *, view_id: str, root_view_id: str, previous_view_id: str | None) -> JSON:
        cfg = self.core.config
        kind = spec["type"]
        return {
            "id": view_id,
            "team_id": cfg.team_id,
            "type": kind,
            "title": spec.get("title"),
            "submit": spec.get("submit"),
            "close": spec.get("close"),
            "blocks": normalize_blocks(self.core, spec.get("blocks") or []),
            "private_metadata": spec.get("private_metadata") or "",
            "callback_id": spec.get("callback_id") or "",
            "state": {"values": {}},
            "hash": f"{int(self.core.clock.now())}.{self.core.ids.secret(8)}",
            "clear_on_close": bool(spec.get("clear_on_close", False)),
            "notify_on_close": bool(spec.get("notify_on_close", False)),
            "root_view_id": root_view_id,
            "previous_view_id": previous_view_id,
            "app_id": cfg.app_id,
            "external_id": spec.get("external_id") or "",
            "app_installed_team_id": cfg.team_id,
            "bot_id": cfg.bot_id,
        }

    def check_external_id(self, spec: JSON, *, except_view: str = "") -> None:
        external_id = spec.get("external_id") or ""
        other = self.core.workspace.find_view(external_id=external_id) if external_id else None
        if other is not None and other.id != except_view:
            raise ApiError("duplicate_external_id")

    def views_open(self, args: JSON) -> JSON:
        spec = self.parse_view(args, kind="modal")
        self.check_external_id(spec)
        user = self.take_trigger(args)
        view_id = self.core.ids.make("V")
        view = View(view_id, user, self.build(spec, view_id=view_id, root_view_id=view_id, previous_view_id=None))
        self.core.workspace.modals[user] = [view]
        self.core.touch()
        return {"ok": True, "view": view.data}

    def views_push(self, args: JSON) -> JSON:
        spec = self.parse_view(args, kind="modal")
        self.check_external_id(spec)
        user = self.take_trigger(args)
        return {"ok": True, "view": self.push(user, spec).data}

    def push(self, user: str, spec: JSON) -> View:
        stack = self.core.workspace.modals.get(user) or []
        if not stack:
            raise ApiError("not_found")
        if len(stack) >= MAX_STACK:
            raise ApiError("push_limit_reached")
        view_id = self.core.ids.make("V")
        data = self.build(spec, view_id=view_id, root_view_id=stack[0].id, previous_view_id=stack[-1].id)
        view = View(view_id, user, data)
        stack.append(view)
        self.core.touch()
        return view

    def views_update(self, args: JSON) -> JSON:
        view = self.core.workspace.find_view(arg_str(args, "view_id"), arg_str(args, "external_id"))
        if not arg_str(args, "view_id") and not arg_str(args, "external_id"):
            raise invalid_arguments("missing required field: view_id or external_id")
        spec = self.parse_view(args, kind=view.data["type"] if view else "modal")
        if view is None:
            raise ApiError("not_found")
        expected = arg_str(args, "hash")
        if expected and expected != view.hash:
            raise ApiError("hash_conflict")
        self.check_external_id(spec, except_view=view.id)
        self.replace(view, spec)
        return {"ok": True, "view": view.data}

    def replace(self, view: View, spec: JSON) -> None:
        data = view.data
        view.data = self.build(
            spec, view_id=view.id, root_view_id=data["root_view_id"], previous_view_id=data["previous_view_id"]
        )
        view.errors = {}
        self.core.touch()

    def views_publish(self, args: JSON) -> JSON:
        user = arg_str(args, "user_id")
        if user not in self.core.workspace.users:
            # Verbatim shape of views_publish_error_invalid_arguments.json.
            raise ApiError("invalid_arguments", response_metadata={"messages": ["invalid `user_id`"]})
        spec = self.parse_view(args, kind="home")
        if not self.core.config.home_tab_enabled:
            raise ApiError("not_enabled")
        home = self.core.workspace.homes.get(user)
        expected = arg_str(args, "hash")
        if home is not None and expected and expected != home.hash:
            raise ApiError("hash_conflict")
        if home is None:
            view_id = self.core.ids.make("V")
            home = View(view_id, user, self.build(spec, view_id=view_id, root_view_id=view_id, previous_view_id=None))
            self.core.workspace.homes[user] = home
            self.core.touch()
        else:
            self.replace(home, spec)
        return {"ok": True, "view": home.data}


def state_values(view: JSON, inputs: dict[str, Any]) -> JSON:
    """``view.state.values`` as Slack builds it from what the user entered, keyed block_id → action_id.

    ``inputs`` maps ``block_id`` or ``block_id/action_id`` or ``action_id`` to a value: a string for text,
    number, date and single selects (the option value), a list for multi selects and checkboxes.
    """
    values: JSON = {}
    for block in view.get("blocks") or []:
        elements = [block.get("element")] if block.get("type") == "input" else []
        if block.get("type") in ("actions", "section"):
            elements = block.get("elements") or ([block["accessory"]] if "accessory" in block else [])
        for el in elements:
            if not isinstance(el, dict) or "action_id" not in el or el.get("type") == "button":
                continue
            block_id, action_id = block["block_id"], el["action_id"]
            raw = next(
                (inputs[k] for k in (f"{block_id}/{action_id}", block_id, action_id) if k in inputs),
                initial(el),
            )
            values.setdefault(block_id, {})[action_id] = element_state(el, raw)
    return values


def initial(el: JSON) -> Any:
    """What an element holds before the user touches it: its initial value, option or options."""
    if isinstance(el.get("initial_options"), list):
        return [o.get("value") for o in el["initial_options"] if isinstance(o, dict)]
    if isinstance(el.get("initial_option"), dict):
        return el["initial_option"].get("value")
    return el.get("initial_value")


def element_state(el: JSON, raw: Any) -> JSON:
    kind = el["type"]
    state: JSON = {"type": kind}
    options = {o["value"]: o for o in el.get("options") or [] if isinstance(o, dict)}
    if kind in ("static_select", "radio_buttons", "external_select"):
        state["selected_option"] = options.get(raw) if raw is not None else None
    elif kind in ("multi_static_select", "checkboxes", "multi_external_select"):
        state["selected_options"] = [options[v] for v in raw or [] if v in options]
    elif kind == "users_select":
        state["selected_user"] = raw
    elif kind == "multi_users_select":
        state["selected_users"] = list(raw or [])
    elif kind in ("conversations_select", "channels_select"):
        state["selected_conversation" if kind.startswith("conv") else "selected_channel"] = raw
    elif kind == "datepicker":
        state["selected_date"] = raw
    elif kind == "timepicker":
        state["selected_time"] = raw
    else:
        state["value"] = raw if raw is None else str(raw)
    return state
