"""Edit then approve in Block Kit: the edit modal, what it submits, and the notes an edit leaves. Pure.

The modal has one input per ``editable`` param, typed from the request's value (a number input for a
number, a text input for a string, a checkbox for a boolean), and an optional reason. Its
``private_metadata`` names the request and the params it was drawn from, so a form opened before someone
else's edit cannot overwrite it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.blocks import Block, cut, edit_value, section
from bot.errors import BadPayload
from bot.ids import EDIT_FIELD, EDIT_INPUT, REASON_INPUT, BlockId, CallbackId
from bot.payloads import CardRef
from policy.edits import EditableField, FieldKind

TRUE = "true"  # the value of a boolean field's checkbox


class EditRef(BaseModel):
    """The edit modal's ``private_metadata``: the request, and the digest of the params the form shows."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = 1
    tenant: str = Field(alias="t")
    request_id: str = Field(alias="r")
    params_sha256: str = Field(alias="p")

    @property
    def card(self) -> CardRef:
        return CardRef(t=self.tenant, r=self.request_id)

    def dumps(self) -> str:
        return json.dumps(self.model_dump(by_alias=True), separators=(",", ":"))

    @classmethod
    def loads(cls, raw: str | None) -> EditRef:
        """Raises BadPayload for anything that is not a reference we wrote."""
        try:
            return cls.model_validate(json.loads(raw or ""))
        except (ValueError, ValidationError) as exc:
            raise BadPayload("this form does not belong to a Countersign request") from exc


def _input(field: EditableField) -> Block:
    label = {"type": "plain_text", "text": cut(field.path, 2000)}
    block: Block = {"type": "input", "block_id": EDIT_FIELD + field.path, "label": label}
    if field.kind is FieldKind.BOOLEAN:
        option = {"text": {"type": "plain_text", "text": "Yes"}, "value": TRUE}
        element: Block = {"type": "checkboxes", "action_id": EDIT_INPUT, "options": [option]}
        if field.value:
            element["initial_options"] = [option]
        block["optional"] = True  # unticked is an answer (false), not a missing one
    elif field.kind in (FieldKind.INTEGER, FieldKind.NUMBER):
        element = {
            "type": "number_input",
            "action_id": EDIT_INPUT,
            "is_decimal_allowed": field.kind is FieldKind.NUMBER,
        }
        if field.value is not None:
            element["initial_value"] = str(field.value)
    else:
        text = "" if field.value is None else str(field.value)
        element = {"type": "plain_text_input", "action_id": EDIT_INPUT, "max_length": 3000, "multiline": len(text) > 80}
        if text:
            element["initial_value"] = text
        else:
            block["optional"] = True  # the agent sent nothing here: leaving it empty keeps it so
    block["element"] = element
    return block


def edit_modal(ref: EditRef, summary: str, fields: Sequence[EditableField]) -> Block:
    """The modal a reviewer edits the params in; submitting approves the edited request, as the policy allows."""
    intro = (
        f"You are editing, then approving:\n*{cut(summary, 2000)}*\n"
        "The policy judges the edited request again: it may refuse the edit, or send it to other reviewers. "
        "Approvals already cast were for the params as asked, so they are withdrawn."
    )
    blocks = [section(intro), *(_input(f) for f in fields[:40])]
    blocks.append(
        {
            "type": "input",
            "block_id": BlockId.EDIT_REASON.value,
            "optional": True,
            "label": {"type": "plain_text", "text": "Why? (the agent and the audit log will see this)"},
            "element": {"type": "plain_text_input", "action_id": REASON_INPUT, "multiline": True, "max_length": 1000},
        }
    )
    return {
        "type": "modal",
        "callback_id": CallbackId.EDIT_SUBMIT.value,
        "private_metadata": ref.dumps(),
        "title": {"type": "plain_text", "text": "Edit & approve"},
        "submit": {"type": "plain_text", "text": "Approve edited"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": blocks,
    }


def submitted_values(state: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, str | bool | None]:
    """The submitted form's values by param path: text as typed, a checkbox as a boolean."""
    values: dict[str, str | bool | None] = {}
    for block_id, actions in state.items():
        if not block_id.startswith(EDIT_FIELD):
            continue
        entry = actions.get(EDIT_INPUT) or {}
        path = block_id[len(EDIT_FIELD) :]
        if entry.get("type") == "checkboxes":
            values[path] = any(o.get("value") == TRUE for o in entry.get("selected_options") or [])
        else:
            value = entry.get("value")
            values[path] = value if isinstance(value, str) else None
    return values


def field_errors(errors: Mapping[str, str]) -> dict[str, str]:
    """Errors by param path, as ``response_action: errors`` wants them (by block id)."""
    return {EDIT_FIELD + path: cut(message, 150) for path, message in errors.items()}


def diff_text(changes: Sequence[tuple[str, Any, Any]]) -> str:
    return "; ".join(f"*{path}* {edit_value(before)} → {edit_value(after)}" for path, before, after in changes)


def edit_note(user: str, changes: Sequence[tuple[str, Any, Any]], outcome: str, reason: str | None) -> str:
    """The thread note of an edit: who, the diff (before → after), why, and what the policy made of it."""
    why = f"\n>{cut(reason, 500)}" if reason else ""
    return cut(f":pencil2: <@{user}> edited the params: {diff_text(changes)}{why}\n{outcome}", 3000)


def refused_text(reason: str) -> str:
    """What the editor alone is told when the policy refuses the edit."""
    return cut(f":no_entry: The policy refuses this edit, so nothing changed: {reason}", 3000)


STALE = "This request was edited by someone else meanwhile, so your form is out of date; open Edit & approve again."
UNCHANGED = "Nothing changed: use Approve to approve the request as asked."
NOT_EDITABLE = "This request has no params a reviewer may edit (the manifest's `editable`)."
