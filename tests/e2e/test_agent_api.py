"""The agent API as an agent sees it: idempotency, tenants, cancel, long polls, errors, the OpenAPI document."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import jsonschema
import pytest
from openapi_spec_validator import validate

import policy
from bot.ids import ActionId
from store.uow import uow
from tests.e2e.conftest import BEN, DEV, ERIN, HAL, PLATFORM, TIER1, Stack, refund

REFUND = refund("A-7")


def _is_error(body: Any, code: str | None = None) -> bool:
    """The JSON error shape of the agent API, optionally with a given code."""
    if not isinstance(body, dict) or set(body) != {"error"}:
        return False
    err = body["error"]
    shape = isinstance(err.get("code"), str) and isinstance(err.get("message"), str) and err["message"]
    return bool(shape) and (code is None or err["code"] == code)


async def test_same_idempotency_key_and_body_gives_the_same_request_and_one_card(stack: Stack) -> None:
    agent = stack.agent()
    first_status, first = await agent.ask("process_refund", REFUND, idempotency_key="refund-A-7")
    await stack.slack.wait_for_message(TIER1, action_id=ActionId.APPROVE)
    again_status, again = await agent.ask("process_refund", REFUND, idempotency_key="refund-A-7")
    assert (first_status, again_status) == (202, 202)
    assert again["id"] == first["id"]

    # The replay must not post a second card: decide, then the channel still holds exactly one card.
    await stack.slack.click(BEN, channel=TIER1, action_id=ActionId.APPROVE)
    _, decided = await agent.call("GET", f"/v1/requests/{first['id']}", wait=5)
    assert decided["status"] == "approved"
    replay_status, replay = await agent.ask("process_refund", REFUND, idempotency_key="refund-A-7")
    assert (replay_status, replay["id"], replay["status"]) == (200, first["id"], "approved")
    cards = [m for m in stack.slack.messages(TIER1) if first["id"] in repr(m.blocks)]
    assert len(cards) == 1


async def test_same_idempotency_key_with_another_body_is_a_conflict(stack: Stack) -> None:
    agent = stack.agent()
    await agent.ask("process_refund", REFUND, idempotency_key="refund-A-7")
    status, body = await agent.ask("process_refund", {**REFUND, "amount": 900}, idempotency_key="refund-A-7")
    assert status == 409
    assert _is_error(body, "conflict")


async def test_a_key_sees_only_its_own_tenant(stack: Stack) -> None:
    _, theirs = await stack.agent("platform").ask("delete_production_data", {"table": "users"})
    assert theirs["status"] == "pending"
    acme = stack.agent("acme-support")
    status, body = await acme.call("GET", f"/v1/requests/{theirs['id']}")
    assert (status, _is_error(body, "not_found")) == (404, True)
    status, body = await acme.call("GET", f"/v1/requests/{theirs['id']}", wait=1)
    assert (status, _is_error(body, "not_found")) == (404, True)
    status, body = await acme.call("POST", f"/v1/requests/{theirs['id']}/cancel", {})
    assert (status, _is_error(body, "not_found")) == (404, True)
    _, still = await stack.agent("platform").call("GET", f"/v1/requests/{theirs['id']}")
    assert still["status"] == "pending"


async def test_cancel_withdraws_a_pending_request_and_the_card_says_so(stack: Stack) -> None:
    agent = stack.agent()
    _, body = await agent.ask("process_refund", REFUND)
    card = await stack.slack.wait_for_message(TIER1, action_id=ActionId.APPROVE)
    status, cancelled = await agent.call("POST", f"/v1/requests/{body['id']}/cancel", {})
    assert (status, cancelled["status"], cancelled["decision"]["by"]) == (200, "cancelled", "agent")
    updated = await stack.slack.wait_for_message(TIER1, predicate=lambda m: "Cancelled by the agent" in repr(m.blocks))
    assert updated.ts == card.ts  # updated in place
    assert ActionId.APPROVE not in repr(updated.blocks)
    await stack.slack.wait_until(
        lambda: any("withdrew" in m.text for m in stack.slack.thread(TIER1, card.ts)), what="the thread note"
    )
    status, again = await agent.call("POST", f"/v1/requests/{body['id']}/cancel", {})
    assert (status, _is_error(again, "conflict")) == (409, True)
    assert "cancelled" in again["error"]["message"]


async def test_a_long_poll_on_get_returns_the_moment_the_request_is_decided(stack: Stack) -> None:
    agent = stack.agent()
    _, body = await agent.ask("process_refund", REFUND)
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, still = await agent.call("GET", f"/v1/requests/{body['id']}", wait=1)
    assert (status, still["status"]) == (202, "pending")
    assert loop.time() - started >= 0.9  # held for the wait, not answered at once

    polling = asyncio.create_task(agent.call("GET", f"/v1/requests/{body['id']}", wait=30))
    await stack.slack.click(BEN, channel=TIER1, action_id=ActionId.APPROVE)
    clicked = loop.time()
    status, decided = await asyncio.wait_for(polling, timeout=10)
    assert (status, decided["status"]) == (200, "approved")
    assert loop.time() - clicked < 2


async def test_the_decision_carries_the_digest_of_what_was_approved(stack: Stack) -> None:
    agent = stack.agent()
    _, body = await agent.ask("process_refund", REFUND)
    await stack.slack.click(BEN, channel=TIER1, action_id=ActionId.APPROVE)
    _, decided = await agent.call("GET", f"/v1/requests/{body['id']}", wait=5)
    assert decided["decision"]["params_sha256"] == policy.params_sha256("process_refund", REFUND)
    assert decided["decision"]["params_sha256"] != policy.params_sha256("process_refund", {**REFUND, "amount": 6200})


async def test_max_pending_forces_the_next_async_request_of_a_workflow_to_wait(stack: Stack) -> None:
    agent = stack.agent()
    credit = {"amount": 40, "customer": {"tier": "standard"}}
    context = {"workflow_id": "wf-1"}
    modes = [(await agent.ask("send_goodwill_credit", credit, context=context))[1]["mode"] for _ in range(3)]
    assert modes == ["async"] * 3
    _, fourth = await agent.ask("send_goodwill_credit", credit, context=context)
    assert (fourth["status"], fourth["mode"]) == ("pending", "sync")
    # Another workflow is not held back by this one.
    _, other = await agent.ask("send_goodwill_credit", credit, context={"workflow_id": "wf-2"})
    assert other["mode"] == "async"
    records = await stack.audit("acme-support", fourth["id"])
    assert "max_pending" in records[0].payload["reason"]


# -- errors -----------------------------------------------------------------------------------------------------


async def _raw(stack: Stack, method: str, path: str, data: bytes | None, headers: dict[str, str]) -> tuple[int, Any]:
    async with stack.http.request(method, stack.url + path, data=data, headers=headers) as resp:
        assert resp.content_type == "application/json"
        return resp.status, await resp.json()


async def test_missing_or_bad_keys_are_401(stack: Stack) -> None:
    body = json.dumps({"action": "process_refund", "params": REFUND}).encode()
    for headers in ({}, {"Authorization": "Bearer cs_acme-support_nope"}, {"Authorization": "Basic abc"}):
        status, answer = await _raw(stack, "POST", "/v1/requests", body, headers)
        assert (status, _is_error(answer, "unauthorized")) == (401, True), headers
    status, answer = await _raw(stack, "GET", "/v1/requests/whatever", None, {})
    assert (status, _is_error(answer, "unauthorized")) == (401, True)


async def test_unknown_request_is_404(stack: Stack) -> None:
    status, body = await stack.agent().call("GET", "/v1/requests/req_doesnotexist")
    assert (status, _is_error(body, "not_found")) == (404, True)
    status, body = await stack.agent().call("POST", "/v1/requests/req_doesnotexist/cancel", {})
    assert (status, _is_error(body, "not_found")) == (404, True)


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"{not json", 400, "malformed_json"),
        (b"[1, 2]", 400, "malformed_json"),
        (b'{"action": "process_refund", "params": {"amount": NaN}}', 400, "malformed_json"),
        (b"\xff\xfe not utf-8", 400, "malformed_json"),
        (b"[" * 100_000 + b"]" * 100_000, 400, "malformed_json"),
        (b'{"action": "process_refund", "params": [620]}', 422, "invalid"),
        (b'{"action": "process_refund", "params": {}, "colour": "red"}', 422, "invalid"),
        (b'{"action": "process refund!", "params": {}}', 422, "invalid"),
        (b'{"action": "process_refund", "context": {"on_behalf_of": "ben"}}', 422, "invalid"),
    ],
    ids=["syntax", "not-an-object", "nan", "not-utf8", "deep", "params-list", "extra-key", "bad-action", "bad-user"],
)
async def test_bad_bodies_get_the_json_error_shape(stack: Stack, data: bytes, status: int, code: str) -> None:
    headers = {"Authorization": f"Bearer {stack.keys['acme-support']}", "Content-Type": "application/json"}
    got, body = await _raw(stack, "POST", "/v1/requests", data, headers)
    assert (got, _is_error(body, code)) == (status, True), body


async def test_params_nested_too_deep_are_422_naming_the_field(stack: Stack) -> None:
    nested: dict[str, Any] = {}
    node = nested
    for _ in range(20):
        node["x"] = {}
        node = node["x"]
    status, body = await stack.agent().ask("process_refund", nested)
    assert (status, _is_error(body, "invalid"), body["error"].get("field")) == (422, True, "params")


async def test_a_body_over_256_kib_is_413(stack: Stack) -> None:
    headers = {"Authorization": f"Bearer {stack.keys['acme-support']}", "Content-Type": "application/json"}
    big = json.dumps({"action": "process_refund", "params": {"blob": "x" * (257 * 1024)}}).encode()
    status, body = await _raw(stack, "POST", "/v1/requests", big, headers)
    assert (status, _is_error(body, "body_too_large")) == (413, True)


async def test_an_unknown_action_under_deny_is_422_and_audited(stack: Stack) -> None:
    status, body = await stack.agent("platform").ask("drop_database", {"name": "prod"})
    assert (status, _is_error(body, "unknown_action")) == (422, True), body
    assert body["error"]["field"] == "action"
    assert stack.slack.messages(PLATFORM) == []
    async with uow(stack.runtime.sessionmaker, read_only=True) as tx:
        recent = await tx.audit.recent("platform", limit=5)
    assert [(r.kind, r.payload["action"]) for r in recent[:1]] == [("request.refused", "drop_database")]


async def test_a_callback_host_outside_the_allowed_hosts_is_422(stack: Stack) -> None:
    credit = {"amount": 40, "customer": {"tier": "standard"}}
    for url in ("https://evil.example/hook", "http://user:pw@127.0.0.1/hook", "ftp://127.0.0.1/hook"):
        status, body = await stack.agent().ask("send_goodwill_credit", credit, callback_url=url)
        assert status == 422 and _is_error(body), (url, body)
        assert body["error"]["field"] == "callback_url"


async def test_unknown_paths_and_methods_answer_json(stack: Stack) -> None:
    status, body = await stack.agent().call("GET", "/v1/nothing-here")
    assert (status, _is_error(body, "not_found")) == (404, True)
    status, body = await stack.agent().call("DELETE", "/v1/requests")
    assert (status, _is_error(body, "method_not_allowed")) == (405, True)


# -- the OpenAPI document ----------------------------------------------------------------------------------------


async def test_openapi_is_a_valid_3_1_document_matching_what_the_api_returns(stack: Stack) -> None:
    async with stack.http.get(stack.url + "/v1/openapi.json") as resp:
        assert resp.status == 200
        doc = await resp.json()
    validate(doc)  # raises on anything that is not valid OpenAPI 3.1
    assert doc["openapi"].startswith("3.1")
    assert {"/v1/requests", "/v1/requests/{id}", "/v1/requests/{id}/cancel"} <= set(doc["paths"])

    def check(instance: Any, model: str) -> None:
        schema = {"$ref": f"#/components/schemas/{model}", "components": doc["components"]}
        jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(instance)

    agent = stack.agent()
    request = {"action": "process_refund", "params": REFUND, "context": {"reason": "charged twice", "workflow_id": "w"}}
    check(request, "CreateRequest")
    _, pending = await agent.call("POST", "/v1/requests", request)
    check(pending, "RequestOut")
    await stack.slack.click(BEN, channel=TIER1, action_id=ActionId.APPROVE)
    _, decided = await agent.call("GET", f"/v1/requests/{pending['id']}", wait=5)
    assert decided["votes"] and decided["decision"]
    check(decided, "RequestOut")
    _, auto = await agent.ask("process_refund", {**REFUND, "amount": 5})
    check(auto, "RequestOut")
    _, error = await agent.call("GET", "/v1/requests/nope")
    check(error, "ErrorOut")
    # A withdrawn question, and the 409 of withdrawing it again, as the document says.
    assert set(doc["paths"]["/v1/questions/{id}/cancel"]["post"]["responses"]) == {"200", "401", "404", "409", "429"}
    _, asked = await agent.call("POST", "/v1/questions", {"question": "Ship it?", "choices": ["Yes", "No"]})
    _, withdrawn = await agent.call("POST", f"/v1/questions/{asked['id']}/cancel", {})
    assert withdrawn["status"] == "cancelled"
    check(withdrawn, "QuestionOut")
    _, conflict = await agent.call("POST", f"/v1/questions/{asked['id']}/cancel", {})
    check(conflict, "ErrorOut")
    with pytest.raises(jsonschema.ValidationError):
        check({**decided, "status": "maybe"}, "RequestOut")  # the schema is not vacuous


async def test_two_reviewers_from_the_api_side(stack: Stack) -> None:
    """The resource tells the agent how far the vote is while it waits."""
    agent = stack.agent()
    _, body = await agent.ask("close_account", {"customer_id": 4411})
    await stack.slack.click(DEV, channel="C0SUPPORT2", action_id=ActionId.APPROVE)
    await stack.slack.wait_for_message("C0SUPPORT2", predicate=lambda m: "Approvals *1 of 2*" in repr(m.blocks))
    _, mid = await agent.call("GET", f"/v1/requests/{body['id']}")
    assert (mid["status"], [v["user"] for v in mid["votes"]], mid["decision"]) == ("pending", [DEV], None)
    assert mid["deadline_at"] is not None
    await stack.slack.click(ERIN, channel="C0SUPPORT2", action_id=ActionId.APPROVE)
    _, done = await agent.call("GET", f"/v1/requests/{body['id']}", wait=5)
    assert (done["status"], done["decision"]["by"], done["deadline_at"]) == ("approved", ERIN, None)


async def test_a_platform_reviewer_cannot_vote_on_acme_cards(stack: Stack) -> None:
    _, body = await stack.agent().ask("process_refund", REFUND)
    await stack.slack.click(HAL, channel=TIER1, action_id=ActionId.APPROVE)
    await stack.slack.wait_for_ephemeral(HAL, text="not in a reviewer pool")
    _, still = await stack.agent().call("GET", f"/v1/requests/{body['id']}")
    assert (still["status"], still["votes"]) == ("pending", [])
    refused = [r for r in await stack.audit("acme-support", body["id"]) if r.kind == "click.refused"]
    assert [(r.actor, r.payload["refusal"]) for r in refused] == [(HAL, "not_in_pool")]


async def test_prefer_wait_does_not_hold_an_async_request(stack: Stack) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, body = await stack.agent().ask("send_goodwill_credit", {"amount": 40, "customer": {}}, wait=30)
    assert (status, body["status"], body["mode"]) == (202, "pending", "async")
    assert loop.time() - started < 2  # its decision goes to the callback; the agent goes on


async def test_a_named_key_shows_its_agent_on_the_card_in_show_and_in_the_audit(stack: Stack) -> None:
    from tests.e2e.conftest import Agent
    from tests.hitl.helpers import hitl

    async with uow(stack.runtime.sessionmaker) as tx:
        issued = await tx.tenants.create_api_key("acme-support", now=stack.runtime.clock.now(), name="refund-bot")
    named = Agent(stack.url, issued.key, stack.http)
    status, body = await named.ask("process_refund", refund("N-1"))
    assert status == 202
    card = await stack.slack.wait_for_message(TIER1, text=body["id"])
    assert "*refund-bot*" in repr(card.blocks)
    assert "refund-bot" in await hitl(stack, BEN, f"show {body['id']}")
    created = next(r for r in await stack.audit("acme-support", body["id"]) if r.kind == "request.created")
    assert created.actor == "refund-bot"
    # A key without a name still says which key it was.
    _, other = await stack.agent().ask("process_refund", refund("N-2"))
    unnamed = await stack.slack.wait_for_message(TIER1, text=other["id"])
    assert "*agent " in repr(unnamed.blocks)
    async with uow(stack.runtime.sessionmaker) as tx:
        with pytest.raises(Exception, match="invalid agent name"):
            await tx.tenants.create_api_key("acme-support", now=stack.runtime.clock.now(), name="<@U0ADA>")
