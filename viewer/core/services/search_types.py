"""Search types: the query, the filters, the results, and what the service needs from the store
(:class:`SearchCatalog`) and from an encoder (:class:`QueryEncoder`).

Kept apart from the service so that encoders, catalogs and the GUI import them without
importing the service (and the service, encoders and catalogs never import each other).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Hashable, Mapping, Protocol, Sequence

import numpy as np

from casebook.index.errors import QueryError


@dataclass(frozen=True)
class SearchFilters:
    """Restrictions on the analogues; empty fields do not restrict."""

    modalities: tuple[str, ...] = ()
    body_parts: tuple[str, ...] = ()
    sex: str | None = None  # "M" | "F" | "O"
    age_min: float | None = None  # years at the study date
    age_max: float | None = None
    date_from: date | None = None
    date_to: date | None = None
    tags: tuple[str, ...] = ()
    collections: tuple[str, ...] = ()
    diagnosis: str | None = None  # words that must occur in the diagnosis
    exclude_same_patient: bool = True
    exclude_same_study: bool = True
    teaching_only: bool = False  # only studies that are teaching cases (the teaching view's image search)
    # finding searches (box, Findings) match only series of compatible anatomy (:mod:`.anatomy`)
    same_anatomy: bool = True

    def restricts(self) -> bool:
        """True when a metadata filter (not just exclusions) is set."""
        return bool(self.modalities or self.body_parts or self.sex or self.age_min is not None
                    or self.age_max is not None or self.date_from or self.date_to or self.tags
                    or self.collections or self.diagnosis or self.teaching_only)

    def describe(self) -> str:
        parts = []
        for name, said in (("modalities", "modality"), ("body_parts", "body part"), ("tags", "tag"),
                           ("collections", "collection")):
            v = getattr(self, name)
            if v:
                parts.append(f"{said}={','.join(v)}")
        if self.sex:
            parts.append(f"sex={self.sex}")
        if self.age_min is not None or self.age_max is not None:
            parts.append(f"age={self.age_min if self.age_min is not None else ''}-"
                         f"{self.age_max if self.age_max is not None else ''}")
        if self.date_from or self.date_to:
            parts.append(f"date={self.date_from or ''}..{self.date_to or ''}")
        if self.diagnosis:
            parts.append(f"diagnosis~{self.diagnosis!r}")
        if self.teaching_only:
            parts.append("teaching cases only")
        if not self.same_anatomy:
            parts.append("any anatomy")
        return ", ".join(parts) or "no filters"

    def validate(self) -> None:
        if self.sex is not None and self.sex.upper() not in ("M", "F", "O"):
            raise QueryError(f"sex filter must be M, F or O, not {self.sex!r}")
        if self.age_min is not None and self.age_max is not None and self.age_min > self.age_max:
            raise QueryError(f"age range {self.age_min}-{self.age_max} is empty")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise QueryError(f"date range {self.date_from}..{self.date_to} is empty")


@dataclass
class QueryVectors:
    """What an image query became: slice vectors and where they came from."""

    vectors: np.ndarray  # (n, dim), L2-normalised
    slice_indices: list[int]  # the query slice behind each row ("why similar")
    description: str
    series_id: Hashable | None = None  # a stored query series, if any
    patient_key: Hashable | None = None  # for "exclude same patient"
    study_key: Hashable | None = None  # for "exclude same study"
    own_labels: frozenset[int] = frozenset()


@dataclass
class SearchHit:
    """One analogue case, ready for a table row or a GUI card."""

    rank: int
    series_id: Hashable
    score: float
    query_slice: int | None  # slice of the query that matched best
    matched_slice: int | None  # slice of the analogue that matched it
    via: str  # "image" | "text" | "image+text" | "region" | "same place"
    info: "SeriesInfo"


@dataclass
class RegionSearchHit(SearchHit):
    """A box query's analogue: the finding it matched, where it is, and how sure the match is."""

    confidence: float | None = None  # P(same diagnosis), fitted on the library's labels; None without
    confidence_text: str = ""  # what the card says ("close match", "72% same diagnosis", "no close match")
    percentile: float = 0.0  # of the score among the query's similarities to the archive's regions
    region: tuple[float, float, float, float] | None = None  # (i0, j0, i1, j1) on the matched slice
    matched_box: tuple[int, int, int, int, int, int] | None = None  # k0, k1, j0, j1, i0, i1 (voxels)
    matched_centre_lps: tuple[float, float, float] | None = None
    matched_diameter_mm: float = 0.0
    #: the box's place found again on the patient's own scan by its surroundings (score = their
    #: agreement, not a finding similarity; no percentile)
    same_place: bool = False


