"""Imported reports and their versions, report sections and label provenance, the diagnosis
vocabulary (seeded with a small default set), per-series embedding state, embed claims and
retired embeddings; the FTS5 index also covers history, technique and the reader's note.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""
from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_REPORT_COLUMNS = [("history", sa.Text), ("technique", sa.Text), ("note", sa.Text), ("finding", sa.String),
                   ("diagnosis_code", sa.String), ("diagnosis_source", sa.String), ("source", sa.String)]
_FTS_OLD = ("findings", "impression", "diagnosis")
_FTS_NEW = ("findings", "impression", "diagnosis", "history", "technique", "note")

# The default diagnosis vocabulary: a term and the phrases that name it. Editable afterwards with
# `casebook reports vocabulary`; frozen here as the set a new library starts with.
DEFAULT_VOCABULARY: list[tuple[str, list[str]]] = [
    ("pulmonary nodule", ["pulmonary nodule", "pulmonary nodules", "lung nodule", "lung nodules",
                          "solitary pulmonary nodule", "solid pulmonary nodule", "solid lung nodule",
                          "solid nodule", "spn", "nodule rul", "nodule rml", "nodule rll", "nodule lul",
                          "nodule lll", "nodule lingula", "right upper lobe nodule", "right middle lobe nodule",
                          "right lower lobe nodule", "left upper lobe nodule", "left lower lobe nodule"]),
    ("ground-glass nodule", ["ground glass nodule", "ground glass pulmonary nodule", "ground glass opacity",
                             "ggo", "ggn", "subsolid nodule", "part solid nodule"]),
    ("cavitating pulmonary nodule", ["cavitating pulmonary nodule", "cavitating nodule", "cavitary nodule",
                                     "cavitating lung nodule", "cavitary lung lesion"]),
    ("pulmonary mass", ["pulmonary mass", "lung mass", "lung cancer", "bronchial carcinoma"]),
    ("liver metastasis", ["liver metastasis", "liver metastases", "hepatic metastasis", "hepatic metastases",
                          "liver mets", "hypodense liver metastasis", "hyperdense liver metastasis",
                          "hypervascular liver metastasis"]),
    ("liver cyst", ["liver cyst", "hepatic cyst", "simple hepatic cyst"]),
    ("renal cyst", ["renal cyst", "renal cysts", "kidney cyst", "simple renal cyst", "bosniak i cyst"]),
    ("lytic bone lesion", ["lytic bone lesion", "lytic vertebral bone lesion", "lytic vertebral lesion",
                           "lytic lesion", "osteolytic lesion", "osteolytic metastasis"]),
    ("sclerotic bone lesion", ["sclerotic bone lesion", "sclerotic vertebral bone lesion",
                               "sclerotic vertebral lesion", "sclerotic lesion", "osteoblastic lesion",
                               "blastic lesion", "osteoblastic metastasis"]),
    ("brain tumour", ["brain tumour", "brain tumor", "glioma", "glioblastoma", "intracranial mass",
                      "brain mass", "enhancing brain lesion", "ring enhancing lesion"]),
    ("subdural haematoma", ["subdural haematoma", "subdural hematoma", "subdural haemorrhage",
                            "subdural hemorrhage", "sdh"]),
    ("intracranial haemorrhage", ["intracranial haemorrhage", "intracranial hemorrhage", "intracerebral haemorrhage",
                                  "intracerebral hemorrhage", "ich", "subarachnoid haemorrhage",
                                  "subarachnoid hemorrhage"]),
    ("pulmonary embolism", ["pulmonary embolism", "pulmonary emboli", "pulmonary embolus", "pe"]),
    ("pneumothorax", ["pneumothorax", "ptx"]),
    ("pleural effusion", ["pleural effusion", "pleural effusions", "hydrothorax"]),
    ("pneumonia", ["pneumonia", "consolidation", "lobar consolidation", "bronchopneumonia"]),
    ("fracture", ["fracture", "fractures", "fx"]),
    ("renal calculus", ["renal calculus", "kidney stone", "renal stone", "nephrolithiasis", "urolithiasis",
                        "ureteric calculus", "ureteral stone"]),
    ("appendicitis", ["appendicitis", "acute appendicitis"]),
    ("thyroid nodule", ["thyroid nodule", "thyroid nodules"]),
    ("normal", ["normal", "normal study", "no abnormality", "no abnormality detected", "no acute abnormality",
                "no significant abnormality", "no acute findings", "unremarkable", "unremarkable study",
                "nad"]),
]


def normalise(text_: str) -> str:
    """Lower case, words only, single spaces (the form synonyms are stored and matched in)."""
    return " ".join(re.findall(r"[0-9a-zà-ÿ]+", text_.lower()))


def _fts(columns: tuple[str, ...]) -> None:
    cols = ", ".join(columns)
    new = ", ".join(f"new.{c}" for c in columns)
    old = ", ".join(f"old.{c}" for c in columns)
    op.execute(f"CREATE VIRTUAL TABLE report_fts USING fts5({cols}, content='report', content_rowid='id', "
               "tokenize='unicode61 remove_diacritics 2')")
    op.execute(f"CREATE TRIGGER report_ai AFTER INSERT ON report BEGIN "
               f"INSERT INTO report_fts(rowid, {cols}) VALUES (new.id, {new}); END")
    op.execute(f"CREATE TRIGGER report_ad AFTER DELETE ON report BEGIN "
               f"INSERT INTO report_fts(report_fts, rowid, {cols}) VALUES ('delete', old.id, {old}); END")
    op.execute(f"CREATE TRIGGER report_au AFTER UPDATE ON report BEGIN "
               f"INSERT INTO report_fts(report_fts, rowid, {cols}) VALUES ('delete', old.id, {old}); "
               f"INSERT INTO report_fts(rowid, {cols}) VALUES (new.id, {new}); END")
    op.execute("INSERT INTO report_fts(report_fts) VALUES ('rebuild')")


def _drop_fts() -> None:
    for trig in ("report_au", "report_ad", "report_ai"):
        op.execute(f"DROP TRIGGER IF EXISTS {trig}")
    op.execute("DROP TABLE IF EXISTS report_fts")


def upgrade() -> None:
    _drop_fts()
    for name, typ in _REPORT_COLUMNS:
        op.add_column("report", sa.Column(name, typ, nullable=False, server_default=""))
    op.add_column("report", sa.Column("document_id", sa.Integer, nullable=True))
    op.create_index("ix_report_finding", "report", ["finding"])
    _fts(_FTS_NEW)

    op.create_table(
        "report_document",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("content_sha256", sa.String, nullable=False),
        sa.Column("report_key", sa.String, nullable=False),
        sa.Column("source_kind", sa.String, nullable=False),
        sa.Column("source_path", sa.String, nullable=False),
        sa.Column("source_ref", sa.String, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("observed", sa.DateTime, nullable=True),
        sa.Column("accession_number", sa.String, nullable=False),
        sa.Column("study_uid", sa.String, nullable=False),
        sa.Column("patient_id", sa.String, nullable=False),
        sa.Column("study_date", sa.Date, nullable=True),
        sa.Column("modality", sa.String, nullable=False),
        sa.Column("author", sa.String, nullable=False),
        *[sa.Column(c, sa.Text, nullable=False) for c in ("history", "technique", "findings", "impression",
                                                           "diagnosis")],
        sa.Column("diagnosis_code", sa.String, nullable=False),
        sa.Column("diagnosis_source", sa.String, nullable=False),
        sa.Column("study_id", sa.Integer, sa.ForeignKey("study.id", ondelete="SET NULL",
                                                        name="fk_report_document_study_id_study"), nullable=True),
        sa.Column("link_method", sa.String, nullable=False),
        sa.Column("is_current", sa.Boolean, nullable=False),
        sa.Column("superseded_by", sa.Integer, nullable=True),
        sa.Column("imported", sa.DateTime, nullable=False),
        sa.UniqueConstraint("content_sha256", name="uq_report_document_content_sha256"),
    )
    op.create_index("ix_report_document_key", "report_document", ["report_key"])
    op.create_index("ix_report_document_accession", "report_document", ["accession_number"])
    op.create_index("ix_report_document_study_uid", "report_document", ["study_uid"])
    op.create_index("ix_report_document_study_id", "report_document", ["study_id"])

    op.create_table(
        "label_event",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("study_id", sa.Integer, sa.ForeignKey("study.id", ondelete="CASCADE",
                                                        name="fk_label_event_study_id_study"), nullable=False),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("action", sa.String, nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("previous", sa.Text, nullable=False),
        sa.Column("source", sa.String, nullable=False),
        sa.Column("actor", sa.String, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
    )
    op.create_index("ix_label_event_study_kind", "label_event", ["study_id", "kind"])

    vocab = op.create_table(
        "vocabulary_term",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(collation="NOCASE"), nullable=False),
        sa.Column("code", sa.String, nullable=False),
        sa.UniqueConstraint("name", name="uq_vocabulary_term_name"),
    )
    syn = op.create_table(
        "vocabulary_synonym",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("term_id", sa.Integer, sa.ForeignKey("vocabulary_term.id", ondelete="CASCADE",
                                                       name="fk_vocabulary_synonym_term_id_vocabulary_term"),
                  nullable=False),
        sa.Column("phrase", sa.String, nullable=False),
        sa.UniqueConstraint("phrase", name="uq_vocabulary_synonym_phrase"),
    )
    op.create_index("ix_vocabulary_synonym_term_id", "vocabulary_synonym", ["term_id"])
    op.bulk_insert(vocab, [{"id": i + 1, "name": name, "code": ""} for i, (name, _) in enumerate(DEFAULT_VOCABULARY)])
    seen: set[str] = set()
    rows = []
    for i, (name, phrases) in enumerate(DEFAULT_VOCABULARY):
        for p in [name, *phrases]:
            n = normalise(p)
            if n and n not in seen:
                seen.add(n)
                rows.append({"term_id": i + 1, "phrase": n})
    op.bulk_insert(syn, rows)

    op.create_table(
        "embedding_state",
        sa.Column("model_id", sa.Integer, sa.ForeignKey("model.id", ondelete="CASCADE",
                                                        name="fk_embedding_state_model_id_model"), primary_key=True),
        sa.Column("series_id", sa.Integer, sa.ForeignKey("series.id", ondelete="CASCADE",
                                                         name="fk_embedding_state_series_id_series"),
                  primary_key=True),
        sa.Column("file_signature", sa.String, nullable=False),
        sa.Column("content_hash", sa.String, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
    )
    op.create_index("ix_embedding_state_series_id", "embedding_state", ["series_id"])
    op.create_table(
        "embed_claim",
        sa.Column("model_id", sa.Integer, sa.ForeignKey("model.id", ondelete="CASCADE",
                                                        name="fk_embed_claim_model_id_model"), primary_key=True),
        sa.Column("series_id", sa.Integer, sa.ForeignKey("series.id", ondelete="CASCADE",
                                                         name="fk_embed_claim_series_id_series"), primary_key=True),
        sa.Column("owner", sa.String, nullable=False),
        sa.Column("expires", sa.DateTime, nullable=False),
    )
    op.create_table(
        "retired_embedding",
        sa.Column("model_id", sa.Integer, sa.ForeignKey("model.id", ondelete="CASCADE",
                                                        name="fk_retired_embedding_model_id_model"),
                  primary_key=True),
        sa.Column("label", sa.Integer, primary_key=True),
        sa.Column("vector", sa.LargeBinary, nullable=False),
        sa.Column("retired", sa.DateTime, nullable=False),
    )
    op.create_index("ix_retired_embedding_retired", "retired_embedding", ["retired"])


def downgrade() -> None:
    for table in ("retired_embedding", "embed_claim", "embedding_state", "vocabulary_synonym", "vocabulary_term",
                  "label_event", "report_document"):
        op.drop_table(table)
    _drop_fts()
    op.drop_index("ix_report_finding", "report")
    for name in ("document_id", *(n for n, _ in _REPORT_COLUMNS)):
        op.drop_column("report", name)
    _fts(_FTS_OLD)
