"""Policy changes from Slack with a two-person rule (#20 item 2): proposed with /hitl, validated as
`countersign check` would, approved by a second admin in a DM, served on every replica, rolled back."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.ids import ActionId
from bot.runtime import Runtime
from bot.sandbox.testing import message_text
from store.audit import AuditRecord
from store.models import PolicyChange, PolicyVersion
from store.policyversions import NewVersion
from store.uow import uow
from tests.dbsupport import POSTGRES_SKIP_REASON, database_url, postgres_url
from tests.e2e.conftest import ADA, BEN, CHLOE, HAL, TIER2, Agent, Stack, eventually, running_stack, settings_for
from tests.hitl.helpers import hitl

ACME = "acme-support"
VALID = "policy set process_refund threshold 600"  # 620 is still reviewed: the manifest's tests pass
BREAKING = "policy set process_refund threshold 700"  # 620 would be auto-approved: a test fails


def refund(amount: int, order_id: str) -> dict[str, Any]:
    return {"amount": amount, "currency": "EUR", "customer": {"name": "Ana"}, "card_number": "4111",
            "order_id": order_id}  # fmt: skip


@pytest.fixture
def two_admins(manifests: Path) -> Path:
    """acme-support with Ben as a second admin (the example manifest has one)."""
    path = manifests / f"{ACME}.yaml"
    text = path.read_text()
    assert "admins: [U0ADA]" in text
    path.write_text(text.replace("admins: [U0ADA]", "admins: [U0ADA, U0BEN]"))
    return manifests


async def versions(stack: Stack) -> list[PolicyVersion]:
    async with uow(stack.runtime.sessionmaker, read_only=True) as tx:
        return list(await tx.policy_versions.history(ACME))


async def changes(stack: Stack) -> list[PolicyChange]:
    async with uow(stack.runtime.sessionmaker, read_only=True) as tx:
        return list(await tx.session.scalars(select(PolicyChange).order_by(PolicyChange.id)))


async def recorded(stack: Stack, body: dict[str, Any]) -> tuple[str, int | None]:
    """A request's status and the policy version recorded on it (a pending one has no decision yet)."""
    async with uow(stack.runtime.sessionmaker, read_only=True) as tx:
        row = await tx.requests.get_or_raise(ACME, body["id"])
    return body["status"], row.policy_version


async def events(stack: Stack, prefix: str = "policy.change.") -> list[AuditRecord]:
    async with uow(stack.runtime.sessionmaker, read_only=True) as tx:
        found = [e for e in await tx.audit.recent(ACME, limit=500) if e.kind.startswith(prefix)]
    return sorted(found, key=lambda e: e.at)


def dm(stack: Stack, user: str) -> str:
    return stack.emulator.api.dm_channel(user).id


async def approve_in_dm(stack: Stack, user: str, change: int) -> str:
    """``user`` presses Approve on the DM asking about ``change``; the DM's text once it says the outcome."""
    channel = dm(stack, user)
    message = await stack.slack.wait_for_message(channel, text=f"#{change}", action_id=ActionId.POLICY_APPROVE)
    delivery = await stack.slack.click(user, channel=channel, action_id=ActionId.POLICY_APPROVE, message_ts=message.ts)
    assert delivery.ok, delivery.error

    def decided() -> str | None:
        now = next(m for m in stack.slack.messages(channel) if m.ts == message.ts)
        text = message_text(now)
        return text if " is approved" in text or " is superseded" in text else None

    return await stack.slack.wait_until(decided, what=f"the DM about change #{change} to show its outcome")


async def serving(stack: Stack, version: int) -> None:
    async def probe() -> bool:
        return stack.runtime.policies.version(ACME) == version

    await eventually(probe, what=f"version {version} to be served", timeout=10)


