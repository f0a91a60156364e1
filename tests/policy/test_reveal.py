"""``sensitive:`` entries as paths or ``{field, reveal}``, and what a reviewer may reveal (policy.reveal)."""

from __future__ import annotations

from policy import ActionRequest, decide
from policy.reveal import RevealRefusal, admit_reveal, revealable, values_at, withheld
from policy.types import PoolView, Status
from tests.policy.helpers import load, load_ok

BOTH_FORMS = """
tenant: t
actions:
  refund:
    sensitive: [customer.email, {field: card_number, reveal: false}, {field: iban}]
"""
PARAMS = {"customer": {"email": "a@x"}, "card_number": "4111", "iban": "DE00"}


def test_a_path_alone_and_a_mapping_mean_the_same_and_reveal_false_is_kept() -> None:
    rule = load_ok(BOTH_FORMS).manifest.actions["refund"]
    assert rule.sensitive_paths == ("customer.email", "card_number", "iban")
    assert rule.unrevealable == frozenset({"card_number"})


def test_downstream_sees_paths_masked_and_digested_as_before() -> None:
    policy = load_ok(BOTH_FORMS)
    verdict = decide(policy, ActionRequest(tenant="t", action="refund", params=PARAMS))
    assert verdict.sensitive == ("customer.email", "card_number", "iban")


def test_revealable_fields_leave_out_reveal_false_absent_and_unlisted_ones() -> None:
    rule = load_ok(BOTH_FORMS).manifest.actions["refund"]
    stored = ("customer.email", "card_number", "iban", "gone")
    assert revealable(PARAMS, stored, rule) == ("customer.email", "iban")
    assert revealable({"card_number": "4111"}, stored, rule) == ()  # nothing revealable is present
    assert withheld(PARAMS, stored, rule) == ("card_number",)
    assert revealable(PARAMS, stored, None) == ()  # an action no longer in the manifest: fail closed


def test_values_at_follows_lists_like_masking() -> None:
    params = {"cards": [{"number": "1"}, {"number": "2"}, {"other": 3}], "a": {"b": 0}}
    assert values_at(params, "cards.number") == ["1", "2"]
    assert values_at(params, "a.b") == [0]
    assert values_at(params, "a.c") == []


def test_who_may_reveal_is_who_may_vote_while_pending() -> None:
    pool = PoolView(name="p", channel="C1", members=frozenset({"U1", "U2"}))

    def ask(user: str, status: Status = Status.PENDING, fields: tuple[str, ...] = ("x",)) -> RevealRefusal | None:
        return admit_reveal(user=user, status=status, open_pools=[pool], on_behalf_of="U2", fields=fields)

    assert ask("U1") is None
    assert ask("U9") is RevealRefusal.NOT_IN_POOL
    assert ask("U2") is RevealRefusal.OWN_REQUEST
    assert ask("U1", Status.APPROVED) is RevealRefusal.ALREADY_DECIDED
    assert ask("U1", fields=()) is RevealRefusal.NOT_REVEALABLE


def test_a_misspelled_key_in_a_sensitive_entry_gets_a_hint() -> None:
    policy, problems = load("tenant: t\nactions:\n  a:\n    sensitive: [{feild: x}]\n")
    assert policy is None
    assert any("unknown key 'feild'; did you mean 'field'?" in p.message for p in problems)
    policy, problems = load("tenant: t\nactions:\n  a:\n    sensitive: [{field: 'a b', reveal: false}]\n")
    assert policy is None
    assert any("sensitive path 'a b' is not a dotted field name" in p.message for p in problems)
