"""Manifest files taken in while the service runs: seeded, then served, or kept out with the admins told.

A reload is read from disk (:meth:`PolicySet.prepare`), the tenants it changes get their row and
any new pools (their ``#name`` channels resolved first, through Slack), and only then is it served:
a request never meets a tenant whose pools are not in the database yet. A file with errors keeps
its tenant at the last good version; the error is logged with its file, line and column, and the
tenant's admins get a DM about it. Every replica watches its own copy of the files and reloads on
its own, so the DM is deduplicated on the broken file's content: one message per broken version,
however many replicas found it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock
from bot.metrics import Metrics
from bot.policyset import Broken, PolicySet, Reload
from bot.service.policyversions import record_versions
from bot.service.transitions import Transitions
from policy import TenantPolicy
from store.pools import PoolSeed
from store.uow import uow

log = logging.getLogger(__name__)

# The manifests' "#name" channels of these tenants, mapped to channel ids (a Slack call, so injected).
ResolveChannels = Callable[[Sequence[TenantPolicy]], Awaitable[Mapping[str, str]]]


async def seed(
    sessionmaker: async_sessionmaker[AsyncSession],
    tenants: Sequence[TenantPolicy],
    channels: Mapping[str, str],
    now: datetime,
) -> None:
    """Each tenant gets a row and the pools its manifest names; existing pools are left as Slack changed them.
    ``channels`` maps the manifests' ``"#name"`` channels to their ids."""
    for tenant in tenants:
        async with uow(sessionmaker) as tx:
            await tx.tenants.ensure(tenant.tenant, now=now)
            seeds = {
                pool: PoolSeed(
                    channel=channels.get(spec.channel or "", spec.channel),
                    usergroup=spec.usergroup,
                    members=tuple(spec.members),
                )
                for pool, spec in tenant.manifest.pools.items()
            }
            await tx.pools.seed_from_manifest(tenant.tenant, seeds, now=now, actor="manifest")


class ManifestReloads:
    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        policies: PolicySet,
        transitions: Transitions,
        clock: Clock,
        metrics: Metrics,
        resolve: ResolveChannels,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.policies = policies
        self.transitions = transitions
        self.clock = clock
        self.metrics = metrics
        self.resolve = resolve

    async def reload(self) -> Reload:
        """Read the manifests again and serve what is valid; what failed is logged and told to its admins."""
        prepared = self.policies.prepare()
        changed = [prepared.tenants[t] for t in prepared.changed]
        try:
            if changed:
                channels = await self.resolve(changed)
                await seed(self.sessionmaker, changed, channels, self.clock.now())
            # Served only once recorded: every request then carries the version of the policy that decided it.
            versioned = await record_versions(
                self.sessionmaker, changed, self.clock.now(), served=self.policies.tenants, previous=prepared.previous
            )
        except Exception as exc:  # an unknown channel, Slack or the database away: nothing is served
            log.exception("manifest reload of %s not applied", ", ".join(prepared.changed) or "the manifests")
            text = f":warning: The new policy manifest of *{{tenant}}* could not be applied: {exc}"
            await self._tell(prepared.changed, text, key=str(exc))
            return prepared
        prepared = replace(prepared, tenants={**prepared.tenants, **versioned})
        self.policies.apply(prepared)
        self.metrics.know((t.tenant, action) for t in changed for action in t.manifest.actions)
        for name in prepared.changed:
            log.info("manifest reloaded: tenant %s from %s", name, prepared.files[name])
        for name in prepared.removed:
            log.warning("manifest of tenant %s is gone; it is served as last loaded until a restart", name)
        for broken in prepared.broken:
            log.error("manifest %s has errors; kept at its last good version:\n%s", broken.file, broken.message)
            if broken.tenant is not None:
                await self._tell([broken.tenant], _broken_text(broken), key=broken.content_sha256 or broken.message)
        return prepared

    async def _tell(self, tenants: Sequence[str], text: str, *, key: str) -> None:
        """DM each tenant's admins ``text`` (``{tenant}`` filled in), once per ``key`` and day across replicas."""
        now = self.clock.now()
        digest = hashlib.sha256(f"{key}:{now:%Y-%m-%d}".encode()).hexdigest()[:32]
        try:
            async with self.transitions.unit(now) as unit:
                for tenant in tenants:
                    await self.transitions.tell_admins(
                        unit, tenant, text.replace("{tenant}", tenant), dedupe_key=f"manifest:{tenant}:{digest}"
                    )
        except Exception:  # the log line above stands; the admins hear of the next broken version
            log.exception("could not tell the admins of %s about their manifest", ", ".join(tenants))


def _broken_text(broken: Broken) -> str:
    errors = "\n".join(f"• `{p.place}`: {p.message}" for p in broken.problems)
    return (
        f":warning: `{broken.file}` has errors, so the policy of *{broken.tenant}* stays at its last good version"
        f" until it is fixed:\n{errors}"
    )
