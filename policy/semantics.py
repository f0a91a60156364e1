"""What a manifest must get right beyond its schema: the pools it names exist (or are plausibly made
in Slack), each chain can give the approvals asked, each ``require:`` quorum can be met by distinct
people, and the settings that only work together (sample rates, callbacks, a default pool) are set.

Run by :func:`policy.loader.load_text` on a manifest that validated.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any

from policy.errors import Problem, Severity
from policy.models import ActionRule, Manifest, RouteRule
from policy.types import Mode, UnknownAction
from policy.votes import match_quorum
from policy.yamldoc import Mark, YamlDoc

# A place in a manifest: keys, and list indexes (`rules[0]`).
KeyPath = tuple[str | int, ...]


def problem_at(
    severity: Severity, message: str, file: str, tenant: str | None, action: str | None, mark: Mark | None
) -> Problem:
    """A problem found at ``mark`` in the file (None: the file as a whole)."""
    return Problem(
        severity, message, file, tenant or None, action, mark.line if mark else None, mark.column if mark else None
    )


# Records one problem: severity, message, the manifest path it points at, the action concerned.
_Add = Callable[[Severity, str, KeyPath, str | None], None]


def semantic_checks(manifest: Manifest, doc: YamlDoc, file: str) -> list[Problem]:
    """Every problem of these checks, errors and warnings, pointing at the place in the file."""
    problems: list[Problem] = []
    tenant = manifest.tenant
    pools = manifest.pools
    default_pool = manifest.defaults.default_pool

    def add(severity: Severity, message: str, path: KeyPath, action: str | None = None) -> None:
        problems.append(problem_at(severity, message, file, tenant, action, doc.mark(path)))

    if default_pool and default_pool not in pools:
        add(
            Severity.WARNING,
            f"default_pool '{default_pool}' is not defined here (create it from Slack)",
            ("defaults", "default_pool"),
        )
    for name, rule in manifest.actions.items():
        path = ("actions", name)
        _action_checks(name, rule, manifest, add, path)
    if manifest.defaults.unknown_action is UnknownAction.REQUIRE_APPROVAL and not default_pool:
        add(
            Severity.WARNING,
            "unknown actions require approval but defaults.default_pool is not set: they will fail closed",
            ("defaults",),
        )
    return problems


def _pools_named(name: str, rule: ActionRule | RouteRule, pools: Mapping[str, Any], add: _Add, path: KeyPath) -> None:
    named: list[tuple[str | None, KeyPath]] = [
        (getattr(rule, key), (*path, key)) for key in ("reviewer_pool", "fallback", "escalate_to")
    ]
    if isinstance(rule, ActionRule):
        for i, line in enumerate(rule.require or ()):
            named += [(getattr(line, key), (*path, "require", i, key)) for key in ("pool", "fallback", "escalate_to")]
    for pool, where in named:
        if pool and pool not in pools:
            close = difflib.get_close_matches(pool, sorted(pools), n=2, cutoff=0.8)
            if close:
                # A character or two off a pool this manifest defines: a typo, not a pool made in Slack.
                meant = " or ".join(f"'{c}'" for c in close)
                add(Severity.ERROR, f"no pool '{pool}' here: did you mean {meant}?", where, name)
            else:
                add(
                    Severity.WARNING,
                    f"pool '{pool}' is not defined here (create it from Slack with /hitl pool create)",
                    where,
                    name,
                )


_CHAIN_OR_APPROVALS = {"approvals", "require_two_reviewers", "reviewer_pool", "fallback", "escalate_to"}


def _action_checks(name: str, rule: ActionRule, manifest: Manifest, add: _Add, path: KeyPath) -> None:
    pools = manifest.pools
    _pools_named(name, rule, pools, add, path)
    for i, route in enumerate(rule.rules):
        where = (*path, "rules", i)
        _pools_named(name, route, pools, add, where)
        if route.overrides().keys() & _CHAIN_OR_APPROVALS:
            _approvals_check(name, rule.routed(route), manifest, add, where)
        if route.mode is Mode.SAMPLE and route.sample_rate is None:
            add(Severity.ERROR, "mode: sample needs sample_rate (a fraction between 0 and 1)", (*where, "mode"), name)
    if rule.rules and not rule.approval_required:
        add(Severity.WARNING, "approval_required is false: its rules never apply", (*path, "rules"), name)
    if rule.require:
        _quorum_check(name, rule, manifest, add, path)
    else:
        _approvals_check(name, rule, manifest, add, path)
    chain = rule.chain(manifest.defaults.default_pool)
    if rule.approval_required and not chain:
        add(Severity.WARNING, "no reviewer_pool and no defaults.default_pool: requests will fail closed", path, name)
    if rule.mode is Mode.SAMPLE and rule.sample_rate is None:
        add(Severity.ERROR, "mode: sample needs sample_rate (a fraction between 0 and 1)", (*path, "mode"), name)
    if rule.approval_required and rule.effective_mode is Mode.ASYNC and not manifest.callbacks.allowed_hosts:
        add(
            Severity.WARNING,
            "async action but callbacks.allowed_hosts is empty: no callback can be delivered",
            path,
            name,
        )


def _approvals_check(name: str, rule: ActionRule, manifest: Manifest, add: _Add, path: KeyPath) -> None:
    pools = manifest.pools
    chain = rule.chain(manifest.defaults.default_pool)
    need = rule.required_approvals
    # Pools whose size is known here (defined, and not filled from a Slack user group).
    sizes = {p: len(set(pools[p].members)) for p in chain if p in pools and not pools[p].usergroup}
    if chain and len(sizes) == len(chain) and all(size < need for size in sizes.values()):
        counts = ", ".join(f"{p}: {n}" for p, n in sizes.items())
        add(
            Severity.ERROR,
            f"approvals: {need} but no pool in the chain has that many members ({counts})",
            (*path, "approvals") if rule.approvals is not None else (*path, "require_two_reviewers"),
            name,
        )
    else:
        for pool, size in sizes.items():
            if size < need:
                add(
                    Severity.WARNING,
                    f"pool '{pool}' has {size} member(s), fewer than the {need} approvals needed: it will be skipped",
                    path,
                    name,
                )


def _quorum_check(name: str, rule: ActionRule, manifest: Manifest, add: _Add, path: KeyPath) -> None:
    """Each ``require:`` line can be met by its pools, and the lines together by distinct people.

    Judged on pools of known size only (defined, and not filled from a Slack user group), as for
    ``approvals``: each line on its first pool, then the lines' first pools together.
    """
    pools = manifest.pools
    lines = rule.require or []

    def known(pool: str) -> bool:
        return pool in pools and not pools[pool].usergroup

    for i, line in enumerate(lines):
        where = (*path, "require", i)
        chain = line.chain()
        sizes = {p: len(set(pools[p].members)) for p in chain if known(p)}
        if len(sizes) == len(chain) and all(size < line.approvals for size in sizes.values()):
            counts = ", ".join(f"{p}: {n}" for p, n in sizes.items())
            add(
                Severity.ERROR,
                f"require line {i + 1} needs {line.approvals} approval(s) but no pool of it has that many members"
                f" ({counts})",
                (*where, "approvals") if "approvals" in line.model_fields_set else (*where, "pool"),
                name,
            )
            return
        for pool, size in sizes.items():
            if size < line.approvals:
                add(
                    Severity.WARNING,
                    f"pool '{pool}' has {size} member(s), fewer than the {line.approvals} approvals require line"
                    f" {i + 1} needs: it will be skipped",
                    where,
                    name,
                )
    if len(lines) > 1 and all(known(line.pool) for line in lines):
        slots = [(line.approvals, frozenset(pools[line.pool].members)) for line in lines]
        people = sorted(frozenset().union(*(m for _, m in slots)))
        matched = sum(len(f) for f in match_quorum(slots, people))
        needed = sum(n for n, _ in slots)
        if matched < needed:
            described = " and ".join(
                f"line {i + 1} ({line.approvals} from '{line.pool}')" for i, line in enumerate(lines)
            )
            add(
                Severity.ERROR,
                f"require cannot be met by distinct people: {described} need {needed} different people, but their"
                f" members can fill only {matched} (one person counts once)",
                (*path, "require"),
                name,
            )
