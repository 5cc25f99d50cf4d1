"""Import: ingest -> embed -> index, the way a reader means "add these images to my library".

Ingest alone stores the series, but *Find similar* needs their vectors in the library's index;
``casebook demo`` and the window's *Import…* both run this pipeline, so a series imported from
the window can be searched at once. Each step is resumable (ingest skips unchanged files, embed
does the series still lacking vectors, the index catches up with the store), so a cancel or a
failed step never leaves the library inconsistent: the next import or ``casebook embed`` goes on.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from casebook.common.errors import Cancelled

from ..config import Settings
from ..errors import CasebookError
from ..progress import ProgressCallback, SupportsCancel, check_cancel, no_progress
from .ingest import IngestSummary, SkippedFile

log = logging.getLogger(__name__)

PHASE_EMBED = "embedding series"
PHASE_INDEX = "updating the search index"
PHASE_REGIONS = "finding regions"


@dataclass
class IndexReport:
    """What embedding and indexing did after the ingest (for the import's closing summary)."""

    model: str = ""
    provider: str = ""
    embedded: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)  # (series id, why)
    remaining: int = 0  # series still without vectors (e.g. cancelled)
    vectors: int = 0  # in the index after the import
    problem: str = ""  # why search will not find the new series yet ("" when it will)
    regions: Any = None  # RegionEmbedReport: the findings box search matches against (None: not asked)

    @property
    def searchable(self) -> bool:
        return not self.problem and not self.remaining

    def text(self) -> str:
        if self.problem:
            return f"not indexed for search: {self.problem}"
        out = f"{self.embedded} series embedded ({self.model} on {self.provider}); index {self.vectors} vectors"
        if self.failed:
            out += f"; {len(self.failed)} could not be embedded"
        if self.remaining:
            out += f"; {self.remaining} still to embed (`casebook embed`)"
        if self.regions is not None:
            out += f"; {self.regions.text()}"
        return out


@dataclass
class ImportReport:
    """An import's outcome: the ingest summary, then embedding and indexing."""

    ingest: IngestSummary
    index: IndexReport

    @property
    def skipped(self) -> list[SkippedFile]:
        return self.ingest.skipped

    def headline(self, what: str) -> str:
        s = self.ingest
        parts = [f"{s.series_stored} series stored"]
        if s.series_updated:
            parts.append(f"{s.series_updated} updated")
        if s.files_unchanged:
            parts.append(f"{s.files_unchanged} files already in the library")
        if s.files_skipped:
            parts.append(f"{s.files_skipped} files skipped")
        return f"Imported {what}: " + ", ".join(parts) + "; " + self.index.text()


def embed_and_index(store: Any, settings: Settings, *, progress: ProgressCallback | None = None,
                    cancel: SupportsCancel | None = None, encoder: Any = None, regions: bool = True) -> IndexReport:
    """Embed every series of ``store`` lacking vectors of the settings' model, then bring the
    model's on-disk index up to date, so the next search opens it at once.

    A model that cannot be loaded is not an error of the import (the images are stored): it is
    reported in :attr:`IndexReport.problem`. :class:`Cancelled` propagates. With ``regions``, the
    findings that box queries match against are detected and indexed too (no encoder needed).
    """
    progress = progress or no_progress
    rep = _embed_vectors(store, settings, progress, cancel, encoder)
    if regions:
        from .regions import embed_and_index_regions

        rep.regions = embed_and_index_regions(store, settings.index_dir, cancel=cancel,
                                              progress=lambda d, t, m="": progress(d, t, PHASE_REGIONS))
        for sid, why in rep.regions.failed:
            rep.failed.append((sid, f"findings: {why}"))
    return rep


def _embed_vectors(store: Any, settings: Settings, progress: ProgressCallback, cancel: SupportsCancel | None,
                   encoder: Any) -> IndexReport:
    rep = IndexReport()
    try:
        from .embedding import embed_missing, open_encoder

        encoder = encoder or open_encoder(settings)
    except (CasebookError, ImportError, OSError, ValueError) as exc:
        log.warning("import: no encoder, series stored without vectors: %s", type(exc).__name__)
        rep.problem = f"the model {settings.model!r} cannot be loaded ({exc}); run `casebook embed` once it can"
        return rep
    er = embed_missing(store, encoder, progress=lambda d, t, m="": progress(d, t, PHASE_EMBED), cancel=cancel)
    rep.model, rep.provider, rep.embedded = er.model, er.provider, er.done
    rep.failed, rep.remaining = list(er.failed), er.remaining
    check_cancel(cancel)
    update_series_index(store, settings, encoder.provenance, rep, progress=progress, cancel=cancel)
    return rep


def update_series_index(store: Any, settings: Settings, prov: Any, rep: IndexReport, *,
                        progress: ProgressCallback | None = None, cancel: SupportsCancel | None = None) -> None:
    """Bring the on-disk index of the model ``prov`` up to date with the store, noting its size
    (or why it was not updated) in ``rep``."""
    from casebook.index.vector_index import VectorIndex

    progress = progress or no_progress
    try:
        rec = next(m for m in store.list_models() if (m.name, m.version, m.sha256) == (prov.name, prov.version, prov.sha256))
        progress(0, 0, PHASE_INDEX)
        index = VectorIndex.open(settings.index_dir, rec.key, rec.dim, store.embedding_source(rec.id),
                                 progress=lambda d, t, m="": progress(d, t, PHASE_INDEX), cancel=cancel)
        try:
            rep.vectors = len(index)
        finally:
            index.close()
    except Cancelled:
        raise
    except (CasebookError, OSError, StopIteration) as exc:  # search rebuilds the index when it opens
        log.warning("import: vector index not updated now (search catches up when it opens): %s", type(exc).__name__)
        rep.problem = f"the search index was not updated ({exc}); the next search catches it up"


def import_paths(settings: Settings, paths: Sequence[str | Path], *, progress: ProgressCallback | None = None,
                 cancel: SupportsCancel | None = None, encoder: Any = None, embed: bool = True) -> ImportReport:
    """Ingest ``paths`` into the library, then embed and index what is new (see the module
    docstring). A cancel during the ingest ends as :class:`Cancelled` naming what was stored."""
    from .ingest import ingest
    from .library import open_store

    progress = progress or no_progress
    store = open_store(settings)
    try:
        summary = ingest(list(paths), store, progress=progress, cancel=cancel, workers=settings.ingest_workers)
        if summary.cancelled:
            raise Cancelled(f"import cancelled after {summary.series_stored} series")
        index = embed_and_index(store, settings, progress=progress, cancel=cancel, encoder=encoder) if embed \
            else IndexReport(problem="embedding was not asked for")
    finally:
        store.close()
    return ImportReport(summary, index)


__all__ = ["ImportReport", "IndexReport", "PHASE_EMBED", "PHASE_INDEX", "PHASE_REGIONS", "embed_and_index", "import_paths",
           "update_series_index"]
