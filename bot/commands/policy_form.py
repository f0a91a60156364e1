"""The App Home's policy form: propose a change to one setting of an action, a new action, or a rollback,
in a modal. Pure: the form's blocks, the reading of a submission into the command ``/hitl policy`` would
run, and the views that follow it.

The form holds three ways to change the policy; a submission fills exactly one of them. What is wrong
with what was typed goes back onto its field (``response_action: errors``) so the modal stays open.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.blocks import Block, cut, header, plain, section
from bot.commands.parse import CommandError
from bot.commands.policy_blocks import rule_summary
from bot.commands.policy_changes import PolicyChangeAnswer, policy_change_reply
from bot.commands.policy_commands import PolicyChangeCommand, PolicyRollback, added_action, setting_edit
from bot.ids import POLICY_INPUT, BlockId, CallbackId
from bot.payloads import View
from bot.queue import context
from bot.service.policychanges import PolicyForm, Proposed, VersionLine

SETTING_LABELS = {
    "if": "Condition (if): when it asks for review",
    "threshold": "Threshold: the amount above which it asks",
    "approvals": "Approvals needed",
    "pool": "Reviewer pool (the first in its chain)",
    "chain": "Pool chain: first > fallback > escalation",
    "timeout": "Timeout (e.g. 10m, 2h)",
    "mode": "Mode (sync or async)",
}
VALUE_HINT = "amount > 700 · 800 · 2 · support_tier_2 · tier_1 > tier_2 > seniors · 30m · async"
OPTIONS = 100  # a static select's limit
# Under which field a problem with each way of changing the policy is shown.
_WHERE = {"set": BlockId.POLICY_ACTION, "add": BlockId.POLICY_NEW_ACTION, "rollback": BlockId.POLICY_ROLLBACK}


@dataclass(frozen=True, slots=True)
class FormReading:
    """A submission read: the command to run, or what is wrong, by the block it goes under."""

    command: PolicyChangeCommand | None = None
    errors: dict[str, str] = field(default_factory=dict)
    block: str = BlockId.POLICY_VALUE.value  # where a refusal of the command itself is shown


def policy_modal(form: PolicyForm) -> Block:
    """The form for ``form.policy``'s tenant; its private metadata is the tenant."""
    policy = form.policy
    actions = sorted(policy.manifest.actions)
    version = f"version {policy.version}" if policy.version is not None else "the manifest file"
    lines = [rule_summary(policy, name, rule) for name, rule in sorted(policy.manifest.actions.items())]
    blocks: list[Block] = [
        section(
            f"*{policy.tenant}* serves {version}. A change is checked as `countersign check` checks a manifest"
            " (conditions, names, its tests), simulated on the last 7 days, and applied once another admin or"
            " policy editor approves it."
        ),
        section(cut("\n".join(lines) or "_No actions yet._", 3000)),
    ]
    if form.pending:
        waiting = "; ".join(f"#{p.change} {p.summary} (<@{p.proposed_by}>)" for p in form.pending)
        blocks.append(context(f"Waiting for approval: {waiting}"))
    blocks += [
        {"type": "divider"},
        # Slack's lists cannot be emptied once picked: say how to change one's mind before it happens.
        context("Fill in one of the three below. To switch after picking from a list, Cancel and open the form again."),
        header("Change an action"),
    ]
    if actions:
        blocks += [
            _select(BlockId.POLICY_ACTION, "Action", [(a, a) for a in actions]),
            _select(BlockId.POLICY_SETTING, "Setting", [(label, key) for key, label in SETTING_LABELS.items()]),
            _text(BlockId.POLICY_VALUE, "New value", VALUE_HINT),
        ]
    else:
        blocks.append(context("_The manifest names no action yet: add one below._"))
    pools = sorted(policy.manifest.pools)
    blocks += [
        header("Or add an action"),
        _text(BlockId.POLICY_NEW_ACTION, "New action", "e.g. issue_credit"),
        _select(BlockId.POLICY_NEW_POOL, "Its reviewer pool", [(p, p) for p in pools])
        if pools
        else _text(BlockId.POLICY_NEW_POOL, "Its reviewer pool", "a pool name"),
    ]
    if form.versions:
        options = [(f"Version {v.number} ({v.source}, {_when(v)})", str(v.number)) for v in form.versions]
        blocks += [header("Or roll back"), _select(BlockId.POLICY_ROLLBACK, "To version", options)]
    return {
        "type": "modal",
        "callback_id": CallbackId.POLICY_PROPOSE.value,
        "private_metadata": policy.tenant,
        "title": plain("Policy", 24),
        "submit": plain("Propose", 24),
        "close": plain("Cancel", 24),
        "blocks": blocks,
    }


def _when(version: VersionLine) -> str:
    # Plain text (an option's label renders no Slack date): UTC, as the audit trail writes it.
    return version.at.strftime("%Y-%m-%d %H:%M UTC")


