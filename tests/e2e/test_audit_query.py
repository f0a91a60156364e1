"""Exploring the audit trail by action, person, outcome and time: ``countersign audit query``."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from typing import Any

import pytest
from sqlalchemy import select

from bot.cli import main
from bot.ids import ActionId
from bot.sandbox.workspace import Ephemeral
from store.audit import AuditFilter, query_audit
from store.models import AuditHead
from store.uow import uow
from tests.e2e.conftest import BEN, OUTSIDER, TIER1, Stack, eventually, refund


async def countersign(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The CLI in-process (on a thread: it runs its own event loop), with what it printed."""
    capsys.readouterr()
    code = await asyncio.to_thread(main, list(args))
    out, err = capsys.readouterr()
    return code, out, err


async def a_morning(stack: Stack) -> dict[str, str]:
    """Three refunds, of which Ben approves one; and an account closure."""
    ids = {}
    for order in ("R1", "R2", "R3"):
        _, asked = await stack.agent().ask("process_refund", refund(order))
        ids[order] = asked["id"]
        await stack.slack.wait_for_message(TIER1, text=order, action_id=ActionId.APPROVE)
    _, closing = await stack.agent().ask("close_account", {"customer_id": 7})
    ids["close"] = closing["id"]
    await stack.slack.click(BEN, channel=TIER1, action_id=ActionId.APPROVE, text="R1")
    _, got = await stack.agent().call("GET", f"/v1/requests/{ids['R1']}", wait=5)
    assert got["status"] == "approved"
    return ids


def lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


async def test_audit_query_filters_by_person_action_outcome_and_time(
    stack: Stack, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = await a_morning(stack)
    url = ["--database-url", db_url]
    assert (await countersign(capsys, "audit", "seal", *url))[0] == 0

    code, out, err = await countersign(capsys, "audit", "query", "acme-support", "--by", BEN, *url)
    assert code == 0, err
    bens = lines(out)
    assert bens and {e["actor"] for e in bens} == {BEN}
    assert ("vote.cast", ids["R1"]) in {(e["kind"], e["request_id"]) for e in bens}
    assert err.strip() == f"{len(bens)} events"

    code, out, _ = await countersign(
        capsys, "audit", "query", "acme-support", "--action", "process_refund", "--outcome", "approved", *url
    )
    approved = lines(out)
    assert {e["request_id"] for e in approved} == {ids["R1"]}
    assert {"request.created", "vote.cast"} <= {e["kind"] for e in approved}
    seqs = [e["seq"] for e in approved]
    assert seqs == sorted(seqs, reverse=True)  # newest first

    code, out, _ = await countersign(capsys, "audit", "query", "acme-support", "--action", "close_account", *url)
    assert {e["request_id"] for e in lines(out)} == {ids["close"]}

    code, out, _ = await countersign(
        capsys, "audit", "query", "acme-support", "--since", "1h", "--limit", "2", "--format", "csv", *url
    )
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 2 and int(rows[0]["seq"]) > int(rows[1]["seq"])

    code, out, _ = await countersign(capsys, "audit", "query", "acme-support", "--since", "2999-01-01", *url)
    assert (code, out) == (0, "")


async def test_audit_query_refuses_an_unknown_tenant_and_a_bad_since(
    stack: Stack, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = ["--database-url", db_url]
    code, _, err = await countersign(capsys, "audit", "query", "initech", *url)
    assert code == 2 and "unknown tenant 'initech'" in err
    code, _, err = await countersign(capsys, "audit", "query", "acme-support", "--since", "last tuesday", *url)
    assert code == 2 and "--since: `since:last tuesday` is neither a duration" in err


def seqs(ephemeral: Ephemeral) -> list[int]:
    return [int(n) for n in re.findall(r"`#(\d+)`", json.dumps(ephemeral.blocks))]


async def test_hitl_audit_pages_through_the_trail_newest_first(stack: Stack) -> None:
    for n in range(24):  # small refunds: auto-approved, one event each
        await stack.agent().ask("process_refund", {**refund(f"S{n}"), "amount": 40})
    await stack.agent().ask("close_account", {"customer_id": 1})
    await sealed_for(stack, "process_refund", 24)

    await stack.slack.command(BEN, "/hitl audit action:process_refund")
    first = await stack.slack.wait_for_ephemeral(BEN, text="Audit trail of acme-support")
    page = seqs(first)
    assert len(page) == 20 and page == sorted(page, reverse=True)
    assert "action:process_refund" in json.dumps(first.blocks)

    await stack.slack.click(BEN, channel="general", action_id=ActionId.AUDIT_OLDER, message_ts=first.ts)
    await stack.slack.wait_until(lambda: seqs(first) and max(seqs(first)) < min(page), what="the older page")
    older = seqs(first)  # the same message, replaced
    assert len(older) == 4 and ActionId.AUDIT_OLDER.value not in json.dumps(first.blocks)  # the start of the trail
    assert len(stack.slack.ephemerals(BEN, "general")) == 1


async def test_hitl_audit_refuses_outsiders_and_unknown_filters(stack: Stack) -> None:
    await stack.slack.command(OUTSIDER, "/hitl audit")
    await stack.slack.wait_for_ephemeral(OUTSIDER, text="not an admin or a reviewer")
    await stack.slack.command(BEN, "/hitl audit color:red")
    refused = await stack.slack.wait_for_ephemeral(BEN, text="color:red")
    assert "/hitl audit [action:" in json.dumps(refused.blocks)


async def sealed(stack: Stack, at_least: int) -> None:
    async def probe() -> bool:
        async with uow(stack.runtime.sessionmaker, read_only=True) as tx:
            head = await tx.session.scalar(select(AuditHead.seq).where(AuditHead.tenant == "acme-support"))
        return (head or 0) >= at_least

    await eventually(probe, what=f"{at_least} events sealed")


async def test_app_home_opens_the_trail_in_a_modal_and_pages_it(stack: Stack) -> None:
    for n in range(22):
        await stack.agent().ask("process_refund", {**refund(f"H{n}"), "amount": 40})
    await sealed(stack, 22)
    await stack.slack.open_home(BEN)
    await stack.slack.wait_for_home(BEN, text="Audit trail: acme-support")
    await stack.slack.click_in_view(BEN, action_id=f"{ActionId.AUDIT_OPEN.value}:0", home=True)
    modal = await stack.slack.wait_for_modal(BEN)
    page = [int(n) for n in re.findall(r"`#(\d+)`", json.dumps(modal.data))]
    assert len(page) == 20 and page == sorted(page, reverse=True)

    await stack.slack.click_in_view(BEN, action_id=ActionId.AUDIT_OLDER.value)

    def older() -> list[int] | None:
        view = stack.slack.modal(BEN)
        shown = [int(n) for n in re.findall(r"`#(\d+)`", json.dumps(view.data))] if view else []
        return shown if shown and max(shown) < min(page) else None

    # Every older event of the chain, down to its first: fewer than a page.
    assert await stack.slack.wait_until(older, what="the older page in the modal") == list(range(min(page) - 1, 0, -1))


async def sealed_for(stack: Stack, action: str, count: int) -> None:
    """Until ``count`` events of ``action``'s requests are sealed (the head also counts other events)."""

    async def probe() -> bool:
        async with uow(stack.runtime.sessionmaker, read_only=True) as tx:
            page = await query_audit(tx.session, "acme-support", AuditFilter(action=action), limit=count)
        return len(page.events) >= count

    await eventually(probe, what=f"{count} events of {action} sealed")
