"""Context maps: each series at 4 mm, so a box's surroundings can be found on the patient's other scans.

Why: a box on a finding should open the same patient's earlier scan at the same finding; the
region descriptor says what a finding looks like, not where it sits. One row per series (about
25 kB for a brain MR, under 1 MB for a large CT, zlib), removed with its series.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "context_map",
        sa.Column("series_id", sa.Integer, sa.ForeignKey("series.id", ondelete="CASCADE",
                                                         name="fk_context_map_series_id_series"), primary_key=True),
        sa.Column("version", sa.String, nullable=False),
        sa.Column("family", sa.String, nullable=False),
        sa.Column("shape", sa.String, nullable=False),
        sa.Column("scale", sa.String, nullable=False),
        sa.Column("offset", sa.String, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("context_map")
