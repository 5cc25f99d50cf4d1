"""Wiring a search service for a library: its case store, the model's index (caught up or
rebuilt), the store catalog and the query encoder. The service itself knows none of these."""
from __future__ import annotations

from typing import Any

from casebook.index.errors import QueryError
from casebook.index.vector_index import VectorIndex

from .search_service import SearchService
from .search_types import QueryEncoder, check_encoder_matches
from .store_catalog import StoreCatalog


def open_store_search(settings: Any, model: str | None = None, *, progress: Any = None,
                      cancel: Any = None, encoder: QueryEncoder | None = None,
                      auto_encoder: bool = True) -> SearchService:
    """Open the library's case store and the index of ``model`` (default: the settings' model).

    Without an explicit ``encoder``, the library model's file is loaded (when present and
    identical to the one that embedded the library) so that ROI and folder queries work.

    The index is checked against the store's embeddings and caught up or rebuilt as needed.
    """
    from casebook.index.case_store.store import CaseStore

    db = settings.database_path
    if not db.exists():
        raise QueryError(f"{db}: no case store yet (run `casebook ingest` first)")
    store = CaseStore.open(db, create=False)
    want = model or settings.model
    try:
        rec = store.get_model(want)
    except QueryError:
        known = ", ".join(m.key for m in store.list_models()) or "none"
        why = f"model {want!r} has no embeddings in the library (registered: {known}); run `casebook embed`"
        if model is not None:  # the caller asked for this model by name
            store.close()
            raise QueryError(why) from None
        # the settings' model is not embedded (yet): box and findings queries need no slice
        # vectors (they search the region index), so they still work; slice and series queries
        # say why they cannot
        service = SearchService(StoreCatalog(store, -1), None, settings=settings.search,
                                index_dir=settings.index_dir, missing_index=why)
        service.encoder = encoder  # a folder query then fails for the real reason (no index), not "no encoder"
        return service
    index = VectorIndex.open(settings.index_dir, rec.key, rec.dim, store.embedding_source(rec.id),
                             progress=progress, cancel=cancel)
    if encoder is not None:
        check_encoder_matches(encoder, rec.key, rec.dim)
    if encoder is None and auto_encoder:
        from .query_encoder import query_encoder_for

        encoder = query_encoder_for(settings, store, rec)
    service = SearchService(StoreCatalog(store, rec.id), index, settings=settings.search)
    service.encoder = encoder
    return service

