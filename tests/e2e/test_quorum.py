"""`require:` (a cross-pool quorum) through the whole service and the Slack emulator: one card per pool,
each showing every line's progress; decided only when both pools approved, one person in both pools
counted once; a rejection in either pool rejects; a line that runs out of time moves to its own fallback
(a new card in that pool) and the request expires when a line has nowhere left to go. The clock is the
test's (frozen), so deadlines fire when it says."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.clock import FrozenClock
from bot.ids import ActionId
from bot.sandbox.workspace import Message
from tests.deadlines.conftest import started
from tests.e2e.conftest import MANIFESTS, Stack, eventually
from tests.hitl.helpers import hitl

SECURITY, FINANCE, CONTROLLERS = "C0SECURITY", "C0FINANCE", "C0CONTROL"
BOTH, SEC_ONLY, FIN_ONLY, CTRL = "U0ANNBOTH", "U0BOBSEC", "U0CATFIN", "U0DANCTRL"
BANK = """\
tenant: bank
admins: [U0BOBSEC]
pools:
  security_team: {channel: C0SECURITY, members: [U0ANNBOTH, U0BOBSEC]}
  finance_team: {channel: C0FINANCE, members: [U0ANNBOTH, U0CATFIN]}
  controllers: {channel: C0CONTROL, members: [U0DANCTRL]}
actions:
  process_refund:
    params: [amount]
    timeout: 10m
    on_timeout: reject
    require:                           # a quorum across pools: every line must be met
      - {pool: security_team, approvals: 1}
      - {pool: finance_team, approvals: 1, fallback: controllers, timeout: 2m}
tests:
  - action: process_refund
    params: {amount: 900}
    expect: {outcome: review, require: [{pool: security_team, approvals: 1}, {pool: finance_team, approvals: 1}]}
