"""What a ``/hitl`` command answers, as typed values (rendered by :mod:`bot.commands.blocks`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.commands.audit import AuditAnswer
from bot.commands.policy_changes import PolicyChangeAnswer
from bot.queue import QueueItem
from bot.reviewblocks import TrailLine
from policy import QuorumRoute, Route, TenantPolicy, Verdict
from policy.types import Risk, Status


@dataclass(frozen=True, slots=True)
class PoolInfo:
    name: str
    channel: str | None
    members: tuple[str, ...]
    away: tuple[str, ...]
    cannot_serve: str | None = None  # why the pool cannot take a request now, if it cannot
    stand_ins: tuple[tuple[str, str], ...] = ()  # (away member, their delegate) for delegations in force


@dataclass(frozen=True, slots=True)
class HelpAnswer:
    tenants: tuple[str, ...]
    admin_of: tuple[str, ...]
    topic: str | None = None


@dataclass(frozen=True, slots=True)
class PoolsAnswer:
    tenant: str
    pools: tuple[PoolInfo, ...]
    is_admin: bool
    delegations: tuple[tuple[str, str, datetime | None], ...] = ()  # in force: (delegator, delegate, until)


@dataclass(frozen=True, slots=True)
class PoolAnswer:
    tenant: str
    pool: PoolInfo
    at: datetime | None = None  # shown as it was at this moment
    version: int | None = None  # the config version in force then (None: now)


@dataclass(frozen=True, slots=True)
class ChangeAnswer:
    """A change done (or nothing to do, with why)."""

    tenant: str
    pool: str
    done: str  # what changed, in words ("" when nothing did)
    unchanged: str = ""  # what was already so
    version: int | None = None  # the new config version


@dataclass(frozen=True, slots=True)
class PendingAnswer:
    tenant: str
    pool: str | None
    items: tuple[QueueItem, ...]
    now: datetime


@dataclass(frozen=True, slots=True)
class ShowAnswer:
    tenant: str
    request_id: str
    action: str
    summary: str
    status: Status
    risk: Risk | None
    created_at: datetime
    approvals_required: int
    votes: tuple[tuple[str, str, str | None], ...]  # (user, choice, reason)
    stages: tuple[tuple[str, datetime], ...]  # (pool, deadline)
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None
    trail: tuple[TrailLine, ...]
    # The agent's decision callback when it has not gone through: (state, attempts, last error).
    callback: tuple[str, int, str | None] | None = None
    reveals: tuple[tuple[datetime, str | None, str], ...] = ()  # (when, who, which field): masked params revealed
    question: str | None = None  # a question's text (a request of kind 'question'): shown as asked, not as an action
    answer: tuple[str, str, datetime] | None = None  # a question's answer: (text, who, when)


@dataclass(frozen=True, slots=True)
class PoolStats:
    pool: str
    requests: int
    approved: int
    rejected: int
    timed_out: int
    pending: int
    p50: timedelta | None
    p95: timedelta | None
    sla_breaches: int
    escalations: int


@dataclass(frozen=True, slots=True)
class StatsAnswer:
    tenant: str
    label: str
    since: datetime
    pools: tuple[PoolStats, ...]
    by_status: Mapping[Status, int]


@dataclass(frozen=True, slots=True)
class PolicyAnswer:
    tenant: str
    policy: TenantPolicy
    action: str | None = None


@dataclass(frozen=True, slots=True)
class WhoCanAnswer:
    tenant: str
    action: str
    params: Mapping[str, Any]
    on_behalf_of: str | None
    verdict: Verdict
    route: Route | None  # None unless the verdict is review
    people: Mapping[str, tuple[str, ...]]  # pool -> who would be asked (present, not the person acted for)
    channels: Mapping[str, str | None]
    quorum: QuorumRoute | None = None  # a cross-pool quorum's lines, routed (then ``route`` is None)


@dataclass(frozen=True, slots=True)
class ChangeLine:
    version: int
    at: datetime
    actor: str | None
    kind: str
    pool: str | None
    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class HistoryAnswer:
    tenant: str
    changes: tuple[ChangeLine, ...]  # newest first
    total: int


Answer = (
    HelpAnswer | PoolsAnswer | PoolAnswer | ChangeAnswer | PendingAnswer | ShowAnswer | StatsAnswer
    | PolicyAnswer | WhoCanAnswer | HistoryAnswer | AuditAnswer | PolicyChangeAnswer
)  # fmt: skip
