"""SQLAlchemy 2.0 ORM models of the case store (the schema at the newest migration).

The schema itself is created and changed only by the alembic migrations in ``migrations/``;
these classes describe it for queries. ``tests/index/test_case_store_migrations.py`` checks that
the two agree.
"""
from __future__ import annotations

from datetime import date, datetime, timezone

from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Patient(Base):
    __tablename__ = "patient"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # PatientID, or "anon:<StudyInstanceUID>" when the header has none (never merge strangers);
    # with an Issuer of Patient ID, "PatientID\\Issuer" (a backslash cannot occur in either value,
    # so the same ID from two issuers is two patients; migration 0007)
    patient_key: Mapped[str] = mapped_column(String, unique=True)
    patient_id: Mapped[str] = mapped_column(String, default="")
    issuer: Mapped[str] = mapped_column(String, default="", server_default="")
    name: Mapped[str] = mapped_column(String, default="")
    sex: Mapped[str] = mapped_column(String, default="")
    birth_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    studies: Mapped[list["Study"]] = relationship(back_populates="patient")


class Study(Base):
    __tablename__ = "study"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_uid: Mapped[str] = mapped_column(String, unique=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id", ondelete="CASCADE"), index=True)
    study_date: Mapped[date | None] = mapped_column(Date, nullable=True, index=True)
    study_time: Mapped[str] = mapped_column(String, default="")
    description: Mapped[str] = mapped_column(String, default="")
    accession_number: Mapped[str] = mapped_column(String, default="")
    patient_age: Mapped[str] = mapped_column(String, default="")
    age_years: Mapped[float | None] = mapped_column(Float, nullable=True)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    # teaching file (migration 0002)
    is_teaching: Mapped[bool] = mapped_column(Boolean, default=False)
    teaching_points: Mapped[str] = mapped_column(Text, default="")
    difficulty: Mapped[str] = mapped_column(String, default="")
    deid_status: Mapped[str] = mapped_column(String, default="identified")

    patient: Mapped[Patient] = relationship(back_populates="studies")
    series: Mapped[list["Series"]] = relationship(back_populates="study")


class Series(Base):
    """One displayable stack (a series, or one part of a split series)."""

    __tablename__ = "series"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stack_key: Mapped[str] = mapped_column(String, unique=True)
    series_uid: Mapped[str] = mapped_column(String, index=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), index=True)
    series_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    description: Mapped[str] = mapped_column(String, default="")
    modality: Mapped[str] = mapped_column(String, default="", index=True)
    body_part: Mapped[str] = mapped_column(String, default="")
    manufacturer: Mapped[str] = mapped_column(String, default="")
    rows: Mapped[int] = mapped_column(Integer, default=0)
    columns: Mapped[int] = mapped_column(Integer, default=0)
    slice_count: Mapped[int] = mapped_column(Integer, default=0)
    file_count: Mapped[int] = mapped_column(Integer, default=0)
    split_reason: Mapped[str] = mapped_column(String, default="")
    is_localizer: Mapped[bool] = mapped_column(Boolean, default=False)
    orientation: Mapped[str] = mapped_column(String, default="")  # 6 cosines, backslash-separated
    slice_spacing: Mapped[float | None] = mapped_column(Float, nullable=True)
    pixel_spacing: Mapped[str] = mapped_column(String, default="")  # "row\\column" mm
    slice_thickness: Mapped[float | None] = mapped_column(Float, nullable=True)
    frame_of_reference_uid: Mapped[str] = mapped_column(String, default="")
    extent_mm: Mapped[float | None] = mapped_column(Float, nullable=True)
    thumbnail: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True, deferred=True)  # PNG
    # "complete" once every image of the stack is stored; listings show only complete series
    state: Mapped[str] = mapped_column(String, default="incomplete")
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    study: Mapped[Study] = relationship(back_populates="series")


