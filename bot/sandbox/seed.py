"""What the emulated workspace starts with: plain data, plus an adapter from loaded policy manifests."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from bot.sandbox.core import PoolInfo, SampleRequest
from bot.sandbox.workspace import Channel, User, Usergroup, Workspace

AGENT_OWNER = "U0AGENTOWNER"  # the person agents act on behalf of (cannot approve their own requests)
OUTSIDER = "U0OUTSIDER"  # in every channel, in no pool: the "not in pool" case
_NAMES = [
    "alice", "bob", "carol", "dave", "eve", "frank", "grace", "heidi", "ivan", "judy", "mallory", "niaj",
    "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yolanda",
]  # fmt: skip


@dataclass
class UserSeed:
    id: str
    name: str | None = None
    real_name: str | None = None
    is_admin: bool = False


@dataclass
class ChannelSeed:
    id: str
    name: str
    members: list[str] = field(default_factory=list)
    is_private: bool = False
    bot_is_member: bool = True
    topic: str = ""


@dataclass
class UsergroupSeed:
    id: str
    handle: str
    users: list[str] = field(default_factory=list)


@dataclass
class WorkspaceSeed:
    users: list[UserSeed] = field(default_factory=list)
    channels: list[ChannelSeed] = field(default_factory=list)
    usergroups: list[UsergroupSeed] = field(default_factory=list)
    samples: list[SampleRequest] = field(default_factory=list)
    pools: list[PoolInfo] = field(default_factory=list)
    default_user: str | None = None


SAMPLE_QUESTION = {
    "question": "Customer 4411 asks for store credit instead of a refund to her card. What should I offer?",
    "choices": ["Store credit", "Card refund", "Ask her to call us"],
}


def readable_name(user_id: str, taken: set[str]) -> str:
    """``U0ADA`` -> ``ada``; ids without a name in them (``U01``) get one from a list."""
    match = re.fullmatch(r"[UW]0?([A-Za-z][A-Za-z_]+)", user_id)
    if match and match.group(1).lower() not in taken:
        return match.group(1).lower()
    return next((n for n in _NAMES if n not in taken), user_id.lower())


def build_workspace(seed: WorkspaceSeed, *, team_id: str, team_name: str, domain: str) -> Workspace:
    """A workspace with the seed's users, channels and groups; the two helper users are always there."""
    ws = Workspace(team_id=team_id, team_name=team_name, domain=domain)
    taken: set[str] = set()
    extra = [UserSeed(AGENT_OWNER, "agent-owner", "Agent Owner"), UserSeed(OUTSIDER, "outsider", "Olive Outsider")]
    for spec in [*seed.users, *extra]:
        if spec.id in ws.users:
            ws.users[spec.id].is_admin |= spec.is_admin
            continue
        name = spec.name or readable_name(spec.id, taken)
        taken.add(name)
        ws.users[spec.id] = User(
            spec.id, name, spec.real_name or name.replace("-", " ").title(), is_admin=spec.is_admin
        )
    for ch in seed.channels:
        members = list(dict.fromkeys(m for m in ch.members if m in ws.users))
        ws.channels[ch.id] = Channel(
            ch.id, ch.name, members, is_private=ch.is_private, bot_is_member=ch.bot_is_member, topic=ch.topic
        )
    if ws.channel_by_name("general") is None:
        ws.channels["C0GENERAL"] = Channel("C0GENERAL", "general", list(ws.users), bot_is_member=True)
    for ug in seed.usergroups:
        ws.usergroups[ug.id] = Usergroup(ug.id, ug.handle, list(ug.users))
    return ws


def channel_id_for(name: str) -> str:
    """A stable channel id for a pool given as ``#name``."""
    return "C0" + hashlib.sha256(name.encode()).hexdigest()[:8].upper()


def seed_from_policies(load_result: Any) -> WorkspaceSeed:
    """A seed from ``policy.load_dir(...)``: pool channels and members, admins, user groups, samples.

    Pool channels given as ids are named after the pool (``#support_tier_1``); ``#name`` channels get a
    stable id. Everyone involved, plus the agent owner and the outsider, can see every pool channel.
    """
    users: dict[str, UserSeed] = {}
    channels: dict[str, ChannelSeed] = {}
    groups: dict[str, UsergroupSeed] = {}
    samples: list[SampleRequest] = []
    pools: list[PoolInfo] = []
    for tenant_name, tenant in sorted(load_result.tenants.items()):
        manifest = tenant.manifest
        for admin in manifest.admins:
            users.setdefault(admin, UserSeed(admin)).is_admin = True
        for pool_name, pool in manifest.pools.items():
            members = list(pool.members)
            if pool.usergroup:
                group = groups.setdefault(pool.usergroup, UsergroupSeed(pool.usergroup, pool_name.replace("_", "-")))
                group.users = list(dict.fromkeys([*group.users, *members]))
            for member in members:
                users.setdefault(member, UserSeed(member))
            if not pool.channel:
                pools.append(PoolInfo(tenant_name, pool_name, None, members))
                continue
            if pool.channel.startswith("#"):
                name = pool.channel[1:]
                channel_id = channel_id_for(name)
            else:
                channel_id, name = pool.channel, pool_name
            pools.append(PoolInfo(tenant_name, pool_name, channel_id, members))
            channel = channels.setdefault(channel_id, ChannelSeed(channel_id, name))
            channel.members = list(dict.fromkeys([*channel.members, *members, *manifest.admins]))
            label = f"{tenant_name}/{pool_name}"
            channel.topic = f"{channel.topic}, {label}" if channel.topic else f"Reviewer pool {label}"
        for test in manifest.tests:
            # Agents act for someone: the agent owner, unless the test names another, so acting as
            # agent-owner on the page shows the refusal of a self-approval.
            context = {"on_behalf_of": AGENT_OWNER, **(getattr(test, "context", {}) or {})}
            samples.append(
                SampleRequest(tenant_name, test.action, dict(test.params), context, getattr(test, "name", None))
            )
        defaults = getattr(manifest, "defaults", None)
        asked = getattr(defaults, "default_pool", None)
        if asked and getattr(manifest.pools.get(asked), "channel", None):
            # A question (POST /v1/questions) for the default pool: choices as buttons, or Reply… in words.
            samples.append(SampleRequest(tenant_name, "question", dict(SAMPLE_QUESTION), {
                "reason": "the card on file has expired"}, f"a question for {asked}", kind="question"))  # fmt: skip
    for channel in channels.values():
        channel.members += [AGENT_OWNER, OUTSIDER]
    # The first member of the first pool with a channel: the page's first click on a card then counts.
    default_user = next((p.members[0] for p in pools if p.channel and p.members), None)
    return WorkspaceSeed(
        list(users.values()), list(channels.values()), list(groups.values()), samples, pools, default_user
    )
