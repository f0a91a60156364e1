"""``/hitl policy set|add|rollback|approve|refuse`` read into typed commands (pure)."""

from __future__ import annotations

import pytest

from bot.commands.command import PolicyShow
from bot.commands.parse import CommandError, parse
from bot.commands.policy_commands import PolicyDecide, PolicyEdit, PolicyRollback


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("policy set process_refund threshold 700", PolicyEdit("process_refund", "threshold", 700)),
        ("policy set process_refund threshold 99.5", PolicyEdit("process_refund", "threshold", 99.5)),
        ('policy set process_refund if "amount > 700"', PolicyEdit("process_refund", "if", "amount > 700")),
        # Slack escapes what is typed: the condition means the characters.
        (
            'policy set process_refund if "amount &gt; 7 &amp;&amp; x &lt; 2"',
            PolicyEdit("process_refund", "if", "amount > 7 && x < 2"),
        ),
        ("policy set process_refund if amount > 700", PolicyEdit("process_refund", "if", "amount > 700")),
        ("policy set process_refund approvals 2", PolicyEdit("process_refund", "approvals", 2)),
        ("policy set process_refund pool support_tier_2", PolicyEdit("process_refund", "pool", "support_tier_2")),
        ("policy set process_refund timeout 10m", PolicyEdit("process_refund", "timeout", "10m")),
        ("policy set process_refund mode ASYNC", PolicyEdit("process_refund", "mode", "async")),
        ("policy add issue_voucher pool support_tier_2", PolicyEdit("issue_voucher", "pool", "support_tier_2", True)),
        ("policy rollback 12", PolicyRollback(12)),
        ("policy approve #4", PolicyDecide(4, True)),
        ("policy refuse 4", PolicyDecide(4, False)),
        ("acme-support policy rollback v3", PolicyRollback(3)),
        ("policy process_refund", PolicyShow("process_refund")),
    ],
)
def test_reads(line: str, command: object) -> None:
    assert parse(line).command == command


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("policy set process_refund", "Name the action"),
        ("policy set process_refund colour blue", "I cannot set `colour`"),
        ("policy set process_refund threshold lots", "not a number"),
        ("policy set process_refund approvals 0", "1 to 50"),
        ("policy set process_refund mode sample", "`sync` or `async`"),
        ("policy set process_refund if", "Name the action"),
        ('policy set process_refund if ""', "Give the condition"),
        ("policy add issue_voucher approvals 2", "needs its reviewer pool"),
        ("policy rollback latest", "Which version?"),
        ("policy approve", "Which change?"),
        ("policy set process_refund pool Tier-2", "not a pool name"),
    ],
)
def test_refuses_saying_why(line: str, says: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse(line)
    assert says in caught.value.message and caught.value.usage