class Instance(Base):
    """One image: a single-frame file, or one frame (``frame_index`` >= 0) of a multi-frame file."""

    __tablename__ = "instance"
    __table_args__ = (UniqueConstraint("sop_instance_uid", "frame_index", name="uq_instance_sop_frame"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(String)
    frame_index: Mapped[int] = mapped_column(Integer, default=-1)  # -1: the whole file
    sop_class_uid: Mapped[str] = mapped_column(String, default="")
    path: Mapped[str] = mapped_column(String, index=True)
    instance_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    slice_index: Mapped[int] = mapped_column(Integer, default=0)  # order within the stack
    pos_x: Mapped[float | None] = mapped_column(Float, nullable=True)
    pos_y: Mapped[float | None] = mapped_column(Float, nullable=True)
    pos_z: Mapped[float | None] = mapped_column(Float, nullable=True)
    number_of_frames: Mapped[int] = mapped_column(Integer, default=1)
    transfer_syntax_uid: Mapped[str] = mapped_column(String, default="")
    acquisition_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    echo_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    acquisition_datetime: Mapped[str] = mapped_column(String, default="")


class SourceFile(Base):
    """Every file ingest has looked at, so a re-run skips unchanged ones (resume, idempotence)."""

    __tablename__ = "source_file"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(String, unique=True)
    size: Mapped[int] = mapped_column(Integer)
    mtime_ns: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String)  # stored | duplicate | problem | skipped (not an image)
    reason: Mapped[str] = mapped_column(Text, default="")
    series_id: Mapped[int | None] = mapped_column(ForeignKey("series.id", ondelete="SET NULL"), nullable=True,
                                                  index=True)
    seen: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Report(Base):
    """Report / findings text and diagnosis of a study (``series_id`` NULL) or of one series."""

    __tablename__ = "report"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), index=True)
    series_id: Mapped[int | None] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), nullable=True,
                                                  index=True)
    findings: Mapped[str] = mapped_column(Text, default="")
    impression: Mapped[str] = mapped_column(Text, default="")
    diagnosis: Mapped[str] = mapped_column(Text, default="")
    author: Mapped[str] = mapped_column(String, default="")
    updated: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    # migration 0004: sections, the reader's note, where the diagnosis came from, who set it
    history: Mapped[str] = mapped_column(Text, default="")
    technique: Mapped[str] = mapped_column(Text, default="")
    note: Mapped[str] = mapped_column(Text, default="")
    finding: Mapped[str] = mapped_column(String, default="", index=True)  # vocabulary term of the diagnosis
    diagnosis_code: Mapped[str] = mapped_column(String, default="")  # "system:code" when coded
    diagnosis_source: Mapped[str] = mapped_column(String, default="")  # coded | impression | reader | import | ""
    source: Mapped[str] = mapped_column(String, default="")  # import | reader | feedback | demo | ""
    document_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # report_document shown


# ---------------------------------------------------------------- migration 0002


class Tag(Base):
    __tablename__ = "tag"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(collation="NOCASE"), unique=True)


class StudyTag(Base):
    __tablename__ = "study_tag"

    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), primary_key=True)
    tag_id: Mapped[int] = mapped_column(ForeignKey("tag.id", ondelete="CASCADE"), primary_key=True, index=True)


class Collection(Base):
    __tablename__ = "collection"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(collation="NOCASE"), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class CollectionStudy(Base):
    __tablename__ = "collection_study"

    collection_id: Mapped[int] = mapped_column(ForeignKey("collection.id", ondelete="CASCADE"), primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), primary_key=True,
                                          index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    note: Mapped[str] = mapped_column(Text, default="")


class FollowUp(Base):
    """``study_id`` is a later study of the same patient as ``prior_study_id``."""

    __tablename__ = "follow_up"

    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), primary_key=True)
    prior_study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), primary_key=True,
                                                index=True)
    interval_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    source: Mapped[str] = mapped_column(String, default="auto")  # auto (same patient) | manual


