"""The manifest loader never crashes: any text, any structure, only problems with places."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy import ActionRequest, Outcome, decide, load_text
from policy.models import ActionRule, Defaults, Manifest, PoolSpec

KEYS = sorted(Manifest.known_keys() | ActionRule.known_keys() | Defaults.known_keys() | PoolSpec.known_keys())
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
    st.text(max_size=20), st.sampled_from(["5m", "-1h", "4 hours", "amount > 5", "amount >", "reject", "sample", "50%"]),
)  # fmt: skip
values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), inner, max_size=5),
    ),
    max_leaves=25,
)
manifests = st.fixed_dictionaries(
    {},
    optional={
        "tenant": st.one_of(st.sampled_from(["acme", "t-1"]), st.text(max_size=10)),
        "defaults": values,
        "pools": st.dictionaries(st.sampled_from(["p1", "p2"]), values, max_size=2),
        "actions": st.dictionaries(st.sampled_from(["a", "b"]), values, max_size=2),
        "tests": values,
        "admins": values,
    },
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.text(max_size=300))
def test_any_text_loads_or_reports(text: str) -> None:
    policy, problems = load_text(text, file="f.yaml", default_tenant="t")
    assert policy is not None or problems
    assert all(p.message and p.file == "f.yaml" for p in problems)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(manifests)
def test_any_structure_loads_or_reports_and_decides(data: dict[str, Any]) -> None:
    text = yaml.safe_dump(data, allow_unicode=True)
    policy, problems = load_text(text, file="f.yaml", default_tenant="t")
    if policy is None:
        assert any(p.severity == "error" for p in problems)
        return
    for action in [*policy.manifest.actions, "unknown_action"]:
        for params in ({}, {"amount": 600}, {"amount": "x", "customer": {"tier": 1}}):
            verdict = decide(policy, ActionRequest(tenant=policy.tenant, action=action, params=params))
            assert verdict.outcome in tuple(Outcome)
            assert verdict.reason
