"""The Web API through the real slack_sdk AsyncWebClient: shapes of the samples, Slack's error codes."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.sandbox import EmulatorConfig
from bot.sandbox.server import Emulator
from bot.sandbox.testing import running_emulator, small_seed
from tests.sandbox.conftest import sample

CARD = [
    {"type": "header", "text": {"type": "plain_text", "text": "Refund $620"}},
    {"type": "section", "text": {"type": "mrkdwn", "text": "*Customer* Ana"}},
    {
        "type": "actions",
        "block_id": "card_actions",
        "elements": [
            {
                "type": "button",
                "action_id": "approve",
                "text": {"type": "plain_text", "text": "Approve"},
                "style": "primary",
                "value": "r1",
            },
        ],
    },
]


async def error_of(call: Any) -> SlackApiError:
    with pytest.raises(SlackApiError) as info:
        await call
    return info.value


def assert_keys(actual: dict[str, Any], expected: dict[str, Any], *, ignore: set[str] = frozenset()) -> None:
    missing = set(expected) - set(actual) - ignore
    assert not missing, f"missing keys {missing}"


async def test_auth_test_shape_and_scopes_header(client: AsyncWebClient) -> None:
    resp = await client.auth_test()
    assert_keys(resp.data, sample("auth_test_ok_bot.json"))  # type: ignore[arg-type]
    assert resp["user_id"] == "U0COUNTERSIGN"
    assert "chat:write" in resp.headers["x-oauth-scopes"]
    assert resp.headers["Content-Type"].startswith("application/json")


async def test_bad_and_missing_tokens(emulator: Emulator) -> None:
    bad = AsyncWebClient(token="xoxb-wrong", base_url=emulator.api_url)
    assert (await error_of(bad.auth_test())).response["error"] == "invalid_auth"
    none = AsyncWebClient(base_url=emulator.api_url)
    assert (await error_of(none.auth_test())).response["error"] == "not_authed"
    async with (
        aiohttp.ClientSession() as session,
        session.post(emulator.api_url + "nope.method", headers={"Authorization": "Bearer x"}) as r,
    ):
        assert (await r.json())["error"] == "unknown_method"


async def test_post_message_stores_blocks_like_slack(client: AsyncWebClient, slack: Any) -> None:
    resp = await client.chat_postMessage(channel="C0REVIEWS", text="Refund $620", blocks=CARD)
    assert_keys(resp.data, sample("chat_postMessage_ok.json"))  # type: ignore[arg-type]
    assert_keys(resp["message"], sample("block_actions_message.json")["message"])
    assert isinstance(resp["ts"], str) and "." in resp["ts"]
    blocks = resp["message"]["blocks"]
    assert all(b.get("block_id") for b in blocks)
    assert blocks[1]["text"]["verbatim"] is False
    assert blocks[2]["block_id"] == "card_actions"
    assert slack.find_message("#reviews", action_id="approve").ts == resp["ts"]


async def test_post_message_by_channel_name_and_form_encoding(emulator: Emulator) -> None:
    async with aiohttp.ClientSession() as session:
        form = {"channel": "#reviews", "text": "hi", "blocks": '[{"type":"divider"}]'}
        headers = {"Authorization": f"Bearer {emulator.config.bot_token}"}
        async with session.post(emulator.api_url + "chat.postMessage", data=form, headers=headers) as r:
            body = await r.json()
    assert body["ok"] and body["channel"] == "C0REVIEWS"


async def test_post_message_errors(client: AsyncWebClient) -> None:
    assert (await error_of(client.chat_postMessage(channel="C0NOPE", text="x"))).response[
        "error"
    ] == "channel_not_found"
    # A private channel the bot is not in is invisible, as in Slack.
    assert (await error_of(client.chat_postMessage(channel="C0PRIVATE", text="x"))).response[
        "error"
    ] == "channel_not_found"
    with pytest.warns(UserWarning, match="top-level `text`"):
        assert (await error_of(client.chat_postMessage(channel="C0REVIEWS"))).response["error"] == "no_text"


async def test_not_in_channel_without_chat_write_public() -> None:
    config = EmulatorConfig(scopes=("chat:write",))
    async with running_emulator(config, small_seed()) as emu:
        client = AsyncWebClient(token=config.bot_token, base_url=emu.api_url)
        assert (await error_of(client.chat_postMessage(channel="C0QUIET", text="x"))).response[
            "error"
        ] == "not_in_channel"
        err = await error_of(client.users_info(user="U0ADA"))
        assert err.response["error"] == "missing_scope" and err.response["needed"] == "users:read"


async def test_thread_replies(client: AsyncWebClient, slack: Any) -> None:
    parent = await client.chat_postMessage(channel="C0REVIEWS", text="card")
    await client.chat_postMessage(channel="C0REVIEWS", text="Ada approved", thread_ts=parent["ts"])
    reply2 = await client.chat_postMessage(channel="C0REVIEWS", text="Approved", thread_ts=parent["ts"])
    assert [m.text for m in slack.thread("C0REVIEWS", parent["ts"])] == ["Ada approved", "Approved"]
    assert [m.text for m in slack.messages("C0REVIEWS")] == ["card"]
    assert reply2["message"]["thread_ts"] == parent["ts"]
    link = await client.chat_getPermalink(channel="C0REVIEWS", message_ts=reply2["ts"])
    assert f"thread_ts={parent['ts']}" in link["permalink"]


async def test_update(client: AsyncWebClient, slack: Any) -> None:
    posted = await client.chat_postMessage(channel="C0REVIEWS", text="pending", blocks=CARD)
    resp = await client.chat_update(channel="C0REVIEWS", ts=posted["ts"], text="approved", blocks=CARD[:2])
    assert_keys(resp.data, sample("chat_update_ok.json"))  # type: ignore[arg-type]
    message = slack.find_message("C0REVIEWS", text="approved")
    assert message.ts == posted["ts"] and len(message.blocks) == 2 and message.edited_ts
    err = await error_of(client.chat_update(channel="C0REVIEWS", ts="1.000001", text="x"))
    assert err.response["error"] == "message_not_found"
    err = await error_of(client.chat_update(channel="C0REVIEWS", ts=posted["ts"], text="x" * 4001))
    assert err.response["error"] == "msg_too_long"


async def test_cant_update_someone_elses_message(client: AsyncWebClient, emulator: Emulator) -> None:
    mine = emulator.post_user_message("U0ADA", "#reviews", "hi")
    err = await error_of(client.chat_update(channel="C0REVIEWS", ts=mine.ts, text="x"))
    assert err.response.data == sample("chat_update_error_cant_update_message.json")


async def test_ephemeral(client: AsyncWebClient, slack: Any) -> None:
    resp = await client.chat_postEphemeral(channel="C0REVIEWS", user="U0OUTSIDER", text="You are not in this pool")
    assert_keys(resp.data, sample("chat_postEphemeral_ok.json"))  # type: ignore[arg-type]
    assert [e.text for e in slack.ephemerals("U0OUTSIDER")] == ["You are not in this pool"]
    assert slack.ephemerals("U0ADA") == [] and slack.messages("C0REVIEWS") == []
    err = await error_of(client.chat_postEphemeral(channel="C0REVIEWS", user="U0DEV", text="x"))
    assert err.response["error"] == "user_not_in_channel"
    err = await error_of(client.chat_postEphemeral(channel="C0REVIEWS", user="U0NOBODY", text="x"))
    assert err.response["error"] == "user_not_found"
    # Ephemeral messages cannot be edited with chat.update.
    err = await error_of(client.chat_update(channel="C0REVIEWS", ts=resp["message_ts"], text="x"))
    assert err.response["error"] == "message_not_found"


async def test_permalink(client: AsyncWebClient, emulator: Emulator) -> None:
    posted = await client.chat_postMessage(channel="C0REVIEWS", text="x")
    resp = await client.chat_getPermalink(channel="C0REVIEWS", message_ts=posted["ts"])
    assert_keys(resp.data, sample("chat_getPermalink_ok.json"))  # type: ignore[arg-type]
    assert resp["permalink"].startswith(emulator.url + "/archives/C0REVIEWS/p")
    err = await error_of(client.chat_getPermalink(channel="C0REVIEWS", message_ts="1.2"))
    assert err.response["error"] == "message_not_found"


async def test_users_info(client: AsyncWebClient) -> None:
    resp = await client.users_info(user="U0ADA")
    expected = sample("users_info_ok.json")
    assert_keys(resp["user"], expected["user"])
    assert_keys(
        resp["user"]["profile"],
        expected["profile"] if "profile" in expected else expected["user"]["profile"],
        ignore={
            "avatar_hash",
            "image_original",
            "image_24",
            "image_32",
            "image_48",
            "image_72",
            "image_192",
            "image_512",
        },
    )
    assert resp["user"]["name"] == "ada" and resp["user"]["is_admin"] is True
    err = await error_of(client.users_info(user="U0NOBODY"))
    assert err.response.data == sample("users_info_error_user_not_found.json")


async def test_conversations_info_members_join(client: AsyncWebClient) -> None:
    info = await client.conversations_info(channel="C0REVIEWS")
    assert_keys(
        info["channel"],
        sample("conversations_info_ok.json")["channel"],
        ignore={"updated", "is_frozen", "properties", "pending_connected_team_ids"},
    )
    assert info["channel"]["name"] == "reviews" and info["channel"]["is_member"] is True
    assert (await error_of(client.conversations_info(channel="C0NOPE"))).response.data == sample(
        "channel_not_found.json"
    )

    pages = [page["members"] async for page in await client.conversations_members(channel="C0REVIEWS", limit=2)]
    assert [len(p) for p in pages] == [2, 2, 2]
    assert [m for p in pages for m in p] == ["U0ADA", "U0BEN", "U0CHLOE", "U0AGENTOWNER", "U0OUTSIDER", "U0COUNTERSIGN"]
    err = await error_of(client.conversations_members(channel="C0REVIEWS", cursor="bm9wZQ=="))
    assert err.response.data == sample("conversations_members_error_invalid_cursor.json")

    joined = await client.conversations_join(channel="C0QUIET")
    assert "warning" not in joined.data and joined["channel"]["is_member"] is True
    again = await client.conversations_join(channel="C0QUIET")
    assert again["warning"] == "already_in_channel"
    assert_keys(again.data, sample("conversations_join_ok_already_in_channel.json"))  # type: ignore[arg-type]
    err = await error_of(client.conversations_join(channel="C0PRIVATE"))
    assert err.response["error"] == "method_not_supported_for_channel_type"


async def test_conversations_list_finds_channels_by_name(client: AsyncWebClient) -> None:
    names = [c["name"] async for page in await client.conversations_list(limit=2) for c in page["channels"]]
    assert "reviews" in names and "general" in names and "private-ops" not in names


async def test_usergroups(client: AsyncWebClient) -> None:
    resp = await client.usergroups_users_list(usergroup="S0REVIEWERS")
    assert_keys(resp.data, sample("usergroups_users_list_ok.json"))  # type: ignore[arg-type]
    assert resp["users"] == ["U0ADA", "U0BEN", "U0CHLOE"]
    assert (await error_of(client.usergroups_users_list(usergroup="S0NOPE"))).response["error"] == "no_such_subteam"


async def test_calls_are_recorded(client: AsyncWebClient, slack: Any) -> None:
    await client.chat_postMessage(channel="C0REVIEWS", text="x")
    call = await slack.wait_for_call("chat.postMessage")
    assert call.ok and call.args["channel"] == "C0REVIEWS" and call.args["text"] == "x"


# -- message metadata and conversations.history ---------------------------------------------------------

CARD_META = {"event_type": "countersign_card", "event_payload": {"request_id": "r1", "stage": 0}}


async def test_metadata_is_kept_and_read_back_only_when_asked_for(client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(channel="C0REVIEWS", text="card", metadata=CARD_META)
    assert posted["message"]["metadata"] == CARD_META

    [plain] = (await client.conversations_history(channel="C0REVIEWS"))["messages"]
    assert plain["ts"] == posted["ts"] and "metadata" not in plain
    [full] = (await client.conversations_history(channel="C0REVIEWS", include_all_metadata=True))["messages"]
    assert full["metadata"] == CARD_META and full["bot_id"] == "B0COUNTERSIGN"

    # chat.update without metadata keeps it; with metadata replaces it.
    await client.chat_update(channel="C0REVIEWS", ts=posted["ts"], text="card, approved")
    [kept] = (await client.conversations_history(channel="C0REVIEWS", include_all_metadata=True))["messages"]
    assert kept["metadata"] == CARD_META and kept["text"] == "card, approved"
    other = {"event_type": "countersign_card", "event_payload": {"request_id": "r1", "stage": 1}}
    updated = await client.chat_update(channel="C0REVIEWS", ts=posted["ts"], text="card", metadata=other)
    assert updated["message"]["metadata"] == other


@pytest.mark.parametrize(
    ("metadata", "error"),
    [
        ({"event_payload": {"a": 1}}, "invalid_metadata_schema"),
        ({"event_type": "", "event_payload": {"a": 1}}, "invalid_metadata_schema"),
        ({"event_type": 7, "event_payload": {"a": 1}}, "invalid_metadata_schema"),
        ({"event_type": "x", "event_payload": "a=1"}, "invalid_metadata_schema"),
        ({"event_type": "x"}, "invalid_metadata_schema"),
        (["event_type", "x"], "invalid_metadata_format"),
    ],
)
async def test_metadata_of_the_wrong_shape_is_refused_and_nothing_is_posted(
    client: AsyncWebClient, slack: Any, metadata: Any, error: str
) -> None:
    assert (await error_of(client.chat_postMessage(channel="C0REVIEWS", text="x", metadata=metadata))).response[
        "error"
    ] == error
    assert slack.messages("C0REVIEWS") == []


async def test_metadata_in_a_form_body_is_a_json_string(emulator: Emulator, client: AsyncWebClient) -> None:
    headers = {"Authorization": f"Bearer {emulator.config.bot_token}"}
    async with aiohttp.ClientSession() as session:
        for raw, expected in [("{not json", "invalid_metadata_format"), (json.dumps(CARD_META), None)]:
            form = {"channel": "C0REVIEWS", "text": "hi", "metadata": raw}
            async with session.post(emulator.api_url + "chat.postMessage", data=form, headers=headers) as r:
                body = await r.json()
            assert body.get("error") == expected
    [message] = (await client.conversations_history(channel="C0REVIEWS", include_all_metadata=True))["messages"]
    assert message["metadata"] == CARD_META


async def test_history_is_newest_first_between_oldest_and_latest_without_thread_replies(
    client: AsyncWebClient,
) -> None:
    ts = [(await client.chat_postMessage(channel="C0REVIEWS", text=f"m{i}"))["ts"] for i in range(5)]
    await client.chat_postMessage(channel="C0REVIEWS", text="a reply", thread_ts=ts[0])

    async def texts(**kwargs: Any) -> list[str]:
        return [m["text"] for m in (await client.conversations_history(channel="C0REVIEWS", **kwargs))["messages"]]

    assert await texts() == ["m4", "m3", "m2", "m1", "m0"]
    assert await texts(oldest=ts[1]) == ["m4", "m3", "m2"]  # oldest and latest are exclusive...
    assert await texts(oldest=ts[1], latest=ts[3]) == ["m2"]
    assert await texts(oldest=ts[1], latest=ts[3], inclusive=True) == ["m3", "m2", "m1"]  # ...unless inclusive
    for key, error in [("oldest", "invalid_ts_oldest"), ("latest", "invalid_ts_latest")]:
        err = await error_of(client.conversations_history(channel="C0REVIEWS", **{key: "yesterday"}))
        assert err.response["error"] == error


async def test_history_pages_with_a_cursor(client: AsyncWebClient) -> None:
    for i in range(5):
        await client.chat_postMessage(channel="C0REVIEWS", text=f"m{i}")
    first = await client.conversations_history(channel="C0REVIEWS", limit=2)
    assert first["has_more"] is True and [m["text"] for m in first["messages"]] == ["m4", "m3"]
    pages = [
        [m["text"] for m in page["messages"]]
        async for page in await client.conversations_history(channel="C0REVIEWS", limit=2)
    ]
    assert pages == [["m4", "m3"], ["m2", "m1"], ["m0"]]
    last = await client.conversations_history(channel="C0REVIEWS", limit=5)
    assert last["has_more"] is False and not last.get("response_metadata", {}).get("next_cursor")

    err = await error_of(client.conversations_history(channel="C0REVIEWS", cursor="bm9wZQ=="))
    assert err.response["error"] == "invalid_cursor"
    for limit in (0, 1000):
        err = await error_of(client.conversations_history(channel="C0REVIEWS", limit=limit))
        assert err.response["error"] == "invalid_limit"


async def test_history_needs_membership_and_the_history_scope_of_the_channel_type(emulator: Emulator) -> None:
    client = AsyncWebClient(token=emulator.config.bot_token, base_url=emulator.api_url)
    # A bot token reads only conversations the bot is in; a private one it is not in does not exist for it.
    err = await error_of(client.conversations_history(channel="C0QUIET"))
    assert err.response["error"] == "not_in_channel"
    err = await error_of(client.conversations_history(channel="C0PRIVATE"))
    assert err.response["error"] == "channel_not_found"

    emulator.workspace.channels["C0PRIVATE"].bot_is_member = True
    emulator.config.scopes = tuple(s for s in emulator.config.scopes if s != "groups:history")
    assert (await client.conversations_history(channel="C0REVIEWS"))["ok"]
    err = await error_of(client.conversations_history(channel="C0PRIVATE"))
    assert err.response["error"] == "missing_scope" and err.response["needed"] == "groups:history"
    emulator.config.scopes = tuple(s for s in emulator.config.scopes if s != "channels:history")
    err = await error_of(client.conversations_history(channel="C0REVIEWS"))
    assert err.response["error"] == "missing_scope" and err.response["needed"] == "channels:history"
