"""The client against a scripted service: what an agent author relies on, in the sync and the async client."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from countersign_client import (
    ApiError,
    AsyncCountersign,
    ConfigurationError,
    Countersign,
    RateLimited,
    StillPending,
    Unreachable,
)

from .fakes import FakeService, err, ok, resource

URL, KEY = "http://cs.test", "cs_acme_k"


class Both:
    """Runs one scenario through the sync and the async client: they must behave the same."""

    def __init__(self, kind: str, service: FakeService, **options: Any) -> None:
        self.kind, self.slept = kind, []
        if kind == "sync":
            self.client: Any = Countersign(URL, KEY, transport=service.transport(), sleep=self.slept.append, **options)
        else:

            async def sleep(seconds: float) -> None:
                self.slept.append(seconds)

            self.client = AsyncCountersign(URL, KEY, transport=service.transport(), sleep=sleep, **options)

    def __call__(self, method: str, *args: Any, **kwargs: Any) -> Any:
        result = getattr(self.client, method)(*args, **kwargs)
        return asyncio.run(result) if self.kind == "async" else result


both = pytest.mark.parametrize("kind", ["sync", "async"])


@both
def test_a_request_is_typed_and_sent_with_the_key_and_prefer_wait(kind: str) -> None:
    service = FakeService([ok(resource("approved", outcome="approved", by="U0BEN", reason=None))])
    got = Both(kind, service)("request", "process_refund", {"amount": 620}, context={"reason": "twice"}, wait=30)
    assert (got.status, got.approved, got.final, got.decision.by) == ("approved", True, True, "U0BEN")
    sent = service.seen[0]
    assert sent.headers["Authorization"] == f"Bearer {KEY}" and sent.headers["Prefer"] == "wait=30"
    body = service.bodies()[0]
    assert body["action"] == "process_refund" and body["context"] == {"reason": "twice"}
    assert body["idempotency_key"].startswith("cs-")


@both
def test_one_idempotency_key_across_retries_after_no_answer(kind: str) -> None:
    service = FakeService(
        [
            httpx.ConnectError("refused"),
            httpx.ReadTimeout("slow"),
            ok(resource("auto_approved", outcome="auto_approved", by="policy", reason="small")),
        ]
    )
    client = Both(kind, service)
    assert client("request", "process_refund", {"amount": 5}).status == "auto_approved"
    keys = {b["idempotency_key"] for b in service.bodies()}
    assert len(service.seen) == 3 and len(keys) == 1  # the retry finds the request the lost attempt made
    assert len(client.slept) == 2


@both
def test_no_answer_after_the_retries_is_unreachable_and_a_cancel_is_not_resent(kind: str) -> None:
    service = FakeService([httpx.ConnectError("refused")] * 4)
    with pytest.raises(Unreachable, match="is the service"):
        Both(kind, service)("get", "r1")
    assert len(service.seen) == 4
    once = FakeService([httpx.ReadTimeout("slow")])
    with pytest.raises(Unreachable):
        Both(kind, once)("cancel", "r1")
    assert len(once.seen) == 1  # a cancel that may have happened is not sent again


@both
def test_429_waits_out_retry_after_then_gives_up_clearly(kind: str) -> None:
    limited = err(429, "rate_limited", "slow down", {"Retry-After": "4"})
    service = FakeService([limited, limited, ok(resource())])
    client = Both(kind, service)
    assert client("get", "r1", wait=30).pending
    assert client.slept == [4.0, 4.0] and [r.headers["Prefer"] for r in service.seen] == ["wait=30"] * 3
    impatient = Both(kind, FakeService([limited]), max_retry_wait=2)
    with pytest.raises(RateLimited, match="longer than max_retry_wait") as refused:
        impatient("get", "r1")
    assert refused.value.retry_after == 4.0 and impatient.slept == []


@both
def test_api_errors_carry_status_code_and_field(kind: str) -> None:
    service = FakeService([err(422, "invalid", "params.amount: not a number")])
    with pytest.raises(ApiError) as bad:
        Both(kind, service)("request", "process_refund", {"amount": "x"})
    assert (bad.value.status, bad.value.code) == (422, "invalid")
    flaky = FakeService([httpx.Response(503, text="upstream gone"), ok(resource())])
    assert Both(kind, flaky)("get", "r1").pending  # a replica stopping behind a proxy is retried


@both
def test_waiting_long_polls_until_decided_or_raises_still_pending(kind: str) -> None:
    service = FakeService([ok(resource()), ok(resource("rejected", outcome="rejected", by="U0CHLOE", reason="dup"))])
    client = Both(kind, service)
    pending = client("get", "r1")
    decided = client("wait_for_decision", pending)
    assert (decided.status, decided.reason) == ("rejected", "dup")
    assert service.seen[1].headers["Prefer"] == "wait=60"
    with pytest.raises(StillPending):
        Both(kind, FakeService([]))("wait_for_decision", pending, timeout=0)


def test_the_url_and_key_come_from_the_environment_or_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COUNTERSIGN_URL", raising=False)
    monkeypatch.delenv("COUNTERSIGN_API_KEY", raising=False)
    with pytest.raises(ConfigurationError) as missing:
        Countersign()
    assert str(missing.value) == (
        "Countersign needs the service's URL (--url or $COUNTERSIGN_URL) and an API key (--key or $COUNTERSIGN_API_KEY)"
    )
    monkeypatch.setenv("COUNTERSIGN_URL", "http://cs.example:3000/")
    monkeypatch.setenv("COUNTERSIGN_API_KEY", KEY)
    with Countersign() as client:
        assert (client.url, client.endpoint.api_key) == ("http://cs.example:3000", KEY)
    assert Countersign("http://other:1", "k2").url == "http://other:1"  # arguments win
    with pytest.raises(ConfigurationError, match="http"):
        Countersign("cs.example:3000", KEY)


def test_one_connection_pool_per_client() -> None:
    service = FakeService([ok(resource())] * 3)
    client = Countersign(URL, KEY, transport=service.transport())
    pool = client._http
    for _ in range(3):
        client.get("r1")
    assert client._http is pool and len(service.seen) == 3


Decide = Callable[[httpx.Request], httpx.Response]
