"""Policy changes from Slack with a two-person rule (#20): proposed by an admin or a policy editor,
validated exactly as ``countersign check`` would, approved by another one, applied once.

- Who: the manifest's ``admins`` and ``policy_editors``; nobody when ``self_service: false``.
- A proposal is the effective manifest (the version served) with one change, dumped as YAML
  (comments are not kept: ``countersign policy export`` gives the text back), loaded (CEL compiled,
  names checked) and its ``tests:`` run: a failing test refuses it, named. A valid one is a pending
  ``policy_change`` made against the version served, and every other admin or editor gets a DM with
  the diff, the simulation of the last 7 days and Approve / Refuse.
- Approval by the proposer is refused. Another's approval is a conditional update (pending ->
  approved) and the new version is inserted as exactly ``base + 1`` in the same unit of work: a
  change whose base is no longer the latest is superseded, never applied on top of a version it was
  not made against. Every replica then serves it within a second (:class:`PolicyFollower`).
- Every proposal, refusal and decision is audited (``policy.change.*``).
"""

from __future__ import annotations

import difflib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import yaml
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import policyblocks
from bot.clock import Clock
from bot.errors import Conflict, Forbidden, NotFound
from bot.policyset import PolicySet
from bot.service.effects import DirectMessage, Effect, enqueue
from bot.service.policyversions import version_policy
from bot.service.simulation import simulate_window
from policy import TenantPolicy, load_text
from policy.checks import run_tests
from policy.errors import Severity
from store.models import PolicyChange
from store.policychanges import APPROVED, PENDING, REFUSED, SUPERSEDED, ChangeRows
from store.policyversions import NewVersion
from store.uow import Tx, uow

SIMULATED_DAYS = 7
T = TypeVar("T")
TextOf = Callable[[TenantPolicy], Awaitable[str]]  # the proposed manifest, from the one served
# A key set from Slack replaces the spellings that would say the same thing otherwise (the loader refuses both).
_REPLACES: dict[str, tuple[str, ...]] = {
    "if": ("threshold",),
    "threshold": ("if",),
    "pool": ("reviewer", "reviewer_pool"),
    "approvals": ("require_two_reviewers",),
    "timeout": ("timeout_minutes",),
    "mode": ("blocking",),
}
_KEY = {"pool": "reviewer_pool"}


@dataclass(frozen=True, slots=True)
class Proposed:
    tenant: str
    change: int
    summary: str
    diff: str
    headline: str
    asked: tuple[str, ...]  # who was asked to approve


@dataclass(frozen=True, slots=True)
class Decided:
    tenant: str
    change: int
    status: str  # approved | refused | superseded
    version: int | None  # the version it became, when approved
    summary: str


@dataclass(frozen=True, slots=True)
class VersionLine:
    number: int
    source: str  # file | slack | rollback
    at: datetime


@dataclass(frozen=True, slots=True)
class PendingLine:
    change: int
    summary: str
    proposed_by: str


@dataclass(frozen=True, slots=True)
class PolicyForm:
    """What the App Home's policy form shows: the policy served, its earlier versions (to roll back to)
    and the changes waiting for a second person."""

    policy: TenantPolicy
    versions: tuple[VersionLine, ...]  # newest first, the one served left out
    pending: tuple[PendingLine, ...]


def editors(policy: TenantPolicy) -> tuple[str, ...]:
    """Who may propose and approve changes: the admins, then the policy editors."""
    return tuple(dict.fromkeys([*policy.manifest.admins, *policy.manifest.policy_editors]))


def may_change_policy(policy: TenantPolicy, user: str) -> bool:
    return policy.manifest.self_service and user in editors(policy)


