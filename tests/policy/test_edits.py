"""``editable:`` (edit then approve): which paths a manifest may list, how a form's values are typed, and how
the policy judges edited params (policy.edits)."""

from __future__ import annotations

import pytest

from policy import ActionRequest
from policy.edits import (
    MISSING,
    EditRoute,
    FieldKind,
    apply_changes,
    changes,
    editable_fields,
    judge_edit,
    parse_value,
)
from tests.policy.helpers import load, load_ok

SHOP = """
tenant: t
pools:
  support: {channel: C1, members: [U1]}
  finance: {channel: C2, members: [U2, U3]}
actions:
  refund:
    if: amount > 100
    deny_if: amount > 10000
    reviewer_pool: support
    editable: [amount, note, flags.express]
    rules:
      - if: amount > 5000
        reviewer_pool: finance
        approvals: 2
"""


def _problems(text: str) -> list[str]:
    policy, problems = load(text)
    assert policy is None
    return [p.message for p in problems]


def test_editable_paths_are_dotted_names_never_sensitive_and_among_the_declared_params() -> None:
    assert load_ok(SHOP).manifest.actions["refund"].editable == ["amount", "note", "flags.express"]
    assert any(
        "editable path 'a b' is not a dotted field name" in m
        for m in _problems("tenant: t\nactions:\n  a:\n    editable: ['a b']\n")
    )
    for sensitive, editable in (("card", "card"), ("customer", "customer.email"), ("customer.email", "customer")):
        messages = _problems(f"tenant: t\nactions:\n  a:\n    sensitive: [{sensitive}]\n    editable: [{editable}]\n")
        assert any(f"'{editable}' is sensitive" in m for m in messages), messages
    messages = _problems("tenant: t\nactions:\n  a:\n    params: [amount]\n    editable: [amuont]\n")
    assert any("editable 'amuont' is not among this action's params (amount)" in m for m in messages)
    assert any("twice" in m for m in _problems("tenant: t\nactions:\n  a:\n    editable: [x, x]\n"))


def test_the_form_is_typed_from_the_request_values_and_parses_back_to_those_types() -> None:
    params = {"amount": 620, "rate": 0.5, "note": "lost", "express": False, "items": [1], "customer": {"n": "A"}}
    fields = {f.path: f for f in editable_fields(params, ["amount", "rate", "note", "express", "items", "missing"])}
    kinds = {path: f.kind for path, f in fields.items()}
    assert kinds == {
        "amount": FieldKind.INTEGER, "rate": FieldKind.NUMBER, "note": FieldKind.STRING,
        "express": FieldKind.BOOLEAN, "missing": FieldKind.STRING,
    }  # fmt: skip
    assert parse_value(fields["amount"], "450") == 450 and isinstance(parse_value(fields["amount"], "450"), int)
    assert parse_value(fields["rate"], "0.25") == 0.25
    assert parse_value(fields["express"], True) is True
    assert parse_value(fields["missing"], "") is MISSING  # left empty where the agent sent nothing: still absent
    for field, raw, message in (
        ("amount", "lots", "'lots' is not a number."),
        ("amount", "4.5", "whole number"),
        ("amount", "", "Please give a number."),
        ("rate", "nan", "finite"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_value(fields[field], raw)


def test_changes_apply_to_a_copy_and_list_what_differs() -> None:
    params = {"amount": 620, "flags": {"express": False}}
    edited = apply_changes(params, {"amount": 450, "flags.express": True, "note": MISSING})
    assert params == {"amount": 620, "flags": {"express": False}}
    assert edited == {"amount": 450, "flags": {"express": True}}
    assert [(c.path, c.before, c.after) for c in changes(params, edited, ["amount", "flags.express", "note"])] == [
        ("amount", 620, 450),
        ("flags.express", False, True),
    ]
    assert changes({"amount": 620}, {"amount": 620.0}, ["amount"]) == []


@pytest.mark.parametrize(
    ("amount", "route", "approvals"),
    [
        (450, EditRoute.SAME, 1),  # still support's, one approval
        (6000, EditRoute.MOVED, 2),  # finance's rule: another pool, two approvals
        (20000, EditRoute.DENIED, 1),  # deny_if
        (50, EditRoute.APPROVED, 1),  # under the condition: no review needed
    ],
)
def test_edited_params_are_judged_as_if_the_agent_had_asked_for_them(
    amount: int, route: EditRoute, approvals: int
) -> None:
    policy = load_ok(SHOP)
    asked = ActionRequest(tenant="t", action="refund", params={"amount": 620})
    judged = judge_edit(policy, asked, {"amount": amount}, approvals_now=1)
    assert judged.route is route
    assert judged.verdict.approvals == approvals


def test_more_approvals_than_the_request_has_is_another_route() -> None:
    asked = ActionRequest(tenant="t", action="refund", params={"amount": 620})
    assert judge_edit(load_ok(SHOP), asked, {"amount": 700}, approvals_now=2).route is EditRoute.MOVED


def test_an_edit_is_judged_against_the_pools_the_request_is_in_not_the_ones_a_new_manifest_would_pick() -> None:
    """Recorded in support before a manifest change sent such refunds to finance: an edit that both versions
    route to finance moves the request there, and support's approval does not settle it."""
    policy = load_ok(SHOP.replace("if: amount > 5000", "if: amount > 500"))
    asked = ActionRequest(tenant="t", action="refund", params={"amount": 620})
    edited = {"amount": 700}
    stayed = judge_edit(policy, asked, edited, approvals_now=2, first_pools_now=frozenset({"finance"}))
    assert stayed.route is EditRoute.SAME
    moved = judge_edit(policy, asked, edited, approvals_now=2, first_pools_now=frozenset({"support"}))
    assert moved.route is EditRoute.MOVED
