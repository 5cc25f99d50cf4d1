"""Finding-level regions: region descriptors, per-series region sets and the regions themselves.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "region_descriptor",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("version", sa.String, nullable=False),
        sa.Column("dim", sa.Integer, nullable=False),
        sa.Column("next_label", sa.Integer, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.UniqueConstraint("name", "version", name="uq_region_descriptor_name_version"),
    )
    op.create_table(
        "region_set",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("descriptor_id", sa.Integer, sa.ForeignKey("region_descriptor.id", ondelete="CASCADE",
                                                             name="fk_region_set_descriptor_id_region_descriptor"),
                  nullable=False),
        sa.Column("series_id", sa.Integer, sa.ForeignKey("series.id", ondelete="CASCADE",
                                                         name="fk_region_set_series_id_series"), nullable=False),
        sa.Column("family", sa.String, nullable=False),
        sa.Column("body_part", sa.String, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.UniqueConstraint("descriptor_id", "series_id", name="uq_region_set_descriptor_id"),
    )
    op.create_index("ix_region_set_series_id", "region_set", ["series_id"])
    op.create_table(
        "region",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("descriptor_id", sa.Integer, sa.ForeignKey("region_descriptor.id", ondelete="CASCADE",
                                                             name="fk_region_descriptor_id_region_descriptor"),
                  nullable=False),
        sa.Column("series_id", sa.Integer, sa.ForeignKey("series.id", ondelete="CASCADE",
                                                         name="fk_region_series_id_series"), nullable=False),
        sa.Column("label", sa.Integer, nullable=False),
        sa.Column("family", sa.String, nullable=False),
        *[sa.Column(c, sa.Integer, nullable=False) for c in ("k0", "k1", "j0", "j1", "i0", "i1")],
        *[sa.Column(c, sa.Float, nullable=False) for c in ("centre_k", "centre_j", "centre_i")],
        *[sa.Column(c, sa.Float, nullable=True) for c in ("x", "y", "z")],
        sa.Column("diameter_mm", sa.Float, nullable=False),
        sa.Column("volume_ml", sa.Float, nullable=False),
        sa.Column("polarity", sa.Integer, nullable=False),
        sa.Column("contrast", sa.Float, nullable=False),
        sa.Column("saliency", sa.Float, nullable=False),
        sa.Column("vector", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("descriptor_id", "label", name="uq_region_descriptor_id"),
    )
    op.create_index("ix_region_series_id", "region", ["series_id"])
    op.create_index("ix_region_descriptor_family", "region", ["descriptor_id", "family"])


def downgrade() -> None:
    for table in ("region", "region_set", "region_descriptor"):
        op.drop_table(table)
