"""Forged, stale, replayed and malformed Slack requests: refused or answered, never acted on twice.

Bodies are captured from the emulator (a real click, signed as Slack signs it) and then posted to
``/slack/events`` by the test itself, untouched, tampered or re-signed. Refused requests are audited
as ``slack.refused`` events in the system chain, aggregated per reason (bot/slack/refusals.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import Counter
from typing import Any
from urllib.parse import quote, unquote

import pytest

from bot.ids import ActionId
from bot.reviewblocks import UNKNOWN_BUTTON
from bot.sandbox import sign
from bot.sandbox.testing import action_ids
from bot.slack.refusals import Reason, RefusalLog, RefusedRequest
from store import create_engine, make_sessionmaker, uow
from store.audit import SYSTEM_CHAIN, AuditRecord, verify
from tests.e2e.conftest import CROWD, CROWD_MEMBERS, OUTSIDER, Stack, eventually

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


def _decoded(form: str) -> Any:
    return json.loads(unquote(form.removeprefix("payload=")))


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


async def _system_chain(stack: Stack) -> list[AuditRecord]:
    """The system chain's events, oldest first (what is written so far; no flush)."""
    async with uow(stack.runtime.sessionmaker, read_only=True) as tx:
        return list(reversed(await tx.audit.recent(SYSTEM_CHAIN, limit=10_000)))


async def _refused(stack: Stack) -> list[AuditRecord]:
    """Every refusal audited, once the counts still pending in the aggregator are written."""
    await stack.runtime.bolt.refusals.flush()
    records = await _system_chain(stack)
    assert {r.kind for r in records} <= {"slack.refused"} and all(r.actor is None for r in records)
    return records


