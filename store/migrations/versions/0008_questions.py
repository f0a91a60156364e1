"""questions: a request row may be a question (``kind``), answered once (``question_answer``)

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("request") as batch:
        # Every row before this revision is a request: the server default says so without rewriting them.
        batch.add_column(sa.Column("kind", sa.String(length=16), server_default="request", nullable=False))
    op.create_table(
        "question_answer",
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("choice", sa.Integer(), nullable=True),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"], ["request.id"], name=op.f("fk_question_answer_request_id_request"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_question_answer")),
    )


def downgrade() -> None:
    op.drop_table("question_answer")
    with op.batch_alter_table("request") as batch:
        batch.drop_column("kind")
