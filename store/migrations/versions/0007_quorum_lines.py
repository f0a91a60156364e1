"""cross-pool quorums: a stage may belong to a quorum line (``require:``), with that line's approvals

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("request_stage") as batch:
        batch.add_column(sa.Column("line", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("approvals", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("request_stage") as batch:
        batch.drop_column("approvals")
        batch.drop_column("line")