async def test_a_threshold_change_needs_a_second_admin_and_serves_the_next_request(
    db_url: str, two_admins: Path
) -> None:
    async with running_stack(db_url, two_admins) as stack:
        agent = stack.agent()
        answer = await hitl(stack, ADA, VALID)
        assert "Policy change #1 proposed" in answer and "threshold 600" in answer
        assert "-    if: amount > 500" in answer and "+    threshold: 600" in answer  # the diff
        assert f"<@{BEN}>" in answer and "two-person rule" in answer
        # Ben is asked in a DM, with the diff and what it would have done to the last 7 days.
        message = await stack.slack.wait_for_message(dm(stack, BEN), action_id=ActionId.POLICY_APPROVE)
        asked = message_text(message)
        assert "threshold: 600" in asked and "over the last 7 days" in asked
        assert stack.slack.messages(dm(stack, ADA)) == []  # the proposer is not asked

        # The proposer's own approval is refused and audited; nothing is served yet.
        refused = await hitl(stack, ADA, "policy approve 1")
        assert "You proposed change #1" in refused and "two-person rule" in refused
        _, body = await agent.ask("process_refund", refund(550, "before"))
        assert await recorded(stack, body) == ("pending", 1)

        outcome = await approve_in_dm(stack, BEN, 1)
        assert "approved" in outcome and "version 2" in outcome
        assert stack.runtime.policies.version(ACME) == 2
        _, body = await agent.ask("process_refund", refund(550, "after"))
        assert (body["status"], body["decision"]["policy_version"]) == ("auto_approved", 2)
        _, body = await agent.ask("process_refund", refund(620, "still-reviewed"))
        assert await recorded(stack, body) == ("pending", 2)

        [_, second] = await versions(stack)
        assert (second.source, second.proposed_by, second.approved_by) == ("slack", ADA, BEN)
        assert "threshold: 600" in second.manifest
        [row] = await changes(stack)
        assert (row.status, row.decided_by, row.applied_version, row.base_version) == ("approved", BEN, 2, 1)
        kinds = [(e.kind, e.actor) for e in await events(stack)]
        assert kinds == [
            ("policy.change.proposed", ADA), ("policy.change.refused", ADA), ("policy.change.approved", BEN)
        ]  # fmt: skip
        # The proposer hears of it; a second click finds it decided.
        await stack.slack.wait_for_message(dm(stack, ADA), text="approved by")
        again = await hitl(stack, BEN, "policy approve 1")
        assert "already approved" in again

    # A restart with the same file keeps the approved change; an edited file wins, as a newer version.
    async with running_stack(db_url, two_admins) as stack:
        assert stack.runtime.policies.version(ACME) == 2
        _, body = await stack.agent().ask("process_refund", refund(550, "after-restart"))
        assert (body["status"], body["decision"]["policy_version"]) == ("auto_approved", 2)
        path = two_admins / f"{ACME}.yaml"
        # Written aside and renamed: the watcher never reads a half-written file (an empty one loads as a policy).
        aside = path.with_suffix(".tmp")
        aside.write_text(path.read_text().replace("if: amount > 500", "if: amount > 510"))
        aside.replace(path)
        await serving(stack, 3)
        _, body = await stack.agent().ask("process_refund", refund(550, "file-wins"))
        assert await recorded(stack, body) == ("pending", 3)
        assert [v.source for v in await versions(stack)] == ["file", "slack", "file"]


async def test_a_change_that_breaks_the_manifests_tests_is_refused_naming_the_test(
    db_url: str, two_admins: Path
) -> None:
    async with running_stack(db_url, two_admins) as stack:
        answer = await hitl(stack, ADA, BREAKING)
        assert "breaks the manifest's test `large refunds need tier 1, then tier 2, then seniors`" in answer
        assert "expected outcome review, got auto_approve" in answer
        bad = await hitl(stack, ADA, 'policy set process_refund if "amount >"')
        assert "invalid" in bad
        unknown = await hitl(stack, ADA, "policy set process_refund pool nowhere")
        assert "nowhere" in unknown
        # Version 1 is the file, comments and all: setting what it already says is no change either.
        same = await hitl(stack, ADA, "policy set process_refund approvals 1")
        assert "That changes nothing: version 1 already says so" in same
        assert await changes(stack) == []
        assert [e.kind for e in await events(stack)] == ["policy.change.refused"] * 4
        assert stack.runtime.policies.version(ACME) == 1
        assert stack.slack.messages(dm(stack, BEN)) == []


