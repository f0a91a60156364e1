"""signed decision receipts: per-tenant Ed25519 keys, and each decision's receipt once issued

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "receipt_key",
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("private_key", sa.String(length=64), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant"], ["tenant.name"], name=op.f("fk_receipt_key_tenant_tenant"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_receipt_key")),
    )
    op.create_index(op.f("ix_receipt_key_tenant"), "receipt_key", ["tenant"], unique=False)
    op.create_table(
        "receipt",
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"], ["request.id"], name=op.f("fk_receipt_request_id_request"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["tenant"], ["tenant.name"], name=op.f("fk_receipt_tenant_tenant"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_receipt")),
    )
    op.create_index("ix_receipt_kid_expires_at", "receipt", ["kid", "expires_at"], unique=False)


def downgrade() -> None:
    # Receipts already handed out stay verifiable offline with the public keys their holders kept.
    op.drop_index("ix_receipt_kid_expires_at", table_name="receipt")
    op.drop_table("receipt")
    op.drop_index(op.f("ix_receipt_key_tenant"), table_name="receipt_key")
    op.drop_table("receipt_key")
