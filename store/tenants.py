"""Tenants, their agent API keys (stored hashed) and callback secrets."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store._sql import IdFactory, rowcount, upsert_insert
from store.audit import GENESIS_HASH, SYSTEM_CHAIN, AuditLog
from store.errors import Conflict, InvalidName, NotFound, TenantUnknown
from store.models import ApiKey, AuditHead, Tenant
from store.models.tenants import CallbackSecret

NAME_RE = re.compile(r"[a-z0-9_-]{1,64}")
KEY_PREFIX = "cs_"
# An agent's name on its API key: shown to reviewers, so readable words, not markup.
AGENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}")


def check_name(name: str, what: str = "tenant") -> str:
    """Return ``name`` if it is a valid tenant or pool name.

    Raises:
        InvalidName: it does not match ``[a-z0-9_-]{1,64}``.
    """
    if not NAME_RE.fullmatch(name):
        raise InvalidName(f"invalid {what} name {name!r}: use 1-64 of a-z, 0-9, _ and -")
    return name


def hash_key(key: str) -> str:
    """The stored form of an API key: hex SHA-256 (keys carry 192 random bits, no salt needed)."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class KeyHolder:
    """Whose an API key is: the tenant, and the agent as people see it (its name, or its prefix)."""

    tenant: str
    agent: str


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A freshly created API key. ``key`` is the only time the clear key exists."""

    id: str
    tenant: str
    key: str
    prefix: str
    created_at: datetime


class TenantRepository:
    """Tenants, API keys and callback secrets, within a unit of work."""

    def __init__(self, session: AsyncSession, audit: AuditLog, new_id: IdFactory) -> None:
        self._session = session
        self._audit = audit
        self._new_id = new_id

    async def ensure(self, name: str, *, now: datetime) -> Tenant:
        """Create the tenant if it does not exist (idempotent, race-safe).

        Raises:
            InvalidName: the name breaks ``[a-z0-9_-]{1,64}``.
        """
        check_name(name)
        await self._session.execute(
            upsert_insert(self._session, Tenant)
            .values(name=name, created_at=now, config_version=0)
            .on_conflict_do_nothing(index_elements=["name"])
        )
        await self._session.execute(
            upsert_insert(self._session, AuditHead)
            .values(tenant=name, seq=0, hash=GENESIS_HASH)
            .on_conflict_do_nothing(index_elements=["tenant"])
        )
        return await self.get_or_raise(name)

    async def get(self, name: str) -> Tenant | None:
        """The tenant, or None."""
        return await self._session.get(Tenant, name)

    async def get_or_raise(self, name: str) -> Tenant:
        """The tenant.

        Raises:
            TenantUnknown: no such tenant.
        """
        tenant = await self._session.get(Tenant, name, populate_existing=True)
        if tenant is None:
            raise TenantUnknown(f"unknown tenant {name!r}")
        return tenant

    async def names(self) -> list[str]:
        """Every tenant name, sorted (the system chain's row is no tenant: it is left out)."""
        query = select(Tenant.name).where(Tenant.name != SYSTEM_CHAIN).order_by(Tenant.name)
        return list((await self._session.scalars(query)).all())

    async def create_api_key(
        self, tenant: str, *, now: datetime, actor: str | None = None, name: str | None = None
    ) -> IssuedKey:
        """Create an API key ``cs_<tenant>_<48 hex>``; only its hash is stored. Audited. ``name`` says which
        agent holds it (shown on its requests' cards, in ``/hitl show`` and in the audit).

        Raises:
            TenantUnknown: no such tenant.
            InvalidName: ``name`` is not 1 to 64 letters, digits, spaces, ``.``, ``_`` or ``-``.
        """
        await self.get_or_raise(tenant)
        if name is not None and not AGENT_NAME.fullmatch(name):
            raise InvalidName(
                f"invalid agent name {name!r}: 1 to 64 letters, digits, spaces, '.', '_' or '-', starting with a"
                " letter or digit"
            )
        random_part = secrets.token_hex(24)
        key = f"{KEY_PREFIX}{tenant}_{random_part}"
        row = ApiKey(
            id=self._new_id(), tenant=tenant, prefix=random_part[:8], key_hash=hash_key(key), created_at=now, name=name
        )
        self._session.add(row)
        await self._session.flush()
        payload = {"key_id": row.id, "prefix": row.prefix, **({"name": name} if name else {})}
        await self._audit.append(tenant, "tenant.key_created", now=now, actor=actor, payload=payload)
        return IssuedKey(row.id, tenant, key, row.prefix, now)

    async def revoke_api_key(self, tenant: str, ref: str, *, now: datetime, actor: str | None = None) -> ApiKey:
        """Revoke the tenant's key whose id or display prefix is ``ref``. Audited; idempotent.

        Raises:
            NotFound: no key of this tenant matches.
            Conflict: the prefix matches several keys (use the id).
        """
        prefix = ref.removeprefix(f"{KEY_PREFIX}{tenant}_")[:8]
        rows = (
            await self._session.scalars(
                select(ApiKey).where(ApiKey.tenant == tenant, or_(ApiKey.id == ref, ApiKey.prefix == prefix))
            )
        ).all()
        if not rows:
            raise NotFound(f"no API key {ref!r} for tenant {tenant!r}")
        if len(rows) > 1:
            raise Conflict(f"{ref!r} matches {len(rows)} keys of {tenant!r}; give the key id")
        key = rows[0]
        if key.revoked_at is None:
            key.revoked_at = now
            await self._session.flush()
            await self._audit.append(
                tenant, "tenant.key_revoked", now=now, actor=actor, payload={"key_id": key.id, "prefix": key.prefix}
            )
        return key

    async def list_api_keys(self, tenant: str) -> list[ApiKey]:
        """The tenant's keys (revoked ones too), oldest first."""
        result = await self._session.scalars(
            select(ApiKey).where(ApiKey.tenant == tenant).order_by(ApiKey.created_at, ApiKey.id)
        )
        return list(result.all())

    async def authenticate(self, key: str) -> str | None:
        """The tenant a clear API key belongs to, or None if unknown or revoked."""
        holder = await self.key_holder(key)
        return None if holder is None else holder.tenant

    async def key_holder(self, key: str) -> KeyHolder | None:
        """Whose a clear API key is (tenant, agent), or None if unknown or revoked."""
        row = (
            await self._session.execute(
                select(ApiKey.tenant, ApiKey.prefix, ApiKey.name).where(
                    ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None)
                )
            )
        ).first()
        return None if row is None else KeyHolder(str(row.tenant), row.name or f"agent {row.prefix}")

    async def callback_secret(self, tenant: str, *, now: datetime) -> str:
        """The tenant's callback signing secret, created on first ask (race-safe).

        Raises:
            TenantUnknown: no such tenant.
        """
        await self.get_or_raise(tenant)
        result = await self._session.execute(
            upsert_insert(self._session, CallbackSecret)
            .values(tenant=tenant, secret=secrets.token_hex(32), created_at=now)
            .on_conflict_do_nothing(index_elements=["tenant"])
        )
        if rowcount(result) == 1:
            await self._audit.append(tenant, "tenant.callback_secret_created", now=now)
        row = await self._session.get(CallbackSecret, tenant, populate_existing=True)
        assert row is not None
        return row.secret


async def bump_config_version(session: AsyncSession, tenant: str) -> int:
    """Take the tenant's next config version; the row lock serializes concurrent changes.

    Raises:
        TenantUnknown: no such tenant.
    """
    result = await session.execute(
        update(Tenant)
        .where(Tenant.name == tenant)
        .values(config_version=Tenant.config_version + 1)
        .returning(Tenant.config_version)
        .execution_options(synchronize_session=False)
    )
    version = result.scalar_one_or_none()
    if version is None:
        raise TenantUnknown(f"unknown tenant {tenant!r}")
    return int(version)
