"""Running a manifest's own ``tests:`` block."""

from __future__ import annotations

from dataclasses import dataclass

from policy.decide import decide
from policy.loader import TenantPolicy
from policy.models import PolicyTest
from policy.types import ActionRequest, RequestContext


@dataclass(frozen=True, slots=True)
class TestOutcome:
    __test__ = False  # not a pytest class

    tenant: str
    index: int
    name: str
    passed: bool
    failures: tuple[str, ...]


def run_tests(policy: TenantPolicy) -> list[TestOutcome]:
    """Decide each test's request and compare with what it expects."""
    return [_run(policy, i, test) for i, test in enumerate(policy.manifest.tests, start=1)]


def _run(policy: TenantPolicy, index: int, test: PolicyTest) -> TestOutcome:
    name = test.name or f"{test.action} {test.params}"
    try:
        context = RequestContext.model_validate(test.context)
    except ValueError as exc:
        return TestOutcome(policy.tenant, index, name, False, (f"invalid context: {exc}",))
    verdict = decide(
        policy, ActionRequest(tenant=policy.tenant, action=test.action, params=test.params, context=context)
    )
    expect = test.expect
    pools = [s.pool for s in verdict.stages]
    failures: list[str] = []

    def check(what: str, wanted: object, got: object) -> None:
        if wanted is not None and wanted != got:
            failures.append(f"expected {what} {wanted}, got {got}")

    check("outcome", expect.outcome.value, verdict.outcome.value)
    check("pool", expect.pool, pools[0] if pools else None)
    check("pools", expect.pools, pools)
    check("approvals", expect.approvals, verdict.approvals)
    check("mode", expect.mode.value if expect.mode else None, verdict.mode.value)
    check("timeout", expect.timeout, verdict.stages[0].timeout if verdict.stages else None)
    check("undo_operation", expect.undo_operation, verdict.undo_operation)
    check("on_timeout", expect.on_timeout.value if expect.on_timeout else None, verdict.on_timeout.value)
    check("rule", expect.rule, verdict.rule or 0)
    if expect.require is not None:
        wanted = [f"{line.pool}: {line.approvals}" for line in expect.require]
        got = [f"{line.pool}: {line.approvals}" for line in verdict.quorum]
        check("require", wanted, got)
    if expect.reason_contains and expect.reason_contains not in verdict.reason:
        failures.append(f"expected the reason to mention {expect.reason_contains!r}, got {verdict.reason!r}")
    return TestOutcome(policy.tenant, index, name, not failures, tuple(failures))
