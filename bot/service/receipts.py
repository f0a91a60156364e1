"""Signed decision receipts: issued once a decision's audit event is sealed, kept, attached to the resource.

A receipt signs the ``seq`` of the decision's audit event, and events get their ``seq`` only when the
sequencer seals them (50-100 ms after the commit, store/README.md). So a receipt is not made in the
deciding transaction: it is made the first time the resource is read after the seal, stored (the first
one stands, so every later read shows the same bytes), and ``decision.receipt`` is null until then. A long
poll that a decision answers waits for it up to ``SEAL_WAIT`` seconds (:meth:`Receipts.settle`), so agents
normally get it in that answer; with the sequencer stopped it goes out without one. Design: docs/receipts.md.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock
from bot.policyset import PolicySet
from bot.service import receipt_format
from bot.service.groupcommit import GroupCommit
from bot.service.models import KeyOut, KeysOut, ReceiptOut, RequestOut
from policy import Status, canonical_json, canonical_sha256, receipt_ttl_for
from store.models.receipts import ReceiptKey
from store.receipts import NewReceipt
from store.uow import Tx, uow

log = logging.getLogger(__name__)

# How long a long poll answered by a decision waits for its receipt (the seal), at most.
SEAL_WAIT = 1.0
# How often a waiting answer looks again (its looks are shared with every other one waiting).
SEAL_POLL = 0.02


def with_receipt(resource: RequestOut, body: str | None) -> RequestOut:
    """``resource`` carrying the stored receipt ``body`` (unchanged when there is none)."""
    if body is None or resource.decision is None:
        return resource
    decision = resource.decision.model_copy(update={"receipt": ReceiptOut.model_validate_json(body)})
    return resource.model_copy(update={"decision": decision})


def deciders(resource: RequestOut) -> list[str]:
    """Who decided: the people whose votes made the outcome, else ``policy``, ``timeout`` or ``agent``."""
    decision = resource.decision
    assert decision is not None
    choice = {Status.APPROVED: "approve", Status.REJECTED: "reject"}.get(decision.outcome)
    if resource.status in (Status.APPROVED, Status.REJECTED) and decision.by not in ("policy", "timeout", "agent"):
        people = [v.user for v in resource.votes if v.vote.value == choice]
        if people:
            return people
    return [decision.by or "policy"]


async def new_signing_key(tx: Tx, tenant: str, *, now: datetime, actor: str | None = None) -> ReceiptKey:
    """A fresh key pair becomes ``tenant``'s signing key; the one before is retired (and stays listed)."""
    private, public = receipt_format.new_key()
    kid = f"rk_{now:%Y%m%d}_{secrets.token_hex(6)}"
    return await tx.receipts.add_key(tenant, kid=kid, private_key=private, public_key=public, now=now, actor=actor)


async def signing_key(tx: Tx, tenant: str, *, now: datetime) -> ReceiptKey:
    """The tenant's signing key, made on first need."""
    return await tx.receipts.signing_key(tenant) or await new_signing_key(tx, tenant, now=now, actor="countersign")


async def public_keys(tx: Tx, tenant: str, *, now: datetime) -> KeysOut:
    """``GET /v1/keys``: the tenant's listed keys (making its first, so executors can pin it before any receipt)."""
    if await tx.receipts.signing_key(tenant) is None:
        await new_signing_key(tx, tenant, now=now, actor="countersign")
    views = await tx.receipts.keys([tenant], now=now)
    return KeysOut(
        keys=[
            KeyOut(kid=k.kid, tenant=k.tenant, public_key=k.public_key, created_at=k.created_at,
                   retired_at=k.retired_at, valid_until=k.valid_until)
            for k in views
        ]
    )  # fmt: skip


