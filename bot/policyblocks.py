"""Block Kit for a policy change proposed from Slack: the DM that asks another admin. Pure."""

from __future__ import annotations

from bot.blocks import Block, cut, header, section
from bot.ids import ActionId

DIFF_LIMIT = 2800  # of a section's 3000 characters, what the diff may take


def change_value(tenant: str, change: int) -> str:
    """What the Approve / Refuse buttons carry."""
    return f"{tenant}:{change}"


def read_change_value(value: str) -> tuple[str, int] | None:
    tenant, _, number = value.rpartition(":")
    return (tenant, int(number)) if tenant and number.isdigit() else None


def change_text(tenant: str, change: int, proposer: str, summary: str) -> str:
    return f"<@{proposer}> proposes a policy change for {tenant} (#{change}): {summary}"


def change_request(
    *, tenant: str, change: int, proposer: str, summary: str, diff: str, headline: str, base_version: int | None
) -> list[Block]:
    """The DM: what changes, the diff, what it would have done to recent requests, and the two buttons."""
    value = change_value(tenant, change)
    base = f" (against version {base_version})" if base_version is not None else ""
    return [
        header(cut(f"Policy change #{change} for {tenant}", 150)),
        section(cut(f"<@{proposer}> proposes {summary}{base}. It needs one other admin's approval.", 3000)),
        section("```" + cut(diff or "(no lines changed)", DIFF_LIMIT) + "```"),
        {"type": "context", "elements": [{"type": "mrkdwn", "text": cut(f"Simulated {headline}.", 2000)}]},
        {
            "type": "actions",
            "elements": [
                _button("Approve", ActionId.POLICY_APPROVE, value, "primary"),
                _button("Refuse", ActionId.POLICY_REFUSE, value, "danger"),
            ],
        },
    ]


def _button(text: str, action_id: ActionId, value: str, style: str) -> Block:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": text},
        "action_id": action_id.value,
        "value": value,
        "style": style,
    }
