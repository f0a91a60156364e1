"""The schema: SQLAlchemy 2.0 typed models, one class per table (tables are singular snake_case), grouped
by what they belong to. One declarative :class:`Base` holds them all.

Importing this package imports every module of it, so ``Base.metadata`` (what Alembic compares and
migrates) always knows every table. The models most of the code uses are importable from here; the
few used by one repository alone are imported from their module.
"""

from store.models import homes as homes
from store.models import receipts as receipts
from store.models.audit import AuditEvent, AuditHead, AuditUnsealed
from store.models.base import Base
from store.models.outbox import OutboxItem
from store.models.policies import PolicyChange, PolicyVersion
from store.models.pools import ConfigChange, Delegation, Pool, PoolMember
from store.models.requests import Card, QuestionAnswer, Request, RequestStage, Vote
from store.models.tenants import ApiKey, Tenant

__all__ = [
    "ApiKey",
    "AuditEvent",
    "AuditHead",
    "AuditUnsealed",
    "Base",
    "Card",
    "ConfigChange",
    "Delegation",
    "OutboxItem",
    "PolicyChange",
    "PolicyVersion",
    "Pool",
    "PoolMember",
    "QuestionAnswer",
    "Request",
    "RequestStage",
    "Tenant",
    "Vote",
]
