"""Imported report versions: storing, linking to studies, amendments, and the study's report row.

Reports arrive before, with or after their images, from several systems, and are amended. Each
received version is a :class:`~.models.ReportDocument`; per report (``report_key``) one version is
current. The current versions linked to a study are written into the study's report row, which
the browser, the result cards, the FTS5 index, the filters and the training labels all read. A
reader's own diagnosis (source "reader") is never overwritten by an import.

Linking tries, in order: Accession Number, Study Instance UID, then patient ID + study date +
modality (the weaker link: one patient can have two studies of a modality on a day). Unmatched
versions wait and are linked by :meth:`link_pending_reports`, which ingest calls after storing.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, true
from sqlalchemy.orm import Session

from ..errors import QueryError
from .labels import log_label, study_report_row
from .models import Patient, Report, ReportDocument, Series, Study, utcnow
from .report_records import REPORT_STATUSES, ImportOutcome, ReportDocumentIn, ReportDocumentRecord

_STATUS_RANK = {"preliminary": 0, "final": 1, "corrected": 2, "cancelled": 3}
_STRENGTH = {"accession": 3, "study_uid": 2, "patient_date_modality": 1, "": 0}


def _record(d: ReportDocument) -> ReportDocumentRecord:
    return ReportDocumentRecord(
        d.id, d.report_key, d.source_kind, d.source_path, d.source_ref, d.status, d.observed, d.accession_number,
        d.study_uid, d.patient_id, d.study_date, d.modality, d.author, d.history, d.technique, d.findings,
        d.impression, d.diagnosis, d.diagnosis_code, d.diagnosis_source, d.study_id, d.link_method, d.is_current,
        d.superseded_by, d.imported, patient_issuer=d.patient_issuer)


def _issuer_allows(issuer: str) -> Any:
    """The patients a report naming ``issuer`` may belong to: that issuer's, or those whose header
    named none (one hospital's MRN 100 is not another's); a report naming none matches any."""
    issuer = (issuer or "").strip()
    if not issuer:
        return true()
    return or_(Patient.issuer == issuer, Patient.issuer == "")


def _newer(a: ReportDocument, b: ReportDocument) -> bool:
    """Whether version ``a`` supersedes ``b``: a later report time, or at the same (or an unknown)
    time a status further along (preliminary < final < corrected < cancelled)."""
    ta, tb = a.observed or datetime.min, b.observed or datetime.min
    if ta != tb and a.observed is not None and b.observed is not None:
        return ta > tb
    if _STATUS_RANK.get(a.status, 1) != _STATUS_RANK.get(b.status, 1):
        return _STATUS_RANK.get(a.status, 1) > _STATUS_RANK.get(b.status, 1)
    return ta >= tb


class ReportDocumentsMixin:
    """Report versions in, links out.

    Mixed into :class:`~.store.CaseStore`; sessions come from :class:`~.sessions.StoreSessions`.
    """

    def add_report_document(self, doc: ReportDocumentIn) -> ImportOutcome:
        """Store one parsed report version in one transaction, link it and refresh its study.

        The same content again is a no-op ("duplicate"); a newer version of the same report
        replaces the current one, which stays as history ("amended"); an older one arriving late is
        kept as history only ("older").
        """
        if doc.status not in REPORT_STATUSES:
            raise QueryError(f"{doc.source_path}: report status {doc.status!r} is not one of "
                             f"{', '.join(REPORT_STATUSES)}")
        if not doc.content_sha256:
            raise QueryError(f"{doc.source_path}: a report needs its content hash")
        with self._write() as s:
            old = s.scalar(select(ReportDocument).where(ReportDocument.content_sha256 == doc.content_sha256))
            if old is not None:
                return ImportOutcome("duplicate", old.id, old.study_id, old.link_method)
            key = doc.report_key()
            row = ReportDocument(
                content_sha256=doc.content_sha256, report_key=key, source_kind=doc.source_kind,
                source_path=doc.source_path, source_ref=doc.source_ref, status=doc.status, observed=doc.observed,
                accession_number=doc.accession_number.strip(), study_uid=doc.study_uid.strip(),
                patient_id=doc.patient_id.strip(), patient_issuer=doc.patient_issuer.strip(),
                study_date=doc.study_date, modality=doc.modality.strip().upper(),
                author=doc.author, history=doc.history, technique=doc.technique, findings=doc.findings,
                impression=doc.impression, diagnosis=doc.diagnosis, diagnosis_code=doc.diagnosis_code,
                diagnosis_source=doc.diagnosis_source, study_id=None, link_method="", is_current=True,
                superseded_by=None, imported=utcnow())
            s.add(row)
            s.flush()
            current = s.scalars(select(ReportDocument).where(ReportDocument.report_key == key,
                                                             ReportDocument.is_current.is_(True),
                                                             ReportDocument.id != row.id)).all()
            status = "new"
            touched: set[int] = set()
            for prev in current:
                if _newer(row, prev):
                    prev.is_current, prev.superseded_by = False, row.id
                    status = "amended"
                    if prev.study_id is not None:
                        touched.add(prev.study_id)
                else:
                    row.is_current, row.superseded_by = False, prev.id
                    status = "older"
            study_id, method = self._find_study(s, row)
            if study_id is None and current:  # an amendment that names less than its first version
                best = max(current, key=lambda d: _STRENGTH.get(d.link_method, 0))
                study_id, method = best.study_id, best.link_method
            row.study_id, row.link_method = study_id, method if study_id is not None else ""
            if study_id is not None:
                touched.add(study_id)
            s.flush()
            for st in touched:
                self._refresh_study_report(s, st, actor=doc.source_path)
            return ImportOutcome(status, row.id, row.study_id, row.link_method)

    def _find_study(self, s: Session, d: ReportDocument) -> tuple[int | None, str]:
        """The study a report version belongs to, and by which key (see the module docstring)."""
        live = Study.deleted.is_(False)
        if d.accession_number:
            # never another hospital's study that happens to share the accession
            cond = [Study.accession_number == d.accession_number, live, _issuer_allows(d.patient_issuer)]
            ids = list(s.scalars(select(Study.id).join(Patient, Patient.id == Study.patient_id).where(*cond)))
            if len(ids) > 1 and d.study_uid:
                ids = [i for i in ids if s.get(Study, i).study_uid == d.study_uid]
            if len(ids) > 1 and d.patient_id:
                ids = list(s.scalars(select(Study.id).join(Patient, Patient.id == Study.patient_id)
                                     .where(*cond, Patient.patient_id == d.patient_id)))
            if len(ids) == 1:
                return ids[0], "accession"
        if d.study_uid:
            sid = s.scalar(select(Study.id).where(Study.study_uid == d.study_uid, live))
            if sid is not None:
                return sid, "study_uid"
        if d.patient_id and d.study_date is not None:
            stmt = (select(Study.id).join(Patient, Patient.id == Study.patient_id)
                    .where(Patient.patient_id == d.patient_id, _issuer_allows(d.patient_issuer),
                           Study.study_date == d.study_date, live))
            if d.modality:
                stmt = stmt.where(Study.id.in_(select(Series.study_id).where(Series.modality == d.modality)))
            ids = list(s.scalars(stmt.distinct()))
            if len(ids) == 1:
                return ids[0], "patient_date_modality"
        return None, ""

    def link_pending_reports(self) -> int:
        """Link report versions that have no study yet, or only the weaker link, to studies that
        have arrived since; returns how many were linked (or moved to a stronger link)."""
        n = 0
        with self._write() as s:
            docs = s.scalars(select(ReportDocument).where(
                ReportDocument.is_current.is_(True),
                or_(ReportDocument.study_id.is_(None), ReportDocument.link_method == "patient_date_modality"))).all()
            touched: set[int] = set()
            for d in docs:
                sid, method = self._find_study(s, d)
                if sid is None or (sid == d.study_id and method == d.link_method):
                    continue
                if d.study_id is not None and _STRENGTH[method] <= _STRENGTH.get(d.link_method, 0):
                    continue
                if d.study_id is not None:
                    touched.add(d.study_id)
                d.study_id, d.link_method = sid, method
                touched.add(sid)
                n += 1
            s.flush()
            for st in touched:
                self._refresh_study_report(s, st, actor="link")
        return n

    def link_report(self, document_id: int, study_id: int) -> None:
        """Link a report version (and its report's other versions) to a study by hand."""
        self.get_study(study_id)
        with self._write() as s:
            d = s.get(ReportDocument, int(document_id))
            if d is None:
                raise QueryError(f"report {document_id} is not in the library")
            touched = {int(study_id)}
            for v in s.scalars(select(ReportDocument).where(ReportDocument.report_key == d.report_key)):
                if v.study_id is not None:
                    touched.add(v.study_id)
                v.study_id, v.link_method = int(study_id), "manual"
            s.flush()
            for st in touched:
                self._refresh_study_report(s, st, actor="manual link")

    def _refresh_study_report(self, s: Session, study_id: int, *, actor: str) -> None:
        """Write the study's current linked versions into its report row (sections joined in
        report-time order); a reader's diagnosis and note stay."""
        docs = s.scalars(select(ReportDocument).where(ReportDocument.study_id == int(study_id),
                                                      ReportDocument.is_current.is_(True),
                                                      ReportDocument.status != "cancelled")
                         .order_by(ReportDocument.observed, ReportDocument.id)).all()
        rep = s.scalar(select(Report).where(Report.study_id == int(study_id), Report.series_id.is_(None)))
        if not docs and (rep is None or rep.source != "import"):
            return  # nothing imported here: the report is someone else's
        rep = rep if rep is not None else study_report_row(s, study_id)

        def joined(attr: str) -> str:
            return "\n\n".join(t for t in dict.fromkeys(getattr(d, attr).strip() for d in docs) if t)

        rep.history, rep.technique = joined("history"), joined("technique")
        rep.findings, rep.impression = joined("findings"), joined("impression")
        rep.author = "; ".join(dict.fromkeys(d.author for d in docs if d.author))
        rep.source = "import"
        rep.document_id = docs[-1].id if docs else None
        if rep.diagnosis_source != "reader":
            coded = [d for d in docs if d.diagnosis and d.diagnosis_code]
            pick = (coded or [d for d in docs if d.diagnosis] or [None])[-1]
            dx, code = (pick.diagnosis, pick.diagnosis_code) if pick is not None else ("", "")
            src = (pick.diagnosis_source or ("coded" if code else "import")) if pick is not None else ""
            if dx != rep.diagnosis or code != rep.diagnosis_code:
                log_label(s, study_id, "diagnosis", "set", dx, rep.diagnosis, "import", actor)
            rep.diagnosis, rep.diagnosis_code, rep.diagnosis_source = dx, code, src if dx else ""
            rep.finding = self._matcher(s).term_for(dx, code) if dx else ""
        rep.updated = utcnow()

    def report_documents(self, *, study_id: int | None = None, unmatched: bool = False,
                         report_key: str | None = None, current_only: bool = False) -> list[ReportDocumentRecord]:
        """Stored report versions: of a study (its history, newest first), unmatched ones, or all."""
        cond: list[Any] = []
        if study_id is not None:
            cond.append(ReportDocument.study_id == int(study_id))
        if unmatched:
            cond += [ReportDocument.study_id.is_(None), ReportDocument.is_current.is_(True)]
        if report_key is not None:
            cond.append(ReportDocument.report_key == report_key)
        if current_only:
            cond.append(ReportDocument.is_current.is_(True))
        with self._read() as s:
            rows = s.scalars(select(ReportDocument).where(*cond)
                             .order_by(ReportDocument.report_key, ReportDocument.imported.desc(),
                                       ReportDocument.id.desc())).all()
        return [_record(d) for d in rows]

    def report_document_counts(self) -> dict[str, int]:
        """Counts for ``casebook reports list``: current versions linked strongly, weakly, not."""
        with self._read() as s:
            rows = s.execute(select(ReportDocument.link_method, func.count(ReportDocument.id))
                             .where(ReportDocument.is_current.is_(True)).group_by(ReportDocument.link_method)).all()
            history = s.scalar(select(func.count(ReportDocument.id)).where(ReportDocument.is_current.is_(False)))
        by = dict(rows)
        return {"linked": sum(v for k, v in by.items() if k in ("accession", "study_uid", "manual")),
                "weak": by.get("patient_date_modality", 0), "unmatched": by.get("", 0), "history": int(history or 0)}

