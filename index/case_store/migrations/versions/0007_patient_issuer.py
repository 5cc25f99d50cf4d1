"""Issuer of Patient ID on the patient: the patient key becomes (PatientID, Issuer).

A library made before this keeps its keys (issuer "" = the bare PatientID, as before); a study
ingested later whose header names an issuer is keyed "PatientID\\Issuer", a second patient
when the same ID comes from another issuer.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("patient") as batch:
        batch.add_column(sa.Column("issuer", sa.String, nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("patient") as batch:
        batch.drop_column("issuer")
