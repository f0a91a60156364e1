"""Escalation: a request's next stage opened when a deadline fires or a stage cannot be posted.

Part of :class:`bot.service.transitions.Transitions` (the one owner of a request's state changes),
kept in a module of its own for size: a mixin whose methods run in the caller's unit of work like
every other transition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from bot.errors import Conflict
from bot.policyset import PolicySet
from bot.service.openings import Escalated, Openings
from policy import PoolView, StagePlan, quorum_for, stages_for
from policy.routing import Skipped, next_stage
from store.models import Request, RequestStage

if TYPE_CHECKING:
    from bot.service.transitions import Unit

QUESTION = "question"  # Request.kind of a question: it expires where it was asked, never escalates


class Escalations:
    policies: PolicySet

    async def escalate(
        self, unit: Unit, row: Request, stages: Sequence[RequestStage], *, note: str | None = None
    ) -> Escalated | None:
        """Open the next stage that can serve (``stages``: those opened so far); None when none is left."""
        live = [s.pool for s in stages if s.superseded_at is None]  # not a route an edit replaced
        return (await self.escalate_many(unit, [(row, live)], note=note))[0]

    async def escalate_many(
        self,
        unit: Unit,
        requests: Sequence[tuple[Request, Sequence[str]]],
        *,
        pools: Mapping[str, Mapping[str, PoolView]] | None = None,
        note: str | None = None,
    ) -> list[Escalated | None]:
        """:meth:`escalate` each (request, the pools of its stages so far) in a few statements, whatever the count.

        ``pools``: each tenant's pools, if the caller has read them (otherwise read once per tenant).
        """
        tx = unit.tx
        views: dict[str, Mapping[str, PoolView]] = dict(pools or {})
        moved: list[Escalated | None] = []
        openings = Openings(unit.now)
        expected: list[tuple[str, int]] = []
        for row, reached in requests:
            policy = self.policies.tenants.get(row.tenant)
            if policy is None or row.kind == QUESTION:  # a question is asked of one pool: it expires there
                moved.append(None)
                continue
            if row.tenant not in views:
                views[row.tenant] = await tx.pools.views(row.tenant)
            chain = stages_for(policy, row.action, row.params, row.context)
            stage, skipped = next_stage(chain, reached, row.approvals_required, views[row.tenant], row.on_behalf_of)
            if stage is None:
                moved.append(None)
                continue
            channel = views[row.tenant][stage.pool].channel
            moved.append(
                openings.open(
                    row, row.stage + 1, stage, skipped, channel, from_stage=row.stage, note=note,
                    policy_version=policy.version,
                )
            )  # fmt: skip
            openings.refresh(row)
            expected.append((row.id, row.version))
        if not expected:
            return moved
        if await tx.requests.advance_many(expected, now=unit.now) != len(expected):
            raise Conflict("this request changed while it was being escalated")  # rolls the whole change back
        await openings.write(tx)
        return moved

    async def escalate_lines(
        self,
        unit: Unit,
        requests: Sequence[tuple[Request, Sequence[RequestStage], Sequence[int]]],
        *,
        pools: Mapping[str, Mapping[str, PoolView]] | None = None,
        note: str | None = None,
    ) -> list[list[Escalated] | None]:
        """Cross-pool quorums (``require:``): move each given line of each request to its next pool that can
        serve, a new stage (and card) of that line; (request, its stages so far, the lines whose stage ran out).

        Each request's lines move together or not at all: None for a request one of whose lines has no
        pool left (the caller expires it, or fails it closed), else the stages opened.
        """
        tx = unit.tx
        views: dict[str, Mapping[str, PoolView]] = dict(pools or {})
        moved: list[list[Escalated] | None] = []
        openings = Openings(unit.now)
        by_steps: dict[int, list[tuple[str, int]]] = {}
        for row, stages, lines in requests:
            policy = self.policies.tenants.get(row.tenant)
            if policy is None:
                moved.append(None)
                continue
            if row.tenant not in views:
                views[row.tenant] = await tx.pools.views(row.tenant)
            plans = {p.line: p for p in quorum_for(policy, row.action, row.params, row.context)}
            steps: list[tuple[int, StagePlan, tuple[Skipped, ...]]] = []
            for line in sorted(set(lines)):
                plan = plans.get(line)
                reached = [s.pool for s in stages if s.line == line and s.superseded_at is None]
                found = (
                    next_stage(plan.stages, reached, plan.approvals, views[row.tenant], row.on_behalf_of)
                    if plan is not None
                    else (None, ())
                )
                if found[0] is None:
                    break
                steps.append((line, found[0], found[1]))
            else:
                went = []
                for n, (line, stage, skipped) in enumerate(steps, start=1):
                    channel = views[row.tenant][stage.pool].channel
                    from_stage = max((s.index for s in stages if s.line == line), default=None)
                    went.append(
                        openings.open(
                            row, row.stage + n, stage, skipped, channel,
                            from_stage=from_stage, note=note, line=line, approvals=plans[line].approvals,
                            policy_version=policy.version,
                        )
                    )  # fmt: skip
                openings.refresh(row)
                by_steps.setdefault(len(steps), []).append((row.id, row.version))
                moved.append(went)
                continue
            moved.append(None)
        if not by_steps:
            return moved
        for steps_taken, expected in by_steps.items():
            if await tx.requests.advance_many(expected, now=unit.now, steps=steps_taken) != len(expected):
                raise Conflict("this request changed while it was being escalated")  # rolls the whole change back
        await openings.write(tx)
        return moved

    # -- edits ----------------------------------------------------------------------------