def edited_text(policy: TenantPolicy, action: str, key: str, value: Any, *, add: bool) -> str:
    """The served manifest with ``actions.<action>.<key>`` set. Raises Forbidden (no such action, or it exists)."""
    data = yaml.safe_load(policy.text) or {}
    actions = data.get("actions") or {}
    data["actions"] = actions
    if add:
        if action in actions:
            raise Forbidden(f"`{action}` is already an action of `{policy.tenant}`: change it with `/hitl policy set`.")
        actions[action] = {"reviewer_pool": value}
    else:
        if action not in actions:
            raise Forbidden(
                f"`{policy.tenant}` has no action `{action}`. Add one with `/hitl policy add {action} pool <pool>`."
            )
        rule = actions[action] if isinstance(actions[action], dict) else {}
        if key == "chain":  # the first pool, its fallback, then escalation; a shorter chain drops the rest
            pools = [*value, None, None]
            sets: dict[str, Any] = {"reviewer_pool": pools[0], "fallback": pools[1], "escalate_to": pools[2]}
            replaced: tuple[str, ...] = ("reviewer",)
        else:
            sets, replaced = {_KEY.get(key, key): value}, _REPLACES.get(key, ())
        # In the place of the keys they replace (threshold where the if was), so the diff reads as lines changed.
        edited: dict[str, Any] = {}
        for k, v in rule.items():
            if k in sets or k in replaced:
                edited.update((name, new) for name, new in sets.items() if new is not None and name not in edited)
            else:
                edited[k] = v
        edited.update((name, new) for name, new in sets.items() if new is not None and name not in edited)
        actions[action] = edited
    return dump(data)


def dump(data: Any) -> str:
    # Comments are not kept: the file keeps its own, and `countersign policy export` gives this text back.
    return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120))


def unified_diff(before: str, after: str, base: int | None) -> str:
    """The change as people read it: both texts dumped alike, so only what means something differs
    (not comments, quoting or layout)."""
    old, new = dump(yaml.safe_load(before)).splitlines(), dump(yaml.safe_load(after)).splitlines()
    return "\n".join(difflib.unified_diff(old, new, f"version {base}", "proposed", lineterm="", n=1))


