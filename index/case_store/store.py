"""The case store: a typed repository over one SQLite file.

Every method opens its own short session, so one :class:`CaseStore` can be shared by the GUI
thread, ingest workers, the encoder and the search service. Writes take SQLite's write lock up
front (``BEGIN IMMEDIATE``) and are serialised in-process too, so two writers never dead-lock on a
lock upgrade. A stack is written in one transaction and marked ``complete`` in it: a crash never
leaves half a series visible, and listings show complete, non-deleted series only.
"""
from __future__ import annotations

import logging
import os
import re
import threading
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
from sqlalchemy import and_, delete, exists, func, insert, or_, select, text, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ..errors import QueryError, StoreError, UnknownItemError
from . import migrate as _migrate
from .models import (
    Collection,
    CollectionStudy,
    Embedding,
    FollowUp,
    Instance,
    Model,
    Patient,
    Report,
    Series,
    SourceFile,
    Study,
    StudyTag,
    Tag,
    utcnow,
)
from .records import (
    DEID_STATUSES,
    TEACHING_DIFFICULTIES,
    AddResult,
    CaseFilter,
    FileState,
    InstanceRecord,
    InstanceSummary,
    ModelRecord,
    PatientSummary,
    Report as ReportRecord,
    SeriesSummary,
    StackRecord,
    StoreStats,
    StudySummary,
    TeachingInfo,
    TextHit,
)

log = logging.getLogger(__name__)

_CHUNK = 500  # bound parameters per IN (...) list
_HAS_THUMB = Series.thumbnail.is_not(None).label("has_thumbnail")


def parse_da(value: str | None) -> date | None:
    """DICOM DA (YYYYMMDD, or the old YYYY.MM.DD) to a date; anything else to None."""
    if not value:
        return None
    digits = re.sub(r"[^0-9]", "", str(value))[:8]
    if len(digits) != 8:
        return None
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return None


def age_years(patient_age: str, birth: date | None, study: date | None) -> float | None:
    """Age at the study from PatientAge (nnnY/M/W/D), else from the birth and study dates."""
    m = re.fullmatch(r"\s*(\d{1,3})\s*([YMWD]?)\s*", patient_age or "", re.IGNORECASE)
    if m:
        n, unit = int(m.group(1)), (m.group(2) or "Y").upper()
        return round(n / {"Y": 1.0, "M": 12.0, "W": 52.1775, "D": 365.2425}[unit], 3)
    if birth and study and study >= birth:
        return round((study - birth).days / 365.2425, 3)
    return None


