"""Delegates in a pool view, pure: who is eligible, whom a vote counts for, one person once."""

from __future__ import annotations

from policy import CastVote, Choice, PoolView, Refusal, Status, acting_for, admit, cannot_serve, tally

# Ada delegated to Ben (not a member); Cy is present.
POOL = PoolView(
    name="p", channel="C1", members=frozenset({"ada", "cy"}), away=frozenset({"ada"}), delegates=(("ada", "ben"),)
)


def test_a_delegate_stands_in_for_an_away_member_but_not_for_either_of_them() -> None:
    assert POOL.eligible(exclude=None) == {"ben", "cy"}
    assert POOL.eligible(exclude="ben") == {"cy"}
    assert POOL.eligible(exclude="ada") == {"cy"}  # acting for Ada, Ben cannot serve a request on her behalf
    assert POOL.voters == {"ada", "ben", "cy"}


def test_a_delegation_of_someone_outside_the_pool_changes_nothing_there() -> None:
    other = POOL.model_copy(update={"delegates": (("zed", "ben"),), "away": frozenset()})
    assert other.stand_ins == {} and "ben" not in other.eligible(exclude=None)
    assert acting_for("ben", [other]) is None


def test_a_pool_whose_only_member_delegated_can_still_serve() -> None:
    solo = PoolView(name="s", channel="C2", members=frozenset({"ada"}), away=frozenset({"ada"}))
    assert cannot_serve(solo, 1, None) == "has every member away"
    assert cannot_serve(solo.model_copy(update={"delegates": (("ada", "ben"),)}), 1, None) is None


def test_the_delegate_and_the_delegator_are_one_vote() -> None:
    by_ben = CastVote(user="ben", choice=Choice.APPROVE, for_user=acting_for("ben", [POOL]))
    assert by_ben.counts_as == "ada"
    refused = admit(user="ada", status=Status.PENDING, open_pools=[POOL], on_behalf_of=None, votes=[by_ben])
    assert refused is Refusal.DUPLICATE
    by_ada = CastVote(user="ada", choice=Choice.APPROVE)
    assert tally(approvals_required=2, votes=[by_ada, by_ben]).value == "pending"
    by_cy = CastVote(user="cy", choice=Choice.APPROVE)
    assert tally(approvals_required=2, votes=[by_ben, by_cy]).value == "approved"


def test_a_delegate_cannot_vote_on_a_request_for_the_person_they_stand_in_for() -> None:
    refused = admit(user="ben", status=Status.PENDING, open_pools=[POOL], on_behalf_of="ada", votes=[])
    assert refused is Refusal.OWN_REQUEST
    assert admit(user="ben", status=Status.PENDING, open_pools=[POOL], on_behalf_of="cy", votes=[]) is None
