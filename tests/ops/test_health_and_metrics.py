"""What an operator watches: /healthz, /readyz and /metrics."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from bot.ids import ActionId
from tests.e2e.conftest import TIER1, Stack


async def get(stack: Stack, path: str) -> tuple[int, str]:
    async with stack.http.get(stack.url + path) as resp:
        return resp.status, await resp.text()


def sample(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
        if not labels and line.startswith(f"{name} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0 if want else float("nan")


async def test_health_and_readiness(stack: Stack) -> None:
    assert await get(stack, "/healthz") == (200, '{"status": "ok"}')
    status, body = await get(stack, "/readyz")
    assert status == 200 and '"database": "ok"' in body and '"scheduler": "ok"' in body
    assert '"audit_sequencer": "ok"' in body and '"deadline_watch": "ok"' in body
    assert '"decision_watch": "ok"' in body


async def test_metrics_move_with_the_queue_and_the_audit(stack: Stack) -> None:
    _, before = await get(stack, "/metrics")
    assert sample(before, "countersign_queue_depth", tenant="acme-support", pool="support_tier_1") == 0
    audit_before = sample(before, "countersign_audit_events", tenant="acme-support")
    await stack.agent().ask("close_account", {"customer_id": 1})
    _, body = await stack.agent().ask(
        "process_refund",
        {"amount": 900, "customer": {"name": "A"}, "card_number": "4", "order_id": "M", "currency": "EUR"},
    )
    await stack.slack.wait_for_message(TIER1, action_id=ActionId.APPROVE)
    _, after = await get(stack, "/metrics")
    assert sample(after, "countersign_queue_depth", tenant="acme-support", pool="support_tier_1") == 1
    assert sample(after, "countersign_queue_depth", tenant="acme-support", pool="support_tier_2") == 1
    assert sample(after, "countersign_audit_events", tenant="acme-support") >= audit_before + 2
    assert "request_id" not in after and body["id"] not in after  # labels stay bounded


async def test_readyz_fails_when_the_database_is_gone(stack: Stack, db_url: str) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("removing the database file is the SQLite way to lose it")
    await stack.runtime.engine.dispose()
    path = Path(db_url.split("///", 1)[1])
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    status, body = await get(stack, "/readyz")
    assert status == 503 and '"database": "unreachable' in body
    assert (await get(stack, "/healthz"))[0] == 200  # the process is still up


async def test_metrics_endpoint_is_prometheus_text(stack: Stack) -> None:
    async with aiohttp.ClientSession() as http, http.get(stack.url + "/metrics") as resp:
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert "# TYPE countersign_requests_total counter" in await resp.text()


async def test_decisions_refusals_and_slack_errors_are_counted(stack: Stack) -> None:
    from tests.e2e.conftest import BEN, OUTSIDER

    metric = stack.runtime.metrics.registry.get_sample_value
    refund = {"amount": 900, "customer": {"name": "A"}, "card_number": "4", "order_id": "N", "currency": "EUR"}
    await stack.agent().ask("process_refund", {**refund, "amount": 10})
    assert (
        metric(
            "countersign_requests_total",
            {"tenant": "acme-support", "action": "process_refund", "outcome": "auto_approved"},
        )
        == 1
    )

    stack.slack.fail_next("chat.postMessage", error="ratelimited", status=429, retry_after=1)
    _, req = await stack.agent().ask("process_refund", refund)
    await stack.slack.wait_for_message(TIER1, action_id=ActionId.APPROVE)  # posted after the 429's Retry-After
    assert metric("countersign_slack_ratelimit_waits_total", {"method": "chat.postMessage"}) == 1
    await stack.slack.click(OUTSIDER, channel=TIER1, action_id=ActionId.APPROVE)
    await stack.slack.wait_for_ephemeral(OUTSIDER, text="not in a reviewer pool")
    assert metric("countersign_refused_clicks_total", {"reason": "not_in_pool"}) == 1
    await stack.slack.click(BEN, channel=TIER1, action_id=ActionId.APPROVE)
    await stack.agent().call("GET", f"/v1/requests/{req['id']}", wait=5)
    labels = {"tenant": "acme-support", "action": "process_refund", "outcome": "approved"}
    assert metric("countersign_requests_total", labels) == 1
    assert (
        metric("countersign_decision_latency_seconds_count", {"tenant": "acme-support", "pool": "support_tier_1"}) == 1
    )
    _, text = await get(stack, "/metrics")
    assert "countersign_decision_latency_seconds_bucket" in text
