"""Plain data passed in and out of the case store.

The store is used by the viewer core (ingest, GUI), the encoder and the search service, but it
never imports any of them: callers convert their own objects into these dataclasses, and read
results back as these dataclasses (never live ORM objects, which are bound to a session and a
thread).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Sequence


# --------------------------------------------------------------------------------------------
# Input: what ingest hands over
# --------------------------------------------------------------------------------------------


@dataclass
class InstanceRecord:
    """One image (a file, or one frame of a multi-frame file) of a stack."""

    path: str
    sop_instance_uid: str
    sop_class_uid: str = ""
    instance_number: int | None = None
    position: tuple[float, float, float] | None = None  # ImagePositionPatient (LPS mm)
    orientation: tuple[float, ...] | None = None  # ImageOrientationPatient (6 cosines)
    number_of_frames: int = 1
    transfer_syntax_uid: str = ""
    acquisition_number: int | None = None
    echo_number: int | None = None
    acquisition_datetime: str = ""
    frame_index: int | None = None  # None: the whole file is one image
    file_size: int | None = None  # for resuming: a file is unchanged if size and mtime match
    file_mtime_ns: int | None = None


@dataclass
class StackRecord:
    """A displayable stack: one series, or one part of a series split by orientation/echo/etc."""

    key: str
    series_uid: str
    study_uid: str
    patient_id: str = ""
    patient_name: str = ""
    patient_sex: str = ""
    patient_birth_date: str = ""  # DICOM DA (YYYYMMDD) or ""
    patient_issuer: str = ""  # Issuer of Patient ID (0010,0021) or "": with patient_id, who the patient is
    patient_age: str = ""  # DICOM AS (e.g. "045Y") or ""
    study_date: str = ""  # DICOM DA
    study_time: str = ""
    study_description: str = ""
    accession_number: str = ""
    series_number: int | None = None
    series_description: str = ""
    modality: str = ""
    body_part: str = ""
    manufacturer: str = ""
    rows: int = 0
    columns: int = 0
    instances: list[InstanceRecord] = field(default_factory=list)
    split_reason: str = ""
    is_localizer: bool = False
    pixel_spacing: tuple[float, float] | None = None  # (row, column) mm
    slice_thickness: float | None = None
    frame_of_reference_uid: str = ""


@dataclass
class FileState:
    """What the store remembers about one source file (to resume and to stay idempotent)."""

    path: str
    size: int
    mtime_ns: int
    status: str  # "stored" | "duplicate" | "problem"
    reason: str = ""


@dataclass
class AddResult:
    """Outcome of storing one stack."""

    series_id: int
    key: str
    status: str  # "stored" (new) | "updated" (gained images) | "unchanged"
    instances_added: int = 0
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    relocated: list[tuple[str, str]] = field(default_factory=list)  # (new path, old path that is gone)


# --------------------------------------------------------------------------------------------
# Queries
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseFilter:
    """Restrictions for listings and for search pre-filtering; empty fields do not restrict."""

    patient: str | None = None  # substring of the patient ID or name (case-insensitive)
    patient_key: str | None = None  # exact internal patient key
    modalities: tuple[str, ...] = ()
    body_parts: tuple[str, ...] = ()
    sex: str | None = None
    age_min: float | None = None  # years at the study date
    age_max: float | None = None
    date_from: date | None = None
    date_to: date | None = None
    tags: tuple[str, ...] = ()  # a case must carry all of them
    collections: tuple[str, ...] = ()  # a case must be in any of them
    text: str | None = None  # FTS5 query over reports/diagnoses (plus descriptions)
    diagnosis: str | None = None  # words that must occur in the diagnosis
    teaching_only: bool = False
    study_ids: tuple[int, ...] = ()
    include_deleted: bool = False
    include_localizers: bool = True


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


@dataclass
class PatientSummary:
    id: int
    patient_key: str
    patient_id: str
    name: str
    sex: str
    birth_date: date | None
    study_count: int = 0


@dataclass
class StudySummary:
    id: int
    study_uid: str
    patient_key: str
    patient_id: str
    patient_name: str
    sex: str
    age_years: float | None
    study_date: date | None
    study_time: str
    description: str
    accession_number: str
    modalities: list[str]
    series_count: int
    image_count: int
    tags: list[str]
    diagnosis: str
    is_teaching: bool
    difficulty: str
    deid_status: str
    prior_count: int
    follow_up_count: int
    deleted: bool


@dataclass
class SeriesSummary:
    id: int
    key: str
    series_uid: str
    study_id: int
    study_uid: str
    patient_key: str
    series_number: int | None
    description: str
    modality: str
    body_part: str
    manufacturer: str
    rows: int
    columns: int
    slice_count: int  # images in the stack (frames count individually)
    file_count: int
    split_reason: str
    is_localizer: bool
    study_date: date | None
    orientation: tuple[float, ...] | None
    slice_spacing: float | None  # median step between slice positions along the normal (mm)
    extent_mm: float | None  # first to last slice along the normal (mm)
    pixel_spacing: tuple[float, float] | None
    slice_thickness: float | None
    frame_of_reference_uid: str
    has_thumbnail: bool
    deleted: bool
    # for browsers and result cards (one query fills them for a whole listing)
    patient_id: str = ""
    patient_name: str = ""
    study_description: str = ""
    diagnosis: str = ""  # the series' own report's, else the study's
    tags: list[str] = field(default_factory=list)  # the study's


@dataclass
class InstanceSummary:
    sop_instance_uid: str
    path: str
    frame_index: int | None
    instance_number: int | None
    position: tuple[float, float, float] | None
    slice_index: int


@dataclass
class Report:
    study_id: int
    series_id: int | None
    findings: str
    impression: str
    diagnosis: str
    author: str
    updated: datetime | None
    history: str = ""
    technique: str = ""
    note: str = ""
    finding: str = ""  # the vocabulary term the diagnosis maps to
    diagnosis_code: str = ""
    diagnosis_source: str = ""  # coded | impression | reader | import | feedback | demo
    source: str = ""  # who/what wrote the report: import | reader | demo
    document_id: int | None = None  # the imported report version shown


@dataclass
class TextHit:
    """A report matched by full-text search, best first."""

    study_id: int
    series_id: int | None  # the report's own series, if it is a series report
    report_id: int
    score: float  # higher is better (negated bm25)
    snippet: str  # matched words wrapped in [ ]
    diagnosis: str


@dataclass
class TeachingInfo:
    is_teaching: bool = False
    teaching_points: str = ""
    difficulty: str = ""  # "" | "beginner" | "intermediate" | "advanced"
    deid_status: str = "identified"  # "identified" | "deidentified" | "unknown"


@dataclass
class ModelRecord:
    id: int
    name: str
    version: str
    sha256: str
    dim: int
    input_kind: str
    created: datetime | None

    @property
    def key(self) -> str:
        """``name@version``: how index files and settings name a model."""
        return f"{self.name}@{self.version}"


@dataclass
class EmbeddingRow:
    """One stored embedding; ``slice_index`` -1 is the whole series, ``roi`` non-empty for a box."""

    label: int
    series_id: int
    slice_index: int
    vector: "object"  # numpy float32 array (typed loosely to keep this module numpy-free)
    roi: str = ""


@dataclass
class StoreStats:
    path: str
    file_bytes: int
    wal_bytes: int
    schema_version: str
    head_version: str
    patients: int
    studies: int
    series: int
    instances: int
    files: int
    problem_files: int
    reports: int
    deleted_series: int
    incomplete_series: int
    series_by_modality: dict[str, int]
    images_by_modality: dict[str, int]
    models: list[tuple[ModelRecord, int]]  # (model, embedding count)
    tags: int
    collections: int
    teaching_cases: int


TEACHING_DIFFICULTIES: Sequence[str] = ("", "beginner", "intermediate", "advanced")
DEID_STATUSES: Sequence[str] = ("identified", "deidentified", "unknown")
