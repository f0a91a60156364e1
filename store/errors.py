"""The one error tree of ``store``.

::

    StoreError                   root: anything the store refuses to do
    ├── NotFound                 a row the caller named does not exist (or belongs to another tenant)
    ├── TenantUnknown            an operation names a tenant that has no row
    ├── InvalidName              a tenant or pool name breaks ``[a-z0-9_-]+``
    ├── Conflict                 a uniqueness rule would be broken
    │   ├── IdempotencyConflict  same idempotency key, different body
    │   ├── DuplicateVote        the person already voted on this request
    │   └── PoolExists           a pool of that name already exists for the tenant
    └── MigrationError           the schema could not be brought to the current revision

Lost compare-and-set races are *not* errors: transitions return ``False`` so the caller
can tell the loser what happened.
"""

from __future__ import annotations


class StoreError(Exception):
    """Root of every error raised by ``store``."""


class NotFound(StoreError):
    """Raised by ``*_or_raise`` look-ups when the row does not exist, or exists for another tenant."""


class TenantUnknown(NotFound):
    """Raised when an operation names a tenant with no row (create it with ``TenantRepository.ensure``)."""


class InvalidName(StoreError, ValueError):
    """Raised when a tenant or pool name does not match ``[a-z0-9_-]+`` (1-64 characters)."""


class Conflict(StoreError):
    """Raised when a write would break a uniqueness rule of the schema."""


class IdempotencyConflict(Conflict):
    """Raised by ``RequestRepository.create`` when the idempotency key is known with another body (HTTP 409)."""


class BatchConflict(Conflict):
    """A batched insert hit a unique constraint (a key another writer took meanwhile): nothing of the
    batch was written; write its items one at a time to find out whose key it was."""


class DuplicateVote(Conflict):
    """Raised by ``RequestRepository.add_vote`` when the person already voted on the request.

    The insert uses ``ON CONFLICT DO NOTHING``, so the transaction stays usable: the caller
    can audit the refused click in the same unit of work.
    """


class PoolExists(Conflict):
    """Raised by ``PoolRepository.create`` when the tenant already has a pool of that name."""


class MigrationError(StoreError):
    """Raised by ``store.migrate.upgrade`` when Alembic cannot bring the schema up to date."""
