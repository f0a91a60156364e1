"""Reveal on demand: an eligible reviewer sees a card's masked params, in a message only they see. No Slack.

Who may: whoever may vote (a member of an open stage's pool, not the person the agent acts for), while
the request is pending; once it is decided the need to know has ended and a reveal is refused. What:
the request's sensitive paths the manifest in force lets be revealed (``reveal: false`` never is).

Every reveal is audited before any value leaves the service: one ``sensitive.revealed`` event per field
(who, which field, never the value), committed under the request's row lock, so a reveal is ordered
before or after the decision and never shows a decided request's values. A refusal is audited as
``sensitive.reveal_refused`` with its reason, as refused votes are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.clock import Clock
from bot.errors import NotFound
from bot.logs import log_context
from bot.metrics import Metrics
from bot.payloads import CardRef
from bot.policyset import PolicySet
from bot.service import render
from bot.service.admission import open_pools
from bot.service.transitions import Transitions
from policy import PoolView, Status
from policy.reveal import RevealRefusal, admit_reveal, values_at, withheld
from store.audit import AuditRecord, NewEvent


@dataclass(frozen=True, slots=True)
class Revealed:
    """One field shown: its path and its values (several for a path through a list)."""

    field: str
    values: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class RevealOutcome:
    """What a Reveal click shows: the fields, or why nothing (``refusal``)."""

    refusal: RevealRefusal | None
    fields: tuple[Revealed, ...] = ()
    withheld: tuple[str, ...] = ()  # sensitive fields present that the manifest forbids revealing


@dataclass(frozen=True, slots=True)
class RevealLine:
    """A reveal as ``/hitl show`` lists it."""

    at: datetime
    user: str | None
    field: str


def revealed_in(records: Sequence[AuditRecord]) -> list[RevealLine]:
    """The reveals in a request's audit trail, oldest first."""
    return [RevealLine(r.at, r.actor, str(r.payload.get("field"))) for r in records if r.kind == render.REVEALED]


class Reveals:
    def __init__(self, *, policies: PolicySet, clock: Clock, transitions: Transitions) -> None:
        self.policies = policies
        self.clock = clock
        self.transitions = transitions

    async def reveal(self, *, ref: CardRef, user: str) -> RevealOutcome:
        """Show ``user`` the request's revealable fields, audited first; or refuse, audited. Raises NotFound."""
        with log_context(tenant=ref.tenant, request_id=ref.request_id):
            async with self.transitions.unit(self.clock.now()) as unit:
                tx, now = unit.tx, unit.now
                # The row lock orders this against a vote deciding the request: never a value after the decision.
                row = (await tx.requests.lock_many([ref.request_id])).get(ref.request_id)
                if row is None or row.tenant != ref.tenant:
                    raise NotFound("this request no longer exists")
                policy = self.policies.tenants.get(row.tenant)
                fields = render.revealable(row, policy)
                pools: list[PoolView] = []
                if row.status is Status.PENDING:
                    stages = list(await tx.stages.stages(row.id))
                    pools = open_pools(stages, row.stage, await tx.pools.views(row.tenant))
                refusal = admit_reveal(
                    user=user, status=row.status, open_pools=pools, on_behalf_of=row.on_behalf_of, fields=fields
                )
                if refusal is not None:
                    payload = {"refusal": refusal.value, "stage": row.stage}
                    await tx.audit.append_many(
                        [NewEvent(row.tenant, render.REVEAL_REFUSED, now, payload, row.id, user)]
                    )

                    def bump(m: Metrics, reason: str = refusal.value) -> None:
                        m.refused(reason)

                    unit.count(bump)
                    return RevealOutcome(refusal)
                events = [
                    NewEvent(row.tenant, render.REVEALED, now, {"field": path, "stage": row.stage}, row.id, user)
                    for path in fields
                ]
                await tx.audit.append_many(events)
                rule = policy.manifest.actions.get(row.action) if policy else None
                shown = tuple(Revealed(path, tuple(values_at(row.params, path))) for path in fields)
                return RevealOutcome(None, shown, withheld(row.params, row.sensitive, rule))
