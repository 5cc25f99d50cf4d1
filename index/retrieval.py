"""Series-level retrieval on top of slice-level vectors: aggregation, rank fusion, feedback.

A series is stored as many slice (or patch) embeddings, each under its own index label. A query
is also a small set of vectors (the slices of a series, the slices an ROI box covers, or a single
slice). Ranking series by "how well each query slice finds a counterpart in the candidate" (the
mean over query vectors of the best slice similarity, as in late-interaction retrieval) is robust
to different slice counts and fields of view, and the best-matching pair is the "why similar"
explanation shown to the reader. Pure numpy plus a :class:`VectorIndex`; no store or viewer.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Collection, Hashable, Iterable, Mapping, Sequence, TypeVar

import numpy as np

from .errors import QueryError
from .vector_index import VectorIndex, normalise, sorted_unique

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)

# label -> (series key, slice index), for many labels at once
LabelResolver = Callable[[np.ndarray], Mapping[int, tuple[Hashable, int]]]
# series keys -> their labels (all slices of each series that has embeddings for this model)
SeriesLabels = Callable[[Collection[Hashable]], Mapping[Hashable, np.ndarray]]


@dataclass
class SeriesMatch:
    """One retrieved series, with the slice pair that made it similar."""

    series: Hashable
    score: float  # mean over query vectors of the best cosine similarity in this series
    query_index: int  # which query vector (row) matched best
    matched_label: int
    matched_slice: int
    best_similarity: float  # cosine of that best pair
    method: str = ""


def pick_query_rows(n: int, limit: int) -> np.ndarray:
    """Evenly spaced rows, at most ``limit``: a 300-slice query does not need 300 searches."""
    if n <= limit:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(int))


def rank_series(
    index: VectorIndex,
    query: np.ndarray,
    resolve: LabelResolver,
    series_labels: SeriesLabels,
    k: int = 10,
    *,
    candidates: np.ndarray | None = None,
    filter: Callable[[int], bool] | None = None,
    exclude_labels: Collection[int] | None = None,
    exclude_series: Collection[Hashable] = (),
    max_query_vectors: int = 16,
    per_vector_k: int | None = None,
) -> tuple[list[SeriesMatch], str]:
    """Top ``k`` series for a multi-vector query, with the reason when there are none.

    Stage 1 asks the index (HNSW or exact, as it sees fit) for the nearest slices of a sample of
    query vectors; stage 2 re-scores every candidate series exactly over all of its slices.
    """
    q_all = normalise(query, index.dim)
    rows = pick_query_rows(len(q_all), max_query_vectors)
    q = q_all[rows]
    per_k = per_vector_k or max(4 * k + 16, 32)
    allowed = None if candidates is None else sorted_unique(np.asarray(candidates, dtype=np.int64))
    res = index.search(q, per_k, candidates=allowed, filter=filter, exclude=exclude_labels)
    if res.method == "empty":
        return [], res.reason
    found = sorted_unique(res.labels[res.labels >= 0])
    if len(found) == 0:
        return [], "no indexed embedding matches the query and filters"
    info = resolve(found)
    excluded = set(exclude_series)
    cand_series = list(dict.fromkeys(info[int(l)][0] for l in found.tolist() if int(l) in info))
    cand_series = [s for s in cand_series if s not in excluded]
    if not cand_series:
        return [], "every match was excluded (same patient / same study / the query itself)"
    per_series = series_labels(cand_series)
    excl = None if exclude_labels is None else np.asarray(sorted(exclude_labels), dtype=np.int64)
    live = index.live_labels  # one snapshot (a copy) for every candidate series
    scored: list[tuple[Hashable, float, int, int, float]] = []
    for s in cand_series:
        labels = np.asarray(per_series.get(s, np.empty(0, np.int64)), dtype=np.int64)
        labels = labels[np.isin(labels, live)]
        if allowed is not None:
            labels = labels[np.isin(labels, allowed)]
        if filter is not None and len(labels):
            labels = labels[np.fromiter((bool(filter(int(l))) for l in labels), dtype=bool, count=len(labels))]
        if excl is not None and len(labels):
            labels = labels[~np.isin(labels, excl)]
        labels, vectors = index.get_live_vectors(labels)  # a sync may have deleted some since
        if len(labels) == 0:
            continue
        sims = q_all @ vectors.T  # all query vectors: exact re-score
        best = sims.max(axis=1)
        qi = int(np.argmax(best))
        li = int(np.argmax(sims[qi]))
        scored.append((s, float(best.mean()), qi, int(labels[li]), float(sims[qi, li])))
    where = resolve(np.asarray([m[3] for m in scored], dtype=np.int64)) if scored else {}
    matches = [SeriesMatch(series=s, score=score, query_index=qi, matched_label=lab,
                           matched_slice=int(where.get(lab, (s, -1))[1]), best_similarity=sim, method=res.method)
               for s, score, qi, lab, sim in scored]
    matches.sort(key=lambda m: -m.score)
    if not matches:
        return [], "no candidate series has embeddings left after the filters"
    return matches[:k], ""


def reciprocal_rank_fusion(rankings: Sequence[Sequence[K]], k: int = 60,
                           weights: Sequence[float] | None = None) -> list[tuple[K, float]]:
    """Fuse ranked lists by RRF (Cormack et al. 2009): score = sum of w / (k + rank).

    Rank fusion needs no score calibration between a BM25 text score and a cosine similarity,
    which is why text + image queries are fused this way.
    """
    weights = list(weights) if weights is not None else [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise QueryError(f"{len(weights)} weights for {len(rankings)} rankings")
    scores: dict[K, float] = {}
    for ranking, w in zip(rankings, weights):
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + w / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])


def rocchio(
    query: np.ndarray,
    relevant: Iterable[np.ndarray],
    nonrelevant: Iterable[np.ndarray] = (),
    alpha: float = 1.0,
    beta: float = 0.75,
    gamma: float = 0.25,
) -> np.ndarray:
    """Rocchio update of a multi-vector query from the slice vectors of judged series.

    Each query vector moves toward the best-matching slice of every "more like this" series and
    away from that of every "not like this" series, so feedback refines *which anatomy* matches,
    not only the whole-series average. Uses stored vectors only: nothing is re-encoded.
    """
    q = np.asarray(query, dtype=np.float32)
    if q.ndim == 1:
        q = q[None, :]
    q = q / np.linalg.norm(q, axis=1, keepdims=True)

    def centroid(groups: Iterable[np.ndarray]) -> np.ndarray | None:
        picks = []
        for g in groups:
            g = np.asarray(g, dtype=np.float32)
            if g.ndim != 2 or g.shape[0] == 0:
                continue
            if g.shape[1] != q.shape[1]:
                raise QueryError(f"feedback vectors have {g.shape[1]} values, the query {q.shape[1]}")
            picks.append(g[np.argmax(q @ g.T, axis=1)])  # (nq, d): best slice per query vector
        return np.mean(picks, axis=0) if picks else None

    pos, neg = centroid(relevant), centroid(nonrelevant)
    out = alpha * q
    if pos is not None:
        out = out + beta * pos
    if neg is not None:
        out = out - gamma * neg
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (out / norms).astype(np.float32)
