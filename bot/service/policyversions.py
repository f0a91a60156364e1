"""The policy versions of the manifests served: recorded at start and on every reload, before serving.

A tenant's served manifest becomes a new stored version (source 'file') when its text differs from
the tenant's latest version; otherwise it is that version. The number is then carried by the served
:class:`TenantPolicy` (``version``), so every request and decision can record the version in force
without reading the database. Replicas recording the same text at once share one version
(:mod:`store.policyversions`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from policy import TenantPolicy
from store.policyversions import NewVersion
from store.uow import uow


async def record_versions(
    sessionmaker: async_sessionmaker[AsyncSession],
    tenants: Sequence[TenantPolicy],
    now: datetime,
    *,
    served: Mapping[str, TenantPolicy] | None = None,
) -> dict[str, TenantPolicy]:
    """Each of ``tenants`` with its ``version`` set, recording a version for each text not stored yet.

    ``served``: the policies served now; a tenant whose text is the one served keeps its version without
    a database round trip (a reload re-reads every file, and most are unchanged).
    """
    stamped: dict[str, TenantPolicy] = {}
    for policy in tenants:
        current = (served or {}).get(policy.tenant)
        if current is not None and current.version is not None and current.text == policy.text:
            stamped[policy.tenant] = replace(policy, version=current.version)
            continue
        async with uow(sessionmaker) as tx:
            new = NewVersion(policy.tenant, policy.text, source="file", file=policy.source)
            recorded = await tx.policy_versions.record(new, now=now)
        stamped[policy.tenant] = replace(policy, version=recorded.number)
    return stamped