def read_form(view: View) -> FormReading:
    """The one change a submission asks for, or what is wrong with it."""

    def text(block: BlockId) -> str:
        return view.text(block.value, POLICY_INPUT) or view.selected(block.value, POLICY_INPUT)

    action, setting, value = text(BlockId.POLICY_ACTION), text(BlockId.POLICY_SETTING), text(BlockId.POLICY_VALUE)
    new_action, new_pool = text(BlockId.POLICY_NEW_ACTION), text(BlockId.POLICY_NEW_POOL)
    rollback = text(BlockId.POLICY_ROLLBACK)
    ways = [w for w, filled in (("set", action or setting or value), ("add", new_action or new_pool),
                                ("rollback", rollback)) if filled]  # fmt: skip
    if len(ways) != 1:
        why = "Fill in one of the three: change an action, add an action, or roll back." if not ways else (
            "One change at a time: fill in only one of change an action, add an action, or roll back.")  # fmt: skip
        # Under a field the form has: a tenant with no actions yet has no "change an action" fields.
        where = (
            _WHERE[ways[0]] if ways else _WHERE["set" if BlockId.POLICY_ACTION.value in view.state.values else "add"]
        )
        return FormReading(errors={where.value: why})
    try:
        if ways == ["rollback"]:
            return FormReading(PolicyRollback(int(rollback)), block=BlockId.POLICY_ROLLBACK.value)
        if ways == ["add"]:
            missing = _missing({BlockId.POLICY_NEW_ACTION: new_action, BlockId.POLICY_NEW_POOL: new_pool})
            if missing:
                return FormReading(errors=missing)
            return FormReading(added_action(new_action, new_pool), block=BlockId.POLICY_NEW_ACTION.value)
        missing = _missing({BlockId.POLICY_ACTION: action, BlockId.POLICY_SETTING: setting,
                            BlockId.POLICY_VALUE: value})  # fmt: skip
        if missing:
            return FormReading(errors=missing)
        if setting not in SETTING_LABELS:
            return FormReading(errors={BlockId.POLICY_SETTING.value: "Pick one of the settings listed."})
        return FormReading(setting_edit(action, setting, value))
    except (CommandError, ValueError) as exc:
        message = exc.message if isinstance(exc, CommandError) else "Pick one of the versions listed."
        block = BlockId.POLICY_VALUE if ways == ["set"] else _WHERE[ways[0]]
        return FormReading(errors={block.value: message})


def field_error(message: str) -> str:
    """A refusal as a field's error: Slack shows a short line under the input, so the words only."""
    return cut(message.replace("`", "").replace("\n• ", " ").replace("\n", " "), 300)


def checking_view(tenant: str) -> Block:
    """Shown while a change slower than Slack's 3 seconds is checked and simulated."""
    words = ":hourglass_flowing_sand: Checking your change and simulating it on the last 7 days…"
    return _result_view(tenant, [section(words)])


def proposed_view(proposed: Proposed) -> Block:
    """The modal once the change is proposed: what it is, its diff, its simulation and who may approve it."""
    reply = policy_change_reply(PolicyChangeAnswer(proposed.tenant, proposed=proposed))
    return _result_view(proposed.tenant, list(reply.blocks))


def refused_view(tenant: str, why: str) -> Block:
    """A change refused after the modal was acked (a slow check): why, and how to try again."""
    text = f":no_entry_sign: {why}\n\nOpen *Policy* in the App Home again to propose a corrected change."
    return _result_view(tenant, [section(cut(text, 3000))])


def _result_view(tenant: str, blocks: list[Block]) -> Block:
    return {
        "type": "modal",
        "callback_id": CallbackId.POLICY_PROPOSE.value,
        "private_metadata": tenant,
        "title": plain("Policy", 24),
        "close": plain("Close", 24),
        "blocks": blocks,
    }


def _missing(fields: dict[BlockId, str]) -> dict[str, str]:
    return {block.value: "Fill this in too." for block, value in fields.items() if not value}


def _select(block: BlockId, label: str, options: list[tuple[str, str]]) -> Block:
    return {
        "type": "input",
        "block_id": block.value,
        "optional": True,
        "label": plain(label),
        "element": {
            "type": "static_select",
            "action_id": POLICY_INPUT,
            "placeholder": plain("Choose"),
            "options": [{"text": plain(text, 75), "value": value} for text, value in options[:OPTIONS]],
        },
    }


def _text(block: BlockId, label: str, placeholder: str) -> Block:
    return {
        "type": "input",
        "block_id": block.value,
        "optional": True,
        "label": plain(label),
        "element": {
            "type": "plain_text_input",
            "action_id": POLICY_INPUT,
            "placeholder": plain(placeholder, 150),
        },
    }
