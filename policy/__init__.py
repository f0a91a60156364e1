"""Policy: manifests in, decisions out. Pure: no I/O, no clock, no Slack, no database.

Public API::

    load_dir(path) -> LoadResult            every tenant of a directory, with problems
    load_text(text, file=..., default_tenant=...) -> (TenantPolicy | None, [Problem])
    decide(policy, request, sample_draw=, pending_in_workflow=) -> Verdict
    route(stages, approvals, pools, on_behalf_of) -> Route     which stages can serve
    admit(user=, status=, open_pools=, on_behalf_of=, votes=) -> Refusal | None
    tally(approvals_required=, votes=) -> TallyResult
    tally_quorum(lines=, votes=) -> TallyResult   a cross-pool quorum (`require:`), one person counted once
    run_tests(policy) -> [TestOutcome]      the manifest's own ``tests:`` block
"""

from policy.checks import TestOutcome, run_tests
from policy.decide import Verdict, context_of, decide, on_timeout_for, quorum_for, receipt_ttl_for, stages_for
from policy.errors import ConditionError, ManifestError, PolicyError, Problem, Severity
from policy.loader import LoadResult, TenantPolicy, load_dir, load_text
from policy.routing import QuorumRoute, Route, Skipped, cannot_serve, next_stage, route, route_quorum
from policy.sensitive import canonical_json, canonical_sha256, digest, mask, params_sha256, redact
from policy.types import (
    ActionRequest,
    CastVote,
    Choice,
    Mode,
    OnTimeout,
    Outcome,
    PoolView,
    QuorumPlan,
    Refusal,
    RequestContext,
    Risk,
    StagePlan,
    Status,
    TallyResult,
)
from policy.votes import acting_for, admit, approvers_of, eligible_voters, match_quorum, tally, tally_quorum

__all__ = [
    "ActionRequest",
    "CastVote",
    "Choice",
    "ConditionError",
    "LoadResult",
    "ManifestError",
    "Mode",
    "OnTimeout",
    "Outcome",
    "PolicyError",
    "PoolView",
    "Problem",
    "QuorumPlan",
    "QuorumRoute",
    "Refusal",
    "RequestContext",
    "Risk",
    "Route",
    "Severity",
    "Skipped",
    "StagePlan",
    "Status",
    "TallyResult",
    "TenantPolicy",
    "TestOutcome",
    "Verdict",
    "acting_for",
    "admit",
    "approvers_of",
    "cannot_serve",
    "canonical_json",
    "canonical_sha256",
    "context_of",
    "decide",
    "digest",
    "eligible_voters",
    "load_dir",
    "load_text",
    "mask",
    "match_quorum",
    "next_stage",
    "on_timeout_for",
    "params_sha256",
    "quorum_for",
    "receipt_ttl_for",
    "redact",
    "route",
    "route_quorum",
    "run_tests",
    "stages_for",
    "tally",
    "tally_quorum",
]
