"""Registrations of a prior series to a current one (matrix, reader's nudge, metric, software).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registration",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("fixed_series_id", sa.Integer, sa.ForeignKey("series.id", ondelete="CASCADE",
                                                               name="fk_registration_fixed_series_id_series"),
                  nullable=False),
        sa.Column("moving_series_id", sa.Integer, sa.ForeignKey("series.id", ondelete="CASCADE",
                                                                name="fk_registration_moving_series_id_series"),
                  nullable=False),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("matrix", sa.Text, nullable=False),
        sa.Column("nudge", sa.Text, nullable=False),
        sa.Column("metric", sa.Float, nullable=True),
        sa.Column("quality", sa.Float, nullable=True),
        sa.Column("overlap", sa.Float, nullable=True),
        sa.Column("iterations", sa.Integer, nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.Column("software", sa.String, nullable=False),
        sa.Column("deformable", sa.Text, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("updated", sa.DateTime, nullable=False),
        sa.UniqueConstraint("fixed_series_id", "moving_series_id", "kind", name="uq_registration_fixed_series_id"),
    )
    op.create_index("ix_registration_fixed_series_id", "registration", ["fixed_series_id"])
    op.create_index("ix_registration_moving_series_id", "registration", ["moving_series_id"])


def downgrade() -> None:
    op.drop_index("ix_registration_moving_series_id", "registration")
    op.drop_index("ix_registration_fixed_series_id", "registration")
    op.drop_table("registration")
