"""The manifest schema as strict pydantic models.

Every model refuses unknown keys with a "did you mean" hint, and accepts the spellings the
seed documents use (``reviewer``, ``on_rejection``, ``threshold``, ``timeout_minutes``,
``require_two_reviewers``, ``audit_log``), normalised here so nothing downstream sees them.
"""

from __future__ import annotations

import difflib
import math
import re
from datetime import timedelta
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from policy.durations import parse_duration
from policy.types import Mode, OnError, OnTimeout, Outcome, Risk, UnknownAction

NAME = r"^[a-z0-9_-]+$"


def _duration(value: Any) -> Any:
    if isinstance(value, timedelta):
        if value <= timedelta(0):
            raise PydanticCustomError("duration", "duration must be longer than zero")
        return value
    if isinstance(value, bool) or not isinstance(value, str):
        raise PydanticCustomError(
            "duration", "a duration needs a unit: write e.g. 90s, 5m, 4h, 2d or '5 minutes' (got {value})",
            {"value": repr(value)},
        )  # fmt: skip
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise PydanticCustomError("duration", str(exc)) from exc


Duration = Annotated[timedelta, BeforeValidator(_duration)]

# How long a signed decision receipt is good for (docs/receipts.md): a go-ahead, not a certificate.
DEFAULT_RECEIPT_TTL = timedelta(minutes=15)
MAX_RECEIPT_TTL = timedelta(days=30)


def _receipt_ttl(value: Any) -> Any:
    ttl = _duration(value)
    if isinstance(ttl, timedelta) and ttl > MAX_RECEIPT_TTL:
        raise PydanticCustomError(
            "duration", "receipt_ttl is at most 30d (got {value})", {"value": value, "key": "receipt_ttl"}
        )
    return ttl


ReceiptTtl = Annotated[timedelta, BeforeValidator(_receipt_ttl)]


def _fraction_or_duration(value: Any) -> Any:
    """``remind_at: 50%`` (of the stage's time) or ``remind_at: 2m`` (after the stage opens)."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            pct = float(value.strip()[:-1])
        except ValueError as exc:
            raise PydanticCustomError("remind_at", "cannot read percentage {value}", {"value": repr(value)}) from exc
        if not 0 < pct < 100:
            raise PydanticCustomError(
                "remind_at", "remind_at must be between 0% and 100% (got {value})", {"value": value}
            )
        return pct / 100
    if value is False or value is None:
        return None
    return _duration(value)


class Strict(BaseModel):
    """Base: frozen, refuses unknown keys (with hints), maps synonyms to canonical names."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    # synonym -> canonical field name; both given is an error.
    synonyms: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _strict_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for alias, canonical in cls.synonyms.items():
            if alias in data:
                if canonical in data:
                    raise PydanticCustomError(
                        "synonym_conflict", "'{alias}' and '{canonical}' mean the same thing; keep one",
                        {"alias": alias, "canonical": canonical, "key": alias},
                    )  # fmt: skip
                data[canonical] = data.pop(alias)
        known = cls.known_keys()
        unknown = [k for k in data if k not in known]
        if unknown:
            key = str(unknown[0])
            close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(sorted(known))}"
            raise PydanticCustomError("unknown_key", "unknown key '{key}'{hint}", {"key": key, "hint": hint})
        return data

    @classmethod
    def known_keys(cls) -> set[str]:
        keys = set(cls.synonyms)
        for name, info in cls.model_fields.items():
            keys.add(info.alias or name)
        return keys


class SlackSettings(Strict):
    team_id: str | None = None


class Callbacks(Strict):
    allowed_hosts: list[str] = Field(default_factory=list)


