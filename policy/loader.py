"""Loading manifests: a directory of tenants into validated, compiled policies.

``manifests/<tenant>.yaml`` and ``manifests/<tenant>/policy.yaml`` both count. A file
without a ``tenant:`` key takes its tenant name from its path (the seed documents write
``tenant_a/policy.yaml`` and sometimes leave the key out).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from policy.conditions import Condition, ConditionSyntaxError, compile_condition
from policy.errors import ManifestError, Problem, Severity
from policy.models import ActionRule, Manifest, RouteRule
from policy.stages import quorum_lines, stage_chain
from policy.types import Mode, QuorumPlan, StagePlan, UnknownAction
from policy.votes import match_quorum
from policy.yamldoc import Mark, YamlDoc, YamlSyntaxError, parse

# A place in a manifest: keys, and list indexes (`rules[0]`).
KeyPath = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """One ``rules:`` entry, ready: its condition, and the action as it routes it, with its stages."""

    number: int  # from 1, as people count them
    condition: Condition
    rule: ActionRule
    stages: tuple[StagePlan, ...]
    quorum: tuple[QuorumPlan, ...] = ()


@dataclass(frozen=True, slots=True)
class TenantPolicy:
    """One tenant's manifest, validated, with its conditions compiled."""

    manifest: Manifest
    source: str
    conditions: dict[str, Condition]
    # action -> its stages, computed once; "" holds the chain for actions the manifest does not name
    stages: dict[str, tuple[StagePlan, ...]]
    deny: dict[str, Condition] = field(default_factory=dict)  # action -> its deny_if
    rules: dict[str, tuple[CompiledRule, ...]] = field(default_factory=dict)
    quorum: dict[str, tuple[QuorumPlan, ...]] = field(default_factory=dict)  # action -> its require: lines
    text: str = ""  # the manifest as read: what a policy version stores, so what export gives back
    # The stored policy version this is (bot.service.policyversions); None until the service records it.
    version: int | None = None

    @property
    def tenant(self) -> str:
        return self.manifest.tenant


@dataclass(slots=True)
class LoadResult:
    """Every tenant that loaded, and every problem found (errors and warnings)."""

    tenants: dict[str, TenantPolicy] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # tenant -> file (also for tenants that failed)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity is Severity.WARNING]

    def raise_for_errors(self) -> LoadResult:
        """Raises ManifestError if anything failed; returns self otherwise."""
        if self.errors:
            raise ManifestError(self.problems)
        return self


def manifest_files(directory: Path) -> list[Path]:
    """The manifest files of a directory, in a stable order."""
    return sorted([*directory.glob("*.yaml"), *directory.glob("*/policy.yaml")])


def load_dir(directory: str | Path) -> LoadResult:
    """Load every manifest in a directory. Never raises for bad manifests: see ``problems``."""
    directory = Path(directory)
    result = LoadResult()
    if not directory.is_dir():
        result.problems.append(Problem(Severity.ERROR, "no such manifests directory", file=str(directory)))
        return result
    files = manifest_files(directory)
    if not files:
        result.problems.append(
            Problem(Severity.ERROR, "no manifests (*.yaml or */policy.yaml) found", file=str(directory))
        )
    for path in files:
        policy, problems = load_text(
            path.read_text(encoding="utf-8"), file=str(path), default_tenant=_tenant_from_path(path)
        )
        result.problems.extend(problems)
        if policy is None:
            continue
        if policy.tenant in result.tenants:
            first = result.tenants[policy.tenant].source
            result.problems.append(
                Problem(
                    Severity.ERROR, f"tenant '{policy.tenant}' is already defined in {first}", str(path), policy.tenant
                )
            )
            continue
        result.tenants[policy.tenant] = policy
        result.files[policy.tenant] = str(path)
    return result


