"""Loading manifests: a directory of tenants into validated, compiled policies.

``manifests/<tenant>.yaml`` and ``manifests/<tenant>/policy.yaml`` both count. A file
without a ``tenant:`` key takes its tenant name from its path (the seed documents write
``tenant_a/policy.yaml`` and sometimes leave the key out).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from policy.conditions import Condition, ConditionSyntaxError, compile_condition
from policy.errors import ManifestError, Problem, Severity
from policy.models import ActionRule, Manifest
from policy.semantics import problem_at, semantic_checks
from policy.stages import quorum_lines, stage_chain
from policy.types import QuorumPlan, StagePlan
from policy.yamldoc import Mark, YamlDoc, YamlSyntaxError, parse


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
        return None, [problem_at(Severity.ERROR, f"invalid YAML: {exc}", file, None, None, mark)]
    if doc.data is None:
        doc.data = {}
    if not isinstance(doc.data, dict):
        return None, [
            problem_at(Severity.ERROR, "a manifest must be a mapping of keys", file, default_tenant, None, None)
        ]
    tenant_hint = str(doc.data.get("tenant") or default_tenant or "")
    problems = [
        problem_at(
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
            problems.append(problem_at(Severity.ERROR, msg, file, manifest.tenant, str(path[1]), mark))
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
    problems.extend(semantic_checks(manifest, doc, file))
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
        problems.append(problem_at(Severity.ERROR, text, file, tenant, _action_of(loc), doc.mark(loc)))
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