def _chunks(seq: Sequence[Any], n: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def fts_query(text_: str) -> str:
    """User words to a safe FTS5 query: every word must match; ``word*`` keeps prefix search."""
    terms = []
    for m in re.finditer(r"(\w+)(\*?)", text_, re.UNICODE):
        terms.append(f'"{m.group(1)}"{m.group(2)}')
    return " ".join(terms)


def _geometry(instances: Sequence[InstanceRecord]) -> tuple[list[int], float | None, float | None, str]:
    """Slice order along the normal, median step, extent and the orientation string."""
    orient = next((i.orientation for i in instances if i.orientation and len(i.orientation) == 6), None)
    n = len(instances)
    keys: list[float] | None = None
    if orient is not None and all(i.position is not None for i in instances):
        r, c = np.asarray(orient[:3], float), np.asarray(orient[3:], float)
        normal = np.cross(r, c)
        keys = [float(np.dot(np.asarray(i.position, float), normal)) for i in instances]
    if keys is not None:
        order = sorted(range(n), key=lambda k: (keys[k], instances[k].frame_index or 0))
    else:
        order = sorted(range(n), key=lambda k: (instances[k].instance_number if instances[k].instance_number
                                                is not None else 1 << 30, instances[k].frame_index or 0,
                                                instances[k].path))
    spacing = extent = None
    if keys is not None and n > 1:
        z = np.asarray([keys[k] for k in order])
        steps = np.diff(z)
        steps = steps[np.abs(steps) > 1e-4]
        spacing = float(np.median(np.abs(steps))) if steps.size else None
        extent = float(z[-1] - z[0])
    orient_s = "\\".join(f"{v:.6g}" for v in orient) if orient is not None else ""
    return order, spacing, extent, orient_s


class CaseStore:
    """Patients, studies, series, reports, tags, teaching fields and embeddings in one SQLite file."""

    def __init__(self, path: str | Path, *, create: bool = True, migrate: bool = True, backup: bool = True) -> None:
        """Open (creating and/or migrating as needed) the store at ``path``; see :meth:`open`."""
        p = Path(path).expanduser().absolute()
        self.revision = _migrate.prepare(p, create=create, migrate=migrate, make_backup=backup)
        self.path = p
        self._write_engine = _migrate.make_engine(path, immediate=True)
        self._read_engine = _migrate.make_engine(path, immediate=False)
        self._write_sessions = sessionmaker(self._write_engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(self._read_engine, expire_on_commit=False)
        self._write_lock = threading.RLock()
        self._closed = False

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def open(cls, path: str | Path, *, create: bool = True, migrate: bool = True,
             backup: bool = True) -> "CaseStore":
        """Open (creating and/or migrating as needed) the store at ``path``.

        Raises :class:`StoreError` naming the file when it is not an SQLite database, is damaged,
        belongs to something else or was written by a newer Casebook; such a file is not modified.
        """
        return cls(path, create=create, migrate=migrate, backup=backup)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._write_engine.dispose()
            self._read_engine.dispose()

    def __enter__(self) -> "CaseStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CaseStore({str(self.path)!r})"

    @contextmanager
    def _read(self) -> Iterator[Session]:
        s = self._read_sessions()
        try:
            yield s
        except SQLAlchemyError as exc:
            raise StoreError(f"{self.path}: cannot read the library: {exc.__class__.__name__}: {exc.orig if hasattr(exc, 'orig') else exc}") from exc
        finally:
            s.close()

    @contextmanager
    def _write(self) -> Iterator[Session]:
        with self._write_lock:
            s = self._write_sessions()
            try:
                yield s
                s.commit()
            except IntegrityError as exc:
                s.rollback()
                raise StoreError(f"{self.path}: refused by the library's constraints: {exc.orig}") from exc
            except SQLAlchemyError as exc:
                s.rollback()
                raise StoreError(f"{self.path}: cannot write to the library: {exc.orig if hasattr(exc, 'orig') else exc}") from exc
            except BaseException:
                s.rollback()
                raise
            finally:
                s.close()

    # ------------------------------------------------------------------ ingest
    def file_states(self) -> dict[str, FileState]:
        """Every source file seen by ingest, by absolute path (to skip unchanged files on resume)."""
        with self._read() as s:
            rows = s.execute(select(SourceFile.path, SourceFile.size, SourceFile.mtime_ns, SourceFile.status,
                                    SourceFile.reason)).all()
        return {r[0]: FileState(r[0], r[1], r[2], r[3], r[4] or "") for r in rows}

    def record_problems(self, problems: Iterable[FileState]) -> int:
        """Remember unusable files (status "problem", or "skipped" for non-image objects) with
        size and mtime, so an unchanged one is not read again by the next ingest."""
        rows = list(problems)
        with self._write() as s:
            self._upsert_files(s, [{"path": fs.path, "size": fs.size, "mtime_ns": fs.mtime_ns,
                                    "status": fs.status or "problem", "reason": fs.reason, "series_id": None}
                                   for fs in rows])
        return len(rows)

    def forget_files(self, paths: Iterable[str]) -> None:
        """Drop remembered file states (``ingest --rescan`` re-reads them)."""
        paths = list(paths)
        with self._write() as s:
            for chunk in _chunks(paths):
                s.execute(delete(SourceFile).where(SourceFile.path.in_(chunk), SourceFile.series_id.is_(None)))

    @staticmethod
    def _upsert_files(s: Session, rows: list[dict[str, Any]]) -> None:
        """Insert or refresh source-file states in one statement (ingest writes thousands)."""
        if not rows:
            return
        now = utcnow()
        for r in rows:
            r.setdefault("seen", now)
            r["size"] = r.get("size") or 0
            r["mtime_ns"] = r.get("mtime_ns") or 0
        stmt = sqlite_insert(SourceFile)
        stmt = stmt.on_conflict_do_update(index_elements=[SourceFile.path], set_={
            "size": stmt.excluded.size, "mtime_ns": stmt.excluded.mtime_ns, "status": stmt.excluded.status,
            "reason": stmt.excluded.reason, "series_id": stmt.excluded.series_id, "seen": stmt.excluded.seen})
        for chunk in _chunks(rows, 200):
            s.execute(stmt, list(chunk))

    def add_stack(self, stack: StackRecord) -> AddResult:
        """Store one stack (idempotent by SOP Instance UID + frame); see :meth:`add_stacks`."""
        return self.add_stacks([stack])[0]

    def add_stacks(self, stacks: Sequence[StackRecord]) -> list[AddResult]:
        """Store stacks in ONE transaction (all parts of a split series go in together).

        Images already stored (same SOP Instance UID and frame) are not stored again; when the
        same image arrives from another path it is reported as a duplicate. A crash before the
        commit leaves nothing of these stacks behind.
        """
        with self._write() as s:
            return [self._add_stack(s, st) for st in stacks]

    def _add_stack(self, s: Session, st: StackRecord) -> AddResult:
        if not st.key or not st.series_uid or not st.study_uid:
            raise StoreError(f"stack {st.key or '?'}: missing series or study UID")
        patient = self._patient_for(s, st)
        study = self._study_for(s, st, patient)
        series = s.scalar(select(Series).where(Series.stack_key == st.key))
        new = series is None
        if series is None:
            series = Series(stack_key=st.key, series_uid=st.series_uid, study_id=study.id, state="incomplete",
                            deleted=False)
            s.add(series)
        self._fill_series(series, st)
        s.flush()
        # which images are already stored (here or elsewhere)?
        existing: dict[tuple[str, int], tuple[int, str]] = {}
        uids = sorted({i.sop_instance_uid for i in st.instances})
        for chunk in _chunks(uids):
            for sop, frame, sid, path in s.execute(select(Instance.sop_instance_uid, Instance.frame_index,
                                                          Instance.series_id, Instance.path)
                                                   .where(Instance.sop_instance_uid.in_(chunk))):
                existing[(sop, frame)] = (sid, path)
        new_rows: list[InstanceRecord] = []
        duplicates: list[tuple[str, str]] = []
        dup_paths: set[str] = set()
        moved: dict[tuple[str, int], tuple[str, str, int]] = {}  # key -> (new path, old path, series)
        gone: dict[str, bool] = {}
        for inst in st.instances:
            k = (inst.sop_instance_uid, -1 if inst.frame_index is None else int(inst.frame_index))
            if k in existing:
                sid_old, where = existing[k]
                if where != inst.path:
                    if where not in gone:
                        gone[where] = not os.path.exists(where)
                    if gone[where]:  # the archive moved: the stored image now lives here
                        moved[k] = (inst.path, where, sid_old)
                        existing[k] = (sid_old, inst.path)
                    else:
                        duplicates.append((inst.path, f"same image (SOP Instance UID) already stored from {where}"))
                        dup_paths.add(inst.path)
                continue
            existing[k] = (series.id, inst.path)
            new_rows.append(inst)
        if new_rows:
            s.execute(insert(Instance), [{
                "series_id": series.id, "sop_instance_uid": i.sop_instance_uid,
                "frame_index": -1 if i.frame_index is None else int(i.frame_index),
                "sop_class_uid": i.sop_class_uid or "", "path": i.path, "instance_number": i.instance_number,
                "slice_index": 0,
                "pos_x": i.position[0] if i.position else None, "pos_y": i.position[1] if i.position else None,
                "pos_z": i.position[2] if i.position else None, "number_of_frames": int(i.number_of_frames or 1),
                "transfer_syntax_uid": i.transfer_syntax_uid or "", "acquisition_number": i.acquisition_number,
                "echo_number": i.echo_number, "acquisition_datetime": i.acquisition_datetime or "",
            } for i in new_rows])
        relocated = self._relocate(s, moved)
        if new_rows or new:
            self._resummarise(s, series, st)
        if series.slice_count == 0:  # every image was already stored under another stack
            s.delete(series)
            s.flush()
            status, sid = "unchanged", 0
        else:
            series.state = "complete"
            status = "stored" if new else ("updated" if new_rows else "unchanged")
            sid = series.id
        by_path: dict[str, InstanceRecord] = {}
        for inst in st.instances:
            by_path.setdefault(inst.path, inst)
        stored_paths = {i.path for i in new_rows}
        dup_reason = dict(duplicates)
        file_rows = []
        for path, inst in by_path.items():
            dup = path in dup_paths and path not in stored_paths
            file_rows.append({"path": path, "size": inst.file_size, "mtime_ns": inst.file_mtime_ns,
                              "status": "duplicate" if dup else "stored", "reason": dup_reason[path] if dup else "",
                              "series_id": None if dup else (relocated.get(path) or sid or None)})
        self._upsert_files(s, file_rows)
        if new and sid:
            self._link_follow_ups(s, study)
        return AddResult(sid, st.key, status, len(new_rows), duplicates,
                         sorted({(new_p, old_p) for new_p, old_p, _ in moved.values()}))

    @staticmethod
    def _relocate(s: Session, moved: dict[tuple[str, int], tuple[str, str, int]]) -> dict[str, int]:
        """Point stored images whose file is gone at the path they were found under now.

        An archive copied to a new disk or mount keeps its SOP Instance UIDs: its images are the
        same, so they keep their series, reports, tags and embeddings and only change path.
        Returns new path -> series id.
        """
        if not moved:
            return {}
        for (sop, frame), (new_path, _old, _sid) in moved.items():
            s.execute(update(Instance).where(Instance.sop_instance_uid == sop, Instance.frame_index == frame)
                      .values(path=new_path))
        old_paths = sorted({old for _n, old, _s in moved.values()})
        for chunk in _chunks(old_paths):
            s.execute(delete(SourceFile).where(SourceFile.path.in_(chunk)))
        log.info("%d stored images found at a new path (old files gone): paths updated", len(moved))
        return {new_path: sid for new_path, _old, sid in moved.values()}

    def _patient_for(self, s: Session, st: StackRecord) -> Patient:
        key = st.patient_id.strip() or f"anon:{st.study_uid}"
        p = s.scalar(select(Patient).where(Patient.patient_key == key))
        if p is None:
            p = Patient(patient_key=key, patient_id=st.patient_id.strip(), name=st.patient_name or "",
                        sex=(st.patient_sex or "").strip().upper()[:1], birth_date=parse_da(st.patient_birth_date))
            s.add(p)
            s.flush()
        else:  # fill what an earlier study did not say
            p.name = p.name or st.patient_name or ""
            p.sex = p.sex or (st.patient_sex or "").strip().upper()[:1]
            p.birth_date = p.birth_date or parse_da(st.patient_birth_date)
        return p

    def _study_for(self, s: Session, st: StackRecord, patient: Patient) -> Study:
        study = s.scalar(select(Study).where(Study.study_uid == st.study_uid))
        sdate = parse_da(st.study_date)
        if study is None:
            study = Study(study_uid=st.study_uid, patient_id=patient.id, study_date=sdate,
                          study_time=st.study_time or "", description=st.study_description or "",
                          accession_number=st.accession_number or "", patient_age=st.patient_age or "",
                          age_years=age_years(st.patient_age, patient.birth_date, sdate), deleted=False,
                          is_teaching=False, teaching_points="", difficulty="", deid_status="identified")
            s.add(study)
            s.flush()
        else:
            study.study_date = study.study_date or sdate
            study.description = study.description or st.study_description or ""
            study.accession_number = study.accession_number or st.accession_number or ""
            if study.age_years is None:
                study.patient_age = st.patient_age or study.patient_age
                study.age_years = age_years(st.patient_age, patient.birth_date, study.study_date)
        return study

    @staticmethod
    def _fill_series(series: Series, st: StackRecord) -> None:
        series.series_number = st.series_number
        series.description = st.series_description or ""
        series.modality = (st.modality or "").strip().upper()
        series.body_part = (st.body_part or "").strip().upper()
        series.manufacturer = st.manufacturer or ""
        series.rows, series.columns = int(st.rows or 0), int(st.columns or 0)
        series.split_reason = st.split_reason or ""
        series.is_localizer = bool(st.is_localizer)
        series.pixel_spacing = "\\".join(f"{v:.6g}" for v in st.pixel_spacing) if st.pixel_spacing else ""
        series.slice_thickness = st.slice_thickness
        series.frame_of_reference_uid = st.frame_of_reference_uid or ""

    @staticmethod
    def _resummarise(s: Session, series: Series, st: StackRecord) -> None:
        """Slice order, counts and geometry of the series from all its stored images."""
        rows = s.execute(select(Instance.id, Instance.path, Instance.instance_number, Instance.frame_index,
                                Instance.pos_x, Instance.pos_y, Instance.pos_z)
                         .where(Instance.series_id == series.id)).all()
        orient = next((i.orientation for i in st.instances if i.orientation), None)
        recs = [InstanceRecord(path=r[1], sop_instance_uid="", instance_number=r[2],
                               frame_index=None if r[3] < 0 else r[3],
                               position=(r[4], r[5], r[6]) if r[4] is not None else None,
                               orientation=orient) for r in rows]
        order, spacing, extent, orient_s = _geometry(recs)
        if rows:
            s.execute(update(Instance), [{"id": rows[k][0], "slice_index": n} for n, k in enumerate(order)])
        series.slice_count = len(rows)
        series.file_count = len({r[1] for r in rows})
        series.slice_spacing, series.extent_mm, series.orientation = spacing, extent, orient_s

    def _link_follow_ups(self, s: Session, study: Study) -> None:
        """Relate a new study to the same patient's other dated studies (prior / follow-up)."""
        if study.study_date is None:
            return
        others = s.execute(select(Study.id, Study.study_date).where(
            Study.patient_id == study.patient_id, Study.id != study.id, Study.study_date.is_not(None))).all()
        for oid, odate in others:
            if odate == study.study_date:
                continue
            later, earlier = (study.id, oid) if study.study_date > odate else (oid, study.id)
            if s.get(FollowUp, (later, earlier)) is None:
                s.add(FollowUp(study_id=later, prior_study_id=earlier,
                               interval_days=abs((study.study_date - odate).days), source="auto"))

    # ------------------------------------------------------------------ listing
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
        for chunk in _chunks(study_ids):
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
        for chunk in _chunks(ids):
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

    # ------------------------------------------------------------------ reports and text search
    def set_report(self, study_id: int, *, findings: str = "", impression: str = "", diagnosis: str = "",
                   author: str = "", series_id: int | None = None) -> int:
        """Create or replace the report of a study (or of one of its series); returns its id."""
        self.get_study(study_id)
        if series_id is not None and self.get_series(series_id).study_id != int(study_id):
            raise QueryError(f"series {series_id} does not belong to study {study_id}")
        with self._write() as s:
            cond = Report.series_id.is_(None) if series_id is None else Report.series_id == int(series_id)
            rep = s.scalar(select(Report).where(Report.study_id == int(study_id), cond))
            if rep is None:
                rep = Report(study_id=int(study_id), series_id=series_id)
                s.add(rep)
            rep.findings, rep.impression, rep.diagnosis, rep.author = findings, impression, diagnosis, author
            rep.updated = utcnow()
            s.flush()
            return rep.id

    def get_report(self, study_id: int, series_id: int | None = None) -> ReportRecord | None:
        with self._read() as s:
            cond = Report.series_id.is_(None) if series_id is None else Report.series_id == int(series_id)
            rep = s.scalar(select(Report).where(Report.study_id == int(study_id), cond))
        if rep is None:
            return None
        return ReportRecord(rep.study_id, rep.series_id, rep.findings, rep.impression, rep.diagnosis, rep.author,
                            rep.updated)

    def diagnoses(self) -> dict[int, str]:
        """Diagnosis per visible series (its own report's, else its study's)."""
        with self._read() as s:
            study_diag = dict(s.execute(select(Report.study_id, Report.diagnosis)
                                        .where(Report.series_id.is_(None), Report.diagnosis != "")).all())
            series_diag = dict(s.execute(select(Report.series_id, Report.diagnosis)
                                         .where(Report.series_id.is_not(None), Report.diagnosis != "")).all())
            rows = s.execute(select(Series.id, Series.study_id).join(Study, Study.id == Series.study_id)
                             .where(self._visible())).all()
        out = {}
        for sid, stid in rows:
            d = series_diag.get(sid) or study_diag.get(stid)
            if d:
                out[sid] = d
        return out

    def search_text(self, query: str, limit: int = 20, *, raw: bool = False) -> list[TextHit]:
        """Reports ranked by FTS5 (bm25) for ``query``; deleted cases never come back.

        Words are ANDed and may end in ``*`` for prefix search; ``raw=True`` passes FTS5 syntax
        (OR, NEAR, column filters) through, and malformed syntax raises :class:`QueryError`.
        """
        q = query.strip() if raw else fts_query(query)
        if not q:
            return []
        sql = text(
            "SELECT r.id, r.study_id, r.series_id, bm25(report_fts) AS rank, "
            "snippet(report_fts, -1, '[', ']', '…', 12) AS snip, r.diagnosis "
            "FROM report_fts JOIN report r ON r.id = report_fts.rowid "
            "JOIN study st ON st.id = r.study_id "
            "LEFT JOIN series se ON se.id = r.series_id "
            "WHERE report_fts MATCH :q AND st.deleted = 0 AND (se.id IS NULL OR se.deleted = 0) "
            "AND EXISTS (SELECT 1 FROM series v WHERE v.study_id = st.id AND v.state = 'complete' AND v.deleted = 0) "
            "ORDER BY rank LIMIT :limit")
        try:
            with self._read_sessions() as s:
                rows = s.execute(sql, {"q": q, "limit": int(limit)}).all()
        except SQLAlchemyError as exc:
            raise QueryError(f"text query {query!r} is not valid: {getattr(exc, 'orig', exc)}") from exc
        return [TextHit(study_id=r[1], series_id=r[2], report_id=r[0], score=-float(r[3]), snippet=r[4],
                        diagnosis=r[5]) for r in rows]

    def rebuild_text_index(self) -> None:
        """Rebuild the FTS5 index from the report table (after a restore, or if it is suspected stale)."""
        with self._write() as s:
            s.execute(text("INSERT INTO report_fts(report_fts) VALUES ('rebuild')"))

    # ------------------------------------------------------------------ tags, collections, teaching
    def add_tag(self, study_id: int, name: str) -> None:
        name = name.strip()
        if not name:
            raise QueryError("a tag needs a name")
        self.get_study(study_id)
        with self._write() as s:
            tag = s.scalar(select(Tag).where(Tag.name == name))
            if tag is None:
                tag = Tag(name=name)
                s.add(tag)
                s.flush()
            if s.get(StudyTag, (int(study_id), tag.id)) is None:
                s.add(StudyTag(study_id=int(study_id), tag_id=tag.id))

    def remove_tag(self, study_id: int, name: str) -> bool:
        with self._write() as s:
            tag = s.scalar(select(Tag).where(Tag.name == name.strip()))
            if tag is None:
                return False
            res = s.execute(delete(StudyTag).where(StudyTag.study_id == int(study_id), StudyTag.tag_id == tag.id))
            return bool(res.rowcount)

    def tags(self) -> list[tuple[str, int]]:
        """Every tag with the number of (non-deleted) studies carrying it."""
        with self._read() as s:
            rows = s.execute(select(Tag.name, func.count(Study.id)).outerjoin(StudyTag, StudyTag.tag_id == Tag.id)
                             .outerjoin(Study, and_(Study.id == StudyTag.study_id, Study.deleted.is_(False)))
                             .group_by(Tag.id).order_by(Tag.name)).all()
        return [(r[0], r[1]) for r in rows]

    def add_to_collection(self, collection: str, study_id: int, *, note: str = "", description: str = "") -> None:
        name = collection.strip()
        if not name:
            raise QueryError("a collection needs a name")
        self.get_study(study_id)
        with self._write() as s:
            col = s.scalar(select(Collection).where(Collection.name == name))
            if col is None:
                col = Collection(name=name, description=description)
                s.add(col)
                s.flush()
            link = s.get(CollectionStudy, (col.id, int(study_id)))
            if link is None:
                pos = s.scalar(select(func.coalesce(func.max(CollectionStudy.position), -1))
                               .where(CollectionStudy.collection_id == col.id)) + 1
                s.add(CollectionStudy(collection_id=col.id, study_id=int(study_id), position=pos, note=note))
            elif note:
                link.note = note

    def remove_from_collection(self, collection: str, study_id: int) -> bool:
        with self._write() as s:
            col = s.scalar(select(Collection).where(Collection.name == collection.strip()))
            if col is None:
                return False
            res = s.execute(delete(CollectionStudy).where(CollectionStudy.collection_id == col.id,
                                                          CollectionStudy.study_id == int(study_id)))
            return bool(res.rowcount)

    def collections(self) -> list[tuple[str, str, int]]:
        """(name, description, study count) of every collection."""
        with self._read() as s:
            rows = s.execute(select(Collection.name, Collection.description, func.count(CollectionStudy.study_id))
                             .outerjoin(CollectionStudy, CollectionStudy.collection_id == Collection.id)
                             .group_by(Collection.id).order_by(Collection.name)).all()
        return [(r[0], r[1], r[2]) for r in rows]

    def collection_studies(self, collection: str) -> list[int]:
        with self._read() as s:
            return list(s.scalars(select(CollectionStudy.study_id)
                                  .join(Collection, Collection.id == CollectionStudy.collection_id)
                                  .join(Study, Study.id == CollectionStudy.study_id)
                                  .where(Collection.name == collection.strip(), Study.deleted.is_(False))
                                  .order_by(CollectionStudy.position)))

    def set_teaching(self, study_id: int, info: TeachingInfo) -> None:
        if info.difficulty not in TEACHING_DIFFICULTIES:
            raise QueryError(f"difficulty must be one of {', '.join(d for d in TEACHING_DIFFICULTIES if d)}")
        if info.deid_status not in DEID_STATUSES:
            raise QueryError(f"de-identification status must be one of {', '.join(DEID_STATUSES)}")
        self.get_study(study_id)
        with self._write() as s:
            st = s.get(Study, int(study_id))
            assert st is not None
            st.is_teaching, st.teaching_points = info.is_teaching, info.teaching_points
            st.difficulty, st.deid_status = info.difficulty, info.deid_status

    def get_teaching(self, study_id: int) -> TeachingInfo:
        with self._read() as s:
            st = s.get(Study, int(study_id))
            if st is None:
                raise UnknownItemError(f"study {study_id} is not in the library")
            return TeachingInfo(st.is_teaching, st.teaching_points, st.difficulty, st.deid_status)

    def set_thumbnail(self, series_id: int, png: bytes | None) -> None:
        with self._write() as s:
            se = s.get(Series, int(series_id))
            if se is None:
                raise UnknownItemError(f"series {series_id} is not in the library")
            se.thumbnail = png

    def get_thumbnail(self, series_id: int) -> bytes | None:
        with self._read() as s:
            return s.scalar(select(Series.thumbnail).where(Series.id == int(series_id)))

    def mark_deleted(self, *, series_ids: Iterable[int] = (), study_ids: Iterable[int] = (),
                     deleted: bool = True) -> int:
        """Hide series/studies from listings and search (reversible; images and files stay)."""
        n = 0
        with self._write() as s:
            for chunk in _chunks([int(i) for i in series_ids]):
                n += s.execute(update(Series).where(Series.id.in_(chunk)).values(deleted=deleted)).rowcount
            for chunk in _chunks([int(i) for i in study_ids]):
                n += s.execute(update(Study).where(Study.id.in_(chunk)).values(deleted=deleted)).rowcount
        return n

    # ------------------------------------------------------------------ encoder models and embeddings
    @staticmethod
    def _model_record(m: Model) -> ModelRecord:
        return ModelRecord(m.id, m.name, m.version, m.sha256, m.dim, m.input_kind, m.created)

    def register_model(self, name: str, version: str, sha256: str, dim: int, input_kind: str) -> ModelRecord:
        """Record an encoder (idempotent). The same name@version with another file or size is refused:
        index files are named by name@version, so a retrained model needs a new version."""
        if not name or not version or dim <= 0:
            raise QueryError("a model needs a name, a version and a positive embedding size")
        with self._write() as s:
            m = s.scalar(select(Model).where(Model.name == name, Model.version == version))
            if m is None:
                m = Model(name=name, version=version, sha256=sha256, dim=int(dim), input_kind=input_kind,
                          next_label=0)
                s.add(m)
                s.flush()
            elif m.sha256 != sha256 or m.dim != int(dim):
                raise StoreError(f"model {name}@{version} is already registered with another file "
                                 f"(sha256 {m.sha256[:12]}…, {m.dim}-d); give the new file a new version")
            return self._model_record(m)

    def list_models(self) -> list[ModelRecord]:
        with self._read() as s:
            return [self._model_record(m) for m in s.scalars(select(Model).order_by(Model.name, Model.version))]

    def get_model(self, model: int | str) -> ModelRecord:
        """A model by id, by ``name@version`` or by name alone (its newest registration)."""
        with self._read() as s:
            if isinstance(model, int):
                m = s.get(Model, model)
            elif "@" in model:
                name, version = model.split("@", 1)
                m = s.scalar(select(Model).where(Model.name == name, Model.version == version))
            else:
                m = s.scalar(select(Model).where(Model.name == model).order_by(Model.id.desc()))
        if m is None:
            raise UnknownItemError(f"model {model!r} is not registered in the library")
        return self._model_record(m)

    def put_embeddings(self, model_id: int, series_id: int, slice_indices: Sequence[int], vectors: np.ndarray,
                       *, roi: str = "", replace_series: bool = False) -> np.ndarray:
        """Store vectors (one row per slice index, -1 = whole series) and return their new labels.

        A vector replacing an existing one (same model, series, slice, ROI) gets a NEW label: labels
        are never reused, so an index can always tell a changed vector from the one it holds.
        ``replace_series`` first drops every embedding of the series for this model.
        """
        vecs = np.ascontiguousarray(np.asarray(vectors, dtype="<f4"))
        if vecs.ndim == 1:
            vecs = vecs[None, :]
        idx = [int(i) for i in slice_indices]
        if len(idx) != len(vecs):
            raise QueryError(f"{len(idx)} slice indices for {len(vecs)} vectors")
        if len(set(idx)) != len(idx):
            raise QueryError("slice indices must be distinct")
        if not np.isfinite(vecs).all():
            raise QueryError(f"series {series_id}: embedding contains NaN or infinity")
        with self._write() as s:
            m = s.get(Model, int(model_id))
            if m is None:
                raise UnknownItemError(f"model {model_id} is not registered in the library")
            if vecs.shape[1] != m.dim:
                raise QueryError(f"model {m.name}@{m.version} makes {m.dim}-d embeddings, got {vecs.shape[1]}-d")
            if s.get(Series, int(series_id)) is None:
                raise UnknownItemError(f"series {series_id} is not in the library")
            base = s.execute(delete(Embedding).where(Embedding.model_id == m.id, Embedding.series_id == int(series_id),
                                                     *( [] if replace_series else
                                                        [Embedding.slice_index.in_(idx), Embedding.roi == roi])))
            del base
            start = int(m.next_label)
            labels = np.arange(start, start + len(idx), dtype=np.int64)
            m.next_label = start + len(idx)
            now = utcnow()
            if len(idx):
                s.execute(insert(Embedding), [{
                    "model_id": m.id, "series_id": int(series_id), "slice_index": si, "roi": roi,
                    "label": int(lab), "vector": vecs[n].tobytes(), "created": now,
                } for n, (si, lab) in enumerate(zip(idx, labels))])
        return labels

    def delete_embeddings(self, model_id: int, series_id: int | None = None) -> int:
        with self._write() as s:
            cond = [Embedding.model_id == int(model_id)]
            if series_id is not None:
                cond.append(Embedding.series_id == int(series_id))
            return s.execute(delete(Embedding).where(*cond)).rowcount

    def _live_embedding_cond(self, model_id: int) -> list[Any]:
        return [Embedding.model_id == int(model_id), Series.state == "complete", Series.deleted.is_(False),
                Study.deleted.is_(False)]

    def get_embeddings(self, model_id: int, series_ids: Sequence[int] | None = None, *,
                       include_deleted: bool = False, roi: bool = False) -> "EmbeddingSet":
        """Stored embeddings of a model (live series only unless ``include_deleted``), label order.

        ROI embeddings (from boxes drawn in the viewer) are left out unless ``roi=True``.
        """
        cond: list[Any] = ([Embedding.model_id == int(model_id)] if include_deleted
                           else self._live_embedding_cond(model_id))
        if not roi:
            cond.append(Embedding.roi == "")
        dim = self.get_model(int(model_id)).dim
        base = (select(Embedding.label, Embedding.series_id, Embedding.slice_index, Embedding.roi, Embedding.vector)
                .join(Series, Series.id == Embedding.series_id).join(Study, Study.id == Series.study_id))
        rows: list[Any] = []
        with self._read() as s:
            if series_ids is None:
                rows = s.execute(base.where(*cond).order_by(Embedding.label)).all()
            else:
                for chunk in _chunks([int(i) for i in series_ids]):
                    rows.extend(s.execute(base.where(*cond, Embedding.series_id.in_(chunk))).all())
                rows.sort(key=lambda r: r[0])
        return EmbeddingSet.from_rows(rows, dim)

    def series_missing_embeddings(self, model_id: int) -> list[int]:
        """Visible series with no embedding of this model yet (what ``casebook embed`` works on)."""
        has = exists().where(Embedding.series_id == Series.id, Embedding.model_id == int(model_id))
        with self._read() as s:
            return list(s.scalars(select(Series.id).join(Study, Study.id == Series.study_id)
                                  .where(self._visible(), ~has).order_by(Series.id)))

    def labels_for_series(self, model_id: int, series_ids: Sequence[int]) -> dict[int, np.ndarray]:
        """series id -> labels of its live, non-ROI embeddings for the model."""
        out: dict[int, list[int]] = {int(i): [] for i in series_ids}
        with self._read() as s:
            for chunk in _chunks(list(out)):
                for sid, lab in s.execute(select(Embedding.series_id, Embedding.label)
                                          .join(Series, Series.id == Embedding.series_id)
                                          .join(Study, Study.id == Series.study_id)
                                          .where(*self._live_embedding_cond(model_id), Embedding.roi == "",
                                                 Embedding.series_id.in_(chunk))
                                          .order_by(Embedding.slice_index)):
                    out[sid].append(lab)
        return {k: np.asarray(v, dtype=np.int64) for k, v in out.items()}

    def resolve_labels(self, model_id: int, labels: Iterable[int]) -> dict[int, tuple[int, int]]:
        """label -> (series id, slice index) for labels of live embeddings (deleted ones are absent)."""
        labs = sorted({int(x) for x in labels})
        out: dict[int, tuple[int, int]] = {}
        with self._read() as s:
            for chunk in _chunks(labs):
                for lab, sid, si in s.execute(select(Embedding.label, Embedding.series_id, Embedding.slice_index)
                                              .join(Series, Series.id == Embedding.series_id)
                                              .join(Study, Study.id == Series.study_id)
                                              .where(*self._live_embedding_cond(model_id),
                                                     Embedding.label.in_(chunk))):
                    out[lab] = (sid, si)
        return out

    def dead_labels(self, model_id: int) -> np.ndarray:
        """Labels of embeddings whose series or study is deleted (to mark deleted in an index)."""
        with self._read() as s:
            rows = s.scalars(select(Embedding.label).join(Series, Series.id == Embedding.series_id)
                             .join(Study, Study.id == Series.study_id)
                             .where(Embedding.model_id == int(model_id),
                                    or_(Series.deleted.is_(True), Study.deleted.is_(True)))).all()
        return np.asarray(rows, dtype=np.int64)

    def embedding_source(self, model_id: int) -> "StoreEmbeddingSource":
        """The live embeddings of a model as a ``casebook.index.vector_index.EmbeddingSource``."""
        return StoreEmbeddingSource(self, int(model_id))

    # ------------------------------------------------------------------ statistics
    def stats(self) -> StoreStats:
        with self._read() as s:
            def count(stmt: Any) -> int:
                return int(s.scalar(stmt) or 0)

            vis_series = select(func.count(Series.id)).join(Study, Study.id == Series.study_id).where(self._visible())
            by_mod = s.execute(select(Series.modality, func.count(Series.id), func.sum(Series.slice_count))
                               .join(Study, Study.id == Series.study_id).where(self._visible())
                               .group_by(Series.modality).order_by(Series.modality)).all()
            models = s.execute(select(Model, func.count(Embedding.id)).outerjoin(Embedding, Embedding.model_id == Model.id)
                               .group_by(Model.id).order_by(Model.name, Model.version)).all()
            st = StoreStats(
                path=str(self.path),
                file_bytes=self.path.stat().st_size if self.path.exists() else 0,
                wal_bytes=(Path(str(self.path) + "-wal").stat().st_size
                           if Path(str(self.path) + "-wal").exists() else 0),
                schema_version=s.scalar(text("SELECT version_num FROM alembic_version")) or "",
                head_version=_migrate.head_revision(),
                patients=count(select(func.count(func.distinct(Study.patient_id))).join(Series, Series.study_id == Study.id)
                               .where(self._visible())),
                studies=count(select(func.count(func.distinct(Study.id))).join(Series, Series.study_id == Study.id)
                              .where(self._visible())),
                series=count(vis_series),
                instances=count(select(func.count(Instance.id)).join(Series, Series.id == Instance.series_id)
                                .join(Study, Study.id == Series.study_id).where(self._visible())),
                files=count(select(func.count(SourceFile.id)).where(SourceFile.status == "stored")),
                problem_files=count(select(func.count(SourceFile.id)).where(SourceFile.status == "problem")),
                reports=count(select(func.count(Report.id))),
                deleted_series=count(select(func.count(Series.id)).join(Study, Study.id == Series.study_id)
                                     .where(or_(Series.deleted.is_(True), Study.deleted.is_(True)))),
                incomplete_series=count(select(func.count(Series.id)).where(Series.state != "complete")),
                series_by_modality={m or "?": n for m, n, _ in by_mod},
                images_by_modality={m or "?": int(k or 0) for m, _, k in by_mod},
                models=[(self._model_record(m), n) for m, n in models],
                tags=count(select(func.count(Tag.id))),
                collections=count(select(func.count(Collection.id))),
                teaching_cases=count(select(func.count(Study.id)).where(Study.is_teaching.is_(True),
                                                                        Study.deleted.is_(False))),
            )
        return st

    def purge_incomplete(self) -> int:
        """Remove series rows left ``incomplete`` (never visible; only an aborted writer leaves them)."""
        with self._write() as s:
            return s.execute(delete(Series).where(Series.state != "complete")).rowcount


class EmbeddingSet:
    """Embeddings as arrays: ``labels``, ``series_ids``, ``slice_indices`` (int64), ``vectors`` (float32)."""

    def __init__(self, labels: np.ndarray, series_ids: np.ndarray, slice_indices: np.ndarray, vectors: np.ndarray,
                 rois: list[str]) -> None:
        self.labels, self.series_ids, self.slice_indices, self.vectors, self.rois = (
            labels, series_ids, slice_indices, vectors, rois)

    @classmethod
    def from_rows(cls, rows: Sequence[Any], dim: int) -> "EmbeddingSet":
        n = len(rows)
        vecs = np.empty((n, dim), dtype=np.float32)
        for k, r in enumerate(rows):
            vecs[k] = np.frombuffer(r[4], dtype="<f4")
        return cls(np.fromiter((r[0] for r in rows), np.int64, n), np.fromiter((r[1] for r in rows), np.int64, n),
                   np.fromiter((r[2] for r in rows), np.int64, n), vecs, [r[3] for r in rows])

    def __len__(self) -> int:
        return len(self.labels)


class StoreEmbeddingSource:
    """A model's live embeddings for :class:`casebook.index.vector_index.VectorIndex` (structural protocol)."""

    def __init__(self, store: CaseStore, model_id: int) -> None:
        self.store, self.model_id = store, model_id

    def _base(self, *cols: Any) -> Any:
        return (select(*cols).join(Series, Series.id == Embedding.series_id).join(Study, Study.id == Series.study_id)
                .where(*self.store._live_embedding_cond(self.model_id), Embedding.roi == ""))

    def digest(self) -> Any:
        from ..vector_index import LabelDigest  # same package: index

        with self.store._read() as s:
            n, total, mix = s.execute(self._base(
                func.count(Embedding.label), func.coalesce(func.sum(Embedding.label), 0),
                func.coalesce(func.sum(((Embedding.label % 2147483647) * 1103515245) % 2147483647), 0))).one()
        return LabelDigest(int(n), int(total), int(mix))

    def labels(self) -> np.ndarray:
        with self.store._read() as s:
            return np.asarray(s.scalars(self._base(Embedding.label).order_by(Embedding.label)).all(), dtype=np.int64)

    def vectors(self, labels: np.ndarray) -> np.ndarray:
        labs = [int(x) for x in np.asarray(labels).ravel()]
        dim = self.store.get_model(self.model_id).dim
        found: dict[int, bytes] = {}
        with self.store._read() as s:
            for chunk in _chunks(labs):
                for lab, blob in s.execute(select(Embedding.label, Embedding.vector)
                                           .where(Embedding.model_id == self.model_id, Embedding.label.in_(chunk))):
                    found[lab] = blob
        missing = [l for l in labs if l not in found]
        if missing:
            raise UnknownItemError(f"{len(missing)} labels have no stored embedding (e.g. {missing[0]})")
        out = np.empty((len(labs), dim), dtype=np.float32)
        for k, lab in enumerate(labs):
            out[k] = np.frombuffer(found[lab], dtype="<f4")
        return out

    def iter_batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        dim = self.store.get_model(self.model_id).dim
        last = -1
        while True:
            with self.store._read() as s:
                rows = s.execute(self._base(Embedding.label, Embedding.vector).where(Embedding.label > last)
                                 .order_by(Embedding.label).limit(int(batch_size))).all()
            if not rows:
                return
            labels = np.fromiter((r[0] for r in rows), np.int64, len(rows))
            vecs = np.empty((len(rows), dim), dtype=np.float32)
            for k, r in enumerate(rows):
                vecs[k] = np.frombuffer(r[1], dtype="<f4")
            last = int(labels[-1])
            yield labels, vecs


__all__ = ["CaseStore", "EmbeddingSet", "StoreEmbeddingSource", "parse_da", "age_years", "fts_query"]
