"""Edit then approve: a reviewer changes an action's ``editable`` params and approves the edited request, as far
as the policy allows. No Slack.

Who may edit: whoever may approve now (a member of an open stage's pool, not the person the agent acts for,
the request pending); having approved the params as asked does not stop them. The edited params are decided
by the policy again with the request's context (:func:`policy.edits.judge_edit`), and the edit is:

- refused when the policy denies the edited params (``deny_if``, ``on_error: deny``) or no pool can serve
  the route they need: nothing changes, the editor is told why, the refusal is audited (``edit.refused``);
- approved when the policy needs no review for them: the editor's approval decides;
- counted on the same route when the pools and approvals are the ones the request is on: the editor's
  approval counts toward them;
- moved when they need other pools or approvals (or a quorum): the current stages are superseded and the
  new route's open, each with its card; the editor's approval counts only if they are eligible there.

Either way the approvals cast before the edit are withdrawn (they approved other params; the audit keeps
them), the agent's params are kept beside the edited ones, and one ``request.edited`` event holds both
versions (sensitive values as digests). Everything commits in one unit of work under the request's row
lock, the editor's approval included, so an edit is never half applied and never races a vote.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot import editblocks
from bot.clock import Clock
from bot.editblocks import EditRef
from bot.errors import Conflict, NotFound
from bot.logs import log_context
from bot.metrics import Metrics
from bot.payloads import CardRef
from bot.policyset import PolicySet
from bot.service import render
from bot.service.admission import judge
from bot.service.ballots import Ballots, Click
from bot.service.transitions import EditApplied, Transitions, Unit
from policy import (
    ActionRequest,
    CastVote,
    Choice,
    PoolView,
    Refusal,
    RequestContext,
    Status,
    admit,
    context_of,
    params_sha256,
    redact,
    route,
    route_quorum,
)
from policy.edits import EditableField, EditJudgement, EditRoute, apply_changes, changes, editable_fields, judge_edit
from policy.edits import parse_value as parse_field
from store.audit import NewEvent
from store.models import Request, RequestStage
from store.stages import NewStage
from store.uow import Tx


@dataclass(frozen=True, slots=True)
class EditForm:
    """What Edit & approve opens: the form's fields, or why this person may not (``refusal``, audited)."""

    refusal: Refusal | None
    ref: EditRef | None = None
    summary: str = ""
    fields: tuple[EditableField, ...] = ()


@dataclass(frozen=True, slots=True)
class EditResult:
    """What a submitted edit did."""

    refusal: Refusal | None = None  # the click does not count (audited)
    errors: Mapping[str, str] = field(default_factory=dict)  # by param path: the form is wrong, nothing written
    refused: str | None = None  # the policy refuses the edit (audited): why; nothing changed
    stale: bool = False  # the form was drawn before another edit (audited): nothing changed
    route: EditRoute | None = None
    counted: bool = False  # the editor's approval counted
    decided: bool = False  # and decided the request


