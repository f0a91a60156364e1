"""What a person's App Home shows, as typed values (rendered by :mod:`bot.home.blocks`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from bot.queue import QueueItem


@dataclass(frozen=True, slots=True)
class Membership:
    tenant: str
    pool: str
    away: bool


@dataclass(frozen=True, slots=True)
class BulkOffer:
    """Several requests of one action the person may approve now: offered for bulk approval."""

    tenant: str
    action: str
    count: int


@dataclass(frozen=True, slots=True)
class HomeAnswer:
    user: str
    items: tuple[QueueItem, ...]
    memberships: tuple[Membership, ...]
    admin_of: tuple[str, ...]
    now: datetime
    more: int = 0  # queue items left out (a Home tab holds 100 blocks)
    tenants: tuple[str, ...] = field(default=())
    bulk: tuple[BulkOffer, ...] = field(default=())  # actions with two or more of the queue's requests
    policy_of: tuple[str, ...] = field(default=())  # tenants whose policy the person may change from Slack
