"""Initial schema: patients, studies, series (stacks), instances, source files, reports + FTS5.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "patient",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("patient_key", sa.String, nullable=False),
        sa.Column("patient_id", sa.String, nullable=False),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("sex", sa.String, nullable=False),
        sa.Column("birth_date", sa.Date, nullable=True),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.UniqueConstraint("patient_key", name="uq_patient_patient_key"),
    )
    op.create_table(
        "study",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("study_uid", sa.String, nullable=False),
        sa.Column("patient_id", sa.Integer, sa.ForeignKey("patient.id", ondelete="CASCADE",
                                                          name="fk_study_patient_id_patient"), nullable=False),
        sa.Column("study_date", sa.Date, nullable=True),
        sa.Column("study_time", sa.String, nullable=False),
        sa.Column("description", sa.String, nullable=False),
        sa.Column("accession_number", sa.String, nullable=False),
        sa.Column("patient_age", sa.String, nullable=False),
        sa.Column("age_years", sa.Float, nullable=True),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("updated", sa.DateTime, nullable=False),
        sa.UniqueConstraint("study_uid", name="uq_study_study_uid"),
    )
    op.create_index("ix_study_patient_id", "study", ["patient_id"])
    op.create_index("ix_study_study_date", "study", ["study_date"])
    op.create_table(
        "series",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("stack_key", sa.String, nullable=False),
        sa.Column("series_uid", sa.String, nullable=False),
        sa.Column("study_id", sa.Integer, sa.ForeignKey("study.id", ondelete="CASCADE",
                                                        name="fk_series_study_id_study"), nullable=False),
        sa.Column("series_number", sa.Integer, nullable=True),
        sa.Column("description", sa.String, nullable=False),
        sa.Column("modality", sa.String, nullable=False),
        sa.Column("body_part", sa.String, nullable=False),
        sa.Column("manufacturer", sa.String, nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("columns", sa.Integer, nullable=False),
        sa.Column("slice_count", sa.Integer, nullable=False),
        sa.Column("file_count", sa.Integer, nullable=False),
        sa.Column("split_reason", sa.String, nullable=False),
        sa.Column("is_localizer", sa.Boolean, nullable=False),
        sa.Column("orientation", sa.String, nullable=False),
        sa.Column("slice_spacing", sa.Float, nullable=True),
        sa.Column("pixel_spacing", sa.String, nullable=False),
        sa.Column("slice_thickness", sa.Float, nullable=True),
        sa.Column("frame_of_reference_uid", sa.String, nullable=False),
        sa.Column("extent_mm", sa.Float, nullable=True),
        sa.Column("thumbnail", sa.LargeBinary, nullable=True),
        sa.Column("state", sa.String, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("updated", sa.DateTime, nullable=False),
        sa.UniqueConstraint("stack_key", name="uq_series_stack_key"),
    )
    op.create_index("ix_series_series_uid", "series", ["series_uid"])
    op.create_index("ix_series_study_id", "series", ["study_id"])
    op.create_index("ix_series_modality", "series", ["modality"])
    op.create_table(
        "instance",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("series_id", sa.Integer, sa.ForeignKey("series.id", ondelete="CASCADE",
                                                         name="fk_instance_series_id_series"), nullable=False),
        sa.Column("sop_instance_uid", sa.String, nullable=False),
        sa.Column("frame_index", sa.Integer, nullable=False),
        sa.Column("sop_class_uid", sa.String, nullable=False),
        sa.Column("path", sa.String, nullable=False),
        sa.Column("instance_number", sa.Integer, nullable=True),
        sa.Column("slice_index", sa.Integer, nullable=False),
        sa.Column("pos_x", sa.Float, nullable=True),
        sa.Column("pos_y", sa.Float, nullable=True),
        sa.Column("pos_z", sa.Float, nullable=True),
        sa.Column("number_of_frames", sa.Integer, nullable=False),
        sa.Column("transfer_syntax_uid", sa.String, nullable=False),
        sa.Column("acquisition_number", sa.Integer, nullable=True),
        sa.Column("echo_number", sa.Integer, nullable=True),
        sa.Column("acquisition_datetime", sa.String, nullable=False),
        sa.UniqueConstraint("sop_instance_uid", "frame_index", name="uq_instance_sop_frame"),
    )
    op.create_index("ix_instance_series_id", "instance", ["series_id"])
    op.create_index("ix_instance_path", "instance", ["path"])
    op.create_table(
        "source_file",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("path", sa.String, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("mtime_ns", sa.Integer, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("series_id", sa.Integer, sa.ForeignKey("series.id", ondelete="SET NULL",
                                                         name="fk_source_file_series_id_series"), nullable=True),
        sa.Column("seen", sa.DateTime, nullable=False),
        sa.UniqueConstraint("path", name="uq_source_file_path"),
    )
    op.create_index("ix_source_file_series_id", "source_file", ["series_id"])
    op.create_table(
        "report",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("study_id", sa.Integer, sa.ForeignKey("study.id", ondelete="CASCADE",
                                                        name="fk_report_study_id_study"), nullable=False),
        sa.Column("series_id", sa.Integer, sa.ForeignKey("series.id", ondelete="CASCADE",
                                                         name="fk_report_series_id_series"), nullable=True),
        sa.Column("findings", sa.Text, nullable=False),
        sa.Column("impression", sa.Text, nullable=False),
        sa.Column("diagnosis", sa.Text, nullable=False),
        sa.Column("author", sa.String, nullable=False),
        sa.Column("updated", sa.DateTime, nullable=False),
    )
    op.create_index("ix_report_study_id", "report", ["study_id"])
    op.create_index("ix_report_series_id", "report", ["series_id"])
    # Full-text search over reports: an external-content FTS5 table kept in step by triggers, so
    # the text is stored once and the index can always be rebuilt from the report table.
    op.execute(
        "CREATE VIRTUAL TABLE report_fts USING fts5(findings, impression, diagnosis, "
        "content='report', content_rowid='id', tokenize='unicode61 remove_diacritics 2')"
    )
    op.execute(
        "CREATE TRIGGER report_ai AFTER INSERT ON report BEGIN "
        "INSERT INTO report_fts(rowid, findings, impression, diagnosis) "
        "VALUES (new.id, new.findings, new.impression, new.diagnosis); END"
    )
    op.execute(
        "CREATE TRIGGER report_ad AFTER DELETE ON report BEGIN "
        "INSERT INTO report_fts(report_fts, rowid, findings, impression, diagnosis) "
        "VALUES ('delete', old.id, old.findings, old.impression, old.diagnosis); END"
    )
    op.execute(
        "CREATE TRIGGER report_au AFTER UPDATE ON report BEGIN "
        "INSERT INTO report_fts(report_fts, rowid, findings, impression, diagnosis) "
        "VALUES ('delete', old.id, old.findings, old.impression, old.diagnosis); "
        "INSERT INTO report_fts(rowid, findings, impression, diagnosis) "
        "VALUES (new.id, new.findings, new.impression, new.diagnosis); END"
    )


def downgrade() -> None:
    for trig in ("report_au", "report_ad", "report_ai"):
        op.execute(f"DROP TRIGGER IF EXISTS {trig}")
    op.execute("DROP TABLE IF EXISTS report_fts")
    for table in ("report", "source_file", "instance", "series", "study", "patient"):
        op.drop_table(table)