async def test_who_may_change_the_policy(db_url: str, two_admins: Path) -> None:
    path = two_admins / f"{ACME}.yaml"
    text = path.read_text()
    assert "policy_editors: [U0BEN]" in text
    path.write_text(text.replace("policy_editors: [U0BEN]", f"policy_editors: [U0BEN, {CHLOE}]"))
    async with running_stack(db_url, two_admins) as stack:
        dev = await hitl(stack, "U0DEV", VALID)  # a reviewer of support_tier_2, neither admin nor editor
        assert "Only `acme-support`'s admins and policy editors" in dev
        hal = await hitl(stack, HAL, "policy set deploy_production approvals 2")
        assert "self_service: false" in hal
        # A policy editor proposes; both admins are asked; one approval applies it.
        proposed = await hitl(stack, CHLOE, VALID)
        assert "Policy change #1 proposed" in proposed and f"<@{ADA}>" in proposed and f"<@{BEN}>" in proposed
        await stack.slack.wait_for_message(dm(stack, ADA), action_id=ActionId.POLICY_APPROVE)
        outcome = await approve_in_dm(stack, BEN, 1)
        assert "version 2" in outcome


async def test_a_rollback_is_a_change_approved_the_same_way(db_url: str, two_admins: Path) -> None:
    async with running_stack(db_url, two_admins) as stack:
        await hitl(stack, ADA, VALID)
        await approve_in_dm(stack, BEN, 1)
        # A second change made against version 1 is superseded once version 2 is in force.
        same = await hitl(stack, BEN, "policy set process_refund approvals 1")
        assert "That changes nothing: version 2 already says so" in same
        stale = await hitl(stack, BEN, "policy set close_account timeout 20m")
        assert "#2 proposed" in stale
        async with uow(stack.runtime.sessionmaker) as tx:  # as if it had been proposed before version 2
            row = await tx.session.get(PolicyChange, 2)
            assert row is not None
            row.base_version = 1
        outcome = await approve_in_dm(stack, ADA, 2)
        assert "superseded" in outcome

        answer = await hitl(stack, BEN, "policy rollback 1")
        assert "Policy change #3 proposed" in answer and "roll back to version 1" in answer
        assert "+    if: amount > 500" in answer
        outcome = await approve_in_dm(stack, ADA, 3)
        assert "version 3" in outcome
        [first, _, third] = await versions(stack)
        assert (third.source, third.proposed_by, third.approved_by) == ("rollback", BEN, ADA)
        assert third.manifest == first.manifest
        _, body = await stack.agent().ask("process_refund", refund(550, "rolled-back"))
        assert await recorded(stack, body) == ("pending", 3)
        assert "roll back to version 1" in (await events(stack, "policy.change.approved"))[-1].payload["summary"]


async def test_an_approved_change_is_served_by_every_replica(tmp_path: Path, two_admins: Path) -> None:
    if postgres_url() is None:
        pytest.skip(POSTGRES_SKIP_REASON + " (two replicas need one shared PostgreSQL database)")
    async with (
        database_url("postgres", tmp_path) as url,
        running_stack(url, two_admins) as stack,
        AsyncExitStack() as rs,
    ):
        other = await Runtime.build(settings_for(stack.emulator, url, two_admins))
        rs.push_async_callback(other.stop)
        await other.start(host="127.0.0.1", port=0)
        assert other.policies.version(ACME) == 1
        await hitl(stack, ADA, VALID)
        await approve_in_dm(stack, BEN, 1)

        async def served() -> bool:
            return other.policies.version(ACME) == 2

        await eventually(served, what="the other replica to serve version 2", timeout=5)
        _, body = await Agent(other.url, stack.keys[ACME], stack.http).ask("process_refund", refund(550, "b"))
        assert (body["status"], body["decision"]["policy_version"]) == ("auto_approved", 2)


