"""`deny_if`, `rules:` and `context.*` through the whole service: a denial with no card, a rule choosing
another pool, more approvals and another mode, and escalation and expiry following the rule a request
matched. Time is the test's (a frozen clock), so deadlines fire when it says."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.clock import FrozenClock
from bot.ids import ActionId
from tests.deadlines.conftest import started
from tests.e2e.conftest import MANIFESTS, Stack, eventually
from tests.hitl.helpers import hitl

OPS, FINANCE, LEADS = "C0PAYOPS", "C0FINANCE", "C0PAYLEADS"
FIN_A, FIN_B, OPS_A = "U0FINA", "U0FINB", "U0OPSA"
PAYMENTS = """\
tenant: payments
admins: [U0OPSA]
callbacks: {allowed_hosts: [agents.example]}
pools:
  payments_ops: {channel: C0PAYOPS, members: [U0OPSA, U0OPSB]}
  finance_team: {channel: C0FINANCE, members: [U0FINA, U0FINB, U0FINC]}
  payment_leads: {channel: C0PAYLEADS, members: [U0LEADA, U0LEADB]}
actions:
  pay_invoice:
    params: [amount, vendor]
    deny_if: amount > 100000
    deny_reason: "Invoices over 100k go through the treasury desk"
    reviewer_pool: payments_ops
    timeout: 10m
    rules:
      - if: amount > 5000
        reviewer_pool: finance_team
        escalate_to: payment_leads
        approvals: 2
        timeout: 2m
        on_timeout: approve
      - if: amount < 100 && context.confidence > 0.9
        blocking: false
"""


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
async def paying(db_url: str, clock: FrozenClock, tmp_path: Path) -> AsyncIterator[Stack]:
    manifests = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, manifests)
    (manifests / "payments.yaml").write_text(PAYMENTS)
    async with started(db_url, clock, manifests) as stack:
        yield stack


async def test_deny_if_denies_at_once_with_its_reason_and_no_card(paying: Stack) -> None:
    status, body = await paying.agent("payments").ask("pay_invoice", {"amount": 250000, "vendor": "ACME"})
    assert (status, body["status"], body["decision"]["by"]) == (200, "denied", "policy")
    assert body["decision"]["reason"] == "Invoices over 100k go through the treasury desk"
    (created,) = await paying.audit("payments", body["id"])  # decided on arrival: one event says it all
    assert created.kind == "request.created" and "treasury desk" in repr(created.payload)
    for channel in (OPS, FINANCE, LEADS):
        assert paying.slack.messages(channel) == []
    metric = paying.runtime.metrics.registry.get_sample_value
    assert (
        metric("countersign_requests_total", {"tenant": "payments", "action": "pay_invoice", "outcome": "denied"}) == 1
    )


async def test_a_denial_is_counted_in_hitl_stats(paying: Stack) -> None:
    before = await hitl(paying, OPS_A, "payments stats")
    assert "All requests: none" in before
    _, body = await paying.agent("payments").ask("pay_invoice", {"amount": 250000, "vendor": "ACME"})
    assert body["status"] == "denied"
    text = await hitl(paying, OPS_A, "payments stats")
    assert "All requests: 1 denied" in text  # decided at once, so in no pool's review counts
    assert "No reviewed requests in this window" in text


async def test_a_rule_sends_large_invoices_to_finance_for_two_approvals(paying: Stack) -> None:
    status, body = await paying.agent("payments").ask("pay_invoice", {"amount": 8000, "vendor": "ACME"})
    assert (status, body["status"], body["pool"], body["approvals_required"], body["mode"]) == (
        202,
        "pending",
        "finance_team",
        2,
        "sync",
    )
    await paying.slack.wait_for_message(FINANCE, action_id=ActionId.APPROVE)
    assert paying.slack.messages(OPS) == []  # the action's own pool is not asked
    await paying.slack.click(FIN_A, channel=FINANCE, action_id=ActionId.APPROVE)
    half = await eventually(lambda: _read_if(paying, body["id"], lambda r: len(r["votes"]) == 1), what="one vote")
    assert half["status"] == "pending"
    await paying.slack.click(FIN_B, channel=FINANCE, action_id=ActionId.APPROVE)
    done = await eventually(lambda: _read_if(paying, body["id"], lambda r: r["status"] != "pending"), what="decided")
    assert (done["status"], sorted(v["user"] for v in done["votes"])) == ("approved", [FIN_A, FIN_B])


async def test_a_rule_reading_the_agents_confidence_makes_small_invoices_async(paying: Stack) -> None:
    agent = paying.agent("payments")
    status, sure = await agent.ask(
        "pay_invoice", {"amount": 40, "vendor": "ACME"}, context={"confidence": 0.95},
        callback_url="https://agents.example/cb", wait=30,
    )  # fmt: skip
    assert (status, sure["status"], sure["mode"], sure["pool"]) == (202, "pending", "async", "payments_ops")
    _, unsure = await agent.ask("pay_invoice", {"amount": 40, "vendor": "ACME"}, context={"confidence": 0.5})
    assert (unsure["mode"], unsure["pool"]) == ("sync", "payments_ops")  # no rule holds: the action's own keys
    created = next(r for r in await paying.audit("payments", sure["id"]) if r.kind == "request.created")
    assert "rule 2" in created.payload["reason"]


async def test_escalation_and_expiry_follow_the_rule_the_request_matched(paying: Stack, clock: FrozenClock) -> None:
    _, body = await paying.agent("payments").ask("pay_invoice", {"amount": 9000, "vendor": "ACME"})
    await paying.slack.wait_for_message(FINANCE, action_id=ActionId.APPROVE)
    clock.advance(2 * 60)  # the rule's 2 minutes, not the action's 10
    assert [(f.action, f.detail) for f in await paying.runtime.keeper.run_due()] == [("escalated", "payment_leads")]
    await paying.slack.wait_for_message(LEADS, action_id=ActionId.APPROVE)
    clock.advance(2 * 60)
    assert [f.action for f in await paying.runtime.keeper.run_due()] == ["expired"]
    _, done = await paying.agent("payments").call("GET", f"/v1/requests/{body['id']}")
    assert (done["status"], done["decision"]["outcome"]) == ("expired", "approved")  # the rule's on_timeout


async def test_hitl_policy_and_whocan_explain_the_denial_and_the_rules(paying: Stack) -> None:
    text = await hitl(paying, OPS_A, "policy pay_invoice")
    assert "Denied at once when `amount > 100000`: Invoices over 100k go through the treasury desk" in text
    assert (
        "1. when `amount > 5000`: `finance_team` (2m) → `payment_leads` (2m), 2 approvals, sync, on timeout approve"
        in text
    )
    assert "2. when `amount < 100 && context.confidence > 0.9`: `payments_ops` (10m), 1 approval, async" in text
    text = await hitl(paying, OPS_A, "whocan pay_invoice amount=250000")
    assert "Denied" in text and "treasury desk" in text
    text = await hitl(paying, OPS_A, "whocan pay_invoice amount=8000")
    assert (
        "rule 1 (`amount > 5000`) routes it" in text and "First `finance_team`" in text and "Needs 2 approvals" in text
    )


async def _read_if(stack: Stack, request_id: str, ready: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    _, resource = await stack.agent("payments").call("GET", f"/v1/requests/{request_id}")
    return resource if ready(resource) else None
