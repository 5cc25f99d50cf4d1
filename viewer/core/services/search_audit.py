"""Retrieval audit: how well the local archive's search works, measured on the archive itself
(index size, HNSW recall against exact search, latency percentiles, diagnosis precision)."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Hashable, Mapping

import numpy as np

from casebook.index.errors import QueryError
from casebook.index.vector_index import VectorIndex

from .search_open import open_store_search
from .search_service import SearchService

log = logging.getLogger(__name__)


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
