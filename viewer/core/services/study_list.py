"""The study browser's list: studies of the case store (patient, date, modality, description,
diagnosis, tags) each holding its series, with the search a reader types over all those fields.

Headless so that what the browser shows and finds is decided (and tested) here; the Qt tree only
draws it. A reader thinks in studies, not series: a study row opens its main series, a series row
that series. Patient names and IDs are PHI: shown on screen, never logged.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from ..config import Settings


def display_name(dicom_name: str) -> str:
    """``DOE^JANE^^DR`` -> ``DOE, JANE DR``: a DICOM person name as a reader writes it."""
    parts = [p.strip() for p in (dicom_name or "").split("=", 1)[0].split("^")]
    if not any(parts):
        return ""
    family, rest = parts[0], " ".join(p for p in parts[1:] if p)
    return f"{family}, {rest}" if family and rest else (family or rest)


@dataclass(frozen=True)
class SeriesEntry:
    """One stored series under its study."""

    series_id: int
    study_id: int
    key: str
    number: int | None
    modality: str
    description: str
    body_part: str
    images: int
    diagnosis: str = ""  # the series' own diagnosis when its report has one, else the study's
    is_localizer: bool = False

    @property
    def label(self) -> str:
        """``Series 3`` (or ``Series`` when the header had no number)."""
        return f"Series {self.number}" if self.number is not None else "Series"


@dataclass(frozen=True)
class StudyEntry:
    """One study: the columns of its row and its series (the rows below it)."""

    study_id: int
    patient_name: str  # as a reader writes it (``DOE, JANE``)
    patient_id: str
    date: str  # ISO, "" when unknown
    modalities: str  # "CT, MR"
    description: str
    diagnosis: str
    tags: tuple[str, ...]
    series: tuple[SeriesEntry, ...] = ()
    _haystack: str = field(default="", repr=False, compare=False)

    @property
    def series_count(self) -> int:
        return len(self.series)

    @property
    def tags_text(self) -> str:
        return ", ".join(self.tags)

    @property
    def main_series(self) -> SeriesEntry | None:
        """What opening the study shows: its largest series that is not a localizer."""
        if not self.series:
            return None
        return max(self.series, key=lambda s: (not s.is_localizer, s.images, -(s.number or 0)))

    def matches(self, terms: Iterable[str]) -> bool:
        """Every term (lower case) occurs in one of the study's or its series' fields."""
        return all(t in self._haystack for t in terms)


def _haystack(study: StudyEntry, raw_name: str) -> str:
    fields = [study.patient_name, raw_name, study.patient_id, study.date, study.modalities, study.description,
              study.diagnosis, *study.tags]
    for s in study.series:
        fields += [s.modality, s.description, s.body_part, s.diagnosis]
    return "\n".join(f for f in fields if f).lower()


def search_terms(text: str) -> list[str]:
    """What was typed in the search field as lower-case terms (all must match); "quoted words"
    stay one term, so ``"follow up"`` finds the phrase."""
    import shlex

    try:
        parts = shlex.split(text or "")
    except ValueError:  # an unclosed quote: the words as typed
        parts = (text or "").replace('"', " ").split()
    return [p.lower() for p in parts if p.strip()]


@dataclass
class StudyList:
    """The library's studies, newest first, and the filter over them."""

    studies: list[StudyEntry] = field(default_factory=list)

    @property
    def series_total(self) -> int:
        return sum(s.series_count for s in self.studies)

    def filter(self, text: str) -> list[StudyEntry]:
        """The studies that match every term of ``text`` (all of them for an empty text)."""
        terms = search_terms(text)
        return list(self.studies) if not terms else [s for s in self.studies if s.matches(terms)]

    def count_text(self, shown: list[StudyEntry]) -> str:
        """``12 studies (31 series)``; ``3 of 40 studies (5 series)`` while a filter hides some."""
        n, m = len(shown), sum(s.series_count for s in shown)
        studies = "study" if len(self.studies) == 1 and n == 1 else "studies"
        series = f"{m} series"
        if n == len(self.studies):
            return f"{n} {studies} ({series})"
        return f"{n} of {len(self.studies)} studies ({series})"

    def study_of_series(self, series_id: int) -> StudyEntry | None:
        for st in self.studies:
            if any(s.series_id == series_id for s in st.series):
                return st
        return None


def build_study_list(store: object) -> StudyList:
    """The study list of an open case store (two listing queries, whatever the library's size)."""
    studies = store.list_studies(limit=None)  # type: ignore[attr-defined]
    by_study: dict[int, list[SeriesEntry]] = {}
    for s in store.list_series():  # type: ignore[attr-defined]
        by_study.setdefault(s.study_id, []).append(SeriesEntry(
            series_id=s.id, study_id=s.study_id, key=s.key, number=s.series_number, modality=s.modality or "",
            description=s.description or "", body_part=s.body_part or "", images=int(s.slice_count or 0),
            diagnosis=s.diagnosis or "", is_localizer=bool(s.is_localizer)))
    out = []
    for st in studies:
        series = tuple(by_study.get(st.id, ()))
        if not series:
            continue
        entry = StudyEntry(study_id=st.id, patient_name=display_name(st.patient_name), patient_id=st.patient_id or "",
                           date=st.study_date.isoformat() if st.study_date else "",
                           modalities=", ".join(st.modalities), description=st.description or "",
                           diagnosis=st.diagnosis or "", tags=tuple(st.tags), series=series)
        out.append(StudyEntry(**{**entry.__dict__, "_haystack": _haystack(entry, st.patient_name or "")}))
    return StudyList(out)


def load_study_list(settings: Settings) -> StudyList:
    """The library's study list; empty when the library has no case store yet."""
    if not settings.database_path.exists():
        return StudyList()
    from .library import open_store

    store = open_store(settings, create=False)
    try:
        return build_study_list(store)
    finally:
        store.close()


__all__ = ["SeriesEntry", "StudyEntry", "StudyList", "build_study_list", "display_name", "load_study_list",
           "search_terms"]
