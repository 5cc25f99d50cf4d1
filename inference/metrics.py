"""Retrieval-quality metrics over L2-normalised embeddings.

They live in the inference package (not in the benchmark script) because training uses the same
numbers for model selection: the checkpoint that retrieves best on the validation split is the
one that ships, so the benchmark and the training log agree by construction.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RetrievalScores:
    """mAP@k, precision@1 and precision@k of a query set against a database."""

    map_at_k: float
    p_at_1: float
    p_at_k: float
    k: int
    queries: int

    def as_dict(self) -> dict[str, float]:
        return {f"mAP@{self.k}": self.map_at_k, "P@1": self.p_at_1, f"P@{self.k}": self.p_at_k}


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
    return RetrievalScores(
        map_at_k=float(np.concatenate(aps).mean()),
        p_at_1=float(np.concatenate(p1s).mean()),
        p_at_k=float(np.concatenate(pks).mean()),
        k=kk,
        queries=len(q),
    )


__all__ = ["RetrievalScores", "retrieval_scores", "l2_normalise"]