class Receipts:
    """Issues and attaches receipts; concurrent callers share each look and each write (group commit)."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        policies: PolicySet,
        clock: Clock,
        seal_wait: float = SEAL_WAIT,
        poll: float = SEAL_POLL,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.policies = policies
        self.clock = clock
        self.seal_wait = seal_wait
        self.poll = poll
        self._issuer: GroupCommit[RequestOut, RequestOut] = GroupCommit(self._attach_many)
        self._versions: dict[str, tuple[object, str]] = {}  # tenant -> (manifest, its digest)

    async def attach(self, resource: RequestOut) -> RequestOut:
        """``resource`` with its receipt when there is one or one can be issued now; as it was otherwise."""
        if resource.decision is None or resource.decision.receipt is not None:
            return resource
        return await self._issuer.submit(resource)

    async def settle(self, resource: RequestOut, *, within: float | None = None) -> RequestOut:
        """:meth:`attach`, looking again until the decision is sealed or ``within`` (``seal_wait``) seconds pass."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.seal_wait if within is None else within)
        while True:
            resource = await self.attach(resource)
            left = deadline - loop.time()
            if resource.decision is None or resource.decision.receipt is not None or left <= 0:
                return resource
            await asyncio.sleep(min(self.poll, left))

    async def _attach_many(self, resources: Sequence[RequestOut]) -> list[RequestOut | Exception]:
        try:
            issued = await self._issue(resources)
        except Exception:
            # A receipt is never worth failing the answer for: it goes out without one, and the next read retries.
            log.exception("could not issue decision receipts; answering without them")
            return list(resources)
        return [with_receipt(r, issued.get(r.id)) for r in resources]

    async def _issue(self, resources: Sequence[RequestOut]) -> dict[str, str]:
        ids = [r.id for r in resources]
        tenants = sorted({r.tenant for r in resources})
        async with uow(self.sessionmaker, read_only=True) as tx:
            issued = await tx.receipts.issued(ids)
            seqs: dict[str, int] = {}
            for tenant in tenants:
                wanted = [r.id for r in resources if r.tenant == tenant and r.id not in issued]
                seqs.update(await tx.receipts.decision_seqs(tenant, wanted))
        ready = [r for r in resources if r.id in seqs and r.id not in issued]
        if not ready:
            return issued
        now = self.clock.now()
        async with uow(self.sessionmaker) as tx:
            new = []
            for tenant in sorted({r.tenant for r in ready}):
                key = await signing_key(tx, tenant, now=now)
                version = await self._policy_version(tx, tenant)
                for r in (r for r in ready if r.tenant == tenant):
                    new.append(self._sign(r, key, seqs[r.id], version, now))
            await tx.receipts.store(new)
            issued.update(await tx.receipts.issued([r.id for r in ready]))
        return issued

    def _sign(self, resource: RequestOut, key: ReceiptKey, seq: int, version: str, now: datetime) -> NewReceipt:
        decision = resource.decision
        assert decision is not None
        ttl = receipt_ttl_for(self.policies.tenants.get(resource.tenant), resource.action)
        expires_at = (decision.at + ttl).replace(microsecond=0)  # as the payload spells it: whole seconds
        payload: dict[str, Any] = {
            "request_id": resource.id,
            "tenant": resource.tenant,
            "action": resource.action,
            "params_sha256": decision.params_sha256,
            "outcome": decision.outcome.value,
            "status": resource.status.value,
            "deciders": deciders(resource),
            "policy_version": version,
            "audit_seq": seq,
            "issued_at": receipt_format.timestamp(now),
            "expires_at": receipt_format.timestamp(expires_at),
        }
        receipt = receipt_format.sign(payload, kid=key.kid, private_key=key.private_key)
        return NewReceipt(resource.id, resource.tenant, key.kid, canonical_json(receipt), now, expires_at)

    async def _policy_version(self, tx: Tx, tenant: str) -> str:
        """``<16 hex of the loaded manifest's digest>.<the tenant's pool configuration version>``."""
        row = await tx.tenants.get(tenant)
        policy = self.policies.tenants.get(tenant)
        manifest: object = policy.manifest if policy is not None else None
        cached = self._versions.get(tenant)
        if cached is None or cached[0] is not manifest:
            dumped = policy.manifest.model_dump(mode="json", by_alias=True) if policy is not None else None
            cached = self._versions[tenant] = (manifest, canonical_sha256(dumped)[:16])
        return f"{cached[1]}.{row.config_version if row is not None else 0}"