class Model(Base):
    """An encoder that produced embeddings (provenance: name, version, file hash)."""

    __tablename__ = "model"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_model_name_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String)
    version: Mapped[str] = mapped_column(String)
    sha256: Mapped[str] = mapped_column(String)
    dim: Mapped[int] = mapped_column(Integer)
    input_kind: Mapped[str] = mapped_column(String)  # "2d-slice" | "3d-volume" | ...
    # labels are never reused (an index must not mistake a new vector for an old one)
    next_label: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Embedding(Base):
    __tablename__ = "embedding"
    __table_args__ = (
        UniqueConstraint("model_id", "label", name="uq_embedding_model_label"),
        UniqueConstraint("model_id", "series_id", "slice_index", "roi", name="uq_embedding_model_series_slice"),
        Index("ix_embedding_series_model", "series_id", "model_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("model.id", ondelete="CASCADE"))
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"))
    slice_index: Mapped[int] = mapped_column(Integer)  # -1: whole series
    roi: Mapped[str] = mapped_column(String, default="")  # "" or JSON box of a region of interest
    label: Mapped[int] = mapped_column(Integer)  # HNSW label, unique per model
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # float32, little-endian
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


# ---------------------------------------------------------------- migration 0003: finding-level regions


class RegionDescriptor(Base):
    """A region descriptor (name@version, size); labels of its regions are never reused."""

    __tablename__ = "region_descriptor"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_region_descriptor_name_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String)
    version: Mapped[str] = mapped_column(String)
    dim: Mapped[int] = mapped_column(Integer)
    next_label: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class RegionSet(Base):
    """That a series' regions were computed with a descriptor (also when it has none)."""

    __tablename__ = "region_set"
    __table_args__ = (UniqueConstraint("descriptor_id", "series_id", name="uq_region_set_descriptor_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    descriptor_id: Mapped[int] = mapped_column(ForeignKey("region_descriptor.id", ondelete="CASCADE"))
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), index=True)
    family: Mapped[str] = mapped_column(String, default="")
    body_part: Mapped[str] = mapped_column(String, default="")
    count: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Region(Base):
    """One candidate finding of a series: where it is, what it is like, and its descriptor."""

    __tablename__ = "region"
    __table_args__ = (
        UniqueConstraint("descriptor_id", "label", name="uq_region_descriptor_id"),
        Index("ix_region_descriptor_family", "descriptor_id", "family"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    descriptor_id: Mapped[int] = mapped_column(ForeignKey("region_descriptor.id", ondelete="CASCADE"))
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), index=True)
    label: Mapped[int] = mapped_column(Integer)  # HNSW label, unique per descriptor
    family: Mapped[str] = mapped_column(String)  # CT | MR | XR | NM | US | OT
    k0: Mapped[int] = mapped_column(Integer)  # box in voxels of the series, end-exclusive
    k1: Mapped[int] = mapped_column(Integer)
    j0: Mapped[int] = mapped_column(Integer)
    j1: Mapped[int] = mapped_column(Integer)
    i0: Mapped[int] = mapped_column(Integer)
    i1: Mapped[int] = mapped_column(Integer)
    centre_k: Mapped[float] = mapped_column(Float)
    centre_j: Mapped[float] = mapped_column(Float)
    centre_i: Mapped[float] = mapped_column(Float)
    x: Mapped[float | None] = mapped_column(Float, nullable=True)  # LPS mm of the centre
    y: Mapped[float | None] = mapped_column(Float, nullable=True)
    z: Mapped[float | None] = mapped_column(Float, nullable=True)
    diameter_mm: Mapped[float] = mapped_column(Float)
    volume_ml: Mapped[float] = mapped_column(Float)
    polarity: Mapped[int] = mapped_column(Integer)
    contrast: Mapped[float] = mapped_column(Float)
    saliency: Mapped[float] = mapped_column(Float)
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # float16, little-endian (half the bytes; cosine error < 1e-3)


# ---------------------------------------------------------------- migration 0004: imported reports, labels, embed state


class ReportDocument(Base):
    """One received version of a report (HL7 ORU, DICOM SR/PDF, CSV/JSON row), linked or not.

    ``report_key`` names the report across its versions (an amendment has the same key and a later
    time or a corrected status); ``content_sha256`` makes re-importing the same content a no-op.
    """

    __tablename__ = "report_document"
    __table_args__ = (Index("ix_report_document_key", "report_key"),
                      Index("ix_report_document_accession", "accession_number"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    content_sha256: Mapped[str] = mapped_column(String, unique=True)
    report_key: Mapped[str] = mapped_column(String)
    source_kind: Mapped[str] = mapped_column(String)  # hl7 | sr | pdf | csv | json
    source_path: Mapped[str] = mapped_column(String, default="")
    source_ref: Mapped[str] = mapped_column(String, default="")  # message control id, SOP UID, row number
    status: Mapped[str] = mapped_column(String, default="final")  # preliminary | final | corrected | cancelled
    observed: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    accession_number: Mapped[str] = mapped_column(String, default="")
    study_uid: Mapped[str] = mapped_column(String, default="", index=True)
    patient_id: Mapped[str] = mapped_column(String, default="")
    patient_issuer: Mapped[str] = mapped_column(String, default="", server_default="")  # PID-3.4 / (0010,0021)
    study_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    modality: Mapped[str] = mapped_column(String, default="")
    author: Mapped[str] = mapped_column(String, default="")
    history: Mapped[str] = mapped_column(Text, default="")
    technique: Mapped[str] = mapped_column(Text, default="")
    findings: Mapped[str] = mapped_column(Text, default="")
    impression: Mapped[str] = mapped_column(Text, default="")
    diagnosis: Mapped[str] = mapped_column(Text, default="")
    diagnosis_code: Mapped[str] = mapped_column(String, default="")
    diagnosis_source: Mapped[str] = mapped_column(String, default="")
    study_id: Mapped[int | None] = mapped_column(ForeignKey("study.id", ondelete="SET NULL"), nullable=True,
                                                 index=True)
    link_method: Mapped[str] = mapped_column(String, default="")  # accession | study_uid | patient_date_modality
    is_current: Mapped[bool] = mapped_column(Boolean, default=True)
    superseded_by: Mapped[int | None] = mapped_column(Integer, nullable=True)
    imported: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class LabelEvent(Base):
    """Who or what set a study's label (diagnosis, tag, note) and when: the provenance log."""

    __tablename__ = "label_event"
    __table_args__ = (Index("ix_label_event_study_kind", "study_id", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String)  # diagnosis | tag | note
    action: Mapped[str] = mapped_column(String)  # set | add | remove
    value: Mapped[str] = mapped_column(Text, default="")
    previous: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String)  # import | reader | feedback | demo
    actor: Mapped[str] = mapped_column(String, default="")  # user name, file, or program
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class VocabularyTerm(Base):
    """A finding of the diagnosis vocabulary ("pulmonary nodule"), with an optional code."""

    __tablename__ = "vocabulary_term"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(collation="NOCASE"), unique=True)
    code: Mapped[str] = mapped_column(String, default="")


class VocabularySynonym(Base):
    """A phrase that names a vocabulary term ("lung nodule", "nodule, RUL"), normalised."""

    __tablename__ = "vocabulary_synonym"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    term_id: Mapped[int] = mapped_column(ForeignKey("vocabulary_term.id", ondelete="CASCADE"), index=True)
    phrase: Mapped[str] = mapped_column(String, unique=True)


class EmbeddingState(Base):
    """What a series' embeddings of a model were computed from: its files' signature and pixels' hash."""

    __tablename__ = "embedding_state"

    model_id: Mapped[int] = mapped_column(ForeignKey("model.id", ondelete="CASCADE"), primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), primary_key=True,
                                           index=True)
    file_signature: Mapped[str] = mapped_column(String)
    content_hash: Mapped[str] = mapped_column(String)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class EmbedClaim(Base):
    """A series one ``casebook embed`` run is working on, so concurrent runs share the work."""

    __tablename__ = "embed_claim"

    model_id: Mapped[int] = mapped_column(ForeignKey("model.id", ondelete="CASCADE"), primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), primary_key=True)
    owner: Mapped[str] = mapped_column(String)
    expires: Mapped[datetime] = mapped_column(DateTime)


