"""how far each audit sink has acknowledged each tenant's chain

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_sink_cursor",
        sa.Column("sink", sa.String(length=512), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("acked_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant"], ["tenant.name"], name=op.f("fk_audit_sink_cursor_tenant_tenant"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("sink", "tenant", name=op.f("pk_audit_sink_cursor")),
    )


def downgrade() -> None:
    # The sink starts again from each chain's first event (at least once: it sees them twice).
    op.drop_table("audit_sink_cursor")
