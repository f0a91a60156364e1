"""A tiny agent that asks Countersign before refunding (needs only `pip install ./clients/python`).

    countersign tenant key create acme-support --name refund-bot   # prints the key on its last line
    COUNTERSIGN_URL=http://127.0.0.1:3000 COUNTERSIGN_API_KEY=cs_... python examples/refund_agent.py 620

With the sandbox running (it prints its agent API URL, and keeps a key per tenant in
.countersign/agent-keys.json), approve or reject the card on its page and watch this script
carry on the moment you click.
"""

from __future__ import annotations

import os
import sys

from countersign_client import (
    ApiError,
    ConfigurationError,
    Countersign,
    Rejected,
    Unreachable,
    require_approval,
)


def main() -> int:
    try:
        client = Countersign(os.environ.get("COUNTERSIGN_URL", "http://127.0.0.1:3000"))
    except ConfigurationError as exc:
        print(f"{exc}: countersign tenant key create acme-support --name refund-bot", file=sys.stderr)
        return 2

    @require_approval(client, "process_refund", context={"reason": "customer was charged twice", "workflow_id": "demo"})
    def process_refund(*, amount: int, currency: str, customer: dict[str, str], card_number: str, order_id: str) -> str:
        return f"refunded {amount} {currency} to {customer['name']} for order {order_id}"

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
        print(f"{exc} (COUNTERSIGN_URL is {client.url})", file=sys.stderr)
        return 2
    except ApiError as exc:
        hint = " (a wrong or revoked COUNTERSIGN_API_KEY?)" if exc.status == 401 else ""
        print(f"Countersign said {exc.status} {exc.code}: {exc.message}{hint}", file=sys.stderr)
        return 2
    finally:
        client.close()
    print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
