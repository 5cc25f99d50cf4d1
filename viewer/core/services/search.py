"""Similar-case search: "what past cases look like this one?"

A query (a stored series, a DICOM folder not in the store, an ROI box, one slice, free text, or
text + image) becomes a small set of slice vectors and/or an FTS5 text query. Metadata filters
are resolved in SQLite first (so a narrow filter turns into a small candidate label set that the
vector index searches exactly); the vector index finds near slices; series are then ranked by
late interaction over all their slices (:mod:`casebook.index.retrieval`), which also yields the
"why similar" pair (query slice, matched slice). Text and image rankings are fused by reciprocal
rank. Relevance feedback moves the query vectors (Rocchio) using stored vectors only.

The service talks to the store through :class:`SearchCatalog` and to the encoder through
:class:`QueryEncoder`, so it is testable on a real store and usable from the CLI and the GUI.

This module is the public face of search: the CLI, the GUI and the tests import from here. The
work is split by job: :mod:`.search_types` (query, filters, results, protocols),
:mod:`.search_service` (the service), :mod:`.store_catalog` (the case store as a catalog),
:mod:`.search_open` (wiring a service for a library), :mod:`.search_form` (a filter form's text
into filters), :mod:`.search_audit` (the retrieval audit).
"""
from __future__ import annotations

from .search_audit import AuditReport, audit, audit_library
from .search_form import SearchForm
from .search_open import open_store_search
from .search_service import SearchService, hits_table
from .search_types import (QueryEncoder, QueryVectors, SearchCatalog, SearchFilters, SearchHit, SearchResponse,
                           SeriesInfo, check_encoder_matches)
from .store_catalog import StoreCatalog

__all__ = ["AuditReport", "QueryEncoder", "QueryVectors", "SearchCatalog", "SearchFilters", "SearchForm",
           "SearchHit", "SearchResponse", "SearchService", "SeriesInfo", "StoreCatalog", "audit", "audit_library",
           "check_encoder_matches", "hits_table", "open_store_search"]
