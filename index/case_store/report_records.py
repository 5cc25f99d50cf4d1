"""Plain records of imported reports, label provenance and the diagnosis vocabulary.

Kept apart from :mod:`.records` so the reports work stays in its own rooms; the store takes and
returns these, never ORM objects.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

LABEL_SOURCES = ("import", "reader", "feedback", "demo")
REPORT_STATUSES = ("preliminary", "final", "corrected", "cancelled")
LINK_METHODS = ("accession", "study_uid", "patient_date_modality")
# How much a link can be trusted, for listings: the third key can pair a report with the wrong study
# of the same day (two CTs of one patient), so it is shown as the weaker link.
LINK_STRENGTH = {"accession": "strong", "study_uid": "strong", "patient_date_modality": "weak", "": "none"}


@dataclass
class ReportDocumentIn:
    """One report as a reader parsed it (HL7 message, SR/PDF object, CSV/JSON row), before storing.

    ``content_sha256`` identifies the content (re-importing it is a no-op); ``report_key`` the
    report across its versions (see :func:`report_key`).
    """

    source_kind: str
    content_sha256: str
    source_path: str = ""
    source_ref: str = ""
    report_id: str = ""  # the RIS's own report / filler order number, when it sends one
    status: str = "final"
    observed: datetime | None = None
    accession_number: str = ""
    study_uid: str = ""
    patient_id: str = ""
    patient_issuer: str = ""  # who assigned the patient ID (HL7 PID-3.4, DICOM Issuer of Patient ID)
    study_date: date | None = None
    modality: str = ""
    author: str = ""
    history: str = ""
    technique: str = ""
    findings: str = ""
    impression: str = ""
    diagnosis: str = ""
    diagnosis_code: str = ""
    diagnosis_source: str = ""  # coded | impression | import

    def report_key(self) -> str:
        """The report's identity across versions: accession, else the RIS id, else the study UID,
        else patient + date + modality. Formats agree on it, so an HL7 report and a later SR of
        the same accession are versions of one report."""
        if self.accession_number:
            return f"acc:{self.accession_number}"
        if self.report_id:
            return f"id:{self.report_id}"
        if self.study_uid:
            return f"uid:{self.study_uid}"
        pid = f"{self.patient_id}^{self.patient_issuer}" if self.patient_issuer else self.patient_id
        return f"pdm:{pid}|{self.study_date or ''}|{self.modality}"


@dataclass
class ReportDocumentRecord:
    """A stored report version and where it is linked."""

    id: int
    report_key: str
    source_kind: str
    source_path: str
    source_ref: str
    status: str
    observed: datetime | None
    accession_number: str
    study_uid: str
    patient_id: str
    study_date: date | None
    modality: str
    author: str
    history: str
    technique: str
    findings: str
    impression: str
    diagnosis: str
    diagnosis_code: str
    diagnosis_source: str
    study_id: int | None
    link_method: str
    is_current: bool
    superseded_by: int | None
    imported: datetime
    patient_issuer: str = ""

    @property
    def link_strength(self) -> str:
        return LINK_STRENGTH.get(self.link_method, "none")


@dataclass
class ImportOutcome:
    """What storing one document did: ``status`` is new | duplicate | amended | older (kept as
    history only); ``study_id``/``link_method`` say where it is linked (None: unmatched)."""

    status: str
    document_id: int
    study_id: int | None
    link_method: str


@dataclass
class LabelEventRecord:
    study_id: int
    kind: str  # diagnosis | tag | note
    action: str  # set | add | remove
    value: str
    previous: str
    source: str
    actor: str
    created: datetime


@dataclass
class StudyLabels:
    """A study's labels with who/what set each and when (the study panel and ``study show``)."""

    study_id: int
    diagnosis: str = ""
    finding: str = ""  # the vocabulary term of the diagnosis
    diagnosis_code: str = ""
    diagnosis_source: str = ""
    note: str = ""
    tags: list[str] = field(default_factory=list)
    provenance: dict[str, LabelEventRecord] = field(default_factory=dict)  # "diagnosis", "note", "tag:NAME"


@dataclass
class VocabularyEntry:
    name: str
    code: str
    synonyms: list[str]


@dataclass
class RemovedStudy:
    """What ``delete_study`` removed: the files the study's images were read from, its series."""

    study_id: int
    series_ids: list[int]
    files: list[str]
