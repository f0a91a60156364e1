"""The manifest schema as strict pydantic models.

Every model refuses unknown keys with a "did you mean" hint, and accepts the spellings the
seed documents use (``reviewer``, ``on_rejection``, ``threshold``, ``timeout_minutes``,
``require_two_reviewers``, ``audit_log``), normalised here so nothing downstream sees them.
Field types and the strict base are in :mod:`policy.fields`; ``rules:`` and ``require:`` in
:mod:`policy.routes`.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from policy.fields import (
    DEFAULT_RECEIPT_TTL,
    MAX_RECEIPT_TTL,
    NAME,
    Duration,
    PerSecond,
    ReceiptTtl,
    Strict,
    fraction_or_duration,
    read_timeout_minutes,
)
from policy.routes import REPLACED_BY_REQUIRE, QuorumLine, RouteRule, check_mode_and_approvals
from policy.types import Mode, OnError, OnTimeout, Outcome, Risk, UnknownAction

__all__ = ["DEFAULT_RECEIPT_TTL", "MAX_RECEIPT_TTL", "NAME", "QuorumLine", "RouteRule", "Strict"]


class SlackSettings(Strict):
    team_id: str | None = None
    # DM the person a reviewed request was made for (context.on_behalf_of) when it is decided.
    notify_requester: bool = True


class Callbacks(Strict):
    allowed_hosts: list[str] = Field(default_factory=list)


class RateLimit(Strict):
    """A token bucket: ``rate`` requests a second on average, ``burst`` at once (twice the rate if not given)."""

    rate: PerSecond
    burst: PerSecond | None = None

    @model_validator(mode="before")
    @classmethod
    def _mapping(cls, data: Any) -> Any:
        if not isinstance(data, dict | RateLimit):
            raise PydanticCustomError(
                "rate_limit", "write {rate: N, burst: M}: N requests a second, up to M at once (got {value})",
                {"value": repr(data)},
            )  # fmt: skip
        return data

    @model_validator(mode="after")
    def _room_for_one(self) -> RateLimit:
        if self.burst is not None and self.burst < 1:
            raise PydanticCustomError(
                "rate_limit", "burst must be at least 1, or no request ever passes (got {value})",
                {"value": self.burst, "key": "burst"},
            )  # fmt: skip
        return self

    @property
    def capacity(self) -> float:
        return self.burst if self.burst is not None else max(1.0, 2 * self.rate)


class RateLimits(Strict):
    """Agent API calls allowed per API key and per tenant, counted by each replica on its own.

    The defaults are about half of what one replica takes on two cores (auto-approve intake ~2,000
    requests/s): one agent past a thousand calls a second is a runaway loop, not a workload. The
    benchmarks, whose load generator is such a loop, lift them.
    """

    per_key: RateLimit = RateLimit(rate=1000, burst=2000)
    per_tenant: RateLimit = RateLimit(rate=2000, burst=4000)


class PoolSpec(Strict):
    """A reviewer pool as the manifest seeds it; membership is then managed from Slack."""

    channel: str | None = None
    members: list[str] = Field(default_factory=list)
    usergroup: str | None = None
    description: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _null_is_empty(cls, data: Any) -> Any:
        # ``support_team:`` with nothing under it is a pool named but not yet configured.
        return {} if data is None else data


class Defaults(Strict):
    synonyms: ClassVar[dict[str, str]] = {"timeout_minutes": "timeout"}

    timeout: Duration = timedelta(minutes=15)
    on_timeout: OnTimeout = OnTimeout.REJECT
    unknown_action: UnknownAction = UnknownAction.REQUIRE_APPROVAL
    on_error: OnError = OnError.REQUIRE_APPROVAL
    default_pool: str | None = None
    remind_at: Annotated[float | timedelta | None, BeforeValidator(fraction_or_duration)] = 0.5
    receipt_ttl: ReceiptTtl = DEFAULT_RECEIPT_TTL

    @model_validator(mode="before")
    @classmethod
    def _minutes(cls, data: Any) -> Any:
        return read_timeout_minutes(data)


class SensitiveField(Strict):
    """One ``sensitive:`` entry: a dotted param path, masked on cards and digested in the audit log.

    Written as the path alone (``customer.email``) or as ``{field: card_number, reveal: false}``;
    ``reveal: false`` means no reviewer may ever see the value in Slack, not even on demand.
    """

    field: str
    reveal: bool = True

    @model_validator(mode="before")
    @classmethod
    def _path_alone(cls, data: Any) -> Any:
        return {"field": data} if isinstance(data, str) else data


class ActionRule(Strict):
    """How one action type is governed."""

    synonyms: ClassVar[dict[str, str]] = {
        "reviewer": "reviewer_pool",
        "on_rejection": "undo_operation",
        "timeout_minutes": "timeout",
    }

    description: str | None = None
    approval_required: bool = True
    deny_if: str | None = None
    deny_reason: str | None = Field(default=None, max_length=500)
    condition: str | None = Field(default=None, alias="if")
    threshold: float | None = None
    params: list[str] | None = None
    reviewer_pool: str | None = None
    fallback: str | None = None
    escalate_to: str | None = None
    timeout: Duration | None = None
    approvals: int | None = Field(default=None, ge=1, le=50)
    require_two_reviewers: bool | None = None
    blocking: bool | None = None
    mode: Mode | None = None
    sample_rate: float | None = Field(default=None, ge=0, le=1)
    max_pending: int | None = Field(default=None, ge=1)
    undo_operation: str | None = None
    sensitive: list[SensitiveField] = Field(default_factory=list)
    # Params a reviewer may change before approving ("Edit & approve"; see policy/edits.py): dotted paths.
    editable: list[str] = Field(default_factory=list)
    summary: str | None = None
    on_timeout: OnTimeout | None = None
    on_error: OnError | None = None
    remind_at: Annotated[float | timedelta | None, BeforeValidator(fraction_or_duration)] = None
    receipt_ttl: ReceiptTtl | None = None
    risk: Risk = Risk.MEDIUM
    rules: list[RouteRule] = Field(default_factory=list)
    require: list[QuorumLine] | None = None
    audit_log: bool = True

    @model_validator(mode="before")
    @classmethod
    def _minutes(cls, data: Any) -> Any:
        if data is None:
            return {}
        return read_timeout_minutes(data)

    @model_validator(mode="after")
    def _coherent(self) -> ActionRule:
        if self.condition is not None and self.threshold is not None:
            raise PydanticCustomError(
                "conflict",
                "use either 'if' or 'threshold' (sugar for 'if: amount > N'), not both",
                {"key": "threshold"},
            )
        check_mode_and_approvals(self.mode, self.blocking, self.sample_rate, self.approvals, self.require_two_reviewers)
        if self.deny_reason is not None and self.deny_if is None:
            raise PydanticCustomError(
                "conflict", "deny_reason says why deny_if denies: give deny_if too", {"key": "deny_reason"}
            )
        if not self.audit_log:
            raise PydanticCustomError(
                "audit_log", "every request is audited; 'audit_log: false' cannot turn that off", {"key": "audit_log"}
            )
        if self.require is not None:
            self._require_alone()
        for path in self.sensitive_paths:
            if not re.fullmatch(r"[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*", path):
                raise PydanticCustomError(
                    "sensitive",
                    "sensitive path '{path}' is not a dotted field name",
                    {"path": path, "key": "sensitive"},
                )
        self._editable_sound()
        return self

    def _editable_sound(self) -> None:
        # An edit form is typed from the request's values: a sensitive field there would show its value
        # to every reviewer who opens it, which masking exists to prevent.
        for path in self.editable:
            if not re.fullmatch(r"[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*", path):
                raise PydanticCustomError(
                    "editable", "editable path '{path}' is not a dotted field name", {"path": path, "key": "editable"}
                )
            if any(path == s or path.startswith(s + ".") or s.startswith(path + ".") for s in self.sensitive_paths):
                raise PydanticCustomError(
                    "editable",
                    "'{path}' is sensitive: an edit form would show its value, so it cannot be editable",
                    {"path": path, "key": "editable"},
                )
            if self.params is not None and path.split(".")[0] not in self.params:
                raise PydanticCustomError(
                    "editable",
                    "editable '{path}' is not among this action's params ({known})",
                    {"path": path, "known": ", ".join(self.params), "key": "editable"},
                )
        if len(set(self.editable)) != len(self.editable):
            raise PydanticCustomError("editable", "editable lists a field twice", {"key": "editable"})

    def _require_alone(self) -> None:
        if not self.require:
            raise PydanticCustomError(
                "require", "require needs at least one line: - {{pool: NAME, approvals: N}}", {"key": "require"}
            )
        for key in REPLACED_BY_REQUIRE:
            if key in self.model_fields_set:
                raise PydanticCustomError(
                    "require",
                    "'{key}' cannot be used with require: each require line names its pool, approvals, fallback"
                    " and escalate_to",
                    {"key": key},
                )
        for i, rule in enumerate(self.rules):
            clash = sorted(rule.model_fields_set & set(REPLACED_BY_REQUIRE))
            if clash:
                raise PydanticCustomError(
                    "require",
                    "rule {n} sets {keys}, but this action's pools and approvals come from require",
                    {"n": i + 1, "keys": ", ".join(clash), "key": "rules"},
                )

    @property
    def sensitive_paths(self) -> tuple[str, ...]:
        """Every sensitive param path, in manifest order."""
        return tuple(s.field for s in self.sensitive)

    @property
    def unrevealable(self) -> frozenset[str]:
        """The sensitive paths the manifest forbids revealing (``reveal: false``)."""
        return frozenset(s.field for s in self.sensitive if not s.reveal)

    @property
    def condition_source(self) -> str | None:
        """The CEL condition, with ``threshold: N`` read as ``amount > N``."""
        if self.threshold is not None:
            n = int(self.threshold) if self.threshold.is_integer() else self.threshold
            return f"amount > {n}"
        return self.condition

    @property
    def required_approvals(self) -> int:
        if self.require:
            return sum(line.approvals for line in self.require)
        if self.approvals is not None:
            return self.approvals
        return 2 if self.require_two_reviewers else 1

    @property
    def effective_mode(self) -> Mode:
        if self.mode is not None:
            return self.mode
        return Mode.ASYNC if self.blocking is False else Mode.SYNC

    def routed(self, rule: RouteRule) -> ActionRule:
        """This action as ``rule`` routes it."""
        return self.model_copy(update={**rule.overrides(), "rules": []})

    def chain(self, default_pool: str | None) -> list[str]:
        """The stage chain reviewer_pool -> fallback -> escalate_to, without repeats."""
        if self.require:
            return self.require[0].chain()  # a quorum: its first line's chain stands for it where one chain is asked
        chain: list[str] = []
        for pool in (self.reviewer_pool or default_pool, self.fallback, self.escalate_to):
            if pool and pool not in chain:
                chain.append(pool)
        return chain


class ExpectLine(Strict):
    """A quorum line a manifest test expects: the line's first pool and its approvals."""

    pool: str
    approvals: int = Field(default=1, ge=1)


