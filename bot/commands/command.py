"""The commands ``/hitl`` text is read into (by :mod:`bot.commands.parse`): a frozen dataclass per verb,
and ``Command``, the union of them all (the policy changes' are in :mod:`bot.commands.policy_commands`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from bot.commands.policy_commands import PolicyDecide, PolicyEdit, PolicyRollback
from policy.types import Status

DEFAULT_WINDOW = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Targets:
    """People named in a command: user ids, and user groups still to be expanded to their members."""

    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.users or self.groups)


@dataclass(frozen=True, slots=True)
class Help:
    topic: str | None = None


@dataclass(frozen=True, slots=True)
class ListPools:
    pass


@dataclass(frozen=True, slots=True)
class PoolShow:
    pool: str
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class PoolCreate:
    pool: str
    channel: str | None = None
    members: Targets = field(default_factory=Targets)


@dataclass(frozen=True, slots=True)
class PoolAdd:
    pool: str
    members: Targets


@dataclass(frozen=True, slots=True)
class PoolRemove:
    pool: str
    members: Targets


@dataclass(frozen=True, slots=True)
class PoolChannel:
    pool: str
    channel: str | None  # None: the pool no longer has a channel


@dataclass(frozen=True, slots=True)
class PoolAway:
    pool: str
    away: bool  # False: back
    members: Targets = field(default_factory=Targets)  # empty: the person typing


@dataclass(frozen=True, slots=True)
class Pending:
    pool: str | None = None


@dataclass(frozen=True, slots=True)
class Show:
    request_id: str


@dataclass(frozen=True, slots=True)
class Stats:
    window: timedelta = DEFAULT_WINDOW
    label: str = "7d"


@dataclass(frozen=True, slots=True)
class PolicyShow:
    action: str | None = None


@dataclass(frozen=True, slots=True)
class WhoCan:
    action: str
    params: dict[str, Any] = field(default_factory=dict)
    on_behalf_of: str | None = None


@dataclass(frozen=True, slots=True)
class History:
    pass


@dataclass(frozen=True, slots=True)
class Delegate:
    """``/hitl delegate @ben [until DATE]``: Ben votes for me in my pools until the end of DATE (UTC) or ``off``."""

    delegate: str
    until: date | None = None


@dataclass(frozen=True, slots=True)
class DelegateOff:
    pass


@dataclass(frozen=True, slots=True)
class Audit:
    """``/hitl audit [action:…] [by:@…] [outcome:…] [since:…]`` (parsed in :mod:`bot.commands.audit`)."""

    action: str | None = None
    by: str | None = None
    outcome: Status | None = None
    since: str | None = None  # as typed: "7d" or a date, read against the clock when run
    before: int | None = None  # a page: events below this seq

    def words(self) -> str:
        """The filters as a command line reads them (for the "Older" button)."""
        parts = [f"action:{self.action}" if self.action else "", f"by:<@{self.by}>" if self.by else ""]
        parts += [f"outcome:{self.outcome.value}" if self.outcome else "", f"since:{self.since}" if self.since else ""]
        return " ".join(p for p in parts if p)


Command = (
    Help | ListPools | PoolShow | PoolCreate | PoolAdd | PoolRemove | PoolChannel | PoolAway
    | Pending | Show | Stats | PolicyShow | WhoCan | History | Delegate | DelegateOff | Audit
    | PolicyEdit | PolicyRollback | PolicyDecide
)  # fmt: skip

# Commands that change a tenant's configuration (the others only read).
CHANGES = (PoolCreate, PoolAdd, PoolRemove, PoolChannel, PoolAway)


@dataclass(frozen=True, slots=True)
class Parsed:
    """A command and the tenant it names (None: the one the person belongs to)."""

    command: Command
    tenant: str | None = None
