"""The append-only, hash-chained audit log; one chain per tenant (design: store/README.md).

- :mod:`store.audit.chain`: what a link hashes (the format), and an event as read back.
- :mod:`store.audit.log`: ``tx.audit``: writers insert events unsealed, with their state change;
  reads show the trail, sealed and unsealed.
- :mod:`store.audit.sequencer`: the one sequencer that seals events into the chain in batches.
- :mod:`store.audit.verify`: the walk, anchors, and the report of what is not sealed yet.
- :mod:`store.audit.export`: the sealed chain streamed out.
- :mod:`store.audit.query`: the sealed chain explored by action, person, outcome and time, a page at a time.
- :mod:`store.audit.cursor`: how far an audit sink has acknowledged each chain.
"""

from store.audit.chain import ANCHOR_HASH, GENESIS_HASH, SYSTEM_CHAIN, AuditRecord, event_hash, format_at
from store.audit.cursor import Backlog, acknowledge, backlogs, sealed_after
from store.audit.export import CSV_COLUMNS, csv_row, export, json_line
from store.audit.log import AuditLog, NewEvent, append_system, request_event
from store.audit.query import AuditFilter, AuditPage, query_audit
from store.audit.sequencer import Sequencer
from store.audit.verify import UnsealedEvent, VerifyResult, unsealed_events, verify, verify_anchored

__all__ = [
    "ANCHOR_HASH",
    "CSV_COLUMNS",
    "GENESIS_HASH",
    "SYSTEM_CHAIN",
    "AuditFilter",
    "AuditLog",
    "AuditPage",
    "AuditRecord",
    "Backlog",
    "NewEvent",
    "Sequencer",
    "UnsealedEvent",
    "VerifyResult",
    "acknowledge",
    "append_system",
    "backlogs",
    "csv_row",
    "event_hash",
    "export",
    "format_at",
    "json_line",
    "query_audit",
    "request_event",
    "sealed_after",
    "unsealed_events",
    "verify",
    "verify_anchored",
]
