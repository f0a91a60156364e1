"""Helpers for policy tests: build manifests from small YAML texts."""

from __future__ import annotations

import textwrap

from policy import Problem, TenantPolicy, load_text


def load(text: str, *, file: str = "t.yaml") -> tuple[TenantPolicy | None, list[Problem]]:
    return load_text(textwrap.dedent(text), file=file, default_tenant="t")


def load_ok(text: str) -> TenantPolicy:
    policy, problems = load(text)
    assert policy is not None, [str(p) for p in problems]
    return policy
