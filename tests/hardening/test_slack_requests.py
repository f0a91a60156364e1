"""Forged, stale, replayed and malformed Slack requests: refused or answered, never acted on twice.

Bodies are captured from the emulator (a real click, signed as Slack signs it) and then posted to
``/slack/events`` by the test itself, untouched, tampered or re-signed.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any
from urllib.parse import quote

import pytest

from bot.blocks import UNKNOWN_BUTTON
from bot.ids import ActionId
from bot.sandbox import sign
from bot.sandbox.testing import action_ids
from tests.e2e.conftest import CROWD, CROWD_MEMBERS, OUTSIDER, Stack
from tests.hardening.conftest import eventually

ALICE, BOB = CROWD_MEMBERS[0], CROWD_MEMBERS[1]
VOTE_KINDS = ("vote.cast", "click.refused")


async def _pending_card(stack: Stack) -> str:
    """A ``crowd_vote`` request (2 approvals) with its card posted; returns the request id."""
    status, body = await stack.agent("lab").ask("crowd_vote", {"n": 1})
    assert status == 202, body
    await stack.slack.wait_for_message(CROWD, action_id=ActionId.APPROVE)
    return str(body["id"])


async def _capture_click(stack: Stack, user: str, action_id: str = ActionId.APPROVE) -> dict[str, Any]:
    """The payload Slack would send for ``user`` clicking ``action_id`` on the newest card (not delivered)."""
    url, stack.emulator.config.bot_url = stack.emulator.config.bot_url, ""
    try:
        delivery = await stack.slack.click(user, channel=CROWD, action_id=action_id)
    finally:
        stack.emulator.config.bot_url = url
    assert delivery.error == "no_bot"
    return dict(delivery.payload)


def _form(payload: dict[str, Any]) -> str:
    return "payload=" + quote(json.dumps(payload, separators=(",", ":")), safe="")


async def _post(stack: Stack, body: str, headers: dict[str, str]) -> tuple[int, str]:
    hdrs = {"Content-Type": "application/x-www-form-urlencoded", **headers}
    async with stack.http.post(stack.url + "/slack/events", data=body.encode(), headers=hdrs) as resp:
        return resp.status, await resp.text()


def _signed(stack: Stack, body: str, *, ts: int | None = None, secret: str | None = None) -> dict[str, str]:
    ts = int(time.time()) if ts is None else ts
    signature = sign(secret or stack.emulator.config.signing_secret, ts, body)
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": signature}


async def _vote_kinds(stack: Stack, request_id: str) -> list[tuple[str, str | None]]:
    return [(r.kind, r.actor) for r in await stack.audit("lab", request_id) if r.kind in VOTE_KINDS]


async def test_forged_stale_and_unsigned_requests_are_401_and_change_nothing(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    request_id = await _pending_card(stack)
    card_before = stack.slack.messages(CROWD)[-1].blocks
    body = _form(await _capture_click(stack, ALICE))
    now = int(time.time())
    good = _signed(stack, body)
    flipped = good["X-Slack-Signature"][:-1] + ("0" if good["X-Slack-Signature"][-1] != "0" else "1")
    other_user = body.replace(ALICE, OUTSIDER)
    attempts = {
        "no headers": (body, {}),
        "no signature": (body, {"X-Slack-Request-Timestamp": str(now)}),
        "no timestamp": (body, {"X-Slack-Signature": good["X-Slack-Signature"]}),
        "one hex digit changed": (body, {**good, "X-Slack-Signature": flipped}),
        "signed with another secret": (body, _signed(stack, body, secret="not-the-signing-secret")),
        "body changed after signing": (other_user, good),
        "stale: signed 10 minutes ago": (body, _signed(stack, body, ts=now - 600)),
        "from the future: 10 minutes ahead": (body, _signed(stack, body, ts=now + 600)),
        "timestamp not a number": (body, {**good, "X-Slack-Request-Timestamp": "soon"}),
        "v1 scheme": (body, {**good, "X-Slack-Signature": good["X-Slack-Signature"].replace("v0=", "v1=")}),
    }
    updates_before = len(stack.slack.calls("chat.update"))
    with caplog.at_level(logging.DEBUG):
        for what, (raw, headers) in attempts.items():
            status, _ = await _post(stack, raw, headers)
            assert status == 401, what
    # A genuine click after the forgeries is processed: so once it is audited, the forgeries had their chance.
    status, _ = await _post(stack, _form(await _capture_click(stack, BOB)), _signed(stack, _form({})))
    assert status == 401  # (a signature over another body)
    genuine = _form(await _capture_click(stack, BOB))
    assert (await _post(stack, genuine, _signed(stack, genuine)))[0] == 200
    await eventually(lambda: _vote_kinds(stack, request_id), what="Bob's vote")
    assert await _vote_kinds(stack, request_id) == [("vote.cast", BOB)]  # nothing of Alice's or the outsider's
    _, resource = await stack.agent("lab").call("GET", f"/v1/requests/{request_id}")
    assert [v["user"] for v in resource["votes"]] == [BOB] and resource["status"] == "pending"
    await stack.slack.wait_for_message(CROWD, predicate=lambda m: "1 of 2" in repr(m.blocks))
    assert card_before != stack.slack.messages(CROWD)[-1].blocks  # only Bob's vote changed the card
    assert len(stack.slack.calls("chat.update")) >= updates_before + 1
    assert not stack.slack.ephemerals(ALICE) and not stack.slack.ephemerals(OUTSIDER)
    # What exists today for a refused signature: Bolt's log line (there is no tenant to audit it under).
    assert any(r.levelno >= logging.INFO and "signature" in r.getMessage().lower() for r in caplog.records)


async def test_a_replayed_click_is_one_vote(stack: Stack) -> None:
    request_id = await _pending_card(stack)
    body = _form(await _capture_click(stack, ALICE))
    headers = _signed(stack, body)
    for _ in range(3):  # Slack retries (and an attacker replays) the very same signed body
        assert (await _post(stack, body, headers))[0] == 200
    await eventually(lambda: _count(stack, request_id, 3), what="three audited clicks")
    kinds = await _vote_kinds(stack, request_id)
    assert kinds == [("vote.cast", ALICE), ("click.refused", ALICE), ("click.refused", ALICE)]
    records = [r for r in await stack.audit("lab", request_id) if r.kind == "click.refused"]
    assert {r.payload["refusal"] for r in records} == {"duplicate"}
    _, resource = await stack.agent("lab").call("GET", f"/v1/requests/{request_id}")
    assert ([v["user"] for v in resource["votes"]], resource["status"]) == ([ALICE], "pending")
    await stack.slack.wait_for_ephemeral(ALICE, text="already voted")


async def _count(stack: Stack, request_id: str, n: int) -> bool:
    return len(await _vote_kinds(stack, request_id)) >= n


async def test_unknown_action_ids_and_malformed_payloads_are_answered_without_a_crash(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    request_id = await _pending_card(stack)
    click = await _capture_click(stack, ALICE)
    unknown = json.loads(json.dumps(click))
    unknown["actions"][0]["action_id"] = "launch_missiles"
    bad_value = json.loads(json.dumps(click))
    bad_value["actions"][0]["value"] = '{"t":"acme-support","r":"../../etc/passwd","x":1}'
    no_value = json.loads(json.dumps(click))
    del no_value["actions"][0]["value"]
    no_user = json.loads(json.dumps(click))
    del no_user["user"]
    no_actions = {**click, "actions": []}
    bodies = {
        "unknown action id": _form(unknown),
        "button value not ours": _form(bad_value),
        "button without value": _form(no_value),
        "no user": _form(no_user),
        "no actions": _form(no_actions),
        "empty body": "",
        "binary": "\x00\x01\x02",
        "unknown type": _form({"type": "workflow_step_edit", "user": {"id": ALICE}}),
        "event_callback": json.dumps({"type": "event_callback", "event": {"type": "app_mention"}}),
    }
    with caplog.at_level(logging.WARNING):
        for what, body in bodies.items():
            status, answer = await _post(stack, body, _signed(stack, body))
            assert status in (200, 400, 404), (what, status, answer)
    # The person who clicked the unknown button is told it does nothing; the bad value gets an explanation.
    await stack.slack.wait_for_ephemeral(ALICE, text=UNKNOWN_BUTTON)
    await stack.slack.wait_for_ephemeral(ALICE, text="does not belong to a Countersign request")
    # The refused unknown action is recorded in the log (no tenant to audit it under: see SECURITY.md).
    await eventually(_logged(caplog, "refused Slack request: unknown_action"), what="the refused unknown action logged")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]
    # Nothing was counted, and the service still serves a genuine click.
    assert await _vote_kinds(stack, request_id) == []
    genuine = _form(await _capture_click(stack, BOB))
    assert (await _post(stack, genuine, _signed(stack, genuine)))[0] == 200
    await stack.slack.wait_for_message(CROWD, predicate=lambda m: "1 of 2" in repr(m.blocks))
    assert ActionId.APPROVE in action_ids(stack.slack.messages(CROWD)[-1])


def _logged(caplog: pytest.LogCaptureFixture, text: str) -> Any:
    async def probe() -> bool:
        return any(text in r.getMessage() for r in caplog.records)

    return probe


async def test_a_payload_that_is_not_json_is_a_4xx_not_a_500(stack: Stack) -> None:
    for body in ("payload=%7Bnot-json", "payload=", "payload=" + quote("[1,2]"), "payload=" + quote('"x"')):
        status, _ = await _post(stack, body, _signed(stack, body))
        assert 400 <= status < 500, (body, status)
