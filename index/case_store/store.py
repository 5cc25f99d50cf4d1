"""The case store: a typed repository over one SQLite file, and its one front door :class:`CaseStore`.

:class:`CaseStore` is assembled from one mixin per job, each in a module named for it:
:mod:`.sessions` (sessions and write serialisation), :mod:`.ingest` (stacks in, hiding, purging),
:mod:`.queries` (filters to SQL), :mod:`.listing` (summaries, priors, thumbnails),
:mod:`.reports` (reports and FTS5), :mod:`.teaching` (tags, collections, teaching fields) and
:mod:`.embeddings` (models, embeddings, the index's embedding source). Listings show complete,
non-deleted series only; the statistics live here because they span every part.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select, text

from . import migrate as _migrate
from .embeddings import EmbeddingSet, EmbeddingsMixin, StoreEmbeddingSource
from .ingest import IngestMixin, age_years, parse_da
from .labels import LabelsMixin
from .listing import ListingMixin
from .models import Collection, Embedding, Instance, Model, Report, Series, SourceFile, Study, Tag
from .queries import QueryMixin, fts_query
from .records import StoreStats
from .registrations import RegistrationsMixin
from .remote import RemoteMixin
from .removal import RemovalMixin
from .report_documents import ReportDocumentsMixin
from .reports import ReportsMixin
from .sessions import StoreSessions
from .teaching import TeachingMixin
from .teaching_cases import TeachingCasesMixin
from .vocabulary import VocabularyMixin


class CaseStore(StoreSessions, IngestMixin, QueryMixin, ListingMixin, ReportsMixin, TeachingMixin,
                EmbeddingsMixin, RemoteMixin, ReportDocumentsMixin, LabelsMixin, VocabularyMixin, RemovalMixin,
                RegistrationsMixin, TeachingCasesMixin):
    """Patients, studies, series, reports, tags, teaching fields and embeddings in one SQLite file."""

    def stats(self) -> StoreStats:
        """Counts and sizes for ``casebook doctor`` and the library panel (visible cases only)."""
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


__all__ = ["CaseStore", "EmbeddingSet", "StoreEmbeddingSource", "parse_da", "age_years", "fts_query"]
