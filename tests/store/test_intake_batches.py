"""Group commit on every backend: a key another writer took meanwhile costs nobody their request."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bot.errors import Conflict
from bot.policyset import PolicySet
from bot.service.intake import Intake
from bot.service.models import CreateRequest
from bot.service.receipts import Receipts
from bot.service.signals import Signals
from bot.service.transitions import Transitions
from store.requests import RequestRepository

from .conftest import T0

MANIFEST = """
tenant: acme
pools:
  tier1:
    channel: C1
    members: [U1, U2]
actions:
  refund:
    if: amount > 100
    reviewer_pool: tier1
"""


class _Clock:
    def now(self):  # type: ignore[no-untyped-def]
        return T0


@pytest.fixture
def intake(sm: Any, tmp_path: Path, tenant: str) -> Intake:
    (tmp_path / "acme.yaml").write_text(MANIFEST)
    policies = PolicySet(tmp_path)
    transitions = Transitions(sessionmaker=sm, policies=policies, signals=Signals())
    receipts = Receipts(sessionmaker=sm, policies=policies, clock=_Clock())
    return Intake(sessionmaker=sm, policies=policies, clock=_Clock(), transitions=transitions, receipts=receipts)


def body(amount: int, key: str | None = None) -> CreateRequest:
    return CreateRequest(action="refund", params={"amount": amount}, idempotency_key=key)


async def test_a_key_taken_after_the_look_up_falls_back_to_one_at_a_time(intake, monkeypatch):
    first, _ = await intake.submit("acme", "agent", body(500, "k-1"))
    # The batch's look-up misses the row another writer committed (it ran just before that commit).
    real = RequestRepository.by_idempotency_keys
    calls = 0

    async def stale(self: RequestRepository, tenant: str, keys: Any) -> Any:
        nonlocal calls
        calls += 1
        return {} if calls == 1 else await real(self, tenant, keys)

    monkeypatch.setattr(RequestRepository, "by_idempotency_keys", stale)
    results = await asyncio.gather(
        intake.submit("acme", "agent", body(500, "k-1")),
        intake.submit("acme", "agent", body(900, "k-1x")),
        intake.submit("acme", "agent", body(5)),
        intake.submit("acme", "agent", body(700, "k-2")),
        return_exceptions=True,
    )
    replay, other, small, fresh = results
    assert not isinstance(replay, BaseException) and (replay[0].id, replay[1]) == (first.id, False)
    assert not isinstance(other, BaseException) and other[1] is True
    assert not isinstance(small, BaseException) and small[0].status.value == "auto_approved"
    assert not isinstance(fresh, BaseException) and fresh[1] is True
    assert calls > 1  # the batch was written again, one submission at a time


async def test_a_conflicting_body_fails_alone(intake):
    await intake.submit("acme", "agent", body(500, "k-1"))
    results = await asyncio.gather(
        intake.submit("acme", "agent", body(501, "k-1")),
        intake.submit("acme", "agent", body(600)),
        return_exceptions=True,
    )
    assert isinstance(results[0], Conflict)
    assert not isinstance(results[1], BaseException) and results[1][1] is True
