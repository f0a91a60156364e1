"""Identifiers Slack sends back to us: action ids, view callback ids, the command. Mirrored by app.yaml."""

from __future__ import annotations

from enum import StrEnum


class ActionId(StrEnum):
    APPROVE = "countersign.approve"
    REJECT = "countersign.reject"
    DETAILS = "countersign.details"


class CallbackId(StrEnum):
    REJECT_REASON = "countersign.reject_reason"


class BlockId(StrEnum):
    CARD_ACTIONS = "countersign.card_actions"
    REJECT_REASON = "countersign.reason"


REASON_INPUT = "reason"
COMMAND = "/hitl"