class TestExpect(Strict):
    outcome: Outcome
    pool: str | None = None
    pools: list[str] | None = None
    approvals: int | None = None
    mode: Mode | None = None
    timeout: Duration | None = None
    undo_operation: str | None = None
    reason_contains: str | None = None
    on_timeout: OnTimeout | None = None
    rule: int | None = Field(default=None, ge=0)  # which `rules:` entry applies, from 1; 0: none
    require: list[ExpectLine] | None = None  # the quorum lines, in order; [] expects none


class PolicyTest(Strict):
    """One ``tests:`` entry: a request and what the policy must answer."""

    __test__ = False  # not a pytest class

    name: str | None = None
    action: str
    params: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    expect: TestExpect


class Manifest(Strict):
    """One tenant's manifest."""

    tenant: str = Field(pattern=NAME)
    description: str | None = None
    slack: SlackSettings = Field(default_factory=SlackSettings)
    admins: list[str] = Field(default_factory=list)
    # false: config as code only; the policy changes only when this file does (Slack edits are refused).
    self_service: bool = True
    # Besides the admins, who may propose and approve policy changes from Slack (user ids).
    policy_editors: list[str] = Field(default_factory=list)
    defaults: Defaults = Field(default_factory=Defaults)
    callbacks: Callbacks = Field(default_factory=Callbacks)
    rate_limits: RateLimits = Field(default_factory=RateLimits)
    pools: dict[str, PoolSpec] = Field(default_factory=dict)
    actions: dict[str, ActionRule] = Field(default_factory=dict)
    tests: list[PolicyTest] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = {
                k: ({} if v is None and k in ("pools", "actions", "defaults", "rate_limits") else v)
                for k, v in data.items()
            }
        return data
