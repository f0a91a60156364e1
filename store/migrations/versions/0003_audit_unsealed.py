"""audit events are inserted unsealed and sealed into the chain by the sequencer

Revision ID: 0003
Revises: 0002

Existing chains are untouched: their events stay sealed with their seq and hash, and the
sequencer continues each chain from its ``audit_head`` row.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_unsealed",
        # INTEGER on SQLite so that it is the rowid (the insert order); BIGSERIAL on PostgreSQL.
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("actor", sa.String(length=64), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["tenant"], ["tenant.name"], name=op.f("fk_audit_unsealed_tenant_tenant")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_unsealed")),
    )
    op.create_index("ix_audit_unsealed_tenant_request_id", "audit_unsealed", ["tenant", "request_id"])


def downgrade() -> None:
    # Events still unsealed would be lost: seal them first (`countersign audit seal`).
    op.drop_index("ix_audit_unsealed_tenant_request_id", table_name="audit_unsealed")
    op.drop_table("audit_unsealed")
