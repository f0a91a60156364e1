"""/hitl end to end through the emulator: every verb, permissions, tenants, mentions, "payload"."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from bot.ids import ActionId
from store.models import Tenant
from store.uow import uow
from tests.e2e.conftest import ADA, BEN, CHLOE, DEV, ERIN, HAL, OUTSIDER, TIER1, Stack
from tests.hitl.helpers import hitl

REFUND = {"amount": 620, "currency": "EUR", "customer": {"name": "Ana", "email": "ana@example.com"},
          "card_number": "4111111111111111", "order_id": "A-9"}  # fmt: skip


async def test_reading_verbs_help_pools_policy_whocan_pending_show_stats(stack: Stack) -> None:
    text = await hitl(stack, BEN, "help")
    assert "/hitl pool away <pool>" in text and "Your tenant: `acme-support`" in text

    text = await hitl(stack, BEN, "pools")
    assert "support_tier_1" in text and "<#C0SUPPORT1>" in text and "<@U0CHLOE>" in text
    assert "platform_team" not in text  # another tenant's pools never show

    text = await hitl(stack, CHLOE, "pool show support_tier_2")
    assert "<@U0DEV>, <@U0ERIN>" in text

    text = await hitl(stack, BEN, "policy")
    assert "`process_refund`: asks when `amount > 500` → `support_tier_1`, 1 approval, sync" in text
    assert "`lookup_order`: never asks" in text and "sampled (10%)" in text
    text = await hitl(stack, BEN, "policy process_refund")
    assert "Chain: `support_tier_1` (5m) → `support_tier_2` (5m) → `senior_support` (5m)" in text
    assert "If nobody decides in time: reject" in text and "`card_number`, `customer.email`" in text
    text = await hitl(stack, BEN, "policy send_goodwill_credit")
    assert "Undo on rejection: `revoke_credit`" in text and "at most 3 undecided per workflow" in text
    text = await hitl(stack, BEN, "policy drop_tables")
    assert "not in `acme-support`'s manifest" in text and "reviewed by `support_tier_1`" in text

    # Dry runs: outcome, pools (and skipped ones, with why), people, approvals, mode.
    text = await hitl(stack, BEN, "whocan process_refund amount=620")
    assert "Needs review" in text and "`amount > 500` is true" in text
    assert "First `support_tier_1` in <#C0SUPPORT1> for 5m: <@U0ADA>, <@U0BEN>, <@U0CHLOE>" in text
    assert "Then `senior_support`" in text and "Needs 1 approval; sync" in text
    text = await hitl(stack, BEN, "whocan process_refund amount=120")
    assert "Auto-approved" in text and "is false" in text
    text = await hitl(stack, BEN, "whocan close_account customer_id=4411 on_behalf_of=<@U0DEV|dev>")
    assert "skipped `support_tier_2`: it has 1 eligible member(s) for 2 approval(s)" in text
    assert (
        "First `senior_support`" in text and "Needs 2 approvals" in text and "<@U0DEV> is the person acted for" in text
    )
    text = await hitl(stack, BEN, 'whocan send_goodwill_credit amount=40 customer.tier="enterprise"')
    assert "Auto-approved" in text

    # A real request: pending, shown with its trail, decided, counted.
    _, body = await stack.agent().ask("process_refund", REFUND, context={"on_behalf_of": CHLOE})
    request_id = body["id"]
    text = await hitl(stack, BEN, "pending")
    assert "Refund €620 to Ana" in text and request_id in text and "you can vote on this one" in text
    text = await hitl(stack, CHLOE, "pending support_tier_1")
    assert request_id in text and "on behalf of <@U0CHLOE>" in text and "you can vote" not in text
    text = await hitl(stack, BEN, "pending support_tier_2")
    assert "Nothing is waiting" in text
    text = await hitl(stack, BEN, f"show {request_id}")
    assert "Pending" in text and "request.created" in text and "Approvals *0 of 1*" in text
    assert "4111111111111111" not in text

    await stack.slack.click(BEN, channel=TIER1, action_id=ActionId.APPROVE, text="Refund")
    _, done = await stack.agent().call("GET", f"/v1/requests/{request_id}", wait=5)
    assert done["status"] == "approved"
    text = await hitl(stack, ADA, f"show {request_id}")
    assert "Approved" in text and "<@U0BEN> approved" in text and "vote.cast <@U0BEN>" in text
    assert "request.decided" in text

    text = await hitl(stack, ADA, "stats")
    assert "support_tier_1* · 1 request(s)" in text and "1 / 0 / 0" in text
    assert "All requests: 1 approved" in text
    text = await hitl(stack, ADA, "stats 24h")
    assert "the last 24h" in text
    text = await hitl(stack, ADA, "stats forever")
    assert "not a window" in text and "Usage: `/hitl stats" in text
    text = await hitl(stack, ADA, "show req_nope")
    assert "has no request `req_nope`" in text


async def test_pool_changes_need_an_admin_members_mark_themselves_and_history_keeps_versions(stack: Stack) -> None:
    text = await hitl(stack, BEN, "pool add support_tier_1 <@U0DEV|dev>")
    assert "Only `acme-support`'s admins (<@U0ADA>) can change pools" in text
    text = await hitl(stack, BEN, "pool create night")
    assert "Only `acme-support`'s admins" in text
    text = await hitl(stack, BEN, "pool away support_tier_1 <@U0CHLOE|chloe>")
    assert "Only `acme-support`'s admins can mark other people away" in text
    text = await hitl(stack, DEV, "pool away support_tier_1")
    assert "You are not a member of `support_tier_1`" in text

    before_away = datetime.now(UTC)
    await asyncio.sleep(0.01)
    text = await hitl(stack, BEN, "pool away support_tier_1")
    assert "Marked you away in `support_tier_1`" in text and "config version" in text
    text = await hitl(stack, BEN, "pool away support_tier_1")
    assert "Already away: <@U0BEN>" in text
    text = await hitl(stack, ADA, "pools")
    assert "away: <@U0BEN>" in text

    # Admins change pools; the word "payload" anywhere in the command still reaches the bot.
    text = await hitl(stack, ADA, "pool add payload_team <@U0DEV|dev>")
    assert "has no pool `payload_team`" in text
    text = await hitl(stack, ADA, "pool create payload_team <#C0SUPPORT2|support2> <@U0DEV|payload-dev>")
    assert "Created pool `payload_team` in <#C0SUPPORT2> with <@U0DEV>" in text
    text = await hitl(stack, ADA, "pool create payload_team")
    assert "already has a pool `payload_team`" in text
    text = await hitl(stack, ADA, "pool add payload_team <@U0ERIN|erin> <@U0DEV|dev>")
    assert "Added <@U0ERIN> to `payload_team`" in text and "Already members: <@U0DEV>" in text
    text = await hitl(stack, ADA, "pool remove payload_team <@U0DEV|dev> <@U0BEN>")
    assert "Removed <@U0DEV> from `payload_team`" in text and "Not members: <@U0BEN>" in text
    text = await hitl(stack, ADA, "pool channel payload_team none")
    assert "now posts to no channel" in text
    text = await hitl(stack, ADA, "pools")
    assert "*payload_team* · _no channel_ · 1 member(s)" in text and "cannot take requests: it has no channel" in text
    text = await hitl(stack, ADA, "pool channel payload_team <#C0SUPPORT1|support1>")
    assert "now posts to <#C0SUPPORT1>" in text
    text = await hitl(stack, ADA, "pool back support_tier_1 <@U0BEN|ben>")
    assert "Marked <@U0BEN> back in `support_tier_1`" in text
    text = await hitl(stack, ADA, "whocan process_refund amount=620 note=payload")
    assert "Needs review" in text

    # Typed as a person types them: Slack (and the emulator) escape the command's @mentions and #channels.
    text = await hitl(stack, ADA, "pool remove payload_team @erin")
    assert "Removed <@U0ERIN> from `payload_team`" in text
    text = await hitl(stack, ADA, "pool add payload_team @erin @nobody-here")
    assert "`@nobody-here` is not a person in this workspace" in text and "pick them from Slack's @ list" in text
    text = await hitl(stack, ADA, "pool add payload_team @erin")
    assert "Added <@U0ERIN> to `payload_team`" in text

    # User groups are expanded to their members through Slack.
    from bot.sandbox.workspace import Usergroup

    stack.emulator.workspace.usergroups["S0NIGHT"] = Usergroup("S0NIGHT", "night", [CHLOE, ERIN])
    text = await hitl(stack, ADA, "pool add payload_team <!subteam^S0NIGHT|@night>")
    assert "Added <@U0CHLOE> to `payload_team`" in text and "Already members: <@U0ERIN>" in text

    text = await hitl(stack, BEN, "history")
    lines = [line for line in text.splitlines() if line.startswith("*v")]
    assert "loaded pools `senior_support`, `support_tier_1`, `support_tier_2` from the manifest" in lines[-1]
    assert lines[-1].startswith("*v1*") and "manifest" in lines[-1]
    assert "<@U0BEN> marked <@U0BEN> away in `support_tier_1`" in text
    assert "<@U0ADA> created `payload_team` in <#C0SUPPORT2> with <@U0DEV>" in text
    assert "<@U0ADA> removed <@U0DEV> from `payload_team`" in text
    assert "pointed `payload_team` at _no channel_" in text
    assert lines[0].startswith("*v11*") and "added <@U0CHLOE> to `payload_team`" in lines[0]
    async with uow(stack.runtime.sessionmaker, read_only=True) as tx:
        tenant = await tx.session.get(Tenant, "acme-support")
        assert tenant is not None and tenant.config_version == 11
        kinds = [r.kind for r in await tx.audit.recent("acme-support", limit=20) if r.kind.startswith("config.")]
    assert kinds.count("config.pool.add") == 3 and "config.pool.create" in kinds and "config.pool.away" in kinds

    # The pool as it was: before Ben went away, and before payload_team existed.
    text = await hitl(stack, ADA, f"pool show support_tier_1 at {before_away.isoformat()}")
    assert "As it was at" in text and "(config version 1)" in text and "away" not in text.split("As it was")[1]
    text = await hitl(stack, ADA, f"pool show payload_team at {before_away.isoformat()}")
    assert "had no pool `payload_team`" in text
    text = await hitl(stack, ADA, "pool show payload_team")
    assert "<@U0CHLOE>, <@U0ERIN>" in text and "<#C0SUPPORT1>" in text


async def test_tenant_prefix_isolation_and_outsiders(stack: Stack) -> None:
    text = await hitl(stack, OUTSIDER, "pools")
    assert "not an admin or a reviewer of any team" in text
    text = await hitl(stack, OUTSIDER, "help")
    assert "not part of any tenant yet" in text
    # A tenant one is not part of reads exactly like a tenant that does not exist.
    text = await hitl(stack, BEN, "platform pools")
    assert "You are not part of a tenant named `platform`. Yours: `acme-support`." in text
    text = await hitl(stack, BEN, "nosuch pools")
    assert "You are not part of a tenant named `nosuch`. Yours: `acme-support`." in text
    text = await hitl(stack, BEN, "acme-support pools")
    assert "support_tier_1" in text

    _, platform = await stack.agent("platform").ask(
        "rotate_credentials", {"service": "billing", "amount": 2, "secret": "x"}
    )
    text = await hitl(stack, BEN, f"show {platform['id']}")
    assert "has no request" in text

    # Hal (platform's admin) adds Ada: now she belongs to two tenants and must name one.
    text = await hitl(stack, HAL, "pool add platform_team <@U0ADA|ada>")
    assert "Added <@U0ADA>" in text
    text = await hitl(stack, ADA, "pools")
    assert "You belong to several tenants (`acme-support`, `platform`)" in text and "/hitl acme-support pools" in text
    text = await hitl(stack, ADA, "platform pools")
    assert "Reviewer pools of platform" in text and "security_team" in text and "support_tier_1" not in text
    text = await hitl(stack, ADA, "platform pool add platform_team <@U0BEN>")
    assert "Only `platform`'s admins (<@U0HAL>)" in text
    text = await hitl(stack, ADA, "acme-support pool add support_tier_2 <@U0BEN>")
    assert "Added <@U0BEN> to `support_tier_2`" in text
    text = await hitl(stack, ADA, "help")
    assert "several tenants" in text and "You are an admin of `acme-support`" in text
    # A request id names its tenant: no prefix needed.
    text = await hitl(stack, ADA, f"show {platform['id']}")
    assert "`rotate_credentials` · *platform*" in text and "hunter" not in text
    text = await hitl(stack, ERIN, "platform history")
    assert "not part of a tenant named `platform`" in text


async def test_stats_count_outcomes_latency_breaches_and_escalations(stack: Stack) -> None:
    from datetime import timedelta

    from policy.types import Mode, Status
    from store.recording import NewRequest

    now = datetime.now(UTC)
    # (first pool, minutes to decide, final status, deadline in minutes, escalated)
    shapes = [
        ("support_tier_1", 2, Status.APPROVED, 5, False),
        ("support_tier_1", 4, Status.REJECTED, 5, False),
        ("support_tier_1", 9, Status.APPROVED, 5, True),  # decided after the first deadline: a breach
        ("support_tier_1", 15, Status.EXPIRED, 5, True),  # timed out: a breach
        ("support_tier_2", 1, Status.APPROVED, 10, False),
    ]
    async with uow(stack.runtime.sessionmaker) as tx:
        for i, (pool, took, status, deadline, escalated) in enumerate(shapes):
            asked = now - timedelta(hours=1)
            new = NewRequest(
                tenant="acme-support", action="process_refund", params={"i": i}, status=Status.PENDING, mode=Mode.SYNC
            )
            row, _ = await tx.requests.create(new, now=asked)
            await tx.stages.open_stage(
                row.id, 0, pool=pool, channel=None, now=asked, deadline_at=asked + timedelta(minutes=deadline)
            )
            version = row.version
            if escalated:
                await tx.stages.open_stage(
                    row.id, 1, pool="senior_support", channel=None, now=asked, deadline_at=asked + timedelta(minutes=30)
                )
                assert await tx.requests.transition(
                    row.id,
                    expected_status=Status.PENDING,
                    expected_version=version,
                    new_status=Status.PENDING,
                    now=asked,
                    stage=1,
                )
                version += 1
            outcome = Status.REJECTED if status is Status.EXPIRED else status
            assert await tx.requests.decide(
                row.id,
                expected_version=version,
                outcome=outcome,
                status=status,
                now=asked + timedelta(minutes=took),
                by=BEN,
            )
        old = NewRequest(
            tenant="acme-support", action="process_refund", params={"old": 1}, status=Status.PENDING, mode=Mode.SYNC
        )
        row, _ = await tx.requests.create(old, now=now - timedelta(days=8))  # outside the default window
        await tx.stages.open_stage(
            row.id, 0, pool="support_tier_1", channel=None, now=now - timedelta(days=8), deadline_at=now
        )

    text = await hitl(stack, ADA, "stats")
    tier1 = text.split("*support_tier_1* · ")[1].split("*support_tier_2*")[0]
    assert tier1.startswith("4 request(s)")
    assert "2 / 1 / 1" in tier1  # approved / rejected / timed out
    assert "4m / 9m" in tier1  # decision time p50 / p95 (nearest rank) over 2, 4, 9 minutes
    assert "*SLA breaches*\n2" in tier1 and "*Escalations*\n2" in tier1
    assert "*support_tier_2* · 1 request(s)" in text
    text = await hitl(stack, ADA, "stats 30m")
    assert "No reviewed requests in this window" in text
    text = await hitl(stack, ADA, "stats 9d")
    assert "*support_tier_1* · 5 request(s)" in text and "Pending*\n1" in text


async def test_a_mistyped_command_is_said_to_be_unknown_with_the_likely_one(stack: Stack) -> None:
    text = await hitl(stack, BEN, "pols")
    assert "I don't know `pols`" in text and "Did you mean `/hitl pools`?" in text
    text = await hitl(stack, OUTSIDER, "globex")  # a tenant that is not theirs reads as any unknown word
    assert "I don't know `globex`: it is not a command, nor a tenant of yours. See `/hitl help`." in text
    assert "I don't know" not in await hitl(stack, BEN, "acme-support")  # their own tenant alone: its help
