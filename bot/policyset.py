"""The loaded manifests: refused at start if invalid, kept at the last good version if a reload fails."""

from __future__ import annotations

import logging
from pathlib import Path

from bot.errors import NotFound
from policy import LoadResult, ManifestError, TenantPolicy, load_dir

log = logging.getLogger(__name__)


class PolicySet:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._result = load_dir(directory).raise_for_errors()

    @property
    def result(self) -> LoadResult:
        return self._result

    @property
    def tenants(self) -> dict[str, TenantPolicy]:
        return self._result.tenants

    def get(self, tenant: str) -> TenantPolicy:
        """Raises NotFound when the tenant has no manifest."""
        policy = self._result.tenants.get(tenant)
        if policy is None:
            raise NotFound(f"tenant '{tenant}' has no policy manifest loaded")
        return policy

    def reload(self) -> bool:
        """Load the directory again; on any error keep serving the last good version."""
        try:
            self._result = load_dir(self.directory).raise_for_errors()
        except ManifestError as exc:
            log.error("manifest reload failed, keeping the last good version:\n%s", exc)
            return False
        return True