class Edits:
    def __init__(self, *, policies: PolicySet, clock: Clock, transitions: Transitions, ballots: Ballots) -> None:
        self.policies = policies
        self.clock = clock
        self.transitions = transitions
        self.ballots = ballots

    async def form(self, *, ref: CardRef, user: str) -> EditForm:
        """The edit form for ``user``, or why they may not edit (audited). Raises NotFound, Conflict."""
        with log_context(tenant=ref.tenant, request_id=ref.request_id):
            async with self.transitions.unit(self.clock.now()) as unit:
                row = await _locked(unit.tx, ref.tenant, ref.request_id)
                refusal = await self._refusal(unit, row, user)
                if refusal is not None:
                    return EditForm(refusal)
                policy = self.policies.tenants.get(row.tenant)
                fields = editable_fields(row.params, render.editable(row, policy))
                if not fields:
                    raise Conflict(editblocks.NOT_EDITABLE)
                edit_ref = EditRef(t=row.tenant, r=row.id, p=row.params_sha256)
                return EditForm(None, edit_ref, render.summary(row, policy), tuple(fields))

    async def submit(
        self, *, ref: EditRef, user: str, values: Mapping[str, str | bool | None], reason: str | None
    ) -> EditResult:
        """Apply ``user``'s edit as the policy says, and count their approval where it may count."""
        with log_context(tenant=ref.tenant, request_id=ref.request_id):
            async with self.transitions.unit(self.clock.now()) as unit:
                return await self._submit(unit, ref, user, values, reason or None)

    async def _submit(
        self, unit: Unit, ref: EditRef, user: str, raw: Mapping[str, str | bool | None], reason: str | None
    ) -> EditResult:
        tx = unit.tx
        row = await _locked(tx, ref.tenant, ref.request_id)
        refusal = await self._refusal(unit, row, user)
        if refusal is not None:
            return EditResult(refusal=refusal)
        policy = self.policies.tenants.get(row.tenant)
        paths = render.editable(row, policy)
        fields = editable_fields(row.params, paths)
        if policy is None or not fields:
            raise Conflict(editblocks.NOT_EDITABLE)
        if row.params_sha256 != ref.params_sha256:
            # Someone else's edit landed after this form was drawn: it must not be overwritten unseen.
            await self._refuse(unit, row, user, "stale_form", {})  # returned, not raised: the refusal commits
            return EditResult(stale=True)
        parsed: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for f in fields:
            if f.path in raw:
                try:
                    parsed[f.path] = parse_field(f, raw[f.path])
                except ValueError as exc:
                    errors[f.path] = str(exc)
        if errors:
            return EditResult(errors=errors)
        edited = apply_changes(row.params, parsed)
        diff = [(c.path, c.before, c.after) for c in changes(row.params, edited, paths)]
        if not diff:
            return EditResult(errors={fields[0].path: editblocks.UNCHANGED})
        context = RequestContext.model_validate(context_of(row.context))
        asked = ActionRequest(tenant=row.tenant, action=row.action, params=row.params, context=context)
        stages = list(await tx.stages.stages(row.id))
        firsts: dict[int | None, RequestStage] = {}
        for s in stages:  # the route as it stands: each line's first stage the edits left in place
            if s.superseded_at is None and (s.line not in firsts or s.index < firsts[s.line].index):
                firsts[s.line] = s
        first_pools = frozenset(s.pool for s in firsts.values())
        judged = judge_edit(policy, asked, edited, approvals_now=row.approvals_required, first_pools_now=first_pools)
        payload = _payload(row, edited, judged, reason)
        payload["policy_version"] = policy.version  # the policy that judged the edit
        if judged.route is EditRoute.DENIED:
            await self._refuse(unit, row, user, "policy_denies", payload)
            return EditResult(refused=judged.reason)
        views = await tx.pools.views(row.tenant)
        opened: list[NewStage] = []
        approvals: int | None = None
        counts = True
        outcome = "Same reviewers and approvals as before: their approval counts."
        if judged.route is EditRoute.APPROVED:
            approvals = 1  # the policy needs no review: the editor's approval is enough
            outcome = "The policy needs no review for the edited params, so their approval decides."
        elif judged.route is EditRoute.MOVED:
            planned = _new_route(row, judged, views, unit)
            if isinstance(planned, str):
                payload["why"] = planned
                await self._refuse(unit, row, user, "no_pool", payload)
                return EditResult(refused=planned)
            opened, approvals = planned, judged.verdict.approvals
            pools = [views[s.pool] for s in opened if s.pool in views]
            counts = admit(user=user, status=Status.PENDING, open_pools=pools, on_behalf_of=row.on_behalf_of,
                           votes=[]) is None  # fmt: skip
            where = ", ".join(f"`{s.pool}`" + (f" (<#{s.channel}>)" if s.channel else "") for s in opened)
            theirs = "Their approval counts there." if counts else "They are not a reviewer there: it does not count."
            outcome = (
                f"The policy sends the edited request to {where}, needing {approvals} approval(s); votes on the "
                f"earlier card no longer count. {theirs}"
            )
        withdrawn = sorted({v.user_id for v in await tx.votes.votes(row.id) if v.choice is Choice.APPROVE} - {user})
        if withdrawn:
            people = " ".join(f"<@{u}>" for u in withdrawn)
            outcome += f" Approvals withdrawn (cast on the params before this edit): {people}"
        payload["withdrawn"] = withdrawn
        payload["counted"] = counts
        await self.transitions.edit(
            unit,
            row,
            EditApplied(
                by=user, params=edited, payload=payload, note=editblocks.edit_note(user, diff, outcome, reason),
                approvals=approvals, opened=opened,
                superseded=[s.index for s in stages if s.superseded_at is None] if opened else (),
            ),
        )  # fmt: skip
        decided, for_user = False, None
        if counts:
            counted = (await self.ballots.count_in(unit, [Click(row.tenant, row.id, user, Choice.APPROVE, reason)]))[0]
            if isinstance(counted, Exception):
                raise counted
            counts, decided, for_user = counted.refusal is None, counted.decided, counted.for_user
        if judged.route is EditRoute.APPROVED and counts and not decided:
            # A cross-pool quorum tallies its lines, which one approval cannot meet; the policy needs none.
            pool = next((s.pool for s in stages if s.index == row.stage), "")
            await self.transitions.decide_by_votes(
                unit, row, outcome=Status.APPROVED, by=user, reason=reason, pool=pool, for_user=for_user
            )
            decided = True
        return EditResult(route=judged.route, counted=counts, decided=decided)

    async def _refusal(self, unit: Unit, row: Request, user: str) -> Refusal | None:
        """Why ``user`` may not edit ``row`` now (audited as a refused click), or None. Their own approval of
        the params as asked does not count against them: an edit withdraws it."""
        tx = unit.tx
        if row.status is Status.PENDING:
            votes = [
                CastVote(user=v.user_id, choice=v.choice, at=v.at)
                for v in await tx.votes.votes(row.id)
                if not (v.user_id == user and v.choice is Choice.APPROVE)
            ]
            stages: Sequence[RequestStage] = list(await tx.stages.stages(row.id))
            views: Mapping[str, PoolView] = await tx.pools.views(row.tenant)
            refusal = judge(row, user, votes, stages, views)
        else:
            refusal = judge(row, user, [], [], {})
        if refusal is not None:
            payload = {"refusal": refusal.value, "choice": "edit"}
            await unit.tx.audit.append_many([NewEvent(row.tenant, "click.refused", unit.now, payload, row.id, user)])

            def bump(m: Metrics, reason: str = refusal.value) -> None:
                m.refused(reason)

            unit.count(bump)
        return refusal

    @staticmethod
    async def _refuse(unit: Unit, row: Request, user: str, why: str, payload: dict[str, Any]) -> None:
        """An edit the policy (or a newer edit) refuses: audited with both versions, nothing else written."""
        event = {**payload, "refusal": why}
        await unit.tx.audit.append_many([NewEvent(row.tenant, render.EDIT_REFUSED, unit.now, event, row.id, user)])

        def bump(m: Metrics) -> None:
            m.refused(f"edit_{why}")

        unit.count(bump)


