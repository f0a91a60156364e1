"""Ask Countersign before an agent acts.

from countersign_client import Countersign, require_approval

cs = Countersign()   # COUNTERSIGN_URL and COUNTERSIGN_API_KEY

@require_approval(cs, "process_refund")
def refund(*, amount: int, order_id: str) -> str: ...

refund(amount=620, order_id="A-1")   # waits for a human when the manifest says so; Rejected on no
"""

from countersign_client.client import AsyncCountersign, Countersign
from countersign_client.config import KEY_VARIABLE, URL_VARIABLE, Endpoint, endpoint
from countersign_client.errors import (
    ApiError,
    ConfigurationError,
    CountersignError,
    RateLimited,
    Rejected,
    StillPending,
    Unreachable,
)
from countersign_client.gate import require_approval, require_approval_async
from countersign_client.models import Answer, ApprovalRequest, Decision, Question, Vote
from countersign_client.receipts import ReceiptInvalid, VerifiedReceipt, verify_receipt
from countersign_client.webhooks import (
    SIGNATURE_HEADER,
    BadSignature,
    CallbackReceiver,
    parse_callback,
    verify_signature,
)

__all__ = [
    "KEY_VARIABLE",
    "SIGNATURE_HEADER",
    "URL_VARIABLE",
    "Answer",
    "ApiError",
    "ApprovalRequest",
    "AsyncCountersign",
    "BadSignature",
    "CallbackReceiver",
    "ConfigurationError",
    "Countersign",
    "CountersignError",
    "Decision",
    "Endpoint",
    "Question",
    "RateLimited",
    "ReceiptInvalid",
    "Rejected",
    "StillPending",
    "Unreachable",
    "VerifiedReceipt",
    "Vote",
    "endpoint",
    "parse_callback",
    "require_approval",
    "require_approval_async",
    "verify_receipt",
    "verify_signature",
]