async def test_a_new_action_added_from_slack_is_reviewed_by_its_pool(db_url: str, two_admins: Path) -> None:
    async with running_stack(db_url, two_admins) as stack:
        # Before: an action the manifest does not name goes to the default pool (support_tier_1).
        answer = await hitl(stack, BEN, "policy add issue_voucher pool support_tier_2")
        assert "Policy change #1 proposed" in answer and "new action `issue_voucher`" in answer
        exists = await hitl(stack, ADA, "policy add process_refund pool support_tier_2")
        assert "already an action" in exists
        assert stack.runtime.metrics.action_label(ACME, "issue_voucher") == "other"
        assert "version 2" in await hitl(stack, ADA, "policy approve 1")  # by command, not the DM's button
        # Served here at once, and counted under its own name in the metrics (not as "other").
        assert stack.runtime.metrics.action_label(ACME, "issue_voucher") == "issue_voucher"
        _, body = await stack.agent().ask("issue_voucher", {"amount": 5})
        assert await recorded(stack, body) == ("pending", 2)
        await stack.slack.wait_for_message(TIER2, text=body["id"])
        assert "issue_voucher" in await hitl(stack, ADA, "policy")


async def test_a_version_another_replica_records_is_served_within_seconds(db_url: str, two_admins: Path) -> None:
    """What the two-replica test shows on PostgreSQL, on either database: a version written by someone else
    (as another replica applying an approved change does) is picked up by this one's follower."""
    async with running_stack(db_url, two_admins) as stack:
        [first] = await versions(stack)
        text = first.manifest.replace("if: amount > 500", "if: amount > 540")
        async with uow(stack.runtime.sessionmaker) as tx:
            new = NewVersion(ACME, text, source="slack", proposed_by=ADA, approved_by=BEN)
            assert await tx.policy_versions.append(new, number=2, now=stack.runtime.clock.now())
        await serving(stack, 2)
        _, body = await stack.agent().ask("process_refund", refund(530, "followed"))
        assert (body["status"], body["decision"]["policy_version"]) == ("auto_approved", 2)


async def test_a_pool_chain_is_set_first_to_last(db_url: str, two_admins: Path) -> None:
    """`chain` sets the first pool, its fallback and escalation at once; a shorter chain drops the rest."""
    async with running_stack(db_url, two_admins) as stack:
        bad = await hitl(stack, ADA, "policy set close_account chain a > b > c > d")
        assert "one to three pools" in bad
        answer = await hitl(stack, ADA, "policy set close_account chain support_tier_2 &gt; support_tier_1")
        assert "`close_account`: chain support_tier_2 > support_tier_1" in answer, answer
        assert "-    reviewer: support_tier_2" in answer and "+    reviewer_pool: support_tier_2" in answer
        assert "+    fallback: support_tier_1" in answer and "-    escalate_to: senior_support" in answer
        assert "version 2" in await approve_in_dm(stack, BEN, 1)
        _, body = await stack.agent().ask("close_account", {"account": "A-1"})
        assert await recorded(stack, body) == ("pending", 2)
        await stack.slack.wait_for_message(TIER2, text=body["id"])
        chain = await hitl(stack, ADA, "policy close_account")
        assert "Chain: `support_tier_2` (10m) → `support_tier_1` (10m)" in chain, chain


async def test_the_simulation_on_a_change_compares_it_with_the_version_it_edits(db_url: str, two_admins: Path) -> None:
    """Requests reviewed under an earlier version are not counted as this change's doing: after threshold 600
    is in force, a timeout change reports no card fewer for the 550 refunds version 1 sent to review."""
    async with running_stack(db_url, two_admins) as stack:
        for n in range(3):
            _, body = await stack.agent().ask("process_refund", refund(550, f"before-{n}"))
            assert body["status"] == "pending"
        assert "3 fewer cards" in await hitl(stack, ADA, VALID)  # 550 < 600: against version 1, three fewer
        await approve_in_dm(stack, BEN, 1)
        answer = await hitl(stack, ADA, "policy set close_account timeout 20m")
        assert "Policy change #2 proposed" in answer and "over the last 7 days: as many cards" in answer, answer


