"""Block Kit for ``/hitl policy`` and ``/hitl whocan``: a tenant's policy, and a dry run of it, in words. Pure."""

from __future__ import annotations

from bot.blocks import cut, header, section
from bot.commands.answers import PolicyAnswer, WhoCanAnswer
from bot.commands.reply import Reply, channel, people, reply
from bot.queue import context, duration
from policy import Mode, Outcome, QuorumPlan, StagePlan, TenantPolicy
from policy.models import ActionRule

MODE_WORDS = {
    Mode.SYNC: "sync (the agent waits for the decision)",
    Mode.ASYNC: "async (the decision is sent to the agent's callback)",
    Mode.SAMPLE: "sample (auto-approved; a sample is reviewed after the fact)",
}


def _chain(policy: TenantPolicy, action: str) -> str:
    stages = policy.stages.get(action) or policy.stages.get("") or ()
    if not stages:
        return "_no pool configured: requests fail closed (rejected)_"
    return " → ".join(f"`{s.pool}` ({duration(s.timeout)})" for s in stages)


def quorum_words(lines: tuple[QuorumPlan, ...]) -> str:
    """A cross-pool quorum in words: ``Needs 1 approval from `security_team` AND 1 from `finance_team```."""
    parts = []
    for i, line in enumerate(lines):
        n = line.approvals
        head = f"{n} approval{'s' if n > 1 else ''} from" if i == 0 else f"{n} from"
        chain = " → ".join(f"`{s.pool}`" for s in line.stages)
        parts.append(f"{head} {chain} ({duration(line.stages[0].timeout)} each)" if len(line.stages) > 1 else
                     f"{head} {chain} ({duration(line.stages[0].timeout)})")  # fmt: skip
    return "Needs " + " AND ".join(parts) + "; one person counts once, one rejection rejects"


def _rule_words(policy: TenantPolicy, name: str, rule: ActionRule) -> list[str]:
    defaults = policy.manifest.defaults
    lines = [f"*{name}*" + (f" — {rule.description}" if rule.description else "")]
    if not rule.approval_required:
        lines.append("Never asks (approval_required: false); still audited.")
        return lines
    if rule.deny_if:
        lines.append(f"Denied at once when `{rule.deny_if}`" + (f": {rule.deny_reason}" if rule.deny_reason else "."))
    condition = rule.condition_source
    lines.append(f"Asks when `{condition}`; otherwise auto-approved." if condition else "Always asks.")
    if rule.effective_mode is Mode.SAMPLE:
        lines.append(f"Mode: sample at {int((rule.sample_rate or 0) * 100)}% — auto-approved, reviewed after the fact.")
    else:
        if name in policy.quorum:
            lines.append(quorum_words(policy.quorum[name]) + ".")
            lines.append("Each line has its own card in its pool's channel, and its own fallback when time runs out.")
        else:
            lines.append(f"Chain: {_chain(policy, name)}")
            approvals = rule.required_approvals
            lines.append(
                f"Approvals: {approvals} ({'distinct people' if approvals > 1 else 'one person'}); "
                "one rejection rejects."
            )
        mode = MODE_WORDS[rule.effective_mode]
        if rule.max_pending:
            mode += f"; at most {rule.max_pending} undecided per workflow, then the next one waits"
        lines.append(f"Mode: {mode}.")
        on_timeout = (rule.on_timeout or defaults.on_timeout).value
        lines.append(f"If nobody decides in time: {on_timeout}.")
    if rule.rules:
        lines.append("Rules, the first that holds wins:")
        lines += [
            f"{c.number}. when `{c.condition.source}`: {_sets(c.stages, c.rule)}" for c in policy.rules.get(name, ())
        ]
    lines.append(f"Undo on rejection: `{rule.undo_operation}`." if rule.undo_operation else "Undo on rejection: none.")
    if rule.sensitive:
        shown = [f"`{s.field}`" for s in rule.sensitive if s.reveal]
        on_demand = f"a reviewer may reveal {', '.join(shown)} to themselves" if shown else "never revealed"
        lines.append(f"Sensitive (masked on cards): {', '.join(f'`{p}`' for p in rule.sensitive_paths)}; {on_demand}.")
    lines.append(f"Risk: {rule.risk.value}.")
    return lines


