"""The agent API's token buckets (``bot.ratelimit``), with the time in the test's hands."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.policyset import PolicySet
from bot.ratelimit import RateLimiter, Throttled

MANIFEST = "tenant: {tenant}\ndefaults: {{unknown_action: deny}}\nrate_limits:\n{limits}"
SMALL = "  per_key: {rate: 2, burst: 3}\n  per_tenant: {rate: 4, burst: 5}\n"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def manifests(directory: Path, **limits: str) -> Path:
    for tenant, text in limits.items():
        (directory / f"{tenant}.yaml").write_text(MANIFEST.format(tenant=tenant, limits=text))
    return directory


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def limiter(tmp_path: Path, clock: Clock) -> RateLimiter:
    return RateLimiter(PolicySet(manifests(tmp_path, acme=SMALL, other=SMALL)), now=clock)


def admitted(limiter: RateLimiter, tenant: str, key: str, n: int) -> int:
    return sum(limiter.admit(tenant, key) is None for _ in range(n))


def test_a_key_gets_its_burst_then_waits_exactly_until_a_token_is_back(limiter: RateLimiter, clock: Clock) -> None:
    assert admitted(limiter, "acme", "k1", 3) == 3
    assert limiter.admit("acme", "k1") == Throttled("key", 0.5)  # one token at 2/s
    clock.now += 0.4
    refused = limiter.admit("acme", "k1")
    assert refused is not None and refused.retry_after == pytest.approx(0.1)
    clock.now += 0.1
    assert limiter.admit("acme", "k1") is None
    assert limiter.admit("acme", "k1") is not None


def test_the_tenant_bucket_caps_all_its_keys_together_and_other_tenants_are_apart(
    limiter: RateLimiter, clock: Clock
) -> None:
    assert admitted(limiter, "acme", "k1", 3) == 3
    assert admitted(limiter, "acme", "k2", 2) == 2  # the tenant's 5 are spent
    assert limiter.admit("acme", "k2") == Throttled("tenant", 0.25)
    assert limiter.admit("acme", "k3") == Throttled("tenant", 0.25)  # a fresh key too
    assert admitted(limiter, "other", "k4", 3) == 3


def test_a_refused_call_takes_no_token_from_either_bucket(limiter: RateLimiter, clock: Clock) -> None:
    assert admitted(limiter, "acme", "k1", 3) == 3
    assert admitted(limiter, "acme", "k1", 50) == 0  # refused by the key: the tenant's 2 left untouched
    assert admitted(limiter, "acme", "k2", 3) == 2
    clock.now += 0.5  # k2's own bucket had room; the tenant's was what refused it, and it spent nothing of k2's
    assert admitted(limiter, "acme", "k2", 3) == 2


def test_retry_after_is_whole_seconds_rounded_up_and_never_zero() -> None:
    assert Throttled("key", 0.01).retry_after_seconds == 1
    assert Throttled("key", 1.0).retry_after_seconds == 1
    assert Throttled("key", 1.2).retry_after_seconds == 2
    assert Throttled("tenant", 59.5).retry_after_seconds == 60


def test_a_clock_stepping_back_refills_nothing_and_drains_nothing(limiter: RateLimiter, clock: Clock) -> None:
    assert admitted(limiter, "acme", "k1", 2) == 2
    clock.now -= 3600
    assert admitted(limiter, "acme", "k1", 3) == 1


def test_idle_buckets_are_forgotten_and_a_cap_bounds_the_rest(tmp_path: Path, clock: Clock) -> None:
    roomy = "  per_key: {rate: 2, burst: 3}\n  per_tenant: {rate: 4, burst: 1000}\n"
    limiter = RateLimiter(PolicySet(manifests(tmp_path, acme=roomy)), now=clock, max_buckets=50)
    for key in range(20):
        limiter.admit("acme", f"k{key}")
    assert len(limiter) == 21  # 20 keys and the tenant
    clock.now += 1.0  # a key bucket with one token out refills in 0.5 s; the tenant's (20 out, at 4/s) does not
    limiter.admit("acme", "k0")
    assert len(limiter) == 2  # k0 and the tenant
    for key in range(200):  # all at once: none idle
        assert limiter.admit("acme", f"x{key}") is None
    assert len(limiter) == 50


def test_a_manifest_reload_applies_new_limits_to_the_next_call(tmp_path: Path, clock: Clock) -> None:
    policies = PolicySet(manifests(tmp_path, acme=SMALL))
    limiter = RateLimiter(policies, now=clock)
    assert admitted(limiter, "acme", "k1", 10) == 3
    manifests(tmp_path, acme="  per_key: {rate: 2, burst: 8}\n  per_tenant: {rate: 10, burst: 20}\n")
    assert policies.reload()
    clock.now += 10
    assert admitted(limiter, "acme", "k1", 10) == 8  # refilled up to the new burst, not the old 3


def test_a_tenant_without_a_manifest_gets_the_defaults(limiter: RateLimiter) -> None:
    assert limiter.limits("gone").per_key.rate == 1000
    assert admitted(limiter, "gone", "k1", 100) == 100
