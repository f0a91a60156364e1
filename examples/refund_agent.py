"""A tiny agent that asks Countersign before refunding, and undoes async credits on rejection.

    countersign tenant key create acme-support --name refund-bot   # prints the key on its last line
    CS_URL=http://127.0.0.1:3000 CS_KEY=cs_... python examples/refund_agent.py 620

(With the sandbox running, its page prints CS_URL and the key to use.)

With the sandbox running, approve or reject the card on its page and watch this script
carry on the moment you click.
"""

from __future__ import annotations

import os
import sys

from bot.client import Countersign, CountersignError, Rejected, Unreachable, require_approval

client = Countersign(os.environ.get("CS_URL", "http://127.0.0.1:3000"), api_key=os.environ.get("CS_KEY", ""))


@require_approval(client, "process_refund", context={"reason": "customer was charged twice", "workflow_id": "demo"})
def process_refund(*, amount: int, currency: str, customer: dict[str, str], card_number: str, order_id: str) -> str:
    return f"refunded {amount} {currency} to {customer['name']} for order {order_id}"


def main() -> int:
    if not client.api_key:
        print("set CS_KEY to an API key: countersign tenant key create acme-support --name refund-bot", file=sys.stderr)
        return 2
    amount = int(sys.argv[1]) if len(sys.argv) > 1 else 620
    print(f"asking to refund {amount} EUR... (small refunds pass at once; large ones wait for a human)")
    try:
        result = process_refund(
            amount=amount,
            currency="EUR",
            customer={"name": "Ana", "email": "ana@example.com"},
            card_number="4111111111111111",
            order_id="A-1001",
        )
    except Rejected as no:
        print(f"not allowed: {no}")
        return 1
    except Unreachable as exc:
        print(f"{exc.message}: is the service (or the sandbox) running at CS_URL?", file=sys.stderr)
        return 2
    except CountersignError as exc:
        hint = " (a wrong or revoked CS_KEY?)" if exc.status == 401 else ""
        print(f"Countersign said {exc.status} {exc.code}: {exc.message}{hint}", file=sys.stderr)
        return 2
    print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