def _sets(stages: tuple[StagePlan, ...], routed: ActionRule) -> str:
    """What a rule routes to, in the words of the action's own lines."""
    chain = " → ".join(f"`{s.pool}` ({duration(s.timeout)})" for s in stages) or "_no pool_"
    n = routed.required_approvals
    on_timeout = f", on timeout {routed.on_timeout.value}" if routed.on_timeout else ""
    return f"{chain}, {n} approval{'s' if n > 1 else ''}, {routed.effective_mode.value}{on_timeout}"


def rule_summary(policy: TenantPolicy, name: str, rule: ActionRule) -> str:
    denies = f"; denied when `{rule.deny_if}`" if rule.deny_if else ""
    rules = f"; {len(rule.rules)} routing rule{'s' if len(rule.rules) > 1 else ''}" if rule.rules else ""
    return _plain_summary(policy, name, rule) + denies + rules


def _plain_summary(policy: TenantPolicy, name: str, rule: ActionRule) -> str:
    if not rule.approval_required:
        return f"• `{name}`: never asks"
    when = f"when `{rule.condition_source}`" if rule.condition_source else "always"
    if rule.effective_mode is Mode.SAMPLE:
        return f"• `{name}`: sampled ({int((rule.sample_rate or 0) * 100)}%) for review after the fact"
    if name in policy.quorum:
        needs = " AND ".join(f"{q.approvals} from `{q.pool}`" for q in policy.quorum[name])
        return f"• `{name}`: asks {when} → {needs} (one person counts once), {rule.effective_mode.value}"
    stages = policy.stages.get(name) or ()
    pool = f"`{stages[0].pool}`" if stages else "_no pool_"
    n = rule.required_approvals
    return f"• `{name}`: asks {when} → {pool}, {n} approval{'s' if n > 1 else ''}, {rule.effective_mode.value}"


def policy_reply(answer: PolicyAnswer) -> Reply:
    policy = answer.policy
    manifest = policy.manifest
    defaults = manifest.defaults
    unknown = (
        "refused (unknown_action: deny)"
        if defaults.unknown_action.value == "deny"
        else f"reviewed by {_chain(policy, '')}"
    )
    if answer.action is None:
        lines = [rule_summary(policy, name, rule) for name, rule in sorted(manifest.actions.items())]
        blocks = [
            header(f"Policy of {answer.tenant}"),
            section("\n".join(lines) or "_No actions named._"),
            context(
                f"Any other action: {unknown}.",
                f"Defaults: timeout {duration(defaults.timeout)}, on timeout {defaults.on_timeout.value}.",
                "Details: `/hitl policy <action>` · dry run: `/hitl whocan <action> key=value`",
                _versioning(policy),
            ),
        ]
        return reply(f"Policy of {answer.tenant}", blocks)
    rule = manifest.actions.get(answer.action)
    if rule is None:
        text = f"`{answer.action}` is not in `{answer.tenant}`'s manifest. Any action it does not name is {unknown}."
        return reply(text, [section(text)])
    words = "\n".join(_rule_words(policy, answer.action, rule))
    return reply(f"{answer.action} in {answer.tenant}", [section(words)])


def _versioning(policy: TenantPolicy) -> str:
    """Which policy version serves, and who may change it (``self_service``)."""
    version = f"Version {policy.version}. " if policy.version is not None else ""
    if not policy.manifest.self_service:
        return version + "Policy is changed only in the manifest file (self_service: false)."
    editors = policy.manifest.policy_editors
    who = f" Policy editors: {', '.join(f'<@{u}>' for u in editors)}." if editors else ""
    return (
        version + f"Admins may propose changes from Slack.{who} Propose one with `/hitl policy set <action> …`;"
        " another of them approves it."
    )


