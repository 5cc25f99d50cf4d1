"""The similar-case search service: query builders, ranking, text fusion, relevance feedback.

A query (a stored series, a DICOM folder not in the store, an ROI box, one slice, free text, or
text + image) becomes a small set of slice vectors and/or an FTS5 text query. Metadata filters
are resolved in SQLite first (so a narrow filter turns into a small candidate label set that the
vector index searches exactly); the vector index finds near slices; series are then ranked by
late interaction over all their slices (:mod:`casebook.index.retrieval`), which also yields the
"why similar" pair (query slice, matched slice). Text and image rankings are fused by reciprocal
rank. Relevance feedback moves the query vectors (Rocchio) using stored vectors only.

The service talks to the store through :class:`SearchCatalog` and to the encoder through
:class:`QueryEncoder`, so it is testable on a real store and usable from the CLI and the GUI.
"""
from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Hashable, Sequence

import numpy as np

from casebook.index.errors import QueryError
from casebook.index.retrieval import SeriesMatch, rank_series, reciprocal_rank_fusion, rocchio
from casebook.index.vector_index import VectorIndex, normalise

from ..config import SearchSettings
from .search_types import (QueryEncoder, QueryVectors, RegionSearchHit, SearchCatalog, SearchFilters, SearchHit,
                           SearchResponse, SeriesInfo, check_encoder_matches)

log = logging.getLogger(__name__)


class _NotInIndex(QueryError):
    """A stored series whose current embeddings the open index does not hold (yet)."""


