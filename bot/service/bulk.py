"""Bulk approval: several pending requests of one action approved in one step. No Slack here.

A burst of look-alike requests (twenty refunds after an outage) is tedious one card at a time. The
reviewer picks several from their queue, checks them side by side, and approves them all at once;
yet nothing about a vote changes. Each selected request is submitted to :class:`Ballots` as its
own click, so each gets its own vote, tally, audit event, thread note and card update, and is
judged again when it is counted: a request decided (or otherwise out of reach) between the
selection and the confirmation is refused on its own, audited like any refused click, and the
others still count. The clicks are submitted together, so they share the group commit's batches.

What is offered follows the App Home queue's rule (:func:`bot.service.admission.judge`): pending
requests the person may vote on now. What is confirmed is judged anew, never trusted from the offer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.errors import NotFound
from bot.logs import log_context
from bot.policyset import PolicySet
from bot.service import render
from bot.service.admission import judge
from bot.service.ballots import Ballots, Click
from bot.service.models import VoteOutcome
from policy import CastVote, Choice, PoolView, Refusal, Risk, Status, mask
from store import stats as queries
from store.models import Request, RequestStage, Vote
from store.uow import uow

# At most this many requests in one bulk approval: the confirmation view carries their ids in its
# private_metadata (3,000 characters), and its table takes a block per request (a modal holds 100).
BULK_MAX = 50


@dataclass(frozen=True, slots=True)
class BulkItem:
    """A request as the bulk views show it: masked params, approvals so far, and whether ``user`` may
    approve it now (``refusal`` None) or why not."""

    tenant: str
    request_id: str
    action: str
    summary: str
    risk: Risk
    created_at: datetime
    params: Mapping[str, Any]  # sensitive fields already masked, as on the card
    status: Status
    approvals: int
    approvals_required: int
    refusal: Refusal | None
    params_sha256: str = ""  # of the params as shown: the confirmation carries it (see CardRef.params)


@dataclass(frozen=True, slots=True)
class BulkOutcome:
    """What approving one selected request did. ``item`` is read after the votes committed."""

    request_id: str
    item: BulkItem | None  # None: no such request (any more) in this tenant
    refusal: Refusal | None = None
    decided: bool = False
    failed: bool = False  # an error of ours, logged; nothing was recorded for this request

    @property
    def counted(self) -> bool:
        return self.item is not None and self.refusal is None and not self.failed


class BulkApprovals:
    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        policies: PolicySet,
        ballots: Ballots,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.policies = policies
        self.ballots = ballots

    async def offer(self, *, tenant: str, action: str, user: str) -> tuple[list[BulkItem], int]:
        """The pending requests of ``action`` that ``user`` may approve now, highest risk then oldest
        first, at most :data:`BULK_MAX`; and how many more there are beyond those."""
        async with uow(self.sessionmaker, read_only=True) as tx:
            rows = await queries.pending_rows(tx.session, tenant, riskiest_first=True)
            views = await tx.pools.views(tenant) if rows else {}
        items = [
            item
            for row in rows
            if row.request.action == action
            and (item := self._item(row.request, row.votes, row.stages, views, user)).refusal is None
        ]
        return items[:BULK_MAX], max(0, len(items) - BULK_MAX)

    async def preflight(self, *, tenant: str, action: str, user: str, request_ids: Sequence[str]) -> list[BulkItem]:
        """The selected requests as they stand now, in the order given, each with whether ``user`` may
        still approve it. Ids of another tenant or another action are left out: never confirmed."""
        ids = list(dict.fromkeys(request_ids))[:BULK_MAX]
        async with uow(self.sessionmaker, read_only=True) as tx:
            rows = await tx.requests.by_ids(ids)
            mine = [rows[i] for i in ids if i in rows and rows[i].tenant == tenant and rows[i].action == action]
            pending = [r.id for r in mine if r.status is Status.PENDING]
            votes, stages = await tx.votes.votes_of(pending), await tx.stages.stages_of(pending)
            views = await tx.pools.views(tenant) if pending else {}
        return [self._item(r, votes.get(r.id, []), stages.get(r.id, []), views, user) for r in mine]

    async def approve(
        self, *, tenant: str, user: str, request_ids: Sequence[str], shown: Sequence[str] = ()
    ) -> list[BulkOutcome]:
        """Approve each of ``request_ids`` as ``user``, each its own click (judged, counted or refused,
        audited); one request's refusal or error never stops the others. Outcomes in the order given.
        ``shown``: per request, the start of the params' digest the check step showed (a request edited
        since is refused as stale, not approved with params nobody checked)."""
        digests = dict(zip(request_ids, shown, strict=False))
        ids = list(dict.fromkeys(request_ids))[:BULK_MAX]
        clicks = [Click(tenant, rid, user, Choice.APPROVE, bulk=True, params_shown=digests.get(rid)) for rid in ids]
        with log_context(tenant=tenant):
            results = await asyncio.gather(*(self.ballots.cast(c) for c in clicks), return_exceptions=True)
        after = {item.request_id: item for item in await self._read(tenant, ids, user)}
        outcomes: list[BulkOutcome] = []
        for rid, result in zip(ids, results, strict=True):
            if isinstance(result, NotFound):
                outcomes.append(BulkOutcome(rid, None))
            elif isinstance(result, VoteOutcome):
                outcomes.append(BulkOutcome(rid, after.get(rid), result.refusal, result.decided))
            elif isinstance(result, Exception):
                outcomes.append(BulkOutcome(rid, after.get(rid), failed=True))
            else:  # a BaseException (cancellation) is not ours to swallow
                raise result
        return outcomes

    async def _read(self, tenant: str, ids: Sequence[str], user: str) -> list[BulkItem]:
        async with uow(self.sessionmaker, read_only=True) as tx:
            rows = await tx.requests.by_ids(ids)
            mine = [rows[i] for i in ids if i in rows and rows[i].tenant == tenant]
            votes = await tx.votes.votes_of([r.id for r in mine])
        # Whether the person could vote again no longer matters: the outcome says what happened.
        return [self._item(r, votes.get(r.id, []), [], {}, user, judged=False) for r in mine]

    def _item(
        self,
        row: Request,
        votes: Sequence[Vote],
        stages: Sequence[RequestStage],
        views: Mapping[str, PoolView],
        user: str,
        *,
        judged: bool = True,
    ) -> BulkItem:
        cast = [CastVote(user=v.user_id, choice=v.choice, at=v.at, for_user=v.for_user) for v in votes]
        return BulkItem(
            tenant=row.tenant,
            request_id=row.id,
            action=row.action,
            summary=render.summary(row, self.policies.tenants.get(row.tenant)),
            risk=row.risk or Risk.MEDIUM,
            created_at=row.created_at,
            params=mask(row.params, row.sensitive),
            status=row.status,
            approvals=len({v.user for v in cast if v.choice is Choice.APPROVE}),
            approvals_required=row.approvals_required,
            refusal=judge(row, user, cast, stages, views) if judged else None,
            params_sha256=row.params_sha256,
        )
