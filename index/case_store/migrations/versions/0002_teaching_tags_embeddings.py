"""Teaching-file fields, tags, collections, follow-up relations, encoder models and embeddings.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("study") as batch:
        batch.add_column(sa.Column("is_teaching", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("teaching_points", sa.Text, nullable=False, server_default=""))
        batch.add_column(sa.Column("difficulty", sa.String, nullable=False, server_default=""))
        batch.add_column(sa.Column("deid_status", sa.String, nullable=False, server_default="identified"))
    op.create_table(
        "tag",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(collation="NOCASE"), nullable=False),
        sa.UniqueConstraint("name", name="uq_tag_name"),
    )
    op.create_table(
        "study_tag",
        sa.Column("study_id", sa.Integer, sa.ForeignKey("study.id", ondelete="CASCADE",
                                                        name="fk_study_tag_study_id_study"), primary_key=True),
        sa.Column("tag_id", sa.Integer, sa.ForeignKey("tag.id", ondelete="CASCADE",
                                                      name="fk_study_tag_tag_id_tag"), primary_key=True),
    )
    op.create_index("ix_study_tag_tag_id", "study_tag", ["tag_id"])
    op.create_table(
        "collection",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(collation="NOCASE"), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.UniqueConstraint("name", name="uq_collection_name"),
    )
    op.create_table(
        "collection_study",
        sa.Column("collection_id", sa.Integer, sa.ForeignKey("collection.id", ondelete="CASCADE",
                                                             name="fk_collection_study_collection_id_collection"),
                  primary_key=True),
        sa.Column("study_id", sa.Integer, sa.ForeignKey("study.id", ondelete="CASCADE",
                                                        name="fk_collection_study_study_id_study"),
                  primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
    )
    op.create_index("ix_collection_study_study_id", "collection_study", ["study_id"])
    op.create_table(
        "follow_up",
        sa.Column("study_id", sa.Integer, sa.ForeignKey("study.id", ondelete="CASCADE",
                                                        name="fk_follow_up_study_id_study"), primary_key=True),
        sa.Column("prior_study_id", sa.Integer, sa.ForeignKey("study.id", ondelete="CASCADE",
                                                              name="fk_follow_up_prior_study_id_study"),
                  primary_key=True),
        sa.Column("interval_days", sa.Integer, nullable=True),
        sa.Column("source", sa.String, nullable=False),
    )
    op.create_index("ix_follow_up_prior_study_id", "follow_up", ["prior_study_id"])
    op.create_table(
        "model",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("version", sa.String, nullable=False),
        sa.Column("sha256", sa.String, nullable=False),
        sa.Column("dim", sa.Integer, nullable=False),
        sa.Column("input_kind", sa.String, nullable=False),
        sa.Column("next_label", sa.Integer, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.UniqueConstraint("name", "version", name="uq_model_name_version"),
    )
    op.create_table(
        "embedding",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("model.id", ondelete="CASCADE",
                                                        name="fk_embedding_model_id_model"), nullable=False),
        sa.Column("series_id", sa.Integer, sa.ForeignKey("series.id", ondelete="CASCADE",
                                                         name="fk_embedding_series_id_series"), nullable=False),
        sa.Column("slice_index", sa.Integer, nullable=False),
        sa.Column("roi", sa.String, nullable=False),
        sa.Column("label", sa.Integer, nullable=False),
        sa.Column("vector", sa.LargeBinary, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.UniqueConstraint("model_id", "label", name="uq_embedding_model_label"),
        sa.UniqueConstraint("model_id", "series_id", "slice_index", "roi", name="uq_embedding_model_series_slice"),
    )
    op.create_index("ix_embedding_series_model", "embedding", ["series_id", "model_id"])


def downgrade() -> None:
    for table in ("embedding", "model", "follow_up", "collection_study", "collection", "study_tag", "tag"):
        op.drop_table(table)
    with op.batch_alter_table("study") as batch:
        for col in ("deid_status", "difficulty", "teaching_points", "is_teaching"):
            batch.drop_column(col)