class RetiredEmbedding(Base):
    """A replaced embedding kept for a while, so an index catching up from a label list read just
    before the replacement still finds its vector (it is then marked deleted on the next sync)."""

    __tablename__ = "retired_embedding"

    model_id: Mapped[int] = mapped_column(ForeignKey("model.id", ondelete="CASCADE"), primary_key=True)
    label: Mapped[int] = mapped_column(Integer, primary_key=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    retired: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)


# ---------------------------------------------------------------- migration 0006: registrations of priors


class Registration(Base):
    """A prior series registered to a current one: ``matrix`` maps the fixed (current) series'
    LPS mm to the moving (prior) series' LPS mm; ``nudge`` is the reader's correction on top."""

    __tablename__ = "registration"
    __table_args__ = (UniqueConstraint("fixed_series_id", "moving_series_id", "kind",
                                       name="uq_registration_fixed_series_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fixed_series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), index=True)
    moving_series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String)  # rigid | affine | bspline
    matrix: Mapped[str] = mapped_column(Text)  # 16 numbers, JSON, row-major 4x4
    nudge: Mapped[str] = mapped_column(Text, default="")  # "" or 16 numbers (applied after matrix)
    metric: Mapped[float | None] = mapped_column(Float, nullable=True)  # final Mattes MI (lower is better)
    quality: Mapped[float | None] = mapped_column(Float, nullable=True)  # correlation after, -1..1
    overlap: Mapped[float | None] = mapped_column(Float, nullable=True)  # fraction of fixed inside moving
    iterations: Mapped[int] = mapped_column(Integer, default=0)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    software: Mapped[str] = mapped_column(String, default="")  # "SimpleITK 2.5.7; casebook 0.x"
    deformable: Mapped[str] = mapped_column(Text, default="")  # B-spline transform (ITK text) or ""
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


# ---- migration 0009: context maps (where a box's finding sits, found again on the patient's other scans)


class ContextMap(Base):
    """A series at 4 mm (one byte a pixel, zlib): what a box's surroundings are slid over to find
    the same place on the patient's other scans (``casebook.inference.regions.context``)."""

    __tablename__ = "context_map"

    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[str] = mapped_column(String)
    family: Mapped[str] = mapped_column(String)
    shape: Mapped[str] = mapped_column(String)  # "z,y,x"
    scale: Mapped[str] = mapped_column(String)  # voxel index per map index, "k,j,i"
    offset: Mapped[str] = mapped_column(String)  # voxel index of map index 0, "k,j,i"
    data: Mapped[bytes] = mapped_column(LargeBinary)  # zlib of the uint8 pixels, row-major
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # what the map shows of the body, as read by the caller's rule of ``anatomy_version``: regions
    # joined by commas ("" none plain); NULL not read (migration 0010)
    anatomy: Mapped[str | None] = mapped_column(String, nullable=True)
    anatomy_version: Mapped[str] = mapped_column(String, default="", server_default="")


# ---- migration 0005: teaching cases, key images, quiz answers


class TeachingCase(Base):
    """A teaching case made from a study: the MIRC/Radiopaedia fields, de-identification choices."""

    __tablename__ = "teaching_case"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), unique=True)
    title: Mapped[str] = mapped_column(Text, default="")
    history: Mapped[str] = mapped_column(Text, default="")
    findings: Mapped[str] = mapped_column(Text, default="")
    diagnosis: Mapped[str] = mapped_column(Text, default="")
    differential: Mapped[str] = mapped_column(Text, default="")  # one diagnosis a line
    discussion: Mapped[str] = mapped_column(Text, default="")
    certainty: Mapped[str] = mapped_column(String, default="")  # possible | probable | almost certain | certain
    systems: Mapped[str] = mapped_column(Text, default="")  # one organ system a line
    author: Mapped[str] = mapped_column(String, default="")
    source: Mapped[str] = mapped_column(String, default="local")  # local | imported
    # JSON: {series UID: [[row0, col0, row1, col1], ...]} confirmed burned-in text masks
    masks: Mapped[str] = mapped_column(Text, default="{}")
    excluded: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of series UIDs left out of exports
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class TeachingKeyImage(Base):
    """One key image of a case: a slice of a stored series with its window and annotations."""

    __tablename__ = "teaching_key_image"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("teaching_case.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(String, default="")
    frame_index: Mapped[int] = mapped_column(Integer, default=-1)
    slice_index: Mapped[int] = mapped_column(Integer, default=0)
    orientation: Mapped[str] = mapped_column(String, default="axial")
    view_index: Mapped[int | None] = mapped_column(Integer, nullable=True)  # slice of ``orientation`` seen
    window_center: Mapped[float] = mapped_column(Float, default=40.0)
    window_width: Mapped[float] = mapped_column(Float, default=400.0)
    annotations: Mapped[str] = mapped_column(Text, default="[]")  # JSON: measurements and markers
    caption: Mapped[str] = mapped_column(Text, default="")


class QuizAnswer(Base):
    """One learner's answer to one case of a collection run as a quiz."""

    __tablename__ = "quiz_answer"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    learner: Mapped[str] = mapped_column(String(collation="NOCASE"), index=True)
    collection: Mapped[str] = mapped_column(String(collation="NOCASE"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("teaching_case.id", ondelete="CASCADE"), index=True)
    mode: Mapped[str] = mapped_column(String, default="free")  # free | choice
    answer: Mapped[str] = mapped_column(Text, default="")
    correct: Mapped[bool] = mapped_column(Boolean, default=False)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
