"""Retrieval-quality metrics over L2-normalised embeddings.

They live in the inference package (not in the benchmark script) because training uses the same
numbers for model selection: the checkpoint that retrieves best on the validation split is the
one that ships, so the benchmark and the training log agree by construction.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class RetrievalScores:
    """mAP@k, precision@1 and precision@k of a query set against a database.

    The ``balanced_*`` figures average over the query classes instead of over queries: a test
    set whose class balance differs from the validation split's (MedMNIST's PneumoniaMNIST test
    has far more normals) moves the plain figures but not these, so models are selected on them.
    """

    map_at_k: float
    p_at_1: float
    p_at_k: float
    k: int
    queries: int
    balanced_map_at_k: float = float("nan")
    balanced_p_at_1: float = float("nan")
    per_class_p_at_1: dict[int, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        return {f"mAP@{self.k}": self.map_at_k, "P@1": self.p_at_1, f"P@{self.k}": self.p_at_k,
                f"balanced mAP@{self.k}": self.balanced_map_at_k, "balanced P@1": self.balanced_p_at_1}


def l2_normalise(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Row-wise L2 normalisation in float32 (zero rows stay zero instead of becoming NaN)."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(n, eps)).astype(np.float32)


def retrieval_scores(
    queries: np.ndarray,
    query_labels: np.ndarray,
    database: np.ndarray | None = None,
    database_labels: np.ndarray | None = None,
    k: int = 10,
) -> RetrievalScores:
    """Score cosine k-NN retrieval: a hit is a neighbour with the query's label.

    With ``database`` omitted the query set is searched against itself, leaving each query out
    (the usual leave-one-out protocol on a validation split). mAP@k uses the standard
    ``AP@k = sum_i P@i * rel_i / min(k, relevant)`` definition.
    """
    q = l2_normalise(queries)
    ql = np.asarray(query_labels).reshape(len(q))
    self_search = database is None
    db = q if self_search else l2_normalise(database)
    dl = ql if self_search else np.asarray(database_labels).reshape(len(db))
    kk = min(k, len(db) - (1 if self_search else 0))
    if kk <= 0:
        raise ValueError("database too small for retrieval scores")
    aps, p1s, pks = [], [], []
    chunk = 1024
    for start in range(0, len(q), chunk):
        sims = q[start : start + chunk] @ db.T
        if self_search:
            idx = np.arange(start, min(start + chunk, len(q)))
            sims[np.arange(len(idx)), idx] = -np.inf
        top = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        order = np.take_along_axis(sims, top, axis=1).argsort(axis=1)[:, ::-1]
        top = np.take_along_axis(top, order, axis=1)
        rel = (dl[top] == ql[start : start + chunk, None]).astype(np.float64)
        n_rel = np.array([(dl == lab).sum() for lab in ql[start : start + chunk]], dtype=np.float64)
        if self_search:
            n_rel -= 1
        prec = np.cumsum(rel, axis=1) / np.arange(1, kk + 1)
        denom = np.minimum(kk, np.maximum(n_rel, 1))
        aps.append((prec * rel).sum(axis=1) / denom)
        p1s.append(rel[:, 0])
        pks.append(rel.mean(axis=1))
    ap, p1 = np.concatenate(aps), np.concatenate(p1s)
    classes = np.unique(ql)
    per_p1 = {int(c) if np.issubdtype(ql.dtype, np.integer) else c: float(p1[ql == c].mean()) for c in classes}
    return RetrievalScores(
        map_at_k=float(ap.mean()),
        p_at_1=float(p1.mean()),
        p_at_k=float(np.concatenate(pks).mean()),
        k=kk,
        queries=len(q),
        balanced_map_at_k=float(np.mean([ap[ql == c].mean() for c in classes])),
        balanced_p_at_1=float(np.mean(list(per_p1.values()))),
        per_class_p_at_1=per_p1,
    )


def neighbour_pairs(queries: np.ndarray, query_labels: np.ndarray, database: np.ndarray, database_labels: np.ndarray,
                    k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Cosine and hit (same label, 0/1) of every query's top ``k`` neighbours, flattened.

    The raw material of a calibration: how often a neighbour at a given similarity shares the
    query's label.
    """
    q, db = l2_normalise(queries), l2_normalise(database)
    ql, dl = np.asarray(query_labels).reshape(-1), np.asarray(database_labels).reshape(-1)
    kk = min(k, len(db))
    sims, hits = [], []
    for start in range(0, len(q), 1024):
        s = q[start : start + 1024] @ db.T
        top = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        sims.append(np.take_along_axis(s, top, axis=1).ravel())
        hits.append((dl[top] == ql[start : start + 1024, None]).ravel().astype(np.float64))
    return np.concatenate(sims).astype(np.float64), np.concatenate(hits)


class IsotonicMap:
    """A monotone non-decreasing step map fitted by :func:`fit_isotonic`; call it on new values."""

    def __init__(self, knots: np.ndarray, values: np.ndarray) -> None:
        self.knots, self.values = knots, values

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(x, np.float64), self.knots, self.values)


def fit_isotonic(x: np.ndarray, y: np.ndarray) -> IsotonicMap:
    """Least-squares isotonic regression of ``y`` on ``x`` (pool adjacent violators).

    The standard non-parametric calibration (Zadrozny & Elkan 2002): it assumes only that a
    closer neighbour is not less likely to share the label.
    """
    order = np.argsort(x, kind="mergesort")
    xs, ys = np.asarray(x, np.float64)[order], np.asarray(y, np.float64)[order]
    if len(xs) == 0:
        raise ValueError("isotonic regression needs at least one point")
    means: list[float] = []
    weights: list[float] = []
    lo: list[int] = []
    for i, v in enumerate(ys):
        means.append(v)
        weights.append(1.0)
        lo.append(i)
        while len(means) > 1 and means[-2] > means[-1]:
            w = weights[-2] + weights[-1]
            m = (means[-2] * weights[-2] + means[-1] * weights[-1]) / w
            means[-2:], weights[-2:], lo[-2:] = [m], [w], [lo[-2]]
    knots, values = [], []
    bounds = lo + [len(xs)]
    for b, m in enumerate(means):
        # each pooled block is flat between its first and last x: interpolate only between blocks
        knots += [xs[bounds[b]], xs[bounds[b + 1] - 1]]
        values += [m, m]
    return IsotonicMap(np.asarray(knots), np.asarray(values))


def calibration_error(prob: np.ndarray, hit: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over ``bins`` equal-count bins: mean |predicted - observed|, weighted by bin size."""
    p, h = np.asarray(prob, np.float64), np.asarray(hit, np.float64)
    if len(p) == 0:
        raise ValueError("calibration error of an empty set")
    order = np.argsort(p, kind="mergesort")
    err = 0.0
    for part in np.array_split(order, min(bins, len(p))):
        err += len(part) * abs(p[part].mean() - h[part].mean())
    return float(err / len(p))


__all__ = ["RetrievalScores", "retrieval_scores", "l2_normalise", "neighbour_pairs", "IsotonicMap", "fit_isotonic",
           "calibration_error"]
