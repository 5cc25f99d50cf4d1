"""Series ranking over slice vectors, rank fusion and Rocchio feedback, on a real VectorIndex."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from casebook.index.errors import QueryError
from casebook.index.retrieval import pick_query_rows, rank_series, reciprocal_rank_fusion, rocchio
from casebook.index.vector_index import ArraySource, VectorIndex

DIM = 24


def make_library(n_series: int = 60, slices: int = 12, seed: int = 0):
    """Series = smooth paths through embedding space (neighbouring slices look alike)."""
    rng = np.random.default_rng(seed)
    labels, vecs, where = [], [], {}
    label = 100
    for s in range(n_series):
        start = rng.normal(size=DIM)
        step = rng.normal(size=DIM) * 0.15
        for i in range(slices):
            v = start + i * step + 0.05 * rng.normal(size=DIM)
            labels.append(label)
            vecs.append(v / np.linalg.norm(v))
            where[label] = (f"S{s}", i)
            label += 1
    return np.array(labels), np.array(vecs, np.float32), where


@pytest.fixture
def lib(tmp_path: Path):
    labels, vecs, where = make_library()
    vi = VectorIndex.open(tmp_path, "toy@1", DIM, ArraySource(labels, vecs))
    by_series: dict[str, list[int]] = {}
    for l, (s, _) in where.items():
        by_series.setdefault(s, []).append(l)

    def resolve(ls: np.ndarray):
        return {int(l): where[int(l)] for l in ls if int(l) in where}

    def series_labels(keys):
        return {k: np.array(by_series[k]) for k in keys if k in by_series}

    return vi, labels, vecs, where, resolve, series_labels


def test_series_finds_itself_and_explains_the_pair(lib) -> None:
    vi, labels, vecs, where, resolve, series_labels = lib
    query = vecs[12 * 7 : 12 * 8]  # all slices of S7
    matches, reason = rank_series(vi, query, resolve, series_labels, k=5)
    assert reason == "" and matches[0].series == "S7"
    assert matches[0].score == pytest.approx(1.0, abs=1e-5)
    assert matches[0].matched_slice == matches[0].query_index  # slice i matches slice i
    # An ROI-like partial query (3 slices) still ranks its own series first.
    part, _ = rank_series(vi, query[4:7] + 0.02, resolve, series_labels, k=3)
    assert part[0].series == "S7" and 4 <= part[0].matched_slice <= 6


def expected_ranking(query: np.ndarray, labels: np.ndarray, vecs: np.ndarray, where: dict,
                     allowed: set[str]) -> list[tuple[str, float]]:
    """Series by the mean over query rows of the best cosine to any of its slices (numpy only)."""
    q = query / np.linalg.norm(query, axis=1, keepdims=True)
    out = []
    for name in sorted(allowed):
        rows = [i for i, l in enumerate(labels.tolist()) if where[l][0] == name]
        out.append((name, float((q @ vecs[rows].T).max(axis=1).mean())))
    return sorted(out, key=lambda t: -t[1])


def assert_ranked(matches, want: list[tuple[str, float]], k: int, *, min_recall: float = 1.0) -> None:
    """``matches`` are ``min(k, len(want))`` allowed series with their true scores, best first, and
    overlap the true top k by ``min_recall`` (stage 1 picks candidate series from the nearest
    slices, so a series whose slices are all farther than others' can be missed)."""
    score = dict(want)
    assert len(matches) == min(k, len(want))
    assert all(m.series in score for m in matches)
    np.testing.assert_allclose([m.score for m in matches], [score[m.series] for m in matches], atol=1e-5)
    assert [m.score for m in matches] == sorted((m.score for m in matches), reverse=True)
    assert matches[0].series == want[0][0]
    top = {name for name, _ in want[:k]}
    assert len(top & {m.series for m in matches}) >= min_recall * len(top)


def test_exclusions_and_filters(lib) -> None:
    vi, labels, vecs, where, resolve, series_labels = lib
    query = vecs[12 * 7 : 12 * 8]
    everyone = {s for s, _ in where.values()}
    matches, _ = rank_series(vi, query, resolve, series_labels, k=5, exclude_series={"S7"})
    assert_ranked(matches, expected_ranking(query, labels, vecs, where, everyone - {"S7"}), 5, min_recall=0.8)
    allowed = np.array([l for l, (s, _) in where.items() if s in {"S1", "S2", "S3"}])
    matches, _ = rank_series(vi, query, resolve, series_labels, k=5, candidates=allowed)
    assert_ranked(matches, expected_ranking(query, labels, vecs, where, {"S1", "S2", "S3"}), 5)
    assert len(matches) == 3  # k=5, but only three series are allowed
    none, reason = rank_series(vi, query, resolve, series_labels, k=5, candidates=np.array([999999]))
    assert none == [] and "no indexed embedding" in reason
    all_out, reason = rank_series(vi, query, resolve, series_labels, k=5,
                                  exclude_series={f"S{i}" for i in range(60)})
    assert all_out == [] and "excluded" in reason
    with pytest.raises(QueryError, match="values"):
        rank_series(vi, np.ones((2, DIM + 1)), resolve, series_labels)


def test_deleted_series_never_ranked(lib) -> None:
    vi, labels, vecs, where, resolve, series_labels = lib
    vi.mark_deleted([l for l, (s, _) in where.items() if s == "S7"])
    matches, _ = rank_series(vi, vecs[12 * 7 : 12 * 8], resolve, series_labels, k=10)
    everyone = {s for s, _ in where.values()}
    want = expected_ranking(vecs[12 * 7 : 12 * 8], labels, vecs, where, everyone - {"S7"})
    assert_ranked(matches, want, 10, min_recall=0.8)


def test_rrf_and_rocchio() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a", "d"]])
    assert [k for k, _ in fused][:2] == ["a", "c"] and fused[0][1] == pytest.approx(1 / 61 + 1 / 62)
    with pytest.raises(QueryError):
        reciprocal_rank_fusion([["a"]], weights=[1, 2])
    q = np.array([[1.0, 0.0, 0.0]], np.float32)
    good = np.array([[0.0, 1.0, 0.0], [0.6, 0.8, 0.0]], np.float32)
    bad = np.array([[0.6, 0.0, 0.8]], np.float32)
    moved = rocchio(q, [good], [bad])
    assert moved[0, 1] > 0 and moved[0, 2] < 0 and np.linalg.norm(moved) == pytest.approx(1.0)
    assert pick_query_rows(300, 16).tolist()[0] == 0 and len(pick_query_rows(300, 16)) == 16


def test_feedback_reranks_without_reencoding(lib) -> None:
    vi, labels, vecs, where, resolve, series_labels = lib
    query = vecs[12 * 7 : 12 * 7 + 4] + 0.3 * np.random.default_rng(1).normal(size=(4, DIM))
    first, _ = rank_series(vi, query, resolve, series_labels, k=10, exclude_series={"S7"})
    liked, disliked = first[3].series, first[0].series
    q2 = rocchio(query, [vi.get_vectors(series_labels([liked])[liked])],
                 [vi.get_vectors(series_labels([disliked])[disliked])], beta=1.0, gamma=0.5)
    second, _ = rank_series(vi, q2, resolve, series_labels, k=10, exclude_series={"S7"})
    rank = [m.series for m in second]
    assert rank.index(liked) < 3 and (disliked not in rank or rank.index(disliked) > 0)
