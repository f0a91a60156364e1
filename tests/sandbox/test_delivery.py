"""Deliveries to a real Bolt AsyncApp: signed, shaped like Slack's samples, acks applied, late acks recorded."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qsl

import pytest
from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bot.sandbox import ManualClock, sign
from bot.sandbox.server import Emulator
from bot.sandbox.testing import SlackDriver, serve_handler
from tests.sandbox.conftest import REASON_MODAL, sample, sample_text

CARD = [
    {"type": "section", "text": {"type": "mrkdwn", "text": "Refund *$620* to Ana"}},
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
            {
                "type": "button",
                "action_id": "reject",
                "text": {"type": "plain_text", "text": "Reject"},
                "style": "danger",
                "value": "r1",
            },
        ],
    },
]


def keys(d: dict[str, Any]) -> set[str]:
    return set(d)


async def post_card(client: AsyncWebClient) -> str:
    resp = await client.chat_postMessage(channel="C0REVIEWS", text="Refund $620 to Ana", blocks=CARD)
    return str(resp["ts"])


def test_signature_matches_slack_test_vector() -> None:
    vector = sample("signature_test_vector.json")
    expected = vector["expected_X-Slack-Signature"]
    assert sign(vector["signing_secret"], int(vector["timestamp"]), vector["body"]) == expected


async def test_raw_delivery_is_signed_and_form_encoded(
    emulator: Emulator, client: AsyncWebClient, slack: SlackDriver
) -> None:
    seen: list[tuple[dict[str, str], str]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((dict(request.headers), await request.text()))
        return web.Response()

    async with serve_handler(handler) as url:
        emulator.config.bot_url = url
        await post_card(client)
        delivery = await slack.click("U0ADA", channel="C0REVIEWS", action_id="approve")
    assert delivery.ok and delivery.latency is not None
    headers, body = seen[0]
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    verifier = SignatureVerifier(emulator.config.signing_secret)
    assert verifier.is_valid(body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"])
    assert body.startswith("payload=") and list(dict(parse_qsl(body))) == ["payload"]


async def test_block_actions_reach_bolt_with_slacks_shape(
    bolt: AsyncApp, client: AsyncWebClient, slack: SlackDriver
) -> None:
    bodies: list[dict[str, Any]] = []

    @bolt.action("approve")
    async def on_approve(ack: Any, body: dict[str, Any], action: dict[str, Any], context: Any) -> None:
        await ack()
        bodies.append(body)
        assert action["value"] == "r1" and context.bot_user_id == "U0COUNTERSIGN"

    ts = await post_card(client)
    delivery = await slack.click("U0BEN", channel="C0REVIEWS", action_id="approve", text="Refund")
    assert delivery.ok and delivery.status == 200, delivery.detail
    body = bodies[0]
    expected = sample("block_actions_message.json")
    assert keys(expected) <= keys(body)
    assert keys(expected["container"]) <= keys(body["container"])
    assert keys(expected["actions"][0]) <= keys(body["actions"][0])
    assert keys(expected["message"]) <= keys(body["message"])
    assert body["container"] == {"type": "message", "message_ts": ts, "channel_id": "C0REVIEWS", "is_ephemeral": False}
    assert body["user"]["id"] == "U0BEN" and body["user"]["username"] == "ben"
    assert body["actions"][0]["block_id"] == "card_actions" and body["message"]["ts"] == ts


async def test_modal_open_submit_errors_then_close(bolt: AsyncApp, client: AsyncWebClient, slack: SlackDriver) -> None:
    submissions: list[dict[str, Any]] = []

    @bolt.action("reject")
    async def on_reject(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        await client.views_open(trigger_id=body["trigger_id"], view=REASON_MODAL)

    @bolt.view("reject_reason")
    async def on_reason(ack: Any, view: dict[str, Any], body: dict[str, Any]) -> None:
        submissions.append(body)
        reason = view["state"]["values"]["reason"]["text"]["value"]
        if len(reason) < 5:
            await ack(response_action="errors", errors={"reason": "Say a little more"})
        else:
            await ack()

    await post_card(client)
    await slack.click("U0ADA", channel="C0REVIEWS", action_id="reject")
    modal = await slack.wait_for_modal("U0ADA", callback_id="reject_reason")
    assert modal.data["private_metadata"] == "r1"
    assert keys(sample("views_open_ok.json")["view"]) <= keys(modal.data)

    first = await slack.submit_modal("U0ADA", {"reason": "no"})
    assert first.ok and first.effects == ["errors"]
    assert slack.modal("U0ADA") is not None and slack.modal("U0ADA").errors == {"reason": "Say a little more"}  # type: ignore[union-attr]

    second = await slack.submit_modal("U0ADA", {"reason": "customer already refunded"})
    assert second.ok and second.effects == ["close"] and slack.modal("U0ADA") is None
    expected = sample("view_submission.json")
    assert keys(expected) <= keys(submissions[-1])
    assert keys(expected["view"]) <= keys(submissions[-1]["view"])
    assert submissions[-1]["view"]["state"]["values"] == {
        "reason": {"text": {"type": "plain_text_input", "value": "customer already refunded"}}
    }


async def test_required_input_is_enforced_client_side(
    bolt: AsyncApp, client: AsyncWebClient, slack: SlackDriver
) -> None:
    @bolt.action("reject")
    async def on_reject(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        await client.views_open(trigger_id=body["trigger_id"], view=REASON_MODAL)

    await post_card(client)
    await slack.click("U0ADA", channel="C0REVIEWS", action_id="reject")
    await slack.wait_for_modal("U0ADA")
    with pytest.raises(LookupError, match="required"):
        await slack.submit_modal("U0ADA", {})


async def test_response_action_update_and_push(bolt: AsyncApp, client: AsyncWebClient, slack: SlackDriver) -> None:
    @bolt.action("reject")
    async def on_reject(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        await client.views_open(trigger_id=body["trigger_id"], view=REASON_MODAL)

    @bolt.view("reject_reason")
    async def on_reason(ack: Any, view: dict[str, Any]) -> None:
        done = {
            "type": "modal",
            "callback_id": "done",
            "title": {"type": "plain_text", "text": "Done"},
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "Rejected"}}],
        }
        await ack(
            response_action="push" if view["state"]["values"]["reason"]["text"]["value"] == "push" else "update",
            view=done,
        )

    await post_card(client)
    await slack.click("U0ADA", channel="C0REVIEWS", action_id="reject")
    root = await slack.wait_for_modal("U0ADA")
    await slack.submit_modal("U0ADA", {"reason": "update"})
    updated = slack.modal("U0ADA")
    assert updated is not None and updated.id == root.id and updated.data["callback_id"] == "done"


async def test_trigger_expires_after_3s_and_works_once(
    emulator: Emulator, bolt: AsyncApp, client: AsyncWebClient, slack: SlackDriver, clock: ManualClock
) -> None:
    triggers: list[str] = []

    @bolt.action("reject")
    async def on_reject(ack: Any, body: dict[str, Any]) -> None:
        await ack()
        triggers.append(body["trigger_id"])

    await post_card(client)
    for _ in range(2):
        await slack.click("U0ADA", channel="C0REVIEWS", action_id="reject")
    clock.advance(2.9)
    await client.views_open(trigger_id=triggers[0], view=REASON_MODAL)
    with pytest.raises(SlackApiError) as used:
        await client.views_open(trigger_id=triggers[0], view=REASON_MODAL)
    assert used.value.response["error"] == "exchanged_trigger_id"
    clock.advance(0.2)
    with pytest.raises(SlackApiError) as expired:
        await client.views_open(trigger_id=triggers[1], view=REASON_MODAL)
    assert expired.value.response.data == sample("expired_trigger_id.json")
    with pytest.raises(SlackApiError) as invalid:
        await client.views_open(trigger_id="1.2.3", view=REASON_MODAL)
    assert invalid.value.response["error"] == "invalid_trigger_id"


async def test_views_update_hash_and_not_found(emulator: Emulator, client: AsyncWebClient, slack: SlackDriver) -> None:
    trigger = emulator.core.issue_trigger("U0ADA")
    opened = (await client.views_open(trigger_id=trigger, view={**REASON_MODAL, "external_id": "ext-1"}))["view"]
    stale = opened["hash"]
    new = await client.views_update(
        external_id="ext-1", hash=stale, view={**REASON_MODAL, "title": {"type": "plain_text", "text": "Again"}}
    )
    assert new["view"]["id"] == opened["id"] and new["view"]["hash"] != stale
    assert keys(sample("views_update_ok.json")["view"]) <= keys(new["view"])
    with pytest.raises(SlackApiError) as conflict:
        await client.views_update(view_id=opened["id"], hash=stale, view=REASON_MODAL)
    assert conflict.value.response["error"] == "hash_conflict"
    with pytest.raises(SlackApiError) as missing:
        await client.views_update(view_id="V0NOPE", view=REASON_MODAL)
    assert missing.value.response.data == sample("views_update_error_not_found.json")
    with pytest.raises(SlackApiError) as bad:
        await client.views_update(
            view_id=opened["id"], view={**REASON_MODAL, "title": {"type": "plain_text", "text": "x" * 25}}
        )
    assert bad.value.response["error"] == "invalid_arguments"
    assert bad.value.response["response_metadata"]["messages"] == [
        "[ERROR] must be less than 25 characters [json-pointer:/view/title/text]"
    ]


async def test_slash_command_ack_becomes_ephemeral_or_channel_message(bolt: AsyncApp, slack: SlackDriver) -> None:
    commands: list[dict[str, Any]] = []

    @bolt.command("/hitl")
    async def on_hitl(ack: Any, command: dict[str, Any]) -> None:
        commands.append(command)
        if command["text"] == "announce":
            await ack(response_type="in_channel", text="Pools: support")
        else:
            await ack(f"You said {command['text']}")

    delivery = await slack.command("U0CHLOE", "/hitl pools", channel="#reviews")
    assert delivery.ok, delivery.detail
    assert [e.text for e in slack.ephemerals("U0CHLOE", "C0REVIEWS")] == ["You said pools"]
    expected = dict(parse_qsl(sample_text("slash_command.txt"), keep_blank_values=True))
    assert set(expected) <= set(commands[0])
    assert commands[0]["command"] == "/hitl" and commands[0]["channel_name"] == "reviews"

    await slack.command("U0CHLOE", "/hitl announce", channel="#reviews")
    assert slack.find_message("C0REVIEWS", text="Pools: support") is not None


async def test_late_and_failed_acks_are_recorded(
    emulator: Emulator, bolt: AsyncApp, client: AsyncWebClient, slack: SlackDriver
) -> None:
    emulator.config.ack_timeout = 0.3
    release = asyncio.Event()

    @bolt.command("/hitl")
    async def slow(ack: Any) -> None:
        await release.wait()
        await ack()

    late = await slack.command("U0ADA", "/hitl pools", channel="#reviews")
    release.set()
    assert late.late and late.error == "operation_timeout"
    assert [e.text for e in slack.ephemerals("U0ADA")] == ['/hitl failed with the error "operation_timeout"']

    await post_card(client)
    unhandled = await slack.click("U0ADA", channel="C0REVIEWS", action_id="approve")  # no listener: Bolt says 404
    assert unhandled.error == "dispatch_failed" and unhandled.status == 404


async def test_wrong_signing_secret_is_refused_by_bolt(emulator: Emulator, bolt: AsyncApp, slack: SlackDriver) -> None:
    emulator.config.signing_secret = "not-the-secret"

    @bolt.command("/hitl")
    async def on_hitl(ack: Any) -> None:
        await ack()

    delivery = await slack.command("U0ADA", "/hitl help", channel="#reviews")
    assert delivery.status == 401 and delivery.error == "dispatch_failed"


async def test_app_home_opened_and_publish(bolt: AsyncApp, slack: SlackDriver) -> None:
    events: list[dict[str, Any]] = []

    @bolt.event("app_home_opened")
    async def on_home(event: dict[str, Any], body: dict[str, Any], client: AsyncWebClient) -> None:
        events.append(body)
        await client.views_publish(
            user_id=event["user"],
            view={
                "type": "home",
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": f"Queue of <@{event['user']}>"}}],
            },
        )

    assert (await slack.open_home("U0DEV")).ok
    home = await slack.wait_for_home("U0DEV", text="Queue of")
    expected = sample("event_callback_app_home_opened.json")
    assert keys(expected) - {"enterprise_id"} <= keys(events[0])
    assert keys(expected["event"]) <= keys(events[0]["event"]) and "view" not in events[0]["event"]
    assert keys(sample("views_publish_ok.json")["view"]) <= keys(home.data)

    await slack.open_home("U0DEV")
    await slack.wait_until(lambda: len(events) == 2, what="second app_home_opened")
    assert events[1]["event"]["view"]["id"] == home.id


async def test_views_publish_errors(client: AsyncWebClient, emulator: Emulator) -> None:
    with pytest.raises(SlackApiError) as bad_user:
        await client.views_publish(user_id="U0NOPE", view={"type": "home", "blocks": []})
    assert bad_user.value.response.data == sample("views_publish_error_invalid_arguments.json")
    emulator.config.home_tab_enabled = False
    with pytest.raises(SlackApiError) as off:
        await client.views_publish(user_id="U0ADA", view={"type": "home", "blocks": []})
    assert off.value.response["error"] == "not_enabled"


async def test_response_url_semantics(
    emulator: Emulator, bolt: AsyncApp, client: AsyncWebClient, slack: SlackDriver, clock: ManualClock
) -> None:
    urls: list[str] = []

    @bolt.action("approve")
    async def on_approve(ack: Any, body: dict[str, Any], respond: Any) -> None:
        await ack()
        urls.append(body["response_url"])
        await respond("Only you see this")
        await respond(replace_original=True, text="Approved by <@U0ADA>")

    ts = await post_card(client)
    await slack.click("U0ADA", channel="C0REVIEWS", action_id="approve")
    await slack.wait_for_message("C0REVIEWS", text="Approved by", predicate=lambda m: m.ts == ts)
    assert [e.text for e in slack.ephemerals("U0ADA")] == ["Only you see this"]
    assert slack.messages("C0REVIEWS")[0].blocks == []

    from slack_sdk.webhook.async_client import AsyncWebhookClient

    hook = AsyncWebhookClient(urls[0])
    assert (await hook.send_dict({"text": "in channel", "response_type": "in_channel", "thread_ts": ts})).body == "ok"
    assert [m.text for m in slack.thread("C0REVIEWS", ts)] == ["in channel"]
    assert (await hook.send(text="4th")).status_code == 200
    assert (await hook.send(text="5th")).status_code == 200
    sixth = await hook.send(text="6th")
    assert sixth.status_code == 404 and sixth.body == "used_url"

    fresh = emulator.core.issue_response_url(kind="actions", user="U0ADA", channel="C0REVIEWS", message_ts=ts)
    clock.advance(30 * 60 + 1)
    assert (await AsyncWebhookClient(fresh).send(text="late")).body == "expired_url"
    fresh = emulator.core.issue_response_url(kind="actions", user="U0ADA", channel="C0REVIEWS", message_ts=ts)
    bad = await AsyncWebhookClient(fresh).send(
        text="x", blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]
    )
    assert bad.status_code == 400 and bad.body == "invalid_blocks"
    assert (await AsyncWebhookClient(fresh).send_dict({"delete_original": True})).body == "ok"
    assert slack.messages("C0REVIEWS") == []
    # Deliveries stay signed with the wall clock, so Bolt still accepts them after the emulator's clock moved.
    assert (await slack.command("U0ADA", "/hitl help", channel="#reviews")).status == 404