class SearchService:
    """Similar-case search over one model's vector index and the case store."""

    def __init__(self, catalog: SearchCatalog, index: VectorIndex | None, encoder: QueryEncoder | None = None,
                 settings: SearchSettings | None = None, rrf_k: int = 60, *, index_dir: Path | None = None,
                 missing_index: str | None = None) -> None:
        """``index`` may be None when the library has no slice embeddings for the model: box and
        findings queries (region index, under ``index_dir``) and text queries still work, and
        every query that needs slice vectors raises ``missing_index`` as its reason."""
        if index is None and index_dir is None:
            raise ValueError("a search service without a vector index needs the index folder")
        self.catalog = catalog
        self.index = index
        self.index_dir = Path(index_dir) if index_dir is not None else index.directory  # type: ignore[union-attr]
        self.missing_index = missing_index or "the library has no slice embeddings; run `casebook embed`"
        self.encoder = encoder
        self.settings = settings or SearchSettings()
        self.rrf_k = rrf_k
        self._regions: Any = None  # RegionSearchService, opened on the first box query
        if encoder is not None and index is not None:
            check_encoder_matches(encoder, index.model_key, index.dim)

    def _index(self) -> VectorIndex:
        """The slice/series vector index, or the reason this library has none for the model."""
        if self.index is None:
            raise QueryError(self.missing_index)
        return self.index

    def default_filters(self) -> SearchFilters:
        return SearchFilters(exclude_same_patient=self.settings.exclude_same_patient,
                             exclude_same_study=self.settings.exclude_same_study,
                             same_anatomy=self.settings.same_anatomy)

    # ---------------------------------------------------------------- query builders
    def query_from_series(self, series_id: Hashable, slices: Sequence[int] | None = None) -> QueryVectors:
        """Query vectors of a stored series (optionally only some slices), from stored embeddings.

        When the series was re-embedded after this index was opened (a concurrent ``casebook
        embed``), the index is caught up with the store and the query read again.
        """
        self._index()
        for attempt in range(3):
            try:
                return self._query_from_series(series_id, slices)
            except _NotInIndex:
                source = getattr(self.catalog, "embedding_source", None)
                if source is None or attempt == 2:
                    break
                added, removed = self._index().sync(source())
                log.info("series query: index caught up with the store (%d added, %d removed)", added, removed)
        raise QueryError(f"series {series_id}: its embeddings are not in the index (deleted?)")

    def _query_from_series(self, series_id: Hashable, slices: Sequence[int] | None) -> QueryVectors:
        labels, slice_idx = self.catalog.series_embeddings(series_id)
        if len(labels) == 0:
            raise QueryError(f"series {series_id} has no embeddings for model {self.index.model_key!r}; "
                             "run `casebook embed` first")
        patient, study = self.catalog.series_keys(series_id)
        labels = np.asarray(labels, dtype=np.int64)
        order = np.argsort(slice_idx, kind="stable")
        labels, slice_idx = labels[order], [int(slice_idx[i]) for i in order]
        if slices is not None:
            want = set(int(s) for s in slices)
            keep = [i for i, s in enumerate(slice_idx) if s in want]
            if not keep:  # nearest embedded slice to each wanted one
                arr = np.asarray(slice_idx)
                keep = sorted({int(np.argmin(np.abs(arr - s))) for s in want})
            labels, slice_idx = labels[keep], [slice_idx[i] for i in keep]
        live = np.isin(labels, self.index.live_labels)
        if not live.any():
            raise _NotInIndex(series_id)
        labels, slice_idx = labels[live], [s for s, ok in zip(slice_idx, live) if ok]
        desc = f"series {series_id}" + (f" slices {','.join(map(str, sorted(set(slice_idx))))}" if slices else "")
        return QueryVectors(self.index.get_vectors(labels), slice_idx, desc, series_id, patient, study,
                            frozenset(int(l) for l in labels))

    def query_from_slice(self, series_id: Hashable, slice_index: int) -> QueryVectors:
        return self.query_from_series(series_id, [slice_index])

    def query_from_roi(self, series_id: Hashable, box: tuple[int, int, int, int, int, int]) -> QueryVectors:
        """An ROI box (k0, k1, j0, j1, i0, i1 in voxels) re-encoded by the model."""
        if self.encoder is None:
            raise QueryError("ROI search needs the encoder, which is not available")
        q = self.encoder.encode_roi(series_id, box)
        patient, study = self.catalog.series_keys(series_id)
        return replace(q, series_id=series_id, patient_key=patient, study_key=study)

    def query_from_folder(self, path: Path) -> QueryVectors:
        if self.encoder is None:
            raise QueryError("searching with a folder needs the encoder, which is not available")
        return self.encoder.encode_folder(Path(path))

    def query_from_vectors(self, vectors: np.ndarray, description: str = "vectors",
                           slice_indices: Sequence[int] | None = None) -> QueryVectors:
        v = normalise(vectors, self._index().dim)
        return QueryVectors(v, list(slice_indices) if slice_indices is not None else list(range(len(v))),
                            description)

    # ---------------------------------------------------------------- searching
    def search(self, query: QueryVectors | None = None, *, text: str | None = None,
               filters: SearchFilters | None = None, k: int | None = None) -> SearchResponse:
        """Image, text, or both (fused by reciprocal rank); empty results carry their reason."""
        start = time.perf_counter()
        filters = filters or self.default_filters()
        filters.validate()
        k = int(k or self.settings.top_k)
        if k <= 0:
            raise QueryError(f"k must be positive, not {k}")
        text = (text or "").strip() or None
        if query is None and text is None:
            raise QueryError("nothing to search for: give an image query, a text, or both")
        resp = SearchResponse([], query=query, text=text, filters=filters, k=k)
        exclude = self.catalog.series_to_exclude(
            query.patient_key if query else None, query.study_key if query else None, filters) if query else set()
        if query is not None and query.series_id is not None and (filters.exclude_same_patient or filters.exclude_same_study):
            exclude.add(query.series_id)

        image_rank: list[SeriesMatch] = []
        if query is not None:
            index = self._index()
            cand = self.catalog.labels_matching(filters)
            if cand is not None and len(cand) == 0:
                resp.reason = f"no case in the library matches the filters ({filters.describe()})"
                return self._finish(resp, start)
            image_rank, reason = rank_series(
                index, query.vectors, self.catalog.resolve_labels, self.catalog.series_labels,
                k=max(k, 3 * k if text else k), candidates=cand, exclude_series=exclude,
                exclude_labels=query.own_labels if (filters.exclude_same_patient or filters.exclude_same_study) else None)
            resp.method = image_rank[0].method if image_rank else ""
            if not image_rank and text is None:
                resp.reason = reason
                return self._finish(resp, start)
        text_rank: list[tuple[Hashable, str]] = []
        if text is not None:
            text_rank = [(s, snip) for s, snip in self.catalog.text_search(text, filters, limit=max(3 * k, 50))
                         if s not in exclude]
            if not text_rank and not image_rank:
                resp.reason = f"no report or diagnosis matches {text!r} ({filters.describe()})"
                return self._finish(resp, start)

        by_series = {m.series: m for m in image_rank}
        snippets = dict(text_rank)
        if query is not None and text is not None:
            fused = reciprocal_rank_fusion([[m.series for m in image_rank], [s for s, _ in text_rank]], k=self.rrf_k)
            order = [(s, sc) for s, sc in fused][:k]
            resp.method = (resp.method + "+fts5") if resp.method else "fts5"
        elif query is not None:
            order = [(m.series, m.score) for m in image_rank[:k]]
        else:
            n = len(text_rank)
            order = [(s, 1.0 - i / max(n, 1)) for i, (s, _) in enumerate(text_rank[:k])]
            resp.method = "fts5"
        infos = self.catalog.series_info([s for s, _ in order])
        min_score = self.settings.min_score
        for rank, (sid, score) in enumerate(order, start=1):
            m = by_series.get(sid)
            if query is not None and text is None and score < min_score:
                continue
            info = infos.get(sid) or SeriesInfo(series_id=sid)
            if sid in snippets and snippets[sid]:
                info.report_snippet = snippets[sid]
            via = "image+text" if (m is not None and sid in snippets) else ("image" if m is not None else "text")
            resp.hits.append(SearchHit(
                rank=len(resp.hits) + 1, series_id=sid, score=float(score),
                query_slice=(query.slice_indices[m.query_index] if (m is not None and query is not None) else None),
                matched_slice=(m.matched_slice if m is not None else None), via=via, info=info))
        if not resp.hits:
            resp.reason = f"no analogue scored above the minimum score {min_score}"
        return self._finish(resp, start)

    # ---------------------------------------------------------------- box queries: findings
    def regions(self) -> Any:
        """The library's finding (region) search, sharing this service's store and index folder."""
        if self._regions is None:
            from .region_search import RegionSearchService

            store = getattr(self.catalog, "store", None)
            if store is None:
                raise QueryError("box search needs the case store's region index")
            self._regions = RegionSearchService(store, self.index_dir)
        return self._regions

    def warm_up(self, series_id: Hashable) -> str | None:
        """Get ready for a finding search from a series the reader just opened (see
        :meth:`RegionSearchService.warm_up`); the region family opened, or None."""
        store = getattr(self.catalog, "store", None)
        if store is None:
            return None
        return self.regions().warm_up(int(series_id))

    def warm_up_library(self, keep_going: Callable[[], bool] | None = None) -> list[str]:
        """Get ready for finding searches in every modality family of the library (see
        :meth:`RegionSearchService.warm_up_families`); the families opened."""
        if getattr(self.catalog, "store", None) is None:
            return []
        return self.regions().warm_up_families(keep_going)

    def search_box(self, series_id: Hashable, box: Sequence[int], *, filters: SearchFilters | None = None,
                   k: int | None = None, image: Any = None) -> SearchResponse:
        # ``image``: the series' decoded Volume (or ImageInput) when the caller has it on screen
        """A box (k0, k1, j0, j1, i0, i1, voxels of a stored series) matched against the archive's
        findings of the same modality family, not against whole slices (issue 11): the finding
        in the box is segmented and described, searched in the region index, and series are ranked
        by their best-matching finding, each hit with the matched region and a calibrated confidence."""
        filters = filters or self.default_filters()
        k = int(k or self.settings.top_k)
        svc = self.regions()
        rq = svc.query_from_box(series_id, box, image=image)  # the decoded Volume on screen, if any
        return self._region_response(svc, svc.search(rq, filters=filters, k=k), filters)

    def search_findings(self, series_id: Hashable, slice_index: int | None = None, *,
                        filters: SearchFilters | None = None, k: int | None = None) -> SearchResponse:
        """Cases with the same *findings* as a series (or one slice of it): the series is described by
        its least typical regions (what most other patients do not have), and a candidate series
        scores the mean of each finding's best match in it (issue 11's findings-aware search), so
        cases are ranked by their lesions, not by the body outline every case shares."""
        filters = filters or self.default_filters()
        k = int(k or self.settings.top_k)
        svc = self.regions()
        rq = (svc.query_from_series(int(series_id)) if slice_index is None
              else svc.query_from_slice(int(series_id), int(slice_index)))
        return self._region_response(svc, svc.search(rq, filters=filters, k=k), filters)

    def _region_response(self, svc: Any, rr: Any, filters: SearchFilters,
                         drop: set[Hashable] | None = None) -> SearchResponse:
        rq = rr.query
        resp = SearchResponse([], reason=rr.reason, method="regions", filters=filters, k=rr.k,
                              elapsed_ms=rr.elapsed_ms, calibration=rr.calibration, region_query=rq)
        for h in rr.hits:
            if drop and h.series_id in drop:
                continue
            k0, k1, j0, j1, i0, i1 = (int(v) for v in h.matched_box)
            # a same-place hit's score is the surroundings' agreement, not a finding cosine: no percentile
            same = bool(getattr(h, "same_place", False))
            pct = "" if same else f"; {h.percentile:.0f}th percentile of the archive"
            resp.hits.append(RegionSearchHit(
                rank=len(resp.hits) + 1, series_id=h.series_id, score=float(h.score), query_slice=rq.slice_index,
                matched_slice=int(h.matched_slice), via="same place" if same else "region", info=h.info or SeriesInfo(series_id=h.series_id),
                confidence=h.probability, confidence_text=f"{h.confidence}{pct}", percentile=float(h.percentile),
                region=(float(i0), float(j0), float(i1), float(j1)), matched_box=(k0, k1, j0, j1, i0, i1),
                matched_centre_lps=h.matched_centre_lps, matched_diameter_mm=float(h.matched_diameter_mm),
                same_place=same))
        log.info("box search: %d hits in %.1f ms%s", len(resp.hits), resp.elapsed_ms,
                 f"; {resp.reason}" if resp.reason else "")
        return resp

    def _region_feedback(self, response: SearchResponse, more_like: Sequence[Hashable],
                         not_like: Sequence[Hashable]) -> SearchResponse:
        """Region results re-ranked by late interaction: each "more like this" adds its matched finding
        to the query (after a box a series then ranks by its best match to any of them, after a
        findings search by the weighted mean over all of them); "not like this" drops."""
        svc = self.regions()
        rq = response.region_query
        by_series = {h.series_id: h for h in response.hits if isinstance(h, RegionSearchHit)}
        extra, extra_rows = [], []
        for sid in more_like:
            h = by_series.get(sid)
            if h is None or h.matched_box is None:
                raise QueryError(f"series {sid} is not among these box results")
            rows, vecs = svc.regions.regions_of_series(svc.descriptor.id, int(sid))
            near = [n for n, r in enumerate(rows) if tuple(int(v) for v in r.box) == h.matched_box]
            if near:
                extra.append(vecs[near[0]])
                extra_rows.append(rows[near[0]])
        if extra and rq.weights is not None:
            # a findings (series/slice) query keeps all its findings, each weighted as before, and
            # the liked ones join it with their mean weight (it has one weight per vector row)
            w = np.asarray(rq.weights, np.float32)
            rq = replace(rq, vectors=np.vstack([rq.vectors, *extra]).astype(np.float32),
                         regions=[*rq.regions, *extra_rows], description=rq.description + " (+feedback)",
                         weights=np.concatenate([w, np.full(len(extra), float(w.mean()), np.float32)]))
        elif extra:  # row n of the vectors is row n of the regions (the size check reads its diameter)
            rq = replace(rq, vectors=np.vstack([rq.vectors[:1], *extra]).astype(np.float32),
                         regions=[rq.regions[0], *extra_rows], description=rq.description + " (+feedback)")
        rr = svc.search(rq, filters=response.filters, k=response.k + len(not_like), primary_only=not extra)
        out = self._region_response(svc, rr, response.filters, drop=set(not_like))
        out.hits = out.hits[:response.k]
        return out

    def sync(self, save: bool = False) -> tuple[int, int]:
        """Bring the index up to date with the store (new embeddings in, deleted cases out)."""
        source = getattr(self.catalog, "embedding_source", None)
        if source is None:
            raise QueryError("this catalog cannot feed the index")
        return self._index().sync(source(), save=save)

    def close(self) -> None:
        if self._regions is not None:
            self._regions.close()
            self._regions = None
        if self.index is not None:
            self.index.close()
        closer = getattr(self.catalog, "close", None)
        if closer is not None:
            closer()

    def feedback(self, response: SearchResponse, more_like: Sequence[Hashable] = (),
                 not_like: Sequence[Hashable] = (), alpha: float = 1.0, beta: float = 0.75,
                 gamma: float = 0.25) -> SearchResponse:
        """Re-rank after "more like this" / "not like this" (Rocchio on stored vectors only)."""
        if not more_like and not not_like:
            return response
        if response.region_query is not None:
            return self._region_feedback(response, more_like, not_like)
        if response.query is None:
            raise QueryError("relevance feedback needs an image query (text-only results cannot move)")
        index = self._index()
        groups = self.catalog.series_labels(list(more_like) + list(not_like))

        def vectors(sids: Sequence[Hashable]) -> list[np.ndarray]:
            out = []
            for s in sids:
                labels = np.asarray(groups.get(s, np.empty(0, np.int64)), dtype=np.int64)
                labels, vecs = index.get_live_vectors(labels)
                if len(labels) == 0:
                    raise QueryError(f"series {s} has no indexed embeddings to learn from")
                out.append(vecs)
            return out

        moved = rocchio(response.query.vectors, vectors(more_like), vectors(not_like), alpha, beta, gamma)
        q = replace(response.query, vectors=moved, description=response.query.description + " (+feedback)")
        new = self.search(q, text=response.text, filters=response.filters, k=response.k)
        # A "not like this" case is a judgement, not a hint: keep it out of the new list.
        rejected = set(not_like)
        new.hits = [h for h in new.hits if h.series_id not in rejected]
        for i, h in enumerate(new.hits, start=1):
            h.rank = i
        return new

    def _finish(self, resp: SearchResponse, start: float) -> SearchResponse:
        resp.elapsed_ms = (time.perf_counter() - start) * 1e3
        log.info("search %s: %d hits in %.1f ms (%s)%s", resp.query.description if resp.query else "text",
                 len(resp.hits), resp.elapsed_ms, resp.method or "-", f"; {resp.reason}" if resp.reason else "")
        return resp


