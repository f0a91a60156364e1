"""The vote tally and the admissibility of a click."""

from __future__ import annotations

import pytest

from policy import CastVote, Choice, PoolView, Refusal, Status, TallyResult, admit, tally

A, R = Choice.APPROVE, Choice.REJECT
TIER1 = PoolView(name="t1", channel="C1", members=frozenset({"U1", "U2", "U3"}), away=frozenset({"U3"}))
TIER2 = PoolView(name="t2", channel="C2", members=frozenset({"U4"}))


def votes(*pairs: tuple[str, Choice]) -> list[CastVote]:
    return [CastVote(user=u, choice=c) for u, c in pairs]


@pytest.mark.parametrize(
    ("required", "cast", "result"),
    [
        (1, [], TallyResult.PENDING),
        (1, [("U1", A)], TallyResult.APPROVED),
        (2, [("U1", A)], TallyResult.PENDING),
        (2, [("U1", A), ("U1", A)], TallyResult.PENDING),  # the same person twice is one approver
        (2, [("U1", A), ("U2", A)], TallyResult.APPROVED),
        (2, [("U1", A), ("U2", R)], TallyResult.REJECTED),  # one reject rejects
        (1, [("U1", R)], TallyResult.REJECTED),
        (3, [("U1", A), ("U2", A), ("U4", A)], TallyResult.APPROVED),
    ],
)
def test_tally(required: int, cast: list[tuple[str, Choice]], result: TallyResult) -> None:
    assert tally(approvals_required=required, votes=votes(*cast)) is result


@pytest.mark.parametrize(
    ("user", "status", "pools", "on_behalf_of", "cast", "refusal"),
    [
        ("U1", Status.PENDING, [TIER1], None, [], None),
        ("U3", Status.PENDING, [TIER1], None, [], None),  # away members may still vote
        ("U9", Status.PENDING, [TIER1], None, [], Refusal.NOT_IN_POOL),
        ("U4", Status.PENDING, [TIER1], None, [], Refusal.NOT_IN_POOL),  # next stage not open yet
        ("U4", Status.PENDING, [TIER1, TIER2], None, [], None),  # escalation widens the eligible set
        ("U1", Status.PENDING, [TIER1, TIER2], None, [], None),  # earlier stage still counts after escalation
        ("U1", Status.PENDING, [TIER1], "U1", [], Refusal.OWN_REQUEST),  # no self-approval
        ("U9", Status.PENDING, [TIER1], "U9", [], Refusal.OWN_REQUEST),
        ("U1", Status.PENDING, [TIER1], None, [("U1", A)], Refusal.DUPLICATE),
        ("U2", Status.PENDING, [TIER1], None, [("U1", A)], None),
        ("U1", Status.APPROVED, [TIER1], None, [], Refusal.ALREADY_DECIDED),
        ("U1", Status.EXPIRED, [TIER1], None, [], Refusal.ALREADY_DECIDED),
        ("U1", Status.CANCELLED, [TIER1], None, [], Refusal.ALREADY_DECIDED),
    ],
)
def test_admit(
    user: str,
    status: Status,
    pools: list[PoolView],
    on_behalf_of: str | None,
    cast: list[tuple[str, Choice]],
    refusal: Refusal | None,
) -> None:
    assert admit(user=user, status=status, open_pools=pools, on_behalf_of=on_behalf_of, votes=votes(*cast)) is refusal