def _counts(records: list[AuditRecord]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for record in records:
        counts[record.payload["reason"]] += record.payload["count"]
    return dict(counts)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


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
    assert any(r.levelno >= logging.INFO and "signature" in r.getMessage().lower() for r in caplog.records)
    # Every refusal is in the system chain, by reason; Bob's genuine click is not.
    records = await _refused(stack)
    assert _counts(records) == {
        "missing_signature": 3,
        "invalid_signature": 5,
        "stale_signature": 2,
        "bad_timestamp": 1,
    }
    assert all(n <= 2 for n in Counter(r.payload["reason"] for r in records).values())  # aggregated
    first = {r.payload["reason"]: r.payload["request"] for r in reversed(records)}  # the first of each reason
    assert first["missing_signature"] == {
        "timestamp": None, "team": "T0SANDBOX", "user": ALICE, "action_id": ActionId.APPROVE.value,
        "body_length": len(body.encode()), "body_sha256": _sha(body),
    }  # fmt: skip
    assert first["invalid_signature"]["user"] == ALICE
    assert first["invalid_signature"]["timestamp"] == good["X-Slack-Request-Timestamp"]
    stale = [r.payload["request"]["timestamp"] for r in records if r.payload["reason"] == "stale_signature"]
    assert set(stale) <= {str(now - 600), str(now + 600)} and stale
    # What is kept is what the service measured: never the body, its secrets or the signature.
    kept = json.dumps([r.payload for r in records])
    click = _decoded(body)
    for secret in (good["X-Slack-Signature"], flipped[3:], click["response_url"], click["trigger_id"], "payload="):
        assert secret not in kept
    assert (await verify(stack.runtime.engine, SYSTEM_CHAIN)).ok


async def test_a_flood_of_forged_requests_is_two_audit_events_not_one_write_each(stack: Stack) -> None:
    request_id = await _pending_card(stack)
    body = _form(await _capture_click(stack, ALICE))
    forged = _signed(stack, body, secret="a-guess")
    answers = await asyncio.gather(*(_post(stack, body, forged) for _ in range(300)))
    assert {status for status, _ in answers} == {401}
    # The first is written at once; the other 299 of the window are only counted...
    await eventually(lambda: _system_chain(stack), what="the first refusal audited")
    [first] = await _system_chain(stack)
    assert (first.payload["reason"], first.payload["count"]) == ("invalid_signature", 1)
    # ...and written as one event when the window ends (here: flushed).
    records = await _refused(stack)
    assert [r.payload["count"] for r in records] == [1, 299] and _counts(records) == {"invalid_signature": 300}
    assert records[1].payload["request"]["body_sha256"] == _sha(body)
    async with stack.http.get(stack.url + "/metrics") as resp:
        assert 'countersign_slack_refused_requests_total{reason="invalid_signature"} 300.0' in await resp.text()
    # Nothing was acted on, and Slack's genuine requests still get through.
    assert await _vote_kinds(stack, request_id) == []
    genuine = _form(await _capture_click(stack, BOB))
    assert (await _post(stack, genuine, _signed(stack, genuine)))[0] == 200
    await eventually(lambda: _vote_kinds(stack, request_id), what="Bob's vote")


async def test_refusals_still_being_counted_are_written_at_shutdown(stack: Stack, db_url: str) -> None:
    body = _form({"type": "block_actions", "user": {"id": OUTSIDER}, "actions": [{"action_id": "approve"}]})
    for _ in range(3):
        assert (await _post(stack, body, {}))[0] == 401
    await eventually(lambda: _system_chain(stack), what="the first refusal audited")
    await stack.runtime.stop()  # the service stops within the window: the last two are only counted so far
    engine = create_engine(db_url)
    try:
        async with uow(make_sessionmaker(engine), read_only=True) as tx:
            records = list(reversed(await tx.audit.recent(SYSTEM_CHAIN)))
        assert [r.payload["count"] for r in records] == [1, 2]
        assert _counts(records) == {"missing_signature": 3} and records[1].payload["request"]["user"] == OUTSIDER
        assert (await verify(engine, SYSTEM_CHAIN)).ok
    finally:
        await engine.dispose()


async def test_each_reason_is_written_at_most_once_per_window_and_the_rest_counted() -> None:
    written: list[tuple[str, int]] = []

    async def audit(reason: str, detail: dict[str, Any]) -> None:
        written.append((reason, detail["count"]))

    now = [0.0]  # the aggregator's clock, moved by hand; its timers run in real time (0.1 s here)
    refusals = RefusalLog(audit, window=0.1, clock=lambda: now[0])
    forged = RefusedRequest.of(b"payload=%7B%7D", {"X-Slack-Request-Timestamp": "1"}, None)
    for _ in range(3):
        refusals.record(Reason.INVALID_SIGNATURE, forged)
    refusals.record(Reason.MISSING_SIGNATURE, forged)
    await asyncio.sleep(0)
    assert written == [("invalid_signature", 1), ("missing_signature", 1)]
    await asyncio.sleep(0.3)  # the window ends: the two counted are written as one event, with no flush
    assert written[2:] == [("invalid_signature", 2)]
    now[0] = 0.05  # within the window that write opened: counted, then written when it ends
    refusals.record(Reason.INVALID_SIGNATURE, forged)
    await asyncio.sleep(0)
    assert written[3:] == []
    await asyncio.sleep(0.3)
    assert written[3:] == [("invalid_signature", 1)]
    now[0] = 5.0  # after a quiet window: written at once again
    refusals.record(Reason.INVALID_SIGNATURE, forged)
    refusals.record(Reason.INVALID_SIGNATURE, forged)
    await refusals.close()  # shutdown writes what is still counted
    assert written[4:] == [("invalid_signature", 1), ("invalid_signature", 1)]
    refusals.record(Reason.INVALID_SIGNATURE, forged)  # after close: logged only
    await asyncio.sleep(0.3)
    assert len(written) == 6


async def test_an_audit_write_that_fails_is_logged_and_the_request_still_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(reason: str, detail: dict[str, Any]) -> None:
        raise RuntimeError("database down")

    refusals = RefusalLog(broken)
    refusals.record(Reason.MISSING_SIGNATURE, RefusedRequest.of("", {}, {"user": {"id": OUTSIDER}}))
    await refusals.flush()
    [record] = [r for r in caplog.records if "could not audit refused Slack requests" in r.getMessage()]
    assert "missing_signature" in record.getMessage() and OUTSIDER in record.getMessage()


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
    # The refused requests are audited in the system chain (and logged), each under its reason.
    await eventually(_logged(caplog, "refused Slack request: unknown_action"), what="the refused unknown action logged")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]
    records = await _refused(stack)
    # A signed body of a shape Slack never sends (400); signed requests no listener takes (404).
    assert _counts(records) == {"unknown_action": 1, "malformed_body": 1, "unhandled": 4}
    [unknown_click] = [r.payload["request"] for r in records if r.payload["reason"] == "unknown_action"]
    assert (unknown_click["user"], unknown_click["team"], unknown_click["action_id"]) == (
        ALICE, "T0SANDBOX", "launch_missiles"
    )  # fmt: skip
    assert unknown_click["body_sha256"] == _sha(bodies["unknown action id"])
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