def hits_table(resp: SearchResponse) -> tuple[list[str], list[list[Any]]]:
    """Headers and rows for a terminal table of the results (box results: the matched finding and
    the confidence instead of the slice pair)."""
    regions = resp.method == "regions"
    headers = ["#", "series", "score", "via", "query↔match", "modality", "body part", "date", "diagnosis",
               "follow-up", "report"]
    if regions:
        headers[4:5] = ["matched finding", "confidence"]
    rows = []
    for h in resp.hits:
        i = h.info
        pair = f"{h.query_slice}↔{h.matched_slice}" if h.matched_slice is not None else ""
        snippet = " ".join((i.report_snippet or "").split())
        row = [h.rank, h.series_id, f"{h.score:.3f}", h.via, pair, i.modality, i.body_part,
               i.study_date or "", (i.diagnosis or "")[:40], "yes" if i.has_follow_up else "",
               snippet[:60] + ("…" if len(snippet) > 60 else "")]
        if regions and isinstance(h, RegionSearchHit) and h.same_place:
            row[4:5] = [f"slice {h.matched_slice}, same place", f"surroundings {h.score:.2f}"]
        elif regions and isinstance(h, RegionSearchHit):
            where = f"slice {h.matched_slice}, {h.matched_diameter_mm:.0f} mm"
            conf = (f"{100 * h.confidence:.0f}%" if h.confidence is not None else f"p{h.percentile:.0f}")
            row[4:5] = [where, conf if "no close match" not in h.confidence_text else f"{conf} (no close match)"]
        rows.append(row)
    return headers, rows
