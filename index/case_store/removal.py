"""Removing a study from the library: its rows, images, embeddings, reports and labels.

Deleting is for a case that must not be in the library (wrong patient, consent withdrawn, a test
study): unlike hiding (``mark_deleted``), nothing of it stays in the store. Its files on disk are
not touched here; they are remembered as removed, so the nightly re-ingest of the same archive
does not bring the study back (``casebook ingest --rescan`` does, on purpose).
"""
from __future__ import annotations

from sqlalchemy import delete, select

from .models import Instance, Patient, ReportDocument, Series, SourceFile, Study, utcnow
from .report_records import RemovedStudy
from .sessions import chunks

REMOVED_REASON = "removed from the library (casebook study delete); `casebook ingest --rescan` adds it again"


class RemovalMixin:
    """Deleting whole studies.

    Mixed into :class:`~.store.CaseStore`; sessions come from :class:`~.sessions.StoreSessions`.
    """

    def delete_study(self, study_id: int) -> RemovedStudy:
        """Delete a study and everything stored about it in one transaction; returns its series
        ids (for the vector indexes) and the files its images were read from."""
        self.get_study(study_id, include_deleted=True)
        with self._write() as s:
            series_ids = list(s.scalars(select(Series.id).where(Series.study_id == int(study_id))))
            files: set[str] = set()
            for chunk in chunks(series_ids):
                files.update(s.scalars(select(Instance.path).where(Instance.series_id.in_(chunk))))
            st = s.get(Study, int(study_id))
            assert st is not None
            patient_id = st.patient_id
            s.execute(delete(ReportDocument).where(ReportDocument.study_id == int(study_id)))
            s.execute(delete(Study).where(Study.id == int(study_id)))  # the database cascades the rest
            now = utcnow()
            for chunk in chunks(sorted(files)):
                for sf in s.scalars(select(SourceFile).where(SourceFile.path.in_(chunk))):
                    sf.status, sf.reason, sf.series_id, sf.seen = "skipped", REMOVED_REASON, None, now
            if s.scalar(select(Study.id).where(Study.patient_id == patient_id).limit(1)) is None:
                s.execute(delete(Patient).where(Patient.id == patient_id))
        return RemovedStudy(int(study_id), series_ids, sorted(files))