async def test_a_policy_editor_outside_every_pool_proposes_and_approves(db_url: str, two_admins: Path) -> None:
    """The domain expert who knows the threshold need not review anything: named in policy_editors, they
    change the policy with /hitl like an admin (Hal reviews in platform only)."""
    path = two_admins / f"{ACME}.yaml"
    path.write_text(path.read_text().replace("policy_editors: [U0BEN]", f"policy_editors: [U0BEN, {HAL}]"))
    async with running_stack(db_url, two_admins) as stack:
        proposed = await hitl(stack, HAL, f"{ACME} {VALID}")
        assert "Policy change #1 proposed" in proposed, proposed
        await hitl(stack, ADA, "policy set close_account timeout 20m")
        approved = await hitl(stack, HAL, f"{ACME} policy approve 2")
        assert "version 2 of acme-support is in force" in approved, approved


async def test_an_approval_supersedes_the_other_changes_made_against_the_same_version(
    db_url: str, two_admins: Path
) -> None:
    path = two_admins / f"{ACME}.yaml"
    path.write_text(path.read_text().replace("policy_editors: [U0BEN]", f"policy_editors: [U0BEN, {CHLOE}]"))
    async with running_stack(db_url, two_admins) as stack:
        assert "#1 proposed" in await hitl(stack, ADA, VALID)
        again = await hitl(stack, ADA, VALID)  # a double submit, or the same idea twice
        assert "already proposed as #1" in again and "waits for approval" in again
        assert "#2 proposed" in await hitl(stack, ADA, "policy set close_account timeout 20m")
        assert "version 2" in await approve_in_dm(stack, BEN, 1)
        # #2 was made against version 1: superseded at once, its proposer told, its approval refused.
        assert [(c.id, c.status) for c in await changes(stack)] == [(1, "approved"), (2, "superseded")]

        def told() -> str | None:
            texts = [m.text for m in stack.slack.messages(dm(stack, ADA))]
            return next((t for t in texts if "#2" in t and "superseded" in t), None)

        assert "propose it again" in await stack.slack.wait_until(told, what="Ada told of #2")
        # Chloe, asked to approve #2, hears there is nothing left to approve.
        await stack.slack.wait_for_message(dm(stack, CHLOE), text="#2 for acme-support")
        assert any("superseded by version 2: there is nothing to approve" in m.text
                   for m in stack.slack.messages(dm(stack, CHLOE)))  # fmt: skip
        assert "already superseded" in await hitl(stack, BEN, "policy approve 2")


async def test_hitl_audit_says_what_each_policy_change_did(db_url: str, two_admins: Path) -> None:
    """Who set the threshold to what, and why a change was refused, read from the audit trail in Slack."""
    async with running_stack(db_url, two_admins) as stack:
        await hitl(stack, ADA, VALID)
        await hitl(stack, ADA, "policy approve 1")  # her own: refused
        await approve_in_dm(stack, BEN, 1)

        async def trail() -> str | None:
            text = await hitl(stack, ADA, "audit")
            return text if "policy.change.approved" in text else None

        text = await eventually(trail, what="the approval in /hitl audit")
        assert "#1 `process_refund`: threshold 600 → version 2" in text, text
        assert "#1 `process_refund`: threshold 600" in text.split("policy.change.proposed", 1)[1][:200]
        assert "You proposed change #1" in text and "version 2 (slack): #1" in text
        # Each records the version in force; the approval also the version it made.
        found = {e.kind: e.payload for e in await events(stack)}
        assert found["policy.change.refused"]["policy_version"] == 1
        approved = found["policy.change.approved"]
        assert (approved["policy_version"], approved["applied_version"]) == (1, 2)  # approved under 1, made 2
