"""Errors of the policy package.

PolicyError
├── ManifestError        a manifest cannot be loaded; carries every Problem found
└── ConditionError       a condition could not be evaluated for a request (missing field,
                         wrong type, non-boolean result); handled per ``on_error``
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding about a manifest, with the place it was found."""

    severity: Severity
    message: str
    file: str | None = None
    tenant: str | None = None
    action: str | None = None
    line: int | None = None
    column: int | None = None

    @property
    def place(self) -> str:
        where = self.file or "<manifest>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return where

    def __str__(self) -> str:
        scope = "/".join(p for p in (self.tenant, self.action) if p)
        scope = f" [{scope}]" if scope else ""
        return f"{self.severity}: {self.place}{scope}: {self.message}"


class PolicyError(Exception):
    """Root of every error the policy package raises."""


class ManifestError(PolicyError):
    """Raised when a manifest (or a directory of them) has errors; ``problems`` lists them all."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        errors = [p for p in problems if p.severity is Severity.ERROR]
        super().__init__("\n".join(str(p) for p in errors) or "invalid manifest")


class ConditionError(PolicyError):
    """Raised when a compiled condition cannot be evaluated against a request's params."""
