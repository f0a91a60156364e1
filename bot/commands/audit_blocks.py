"""The ``/hitl audit`` reply (and the App Home's audit view): a page of events and an "Older" button."""

from __future__ import annotations

from bot.blocks import Block, cut, section
from bot.commands.audit import AuditAnswer
from bot.commands.reply import Reply, actor_text, reply
from bot.ids import ActionId

SHOWN = 200  # characters of an event's text


def audit_blocks(answer: AuditAnswer) -> list[Block]:
    filters = answer.command.words()
    title = f"*Audit trail of {answer.tenant}*" + (f" — `{filters}`" if filters else "") + ", newest first"
    if not answer.lines:
        more = "nothing older" if answer.command.before else "nothing matches"
        return [section(f"{title}\n_{more}_")]
    text = []
    for seq, request_id, line in answer.lines:
        who = f" {actor_text(line.actor)}" if line.actor else ""
        about = f" `{request_id}`" if request_id else ""
        text.append(f"`#{seq}` `{line.at:%m-%d %H:%M}` {line.kind}{who}{about} {cut(line.text, SHOWN)}".rstrip())
    blocks = [section(title), section("\n".join(text))]
    if answer.older is not None:
        older = " ".join(w for w in (answer.tenant, "audit", filters, f"before:{answer.older}") if w)
        blocks.append(
            {
                "type": "actions",
                "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Older"},
                              "action_id": ActionId.AUDIT_OLDER.value, "value": older}],
            }
        )  # fmt: skip
    return blocks


def audit_modal(reply: Reply) -> Block:
    """A ``/hitl audit`` reply (a page, or why it was refused) as the App Home's modal."""
    return {
        "type": "modal",
        "title": {"type": "plain_text", "text": "Audit trail"},
        "close": {"type": "plain_text", "text": "Close"},
        "blocks": reply.blocks[:100],
    }


def audit_reply(answer: AuditAnswer) -> Reply:
    return reply(f"Audit trail of {answer.tenant}", audit_blocks(answer))
