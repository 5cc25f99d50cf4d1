"""Browsing the library: series and study summaries, patients, image files, priors and thumbnails.

Summaries are plain records (never ORM objects), decorated with diagnoses and tags in one query
per kind so a list of thousands costs a handful of statements.
"""
from __future__ import annotations

from datetime import date
from typing import Any, Sequence

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from ..errors import QueryError, UnknownItemError
from .models import FollowUp, Instance, Patient, Report, Series, Study, StudyTag, Tag
from .records import CaseFilter, InstanceSummary, PatientSummary, SeriesSummary, StudySummary
from .sessions import chunks

_HAS_THUMB = Series.thumbnail.is_not(None).label("has_thumbnail")


class ListingMixin:
    """Series, studies, patients, priors and thumbnails.

    Mixed into :class:`~.store.CaseStore`; sessions come from :class:`~.sessions.StoreSessions`.
    """

    def list_series(self, f: CaseFilter | None = None, *, study_id: int | None = None,
                    limit: int | None = None, offset: int = 0) -> list[SeriesSummary]:
        f = f or CaseFilter()
        stmt = (select(Series, Study.study_uid, Study.study_date, Patient.patient_key, _HAS_THUMB, Patient.patient_id,
                       Patient.name, Study.description)
                .join(Study, Study.id == Series.study_id).join(Patient, Patient.id == Study.patient_id)
                .where(*self._series_conditions(f)))
        if study_id is not None:
            stmt = stmt.where(Series.study_id == study_id)
        stmt = stmt.order_by(Study.study_date, Study.id, Series.series_number, Series.stack_key).offset(offset)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._read() as s:
            out = [self._series_summary(*row) for row in s.execute(stmt, self._params(f))]
            self._decorate(s, out)
            return out

    @staticmethod
    def _decorate(s: Session, items: list[SeriesSummary]) -> None:
        """Fill diagnosis and tags of listed series with one query per kind."""
        study_ids = sorted({i.study_id for i in items})
        series_ids = [i.id for i in items]
        study_dx: dict[int, str] = {}
        series_dx: dict[int, str] = {}
        tags: dict[int, list[str]] = {}
        for chunk in chunks(study_ids):
            for stid, seid, dx in s.execute(select(Report.study_id, Report.series_id, Report.diagnosis)
                                            .where(Report.study_id.in_(chunk), Report.diagnosis != "")):
                if seid is None:
                    study_dx[stid] = dx
                else:
                    series_dx[seid] = dx
            for stid, name in s.execute(select(StudyTag.study_id, Tag.name).join(Tag, Tag.id == StudyTag.tag_id)
                                        .where(StudyTag.study_id.in_(chunk)).order_by(Tag.name)):
                tags.setdefault(stid, []).append(name)
        del series_ids
        for i in items:
            i.diagnosis = series_dx.get(i.id) or study_dx.get(i.study_id, "")
            i.tags = list(tags.get(i.study_id, []))

    @staticmethod
    def _series_summary(se: Series, study_uid: str, sdate: date | None, pkey: str, has_thumb: bool,
                        patient_id: str = "", patient_name: str = "", study_desc: str = "") -> SeriesSummary:
        ps = tuple(float(v) for v in se.pixel_spacing.split("\\")) if se.pixel_spacing else None
        orient = tuple(float(v) for v in se.orientation.split("\\")) if se.orientation else None
        return SeriesSummary(
            id=se.id, key=se.stack_key, series_uid=se.series_uid, study_id=se.study_id, study_uid=study_uid,
            patient_key=pkey, series_number=se.series_number, description=se.description, modality=se.modality,
            body_part=se.body_part, manufacturer=se.manufacturer, rows=se.rows, columns=se.columns,
            slice_count=se.slice_count, file_count=se.file_count, split_reason=se.split_reason,
            is_localizer=se.is_localizer, study_date=sdate, orientation=orient, slice_spacing=se.slice_spacing,
            extent_mm=se.extent_mm, pixel_spacing=ps if ps and len(ps) == 2 else None,  # type: ignore[arg-type]
            slice_thickness=se.slice_thickness, frame_of_reference_uid=se.frame_of_reference_uid,
            has_thumbnail=bool(has_thumb), deleted=se.deleted, patient_id=patient_id or "",
            patient_name=patient_name or "", study_description=study_desc or "")

    def get_series(self, series_id: int, *, include_deleted: bool = False) -> SeriesSummary:
        f = CaseFilter(include_deleted=include_deleted)
        stmt = (select(Series, Study.study_uid, Study.study_date, Patient.patient_key, _HAS_THUMB, Patient.patient_id,
                       Patient.name, Study.description)
                .join(Study, Study.id == Series.study_id).join(Patient, Patient.id == Study.patient_id)
                .where(Series.id == int(series_id), *self._series_conditions(f)))
        with self._read() as s:
            row = s.execute(stmt).first()
            if row is None:
                raise UnknownItemError(f"series {series_id} is not in the library (or was deleted)")
            out = self._series_summary(*row)
            self._decorate(s, [out])
            return out

    def series_anatomy_words(self, series_ids: Sequence[int]) -> dict[int, tuple[str, str, str]]:
        """(Body Part Examined, series description, study description) of each series: where a
        series is, for anatomy-compatible search. One statement per chunk of ids."""
        out: dict[int, tuple[str, str, str]] = {}
        with self._read() as s:
            for part in chunks([int(v) for v in series_ids], 500):
                stmt = (select(Series.id, Series.body_part, Series.description, Study.description)
                        .join(Study, Study.id == Series.study_id).where(Series.id.in_(part)))
                for sid, bp, desc, sdesc in s.execute(stmt):
                    out[int(sid)] = (bp or "", desc or "", sdesc or "")
        return out

    def series_measured_in_mm(self, series_ids: Sequence[int]) -> set[int]:
        """Those of the series that are cross-sections whose files give a pixel spacing: only their
        images show a body's width and layout in mm (a scanned page, a dose screen or a secondary
        capture has no scale; a localizer is a projection of the whole trunk)."""
        out: set[int] = set()
        with self._read() as s:
            for part in chunks([int(v) for v in series_ids], 500):
                stmt = select(Series.id).where(Series.id.in_(part), Series.pixel_spacing != "",
                                               Series.is_localizer.is_(False))
                out.update(int(v) for v in s.scalars(stmt))
        return out

    def find_series(self, key: str) -> SeriesSummary | None:
        """The visible series stored under a stack key (series UID, or UID#n for a split part)."""
        with self._read() as s:
            sid = s.scalar(select(Series.id).where(Series.stack_key == key))
        if sid is None:
            return None
        try:
            return self.get_series(sid)
        except UnknownItemError:
            return None

    def series_files(self, series_id: int) -> list[InstanceSummary]:
        """The images of a series in slice order (what a loader needs)."""
        self.get_series(series_id)
        with self._read() as s:
            rows = s.execute(select(Instance.sop_instance_uid, Instance.path, Instance.frame_index,
                                    Instance.instance_number, Instance.pos_x, Instance.pos_y, Instance.pos_z,
                                    Instance.slice_index)
                             .where(Instance.series_id == int(series_id)).order_by(Instance.slice_index)).all()
        return [InstanceSummary(r[0], r[1], None if r[2] < 0 else r[2], r[3],
                                (r[4], r[5], r[6]) if r[4] is not None else None, r[7]) for r in rows]

    def list_studies(self, f: CaseFilter | None = None, *, limit: int | None = None,
                     offset: int = 0) -> list[StudySummary]:
        """Studies with at least one visible series passing ``f``, newest first."""
        f = f or CaseFilter()
        matching = (select(Series.study_id).join(Study, Study.id == Series.study_id)
                    .join(Patient, Patient.id == Study.patient_id).where(*self._series_conditions(f)))
        stmt = (select(Study, Patient).join(Patient, Patient.id == Study.patient_id)
                .where(Study.id.in_(matching))
                .order_by(Study.study_date.desc().nulls_last(), Study.id.desc()).offset(offset))
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._read() as s:
            pairs = s.execute(stmt, self._params(f)).all()
            ids = [st.id for st, _ in pairs]
            return self._study_summaries(s, pairs, ids, include_deleted=f.include_deleted)

    def _study_summaries(self, s: Session, pairs: Sequence[Any], ids: list[int],
                         include_deleted: bool = False) -> list[StudySummary]:
        mods: dict[int, set[str]] = {i: set() for i in ids}
        counts: dict[int, list[int]] = {i: [0, 0] for i in ids}
        tags: dict[int, list[str]] = {i: [] for i in ids}
        diag: dict[int, str] = {}
        priors: dict[int, int] = {}
        follows: dict[int, int] = {}
        vis = Series.state == "complete" if include_deleted else and_(Series.state == "complete",
                                                                       Series.deleted.is_(False))
        for chunk in chunks(ids):
            for sid, mod, n in s.execute(select(Series.study_id, Series.modality, Series.slice_count)
                                         .where(Series.study_id.in_(chunk), vis)):
                mods[sid].add(mod)
                counts[sid][0] += 1
                counts[sid][1] += n
            for sid, name in s.execute(select(StudyTag.study_id, Tag.name).join(Tag, Tag.id == StudyTag.tag_id)
                                       .where(StudyTag.study_id.in_(chunk)).order_by(Tag.name)):
                tags[sid].append(name)
            for sid, d in s.execute(select(Report.study_id, Report.diagnosis)
                                    .where(Report.study_id.in_(chunk), Report.diagnosis != "")
                                    .order_by(Report.series_id.is_not(None), Report.id)):
                diag.setdefault(sid, d)
            for sid, n in s.execute(select(FollowUp.study_id, func.count()).where(FollowUp.study_id.in_(chunk))
                                    .group_by(FollowUp.study_id)):
                priors[sid] = n
            for sid, n in s.execute(select(FollowUp.prior_study_id, func.count())
                                    .where(FollowUp.prior_study_id.in_(chunk)).group_by(FollowUp.prior_study_id)):
                follows[sid] = n
        out = []
        for st, p in pairs:
            out.append(StudySummary(
                id=st.id, study_uid=st.study_uid, patient_key=p.patient_key, patient_id=p.patient_id,
                patient_name=p.name, sex=p.sex, age_years=st.age_years, study_date=st.study_date,
                study_time=st.study_time, description=st.description, accession_number=st.accession_number,
                modalities=sorted(m for m in mods[st.id] if m), series_count=counts[st.id][0],
                image_count=counts[st.id][1], tags=tags[st.id], diagnosis=diag.get(st.id, ""),
                is_teaching=st.is_teaching, difficulty=st.difficulty, deid_status=st.deid_status,
                prior_count=priors.get(st.id, 0), follow_up_count=follows.get(st.id, 0), deleted=st.deleted))
        return out

    def get_study(self, study_id: int, *, include_deleted: bool = False) -> StudySummary:
        with self._read() as s:
            pair = s.execute(select(Study, Patient).join(Patient, Patient.id == Study.patient_id)
                             .where(Study.id == int(study_id))).first()
            if pair is None or (pair[0].deleted and not include_deleted):
                raise UnknownItemError(f"study {study_id} is not in the library (or was deleted)")
            return self._study_summaries(s, [pair], [pair[0].id], include_deleted)[0]

    def list_patients(self) -> list[PatientSummary]:
        with self._read() as s:
            rows = s.execute(select(Patient, func.count(Study.id)).join(Study, Study.patient_id == Patient.id)
                             .where(Study.deleted.is_(False)).group_by(Patient.id).order_by(Patient.patient_key)).all()
        return [PatientSummary(p.id, p.patient_key, p.patient_id, p.name, p.sex, p.birth_date, n) for p, n in rows]

    def priors(self, study_id: int) -> list[tuple[int, date | None, int | None]]:
        """Earlier studies of the same patient: (study id, date, days before), most recent first."""
        with self._read() as s:
            rows = s.execute(select(FollowUp.prior_study_id, Study.study_date, FollowUp.interval_days)
                             .join(Study, Study.id == FollowUp.prior_study_id)
                             .where(FollowUp.study_id == int(study_id), Study.deleted.is_(False))
                             .order_by(Study.study_date.desc())).all()
        return [(r[0], r[1], r[2]) for r in rows]

    def follow_ups(self, study_id: int) -> list[tuple[int, date | None, int | None]]:
        """Later studies of the same patient: (study id, date, days after), earliest first."""
        with self._read() as s:
            rows = s.execute(select(FollowUp.study_id, Study.study_date, FollowUp.interval_days)
                             .join(Study, Study.id == FollowUp.study_id)
                             .where(FollowUp.prior_study_id == int(study_id), Study.deleted.is_(False))
                             .order_by(Study.study_date)).all()
        return [(r[0], r[1], r[2]) for r in rows]

    def link_prior(self, study_id: int, prior_study_id: int) -> None:
        """Record by hand that ``prior_study_id`` is a prior of ``study_id`` (e.g. after a PatientID change)."""
        if int(study_id) == int(prior_study_id):
            raise QueryError("a study cannot be its own prior")
        self.get_study(study_id)
        self.get_study(prior_study_id)
        with self._write() as s:
            a, b = s.get(Study, int(study_id)), s.get(Study, int(prior_study_id))
            days = abs((a.study_date - b.study_date).days) if a and b and a.study_date and b.study_date else None
            if s.get(FollowUp, (int(study_id), int(prior_study_id))) is None:
                s.add(FollowUp(study_id=int(study_id), prior_study_id=int(prior_study_id), interval_days=days,
                               source="manual"))

    def set_thumbnail(self, series_id: int, png: bytes | None) -> None:
        with self._write() as s:
            se = s.get(Series, int(series_id))
            if se is None:
                raise UnknownItemError(f"series {series_id} is not in the library")
            se.thumbnail = png

    def get_thumbnail(self, series_id: int) -> bytes | None:
        with self._read() as s:
            return s.scalar(select(Series.thumbnail).where(Series.id == int(series_id)))
