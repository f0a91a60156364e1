"""Reveal on demand: which masked params a reviewer may see, and the values to show them. Pure.

A request's sensitive paths are fixed when it is recorded (``request.sensitive``); whether one may be
revealed is read from the manifest in force when a reviewer asks, so a ``reveal: false`` added later
applies at once, and a path the manifest no longer lists as revealable stays masked (fail closed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any

from policy.models import ActionRule
from policy.types import PoolView, Status
from policy.votes import admit


class RevealRefusal(StrEnum):
    """Why a Reveal click showed nothing. Every one is audited and explained to the person."""

    NOT_IN_POOL = "not_in_pool"
    OWN_REQUEST = "own_request"
    ALREADY_DECIDED = "already_decided"  # the need to know ends with the decision
    NOT_REVEALABLE = "not_revealable"  # nothing on this request may be revealed (any more)


def admit_reveal(
    *, user: str, status: Status, open_pools: Iterable[PoolView], on_behalf_of: str | None, fields: Sequence[str]
) -> RevealRefusal | None:
    """Why ``user`` may not see the request's ``fields`` (its revealable paths), or None if they may.

    Whoever may vote may reveal: a member of an open stage's pool, not the person the agent acts for,
    while the request is pending. Having voted already does not matter: a reviewer may still check
    what they approved while the others decide.
    """
    refused = admit(user=user, status=status, open_pools=open_pools, on_behalf_of=on_behalf_of, votes=[])
    if refused is not None:
        return RevealRefusal(refused.value)
    return None if fields else RevealRefusal.NOT_REVEALABLE


def values_at(params: Mapping[str, Any], path: str) -> list[Any]:
    """Every value at a dotted path; a path through a list collects each element's (as masking does)."""
    found: list[Any] = []

    def walk(node: Any, parts: list[str]) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item, parts)
            return
        if not isinstance(node, Mapping) or parts[0] not in node:
            return
        if len(parts) == 1:
            found.append(node[parts[0]])
        else:
            walk(node[parts[0]], parts[1:])

    walk(params, path.split("."))
    return found


def revealable(params: Mapping[str, Any], sensitive: Iterable[str], rule: ActionRule | None) -> tuple[str, ...]:
    """The request's sensitive paths a reviewer may reveal: listed as sensitive by ``rule`` (the action's
    rule now) without ``reveal: false``, and present in the params (nothing to show otherwise)."""
    if rule is None:
        return ()
    allowed = set(rule.sensitive_paths) - rule.unrevealable
    return tuple(p for p in dict.fromkeys(sensitive) if p in allowed and values_at(params, p))


def withheld(params: Mapping[str, Any], sensitive: Iterable[str], rule: ActionRule | None) -> tuple[str, ...]:
    """The request's sensitive paths present in its params that may not be revealed."""
    shown = set(revealable(params, sensitive, rule))
    return tuple(p for p in dict.fromkeys(sensitive) if p not in shown and values_at(params, p))