class PolicyChanges:
    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        policies: PolicySet,
        clock: Clock,
        on_served: Callable[[TenantPolicy], None] | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.policies = policies
        self.clock = clock
        self.on_served = on_served  # told of a version this replica starts serving (metrics learn new actions)

    def may_change(self, tenant: str, user: str) -> TenantPolicy:
        """The served policy, if ``user`` may change it. Raises Forbidden saying why not."""
        policy = self.policies.get(tenant)
        if not policy.manifest.self_service:
            raise Forbidden(
                f"`{tenant}`'s policy is changed only in its manifest file (self_service: false), not from Slack."
            )
        if user not in editors(policy):
            names = ", ".join(f"<@{u}>" for u in editors(policy)) or "nobody"
            raise Forbidden(f"Only `{tenant}`'s admins and policy editors ({names}) can change its policy.")
        return policy

    async def form(self, tenant: str, user: str) -> PolicyForm:
        """The App Home's policy form for ``user``. Raises Forbidden when they may not change the policy."""
        policy = self.may_change(tenant, user)
        async with uow(self.sessionmaker, read_only=True) as tx:
            history = await tx.policy_versions.history(tenant)
            pending = await ChangeRows(tx.session).pending(tenant)
        versions = tuple(
            VersionLine(v.number, v.source, v.created_at)
            for v in sorted(history, key=lambda v: -v.number)
            if v.number != policy.version
        )
        return PolicyForm(policy, versions, tuple(PendingLine(c.id, c.summary, c.proposed_by) for c in pending))

    async def propose_edit(self, tenant: str, user: str, action: str, key: str, value: Any, *, add: bool) -> Proposed:
        """Raises Forbidden (not allowed, invalid, a failing test), each refusal audited."""
        shown = f'"{value}"' if key == "if" else " > ".join(value) if key == "chain" else str(value)
        words = f"{'new action ' if add else ''}`{action}`: {key} {shown}"

        async def text_of(policy: TenantPolicy) -> str:
            return edited_text(policy, action, key, value, add=add)

        return await self._refusals_audited(tenant, user, words, self._propose(tenant, user, words, text_of, None))

    async def propose_rollback(self, tenant: str, user: str, version: int) -> Proposed:
        async def text_of(policy: TenantPolicy) -> str:
            async with uow(self.sessionmaker, read_only=True) as tx:
                row = await tx.policy_versions.get(tenant, version)
            if row is None:
                raise Forbidden(f"`{tenant}` has no policy version {version}.")
            return row.manifest

        words = f"roll back to version {version}"
        return await self._refusals_audited(tenant, user, words, self._propose(tenant, user, words, text_of, version))

    async def _propose(self, tenant: str, user: str, words: str, text_of: TextOf, rollback_of: int | None) -> Proposed:
        policy = self.may_change(tenant, user)
        text = await text_of(policy)
        diff = unified_diff(policy.text, text, policy.version)
        if not diff:  # compared as loaded: a file's comments and layout are no change
            raise Forbidden(f"That changes nothing: version {policy.version} already says so.")
        candidate = validated(text, policy)
        now = self.clock.now()
        simulation = await simulate_window(
            self.sessionmaker, candidate, since=now - timedelta(days=SIMULATED_DAYS), until=now, baseline=policy
        )
        headline = simulation.headline(SIMULATED_DAYS)
        asked = tuple(u for u in editors(policy) if u != user)
        async with uow(self.sessionmaker) as tx:
            if (same := await ChangeRows(tx.session).pending_like(tenant, policy.version or 0, text)) is not None:
                raise Conflict(
                    f"That change is already proposed as #{same.id} (by <@{same.proposed_by}>) and waits for approval."
                )
            change = await ChangeRows(tx.session).add(
                PolicyChange(
                    tenant=tenant, base_version=policy.version or 0, yaml=text, summary=words, diff=diff,
                    proposed_by=user, created_at=now, rollback_of=rollback_of,
                )
            )  # fmt: skip
            payload = {"change": change.id, "summary": words, "base_version": policy.version,
                       "rollback_of": rollback_of, "simulation": headline}  # fmt: skip
            await tx.audit.append(tenant, "policy.change.proposed", now=now, actor=user, payload=payload)
            blocks = policyblocks.change_request(
                tenant=tenant, change=change.id, proposer=user, summary=words, diff=diff, headline=headline,
                base_version=policy.version,
            )  # fmt: skip
            text_line = policyblocks.change_text(tenant, change.id, user, words)
            for other in asked:
                message = DirectMessage(user=other, text=text_line, blocks=blocks)
                await enqueue(tx, tenant, Effect.DM, message, now, f"policy-change:{change.id}:{other}")
        return Proposed(tenant, change.id, words, diff, headline, asked)

    async def decide(self, tenant: str, user: str, change_id: int, *, approve: bool) -> Decided:
        """Approve (apply) or refuse a pending change.

        Raises:
            Forbidden: not an admin or editor, or the proposer approving their own change (audited).
            NotFound: no such change in the tenant.
            Conflict: decided already.
        """
        return await self._refusals_audited(
            tenant, user, f"change #{change_id}", self._decide(tenant, user, change_id, approve), change=change_id
        )

    async def _decide(self, tenant: str, user: str, change_id: int, approve: bool) -> Decided:
        self.may_change(tenant, user)
        now = self.clock.now()
        async with uow(self.sessionmaker) as tx:
            changes = ChangeRows(tx.session)
            change = await changes.get(tenant, change_id)
            if change is None:
                raise NotFound(f"`{tenant}` has no policy change #{change_id}.")
            if change.status != PENDING:
                by = f" by <@{change.decided_by}>" if change.decided_by else ""
                raise Conflict(f"Policy change #{change_id} is already {change.status}{by}.")
            if approve and change.proposed_by == user:
                raise Forbidden(
                    f"You proposed change #{change_id}: another admin or policy editor must approve it"
                    " (two-person rule)."
                )
            if not approve:
                if not await changes.decide(change, REFUSED, by=user, now=now):
                    raise Conflict(f"Policy change #{change_id} was decided meanwhile.")
                await self._decided(tx, change, user, now, REFUSED, None)
                return Decided(tenant, change_id, REFUSED, None, change.summary)
            status, version = await self._apply(tx, change, user, now)
        if version is not None:
            # This replica serves it at once; the others within a second (PolicyFollower).
            async with uow(self.sessionmaker, read_only=True) as tx:
                row = await tx.policy_versions.get(tenant, version)
            served = self.policies.get(tenant)
            if row is not None and (served.version or 0) < version:
                policy = version_policy(row, fallback=served)
                self.policies.stamp({tenant: policy})
                if self.on_served is not None:
                    self.on_served(policy)
        return Decided(tenant, change_id, status, version, change.summary)

    async def _apply(self, tx: Tx, change: PolicyChange, user: str, now: datetime) -> tuple[str, int | None]:
        changes = ChangeRows(tx.session)
        latest = await tx.policy_versions.latest(change.tenant)
        number = (latest.number if latest is not None else 0) + 1
        if latest is None or latest.number != change.base_version:
            if not await changes.decide(change, SUPERSEDED, by=user, now=now):
                raise Conflict(f"Policy change #{change.id} was decided meanwhile.")
            await self._decided(tx, change, user, now, SUPERSEDED, None)
            return SUPERSEDED, None
        if not await changes.decide(change, APPROVED, by=user, now=now, applied_version=number):
            raise Conflict(f"Policy change #{change.id} was decided meanwhile.")
        new = NewVersion(
            change.tenant, change.yaml, source="rollback" if change.rollback_of else "slack",
            proposed_by=change.proposed_by, approved_by=user, note=f"#{change.id}: {change.summary}",
        )  # fmt: skip
        if not await tx.policy_versions.append(new, number=number, now=now):
            # Another change took that number in the meantime: this one was made against an older policy.
            await changes.set_applied(change, SUPERSEDED, None)
            await self._decided(tx, change, user, now, SUPERSEDED, None)
            return SUPERSEDED, None
        await self._decided(tx, change, user, now, APPROVED, number)
        # The others made against the same version can no longer apply: say so now, to their proposers and to
        # those asked to approve them (their DMs' buttons would only say so on a click).
        asked = editors(self.policies.get(change.tenant))
        for other in await changes.pending(change.tenant, limit=1000):
            if other.id != change.id and await changes.decide(other, SUPERSEDED, by=user, now=now):
                await self._decided(tx, other, user, now, SUPERSEDED, None)
                text = (f"Policy change #{other.id} for {other.tenant} ({other.summary}) is superseded by version"
                        f" {number}: there is nothing to approve.")  # fmt: skip
                for editor in asked:
                    if editor not in (user, other.proposed_by):
                        await enqueue(tx, other.tenant, Effect.DM, DirectMessage(user=editor, text=text), now,
                                      f"policy-change:{other.id}:superseded:{editor}")  # fmt: skip
        return APPROVED, number

    async def _decided(
        self, tx: Tx, change: PolicyChange, user: str, now: datetime, status: str, version: int | None
    ) -> None:
        # "applied_version": the version it made; "policy_version", the version in force, is the audit log's.
        payload = {"change": change.id, "summary": change.summary, "applied_version": version,
                   "base_version": change.base_version, "proposed_by": change.proposed_by}  # fmt: skip
        await tx.audit.append(change.tenant, f"policy.change.{status}", now=now, actor=user, payload=payload)
        words = {
            APPROVED: f"approved by <@{user}>: policy version {version} is in force",
            REFUSED: f"refused by <@{user}>",
            SUPERSEDED: "superseded: the policy changed since it was proposed; propose it again",
        }[status]
        if change.proposed_by != user:
            text = f"Your policy change #{change.id} for {change.tenant} ({change.summary}) was {words}."
            await enqueue(tx, change.tenant, Effect.DM, DirectMessage(user=change.proposed_by, text=text), now,
                          f"policy-change:{change.id}:decided")  # fmt: skip

    async def _refusals_audited(
        self, tenant: str, user: str, what: str, work: Awaitable[T], change: int | None = None
    ) -> T:
        try:
            return await work
        except (Forbidden, Conflict, NotFound) as exc:
            if tenant not in self.policies.tenants:
                raise  # nothing to audit it under (a button or form naming a tenant that is not served)
            async with uow(self.sessionmaker) as tx:
                payload = {"why": exc.user_message, "what": what, "change": change}
                await tx.audit.append(
                    tenant, "policy.change.refused", now=self.clock.now(), actor=user, payload=payload
                )
            raise


def validated(text: str, served: TenantPolicy) -> TenantPolicy:
    """The candidate as ``countersign check`` judges it: loaded (CEL, names) and its tests passing.
    Raises Forbidden naming what fails."""
    candidate, problems = load_text(text, file=served.source)
    errors = [p for p in problems if p.severity is Severity.ERROR]
    if candidate is None or errors:
        listed = "\n".join(f"• {p.message}" for p in errors[:5]) or "• it does not load"
        raise Forbidden(f"The change makes the manifest invalid, so it is not proposed:\n{listed}")
    if candidate.tenant != served.tenant:
        raise Forbidden("A change cannot rename the tenant.")
    failed = [t for t in run_tests(candidate) if not t.passed]
    if failed:
        first = failed[0]
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        raise Forbidden(
            f"The change breaks the manifest's test `{first.name}`{more}: {'; '.join(first.failures)}. Not proposed."
        )
    return candidate
