"""What the outbox worker asks of a delivery handler, and the failures a handler reports to it.

A handler delivers the items of a few kinds (:class:`Delivery`); the worker finds it by kind,
and sorts what it raises: :class:`RetryAfter` is retried exactly that much later, :class:`GiveUp`
is marked failed at once, anything else is retried after the worker's backoff.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ValidationError

from store.models import OutboxItem

P = TypeVar("P", bound=BaseModel)


class Delivery(Protocol):
    """Carries out the outbox items of ``kinds``; raising means "not delivered"."""

    @property
    def kinds(self) -> Collection[str]: ...

    async def deliver(self, item: OutboxItem) -> None: ...


@runtime_checkable
class PassAware(Protocol):
    """A delivery that wants to know when the worker claims a new batch (optional)."""

    def begin_pass(self) -> None: ...


class RetryAfter(Exception):
    """Deliver this item again after ``seconds`` (the receiver said so: Slack's ``Retry-After``)."""

    def __init__(self, seconds: float, error: str) -> None:
        super().__init__(error)
        self.seconds = seconds


class GiveUp(Exception):
    """No retry can deliver this item (its payload cannot be read): mark it failed now."""


def parse(model: type[P], item: OutboxItem) -> P:
    """The item's payload as ``model``; a payload that does not fit it never will (GiveUp)."""
    try:
        return model.model_validate(item.payload)
    except ValidationError as exc:
        raise GiveUp(f"unreadable {item.kind} payload: {exc}") from exc
