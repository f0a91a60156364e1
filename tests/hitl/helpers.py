"""Typing /hitl as someone and reading the private answer."""

from __future__ import annotations

from bot.sandbox.testing import message_text
from tests.e2e.conftest import Stack

GENERAL = "general"


async def hitl(stack: Stack, user: str, line: str, *, channel: str = GENERAL) -> str:
    """Type ``/hitl <line>`` as ``user``; the text (with every block's text) of the ephemeral answer."""
    before = len(stack.slack.ephemerals(user, channel))
    delivery = await stack.slack.command(user, f"/hitl {line}", channel=channel)
    assert delivery.ok, (line, delivery.error, delivery.detail)
    assert not delivery.ack_body.strip(), "acked empty; the answer comes through response_url"
    new = await stack.slack.wait_until(
        lambda: stack.slack.ephemerals(user, channel)[before:], what=f"an answer to /hitl {line}"
    )
    assert len(new) == 1, [e.text for e in new]
    return message_text(new[0])
