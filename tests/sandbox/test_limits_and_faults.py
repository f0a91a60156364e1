"""invalid_blocks like Slack, fault injection, and 429 + Retry-After with slack_sdk's retry handler."""

from __future__ import annotations

import time
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.sandbox import ManualClock
from bot.sandbox.blockkit import check_message_blocks, check_view
from bot.sandbox.server import Emulator
from tests.sandbox.conftest import sample


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def button(text: str = "Go", action_id: str = "go") -> dict[str, Any]:
    return {"type": "button", "action_id": action_id, "text": {"type": "plain_text", "text": text}}


@pytest.mark.parametrize(
    ("blocks", "expected"),
    [
        ([section("x" * 3001)], "must be less than 3001 characters [json-pointer:/blocks/0/text/text]"),
        ([section("x")] * 51, "no more than 50 items allowed [json-pointer:/blocks]"),
        (
            [{"type": "actions", "elements": [button(action_id=f"b{i}") for i in range(26)]}],
            "no more than 25 items allowed [json-pointer:/blocks/0/elements]",
        ),
        (
            [{"type": "actions", "elements": [button("x" * 76)]}],
            "must be less than 76 characters [json-pointer:/blocks/0/elements/0/text/text]",
        ),
        (
            [{"type": "actions", "elements": [button(action_id="a" * 256)]}],
            "must be less than 256 characters [json-pointer:/blocks/0/elements/0/action_id]",
        ),
        (
            [{**section("x"), "block_id": "b" * 256}],
            "must be less than 256 characters [json-pointer:/blocks/0/block_id]",
        ),
        (
            [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}],
            "must be less than 151 characters [json-pointer:/blocks/0/text/text]",
        ),
        (
            [{"type": "header", "text": {"type": "mrkdwn", "text": "h"}}],
            "must be a valid enum value [json-pointer:/blocks/0/text]",
        ),
        (
            [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}],
            "no more than 10 items allowed [json-pointer:/blocks/0/fields]",
        ),
        (
            [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2001}]}],
            "must be less than 2001 characters [json-pointer:/blocks/0/fields/0/text]",
        ),
        (
            [{"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11}],
            "no more than 10 items allowed [json-pointer:/blocks/0/elements]",
        ),
        (
            [{"type": "actions", "elements": [{**button(), "style": "secondary"}]}],
            "must be a valid enum value [json-pointer:/blocks/0/elements/0/style]",
        ),
        ([{"type": "carousel"}], "failed to match all allowed schemas [json-pointer:/blocks/0]"),
    ],
)
def test_message_limits(blocks: list[Any], expected: str) -> None:
    assert expected in check_message_blocks(blocks)


def test_sample_invalid_blocks_wording() -> None:
    assert check_message_blocks([section("x" * 3001)]) == sample("invalid_blocks.json")["errors"]


def test_valid_card_passes() -> None:
    card = [
        {"type": "header", "text": {"type": "plain_text", "text": "Refund"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "*x*"}, "fields": [{"type": "mrkdwn", "text": "a"}]},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}]},
        {"type": "divider"},
        {"type": "actions", "elements": [{**button(), "style": "danger", "value": "v"}]},
    ]
    assert check_message_blocks(card) == []


def test_view_limits() -> None:
    modal = {"type": "modal", "title": {"type": "plain_text", "text": "t" * 25}, "blocks": [section("x")] * 101}
    errors = check_view(modal)
    assert "must be less than 25 characters [json-pointer:/view/title/text]" in errors
    assert "no more than 100 items allowed [json-pointer:/view/blocks]" in errors
    assert check_view({"type": "home", "blocks": [section("x")] * 100}) == []


async def test_invalid_blocks_answer(client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError) as info:
        await client.chat_postMessage(channel="C0REVIEWS", text="x", blocks=[section("x" * 3001)])
    assert info.value.response.data == sample("invalid_blocks.json")


