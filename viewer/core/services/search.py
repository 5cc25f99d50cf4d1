"""Similar-case search: "what past cases look like this one?" (how it ranks:
:mod:`.search_service`).

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
