"""The loaded manifests: refused at start if invalid; on a reload, each file that fails keeps its
tenant at the last good version while the others move on."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bot.errors import NotFound
from policy import LoadResult, Problem, Severity, TenantPolicy, load_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Broken:
    """A manifest file a reload could not take: its tenant (if it ever loaded) keeps its last good version."""

    file: str
    tenant: str | None  # the tenant last loaded from this file; None for a file that never loaded
    problems: tuple[Problem, ...]
    content_sha256: str | None = None  # of the file as read: one broken version, whoever reads it

    @property
    def message(self) -> str:
        """Every error, each with its file, line and column."""
        return "\n".join(str(p) for p in self.problems)


@dataclass(frozen=True, slots=True)
class Reload:
    """What a reload found, before it is applied: the tenants as they would then be served."""

    tenants: dict[str, TenantPolicy]
    files: dict[str, str]  # tenant -> the file it was loaded from
    # Of the tenants added, or whose file's text differs from the one this replica last read: that text.
    texts: Mapping[str, str] = field(default_factory=dict)
    broken: tuple[Broken, ...] = ()
    removed: tuple[str, ...] = ()  # tenants whose file is gone: still served until a restart
    previous: Mapping[str, str] = field(default_factory=dict)  # of the changed ones: as this replica last read it

    @property
    def changed(self) -> tuple[str, ...]:
        """The tenants a reload takes in (added, or their file changed here), by name."""
        return tuple(sorted(self.texts))


class PolicySet:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._result = load_dir(directory).raise_for_errors()
        # Each tenant's file as this replica last read it. A reload takes a tenant only when its file changed
        # on this replica's disk: a replica whose copy of a file is older than another's (a config volume
        # synced a minute later) then never records that older text as the newest version, and a version
        # approved in Slack stays served through reloads of other files.
        self._file_texts = {tenant: policy.text for tenant, policy in self._result.tenants.items()}

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

    def prepare(self) -> Reload:
        """Read the directory again and work out what would be served; nothing changes until :meth:`apply`.

        A file with errors keeps the tenant last loaded from it at that version; a tenant whose file
        disappeared keeps being served (dropping a tenant under its pending requests takes a restart).
        """
        try:
            fresh = load_dir(self.directory)
        except OSError as exc:  # a file vanished or became unreadable between listing and reading
            problem = Problem(Severity.ERROR, f"could not read: {exc}", file=str(self.directory))
            kept = Broken(str(self.directory), None, (problem,))
            return Reload(dict(self.tenants), dict(self._result.files), broken=(kept,))
        served = dict(self.tenants)
        file_of = dict(self._result.files)
        tenant_of = {file: tenant for tenant, file in file_of.items()}
        by_file: dict[str, list[Problem]] = {}
        for problem in fresh.errors:
            by_file.setdefault(problem.file or str(self.directory), []).append(problem)
        tenants: dict[str, TenantPolicy] = {}
        files: dict[str, str] = {}
        texts: dict[str, str] = {}
        for tenant, policy in fresh.tenants.items():
            if fresh.files[tenant] in by_file:
                continue  # loaded, but its file also has an error (a second tenant of the same name)
            if tenant in served and self._file_texts.get(tenant) == policy.text:
                tenants[tenant], files[tenant] = served[tenant], file_of.get(tenant, fresh.files[tenant])
                continue  # its file is as this replica last read it: what is served (any version) stays
            tenants[tenant], files[tenant], texts[tenant] = policy, fresh.files[tenant], policy.text
        broken = []
        for file, problems in by_file.items():
            last = tenant_of.get(file)
            broken.append(Broken(file, last, tuple(problems), _sha256_of(file)))
            if last is not None and last not in tenants:
                tenants[last], files[last] = served[last], file_of[last]
        removed = tuple(sorted(t for t in served if t not in tenants))
        for tenant in removed:
            tenants[tenant], files[tenant] = served[tenant], file_of[tenant]
        previous = {t: self._file_texts[t] for t in texts if t in self._file_texts}
        return Reload(tenants, files, texts, tuple(broken), removed, previous)

    def version(self, tenant: str) -> int | None:
        """The policy version in force for ``tenant`` (None before it is recorded, or for no such tenant)."""
        policy = self._result.tenants.get(tenant)
        return policy.version if policy is not None else None

    def stamp(self, versioned: Mapping[str, TenantPolicy]) -> None:
        """Serve these policies (the same manifests, their stored ``version`` set) in place of the loaded ones."""
        tenants = {**self._result.tenants, **self._newer(versioned)}
        self._result = LoadResult(tenants=tenants, problems=self._result.problems, files=self._result.files)

    def apply(self, reload: Reload) -> None:
        """Serve what :meth:`prepare` found: one swap, so a request sees one version or the other."""
        tenants = {**reload.tenants, **self._newer(reload.tenants)}
        self._result = LoadResult(tenants=tenants, problems=[], files=reload.files)
        self._file_texts.update(reload.texts)

    def _newer(self, policies: Mapping[str, TenantPolicy]) -> dict[str, TenantPolicy]:
        """Of ``policies``, each one, or the one served where that is a later version. A reload or a follower's
        read that began before another writer served a later version would otherwise put it back, for a second,
        after someone was told the later one is in force (numbers only grow: a rollback is a new version)."""
        kept: dict[str, TenantPolicy] = {}
        for tenant, policy in policies.items():
            served = self._result.tenants.get(tenant)
            newer = served is not None and served.version is not None and (policy.version or 0) < served.version
            kept[tenant] = served if newer and served is not None else policy
        return kept

    def reload(self) -> bool:
        """Load the directory again and apply it; False if any file failed (those keep their last good version)."""
        prepared = self.prepare()
        for broken in prepared.broken:
            log.error("manifest reload: %s kept at its last good version:\n%s", broken.file, broken.message)
        self.apply(prepared)
        return not prepared.broken


def _sha256_of(file: str) -> str | None:
    try:
        return hashlib.sha256(Path(file).read_bytes()).hexdigest()
    except OSError:
        return None
