"""Fixtures for every test: a clean environment, so real Slack tokens never leak into a test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Variables tests may read on purpose; everything else named like ours or Slack's is hidden.
_KEEP = {"COUNTERSIGN_TEST_POSTGRES_URL", "COUNTERSIGN_UPDATE_SCREENSHOTS"}


@pytest.fixture(autouse=True)
def _clean_environment() -> Iterator[None]:
    saved = {k: v for k, v in os.environ.items() if k.startswith(("SLACK_", "COUNTERSIGN_")) and k not in _KEEP}
    for key in saved:
        del os.environ[key]
    try:
        yield
    finally:
        os.environ.update(saved)


@pytest.fixture
def repo_root() -> Path:
    return ROOT


@pytest.fixture
def cli_tenants(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Manifests for the tenants CLI tests create keys for: `tenant key create` refuses a tenant no
    manifest names."""
    directory = tmp_path_factory.mktemp("cli-manifests")
    for tenant in ("acme", "globex"):
        (directory / f"{tenant}.yaml").write_text(
            f"tenant: {tenant}\npools:\n  ops: {{channel: C0OPS, members: [U0ADA]}}\n"
            "actions:\n  deploy: {reviewer_pool: ops}\n"
        )
    monkeypatch.setenv("COUNTERSIGN_MANIFESTS", str(directory))
    return directory