async def _locked(tx: Tx, tenant: str, request_id: str) -> Request:
    # The row lock orders an edit against votes and deadlines on the same request.
    row = (await tx.requests.lock_many([request_id])).get(request_id)
    if row is None or row.tenant != tenant:
        raise NotFound("this request no longer exists")
    return row


def _payload(row: Request, edited: Mapping[str, Any], judged: EditJudgement, reason: str | None) -> dict[str, Any]:
    """The audit event's: both versions (sensitive values as digests), the diff, and what the policy said."""
    before, after = redact(row.params, row.sensitive), redact(edited, row.sensitive)
    return {
        "before": before,
        "after": after,
        "params_sha256_before": row.params_sha256,
        "params_sha256": params_sha256(row.action, edited),
        "changes": [{"path": p, "before": b, "after": a} for p, b, a in render.param_diff(before, after)],
        "reason": reason,
        "route": judged.route.value,
        "why": judged.reason,
    }


def _new_route(row: Request, judged: EditJudgement, views: Mapping[str, PoolView], unit: Unit) -> list[NewStage] | str:
    """The stages the edited request opens (after every stage so far), or why no pool can serve it."""
    verdict, now, base = judged.verdict, unit.now, row.stage + 1
    if verdict.quorum:
        quorum = route_quorum(verdict.quorum, views, row.on_behalf_of)
        if quorum.fails_closed:
            return f"no reviewer pool can serve the edited request: {quorum.explain()}"
        opened = []
        for n, (line, routed) in enumerate(quorum.lines):
            first = routed.stages[0]
            remind = now + first.remind_after if first.remind_after else None
            opened.append(
                NewStage(row.id, base + n, first.pool, views[first.pool].channel, now + first.timeout, remind,
                         line=line.line, approvals=line.approvals)
            )  # fmt: skip
        return opened
    plan = route(verdict.stages, verdict.approvals, views, row.on_behalf_of)
    if plan.fails_closed:
        return f"no reviewer pool can serve the edited request: {plan.explain() or 'no pool configured'}"
    first = plan.stages[0]
    remind = now + first.remind_after if first.remind_after else None
    return [NewStage(row.id, base, first.pool, views[first.pool].channel, now + first.timeout, remind)]
