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
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any, Hashable, Mapping, Protocol, Sequence

import numpy as np

from casebook.index.errors import QueryError
from casebook.index.retrieval import SeriesMatch, rank_series, reciprocal_rank_fusion, rocchio
from casebook.index.vector_index import VectorIndex, normalise

from ..config import SearchSettings

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Query, filters, results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchFilters:
    """Restrictions on the analogues; empty fields do not restrict."""

    modalities: tuple[str, ...] = ()
    body_parts: tuple[str, ...] = ()
    sex: str | None = None  # "M" | "F" | "O"
    age_min: float | None = None  # years at the study date
    age_max: float | None = None
    date_from: date | None = None
    date_to: date | None = None
    tags: tuple[str, ...] = ()
    collections: tuple[str, ...] = ()
    diagnosis: str | None = None  # words that must occur in the diagnosis
    exclude_same_patient: bool = True
    exclude_same_study: bool = True

    def restricts(self) -> bool:
        """True when a metadata filter (not just exclusions) is set."""
        return bool(self.modalities or self.body_parts or self.sex or self.age_min is not None
                    or self.age_max is not None or self.date_from or self.date_to or self.tags
                    or self.collections or self.diagnosis)

    def describe(self) -> str:
        parts = []
        for name in ("modalities", "body_parts", "tags", "collections"):
            v = getattr(self, name)
            if v:
                parts.append(f"{name.rstrip('s').replace('_', ' ')}={','.join(v)}")
        if self.sex:
            parts.append(f"sex={self.sex}")
        if self.age_min is not None or self.age_max is not None:
            parts.append(f"age={self.age_min if self.age_min is not None else ''}-"
                         f"{self.age_max if self.age_max is not None else ''}")
        if self.date_from or self.date_to:
            parts.append(f"date={self.date_from or ''}..{self.date_to or ''}")
        if self.diagnosis:
            parts.append(f"diagnosis~{self.diagnosis!r}")
        return ", ".join(parts) or "no filters"

    def validate(self) -> None:
        if self.sex is not None and self.sex.upper() not in ("M", "F", "O"):
            raise QueryError(f"sex filter must be M, F or O, not {self.sex!r}")
        if self.age_min is not None and self.age_max is not None and self.age_min > self.age_max:
            raise QueryError(f"age range {self.age_min}-{self.age_max} is empty")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise QueryError(f"date range {self.date_from}..{self.date_to} is empty")


@dataclass
class QueryVectors:
    """What an image query became: slice vectors and where they came from."""

    vectors: np.ndarray  # (n, dim), L2-normalised
    slice_indices: list[int]  # the query slice behind each row ("why similar")
    description: str
    series_id: Hashable | None = None  # a stored query series, if any
    patient_key: Hashable | None = None  # for "exclude same patient"
    study_key: Hashable | None = None  # for "exclude same study"
    own_labels: frozenset[int] = frozenset()


@dataclass
class SearchHit:
    """One analogue case, ready for a table row or a GUI card."""

    rank: int
    series_id: Hashable
    score: float
    query_slice: int | None  # slice of the query that matched best
    matched_slice: int | None  # slice of the analogue that matched it
    via: str  # "image" | "text" | "image+text"
    info: "SeriesInfo"


@dataclass
class SeriesInfo:
    """What a result shows about an analogue (no patient name or ID: only internal keys)."""

    series_id: Hashable
    study_key: Hashable = None
    patient_key: Hashable = None
    modality: str = ""
    body_part: str = ""
    description: str = ""
    study_date: date | None = None
    sex: str = ""
    age: float | None = None
    diagnosis: str = ""
    report_snippet: str = ""
    has_follow_up: bool = False
    slice_count: int = 0


@dataclass
class SearchResponse:
    hits: list[SearchHit]
    reason: str = ""  # why there are no (or few) hits
    method: str = ""  # how the index answered
    query: QueryVectors | None = None
    text: str | None = None
    filters: SearchFilters = field(default_factory=SearchFilters)
    k: int = 10
    elapsed_ms: float = 0.0


