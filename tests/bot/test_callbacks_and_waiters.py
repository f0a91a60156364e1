from __future__ import annotations

import asyncio
import time

import pytest
from countersign_client import ApprovalRequest, BadSignature, CallbackReceiver, verify_signature

from bot.callbacks import callback_url_problem, signed_headers
from bot.waiters import DecisionBus, parse_prefer_wait

HOSTS = ["agents.acme.internal", "127.0.0.1"]


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://agents.acme.internal/cb", None),
        ("http://127.0.0.1:8080/cb", None),
        ("https://AGENTS.acme.internal./cb", None),
        ("https://evil.example/cb", "callback host 'evil.example' is not in this tenant's callbacks.allowed_hosts"),
        ("http://10.0.0.5/cb", "callback host '10.0.0.5' is not in this tenant's callbacks.allowed_hosts"),
        (
            "http://169.254.169.254/latest",
            "callback host '169.254.169.254' is not in this tenant's callbacks.allowed_hosts",
        ),
        ("http://agents.acme.internal.evil.example/", "is not in this tenant's callbacks.allowed_hosts"),
        ("https://user:pw@agents.acme.internal/cb", "callback_url must not carry credentials"),
        ("ftp://agents.acme.internal/cb", "callback_url must be an http(s) URL with a host"),
        ("not a url", "callback_url must be an http(s) URL with a host"),
    ],
)
def test_callback_url_problem(url: str, problem: str | None) -> None:
    found = callback_url_problem(url, HOSTS)
    assert found == problem if problem is None else (found is not None and problem in found)


def test_no_allowed_hosts_means_no_callbacks() -> None:
    assert "no callbacks.allowed_hosts" in (callback_url_problem("https://a.example/", []) or "")


def test_signature_round_trip_and_tamper() -> None:
    body = b'{"id":"r1","status":"rejected"}'
    header = signed_headers("s3cret", body, 1_700_000_000)["X-Countersign-Signature"]
    assert verify_signature("s3cret", header, body, now=1_700_000_010)
    assert not verify_signature("s3cret", header, body + b" ", now=1_700_000_010)
    assert not verify_signature("other", header, body, now=1_700_000_010)
    assert not verify_signature("s3cret", header, body, now=1_700_000_000 + 301)  # stale
    assert not verify_signature("s3cret", "garbage", body, now=1_700_000_000)


def test_receiver_runs_undo_only_on_rejection() -> None:
    undone: list[str] = []
    receiver = CallbackReceiver(secret="k")
    receiver.register("r1", lambda req: undone.append(req.id))
    receiver.register("r2", lambda req: undone.append(req.id))
    now = int(time.time())
    for rid, status in (("r1", "approved"), ("r2", "rejected")):
        body = f'{{"id":"{rid}","status":"{status}"}}'.encode()
        receiver.handle(body, signed_headers("k", body, now)["X-Countersign-Signature"], now=now)
    assert undone == ["r2"]
    with pytest.raises(BadSignature, match="signature"):
        receiver.handle(b"{}", "t=1,v1=00", now=now)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, 0),
        ("", 0),
        ("wait=5", 5),
        ("respond-async, wait=10", 10),
        ("wait=600", 60),
        ("handling=lenient", 0),
        ("WAIT = 3", 3),
    ],
)
def test_prefer_wait(header: str | None, seconds: int) -> None:
    assert parse_prefer_wait(header) == seconds


async def test_a_watcher_is_woken_the_moment_a_decision_is_notified() -> None:
    bus = DecisionBus()

    async def decide_soon() -> None:
        await asyncio.sleep(0.02)
        bus.notify("r1")

    loop = asyncio.get_running_loop()
    started = loop.time()
    with bus.watching("r1") as decided:
        task = asyncio.create_task(decide_soon())
        await asyncio.wait_for(decided.wait(), timeout=10)
    await task
    assert loop.time() - started < 1  # woken by the notification, not by the timeout


def test_watched_requests_are_listed_for_the_decision_watcher_while_someone_waits() -> None:
    bus = DecisionBus()
    with bus.watching("r1"), bus.watching("r1"), bus.watching("r2"):
        assert sorted(bus.watched()) == ["r1", "r2"]  # what one read checks for every waiter at once
    assert bus.watched() == []
    bus.notify("r1")  # nobody waits: nothing to wake, nothing kept
    assert bus.watched() == []


async def test_async_undo_handlers_are_awaited_and_timeouts_that_approve_count_as_approved() -> None:
    undone: list[str] = []
    receiver = CallbackReceiver(secret="k")

    async def undo(req: ApprovalRequest) -> None:
        undone.append(req.id)

    receiver.register("r3", undo)
    receiver.register("r4", undo)
    now = int(time.time())
    rejected = b'{"id":"r3","status":"expired","decision":{"outcome":"rejected"}}'
    ok = b'{"id":"r4","status":"expired","decision":{"outcome":"approved"}}'
    for body in (rejected, ok):
        await receiver.handle_async(body, signed_headers("k", body, now)["X-Countersign-Signature"], now=now)
    assert undone == ["r3"]

    def approved(resource: dict[str, object]) -> bool:
        return ApprovalRequest.from_json({"id": "r", **resource}).approved

    assert approved({"status": "expired", "decision": {"outcome": "approved"}})
    assert not approved({"status": "expired", "decision": {"outcome": "rejected"}})
    assert not approved({"status": "denied"})
