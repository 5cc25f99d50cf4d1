"""Ground truth for index searches, computed with numpy alone (nothing from ``casebook.index``).

A check that a search "honours" a filter, a candidate set, an exclusion or a deletion must fail
when the search returns nothing or pads its rows with -1; so every such test compares what came
back with the exact top-k over the allowed labels, computed here independently.
"""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import pytest

TopK = Callable[..., tuple[np.ndarray, np.ndarray]]
Check = Callable[..., float]


def exact_topk(queries: np.ndarray, labels: np.ndarray, vectors: np.ndarray, k: int,
               allowed: Iterable[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine top-k (labels, scores) per query row over ``allowed`` (default: all labels).

    Rows hold ``min(k, len(allowed))`` entries: the tests ask for k and expect exactly that many.
    """
    labels = np.asarray(labels, np.int64)
    vecs = np.asarray(vectors, np.float64)
    vecs = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    if allowed is not None:
        keep = np.isin(labels, np.fromiter((int(a) for a in allowed), np.int64))
        labels, vecs = labels[keep], vecs[keep]
    q = np.atleast_2d(np.asarray(queries, np.float64))
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    sims = q @ vecs.T
    kk = min(k, len(labels))
    order = np.argsort(-sims, axis=1, kind="stable")[:, :kk]
    return labels[order], np.take_along_axis(sims, order, axis=1)


def check_topk(result, queries: np.ndarray, labels: np.ndarray, vectors: np.ndarray, k: int,
               allowed: Iterable[int] | None = None, *, min_recall: float = 1.0) -> float:
    """Assert ``result`` (a ``SearchResult``) is the top-k over ``allowed``; returns its recall.

    Every row must be full (``min(k, len(allowed))`` real labels, the rest -1 padding), hold only
    allowed labels, carry each label's true cosine score, and overlap the exact top-k by at least
    ``min_recall`` (1.0 for exact search; HNSW is approximate, so its tests pass a bound).
    """
    allowed_set = set(int(a) for a in (labels if allowed is None else allowed))
    want_l, _ = exact_topk(queries, labels, vectors, k, allowed_set)
    kk = want_l.shape[1]
    assert kk > 0, "the test's allowed set is empty: it could not fail"
    got_l = np.asarray(result.labels)
    assert got_l.shape == (len(want_l), k)
    assert (got_l[:, :kk] >= 0).all(), "a row came back short (padding where a match exists)"
    assert (got_l[:, kk:] == -1).all()
    assert set(got_l[:, :kk].ravel().tolist()) <= allowed_set
    row_of = {int(l): i for i, l in enumerate(np.asarray(labels, np.int64).tolist())}
    vecs = np.asarray(vectors, np.float64)
    vecs = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    q = np.atleast_2d(np.asarray(queries, np.float64))
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    true_scores = np.array([[q[r] @ vecs[row_of[int(l)]] for l in got_l[r, :kk]] for r in range(len(q))])
    np.testing.assert_allclose(np.asarray(result.scores)[:, :kk], true_scores, atol=1e-4)
    recall = float(np.mean([len(set(a) & set(b)) / kk for a, b in zip(got_l[:, :kk].tolist(), want_l.tolist())]))
    assert recall >= min_recall, f"recall@{k} {recall:.3f} < {min_recall}"
    return recall


@pytest.fixture
def truth() -> TopK:
    """The exact top-k of :func:`exact_topk`, for tests that build their own expectation."""
    return exact_topk


@pytest.fixture
def assert_topk() -> Check:
    """:func:`check_topk`: a search result equals (or, for HNSW, nearly equals) the exact top-k."""
    return check_topk
