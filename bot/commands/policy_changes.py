"""``/hitl policy set|add|rollback|approve|refuse``: run against :mod:`bot.service.policychanges`, answered in words."""

from __future__ import annotations

from dataclasses import dataclass

from bot.blocks import cut, section
from bot.commands.policy_commands import PolicyChangeCommand, PolicyDecide, PolicyEdit
from bot.commands.reply import Reply, people, reply
from bot.queue import context
from bot.service.policychanges import Decided, PolicyChanges, Proposed


@dataclass(frozen=True, slots=True)
class PolicyChangeAnswer:
    tenant: str
    proposed: Proposed | None = None
    decided: Decided | None = None


async def run(service: PolicyChanges, user: str, tenant: str, command: PolicyChangeCommand) -> PolicyChangeAnswer:
    """Raises Forbidden, NotFound or Conflict, each saying why (and audited by the service)."""
    if isinstance(command, PolicyDecide):
        decided = await service.decide(tenant, user, command.change, approve=command.approve)
        return PolicyChangeAnswer(tenant, decided=decided)
    if isinstance(command, PolicyEdit):
        proposed = await service.propose_edit(tenant, user, command.action, command.key, command.value, add=command.add)
    else:
        proposed = await service.propose_rollback(tenant, user, command.version)
    return PolicyChangeAnswer(tenant, proposed=proposed)


def decided_words(decided: Decided) -> str:
    if decided.status == "approved":
        return (
            f":white_check_mark: Policy change #{decided.change} ({decided.summary}) is approved: "
            f"version {decided.version} of {decided.tenant} is in force."
        )
    if decided.status == "refused":
        return f":x: Policy change #{decided.change} ({decided.summary}) is refused; nothing changed."
    return (
        f":warning: Policy change #{decided.change} ({decided.summary}) is superseded: the policy changed since it "
        "was proposed. Propose it again against the version in force."
    )


def policy_change_reply(answer: PolicyChangeAnswer) -> Reply:
    if answer.decided is not None:
        text = decided_words(answer.decided)
        return reply(text, [section(text)])
    proposed = answer.proposed
    assert proposed is not None
    text = f":memo: Policy change #{proposed.change} proposed for {proposed.tenant}: {proposed.summary}."
    asked = (
        f"Waiting for one of {people(proposed.asked)} to approve it (you cannot: two-person rule)."
        if proposed.asked
        else "Nobody else may approve it: name a second admin or a `policy_editors` entry in the manifest."
    )
    blocks = [
        section(text),
        section("```" + cut(proposed.diff, 2800) + "```"),
        context(f"Simulated {proposed.headline}.", asked),
    ]
    return reply(text, blocks)
