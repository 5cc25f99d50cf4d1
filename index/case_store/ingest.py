"""Ingest: stacks in, one transaction each, with source-file states, geometry and follow-up links.

A stack is written in one transaction and marked ``complete`` in it: a crash never leaves half a
series visible. Also here: hiding (``mark_deleted``) and purging what an aborted writer left.
"""
from __future__ import annotations

import logging
import os
import re
from datetime import date
from typing import Any, Iterable, Sequence

import numpy as np
from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from ..errors import StoreError
from casebook.common.dates import parse_da

from .models import FollowUp, Instance, Patient, Series, SourceFile, Study, utcnow
from .records import AddResult, FileState, InstanceRecord, StackRecord
from .sessions import chunks

log = logging.getLogger(__name__)


def age_years(patient_age: str, birth: date | None, study: date | None) -> float | None:
    """Age at the study from PatientAge (nnnY/M/W/D), else from the birth and study dates."""
    m = re.fullmatch(r"\s*(\d{1,3})\s*([YMWD]?)\s*", patient_age or "", re.IGNORECASE)
    if m:
        n, unit = int(m.group(1)), (m.group(2) or "Y").upper()
        return round(n / {"Y": 1.0, "M": 12.0, "W": 52.1775, "D": 365.2425}[unit], 3)
    if birth and study and study >= birth:
        return round((study - birth).days / 365.2425, 3)
    return None


def slice_geometry(instances: Sequence[InstanceRecord]) -> tuple[list[int], float | None, float | None, str]:
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


def patient_key(patient_id: str, issuer: str = "") -> str:
    """Who the patient is: PatientID, qualified by its Issuer when the header names one ("" when
    there is no PatientID). Without an issuer the key is the bare ID, as before migration 0007."""
    pid, iss = (patient_id or "").strip(), (issuer or "").strip()
    if not pid:
        return ""
    return f"{pid}\\{iss}" if iss else pid


class IngestMixin:
    """Adding stacks, remembering files, hiding and purging.

    Mixed into :class:`~.store.CaseStore`; sessions come from :class:`~.sessions.StoreSessions`.
    """

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
            for chunk in chunks(paths):
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
        for chunk in chunks(rows, 200):
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
        for chunk in chunks(uids):
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
        for chunk in chunks(old_paths):
            s.execute(delete(SourceFile).where(SourceFile.path.in_(chunk)))
        log.info("%d stored images found at a new path (old files gone): paths updated", len(moved))
        return {new_path: sid for new_path, _old, sid in moved.values()}

    def _patient_for(self, s: Session, st: StackRecord) -> Patient:
        issuer = (st.patient_issuer or "").strip()
        key = patient_key(st.patient_id, issuer) or f"anon:{st.study_uid}"
        p = s.scalar(select(Patient).where(Patient.patient_key == key))
        if p is None:
            p = Patient(patient_key=key, patient_id=st.patient_id.strip(), issuer=issuer if key[:5] != "anon:" else "",
                        name=st.patient_name or "",
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
        order, spacing, extent, orient_s = slice_geometry(recs)
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

    def mark_deleted(self, *, series_ids: Iterable[int] = (), study_ids: Iterable[int] = (),
                     deleted: bool = True) -> int:
        """Hide series/studies from listings and search (reversible; images and files stay)."""
        n = 0
        with self._write() as s:
            for chunk in chunks([int(i) for i in series_ids]):
                n += s.execute(update(Series).where(Series.id.in_(chunk)).values(deleted=deleted)).rowcount
            for chunk in chunks([int(i) for i in study_ids]):
                n += s.execute(update(Study).where(Study.id.in_(chunk)).values(deleted=deleted)).rowcount
        return n

    def purge_incomplete(self) -> int:
        """Remove series rows left ``incomplete`` (never visible; only an aborted writer leaves them)."""
        with self._write() as s:
            return s.execute(delete(Series).where(Series.state != "complete")).rowcount
