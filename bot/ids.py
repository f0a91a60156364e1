"""Identifiers Slack sends back to us: action ids, view callback ids, the command. Mirrored by app.yaml."""

from __future__ import annotations

from enum import StrEnum


class ActionId(StrEnum):
    APPROVE = "countersign.approve"
    REJECT = "countersign.reject"
    DETAILS = "countersign.details"
    REVEAL = "countersign.reveal"  # a card's masked params, shown to one eligible reviewer
    # A question's card: a choice button's action_id is ANSWER + ":<index of the choice>" (unique per block).
    ANSWER = "countersign.answer"
    REPLY = "countersign.reply"  # opens the free-text answer modal
    BULK_OPEN = "countersign.bulk.open"  # App Home: approve several requests of one action
    EDIT = "countersign.edit"  # Edit & approve: opens the edit modal (the action's `editable` params)
    AUDIT_OLDER = "countersign.audit.older"  # /hitl audit: the next page; its value is the command line for it
    AUDIT_OPEN = "countersign.audit.open"  # App Home: the audit trail in a modal
    # A proposed policy change, in the DM to each other admin; the value is "<tenant>:<change id>".
    POLICY_APPROVE = "countersign.policy.approve"
    POLICY_REFUSE = "countersign.policy.refuse"
    POLICY_OPEN = "countersign.policy.open"  # App Home: propose a policy change in a modal


class CallbackId(StrEnum):
    REJECT_REASON = "countersign.reject_reason"
    ANSWER_REPLY = "countersign.answer_reply"
    BULK_SELECT = "countersign.bulk.select"
    BULK_CONFIRM = "countersign.bulk.confirm"
    EDIT_SUBMIT = "countersign.edit_submit"
    POLICY_PROPOSE = "countersign.policy.propose"


class BlockId(StrEnum):
    CARD_ACTIONS = "countersign.card_actions"
    REJECT_REASON = "countersign.reason"
    QUESTION_ACTIONS = "countersign.question_actions"
    ANSWER_TEXT = "countersign.answer_text"
    BULK_PICK = "countersign.bulk.pick"
    EDIT_REASON = "countersign.edit_reason"
    # The App Home's policy form: change one setting of an action, or add an action, or roll back.
    POLICY_ACTION = "countersign.policy.action"
    POLICY_SETTING = "countersign.policy.setting"
    POLICY_VALUE = "countersign.policy.value"
    POLICY_NEW_ACTION = "countersign.policy.new_action"
    POLICY_NEW_POOL = "countersign.policy.new_pool"
    POLICY_ROLLBACK = "countersign.policy.rollback"


REASON_INPUT = "reason"
EDIT_FIELD = "countersign.edit:"  # + the param's dotted path: the block id of its input in the edit modal
EDIT_INPUT = "value"
ANSWER_INPUT = "answer"
BULK_PICK_INPUT = "requests"
POLICY_INPUT = "value"  # the action id of every input in the policy form
COMMAND = "/hitl"