def whocan_reply(answer: WhoCanAnswer) -> Reply:
    verdict = answer.verdict
    params = ", ".join(f"{k}={v}" for k, v in answer.params.items()) or "no params"
    blocks = [header(f"Dry run: {answer.action}"), context(f"*{answer.tenant}* · {cut(params, 500)}")]
    if verdict.outcome is Outcome.AUTO_APPROVE:
        text = f":white_check_mark: *Auto-approved*: {verdict.reason}."
        if verdict.mode is Mode.SAMPLE:
            text += " (A sample of these is posted for review after the fact.)"
        blocks.append(section(text))
        return reply(f"{answer.action}: auto-approved", blocks)
    if verdict.outcome is Outcome.DENY:
        blocks.append(section(f":no_entry: *Denied*: {verdict.reason}."))
        return reply(f"{answer.action}: denied", blocks)
    if answer.quorum is not None:
        blocks.append(section("\n".join(_quorum_dry_run(answer))))
        return reply(f"{answer.action}: needs review", blocks)
    plan = answer.route
    assert plan is not None
    lines = [f":raised_hand: *Needs review*: {verdict.reason}."]
    if plan.fails_closed:
        lines.append(f":x: No pool can serve it, so it would be *rejected at once*: {plan.explain() or 'no pool'}.")
    for i, stage in enumerate(plan.stages):
        who = people(answer.people.get(stage.pool, ()))
        step = "First" if i == 0 else "Then"
        lines.append(
            f"{step} `{stage.pool}` in {channel(answer.channels.get(stage.pool))} for {duration(stage.timeout)}: {who}"
        )
    for skipped in plan.skipped:
        lines.append(f":fast_forward: skipped `{skipped.pool}`: it {skipped.why}")
    n = verdict.approvals
    lines.append(
        f"Needs {n} approval{'s' if n > 1 else ''}; {MODE_WORDS[verdict.mode]}; "
        f"if nobody decides: {verdict.on_timeout.value}."
    )
    if answer.on_behalf_of:
        lines.append(f"<@{answer.on_behalf_of}> is the person acted for, so cannot vote.")
    if verdict.sensitive:
        lines.append(f"Hidden in Slack: {', '.join(f'`{s}`' for s in verdict.sensitive)}.")
    blocks.append(section("\n".join(lines)))
    return reply(f"{answer.action}: needs review", blocks)


def _quorum_dry_run(answer: WhoCanAnswer) -> list[str]:
    """``/hitl whocan`` for a cross-pool quorum: each line's pools and people, then what it needs."""
    verdict, plan = answer.verdict, answer.quorum
    assert plan is not None
    lines = [f":raised_hand: *Needs review*: {verdict.reason}."]
    if plan.fails_closed:
        lines.append(f":x: The quorum cannot be met, so it would be *rejected at once*: {plan.explain()}.")
    for line, routed in plan.lines:
        for i, stage in enumerate(routed.stages):
            who = people(answer.people.get(stage.pool, ()))
            step = f"Line {line.line + 1}: `{stage.pool}`" if i == 0 else f"  then `{stage.pool}`"
            where = channel(answer.channels.get(stage.pool))
            lines.append(f"{step} in {where} for {duration(stage.timeout)}: {who}")
        for skipped in routed.skipped:
            lines.append(f":fast_forward: line {line.line + 1} skipped `{skipped.pool}`: it {skipped.why}")
    lines.append(
        f"{quorum_words(verdict.quorum)}; {MODE_WORDS[verdict.mode]}; if nobody decides: {verdict.on_timeout.value}."
    )
    if answer.on_behalf_of:
        lines.append(f"<@{answer.on_behalf_of}> is the person acted for, so cannot vote.")
    if verdict.sensitive:
        lines.append(f"Hidden in Slack: {', '.join(f'`{s}`' for s in verdict.sensitive)}.")
    return lines