# --------------------------------------------------------------------------------------------
# What the service needs from the store and the encoder
# --------------------------------------------------------------------------------------------


class SearchCatalog(Protocol):
    """Store access needed by search (implemented over the case store by :class:`StoreCatalog`)."""

    def resolve_labels(self, labels: np.ndarray) -> Mapping[int, tuple[Hashable, int]]:
        """label -> (series id, slice index), for live embeddings of the index's model."""

    def series_labels(self, series_ids: Sequence[Hashable]) -> Mapping[Hashable, np.ndarray]:
        """series id -> labels of all its embeddings (index's model)."""

    def series_embeddings(self, series_id: Hashable) -> tuple[np.ndarray, list[int]]:
        """Labels and slice indices of one stored series (raises QueryError if unknown)."""

    def series_keys(self, series_id: Hashable) -> tuple[Hashable, Hashable]:
        """(patient key, study key) of a stored series (raises QueryError if unknown)."""

    def labels_matching(self, filters: SearchFilters) -> np.ndarray | None:
        """Labels of series passing the metadata filters; None when nothing restricts."""

    def series_to_exclude(self, patient_key: Hashable | None, study_key: Hashable | None,
                          filters: SearchFilters) -> set[Hashable]:
        """Series of the same patient / study, as the filters ask."""

    def text_search(self, text: str, filters: SearchFilters, limit: int) -> list[tuple[Hashable, str]]:
        """Series ranked by FTS5 over reports/diagnoses, with a highlighted snippet."""

    def series_info(self, series_ids: Sequence[Hashable]) -> Mapping[Hashable, SeriesInfo]:
        """Result details per series."""


class QueryEncoder(Protocol):
    """Turns images that are not (or not yet) in the store into query vectors."""

    model_key: str
    dim: int

    def encode_folder(self, path: Path) -> QueryVectors: ...

    def encode_roi(self, series_id: Hashable, box: tuple[int, int, int, int, int, int]) -> QueryVectors: ...


# --------------------------------------------------------------------------------------------
# The service
# --------------------------------------------------------------------------------------------


def check_encoder_matches(encoder: Any, model_key: str, dim: int) -> None:
    """Refuse a query encoder that is not the model the index was built with.

    Keys may carry a file-hash suffix ("name@version#sha..." / "+sha..."): name@version is compared.
    """
    enc_key = str(getattr(encoder, "model_key", model_key))
    enc_dim = int(getattr(encoder, "dim", dim))
    if enc_dim != dim or re.split(r"[#+]", enc_key)[0] != model_key:
        raise QueryError(f"encoder {enc_key!r} ({enc_dim}-d) does not match the index of {model_key} "
                         f"({dim}-d): queries would be compared with another model's vectors")


