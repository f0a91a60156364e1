"""A ``/hitl`` reply and the small pieces every answer's Block Kit uses. Pure.

Slack's limits kept: 50 blocks in a message, 3000 characters in a section or a notification.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bot.blocks import Block, cut
from bot.queue import context

MESSAGE_BLOCKS = 50


@dataclass(frozen=True, slots=True)
class Reply:
    """An ephemeral answer: the notification text and the blocks."""

    text: str
    blocks: list[Block]


def actor_text(who: str) -> str:
    """An audit actor as people read it: a mention for a Slack user, else as recorded ("policy", "agent:...")."""
    return f"<@{who}>" if who[:1] in "UW" else who


def people(users: Iterable[str]) -> str:
    return ", ".join(f"<@{u}>" for u in users) or "_nobody_"


def channel(channel: str | None) -> str:
    return f"<#{channel}>" if channel else "_no channel_"


def reply(text: str, blocks: list[Block]) -> Reply:
    if len(blocks) > MESSAGE_BLOCKS:
        blocks = [*blocks[: MESSAGE_BLOCKS - 1], context(f"_…{len(blocks) - MESSAGE_BLOCKS + 1} more not shown_")]
    return Reply(cut(text, 3000), blocks)
