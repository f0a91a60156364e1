"""edit then approve: a request keeps the agent's params once a reviewer edits them; an edit that moves
the request to another route closes the stages of the old one (``superseded_at``)

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("request") as batch:
        batch.add_column(
            sa.Column(
                "original_params",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )
        batch.add_column(sa.Column("edited_by", sa.String(length=64), nullable=True))
    with op.batch_alter_table("request_stage") as batch:
        batch.add_column(sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("request_stage") as batch:
        batch.drop_column("superseded_at")
    with op.batch_alter_table("request") as batch:
        batch.drop_column("edited_by")
        batch.drop_column("original_params")
