"""What an on-call reads off /metrics as the loop runs: HTTP, request → card, click → ack, decision →
agent, Slack calls, pending ages, per-reviewer votes and background task restarts, each moved by
driving the real service (agent API, Slack emulator, database) and read back through /metrics."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from bot.ids import ActionId, CallbackId
from bot.metrics import Metrics
from tests.e2e.conftest import BEN, CHLOE, TIER1, Stack, callback_endpoint, eventually, refund
from tests.ops.exposition import exposed_names, label_values, referenced_metrics, scrape, value
from tests.outbox.outage import outage

TENANT = "acme-support"
CREDIT = {"amount": 40, "customer": {"tier": "standard"}}  # async: its decision goes to the callback


async def _long_poll(stack: Stack, request_id: str) -> asyncio.Task[tuple[int, Any]]:
    """An agent's long poll on ``request_id``, returned once it is waiting for the decision."""
    poll = asyncio.create_task(stack.agent().call("GET", f"/v1/requests/{request_id}", wait=20))
    bus = stack.runtime.transitions.signals.decisions

    async def waiting() -> bool:
        return request_id in bus.watched()

    await eventually(waiting, what="the long poll waiting")
    return poll


async def test_the_approval_loop_moves_every_latency_and_the_dashboard_reads_only_real_metrics(stack: Stack) -> None:
    status, body = await stack.agent().ask("process_refund", refund("M-1"))
    assert status == 202
    poll = await _long_poll(stack, body["id"])
    await stack.slack.wait_for_message(TIER1, action_id=ActionId.APPROVE)

    waiting = await scrape(stack)
    oldest = value(waiting, "countersign_pending_oldest_age_seconds", tenant=TENANT, pool="support_tier_1")
    deadline = value(waiting, "countersign_pending_next_deadline_seconds", tenant=TENANT, pool="support_tier_1")
    assert oldest is not None and 0 <= oldest < 60
    assert deadline is not None and 240 < deadline <= 300  # the manifest's 5 minute stage, barely started
    card = value(waiting, "countersign_request_to_card_seconds_count", tenant=TENANT)
    assert card == 1
    assert value(waiting, "countersign_slack_api_call_duration_seconds_count", method="chat.postMessage") == 1

    await stack.slack.click(BEN, channel=TIER1, action_id=ActionId.APPROVE)
    status, decided = await poll
    assert (status, decided["status"]) == (200, "approved")
    # A route no one serves, with an id in it: counted under one label, the path itself nowhere.
    async with stack.http.get(stack.url + "/v1/requests/M-1-secret/nothing") as resp:
        assert resp.status == 404

    text = await scrape(stack)
    assert value(text, "countersign_pending_oldest_age_seconds", tenant=TENANT, pool="support_tier_1") is None
    assert value(text, "countersign_click_to_ack_seconds_count", action=ActionId.APPROVE.value) == 1
    assert value(text, "countersign_decision_to_agent_seconds_count", tenant=TENANT, via="long_poll") == 1
    vote = {"tenant": TENANT, "pool": "support_tier_1", "reviewer": BEN}
    assert value(text, "countersign_reviewer_votes_total", **vote, choice="approve") == 1
    assert value(text, "countersign_reviewer_vote_seconds_count", **vote) == 1
    http = "countersign_http_request_duration_seconds_count"
    assert value(text, http, route="/v1/requests", method="POST", status="202") == 1
    assert value(text, http, route="/v1/requests/{id}", method="GET", status="200") == 1
    assert value(text, http, route="/slack/events", method="POST", status="200") == 1
    assert value(text, http, route="unmatched", method="GET", status="404") == 1
    assert label_values(text, http, "route") <= {
        "/v1/requests",
        "/v1/requests/{id}",
        "/slack/events",
        "/metrics",
        "unmatched",
    }
    assert body["id"] not in text and "M-1-secret" not in text  # labels stay bounded

    # Every metric the alert rules and the Grafana dashboard read is one the service exposes.
    missing = referenced_metrics() - exposed_names(text)
    assert missing == set(), f"alerts.yaml or countersign.json read metrics /metrics does not have: {missing}"


