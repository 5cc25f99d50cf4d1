"""Priors and their registrations: the same patient's other studies, and the transforms that align them.

A registration is computed once (seconds of CPU) and reused every time the pair is opened, so it
is kept here with what a reader or physicist needs to trust it: the metric value, a quality
figure, the overlap, how long it took and the software that made it. The reader's nudge (a small
manual correction when the optimiser missed) is stored beside the computed matrix, never over it.
"""
from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
from sqlalchemy import select

from ..errors import QueryError, UnknownItemError
from .models import Patient, Registration, Series, Study
from .records import StudySummary

KINDS = ("rigid", "affine", "bspline")


@dataclass
class RegistrationRecord:
    """One stored registration. ``matrix`` maps fixed (current) LPS mm to moving (prior) LPS mm."""

    fixed_series_id: int
    moving_series_id: int
    kind: str
    matrix: np.ndarray
    nudge: np.ndarray | None = None
    metric: float | None = None
    quality: float | None = None
    overlap: float | None = None
    iterations: int = 0
    seconds: float = 0.0
    software: str = ""
    deformable: str = ""
    id: int | None = None
    created: datetime | None = None

    @property
    def effective(self) -> np.ndarray:
        """The matrix the views use: the computed one, then the reader's nudge (in prior space)."""
        return self.matrix if self.nudge is None else self.nudge @ self.matrix


@dataclass
class PatientStudy:
    """Another study of the open study's patient, and how we know it is the same patient."""

    study: StudySummary
    # "patient id" (same PatientID and Issuer) | "patient id, issuer unknown" (same PatientID, one
    # side names no issuer: e.g. studies ingested before migration 0007) | "name + birth date" | "manual"
    match: str
    interval_days: int | None  # days between the two (positive: this one is earlier)


def _matrix_json(m: np.ndarray | None) -> str:
    if m is None:
        return ""
    a = np.asarray(m, dtype=np.float64)
    if a.shape != (4, 4) or not np.all(np.isfinite(a)):
        raise QueryError(f"a registration matrix must be a finite 4x4 matrix, got shape {a.shape}")
    return json.dumps([float(x) for x in a.ravel()])


def _matrix_from(text: str) -> np.ndarray | None:
    if not text:
        return None
    return np.asarray(json.loads(text), dtype=np.float64).reshape(4, 4)


def _norm_name(name: str) -> str:
    """A DICOM person name compared loosely: case, accents, ^ and spaces do not matter."""
    s = unicodedata.normalize("NFKD", name or "").encode("ascii", "ignore").decode().upper()
    parts = [p.strip() for p in s.replace("=", "^").split("^")[:2]]
    return "^".join(" ".join(p.split()) for p in parts).strip("^")