def load_text(
    text: str, *, file: str = "<manifest>", default_tenant: str | None = None
) -> tuple[TenantPolicy | None, list[Problem]]:
    """Load one manifest from YAML text; returns the policy (None on errors) and the problems found."""
    try:
        doc = parse(text)
    except YamlSyntaxError as exc:
        mark = exc.mark
        return None, [_problem(Severity.ERROR, f"invalid YAML: {exc}", file, None, None, mark)]
    if doc.data is None:
        doc.data = {}
    if not isinstance(doc.data, dict):
        return None, [
            _problem(Severity.ERROR, "a manifest must be a mapping of keys", file, default_tenant, None, None)
        ]
    tenant_hint = str(doc.data.get("tenant") or default_tenant or "")
    problems = [
        _problem(
            Severity.ERROR, f"duplicate key '{path[-1]}'" + _dup_what(path), file, tenant_hint, _action_of(path), mark
        )
        for path, mark in doc.duplicates
    ]
    data = dict(doc.data)
    if "tenant" not in data and default_tenant:
        data["tenant"] = default_tenant
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        problems.extend(_from_validation(exc, doc, file, tenant_hint))
        return None, problems

    def compiled(source: str, rule: ActionRule, path: tuple[Any, ...]) -> Condition | None:
        try:
            return compile_condition(source, rule.params)
        except ConditionSyntaxError as exc:
            mark = _condition_mark(doc, path, exc.line, exc.column)
            msg = f"condition `{source}`: {exc}"
            problems.append(_problem(Severity.ERROR, msg, file, manifest.tenant, str(path[1]), mark))
            return None

    conditions: dict[str, Condition] = {}
    deny: dict[str, Condition] = {}
    rules: dict[str, tuple[CompiledRule, ...]] = {}
    for name, rule in manifest.actions.items():
        source = rule.condition_source
        if source is not None:
            key = "threshold" if rule.threshold is not None else "if"
            if (condition := compiled(source, rule, ("actions", name, key))) is not None:
                conditions[name] = condition
        if rule.deny_if is not None and (condition := compiled(rule.deny_if, rule, ("actions", name, "deny_if"))):
            deny[name] = condition
        routes = []
        for i, route in enumerate(rule.rules):
            if (condition := compiled(route.condition, rule, ("actions", name, "rules", i, "if"))) is not None:
                routed = rule.routed(route)
                routes.append(
                    CompiledRule(
                        i + 1, condition, routed, stage_chain(routed, manifest.defaults),
                        quorum_lines(routed, manifest.defaults),
                    )
                )  # fmt: skip
        if routes:
            rules[name] = tuple(routes)
    problems.extend(_semantic_checks(manifest, doc, file))
    if any(p.severity is Severity.ERROR for p in problems):
        return None, problems
    stages = {name: stage_chain(rule, manifest.defaults) for name, rule in manifest.actions.items()}
    stages[""] = stage_chain(None, manifest.defaults)
    quorum = {
        name: lines for name, rule in manifest.actions.items() if (lines := quorum_lines(rule, manifest.defaults))
    }
    policy = TenantPolicy(manifest, file, conditions, stages, deny, rules, quorum, text)
    return policy, problems


def _tenant_from_path(path: Path) -> str:
    return path.parent.name if path.name == "policy.yaml" else path.stem


def _dup_what(path: tuple[Any, ...]) -> str:
    if len(path) == 2 and path[0] == "actions":
        return ": the action is defined twice"
    if len(path) == 2 and path[0] == "pools":
        return ": the pool is defined twice"
    return ""


def _action_of(path: tuple[Any, ...]) -> str | None:
    return str(path[1]) if len(path) > 1 and path[0] == "actions" else None


def _problem(
    severity: Severity, message: str, file: str, tenant: str | None, action: str | None, mark: Mark | None
) -> Problem:
    return Problem(
        severity, message, file, tenant or None, action, mark.line if mark else None, mark.column if mark else None
    )


def _from_validation(exc: ValidationError, doc: YamlDoc, file: str, tenant: str) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        ctx = err.get("ctx") or {}
        if "key" in ctx:
            loc = (*loc, ctx["key"])
        where = ".".join(str(p) for p in loc[:-1] if p is not None) if "key" in ctx else ".".join(map(str, loc))
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            message = "is required"
        text = f"{where}: {message}" if where else message
        problems.append(_problem(Severity.ERROR, text, file, tenant, _action_of(loc), doc.mark(loc)))
    return problems


def _condition_mark(doc: YamlDoc, path: tuple[Any, ...], line: int, column: int) -> Mark | None:
    """Translate a position inside a condition into a position in the file."""
    if path not in doc.values:
        return doc.mark(path)
    start, style = doc.values[path]
    if style in ("|", ">"):
        return Mark(start.line + line, column + doc.indent(start.line + line))
    if line == 1:
        return Mark(start.line, start.column + column - 1 + (1 if style in ("'", '"') else 0))
    return Mark(start.line + line - 1, column + doc.indent(start.line + line - 1))


# Records one problem: severity, message, the manifest path it points at, the action concerned.
_Add = Callable[[Severity, str, KeyPath, str | None], None]


def _semantic_checks(manifest: Manifest, doc: YamlDoc, file: str) -> list[Problem]:
    problems: list[Problem] = []
    tenant = manifest.tenant
    pools = manifest.pools
    default_pool = manifest.defaults.default_pool

    def add(severity: Severity, message: str, path: KeyPath, action: str | None = None) -> None:
        problems.append(_problem(severity, message, file, tenant, action, doc.mark(path)))

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
