"""The one place a request changes state: decided by votes, cancelled, expired, failed closed, escalated.

Every transition is a compare-and-set on the request's version (the caller holds the row lock;
the condition is the backstop), with its audit event, the outbox effects it causes (cards
re-rendered, a thread note, the agent's callback, App Homes refreshed) and its metrics, all in
the caller's unit of work. What must happen after the commit (long polls woken, the outbox
worker and the deadline scheduler nudged, counters bumped) is collected on the :class:`Unit`
and announced by :meth:`Transitions.unit` once the transaction has committed, never before: a
rolled-back transition announces nothing.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import blocks, questionblocks
from bot.errors import Conflict
from bot.metrics import Metrics
from bot.policyset import PolicySet
from bot.service import render
from bot.service.effects import (
    Callback,
    DirectMessage,
    Effect,
    PostCard,
    RefreshHomes,
    TellRequester,
    Thread,
    UpdateCards,
    callback_key,
    enqueue,
    new_item,
    post_key,
    requester_key,
)
from bot.service.escalations import QUESTION as QUESTION  # Request.kind of a question, where callers look for it
from bot.service.escalations import Escalations
from bot.service.signals import Signals
from policy import Mode, OnTimeout, Status, on_timeout_for
from store.audit import NewEvent
from store.decisions import Decision
from store.edits import ParamsEdit, replace_params, supersede, withdraw_approvals
from store.models import Request
from store.outbox import NewItem
from store.stages import NewStage
from store.uow import Tx, uow

Count = Callable[[Metrics], None]
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")


def is_user_id(value: str | None) -> bool:
    """Whether ``value`` looks like a Slack user id (``U…``/``W…``): only those can be sent a DM."""
    return value is not None and _USER_ID.fullmatch(value) is not None


@dataclass
class Unit:
    """One unit of work that may change requests, and what to announce once it commits."""

    tx: Tx
    now: datetime
    decided: list[str] = field(default_factory=list)
    counts: list[Count] = field(default_factory=list)

    def count(self, bump: Count) -> None:
        """Bump a metric after the commit (a rolled-back change is not counted)."""
        self.counts.append(bump)


class Transitions(Escalations):
    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        policies: PolicySet,
        signals: Signals,
        metrics: Metrics | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.policies = policies
        self.signals = signals
        self.metrics = metrics

    @asynccontextmanager
    async def unit(self, now: datetime) -> AsyncIterator[Unit]:
        """A write unit of work; its changes are announced after it commits."""
        async with uow(self.sessionmaker) as tx:
            unit = Unit(tx, now)
            yield unit
            queued, due = tx.outbox.enqueued > 0, tx.stages.earliest_opened
        self.announce(unit, queued=queued, due=due)

    def announce(self, unit: Unit, *, queued: bool, due: datetime | None) -> None:
        for request_id in unit.decided:
            self.signals.decided(request_id)
        if self.metrics is not None:
            for bump in unit.counts:
                bump(self.metrics)
        if queued:
            self.signals.queued()
        if due is not None:
            self.signals.stage_opened(due)

    # -- decisions ------------------------------------------------------------------------

    async def decide_by_votes(
        self,
        unit: Unit,
        row: Request,
        *,
        outcome: Status,
        by: str,
        reason: str | None,
        pool: str,
        for_user: str | None = None,
    ) -> Request:
        """The tally decided: approved or rejected by ``by``'s vote (standing in for ``for_user``, a delegate).
        Returns ``row``, now decided."""
        await self.decide_many_by_votes(unit, [VotedOut(row, outcome, by, reason, pool, for_user)])
        return row

    async def decide_many_by_votes(self, unit: Unit, decided: Sequence[VotedOut]) -> None:
        """:meth:`decide_by_votes` each, in a few statements (a batch of clicks)."""
        settles = []
        for d in decided:
            settles.append(
                _Settle(
                    d.row, outcome=d.outcome, by=d.by, reason=d.reason, event="request.decided",
                    payload={"status": d.outcome.value, "reason": d.reason}, actor=d.by, for_user=d.for_user,
                )
            )  # fmt: skip
            seconds = (unit.now - d.row.created_at).total_seconds()

            def bump(m: Metrics, d: VotedOut = d, seconds: float = seconds) -> None:
                m.decided(d.row.tenant, d.row.action, d.outcome.value, d.pool, seconds)

            unit.count(bump)
        await self._settle_many(unit, settles)

    async def cancel(self, unit: Unit, row: Request) -> Request:
        """The agent withdrew its request, or its question (audited as ``question.cancelled``)."""
        question = row.kind == QUESTION
        decided = await self._settle(
            unit, row, outcome=Status.CANCELLED, by="agent", reason=None,
            event="question.cancelled" if question else "request.cancelled", payload={},
            note=questionblocks.WITHDRAWN_NOTE if question else ":no_entry_sign: The agent withdrew this request.",
            actor="agent",
        )  # fmt: skip
        if not question:  # questions are not counted as requests (nor are their answers and expiries)
            unit.count(lambda m: m.final(row.tenant, row.action, Status.CANCELLED.value))
        return decided

    async def answer(self, unit: Unit, row: Request, *, by: str, text: str, choice: int | None) -> Request:
        """Someone answered a question (a request of kind 'question'); the caller recorded the answer."""
        return await self._settle(
            unit, row, outcome=Status.ANSWERED, by=by, reason=None, event="question.answered",
            payload={"text": text, "choice": choice}, note=questionblocks.answered_note(by, text), actor=by,
        )  # fmt: skip

    async def expire(self, unit: Unit, row: Request, *, pool: str) -> Status:
        """The last deadline passed with no decision: ``on_timeout`` decides. Returns the outcome."""
        return (await self.expire_many(unit, [(row, pool)]))[0]

    async def expire_many(self, unit: Unit, expiring: Sequence[tuple[Request, str]]) -> list[Status]:
        """:meth:`expire` each (request, pool of the stage that ran out) in a few statements, whatever the count."""
        settles, outcomes = [], []
        for row, pool in expiring:
            if row.kind == QUESTION:
                # A question has no on_timeout: nobody answered, and that is what the agent is told.
                settles.append(
                    _Settle(
                        row, outcome=Status.EXPIRED, by="timeout", reason="no answer before the deadline",
                        event="question.expired", payload={"pool": pool},
                        note=":hourglass: Expired with no answer.",
                    )
                )  # fmt: skip
                outcomes.append(Status.EXPIRED)
                continue
            on_timeout = on_timeout_for(self.policies.tenants.get(row.tenant), row.action, row.params, row.context)
            outcome = Status.APPROVED if on_timeout is OnTimeout.APPROVE else Status.REJECTED
            reason = f"no decision before the last deadline; on_timeout is {on_timeout.value}"
            verb = "approved" if outcome is Status.APPROVED else "rejected"
            settles.append(
                _Settle(
                    row, outcome=outcome, status=Status.EXPIRED, by="timeout", reason=reason, event="request.expired",
                    payload={"outcome": outcome.value, "reason": reason},
                    note=f":hourglass: Expired with no decision; {verb} as the policy says "
                    f"(on_timeout: {on_timeout.value}).",
                )
            )  # fmt: skip
            outcomes.append(outcome)
            seconds = (unit.now - row.created_at).total_seconds()

            def bump(m: Metrics, row: Request = row, outcome: Status = outcome, pool: str = pool,
                     seconds: float = seconds) -> None:  # fmt: skip
                m.timeouts.labels(row.tenant, outcome.value).inc()
                m.decided(row.tenant, row.action, Status.EXPIRED.value, pool, seconds)

            unit.count(bump)
        await self._settle_many(unit, settles)
        return outcomes

    async def fail_closed(self, unit: Unit, row: Request, *, reason: str) -> Request:
        """No pool is left to review a pending request: rejected by the policy."""
        decided = await self._settle(
            unit, row, outcome=Status.REJECTED, by="policy", reason=reason, event="request.decided",
            payload={"status": Status.REJECTED.value, "reason": reason}, note=f":no_entry: {reason}",
        )  # fmt: skip
        unit.count(lambda m: m.final(row.tenant, row.action, Status.REJECTED.value))
        return decided

    async def _settle(
        self,
        unit: Unit,
        row: Request,
        *,
        outcome: Status,
        by: str,
        reason: str | None,
        event: str,
        payload: dict[str, Any],
        note: str | None = None,
        status: Status | None = None,
        actor: str | None = None,
    ) -> Request:
        await self._settle_many(unit, [_Settle(row, outcome, by, reason, event, payload, note, status, actor)])
        return row

    async def _settle_many(self, unit: Unit, settles: Sequence[_Settle]) -> None:
        """Decide each request, audit it and queue what a decision causes: a few statements for any number.

        Each locked row in ``settles`` is brought up to date in memory by the write (no read back).
        """
        if not settles:
            return
        tx, now = unit.tx, unit.now
        decisions = [
            Decision(s.row.id, s.row.version, outcome=s.outcome, by=s.by, reason=s.reason, status=s.status)
            for s in settles
        ]
        # The locked rows are brought up to date in memory by the write: no read back of each decision.
        rows = {s.row.id: s.row for s in settles}
        if await tx.requests.decide_many(decisions, now=now, rows=rows) != len(decisions):
            # The caller holds the row locks, so this is unreachable; if it ever happens, nothing of it commits.
            raise Conflict("this request changed while it was being decided; please try again")
        events, effects = [], []
        for s in settles:
            # The version in force now: an expiry's on_timeout, for one, is read from it.
            payload = {**s.payload, "policy_version": self.policies.version(s.row.tenant)}
            events.append(NewEvent(s.row.tenant, s.event, now, payload, s.row.id, s.actor))
            text = s.note
            if text is None:
                card = render.card(s.row, [], [], None, for_stage=s.row.stage)
                text = blocks.outcome_line(replace(card, decided_for=s.for_user))
            # A decision changes neither the tenant, the mode nor the callback: the row as locked tells the effects.
            effects.extend(self._decided_effects(s.row, text))
            effects.extend(self._tell_requester(s.row))
            unit.decided.append(s.row.id)
        await tx.audit.append_many(events)
        await tx.outbox.enqueue_many(effects, now=now)

    @staticmethod
    def _decided_effects(row: Request, note: str) -> list[NewItem]:
        """What every decision causes: cards re-rendered, a note in their threads, the agent's callback."""
        effects = [
            new_item(row.tenant, Effect.UPDATE_CARDS, UpdateCards(request_id=row.id)),
            new_item(row.tenant, Effect.THREAD, Thread(request_id=row.id, text=note)),
        ]
        if row.mode is Mode.ASYNC and row.callback_url:
            effects.append(new_item(row.tenant, Effect.CALLBACK, Callback(request_id=row.id), callback_key(row.id)))
        # The request leaves every reviewer's App Home queue.
        effects.append(new_item(row.tenant, Effect.REFRESH_HOMES, RefreshHomes(request_id=row.id)))
        return effects

    def _tell_requester(self, row: Request) -> list[NewItem]:
        """The person the request was made for hears how it was decided: only a request a person reviewed
        (every one settled here had a card), decided (not withdrawn), made for a Slack user, in a tenant that
        has not turned it off (``slack: {notify_requester: false}``). Sent once (its dedupe key)."""
        policy = self.policies.tenants.get(row.tenant)
        if row.kind == QUESTION or row.status is Status.CANCELLED or policy is None:
            return []
        if not policy.manifest.slack.notify_requester or not is_user_id(row.on_behalf_of):
            return []
        assert row.on_behalf_of is not None
        payload = TellRequester(request_id=row.id, user=row.on_behalf_of)
        return [new_item(row.tenant, Effect.TELL_REQUESTER, payload, requester_key(row.id))]

    async def edit(self, unit: Unit, row: Request, edit: EditApplied) -> Request:
        """A reviewer edited the params before approving (bot.service.edits judged the edit against the policy).

        The params are replaced (the agent's are kept as ``original_params``) and the approvals cast on the old
        ones withdrawn: they approved something else. With ``edit.opened`` the request moves to the route the
        policy gives the edited params: its current stages are superseded (their pools stop counting, their
        deadlines never fire) and the new ones open, each with its card. The editor's own approval is not
        counted here: the caller counts it through the ballots, in this unit, once the request is edited.
        """
        tx, now = unit.tx, unit.now
        stage = max((s.index for s in edit.opened), default=row.stage)
        changed = ParamsEdit(edit.params, edit.by, edit.approvals or row.approvals_required, stage)
        if not await replace_params(tx.session, row, changed, now=now):
            raise Conflict("this request changed while it was being edited; please try again")
        await withdraw_approvals(tx.session, row.id)
        await supersede(tx.session, row.id, edit.superseded, now=now)
        await tx.stages.open_stages(list(edit.opened), now=now)
        await tx.audit.append_many([NewEvent(row.tenant, render.EDITED, now, edit.payload, row.id, edit.by)])
        # The new cards first: a thread note queued after them reaches their threads too.
        effects = [
            new_item(row.tenant, Effect.POST_CARD, PostCard(request_id=row.id, stage=i), post_key(row.id, i))
            for i in (s.index for s in edit.opened)
        ]
        effects += [
            new_item(row.tenant, Effect.THREAD, Thread(request_id=row.id, text=edit.note)),
            new_item(row.tenant, Effect.UPDATE_CARDS, UpdateCards(request_id=row.id)),
            new_item(row.tenant, Effect.REFRESH_HOMES, RefreshHomes(request_id=row.id)),
        ]
        await tx.outbox.enqueue_many(effects, now=now)
        return row

    async def tell_admins(self, unit: Unit, tenant: str, text: str, *, dedupe_key: str | None = None) -> None:
        """A direct message to each of the tenant's admins (something went wrong that a person must see);
        with ``dedupe_key``, sent once per admin whoever else queues the same key."""
        policy = self.policies.tenants.get(tenant)
        for admin in policy.manifest.admins if policy else []:
            key = f"{dedupe_key}:{admin}" if dedupe_key else None
            await enqueue(unit.tx, tenant, Effect.DM, DirectMessage(user=admin, text=text), unit.now, key)


@dataclass(frozen=True, slots=True)
class EditApplied:
    """An edit the policy let through (see :meth:`Transitions.edit`)."""

    by: str
    params: Mapping[str, Any]
    payload: dict[str, Any]  # the audit event's
    note: str  # the thread's
    approvals: int | None = None  # the new route's (or 1 when the policy needs no review); None: unchanged
    opened: Sequence[NewStage] = ()  # the new route's stages
    superseded: Sequence[int] = ()  # the old route's stage indices


@dataclass(frozen=True, slots=True)
class VotedOut:
    """A request the votes decided (see :meth:`Transitions.decide_many_by_votes`)."""

    row: Request
    outcome: Status
    by: str  # whose vote decided it
    reason: str | None
    pool: str  # the pool of the stage it was decided in
    for_user: str | None = None  # whom ``by`` stood in for, a delegate deciding


@dataclass(frozen=True, slots=True)
class _Settle:
    """One request to decide (see :meth:`Transitions._settle_many`)."""

    row: Request
    outcome: Status
    by: str
    reason: str | None
    event: str
    payload: dict[str, Any]
    note: str | None = None
    status: Status | None = None
    actor: str | None = None
    for_user: str | None = None  # whom the deciding voter stood in for (the note says so)
