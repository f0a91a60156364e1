"""``require_approval`` and callbacks: the function runs only when the manifest's mode and the decision allow."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest

from countersign_client import (
    ApprovalRequest,
    AsyncCountersign,
    BadSignature,
    CallbackReceiver,
    Countersign,
    Rejected,
    parse_callback,
    require_approval,
    require_approval_async,
    verify_signature,
)

from .fakes import FakeService, ok, resource, sign

URL, KEY = "http://cs.test", "cs_acme_k"


def test_a_sync_action_runs_once_approved_with_the_params_a_reviewer_edited() -> None:
    edited = {"amount": 500, "order_id": "A-1"}
    service = FakeService(
        [ok(resource()), ok(resource("approved", outcome="approved", by="U0BEN", reason=None, params=edited))]
    )
    ran: list[int] = []

    @require_approval(Countersign(URL, KEY, transport=service.transport()), "process_refund")
    def refund(*, amount: int, order_id: str) -> str:
        ran.append(amount)
        return f"refunded {amount}"

    assert refund(amount=620, order_id="A-1") == "refunded 500"
    assert ran == [500] and service.bodies()[0]["params"] == {"amount": 620, "order_id": "A-1"}


def test_a_rejection_raises_with_the_reason_and_the_function_never_runs() -> None:
    service = FakeService([ok(resource("rejected", outcome="rejected", by="U0CHLOE", reason="refunded last week"))])
    ran: list[int] = []

    @require_approval(Countersign(URL, KEY, transport=service.transport()), "process_refund")
    def refund(*, amount: int) -> None:
        ran.append(amount)

    with pytest.raises(Rejected, match="refunded last week") as no:
        refund(amount=620)
    assert no.value.request.decision is not None and no.value.request.decision.by == "U0CHLOE" and ran == []


@pytest.mark.parametrize("mode", ["async", "sample"])
async def test_async_and_sampled_actions_run_at_once_and_are_undone_on_a_later_rejection(mode: str) -> None:
    service = FakeService([ok(resource(mode=mode, rid="r9"))])
    receiver = CallbackReceiver(secret="s3cret")
    undone: list[ApprovalRequest] = []

    async def undo(request: ApprovalRequest) -> None:
        undone.append(request)

    client = AsyncCountersign(URL, KEY, transport=service.transport())

    @require_approval_async(client, "send_credit", receiver=receiver, callback_url="http://agent/cb", on_rejected=undo)
    async def credit(*, amount: int) -> str:
        return "credited"

    assert await credit(amount=40) == "credited"
    assert service.bodies()[0]["callback_url"] == "http://agent/cb" and undone == []
    body = json.dumps(
        resource("rejected", mode=mode, rid="r9", outcome="rejected", by="U0CHLOE", reason="budget")
    ).encode()
    now = int(time.time())
    await receiver.handle_async(body, sign("s3cret", body, now))
    await receiver.handle_async(body, sign("s3cret", body, now))  # delivered twice: undone once
    assert [(r.id, r.reason) for r in undone] == [("r9", "budget")]


def test_signatures_are_checked_for_secret_body_and_age() -> None:
    body = b'{"id":"r1","status":"approved"}'
    header = sign("s3cret", body, 1_700_000_000)
    assert verify_signature("s3cret", header, body, now=1_700_000_010)
    assert not verify_signature("s3cret", header, body + b" ", now=1_700_000_010)
    assert not verify_signature("other", header, body, now=1_700_000_010)
    assert not verify_signature("s3cret", header, body, now=1_700_000_000 + 301)
    assert not verify_signature("s3cret", "garbage", body, now=1_700_000_000)
    assert parse_callback("s3cret", body, header, now=1_700_000_000).approved
    with pytest.raises(BadSignature):
        parse_callback("other", body, header, now=1_700_000_000)


async def test_the_starlette_receiver_example_answers_204_or_401() -> None:
    pytest.importorskip("starlette", reason="the Starlette example needs starlette")
    import importlib.util

    path = Path(__file__).resolve().parents[3] / "examples" / "callbacks" / "starlette_receiver.py"
    spec = importlib.util.spec_from_file_location("starlette_receiver", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    undone: list[str] = []
    receiver = CallbackReceiver(secret="s3cret")
    receiver.register("r1", lambda r: undone.append(r.id))
    app = module.make_app(receiver)
    body = json.dumps(resource("rejected", outcome="rejected", by="U0CHLOE", reason="no")).encode()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://agent") as http:
        good = await http.post(
            "/countersign", content=body, headers={"X-Countersign-Signature": sign("s3cret", body, int(time.time()))}
        )
        forged = await http.post(
            "/countersign", content=body, headers={"X-Countersign-Signature": sign("guess", body, int(time.time()))}
        )
    assert (good.status_code, forged.status_code, undone) == (204, 401, ["r1"])


def test_the_aiohttp_receiver_example_answers_204_or_401() -> None:
    pytest.importorskip("aiohttp", reason="the aiohttp example needs aiohttp")
    import importlib.util

    from aiohttp.test_utils import TestClient, TestServer

    path = Path(__file__).resolve().parents[3] / "examples" / "callbacks" / "aiohttp_receiver.py"
    spec = importlib.util.spec_from_file_location("aiohttp_receiver", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    receiver = CallbackReceiver(secret="s3cret")

    async def run() -> tuple[int, int]:
        body = json.dumps(resource("approved", outcome="approved", by="U0BEN", reason=None)).encode()
        async with TestClient(TestServer(module.make_app(receiver))) as http:
            good = await http.post(
                "/countersign", data=body, headers={"X-Countersign-Signature": sign("s3cret", body, int(time.time()))}
            )
            stale = await http.post(
                "/countersign", data=body, headers={"X-Countersign-Signature": sign("s3cret", body, 1)}
            )
            return good.status, stale.status

    assert asyncio.run(run()) == (204, 401)