"""


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
async def bank(db_url: str, clock: FrozenClock, tmp_path: Path) -> AsyncIterator[Stack]:
    manifests = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, manifests)
    (manifests / "bank.yaml").write_text(BANK)
    async with started(db_url, clock, manifests) as stack:
        yield stack


def shown(message: Message) -> str:
    return json.dumps(message.blocks, ensure_ascii=False)


async def _read_if(stack: Stack, request_id: str, ready: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    _, resource = await stack.agent("bank").call("GET", f"/v1/requests/{request_id}")
    return resource if ready(resource) else None


async def _asked(stack: Stack) -> dict[str, Any]:
    status, body = await stack.agent("bank").ask("process_refund", {"amount": 900})
    assert (status, body["status"], body["pool"], body["approvals_required"]) == (202, "pending", "security_team", 2)
    assert body["quorum"] == [
        {"pool": "security_team", "approvals": 1, "approved_by": []},
        {"pool": "finance_team", "approvals": 1, "approved_by": []},
    ]
    # One card per pool, each naming every line's progress.
    for channel in (SECURITY, FINANCE):
        card = await stack.slack.wait_for_message(channel, action_id=ActionId.APPROVE)
        assert "`security_team` 0/1 · `finance_team` 0/1" in shown(card)
    return body


async def test_decided_only_when_both_pools_approved(bank: Stack) -> None:
    body = await _asked(bank)
    await bank.slack.click(SEC_ONLY, channel=SECURITY, action_id=ActionId.APPROVE)
    half = await eventually(lambda: _read_if(bank, body["id"], lambda r: len(r["votes"]) == 1), what="one vote")
    assert half["status"] == "pending"
    assert [q["approved_by"] for q in half["quorum"]] == [[SEC_ONLY], []]
    # Both cards show the security line met.
    for channel in (SECURITY, FINANCE):
        await bank.slack.wait_for_message(
            channel, predicate=lambda m: "`security_team` 1/1 :heavy_check_mark: · `finance_team` 0/1" in shown(m)
        )
    await bank.slack.click(FIN_ONLY, channel=FINANCE, action_id=ActionId.APPROVE)
    done = await eventually(lambda: _read_if(bank, body["id"], lambda r: r["status"] != "pending"), what="decided")
    assert (done["status"], done["decision"]["by"]) == ("approved", FIN_ONLY)
    assert [q["approved_by"] for q in done["quorum"]] == [[SEC_ONLY], [FIN_ONLY]]


async def test_one_person_in_both_pools_counts_once(bank: Stack) -> None:
    body = await _asked(bank)
    await bank.slack.click(BOTH, channel=SECURITY, action_id=ActionId.APPROVE)
    one = await eventually(lambda: _read_if(bank, body["id"], lambda r: len(r["votes"]) == 1), what="one vote")
    assert one["status"] == "pending"  # one person, two lines: counted for one of them only
    assert sum(len(q["approved_by"]) for q in one["quorum"]) == 1
    # Their second click, on the other pool's card, is refused: one vote per person.
    await bank.slack.click(BOTH, channel=FINANCE, action_id=ActionId.APPROVE)
    await bank.slack.wait_for_ephemeral(BOTH, text="already voted")
    # Someone from security only: the person in both is counted for finance, and the quorum is met.
    await bank.slack.click(SEC_ONLY, channel=SECURITY, action_id=ActionId.APPROVE)
    done = await eventually(lambda: _read_if(bank, body["id"], lambda r: r["status"] != "pending"), what="decided")
    assert done["status"] == "approved"
    assert [q["approved_by"] for q in done["quorum"]] == [[SEC_ONLY], [BOTH]]


async def test_a_rejection_in_either_pool_rejects(bank: Stack) -> None:
    body = await _asked(bank)
    await bank.slack.click(SEC_ONLY, channel=SECURITY, action_id=ActionId.APPROVE)
    await eventually(lambda: _read_if(bank, body["id"], lambda r: len(r["votes"]) == 1), what="one vote")
    await bank.reject(FIN_ONLY, "not this customer", channel=FINANCE)
    done = await eventually(lambda: _read_if(bank, body["id"], lambda r: r["status"] != "pending"), what="decided")
    assert (done["status"], done["decision"]["by"], done["decision"]["reason"]) == (
        "rejected",
        FIN_ONLY,
        "not this customer",
    )


async def test_a_line_escalates_to_its_own_fallback_then_the_request_expires(bank: Stack, clock: FrozenClock) -> None:
    body = await _asked(bank)
    await bank.slack.click(SEC_ONLY, channel=SECURITY, action_id=ActionId.APPROVE)
    await eventually(lambda: _read_if(bank, body["id"], lambda r: len(r["votes"]) == 1), what="one vote")
    clock.advance(2 * 60)  # the finance line's 2 minutes; security's 10 have not run out
    fired = await bank.runtime.keeper.run_due()
    assert [(f.action, f.detail, f.pool) for f in fired] == [("escalated", "controllers", "finance_team")]
    card = await bank.slack.wait_for_message(CONTROLLERS, action_id=ActionId.APPROVE)
    assert "`security_team` 1/1 :heavy_check_mark: · `controllers` 0/1" in shown(card)
    moved = await eventually(
        lambda: _read_if(bank, body["id"], lambda r: r["quorum"][1]["pool"] == "controllers"), what="moved"
    )
    assert moved["status"] == "pending" and moved["pool"] == "security_team"
    # The controllers' member may now vote for the finance line, and the quorum is met.
    await bank.slack.click(CTRL, channel=CONTROLLERS, action_id=ActionId.APPROVE)
    done = await eventually(lambda: _read_if(bank, body["id"], lambda r: r["status"] != "pending"), what="decided")
    assert done["status"] == "approved"
    assert [q["approved_by"] for q in done["quorum"]] == [[SEC_ONLY], [CTRL]]


async def test_a_line_with_nowhere_left_to_go_expires_the_request(bank: Stack, clock: FrozenClock) -> None:
    body = await _asked(bank)
    clock.advance(2 * 60)
    assert [f.action for f in await bank.runtime.keeper.run_due()] == ["escalated"]
    await bank.slack.wait_for_message(CONTROLLERS, action_id=ActionId.APPROVE)
    clock.advance(2 * 60)  # the controllers' stage of the finance line runs out: no pool left
    assert [(f.action, f.detail) for f in await bank.runtime.keeper.run_due()] == [("expired", "rejected")]
    _, done = await bank.agent("bank").call("GET", f"/v1/requests/{body['id']}")
    assert (done["status"], done["decision"]["outcome"]) == ("expired", "rejected")
    clock.advance(10 * 60)  # the security line's deadline no longer fires: the request is decided
    assert await bank.runtime.keeper.run_due() == []


async def test_hitl_policy_and_whocan_explain_the_quorum(bank: Stack) -> None:
    text = await hitl(bank, SEC_ONLY, "policy process_refund")
    assert "Needs 1 approval from `security_team` (10m) AND 1 from `finance_team` → `controllers` (2m each)" in text
    assert "one person counts once" in text
    text = await hitl(bank, SEC_ONLY, "policy")
    assert "1 from `security_team` AND 1 from `finance_team` (one person counts once)" in text
    text = await hitl(bank, SEC_ONLY, "whocan process_refund amount=900")
    assert "Line 1: `security_team`" in text and "Line 2: `finance_team`" in text and "then `controllers`" in text
    assert "one person counts once" in text
