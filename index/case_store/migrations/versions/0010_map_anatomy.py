"""What a series' context map shows of the body (head, chest, trunk), read once at embed time.

Why: a series whose headers name no anatomy (a de-identified export, a research archive) is placed
by its own CT image; reading that from the map takes about 0.1 s a series, and a box query meets
dozens of such candidates, so the reading is stored with the map. NULL: not read yet (a map made
before this); the reading's version is stored beside it, so a changed rule is read again.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("context_map") as batch:
        batch.add_column(sa.Column("anatomy", sa.String, nullable=True))
        batch.add_column(sa.Column("anatomy_version", sa.String, nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("context_map") as batch:
        batch.drop_column("anatomy_version")
        batch.drop_column("anatomy")
