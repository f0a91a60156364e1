"""What opening a later stage of a request writes: the stage, its audit event, the thread note and the new
card. :class:`Transitions` decides which stage opens (a chain's next pool, or a quorum line's); this only
collects the rows of many openings so that a batch writes them in a few statements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from bot.service.effects import Effect, PostCard, RefreshHomes, Thread, UpdateCards, new_item, post_key
from policy import StagePlan
from policy.routing import Skipped
from store.audit import NewEvent
from store.models import Request
from store.outbox import NewItem
from store.stages import NewStage
from store.uow import Tx

NO_DECISION = ":arrow_heading_up: No decision in time"


@dataclass(frozen=True, slots=True)
class Escalated:
    """A stage opened by an escalation: its index, pool and channel."""

    stage: int
    pool: str
    channel: str | None


@dataclass
class Openings:
    now: datetime
    stages: list[NewStage] = field(default_factory=list)
    events: list[NewEvent] = field(default_factory=list)
    effects: list[NewItem] = field(default_factory=list)

    def open(
        self,
        row: Request,
        index: int,
        stage: StagePlan,
        skipped: Sequence[Skipped],
        channel: str | None,
        *,
        from_stage: int | None,
        note: str | None,
        line: int | None = None,
        approvals: int | None = None,
        policy_version: int | None = None,
    ) -> Escalated:
        """Stage ``index`` of ``row`` opens in ``stage.pool`` (``line``: the quorum line it belongs to)."""
        remind_at = self.now + stage.remind_after if stage.remind_after else None
        self.stages.append(
            NewStage(
                row.id, index, stage.pool, channel, self.now + stage.timeout, remind_at, line=line, approvals=approvals
            )
        )
        payload = {
            "from_stage": from_stage,
            "stage": index,
            "pool": stage.pool,
            "skipped": [f"{s.pool} ({s.why})" for s in skipped],
            "policy_version": policy_version,  # whose chain gave the next stage
        }
        if line is not None:
            payload["line"] = line
        self.events.append(NewEvent(row.tenant, "request.escalated", self.now, payload, row.id))
        which = f" for require line {line + 1}" if line is not None else ""
        where = f" in <#{channel}>." if channel else "."
        text = f"{note or NO_DECISION}{which}: escalated to `{stage.pool}`{where}"
        self.effects += [
            new_item(row.tenant, Effect.THREAD, Thread(request_id=row.id, text=text)),
            new_item(row.tenant, Effect.POST_CARD, PostCard(request_id=row.id, stage=index), post_key(row.id, index)),
        ]
        return Escalated(index, stage.pool, channel)

    def refresh(self, row: Request) -> None:
        """Once per escalated request: its other cards show the escalation, and the new pool's members see it
        in their queue."""
        self.effects += [
            new_item(row.tenant, Effect.UPDATE_CARDS, UpdateCards(request_id=row.id)),
            new_item(row.tenant, Effect.REFRESH_HOMES, RefreshHomes(request_id=row.id)),
        ]

    async def write(self, tx: Tx) -> None:
        """The stages, events and effects collected (the caller moves the requests' stage counters)."""
        await tx.stages.open_stages(self.stages, now=self.now)
        await tx.audit.append_many(self.events)
        await tx.outbox.enqueue_many(self.effects, now=self.now)