def _per_second(value: Any) -> Any:
    """A positive number: requests per second, or a bucket's size."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise PydanticCustomError("rate_limit", "must be a positive number (got {value})", {"value": repr(value)})
    return float(value)


PerSecond = Annotated[float, BeforeValidator(_per_second)]


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
    remind_at: Annotated[float | timedelta | None, BeforeValidator(_fraction_or_duration)] = 0.5
    receipt_ttl: ReceiptTtl = DEFAULT_RECEIPT_TTL

    @model_validator(mode="before")
    @classmethod
    def _minutes(cls, data: Any) -> Any:
        return _timeout_minutes(data)


def _timeout_minutes(data: Any) -> Any:
    """``timeout_minutes: 15`` is ``timeout: 15m``."""
    if isinstance(data, dict) and "timeout_minutes" in data:
        if "timeout" in data:
            raise PydanticCustomError(
                "synonym_conflict", "'timeout_minutes' and 'timeout' mean the same thing; keep one",
                {"key": "timeout_minutes"},
            )  # fmt: skip
        data = dict(data)
        minutes = data.pop("timeout_minutes")
        if isinstance(minutes, bool) or not isinstance(minutes, int | float):
            raise PydanticCustomError(
                "duration",
                "timeout_minutes must be a number (got {value})",
                {"value": repr(minutes), "key": "timeout_minutes"},
            )
        if minutes <= 0:
            raise PydanticCustomError(
                "duration",
                "timeout_minutes must be positive (got {value})",
                {"value": minutes, "key": "timeout_minutes"},
            )
        try:
            data["timeout"] = timedelta(minutes=minutes)
        except OverflowError as exc:
            raise PydanticCustomError(
                "duration", "timeout_minutes is too large (got {value})", {"value": minutes, "key": "timeout_minutes"}
            ) from exc
    return data


class RouteRule(Strict):
    """One ``rules:`` entry of an action: when its ``if`` holds, the routing keys it sets replace the
    action's (the first rule that holds wins; the action's own keys apply when none does)."""

    synonyms: ClassVar[dict[str, str]] = {"reviewer": "reviewer_pool", "timeout_minutes": "timeout"}

    condition: str = Field(alias="if")
    reviewer_pool: str | None = None
    fallback: str | None = None
    escalate_to: str | None = None
    timeout: Duration | None = None
    approvals: int | None = Field(default=None, ge=1, le=50)
    require_two_reviewers: bool | None = None
    blocking: bool | None = None
    mode: Mode | None = None
    sample_rate: float | None = Field(default=None, ge=0, le=1)
    on_timeout: OnTimeout | None = None

    @model_validator(mode="before")
    @classmethod
    def _minutes(cls, data: Any) -> Any:
        return _timeout_minutes(data)

    @model_validator(mode="after")
    def _coherent(self) -> RouteRule:
        if not self.overrides():
            raise PydanticCustomError(
                "empty_rule",
                "this rule sets nothing: give it reviewer_pool, fallback, escalate_to, approvals, blocking, mode,"
                " timeout or on_timeout",
                {"key": "if"},
            )
        if (self.mode is Mode.SYNC and self.blocking is False) or (self.mode is Mode.ASYNC and self.blocking is True):
            raise PydanticCustomError(
                "conflict", "mode: {mode} contradicts blocking: {b}",
                {"mode": self.mode.value, "b": str(self.blocking).lower(), "key": "mode"},
            )  # fmt: skip
        if self.sample_rate is not None and self.mode is not Mode.SAMPLE:
            raise PydanticCustomError("conflict", "sample_rate only applies with mode: sample", {"key": "sample_rate"})
        two = self.require_two_reviewers
        if two is not None and self.approvals is not None and two != (self.approvals == 2):
            raise PydanticCustomError(
                "conflict",
                "require_two_reviewers contradicts approvals: {n}",
                {"n": self.approvals, "key": "approvals"},
            )
        return self

    def overrides(self) -> dict[str, Any]:
        """The routing keys this rule sets, as an update of its action's keys."""
        update = {name: getattr(self, name) for name in self.model_fields_set if name != "condition"}
        # A rule that picks the mode, or the approvals, replaces the action's choice whole: its
        # `blocking: false` must not meet the action's `mode: sync`.
        if update.keys() & {"blocking", "mode", "sample_rate"}:
            update = {"blocking": None, "mode": None, "sample_rate": None, **update}
        if update.keys() & {"approvals", "require_two_reviewers"}:
            update = {"approvals": None, "require_two_reviewers": None, **update}
        return update


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
    sensitive: list[str] = Field(default_factory=list)
    summary: str | None = None
    on_timeout: OnTimeout | None = None
    on_error: OnError | None = None
    remind_at: Annotated[float | timedelta | None, BeforeValidator(_fraction_or_duration)] = None
    receipt_ttl: ReceiptTtl | None = None
    risk: Risk = Risk.MEDIUM
    rules: list[RouteRule] = Field(default_factory=list)
    audit_log: bool = True

    @model_validator(mode="before")
    @classmethod
    def _minutes(cls, data: Any) -> Any:
        if data is None:
            return {}
        return _timeout_minutes(data)

    @model_validator(mode="after")
    def _coherent(self) -> ActionRule:
        if self.condition is not None and self.threshold is not None:
            raise PydanticCustomError(
                "conflict",
                "use either 'if' or 'threshold' (sugar for 'if: amount > N'), not both",
                {"key": "threshold"},
            )
        two = self.require_two_reviewers
        if two is not None and self.approvals is not None and two != (self.approvals == 2):
            raise PydanticCustomError(
                "conflict",
                "require_two_reviewers contradicts approvals: {n}",
                {"n": self.approvals, "key": "approvals"},
            )
        if (self.mode is Mode.SYNC and self.blocking is False) or (self.mode is Mode.ASYNC and self.blocking is True):
            raise PydanticCustomError(
                "conflict", "mode: {mode} contradicts blocking: {b}",
                {"mode": self.mode.value, "b": str(self.blocking).lower(), "key": "mode"},
            )  # fmt: skip
        if self.sample_rate is not None and self.mode is not Mode.SAMPLE:
            raise PydanticCustomError("conflict", "sample_rate only applies with mode: sample", {"key": "sample_rate"})
        if self.deny_reason is not None and self.deny_if is None:
            raise PydanticCustomError(
                "conflict", "deny_reason says why deny_if denies: give deny_if too", {"key": "deny_reason"}
            )
        if not self.audit_log:
            raise PydanticCustomError(
                "audit_log", "every request is audited; 'audit_log: false' cannot turn that off", {"key": "audit_log"}
            )
        for path in self.sensitive:
            if not re.fullmatch(r"[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*", path):
                raise PydanticCustomError(
                    "sensitive",
                    "sensitive path '{path}' is not a dotted field name",
                    {"path": path, "key": "sensitive"},
                )
        return self

    @property
    def condition_source(self) -> str | None:
        """The CEL condition, with ``threshold: N`` read as ``amount > N``."""
        if self.threshold is not None:
            n = int(self.threshold) if self.threshold.is_integer() else self.threshold
            return f"amount > {n}"
        return self.condition

    @property
    def required_approvals(self) -> int:
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
        chain: list[str] = []
        for pool in (self.reviewer_pool or default_pool, self.fallback, self.escalate_to):
            if pool and pool not in chain:
                chain.append(pool)
        return chain


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