class SearchService:
    """Similar-case search over one model's vector index and the case store."""

    def __init__(self, catalog: SearchCatalog, index: VectorIndex, encoder: QueryEncoder | None = None,
                 settings: SearchSettings | None = None, rrf_k: int = 60) -> None:
        self.catalog = catalog
        self.index = index
        self.encoder = encoder
        self.settings = settings or SearchSettings()
        self.rrf_k = rrf_k
        if encoder is not None:
            check_encoder_matches(encoder, index.model_key, index.dim)

    def default_filters(self) -> SearchFilters:
        return SearchFilters(exclude_same_patient=self.settings.exclude_same_patient,
                             exclude_same_study=self.settings.exclude_same_study)

    # ---------------------------------------------------------------- query builders
    def query_from_series(self, series_id: Hashable, slices: Sequence[int] | None = None) -> QueryVectors:
        """Query vectors of a stored series (optionally only some slices), from stored embeddings."""
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
            raise QueryError(f"series {series_id}: its embeddings are not in the index (deleted?)")
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
        v = normalise(vectors, self.index.dim)
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
            cand = self.catalog.labels_matching(filters)
            if cand is not None and len(cand) == 0:
                resp.reason = f"no case in the library matches the filters ({filters.describe()})"
                return self._finish(resp, start)
            image_rank, reason = rank_series(
                self.index, query.vectors, self.catalog.resolve_labels, self.catalog.series_labels,
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

    def sync(self, save: bool = False) -> tuple[int, int]:
        """Bring the index up to date with the store (new embeddings in, deleted cases out)."""
        source = getattr(self.catalog, "embedding_source", None)
        if source is None:
            raise QueryError("this catalog cannot feed the index")
        return self.index.sync(source(), save=save)

    def close(self) -> None:
        self.index.close()
        closer = getattr(self.catalog, "close", None)
        if closer is not None:
            closer()

    def feedback(self, response: SearchResponse, more_like: Sequence[Hashable] = (),
                 not_like: Sequence[Hashable] = (), alpha: float = 1.0, beta: float = 0.75,
                 gamma: float = 0.25) -> SearchResponse:
        """Re-rank after "more like this" / "not like this" (Rocchio on stored vectors only)."""
        if response.query is None:
            raise QueryError("relevance feedback needs an image query (text-only results cannot move)")
        if not more_like and not not_like:
            return response
        groups = self.catalog.series_labels(list(more_like) + list(not_like))

        def vectors(sids: Sequence[Hashable]) -> list[np.ndarray]:
            out = []
            for s in sids:
                labels = np.asarray(groups.get(s, np.empty(0, np.int64)), dtype=np.int64)
                labels, vecs = self.index.get_live_vectors(labels)
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
    """Headers and rows for a terminal table of the results."""
    headers = ["#", "series", "score", "via", "query↔match", "modality", "body part", "date", "diagnosis",
               "follow-up", "report"]
    rows = []
    for h in resp.hits:
        i = h.info
        pair = f"{h.query_slice}↔{h.matched_slice}" if h.matched_slice is not None else ""
        snippet = " ".join((i.report_snippet or "").split())
        rows.append([h.rank, h.series_id, f"{h.score:.3f}", h.via, pair, i.modality, i.body_part,
                     i.study_date or "", (i.diagnosis or "")[:40], "yes" if i.has_follow_up else "",
                     snippet[:60] + ("…" if len(snippet) > 60 else "")])
    return headers, rows


# --------------------------------------------------------------------------------------------
# Retrieval audit
# --------------------------------------------------------------------------------------------


@dataclass
class AuditReport:
    """How well the local archive's search works, measured on the archive itself."""

    model_key: str
    dim: int
    vectors: int
    deleted: int
    index_bytes: int
    memory_bytes: int
    M: int
    ef_construction: int
    ef: int
    k: int
    sample: int
    recall_at_k: float | None = None
    hnsw_ms: dict[str, float] = field(default_factory=dict)  # p50/p90/p99
    exact_ms: dict[str, float] = field(default_factory=dict)
    diagnosis_queries: int = 0
    precision_at_k: float | None = None  # share of top-k analogues with the query's diagnosis
    precision_at_1: float | None = None
    chance_precision: float | None = None  # what random retrieval would score
    backend: str = ""  # "mapped" (saved file searched in place) or "hnswlib" (in memory)
    delta: int = 0  # vectors added since the base file was written (not yet merged)
    notes: list[str] = field(default_factory=list)


def _percentiles(times: list[float]) -> dict[str, float]:
    if not times:
        return {}
    a = np.asarray(times) * 1e3
    return {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "max": float(a.max())}


def audit(index: VectorIndex, service: SearchService | None = None, k: int = 10, sample: int = 200,
          diagnoses: Mapping[Hashable, str] | None = None, seed: int = 0) -> AuditReport:
    """Index size, HNSW recall@k against exact search, latency percentiles, and diagnosis P@k.

    ``diagnoses`` maps series to a diagnosis label; each such series queries the archive (same
    patient excluded) and P@k is the share of the top-k analogues that share its diagnosis.
    """
    index_bytes = sum(p.stat().st_size for p in index.directory.glob(f"{index.stem}.*") if p.is_file())
    rep = AuditReport(model_key=index.model_key, dim=index.dim, vectors=len(index),
                      deleted=len(index.deleted_labels), index_bytes=index_bytes,
                      memory_bytes=index.memory_bytes(), M=index.params.M,
                      ef_construction=index.params.ef_construction, ef=index.params.ef, k=k, sample=0,
                      backend=index.backend, delta=index.delta_count)
    live = index.live_labels
    if len(live) <= k:
        rep.notes.append(f"only {len(live)} vectors indexed: recall and latency need more than k={k}")
    else:
        rng = np.random.default_rng(seed)
        qlab = rng.choice(live, size=min(sample, len(live)), replace=False)
        queries = index.get_vectors(qlab)
        rep.sample = len(qlab)
        hnsw_t, exact_t, hits, truth = [], [], 0, 0
        for lab, q in zip(qlab.tolist(), queries):  # each stored vector queries the rest
            t0 = time.perf_counter()
            h = index.search(q, k, exclude=[lab], mode="hnsw")
            hnsw_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            e = index.search(q, k, exclude=[lab], mode="exact")
            exact_t.append(time.perf_counter() - t0)
            want = set(e.labels[0][e.labels[0] >= 0].tolist())
            hits += len(set(h.labels[0].tolist()) & want)
            truth += len(want)
        rep.recall_at_k = hits / max(truth, 1)
        rep.hnsw_ms, rep.exact_ms = _percentiles(hnsw_t), _percentiles(exact_t)
        if len(live) <= index.params.exact_below:
            rep.notes.append(f"{len(live)} vectors: searches run exactly (brute force is as fast here)")
    if service is not None and diagnoses:
        labelled = {s: d.strip().lower() for s, d in diagnoses.items() if d and d.strip()}
        counts: dict[str, int] = {}
        for d in labelled.values():
            counts[d] = counts.get(d, 0) + 1
        total = len(labelled)
        if total > 1:
            rep.chance_precision = sum(c * (c - 1) for c in counts.values()) / (total * (total - 1))
        pk, p1, n = [], [], 0
        order = list(labelled)
        rng = np.random.default_rng(seed)
        rng.shuffle(order)
        for sid in order[:sample]:
            try:
                resp = service.search(service.query_from_series(sid), k=k)
            except QueryError as exc:
                rep.notes.append(f"series {sid}: {exc}")
                continue
            judged = [labelled.get(h.series_id) for h in resp.hits]
            judged = [j for j in judged if j is not None]
            if not judged:
                continue
            n += 1
            pk.append(sum(j == labelled[sid] for j in judged) / len(judged))
            p1.append(float(judged[0] == labelled[sid]))
        rep.diagnosis_queries = n
        if n:
            rep.precision_at_k, rep.precision_at_1 = float(np.mean(pk)), float(np.mean(p1))
    elif service is not None:
        rep.notes.append("no series has a diagnosis: P@k of diagnosis agreement not measured")
    return rep


@dataclass
class _Meta:
    model_key: str
    dim: int


def audit_library(settings: Any, model: str | None = None, k: int = 10, sample: int = 200) -> list[AuditReport]:
    """Audit every index in the library (or the one of ``model``)."""
    from casebook.index.vector_index import list_indexes

    keys = {m.model_key: m.dim for m in (list_indexes(settings.index_dir) if settings.index_dir.exists() else [])}
    if settings.database_path.exists():  # models with embeddings but no index yet get one built
        from casebook.index.case_store.store import CaseStore

        store = CaseStore.open(settings.database_path, create=False)
        try:
            for rec, count in store.stats().models:
                if count:
                    keys.setdefault(rec.key, rec.dim)
        finally:
            store.close()
    if model:
        keys = {k: d for k, d in keys.items() if k == model or k.split("@")[0] == model}
        if not keys:
            raise QueryError(f"no index or embeddings of model {model!r} in {settings.library_dir}")
    reports = []
    for key, dim in sorted(keys.items()):
        meta = _Meta(key, dim)
        service = None
        if settings.database_path.exists():
            try:
                service = open_store_search(settings, meta.model_key)
            except QueryError as exc:  # this model has no embeddings in the store (any more)
                log.info("audit of %s without the store: %s", meta.model_key, exc)
        index = service.index if service is not None else VectorIndex.open(settings.index_dir, meta.model_key, meta.dim)
        try:
            diagnoses = service.catalog.diagnoses() if service is not None else {}
            reports.append(audit(index, service, k=k, sample=sample, diagnoses=diagnoses))
        finally:
            if service is not None:
                service.close()
            else:
                index.close()
    return reports


# --------------------------------------------------------------------------------------------
# The case store as a search catalog
# --------------------------------------------------------------------------------------------


def _case_filter(filters: SearchFilters, **extra: Any) -> Any:
    from casebook.index.case_store.records import CaseFilter

    return CaseFilter(modalities=filters.modalities, body_parts=filters.body_parts, sex=filters.sex,
                      age_min=filters.age_min, age_max=filters.age_max, date_from=filters.date_from,
                      date_to=filters.date_to, tags=filters.tags, collections=filters.collections,
                      diagnosis=filters.diagnosis, **extra)


class StoreCatalog:
    """:class:`SearchCatalog` over a :class:`casebook.index.case_store.store.CaseStore` and one model."""

    def __init__(self, store: Any, model_id: int) -> None:
        self.store = store
        self.model_id = int(model_id)

    def embedding_source(self) -> Any:
        return self.store.embedding_source(self.model_id)

    def close(self) -> None:
        self.store.close()

    def find_series(self, ref: str | int) -> int:
        """A series by store id, stack key or SeriesInstanceUID (the CLI accepts all three)."""
        ref_s = str(ref).strip()
        if ref_s.isdigit():
            return int(self.store.get_series(int(ref_s)).id)  # UnknownItemError is a QueryError
        found = self.store.find_series(ref_s)
        if found is None:
            raise QueryError(f"unknown series {ref_s!r}: no such series in the library (or it was deleted)")
        return int(found.id)

    def resolve_labels(self, labels: np.ndarray) -> Mapping[int, tuple[Hashable, int]]:
        return self.store.resolve_labels(self.model_id, [int(x) for x in labels])

    def series_labels(self, series_ids: Sequence[Hashable]) -> Mapping[Hashable, np.ndarray]:
        return self.store.labels_for_series(self.model_id, [int(s) for s in series_ids])

    def series_embeddings(self, series_id: Hashable) -> tuple[np.ndarray, list[int]]:
        self.store.get_series(int(series_id))  # unknown or deleted -> UnknownItemError (a QueryError)
        emb = self.store.get_embeddings(self.model_id, [int(series_id)])
        keep = emb.slice_indices >= 0
        if not keep.any():  # a 3-D model: the whole-series vector is the query
            keep = np.ones(len(emb), bool)
        return emb.labels[keep], [int(i) for i in emb.slice_indices[keep]]

    def series_keys(self, series_id: Hashable) -> tuple[Hashable, Hashable]:
        se = self.store.get_series(int(series_id))
        return se.patient_key, int(se.study_id)

    def labels_matching(self, filters: SearchFilters) -> np.ndarray | None:
        if not filters.restricts():
            return None
        sids = self.store.series_ids_matching(_case_filter(filters))
        if not sids:
            return np.empty(0, np.int64)
        groups = self.store.labels_for_series(self.model_id, sids)
        parts = [v for v in groups.values() if len(v)]
        return np.concatenate(parts) if parts else np.empty(0, np.int64)

    def series_to_exclude(self, patient_key: Hashable | None, study_key: Hashable | None,
                          filters: SearchFilters) -> set[Hashable]:
        from casebook.index.case_store.records import CaseFilter

        out: set[Hashable] = set()
        if filters.exclude_same_patient and patient_key is not None:
            out |= set(self.store.series_ids_matching(CaseFilter(patient_key=str(patient_key), include_deleted=True)))
        if filters.exclude_same_study and study_key is not None:
            out |= set(self.store.series_ids_matching(CaseFilter(study_ids=(int(study_key),), include_deleted=True)))
        return out

    def text_search(self, text: str, filters: SearchFilters, limit: int) -> list[tuple[Hashable, str]]:
        from casebook.index.case_store.records import CaseFilter

        hits = self.store.search_text(text, limit=limit)
        if not hits:  # no report has every word: any word, ranked by bm25
            words = re.findall(r"\w+", text, re.UNICODE)
            if not words:
                raise QueryError(f"text query {text!r} has no searchable words")
            hits = self.store.search_text(" OR ".join(f'"{w}"' for w in words), limit=limit, raw=True)
        allowed = set(self.store.series_ids_matching(_case_filter(filters))) if filters.restricts() else None
        out: list[tuple[Hashable, str]] = []
        seen: set[int] = set()
        for h in hits:
            if h.series_id is not None:
                sids = [int(h.series_id)]
            else:  # a study report speaks for the study's (non-localizer) series
                sids = self.store.series_ids_matching(CaseFilter(study_ids=(int(h.study_id),),
                                                                 include_localizers=False))
            for sid in sids:
                if sid in seen or (allowed is not None and sid not in allowed):
                    continue
                seen.add(sid)
                out.append((sid, h.snippet or ""))
        return out[:limit]

    def series_info(self, series_ids: Sequence[Hashable]) -> Mapping[Hashable, SeriesInfo]:
        from casebook.index.case_store.records import CaseFilter
        from casebook.index.errors import UnknownItemError

        series = {}
        for sid in series_ids:
            try:
                series[sid] = self.store.get_series(int(sid))
            except UnknownItemError:
                continue  # deleted between ranking and display: leave it out
        study_ids = tuple(sorted({se.study_id for se in series.values()}))
        studies = {st.id: st for st in self.store.list_studies(CaseFilter(study_ids=study_ids))} if study_ids else {}
        reports: dict[tuple[int, int | None], Any] = {}

        def report(study_id: int, series_id: int | None) -> Any:
            if (study_id, series_id) not in reports:
                reports[(study_id, series_id)] = self.store.get_report(study_id, series_id)
            return reports[(study_id, series_id)]

        out: dict[Hashable, SeriesInfo] = {}
        for sid, se in series.items():
            st = studies.get(se.study_id)
            if st is None:
                continue
            rep = report(se.study_id, se.id) or report(se.study_id, None)
            snippet = (rep.impression or rep.findings or "")[:240] if rep is not None else ""
            out[sid] = SeriesInfo(
                series_id=sid, study_key=se.study_id, patient_key=se.patient_key, modality=se.modality,
                body_part=se.body_part, description=se.description, study_date=se.study_date, sex=st.sex,
                age=st.age_years, diagnosis=(rep.diagnosis if rep is not None and rep.diagnosis else st.diagnosis),
                report_snippet=snippet, has_follow_up=st.follow_up_count > 0, slice_count=se.slice_count)
        return out

    def diagnoses(self) -> dict[Hashable, str]:
        """Diagnosis per series that has embeddings of this model (for the audit's P@k)."""
        dx = self.store.diagnoses()
        if not dx:
            return {}
        have = self.store.labels_for_series(self.model_id, list(dx))
        return {s: d for s, d in dx.items() if len(have.get(s, ())) > 0}


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
        store.close()
        raise QueryError(f"model {want!r} has no embeddings in the library (registered: {known}); "
                         "run `casebook embed`") from None
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
