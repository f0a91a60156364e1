"""API keys are remembered for a few seconds: a revoked key stops working within that time."""

from __future__ import annotations

import asyncio

from bot.api.keys import MAX_KEYS, KeyCache


class Store:
    def __init__(self) -> None:
        self.keys = {"cs_acme_good": "acme"}
        self.lookups = 0

    async def tenant(self, key: str) -> str | None:
        self.lookups += 1
        return self.keys.get(key)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def test_a_known_key_is_read_once_per_ttl_and_a_revoked_one_stops_within_it() -> None:
    store, clock = Store(), Clock()
    cache = KeyCache(store.tenant, ttl=5, clock=clock)
    assert [await cache.holder("cs_acme_good") for _ in range(3)] == ["acme"] * 3
    assert store.lookups == 1
    del store.keys["cs_acme_good"]  # revoked by the CLI in another process
    clock.t += 4.9
    assert await cache.holder("cs_acme_good") == "acme"
    clock.t += 0.2
    assert await cache.holder("cs_acme_good") is None
    assert store.lookups == 2


async def test_unknown_keys_are_never_remembered_so_a_new_key_works_at_once() -> None:
    store, clock = Store(), Clock()
    cache = KeyCache(store.tenant, ttl=5, clock=clock)
    assert await cache.holder("cs_acme_new") is None
    store.keys["cs_acme_new"] = "acme"  # created a moment later
    assert await cache.holder("cs_acme_new") == "acme"


async def test_ttl_zero_reads_every_time_and_the_cache_stays_bounded() -> None:
    store, clock = Store(), Clock()
    uncached = KeyCache(store.tenant, ttl=0, clock=clock)
    for _ in range(3):
        await uncached.holder("cs_acme_good")
    assert store.lookups == 3
    store.keys.update({f"cs_acme_{i}": "acme" for i in range(MAX_KEYS + 10)})
    bounded = KeyCache(store.tenant, ttl=60, clock=clock)
    for i in range(MAX_KEYS + 10):
        await bounded.holder(f"cs_acme_{i}")
    assert len(bounded._known) == MAX_KEYS


async def test_calls_that_miss_together_share_one_look_up() -> None:
    store, clock = Store(), Clock()
    slow = asyncio.Event()

    async def lookup(key: str) -> str | None:
        await slow.wait()
        return await store.tenant(key)

    cache = KeyCache(lookup, ttl=5, clock=clock)
    calls = [asyncio.create_task(cache.holder("cs_acme_good")) for _ in range(50)]
    await asyncio.sleep(0)
    calls[0].cancel()  # one caller hangs up: the others' look-up goes on
    slow.set()
    answers = await asyncio.gather(*calls[1:])
    assert answers == ["acme"] * 49
    assert store.lookups == 1
