"""Every manifest snippet of the seed documents loads and means what it plainly says."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from policy import ActionRequest, Mode, Outcome, Verdict, decide, load_dir

SEEDS = Path(__file__).parent / "seeds"


def _decide(tenant: str, action: str, **params: object) -> Verdict:
    """Decide with the seed directory named after its one tenant."""
    result = load_dir(SEEDS / tenant)
    assert result.errors == []
    return decide(result.tenants[tenant], ActionRequest(tenant=tenant, action=action, params=params))


@pytest.mark.parametrize(
    ("action", "params", "outcome"),
    [
        ("send_email", {"amount": 150}, Outcome.REVIEW),
        ("send_email", {"amount": 100}, Outcome.AUTO_APPROVE),
        ("process_refund", {"amount": 501}, Outcome.REVIEW),
        ("process_refund", {"amount": 500}, Outcome.AUTO_APPROVE),
        ("update_record", {"customer": {"tier": "enterprise"}}, Outcome.REVIEW),
        ("update_record", {"customer": {"tier": "free"}}, Outcome.AUTO_APPROVE),
    ],
)
def test_inflection1_conditions(action: str, params: dict[str, object], outcome: Outcome) -> None:
    verdict = _decide("inflection1", action, **params)
    assert verdict.outcome is outcome


@pytest.mark.parametrize(
    ("action", "pools", "timeout", "approvals"),
    [
        ("process_refund", ["support_tier_1", "support_tier_2", "senior_support"], timedelta(minutes=5), 1),
        ("delete_customer_data", ["security_team", "security_lead"], timedelta(minutes=15), 2),
        ("process_invoice", ["finance_team", "cfo_office"], timedelta(hours=4), 1),
    ],
)
def test_inflection2_routing(action: str, pools: list[str], timeout: timedelta, approvals: int) -> None:
    verdict = _decide("inflection2", action)
    assert verdict.outcome is Outcome.REVIEW
    assert [s.pool for s in verdict.stages] == pools
    assert all(s.timeout == timeout for s in verdict.stages)
    assert verdict.approvals == approvals


def test_inflection3_tenants_are_separate_with_their_own_thresholds() -> None:
    result = load_dir(SEEDS / "inflection3")
    assert result.errors == []
    assert sorted(result.tenants) == ["tenant_a", "tenant_b"]
    a, b = result.tenants["tenant_a"], result.tenants["tenant_b"]
    refund = {"amount": 700}
    assert decide(a, ActionRequest(tenant="tenant_a", action="process_refund", params=refund)).outcome is Outcome.REVIEW
    assert (
        decide(b, ActionRequest(tenant="tenant_b", action="process_refund", params=refund)).outcome
        is Outcome.AUTO_APPROVE
    )
    verdict = decide(b, ActionRequest(tenant="tenant_b", action="process_refund", params={"amount": 1001}))
    assert [s.pool for s in verdict.stages] == ["tenant_b_finance"]


def test_inflection4_modes_reviewer_and_on_rejection() -> None:
    sync = _decide("inflection4", "process_refund")
    assert (sync.mode, [s.pool for s in sync.stages]) == (Mode.SYNC, ["support_tier_1"])
    assert sync.stages[0].timeout == timedelta(minutes=5)
    async_ = _decide("inflection4", "provision_test_env")
    assert async_.mode is Mode.ASYNC
    assert [s.pool for s in async_.stages] == ["platform_team"]
    assert async_.undo_operation == "rollback_provision"
    assert async_.stages[0].timeout == timedelta(minutes=60)


def test_sync_async_hybrid_manifest() -> None:
    delete = _decide("sync_async", "delete_production_data")
    assert (delete.outcome, delete.mode, delete.undo_operation) == (Outcome.REVIEW, Mode.SYNC, None)
    provision = _decide("sync_async", "provision_test_environment")
    assert (provision.mode, provision.undo_operation) == (Mode.ASYNC, "destroy_environment")
    assert provision.stages == ()  # no pool named: the bot fails closed
    crm = _decide("sync_async", "update_crm_record")
    assert crm.outcome is Outcome.AUTO_APPROVE


def test_timeout_minutes_spelling() -> None:
    result = load_dir(SEEDS / "sync_async")
    rule = result.tenants["sync_async"].manifest.actions["delete_production_data"]
    assert rule.timeout == timedelta(minutes=15)
