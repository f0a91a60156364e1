"""Questions: an agent asks a person, a member of a pool answers on the card. No Slack, no HTTP.

A question is a request row of kind 'question' (``store.models.Request.kind``): its stage, deadline,
card, thread notes, callback, long polls and audit go through the same machinery as a request's, and
its one answer is kept in ``question_answer`` (the primary key makes a second answer impossible even
if two people's clicks race past the row lock's check). Its state changes are
:meth:`Transitions.answer`, :meth:`Transitions.expire` and :meth:`Transitions.cancel` (the agent withdrew
it; a question never escalates: it is asked of one pool). The request API never shows a question, and
this API never shows a request.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.callbacks import callback_url_problem
from bot.clock import Clock
from bot.errors import Conflict, InvalidRequest, NotFound
from bot.policyset import PolicySet
from bot.questionblocks import QuestionCard
from bot.service.effects import Effect, PostCard, new_item, post_key
from bot.service.question_models import ACTION, AnswerOut, AnswerRefusal, AskQuestion, QuestionOut, QuestionStatus
from bot.service.render import stage_at
from bot.service.transitions import QUESTION, Transitions, Unit
from policy import PoolView, Status, acting_for, cannot_serve, canonical_sha256
from policy.stages import stage_chain
from store import errors as store_errors
from store.answers import AnswerRepository
from store.audit import NewEvent
from store.models import QuestionAnswer, Request, RequestStage
from store.recording import NewRequest
from store.stages import NewStage
from store.uow import Tx, uow

_STATUS: Mapping[Status, QuestionStatus] = {
    Status.PENDING: "pending",
    Status.ANSWERED: "answered",
    Status.CANCELLED: "cancelled",
}


@dataclass(frozen=True, slots=True)
class Answered:
    """What a click or a reply did: refused (and why), or recorded as the answer."""

    refusal: AnswerRefusal | None


def question_digest(body: AskQuestion) -> str:
    """What an idempotency key is bound to: the body without its key (and never equal to a request's)."""
    return canonical_sha256({"kind": QUESTION, **body.model_dump(mode="json", exclude={"idempotency_key"})})


def question_resource(row: Request, stages: Sequence[RequestStage], answer: QuestionAnswer | None) -> QuestionOut:
    stage = stage_at(stages, row.stage)
    choices = row.params.get("choices")
    return QuestionOut(
        id=row.id,
        tenant=row.tenant,
        question=str(row.params.get("question", "")),
        choices=list(choices) if isinstance(choices, list) else None,
        # Failed closed (its channel could not be posted to) reads as expired: nobody could answer it.
        status=_STATUS.get(row.status, "expired"),
        mode=row.mode,
        pool=stage.pool if stage else None,
        answer=None
        if answer is None
        else AnswerOut(text=answer.text, choice=answer.choice, by=answer.user_id, at=answer.at),
        deadline_at=stage.deadline_at if stage and row.status is Status.PENDING else None,
        closed_at=row.decided_at,
        created_at=row.created_at,
    )


def question_card(row: Request, stages: Sequence[RequestStage], answer: QuestionAnswer | None) -> QuestionCard:
    """What the question's card shows now."""
    stage = stage_at(stages, row.stage)
    context = row.context
    choices = row.params.get("choices")
    return QuestionCard(
        tenant=row.tenant,
        request_id=row.id,
        question=str(row.params.get("question", "")),
        choices=tuple(str(c) for c in choices) if isinstance(choices, list) else (),
        status=row.status,
        pool=stage.pool if stage else None,
        deadline_at=stage.deadline_at if stage else None,
        asked_by=context.get("agent"),
        on_behalf_of=row.on_behalf_of,
        summary=context.get("summary"),
        reason=context.get("reason"),
        links=tuple(context.get("links") or ()),
        answer=answer.text if answer else None,
        answer_choice=answer.choice if answer else None,
        answered_by=answer.user_id if answer else None,
        answered_at=answer.at if answer else None,
        closed_at=row.decided_at,
    )


async def read_question(tx: Tx, row: Request) -> QuestionOut:
    """The question resource, read in the caller's unit of work."""
    answers = await AnswerRepository(tx.session).of([row.id])
    return question_resource(row, await tx.stages.stages(row.id), answers.get(row.id))


class Questions:
    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        policies: PolicySet,
        clock: Clock,
        transitions: Transitions,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.policies = policies
        self.clock = clock
        self.transitions = transitions

    # -- agents -----------------------------------------------------------------------------

    async def ask(self, tenant: str, agent: str, body: AskQuestion) -> tuple[QuestionOut, bool]:
        """Record a question and post its card; an idempotent re-ask returns the first. (resource, created).

        Raises:
            InvalidRequest: no pool named and no default pool, unknown pool, a pool nobody can answer
                from now, or a callback URL the tenant does not allow.
            Conflict: the idempotency key was used with another body (or by a request).
        """
        policy = self.policies.get(tenant)
        hosts = policy.manifest.callbacks.allowed_hosts
        if body.callback_url and (problem := callback_url_problem(body.callback_url, hosts)):
            raise InvalidRequest("callback_not_allowed", problem, "callback_url")
        pool = body.pool or policy.manifest.defaults.default_pool
        if pool is None:
            raise InvalidRequest(
                "no_pool", "name the pool to ask ('pool'): this tenant's manifest has no defaults.default_pool", "pool"
            )
        for _ in range(3):
            try:
                async with self.transitions.unit(self.clock.now()) as unit:
                    return await self._record(unit, tenant, agent, body, pool)
            except store_errors.BatchConflict:
                continue  # the key's row committed after our look-up: the next look-up replays it
        raise Conflict("this question's idempotency key is being written by another call; retry")

    async def _record(
        self, unit: Unit, tenant: str, agent: str, body: AskQuestion, pool: str
    ) -> tuple[QuestionOut, bool]:
        tx, now = unit.tx, unit.now
        digest = question_digest(body)
        if body.idempotency_key:
            earlier = (await tx.requests.by_idempotency_keys(tenant, [body.idempotency_key])).get(body.idempotency_key)
            if earlier is not None:
                if earlier.kind != QUESTION:
                    raise Conflict("this idempotency key was already used for a request")
                try:
                    return await read_question(tx, tx.requests.replay(earlier, digest)), False
                except store_errors.IdempotencyConflict as exc:
                    raise Conflict(str(exc)) from exc
        views: dict[str, PoolView] = await tx.pools.views(tenant)
        view = views.get(pool)
        if view is None:
            raise InvalidRequest("unknown_pool", f"tenant '{tenant}' has no pool '{pool}'", "pool")
        if why := cannot_serve(view, 1, body.context.on_behalf_of):
            raise InvalidRequest("pool_unavailable", f"pool '{pool}' cannot answer now: it {why}", "pool")
        # The tenant's default timeout and reminder, on the pool asked (a question never escalates).
        defaults = self.policies.get(tenant).manifest.defaults
        if body.timeout_seconds is not None:
            defaults = defaults.model_copy(update={"timeout": timedelta(seconds=body.timeout_seconds)})
        plan = stage_chain(None, defaults.model_copy(update={"default_pool": pool}))[0]
        new = NewRequest(
            id=tx.new_id(),
            tenant=tenant,
            kind=QUESTION,
            status=Status.PENDING,
            action=ACTION,
            params={"question": body.question, "choices": body.choices},
            context={**_stored_context(body), "agent": agent},
            on_behalf_of=body.context.on_behalf_of,
            workflow_id=body.context.workflow_id,
            idempotency_key=body.idempotency_key,
            body_sha256=digest,
            callback_url=body.callback_url,
            risk=body.context.risk,
            mode=body.mode,
        )
        row = (await tx.requests.create_many([new], now=now))[0]
        remind_at = now + plan.remind_after if plan.remind_after else None
        stages = await tx.stages.open_stages(
            [NewStage(row.id, 0, pool, view.channel, now + plan.timeout, remind_at)], now=now
        )
        payload = {"question": body.question, "choices": body.choices, "pool": pool, "mode": body.mode.value}
        await tx.audit.append_many([NewEvent(tenant, "question.asked", now, payload, row.id, agent)])
        card = new_item(tenant, Effect.POST_CARD, PostCard(request_id=row.id, stage=0), post_key(row.id, 0))
        await tx.outbox.enqueue_many([card], now=now)
        return question_resource(row, stages, None), True

    async def get(self, tenant: str, question_id: str) -> QuestionOut:
        """Raises NotFound (also for another tenant's question, and for a request's id)."""
        async with uow(self.sessionmaker, read_only=True) as tx:
            return await read_question(tx, await _question(tx, tenant, question_id))

    async def wait(self, tenant: str, question_id: str, seconds: float) -> QuestionOut:
        """The question once answered (or closed), or as it is after ``seconds``."""
        with self.transitions.signals.decisions.watching(question_id) as decided:
            found = await self.get(tenant, question_id)
            if found.status == "pending":
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(decided.wait(), timeout=seconds)
        return await self.get(tenant, question_id)

    async def cancel(self, tenant: str, question_id: str) -> QuestionOut:
        """The agent withdraws a pending question (:meth:`Transitions.cancel`). Raises NotFound (also for
        another tenant's question and for a request's id), Conflict if it is already answered or closed."""
        async with self.transitions.unit(self.clock.now()) as unit:
            try:
                row = await unit.tx.requests.get_for_update(tenant, question_id)
            except store_errors.NotFound as exc:
                raise NotFound(f"no question '{question_id}'") from exc
            if row.kind != QUESTION:
                raise NotFound(f"no question '{question_id}'")
            if row.status.is_final:
                raise Conflict(f"question '{question_id}' is already {_STATUS.get(row.status, 'expired')}")
            return await read_question(unit.tx, await self.transitions.cancel(unit, row))

    # -- people ----------------------------------------------------------------------------

    async def refusal_for(self, *, tenant: str, question_id: str, user: str) -> AnswerRefusal | None:
        """Would this person's answer be refused right now? (checked before opening the reply modal)."""
        async with uow(self.sessionmaker, read_only=True) as tx:
            row = await _question(tx, tenant, question_id)
            return await _refusal(tx, row, user)

    async def summary(self, *, tenant: str, question_id: str) -> tuple[str, list[str]]:
        """The question and its choices, for the reply modal."""
        async with uow(self.sessionmaker, read_only=True) as tx:
            found = await read_question(tx, await _question(tx, tenant, question_id))
        return found.question, found.choices or []

    async def answer(
        self, *, tenant: str, question_id: str, user: str, choice: int | None = None, text: str | None = None
    ) -> Answered:
        """Take ``user``'s answer: a choice's index, or written ``text``. A refused one is audited
        (``question.refused``) and changes nothing else. Raises NotFound for an unknown question."""
        async with self.transitions.unit(self.clock.now()) as unit:
            tx = unit.tx
            try:
                row = await tx.requests.get_for_update(tenant, question_id)
            except store_errors.NotFound as exc:
                raise NotFound("this question no longer exists") from exc
            if row.kind != QUESTION:
                raise NotFound("this question no longer exists")
            choices = row.params.get("choices") or []
            refusal = await _refusal(tx, row, user)
            if refusal is None and choice is not None and not 0 <= choice < len(choices):
                refusal = AnswerRefusal.BAD_CHOICE
            answer = str(choices[choice]) if refusal is None and choice is not None else (text or "").strip()
            if refusal is None and not answer:
                raise InvalidRequest("empty_answer", "the answer is empty", "answer")
            if refusal is None and not await AnswerRepository(tx.session).add(
                row.id, text=answer, choice=choice, user=user, now=unit.now
            ):
                refusal = AnswerRefusal.ALREADY_ANSWERED  # the backstop: the row lock makes this unreachable
            if refusal is not None:
                payload = {"refusal": refusal.value, "choice": choice}
                await tx.audit.append_many([NewEvent(tenant, "question.refused", unit.now, payload, row.id, user)])
                return Answered(refusal)
            await self.transitions.answer(unit, row, by=user, text=answer, choice=choice)
        return Answered(None)


def _stored_context(body: AskQuestion) -> dict[str, Any]:
    context = body.context.model_dump(mode="json", exclude_none=True)
    if not context.get("labels"):
        context.pop("labels", None)
    return context


async def _question(tx: Tx, tenant: str, question_id: str) -> Request:
    row = await tx.requests.get(tenant, question_id) if len(question_id) <= 64 else None
    if row is None or row.kind != QUESTION:
        raise NotFound(f"no question '{question_id}'")
    return row


async def _refusal(tx: Tx, row: Request, user: str) -> AnswerRefusal | None:
    """Why ``user`` may not answer ``row`` now: closed, asked on their behalf, or not in its pool."""
    if row.status is Status.ANSWERED:
        return AnswerRefusal.ALREADY_ANSWERED
    if row.status is not Status.PENDING:
        return AnswerRefusal.CLOSED
    stage = stage_at(await tx.stages.stages(row.id), row.stage)
    pool = (await tx.pools.views(row.tenant)).get(stage.pool) if stage else None
    # A delegate in force answers for the member they stand in for, as they would vote: never a
    # question asked on their own behalf or on behalf of the person they stand in for.
    standing_in = acting_for(user, [pool]) if pool is not None else None
    if row.on_behalf_of is not None and row.on_behalf_of in (user, standing_in):
        return AnswerRefusal.OWN_QUESTION
    if pool is None or user not in pool.voters:
        return AnswerRefusal.NOT_IN_POOL
    return None
