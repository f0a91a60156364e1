"""The append-only, hash-chained audit log; one chain per tenant (design: store/README.md).

- :mod:`store.audit.chain`: what a link hashes (the format), and an event as read back.
- :mod:`store.audit.log`: ``tx.audit``: writers insert events unsealed, with their state change;
  reads show the trail, sealed and unsealed.
- :mod:`store.audit.sequencer`: the one sequencer that seals events into the chain in batches.
- :mod:`store.audit.verify`: the walk, anchors, and the report of what is not sealed yet.
- :mod:`store.audit.export`: the sealed chain streamed out.
"""

from store.audit.chain import ANCHOR_HASH, GENESIS_HASH, SYSTEM_CHAIN, AuditRecord, event_hash, format_at
from store.audit.export import export
from store.audit.log import AuditLog, NewEvent, append_system, request_event
from store.audit.sequencer import Sequencer
from store.audit.verify import UnsealedEvent, VerifyResult, unsealed_events, verify, verify_anchored

__all__ = [
    "ANCHOR_HASH",
    "GENESIS_HASH",
    "SYSTEM_CHAIN",
    "AuditLog",
    "AuditRecord",
    "NewEvent",
    "Sequencer",
    "UnsealedEvent",
    "VerifyResult",
    "append_system",
    "event_hash",
    "export",
    "format_at",
    "request_event",
    "unsealed_events",
    "verify",
    "verify_anchored",
]
