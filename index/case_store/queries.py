"""The filter compiler: a :class:`CaseFilter` becomes SQL conditions over series, studies and patients.

Every listing, the search pre-filter and the statistics agree on what "visible" and "matching"
mean because they all compile their filters here (as TagStudio's query compiler does).
"""
from __future__ import annotations

import re
from typing import Any

from sqlalchemy import and_, func, or_, select, text

from .models import Collection, CollectionStudy, Patient, Report, Series, Study, StudyTag, Tag
from .records import CaseFilter
from .vocabulary import normalise_phrase


def fts_query(text_: str) -> str:
    """User words to a safe FTS5 query: every word must match; ``word*`` keeps prefix search."""
    terms = []
    for m in re.finditer(r"(\w+)(\*?)", text_, re.UNICODE):
        terms.append(f'"{m.group(1)}"{m.group(2)}')
    return " ".join(terms)


class QueryMixin:
    """Filters to SQL, and the ids they match.

    Mixed into :class:`~.store.CaseStore`; sessions come from :class:`~.sessions.StoreSessions`.
    """

    def _visible(self) -> Any:
        return and_(Series.state == "complete", Series.deleted.is_(False), Study.deleted.is_(False))

    def _series_conditions(self, f: CaseFilter) -> list[Any]:
        conds: list[Any] = []
        if not f.include_deleted:
            conds.append(self._visible())
        else:
            conds.append(Series.state == "complete")
        if f.patient:
            like = f"%{f.patient.lower()}%"
            conds.append(or_(func.lower(Patient.patient_id).like(like), func.lower(Patient.name).like(like)))
        if f.patient_key:
            conds.append(Patient.patient_key == f.patient_key)
        if f.modalities:
            conds.append(Series.modality.in_([m.upper() for m in f.modalities]))
        if f.body_parts:
            conds.append(Series.body_part.in_([b.upper() for b in f.body_parts]))
        if f.sex:
            conds.append(Patient.sex == f.sex.upper()[:1])
        if f.age_min is not None:
            conds.append(Study.age_years >= f.age_min)
        if f.age_max is not None:
            conds.append(Study.age_years <= f.age_max)
        if f.date_from:
            conds.append(Study.study_date >= f.date_from)
        if f.date_to:
            conds.append(Study.study_date <= f.date_to)
        for tag in f.tags:
            conds.append(Study.id.in_(select(StudyTag.study_id).join(Tag, Tag.id == StudyTag.tag_id)
                                      .where(Tag.name == tag.strip())))
        if f.collections:
            conds.append(Study.id.in_(select(CollectionStudy.study_id)
                                      .join(Collection, Collection.id == CollectionStudy.collection_id)
                                      .where(Collection.name.in_([c.strip() for c in f.collections]))))
        if f.text:
            q = fts_query(f.text)
            words = re.findall(r"\w+", f.text, re.UNICODE)
            desc = [or_(func.lower(Series.description).like(f"%{w.lower()}%"),
                        func.lower(Study.description).like(f"%{w.lower()}%")) for w in words]
            fts_studies = select(Report.study_id).where(
                Report.id.in_(select(text("rowid")).select_from(text("report_fts")).where(
                    text("report_fts MATCH :ftsq")).scalar_subquery()))
            conds.append(or_(Study.id.in_(fts_studies), and_(*desc) if desc else False)
                         if q else False)
        if f.diagnosis:
            words = re.findall(r"\w+", f.diagnosis, re.UNICODE)
            sub = select(Report.study_id).where(*[func.lower(Report.diagnosis).like(f"%{w.lower()}%") for w in words])
            # the vocabulary: "lung nodule" also finds "pulmonary nodule" and "nodule, RUL", also as
            # a report's second finding ("renal cyst; pulmonary nodule", whose `finding` is the first):
            # any phrase of the term, its words in order with anything (punctuation) between them
            term, phrases = self.finding_phrases(f.diagnosis)  # type: ignore[attr-defined]
            if term:
                likes = [func.lower(Report.diagnosis).like("%" + ph.replace(" ", "%") + "%")  # words only
                         for ph in sorted({normalise_phrase(x) for x in [term, *phrases]} - {""})]
                named = select(Report.study_id).where(or_(Report.finding == term, *likes))
                conds.append(or_(Study.id.in_(sub), Study.id.in_(named)))
            else:
                conds.append(Study.id.in_(sub))
        if f.teaching_only:
            conds.append(Study.is_teaching.is_(True))
        if f.study_ids:
            conds.append(Study.id.in_(list(f.study_ids)))
        if not f.include_localizers:
            conds.append(Series.is_localizer.is_(False))
        return conds

    def _params(self, f: CaseFilter) -> dict[str, Any]:
        return {"ftsq": fts_query(f.text)} if f.text else {}

    def series_ids_matching(self, f: CaseFilter | None = None) -> list[int]:
        """Ids of visible series passing ``f`` (search pre-filters with this)."""
        f = f or CaseFilter()
        stmt = (select(Series.id).join(Study, Study.id == Series.study_id).join(Patient, Patient.id == Study.patient_id)
                .where(*self._series_conditions(f)).order_by(Series.id))
        with self._read() as s:
            return [r[0] for r in s.execute(stmt, self._params(f))]
