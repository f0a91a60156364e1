"""What the outbox worker asks of a delivery handler, and the failures a handler reports to it.

A handler delivers the items of a few kinds (:class:`Delivery`); the worker finds it by kind,
tells it which items a pass claimed (:class:`PassAware`: read what they need at once), commits what
it reports of a delivery together with the item's acknowledgement (:class:`Recording`), and sorts
what it raises: :class:`RetryAfter` is retried exactly that much later, :class:`GiveUp`
is marked failed at once, anything else is retried after the worker's backoff.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ValidationError

from store.models import OutboxItem
from store.uow import Tx

P = TypeVar("P", bound=BaseModel)


class Delivery(Protocol):
    """Carries out the outbox items of ``kinds``; raising means "not delivered".

    ``deliver`` returns None, or (for a :class:`Recording` delivery) what the delivery left to record:
    the worker hands it to ``record`` in the transaction that acknowledges the item.
    """

    @property
    def kinds(self) -> Collection[str]: ...

    async def deliver(self, item: OutboxItem) -> object | None: ...


@runtime_checkable
class PassAware(Protocol):
    """A delivery that wants to know which of its items the worker claimed in a new batch (optional),
    to read what they need once rather than once per item."""

    async def begin_pass(self, items: Sequence[OutboxItem]) -> None: ...


@runtime_checkable
class Recording(Protocol):
    """A delivery whose outcome is written with its acknowledgement (optional): the items delivered
    together are recorded and acknowledged in one transaction, so a crash leaves each either recorded
    and acknowledged or neither (then delivered again, and its earlier post is found and adopted)."""

    async def record(self, tx: Tx, outcomes: Sequence[Any]) -> bool:
        """Write ``outcomes`` (what ``deliver`` returned); True if that queued more outbox items."""
        ...


class RetryAfter(Exception):
    """Deliver this item again after ``seconds`` (the receiver said so: Slack's ``Retry-After``).

    ``reached=False``: this attempt never got to the receiver (a 429, or its turn not come), so it is
    not counted, and the retry does not look for what it might have left.
    """

    def __init__(self, seconds: float, error: str, *, reached: bool = True) -> None:
        super().__init__(error)
        self.seconds = seconds
        self.reached = reached


class GiveUp(Exception):
    """No retry can deliver this item (its payload cannot be read): mark it failed now."""


def parse(model: type[P], item: OutboxItem) -> P:
    """The item's payload as ``model``; a payload that does not fit it never will (GiveUp)."""
    try:
        return model.model_validate(item.payload)
    except ValidationError as exc:
        raise GiveUp(f"unreadable {item.kind} payload: {exc}") from exc
