"""The review queue as one person sees it, shared by ``/hitl pending`` and the App Home.

Which tenants a person belongs to, a pending request as they see it (may they vote on it?), and
the Block Kit lines that show one: the same in a ``/hitl`` answer and on the Home tab, so both
read them from here. No Slack here; the builders are pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.blocks import RISK_ICON, Block, cut, slack_date
from bot.policyset import PolicySet
from bot.service import render
from bot.service.admission import judge
from policy import CastVote, Choice, PoolView, Risk, TenantPolicy
from store import stats as queries
from store.uow import Tx


@dataclass(frozen=True, slots=True)
class QueueItem:
    tenant: str
    request_id: str
    action: str
    summary: str
    risk: Risk
    created_at: datetime
    pool: str | None
    approvals: int
    approvals_required: int
    deadline_at: datetime | None
    on_behalf_of: str | None = None
    can_vote: bool = True
    params_sha256: str | None = None  # of the params as listed: its buttons carry it (see CardRef.params)
    editable: bool = False  # the action lists `editable` params: the item offers Edit & approve, as its card does


# -- who is where -----------------------------------------------------------------------------


async def tenants_of(tx: Tx, policies: PolicySet, user: str) -> list[str]:
    """The tenants ``user`` belongs to (admin, policy editor, member of one of its pools, or a delegate in
    force), by name."""
    member_of = await queries.tenants_with_member(tx.session, user) | await tx.delegations.tenants_delegated_to(user)
    loaded = policies.tenants
    return sorted(
        t
        for t, policy in loaded.items()
        if t in member_of or user in policy.manifest.admins or user in policy.manifest.policy_editors
    )


def is_admin(policies: PolicySet, tenant: str, user: str) -> bool:
    policy = policies.tenants.get(tenant)
    return policy is not None and user in policy.manifest.admins


def queue_item(
    row: queries.PendingRow, policy: TenantPolicy | None, views: dict[str, PoolView], user: str
) -> QueueItem:
    """A pending request as ``user`` sees it: where it waits, how far it got, and whether they may vote."""
    request = row.request
    current = next((s for s in row.stages if s.index == request.stage), None)
    votes = [CastVote(user=v.user_id, choice=v.choice, at=v.at, for_user=v.for_user) for v in row.votes]
    refusal = judge(request, user, votes, row.stages, views)
    return QueueItem(
        tenant=request.tenant,
        request_id=request.id,
        action=request.action,
        summary=render.summary(request, policy),
        risk=request.risk or Risk.MEDIUM,
        created_at=request.created_at,
        pool=current.pool if current else None,
        approvals=len({v.user for v in votes if v.choice is Choice.APPROVE}),
        approvals_required=request.approvals_required,
        deadline_at=current.deadline_at if current else None,
        on_behalf_of=request.on_behalf_of,
        can_vote=refusal is None,
        params_sha256=request.params_sha256,
        editable=refusal is None and bool(render.editable(request, policy)),
    )


# -- Block Kit --------------------------------------------------------------------------------


def context(*texts: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": cut(t, 3000)} for t in texts[:10]]}


def date(at: datetime) -> str:
    return slack_date(at, "{date_short_pretty} {time}")


def duration(delta: timedelta) -> str:
    """``45s``, ``12m``, ``3h 5m``, ``2d 4h``: two units at most."""
    seconds = int(delta.total_seconds())
    if seconds < 60:
        return f"{max(seconds, 0)}s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if minutes < 60:
        return f"{minutes}m"
    if hours < 24:
        return f"{hours}h" + (f" {minutes % 60}m" if minutes % 60 else "")
    return f"{days}d" + (f" {hours % 24}h" if hours % 24 else "")


def item_text(item: QueueItem) -> str:
    line = f"{RISK_ICON[item.risk]} *{item.summary}*\n`{item.action}` · *{item.tenant}*"
    if item.pool:
        line += f" · pool `{item.pool}`"
    line += f" · approvals {item.approvals} of {item.approvals_required}"
    if item.on_behalf_of:
        line += f" · on behalf of <@{item.on_behalf_of}>"
    return line


def item_context(item: QueueItem, now: datetime) -> Block:
    parts = [f"{item.risk.value} risk", f"waiting {duration(now - item.created_at)}"]
    if item.deadline_at is not None:
        left = item.deadline_at - now
        parts.append(f"deadline in {duration(left)}" if left > timedelta(0) else "deadline passed")
    parts.append(f"`{item.request_id}`")
    return context(" · ".join(parts))
