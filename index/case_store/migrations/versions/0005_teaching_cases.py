"""Teaching cases (fields, masks, exclusions), their key images, quiz answers, and FTS5 over cases.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

FTS_COLUMNS = "title, history, findings, diagnosis, differential, discussion, systems"


def _cols(prefix: str) -> str:
    return ", ".join(f"{prefix}.{c.strip()}" for c in FTS_COLUMNS.split(","))


def upgrade() -> None:
    op.create_table(
        "teaching_case",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("study_id", sa.Integer, sa.ForeignKey("study.id", ondelete="CASCADE",
                                                        name="fk_teaching_case_study_id_study"), nullable=False),
        *[sa.Column(c, sa.Text, nullable=False) for c in ("title", "history", "findings", "diagnosis",
                                                          "differential", "discussion")],
        sa.Column("certainty", sa.String, nullable=False),
        sa.Column("systems", sa.Text, nullable=False),
        sa.Column("author", sa.String, nullable=False),
        sa.Column("source", sa.String, nullable=False),
        sa.Column("masks", sa.Text, nullable=False),
        sa.Column("excluded", sa.Text, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("updated", sa.DateTime, nullable=False),
        sa.UniqueConstraint("study_id", name="uq_teaching_case_study_id"),
    )
    op.create_table(
        "teaching_key_image",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("teaching_case.id", ondelete="CASCADE",
                                                       name="fk_teaching_key_image_case_id_teaching_case"),
                  nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("series_id", sa.Integer, sa.ForeignKey("series.id", ondelete="CASCADE",
                                                         name="fk_teaching_key_image_series_id_series"),
                  nullable=False),
        sa.Column("sop_instance_uid", sa.String, nullable=False),
        sa.Column("frame_index", sa.Integer, nullable=False),
        sa.Column("slice_index", sa.Integer, nullable=False),
        sa.Column("orientation", sa.String, nullable=False),
        sa.Column("view_index", sa.Integer, nullable=True),
        sa.Column("window_center", sa.Float, nullable=False),
        sa.Column("window_width", sa.Float, nullable=False),
        sa.Column("annotations", sa.Text, nullable=False),
        sa.Column("caption", sa.Text, nullable=False),
    )
    op.create_index("ix_teaching_key_image_case_id", "teaching_key_image", ["case_id"])
    op.create_index("ix_teaching_key_image_series_id", "teaching_key_image", ["series_id"])
    op.create_table(
        "quiz_answer",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("learner", sa.String(collation="NOCASE"), nullable=False),
        sa.Column("collection", sa.String(collation="NOCASE"), nullable=False),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("teaching_case.id", ondelete="CASCADE",
                                                       name="fk_quiz_answer_case_id_teaching_case"),
                  nullable=False),
        sa.Column("mode", sa.String, nullable=False),
        sa.Column("answer", sa.Text, nullable=False),
        sa.Column("correct", sa.Boolean, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
    )
    for col in ("learner", "collection", "case_id"):
        op.create_index(f"ix_quiz_answer_{col}", "quiz_answer", [col])
    # full-text search over the case fields, kept in step by triggers like report_fts
    op.execute(f"CREATE VIRTUAL TABLE teaching_fts USING fts5({FTS_COLUMNS}, content='teaching_case', "
               "content_rowid='id', tokenize='unicode61 remove_diacritics 2')")
    op.execute(f"CREATE TRIGGER teaching_ai AFTER INSERT ON teaching_case BEGIN "
               f"INSERT INTO teaching_fts(rowid, {FTS_COLUMNS}) VALUES (new.id, {_cols('new')}); END")
    op.execute(f"CREATE TRIGGER teaching_ad AFTER DELETE ON teaching_case BEGIN "
               f"INSERT INTO teaching_fts(teaching_fts, rowid, {FTS_COLUMNS}) "
               f"VALUES ('delete', old.id, {_cols('old')}); END")
    op.execute(f"CREATE TRIGGER teaching_au AFTER UPDATE ON teaching_case BEGIN "
               f"INSERT INTO teaching_fts(teaching_fts, rowid, {FTS_COLUMNS}) "
               f"VALUES ('delete', old.id, {_cols('old')}); "
               f"INSERT INTO teaching_fts(rowid, {FTS_COLUMNS}) VALUES (new.id, {_cols('new')}); END")


def downgrade() -> None:
    for trig in ("teaching_au", "teaching_ad", "teaching_ai"):
        op.execute(f"DROP TRIGGER IF EXISTS {trig}")
    op.execute("DROP TABLE IF EXISTS teaching_fts")
    for table in ("quiz_answer", "teaching_key_image", "teaching_case"):
        op.drop_table(table)