async def test_fail_next_with_any_error(emulator: Emulator, client: AsyncWebClient) -> None:
    emulator.faults.fail_next("chat.update", error="message_not_found", times=2)
    posted = await client.chat_postMessage(channel="C0REVIEWS", text="x")
    for _ in range(2):
        with pytest.raises(SlackApiError) as info:
            await client.chat_update(channel="C0REVIEWS", ts=posted["ts"], text="y")
        assert info.value.response.status_code == 200 and info.value.response["error"] == "message_not_found"
    assert (await client.chat_update(channel="C0REVIEWS", ts=posted["ts"], text="y"))["ok"]


async def test_fail_with_http_status(emulator: Emulator, client: AsyncWebClient) -> None:
    emulator.faults.fail_next("users.info", error="internal_error", status=500)
    with pytest.raises(SlackApiError) as info:
        await client.users_info(user="U0ADA")
    assert info.value.response.status_code == 500


async def test_ratelimited_429_then_retry_handler_succeeds(emulator: Emulator, client: AsyncWebClient) -> None:
    emulator.faults.fail_next("chat.postMessage")
    with pytest.raises(SlackApiError) as info:
        await client.chat_postMessage(channel="C0REVIEWS", text="x")
    assert info.value.response.status_code == 429
    assert info.value.response.headers["Retry-After"] == "1"
    assert info.value.response.data == sample("ratelimited.json")["body"]

    emulator.faults.fail_next("chat.postMessage")
    patient = AsyncWebClient(
        token=emulator.config.bot_token,
        base_url=emulator.api_url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)],
    )
    started = time.monotonic()
    resp = await patient.chat_postMessage(channel="C0REVIEWS", text="x")
    assert resp["ok"] and time.monotonic() - started >= 1.0
    assert [c.status for c in emulator.calls if c.method == "chat.postMessage"] == [429, 429, 200]


async def test_per_channel_rate_limit_follows_the_clock(
    emulator: Emulator, client: AsyncWebClient, clock: ManualClock
) -> None:
    emulator.faults.rate_limiting = True
    await client.chat_postMessage(channel="C0REVIEWS", text="1")
    await client.chat_postMessage(channel="general", text="other channel is fine")
    with pytest.raises(SlackApiError) as info:
        await client.chat_postMessage(channel="C0REVIEWS", text="2")
    assert info.value.response.status_code == 429 and info.value.response.headers["Retry-After"] == "1"
    clock.advance(1.0)
    assert (await client.chat_postMessage(channel="C0REVIEWS", text="2"))["ok"]


async def test_configurable_limit(emulator: Emulator, client: AsyncWebClient, clock: ManualClock) -> None:
    emulator.faults.set_limit("users.info", calls=2, per=60)
    for _ in range(2):
        await client.users_info(user="U0ADA")
    with pytest.raises(SlackApiError) as info:
        await client.users_info(user="U0ADA")
    assert info.value.response.headers["Retry-After"] == "60"
    clock.advance(60)
    assert (await client.users_info(user="U0ADA"))["ok"]


async def test_delay_only(emulator: Emulator, client: AsyncWebClient) -> None:
    emulator.faults.fail_next("auth.test", error=None, delay=0.2)
    started = time.monotonic()
    assert (await client.auth_test())["ok"]
    assert time.monotonic() - started >= 0.2


async def test_a_slow_answer_comes_after_the_call_took_effect(emulator: Emulator, slack: Any) -> None:
    """What a client that times out cannot tell: Slack posted the message, the answer was late."""
    emulator.faults.fail_next("chat.postMessage", error=None, delay=0.5)
    impatient = AsyncWebClient(token=emulator.config.bot_token, base_url=emulator.api_url, timeout=0.1)
    with pytest.raises(TimeoutError):
        await impatient.chat_postMessage(channel="C0REVIEWS", text="posted anyway")
    assert [m.text for m in slack.messages("C0REVIEWS")] == ["posted anyway"]


async def test_an_injected_error_does_nothing(emulator: Emulator, client: AsyncWebClient, slack: Any) -> None:
    emulator.faults.fail_next("chat.postMessage", error="internal_error", status=500, delay=0.1)
    with pytest.raises(SlackApiError):
        await client.chat_postMessage(channel="C0REVIEWS", text="never posted")
    assert slack.messages("C0REVIEWS") == []
