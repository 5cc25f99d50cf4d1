"""Reports and full-text search over them (SQLite FTS5, ranked by bm25).

Deleted cases never come back from text search; user words are made safe FTS5 syntax unless the
caller asks for raw FTS5.
"""
from __future__ import annotations

from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError

from ..errors import QueryError
from .models import Report, Series, Study, utcnow
from .labels import log_label, study_report_row
from .queries import fts_query
from .records import Report as ReportRecord
from .records import TextHit


class ReportsMixin:
    """Writing and reading reports, diagnoses, text search.

    Mixed into :class:`~.store.CaseStore`; sessions come from :class:`~.sessions.StoreSessions`.
    """

    def set_report(self, study_id: int, *, findings: str = "", impression: str = "", diagnosis: str = "",
                   author: str = "", series_id: int | None = None, history: str = "", technique: str = "",
                   diagnosis_code: str = "", diagnosis_source: str = "", source: str = "import",
                   actor: str = "") -> int:
        """Create or replace the report of a study (or of one of its series); returns its id.

        The reader's note is kept; a changed diagnosis is mapped to the vocabulary and logged with
        ``source``/``actor`` (who or what set it).
        """
        self.get_study(study_id)
        if series_id is not None and self.get_series(series_id).study_id != int(study_id):
            raise QueryError(f"series {series_id} does not belong to study {study_id}")
        with self._write() as s:
            cond = Report.series_id.is_(None) if series_id is None else Report.series_id == int(series_id)
            rep = s.scalar(select(Report).where(Report.study_id == int(study_id), cond))
            if rep is None:
                rep = study_report_row(s, study_id) if series_id is None else None
            if rep is None:
                rep = Report(study_id=int(study_id), series_id=series_id, note="")
                s.add(rep)
            previous = rep.diagnosis or ""
            rep.findings, rep.impression, rep.diagnosis, rep.author = findings, impression, diagnosis, author
            rep.history, rep.technique, rep.diagnosis_code = history, technique, diagnosis_code
            rep.diagnosis_source = (diagnosis_source or ("coded" if diagnosis_code else source)) if diagnosis else ""
            rep.finding = self._matcher(s).term_for(diagnosis, diagnosis_code) if diagnosis else ""
            rep.source = source
            rep.updated = utcnow()
            s.flush()
            if diagnosis != previous and series_id is None:
                log_label(s, study_id, "diagnosis", "set", diagnosis, previous, source, actor)
            return rep.id

    def get_report(self, study_id: int, series_id: int | None = None) -> ReportRecord | None:
        with self._read() as s:
            cond = Report.series_id.is_(None) if series_id is None else Report.series_id == int(series_id)
            rep = s.scalar(select(Report).where(Report.study_id == int(study_id), cond))
        if rep is None:
            return None
        return ReportRecord(rep.study_id, rep.series_id, rep.findings, rep.impression, rep.diagnosis, rep.author,
                            rep.updated, history=rep.history, technique=rep.technique, note=rep.note,
                            finding=rep.finding, diagnosis_code=rep.diagnosis_code,
                            diagnosis_source=rep.diagnosis_source, source=rep.source, document_id=rep.document_id)

    def diagnoses(self) -> dict[int, str]:
        """Diagnosis per visible series (its own report's, else its study's), as its vocabulary term
        when it maps to one: training labels and calibration count synonyms as one finding."""
        with self._read() as s:
            label = func.coalesce(func.nullif(Report.finding, ""), Report.diagnosis)
            study_diag = dict(s.execute(select(Report.study_id, label)
                                        .where(Report.series_id.is_(None), Report.diagnosis != "")).all())
            series_diag = dict(s.execute(select(Report.series_id, label)
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
