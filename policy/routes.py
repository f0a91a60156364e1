"""An action's ``rules:`` (routing by condition) and ``require:`` (a quorum across pools)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from policy.fields import Duration, Strict, read_timeout_minutes
from policy.types import Mode, OnTimeout


class QuorumLine(Strict):
    """One ``require:`` line: approvals from one pool (with its own fallback chain), met alongside the others."""

    synonyms: ClassVar[dict[str, str]] = {"timeout_minutes": "timeout"}

    pool: str
    approvals: int = Field(default=1, ge=1, le=50)
    fallback: str | None = None
    escalate_to: str | None = None
    timeout: Duration | None = None

    @model_validator(mode="before")
    @classmethod
    def _minutes(cls, data: Any) -> Any:
        if isinstance(data, str):
            raise PydanticCustomError(
                "require", "a require line is a mapping: write {{pool: {value}, approvals: 1}}", {"value": data}
            )
        return read_timeout_minutes(data)

    def chain(self) -> list[str]:
        """The line's pools: pool -> fallback -> escalate_to, without repeats."""
        chain: list[str] = []
        for pool in (self.pool, self.fallback, self.escalate_to):
            if pool and pool not in chain:
                chain.append(pool)
        return chain


def check_mode_and_approvals(
    mode: Mode | None, blocking: bool | None, sample_rate: float | None, approvals: int | None, two: bool | None
) -> None:
    """The contradictions an action and a rule can both write: ``mode`` against ``blocking``, ``sample_rate``
    without ``mode: sample``, ``require_two_reviewers`` against ``approvals``."""
    if (mode is Mode.SYNC and blocking is False) or (mode is Mode.ASYNC and blocking is True):
        raise PydanticCustomError(
            "conflict", "mode: {mode} contradicts blocking: {b}",
            {"mode": mode.value, "b": str(blocking).lower(), "key": "mode"},
        )  # fmt: skip
    if sample_rate is not None and mode is not Mode.SAMPLE:
        raise PydanticCustomError("conflict", "sample_rate only applies with mode: sample", {"key": "sample_rate"})
    if two is not None and approvals is not None and two != (approvals == 2):
        raise PydanticCustomError(
            "conflict", "require_two_reviewers contradicts approvals: {n}", {"n": approvals, "key": "approvals"}
        )


# Keys an action's `require:` replaces: naming them beside it is an error.
REPLACED_BY_REQUIRE = ("reviewer_pool", "fallback", "escalate_to", "approvals", "require_two_reviewers")


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
        if isinstance(data, dict) and "require" in data:
            raise PydanticCustomError(
                "require", "a rule cannot set require (a cross-pool quorum) in this version: set it on the action",
                {"key": "require"},
            )  # fmt: skip
        return read_timeout_minutes(data)

    @model_validator(mode="after")
    def _coherent(self) -> RouteRule:
        if not self.overrides():
            raise PydanticCustomError(
                "empty_rule",
                "this rule sets nothing: give it reviewer_pool, fallback, escalate_to, approvals, blocking, mode,"
                " timeout or on_timeout",
                {"key": "if"},
            )
        check_mode_and_approvals(self.mode, self.blocking, self.sample_rate, self.approvals, self.require_two_reviewers)
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
