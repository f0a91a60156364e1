"""Edit then approve: a reviewer changes an action's ``editable`` params, and the policy judges the edited
request again. Pure: params and a policy in, a judgement out.

An edit is never a way around the policy: the edited params are decided exactly as if the agent had
asked for them (same action, same context). A denial refuses the edit; a route that differs from the
one the request is on (other pools, other approvals, another quorum) moves the request there; the
same route keeps it where it is; no review needed approves it (the reviewer asked to approve).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from policy.decide import Verdict, decide
from policy.loader import TenantPolicy
from policy.types import ActionRequest, Outcome

MISSING: Any = object()  # a path the params do not have


class FieldKind(StrEnum):
    """How an editable field is typed in the form, from the request's value."""

    INTEGER = "integer"
    NUMBER = "number"
    STRING = "string"
    BOOLEAN = "boolean"


@dataclass(frozen=True, slots=True)
class EditableField:
    """One field of the edit form: its path, its kind and the request's value (None when absent)."""

    path: str
    kind: FieldKind
    value: Any


@dataclass(frozen=True, slots=True)
class Change:
    """One param an edit changed (``MISSING`` before: the agent did not send it)."""

    path: str
    before: Any
    after: Any


class EditRoute(StrEnum):
    """Where the policy sends an edited request."""

    DENIED = "denied"  # the edit is refused; the request stays as the agent asked
    APPROVED = "approved"  # the policy needs no review for these params: the editor's approval decides
    SAME = "same"  # the request stays on its route; the editor's approval counts as a vote
    MOVED = "moved"  # another route: new stages open, the old ones close


@dataclass(frozen=True, slots=True)
class EditJudgement:
    route: EditRoute
    verdict: Verdict  # the decision for the edited params
    reason: str


def value_at(params: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path, or ``MISSING``."""
    node: Any = params
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return MISSING
        node = node[part]
    return node


def kind_of(value: Any) -> FieldKind | None:
    """The form type for a value; None for objects and lists, which a form field cannot hold."""
    if isinstance(value, bool):
        return FieldKind.BOOLEAN
    if isinstance(value, int):
        return FieldKind.INTEGER
    if isinstance(value, float):
        return FieldKind.NUMBER
    if isinstance(value, str) or value is MISSING or value is None:
        return FieldKind.STRING
    return None


def editable_fields(params: Mapping[str, Any], paths: Sequence[str]) -> list[EditableField]:
    """The form's fields, in manifest order; a path holding an object or a list is left out."""
    fields = []
    for path in paths:
        value = value_at(params, path)
        kind = kind_of(value)
        if kind is not None:
            fields.append(EditableField(path, kind, None if value is MISSING else value))
    return fields


def parse_value(field: EditableField, raw: str | bool | None) -> Any:
    """What the reviewer typed, as the field's type (``MISSING``: left empty where the agent sent nothing).

    Raises:
        ValueError: with a message for the person (shown on the field).
    """
    if field.kind is FieldKind.BOOLEAN:
        return bool(raw)
    text = raw.strip() if isinstance(raw, str) else ""
    if field.kind is FieldKind.STRING:
        if not text and field.value is None:
            return MISSING
        return text
    if not text:
        raise ValueError("Please give a number.")
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"'{text}' is not a number.") from None
    if not math.isfinite(number):
        raise ValueError("Please give a finite number.")
    if field.kind is FieldKind.INTEGER:
        if not number.is_integer():
            raise ValueError("This field takes a whole number.")
        return int(number)
    return number


def apply_changes(params: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``params`` with each path set to its new value (``MISSING`` values left out)."""
    out: dict[str, Any] = copy.deepcopy(dict(params))
    for path, value in values.items():
        if value is MISSING:
            continue
        *parents, leaf = path.split(".")
        node = out
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[leaf] = value
    return out


def changes(before: Mapping[str, Any], after: Mapping[str, Any], paths: Sequence[str]) -> list[Change]:
    """The paths whose value differs, in ``paths`` order (``1`` and ``1.0`` are the same value)."""
    found = []
    for path in paths:
        old, new = value_at(before, path), value_at(after, path)
        if old is MISSING and new is MISSING:
            continue
        if old is MISSING or new is MISSING or type(old) is bool or type(new) is bool:
            differs = old is MISSING or new is MISSING or type(old) is not type(new) or old != new
        else:
            differs = old != new
        if differs:
            found.append(Change(path, old, new))
    return found


def route_of(verdict: Verdict) -> tuple[Any, ...]:
    """What makes two verdicts the same route: their pools in order, approvals, and quorum lines."""
    lines = tuple((q.approvals, tuple(s.pool for s in q.stages)) for q in verdict.quorum)
    return (verdict.outcome, tuple(s.pool for s in verdict.stages), verdict.approvals, lines)


def judge_edit(
    policy: TenantPolicy,
    asked: ActionRequest,
    edited: Mapping[str, Any],
    *,
    approvals_now: int,
    first_pools_now: frozenset[str] | None = None,
) -> EditJudgement:
    """Decide ``edited`` (the params after the edit) as the policy would for the agent's ``asked``.

    ``approvals_now`` and ``first_pools_now``: the approvals the request needs and the pools its route
    starts in (each quorum line's first) as it stands. Its route may predate a manifest change, so
    other pools or more approvals now are a new route even when the same rule matches both versions.
    """
    before = decide(policy, asked)
    verdict = decide(policy, asked.model_copy(update={"params": dict(edited)}))
    if verdict.outcome is Outcome.DENY:
        return EditJudgement(EditRoute.DENIED, verdict, verdict.reason)
    if verdict.outcome is Outcome.AUTO_APPROVE:
        # Includes mode sample: an edited request is reviewed now, by the person editing it.
        return EditJudgement(EditRoute.APPROVED, verdict, verdict.reason)
    starts = frozenset(q.stages[0].pool for q in verdict.quorum if q.stages) or frozenset(
        s.pool for s in verdict.stages[:1]
    )
    unmoved = first_pools_now is None or starts == first_pools_now
    if route_of(verdict) == route_of(before) and verdict.approvals == approvals_now and unmoved:
        return EditJudgement(EditRoute.SAME, verdict, verdict.reason)
    return EditJudgement(EditRoute.MOVED, verdict, verdict.reason)
