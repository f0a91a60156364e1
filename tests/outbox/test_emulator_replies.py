"""The emulator's conversations.replies, as the outbox's look-up for thread notes reads it: the parent, then
the replies oldest first; bounds, pages, metadata, scopes and errors as Slack documents them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.sandbox import EmulatorConfig, Ids, ManualClock
from bot.sandbox.server import Emulator
from bot.sandbox.testing import running_emulator, small_seed

NOTE = {"event_type": "countersign_note", "event_payload": {"outbox_item": 7}}


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with running_emulator(
        EmulatorConfig(), small_seed(), clock=ManualClock(), ids=Ids(deterministic=True)
    ) as emu:
        yield emu


@pytest.fixture
def client(emulator: Emulator) -> AsyncWebClient:
    return AsyncWebClient(token=emulator.config.bot_token, base_url=emulator.api_url)


async def error_of(call: Any) -> str:
    with pytest.raises(SlackApiError) as info:
        await call
    return str(info.value.response["error"])


async def thread(client: AsyncWebClient, replies: int) -> tuple[str, list[str]]:
    parent = (await client.chat_postMessage(channel="C0REVIEWS", text="card"))["ts"]
    await client.chat_postMessage(channel="C0REVIEWS", text="another card")
    ts = [
        (await client.chat_postMessage(channel="C0REVIEWS", text=f"r{i}", thread_ts=parent))["ts"]
        for i in range(replies)
    ]
    return parent, ts


async def test_a_thread_is_its_parent_then_its_replies_oldest_first(client: AsyncWebClient) -> None:
    parent, ts = await thread(client, 3)
    answer = await client.conversations_replies(channel="C0REVIEWS", ts=parent)
    assert [m["text"] for m in answer["messages"]] == ["card", "r0", "r1", "r2"]
    assert answer["has_more"] is False
    head, *replies = answer["messages"]
    assert head["reply_count"] == 3 and head["thread_ts"] == parent
    assert all(r["thread_ts"] == parent and r["parent_user_id"] == head["user"] for r in replies)
    # ts may name any message of the thread; a message without replies is a thread of one.
    by_reply = await client.conversations_replies(channel="C0REVIEWS", ts=ts[1])
    assert [m["text"] for m in by_reply["messages"]] == ["card", "r0", "r1", "r2"]
    history = await client.conversations_history(channel="C0REVIEWS")
    alone = next(m["ts"] for m in history["messages"] if m["text"] == "another card")
    assert [m["text"] for m in (await client.conversations_replies(channel="C0REVIEWS", ts=alone))["messages"]] == [
        "another card"
    ]


async def test_bounds_apply_to_the_replies_and_the_parent_heads_the_first_page(client: AsyncWebClient) -> None:
    parent, ts = await thread(client, 4)

    async def texts(**kwargs: Any) -> list[str]:
        answer = await client.conversations_replies(channel="C0REVIEWS", ts=parent, **kwargs)
        return [m["text"] for m in answer["messages"]]

    assert await texts(oldest=ts[1]) == ["card", "r2", "r3"]  # exclusive...
    assert await texts(oldest=ts[1], latest=ts[3]) == ["card", "r2"]
    assert await texts(oldest=ts[1], latest=ts[3], inclusive=True) == ["card", "r1", "r2", "r3"]  # ...unless inclusive
    for key in ("oldest", "latest"):
        assert await error_of(client.conversations_replies(channel="C0REVIEWS", ts=parent, **{key: "x"})) == (
            f"invalid_ts_{key}"
        )


async def test_replies_page_with_a_cursor(client: AsyncWebClient) -> None:
    parent, _ = await thread(client, 5)
    first = await client.conversations_replies(channel="C0REVIEWS", ts=parent, limit=3)
    assert [m["text"] for m in first["messages"]] == ["card", "r0", "r1"] and first["has_more"] is True
    pages = [
        [m["text"] for m in page["messages"]]
        async for page in await client.conversations_replies(channel="C0REVIEWS", ts=parent, limit=3)
    ]
    assert pages == [["card", "r0", "r1"], ["r2", "r3", "r4"]]
    assert await error_of(client.conversations_replies(channel="C0REVIEWS", ts=parent, cursor="bm9wZQ==")) == (
        "invalid_cursor"
    )
    assert await error_of(client.conversations_replies(channel="C0REVIEWS", ts=parent, limit=1001)) == "invalid_limit"


async def test_metadata_only_when_asked_for(client: AsyncWebClient) -> None:
    parent, _ = await thread(client, 0)
    await client.chat_postMessage(channel="C0REVIEWS", text="note", thread_ts=parent, metadata=NOTE)
    plain = (await client.conversations_replies(channel="C0REVIEWS", ts=parent))["messages"]
    assert "metadata" not in plain[1]
    full = (await client.conversations_replies(channel="C0REVIEWS", ts=parent, include_all_metadata=True))["messages"]
    assert full[1]["metadata"] == NOTE and full[1]["bot_id"] == "B0COUNTERSIGN"


async def test_errors_membership_and_scopes(emulator: Emulator, client: AsyncWebClient) -> None:
    parent, _ = await thread(client, 1)
    assert await error_of(client.conversations_replies(channel="C0REVIEWS", ts="1.000001")) == "thread_not_found"
    assert await error_of(client.conversations_replies(channel="C0NOPE", ts=parent)) == "channel_not_found"
    assert await error_of(client.conversations_replies(channel="U0ADA", ts=parent)) == "channel_not_found"
    assert await error_of(client.conversations_replies(channel="C0QUIET", ts=parent)) == "not_in_channel"
    assert await error_of(client.conversations_replies(channel="C0PRIVATE", ts=parent)) == "channel_not_found"
    emulator.config.scopes = tuple(s for s in emulator.config.scopes if s != "channels:history")
    assert await error_of(client.conversations_replies(channel="C0REVIEWS", ts=parent)) == "missing_scope"


async def test_a_dm_is_opened_with_im_write_and_read_with_im_history(
    emulator: Emulator, client: AsyncWebClient
) -> None:
    posted = await client.chat_postMessage(channel="U0BEN", text="hello", metadata=NOTE)
    opened = await client.conversations_open(users="U0BEN")
    assert opened["channel"]["id"] == posted["channel"]
    [message] = (await client.conversations_history(channel=posted["channel"], include_all_metadata=True))["messages"]
    assert message["metadata"] == NOTE
    emulator.config.scopes = tuple(s for s in emulator.config.scopes if s not in ("im:write", "im:history"))
    assert await error_of(client.conversations_open(users="U0BEN")) == "missing_scope"
    assert await error_of(client.conversations_history(channel=posted["channel"])) == "missing_scope"