async def test_a_rejection_through_the_modal_reaches_the_agents_callback(stack: Stack) -> None:
    async with callback_endpoint() as endpoint:
        await stack.agent().ask("send_goodwill_credit", CREDIT, callback_url=endpoint.url)
        await stack.slack.wait_for_message(TIER1, action_id=ActionId.REJECT)
        await stack.reject(CHLOE, "a credit was sent last week")
        await endpoint.wait_for(1)

    async def told() -> float | None:
        return value(await scrape(stack), "countersign_decision_to_agent_seconds_count", tenant=TENANT, via="callback")

    assert await eventually(told, what="the callback timed") == 1
    text = await scrape(stack)
    # Bolt's listener opened the modal with its own client: the call is timed like the outbox's.
    assert value(text, "countersign_slack_api_call_duration_seconds_count", method="views.open") == 1
    assert value(text, "countersign_click_to_ack_seconds_count", action=ActionId.REJECT.value) == 1
    assert value(text, "countersign_click_to_ack_seconds_count", action=CallbackId.REJECT_REASON.value) == 1
    assert value(text, "countersign_reviewer_votes_total", tenant=TENANT, reviewer=CHLOE, choice="reject") == 1
    assert value(text, "countersign_decision_to_agent_seconds_count", via="long_poll") is None


async def test_slack_errors_are_counted_by_method_for_the_outbox_and_for_bolts_listeners(stack: Stack) -> None:
    stack.slack.fail_next("chat.postMessage", error="ratelimited", status=429, retry_after=1)
    await stack.agent().ask("process_refund", refund("M-2"))
    await stack.slack.wait_for_message(TIER1, action_id=ActionId.REJECT)  # posted once the 429 was waited out
    stack.slack.fail_next("views.open", error="expired_trigger_id")
    await stack.slack.click(CHLOE, channel=TIER1, action_id=ActionId.REJECT)
    await stack.slack.wait_for_call("views.open", predicate=lambda c: c.response.get("error") == "expired_trigger_id")

    async def counted() -> float | None:
        text = await scrape(stack)
        return value(text, "countersign_slack_api_errors_total", method="views.open", error="expired_trigger_id")

    assert await eventually(counted, what="the listener's Slack error counted") == 1
    text = await scrape(stack)
    errors = "countersign_slack_api_errors_total"
    assert value(text, errors, method="chat.postMessage", error="ratelimited") == 1  # once, not per layer
    assert value(text, "countersign_slack_api_call_duration_seconds_count", method="chat.postMessage") == 2


async def test_a_crashing_background_task_shows_its_restarts(stack: Stack) -> None:
    _, body = await stack.agent().ask("process_refund", refund("M-3"))
    poll = await _long_poll(stack, body["id"])  # the decision watcher reads the database for it
    supervisor = stack.runtime.supervisor
    before = value(await scrape(stack), "countersign_task_restarts_total", task="decision-watch")
    assert before == 0
    assert value(await scrape(stack), "countersign_task_up", task="decision-watch") == 1

    async def restarted() -> bool:
        return supervisor.restarts("decision-watch") >= 1

    with outage(stack.runtime.engine) as database:
        database.down = True
        await eventually(restarted, what="the decision watcher crashing")
        database.down = False
    poll.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await poll

    text = await scrape(stack)
    restarts = value(text, "countersign_task_restarts_total", task="decision-watch")
    assert restarts is not None and restarts >= 1
    assert value(text, "countersign_task_up", task="outbox-worker") == 1


def test_only_pool_members_get_a_reviewer_label_of_their_own() -> None:
    metrics = Metrics()
    metrics.reviewed(TENANT, "support_tier_1", BEN, {BEN}, "approve", 30)
    metrics.reviewed(TENANT, "support_tier_1", "U0GONE", {BEN}, "approve", 90)
    metrics.http_request("unmatched", "BREW", 404, 0.01)
    text = metrics.exposition().decode()
    assert label_values(text, "countersign_reviewer_votes_total", "reviewer") == {BEN, "other"}
    assert "U0GONE" not in text
    assert label_values(text, "countersign_http_request_duration_seconds_count", "method") == {"other"}