@dataclass
class SeriesInfo:
    """What a result shows about an analogue (no patient name or ID: only internal keys)."""

    series_id: Hashable
    study_key: Hashable = None
    patient_key: Hashable = None
    modality: str = ""
    body_part: str = ""
    description: str = ""
    study_date: date | None = None
    sex: str = ""
    age: float | None = None
    diagnosis: str = ""
    report_snippet: str = ""
    has_follow_up: bool = False
    slice_count: int = 0
    finding: str = ""  # the diagnosis as its vocabulary term ("lung nodule" -> "pulmonary nodule")


@dataclass
class SearchResponse:
    hits: list[SearchHit]
    reason: str = ""  # why there are no (or few) hits
    method: str = ""  # how the index answered
    query: QueryVectors | None = None
    text: str | None = None
    filters: SearchFilters = field(default_factory=SearchFilters)
    k: int = 10
    elapsed_ms: float = 0.0
    calibration: str = ""  # what the hits' confidence means on this library ("" for slice vectors)
    region_query: Any = None  # the finding a box became (region search), for feedback


# --------------------------------------------------------------------------------------------
# What the service needs from the store and the encoder
# --------------------------------------------------------------------------------------------


class SearchCatalog(Protocol):
    """Store access needed by search (implemented over the case store by :class:`StoreCatalog`)."""

    def resolve_labels(self, labels: np.ndarray) -> Mapping[int, tuple[Hashable, int]]:
        """label -> (series id, slice index), for live embeddings of the index's model."""

    def series_labels(self, series_ids: Sequence[Hashable]) -> Mapping[Hashable, np.ndarray]:
        """series id -> labels of all its embeddings (index's model)."""

    def series_embeddings(self, series_id: Hashable) -> tuple[np.ndarray, list[int]]:
        """Labels and slice indices of one stored series (raises QueryError if unknown)."""

    def series_keys(self, series_id: Hashable) -> tuple[Hashable, Hashable]:
        """(patient key, study key) of a stored series (raises QueryError if unknown)."""

    def labels_matching(self, filters: SearchFilters) -> np.ndarray | None:
        """Labels of series passing the metadata filters; None when nothing restricts."""

    def series_to_exclude(self, patient_key: Hashable | None, study_key: Hashable | None,
                          filters: SearchFilters) -> set[Hashable]:
        """Series of the same patient / study, as the filters ask."""

    def text_search(self, text: str, filters: SearchFilters, limit: int) -> list[tuple[Hashable, str]]:
        """Series ranked by FTS5 over reports/diagnoses, with a highlighted snippet."""

    def series_info(self, series_ids: Sequence[Hashable]) -> Mapping[Hashable, SeriesInfo]:
        """Result details per series."""


class QueryEncoder(Protocol):
    """Turns images that are not (or not yet) in the store into query vectors."""

    model_key: str
    dim: int

    def encode_folder(self, path: Path) -> QueryVectors: ...

    def encode_roi(self, series_id: Hashable, box: tuple[int, int, int, int, int, int]) -> QueryVectors: ...


def check_encoder_matches(encoder: Any, model_key: str, dim: int) -> None:
    """Refuse a query encoder that is not the model the index was built with.

    Keys may carry a file-hash suffix ("name@version#sha..." / "+sha..."): name@version is compared.
    """
    enc_key = str(getattr(encoder, "model_key", model_key))
    enc_dim = int(getattr(encoder, "dim", dim))
    if enc_dim != dim or re.split(r"[#+]", enc_key)[0] != model_key:
        raise QueryError(f"encoder {enc_key!r} ({enc_dim}-d) does not match the index of {model_key} "
                         f"({dim}-d): queries would be compared with another model's vectors")
