"""The workspace the emulator keeps: users, channels, user groups, messages, ephemerals, views."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]


@dataclass
class User:
    id: str
    name: str
    real_name: str
    is_admin: bool = False
    is_bot: bool = False
    deleted: bool = False
    email: str | None = None
    tz: str = "Europe/Berlin"

    def to_api(self, team_id: str) -> JSON:
        # Shape of users_info_ok.json, minus the avatar urls nobody reads.
        return {
            "id": self.id,
            "team_id": team_id,
            "name": self.name,
            "deleted": self.deleted,
            "color": "9f69e7",
            "real_name": self.real_name,
            "tz": self.tz,
            "tz_label": "Central European Time",
            "tz_offset": 3600,
            "profile": {
                "real_name": self.real_name,
                "display_name": self.name,
                "real_name_normalized": self.real_name,
                "display_name_normalized": self.name,
                "email": self.email or f"{self.name}@example.com",
                "status_text": "",
                "status_emoji": "",
                "team": team_id,
            },
            "is_admin": self.is_admin,
            "is_owner": False,
            "is_primary_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": self.is_bot,
            "is_app_user": False,
            "updated": 1700000000,
            "has_2fa": False,
        }


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list[JSON]
    user: str
    bot_id: str | None = None
    app_id: str | None = None
    thread_ts: str | None = None
    reply_count: int = 0
    reply_users: list[str] = field(default_factory=list)
    latest_reply: str | None = None
    edited_ts: str | None = None
    # ``{"event_type": ..., "event_payload": {...}}`` as posted: hidden from people, read back by apps.
    metadata: JSON | None = None
    # Slack's own notices ("/hitl failed with the error ...") are shown but were never posted by anyone.
    from_slack: bool = False

    def to_api(self, team_id: str, *, with_metadata: bool = False) -> JSON:
        out: JSON = {"type": "message", "text": self.text, "user": self.user, "ts": self.ts, "team": team_id}
        if self.bot_id:
            out["bot_id"] = self.bot_id
            out["app_id"] = self.app_id
        if self.blocks:
            out["blocks"] = self.blocks
        if self.thread_ts:
            out["thread_ts"] = self.thread_ts
        if self.reply_count:
            out["reply_count"] = self.reply_count
            out["reply_users"] = list(self.reply_users)
            out["latest_reply"] = self.latest_reply
        if self.edited_ts:
            out["edited"] = {"user": self.user, "ts": self.edited_ts}
        if with_metadata and self.metadata is not None:
            out["metadata"] = self.metadata
        return out


@dataclass
class Ephemeral:
    """A message only ``user`` sees; it lives in the channel but is never returned by the Web API."""

    channel: str
    ts: str
    user: str
    text: str
    blocks: list[JSON]
    thread_ts: str | None = None
    from_bot: bool = True
    from_slack: bool = False


@dataclass
class Channel:
    id: str
    name: str
    members: list[str] = field(default_factory=list)
    is_private: bool = False
    is_archived: bool = False
    is_im: bool = False
    bot_is_member: bool = False
    created: int = 1700000000
    topic: str = ""
    messages: list[Message] = field(default_factory=list)
    ephemerals: list[Ephemeral] = field(default_factory=list)

    def to_api(self, team_id: str, *, creator: str = "") -> JSON:
        # Shape of conversations_info_ok.json.
        return {
            "id": self.id,
            "name": self.name,
            "is_channel": not self.is_private and not self.is_im,
            "is_group": self.is_private,
            "is_im": self.is_im,
            "is_mpim": False,
            "is_private": self.is_private or self.is_im,
            "created": self.created,
            "is_archived": self.is_archived,
            "is_general": self.name == "general",
            "unlinked": 0,
            "name_normalized": self.name,
            "is_shared": False,
            "is_org_shared": False,
            "is_ext_shared": False,
            "is_pending_ext_shared": False,
            "pending_shared": [],
            "context_team_id": team_id,
            "parent_conversation": None,
            "creator": creator,
            "shared_team_ids": [team_id],
            "is_member": self.bot_is_member,
            "topic": {"value": self.topic, "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
            "previous_names": [],
            "num_members": len(self.members),
        }

    def top_level(self) -> list[Message]:
        return [m for m in self.messages if m.thread_ts is None or m.thread_ts == m.ts]

    def replies(self, thread_ts: str) -> list[Message]:
        return [m for m in self.messages if m.thread_ts == thread_ts and m.ts != thread_ts]

    def find(self, ts: str) -> Message | None:
        return next((m for m in self.messages if m.ts == ts), None)


@dataclass
class Usergroup:
    id: str
    handle: str
    users: list[str] = field(default_factory=list)


@dataclass
class View:
    """A modal or a Home tab, stored as Slack returns it from views.open/update/publish."""

    id: str
    user: str
    data: JSON
    # Errors from a ``response_action: errors`` ack, shown under the inputs until the next submit.
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def hash(self) -> str:
        return str(self.data["hash"])

    @property
    def external_id(self) -> str:
        return str(self.data.get("external_id") or "")


@dataclass
class Workspace:
    team_id: str
    team_name: str
    domain: str
    users: dict[str, User] = field(default_factory=dict)
    channels: dict[str, Channel] = field(default_factory=dict)
    usergroups: dict[str, Usergroup] = field(default_factory=dict)
    modals: dict[str, list[View]] = field(default_factory=dict)  # user -> view stack, root first
    homes: dict[str, View] = field(default_factory=dict)  # user -> published home view

    def channel_by_name(self, name: str) -> Channel | None:
        name = name.removeprefix("#")
        return next((c for c in self.channels.values() if c.name == name), None)

    def resolve_channel(self, ref: str) -> Channel | None:
        """A channel by id or ``#name``, the way a test or the page names it."""
        return self.channels.get(ref) or self.channel_by_name(ref)

    def find_view(self, view_id: str = "", external_id: str = "") -> View | None:
        views = [v for stack in self.modals.values() for v in stack] + list(self.homes.values())
        for view in views:
            if (view_id and view.id == view_id) or (external_id and view.external_id == external_id):
                return view
        return None

    def top_modal(self, user: str) -> View | None:
        stack = self.modals.get(user)
        return stack[-1] if stack else None
