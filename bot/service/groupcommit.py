"""Group commit: concurrent callers share one transaction, each answered only after it commits.

The first caller to arrive while nothing is being written starts a drain; callers that arrive
while a batch is being written wait for the next one, so a quiet service writes each request
at once (a batch of one) and a busy one writes many per transaction, one lock acquisition
and one commit (one fsync) for all of them. Items with the same key (an idempotency key) never
share a batch: the later one waits for the next batch, where it sees the earlier one's row.

The same queue serves reads that come together (the long polls a batch of decisions wakes, the
thread notes of a batch of deliveries): one query for all of them instead of one each, each read
made after its caller asked, so none sees older data than it would have alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

Flush = Callable[[Sequence[T]], Awaitable[Sequence[R | Exception]]]


class GroupCommit(Generic[T, R]):
    def __init__(
        self, flush: Flush[T, R], *, key: Callable[[T], Hashable | None] = lambda _: None, max_batch: int = 128
    ) -> None:
        self._flush = flush
        self._key = key
        self.max_batch = max_batch
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """Write ``item`` with whatever else is waiting; its own result, or its own exception."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain(), name="group-commit")
        return await future

    async def _drain(self) -> None:
        while self._queue:
            batch = self._take()
            try:
                results: Sequence[R | Exception] = await self._flush([item for item, _ in batch])
            except Exception as exc:  # the whole batch failed (the database is down): each caller hears it
                results = [exc] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():  # its caller went away; the write stands (idempotency covers a retry)
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    def _take(self) -> list[tuple[T, asyncio.Future[R]]]:
        taken: list[tuple[T, asyncio.Future[R]]] = []
        later: list[tuple[T, asyncio.Future[R]]] = []
        keys: set[Hashable] = set()
        for entry in self._queue:
            key = self._key(entry[0])
            if len(taken) >= self.max_batch or (key is not None and key in keys):
                later.append(entry)
                continue
            if key is not None:
                keys.add(key)
            taken.append(entry)
        self._queue = later
        return taken