class RegistrationsMixin:
    """The same patient's other studies, and prior-to-current registrations.

    Mixed into :class:`~.store.CaseStore`; sessions come from :class:`~.sessions.StoreSessions`.
    """

    # -- the same patient's other studies ---------------------------------------------------------
    def patient_studies(self, study_id: int, *, name_birth_fallback: bool = False) -> list[PatientStudy]:
        """The open study's patient's other studies, newest first.

        Identity is the patient key (PatientID + Issuer of Patient ID; the store keeps one patient
        per key, and ``anon:`` keys never match anyone). The same PatientID from two named issuers
        is two patients; when one side names no issuer (a study from before migration 0007, or a
        system that leaves it out) the same PatientID still matches, marked "patient id, issuer
        unknown". With ``name_birth_fallback``, studies of other keys whose patient has the same
        name and birth date are added, marked as such (a PatientID changed between systems); a
        missing birth date never matches. Manual links (:meth:`link_prior`) count too.
        """
        me = self.get_study(study_id)  # type: ignore[attr-defined]
        with self._read() as s:  # type: ignore[attr-defined]
            st = s.get(Study, int(study_id))
            if st is None:  # removed since get_study (another window or a worker)
                raise UnknownItemError(f"study {study_id} is not in the library")
            pat = s.get(Patient, st.patient_id)
            found: dict[int, str] = {}
            if not pat.patient_key.startswith("anon:"):
                for (oid,) in s.execute(select(Study.id).where(Study.patient_id == pat.id, Study.id != st.id,
                                                               Study.deleted.is_(False))):
                    found[oid] = "patient id"
                same_id = select(Patient.id).where(Patient.patient_id == pat.patient_id, Patient.id != pat.id)
                if pat.issuer:  # the other side must name no issuer
                    same_id = same_id.where(Patient.issuer == "")
                for (pid,) in s.execute(same_id):
                    for (oid,) in s.execute(select(Study.id).where(Study.patient_id == pid, Study.deleted.is_(False))):
                        found.setdefault(oid, "patient id, issuer unknown")
            if name_birth_fallback and pat.birth_date is not None and _norm_name(pat.name):
                key = _norm_name(pat.name)
                for p in s.scalars(select(Patient).where(Patient.birth_date == pat.birth_date, Patient.id != pat.id)):
                    if _norm_name(p.name) == key:
                        for (oid,) in s.execute(select(Study.id).where(Study.patient_id == p.id,
                                                                       Study.deleted.is_(False))):
                            found.setdefault(oid, "name + birth date")
        for oid, _d, _n in self.priors(study_id) + self.follow_ups(study_id):  # type: ignore[attr-defined]
            found.setdefault(oid, "manual")
        out: list[PatientStudy] = []
        for oid, how in found.items():
            try:
                other = self.get_study(oid)  # type: ignore[attr-defined]
            except UnknownItemError:
                continue
            days = ((me.study_date - other.study_date).days
                    if me.study_date is not None and other.study_date is not None else None)
            out.append(PatientStudy(other, how, days))
        out.sort(key=lambda p: (p.study.study_date or date.min, p.study.id), reverse=True)
        return out

    # -- registrations ------------------------------------------------------------------------------
    def save_registration(self, rec: RegistrationRecord) -> RegistrationRecord:
        """Store (or replace) the registration of this pair and kind; the nudge is kept unless given."""
        if rec.kind not in KINDS:
            raise QueryError(f"registration kind must be one of {', '.join(KINDS)}, not {rec.kind!r}")
        with self._write() as s:  # type: ignore[attr-defined]
            for sid in (rec.fixed_series_id, rec.moving_series_id):
                if s.get(Series, int(sid)) is None:
                    raise UnknownItemError(f"series {sid} is not in the library")
            row = s.scalar(select(Registration).where(Registration.fixed_series_id == int(rec.fixed_series_id),
                                                      Registration.moving_series_id == int(rec.moving_series_id),
                                                      Registration.kind == rec.kind))
            if row is None:
                row = Registration(fixed_series_id=int(rec.fixed_series_id),
                                   moving_series_id=int(rec.moving_series_id), kind=rec.kind, nudge="")
                s.add(row)
            row.matrix = _matrix_json(rec.matrix)
            if rec.nudge is not None:
                row.nudge = _matrix_json(rec.nudge)
            row.metric, row.quality, row.overlap = rec.metric, rec.quality, rec.overlap
            row.iterations, row.seconds = int(rec.iterations), float(rec.seconds)
            row.software, row.deformable = rec.software, rec.deformable or ""
            s.flush()
            rec.id = row.id
        return self.get_registration(rec.fixed_series_id, rec.moving_series_id, rec.kind) or rec

    def get_registration(self, fixed_series_id: int, moving_series_id: int,
                         kind: str = "rigid") -> RegistrationRecord | None:
        """The stored registration of this pair and kind, or None (then it has to be computed)."""
        with self._read() as s:  # type: ignore[attr-defined]
            row = s.scalar(select(Registration).where(Registration.fixed_series_id == int(fixed_series_id),
                                                      Registration.moving_series_id == int(moving_series_id),
                                                      Registration.kind == kind))
            return None if row is None else self._registration_record(row)

    def set_registration_nudge(self, fixed_series_id: int, moving_series_id: int, kind: str,
                               nudge: np.ndarray | None) -> RegistrationRecord:
        """Keep the reader's correction of a registration (None removes it)."""
        with self._write() as s:  # type: ignore[attr-defined]
            row = s.scalar(select(Registration).where(Registration.fixed_series_id == int(fixed_series_id),
                                                      Registration.moving_series_id == int(moving_series_id),
                                                      Registration.kind == kind))
            if row is None:
                raise UnknownItemError(f"no {kind} registration of series {moving_series_id} to series "
                                       f"{fixed_series_id} is stored")
            row.nudge = _matrix_json(nudge)
        rec = self.get_registration(fixed_series_id, moving_series_id, kind)
        assert rec is not None
        return rec

    def registrations_of(self, series_id: int) -> list[RegistrationRecord]:
        """Every stored registration with this series on either side (for `casebook info`, cleanup)."""
        with self._read() as s:  # type: ignore[attr-defined]
            rows = s.scalars(select(Registration).where((Registration.fixed_series_id == int(series_id))
                                                        | (Registration.moving_series_id == int(series_id)))
                             .order_by(Registration.id)).all()
            return [self._registration_record(r) for r in rows]

    @staticmethod
    def _registration_record(row: Registration) -> RegistrationRecord:
        return RegistrationRecord(
            id=row.id, fixed_series_id=row.fixed_series_id, moving_series_id=row.moving_series_id, kind=row.kind,
            matrix=_matrix_from(row.matrix), nudge=_matrix_from(row.nudge), metric=row.metric,  # type: ignore[arg-type]
            quality=row.quality, overlap=row.overlap, iterations=row.iterations, seconds=row.seconds,
            software=row.software, deformable=row.deformable, created=row.created)


__all__ = ["KINDS", "PatientStudy", "RegistrationRecord", "RegistrationsMixin"]
