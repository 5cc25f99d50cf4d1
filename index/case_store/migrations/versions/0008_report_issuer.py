"""Issuer of the patient ID on report documents (HL7 PID-3's assigning authority, DICOM SR's
Issuer of Patient ID).

Why: a report linked by patient + date + modality, or an accession shared by two hospitals, must
not be attached to another hospital's patient with the same MRN. Reports stored before this have
no issuer ("") and link as before.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("report_document") as batch:
        batch.add_column(sa.Column("patient_issuer", sa.String, nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("report_document") as batch:
        batch.drop_column("patient_issuer")
