"""A study's labels (diagnosis, tags, note) as a reader, an import or feedback sets them, with
who/what set each and when.

Training labels and calibration are only as good as their provenance: a diagnosis typed by a
reader must never be silently overwritten by a later import, and anyone looking at a label must
see where it came from. Every change is a :class:`~.models.LabelEvent`; the current values live in
the study's report row (diagnosis, note) and the teaching tags (written through
:meth:`~.teaching.TeachingMixin.add_tag`).
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import QueryError
from .models import LabelEvent, Report, Study, StudyTag, Tag, utcnow
from .report_records import LABEL_SOURCES, LabelEventRecord, StudyLabels


def _check_source(source: str) -> None:
    if source not in LABEL_SOURCES:
        raise QueryError(f"label source must be one of {', '.join(LABEL_SOURCES)}, not {source!r}")


def log_label(s: Session, study_id: int, kind: str, action: str, value: str, previous: str, source: str,
              actor: str, when: datetime | None = None) -> None:
    s.add(LabelEvent(study_id=int(study_id), kind=kind, action=action, value=value, previous=previous,
                     source=source, actor=actor, created=when or utcnow()))


def study_report_row(s: Session, study_id: int) -> Report:
    """The study-level report row (series NULL), created empty when missing."""
    rep = s.scalar(select(Report).where(Report.study_id == int(study_id), Report.series_id.is_(None)))
    if rep is None:
        rep = Report(study_id=int(study_id), series_id=None, findings="", impression="", diagnosis="", author="",
                     history="", technique="", note="", finding="", diagnosis_code="", diagnosis_source="",
                     source="")
        s.add(rep)
        s.flush()
    return rep


class LabelsMixin:
    """Setting and reading labels with provenance.

    Mixed into :class:`~.store.CaseStore`; sessions come from :class:`~.sessions.StoreSessions`.
    """

    def study_ids_for(self, key: str) -> list[int]:
        """Visible studies a user's key names: a Study Instance UID, else an Accession Number."""
        key = key.strip()
        with self._read() as s:
            ids = list(s.scalars(select(Study.id).where(Study.study_uid == key, Study.deleted.is_(False))))
            if not ids:
                ids = list(s.scalars(select(Study.id).where(Study.accession_number == key,
                                                            Study.deleted.is_(False))))
        return ids

    def set_diagnosis(self, study_id: int, diagnosis: str, *, source: str = "reader", actor: str = "",
                      code: str = "") -> bool:
        """Set (or with "" clear) a study's diagnosis; returns whether it changed. The vocabulary
        term is mapped at once, so filters and training labels see it immediately."""
        _check_source(source)
        self.get_study(study_id)
        diagnosis = " ".join(diagnosis.split())
        with self._write() as s:
            rep = study_report_row(s, study_id)
            if rep.diagnosis == diagnosis and rep.diagnosis_code == code:
                return False
            previous = rep.diagnosis
            rep.diagnosis, rep.diagnosis_code = diagnosis, code
            rep.diagnosis_source = ("coded" if code else source) if diagnosis else ""
            rep.finding = self._matcher(s).term_for(diagnosis, code) if diagnosis else ""
            rep.updated = utcnow()
            log_label(s, study_id, "diagnosis", "set", diagnosis, previous, source, actor)
        return True

    def set_note(self, study_id: int, note: str, *, source: str = "reader", actor: str = "") -> bool:
        _check_source(source)
        self.get_study(study_id)
        note = note.strip()
        with self._write() as s:
            rep = study_report_row(s, study_id)
            if rep.note == note:
                return False
            previous, rep.note = rep.note, note
            rep.updated = utcnow()
            log_label(s, study_id, "note", "set", note, previous, source, actor)
        return True

    def tag_study(self, study_id: int, name: str, *, source: str = "reader", actor: str = "") -> bool:
        """Add a tag (through the teaching store's own tag path) and record who added it."""
        _check_source(source)
        name = name.strip()
        with self._read() as s:
            had = s.scalar(select(StudyTag.study_id).join(Tag, Tag.id == StudyTag.tag_id)
                           .where(StudyTag.study_id == int(study_id), Tag.name == name)) is not None
        self.add_tag(study_id, name)
        if had:
            return False
        with self._write() as s:
            log_label(s, study_id, "tag", "add", name, "", source, actor)
        return True

    def untag_study(self, study_id: int, name: str, *, source: str = "reader", actor: str = "") -> bool:
        _check_source(source)
        self.get_study(study_id)
        if not self.remove_tag(study_id, name):
            return False
        with self._write() as s:
            log_label(s, study_id, "tag", "remove", name.strip(), name.strip(), source, actor)
        return True

    def label_history(self, study_id: int) -> list[LabelEventRecord]:
        """Every label change of a study, oldest first."""
        with self._read() as s:
            rows = s.scalars(select(LabelEvent).where(LabelEvent.study_id == int(study_id))
                             .order_by(LabelEvent.created, LabelEvent.id)).all()
        return [LabelEventRecord(r.study_id, r.kind, r.action, r.value, r.previous, r.source, r.actor, r.created)
                for r in rows]

    def study_labels(self, study_id: int) -> StudyLabels:
        """The study's current diagnosis, note and tags, each with its latest event."""
        st = self.get_study(study_id)
        with self._read() as s:
            rep = s.scalar(select(Report).where(Report.study_id == int(study_id), Report.series_id.is_(None)))
        out = StudyLabels(study_id=int(study_id), tags=list(st.tags))
        if rep is not None:
            out.diagnosis, out.finding, out.diagnosis_code = rep.diagnosis, rep.finding, rep.diagnosis_code
            out.diagnosis_source, out.note = rep.diagnosis_source, rep.note
        for ev in self.label_history(study_id):
            key = ev.kind if ev.kind != "tag" else f"tag:{ev.value}"
            out.provenance[key] = ev
        return out
