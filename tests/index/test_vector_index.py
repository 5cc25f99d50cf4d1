"""VectorIndex on real hnswlib files in a temp folder: integrity, repair, deletes, concurrency."""
from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from casebook.index.errors import Cancelled, QueryError, VectorIndexError
from casebook.index.vector_index import (
    ArraySource,
    IndexParams,
    LabelDigest,
    ReadWriteLock,
    VectorIndex,
    read_hnsw_header,
)

DIM = 32
MODEL = "test-encoder@1.0"


def clustered(n: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    """Unit vectors in clusters (HNSW recall on pure noise says nothing)."""
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(99).normal(size=(40, dim))
    x = centers[rng.integers(0, 40, n)] + 0.35 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    vecs = clustered(4000)
    labels = np.arange(4000, dtype=np.int64) * 7 + 3  # labels need not be row numbers
    return labels, vecs


def exact_top(q: np.ndarray, labels: np.ndarray, vecs: np.ndarray, k: int) -> list[int]:
    sims = vecs @ (q / np.linalg.norm(q))
    return labels[np.argsort(-sims)[:k]].tolist()


def test_build_save_open_roundtrip(tmp_path: Path, data) -> None:
    labels, vecs = data
    vi = VectorIndex.open(tmp_path, MODEL, DIM, ArraySource(labels, vecs))
    assert vi.report.action == "rebuilt" and len(vi) == 4000
    assert vi.recall_estimate is not None and vi.recall_estimate >= 0.98
    ef = vi.params.ef
    res = vi.search(vecs[10], k=5, mode="hnsw")
    assert res.labels[0, 0] == labels[10] and res.scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    vi.close()
    assert not list(tmp_path.glob("*.tmp"))
    again = VectorIndex.open(tmp_path, MODEL, DIM, ArraySource(labels, vecs))
    assert again.report.action == "loaded"
    assert again.params.ef == ef  # tuned ef persisted in the sidecar
    np.testing.assert_allclose(again.get_vectors(labels[:3]), vecs[:3], atol=1e-6)


def test_recall_target_met_against_exact(tmp_path: Path, data) -> None:
    labels, vecs = data
    vi = VectorIndex.open(tmp_path, MODEL, DIM, ArraySource(labels, vecs))
    queries = clustered(100, seed=5)
    hnsw = vi.search(queries, k=10, mode="hnsw")
    exact = vi.search(queries, k=10, mode="exact")
    assert exact.method == "exact" and hnsw.method == "hnsw"
    recall = np.mean([len(set(h) & set(e)) / 10 for h, e in zip(hnsw.labels.tolist(), exact.labels.tolist())])
    assert recall >= 0.95
    assert exact.labels[0].tolist() == exact_top(queries[0], labels, vecs, 10)


def test_truncated_index_file_is_rebuilt(tmp_path: Path, data) -> None:
    labels, vecs = data
    VectorIndex.open(tmp_path, MODEL, DIM, ArraySource(labels, vecs)).close()
    path = next(tmp_path.glob("*.hnsw"))
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)
    with pytest.raises(VectorIndexError, match="truncated|bytes on disk"):
        VectorIndex.open(tmp_path, MODEL, DIM)
    vi = VectorIndex.open(tmp_path, MODEL, DIM, ArraySource(labels, vecs))
    assert vi.report.action == "rebuilt" and "bytes" in vi.report.reason
    assert len(vi) == 4000 and vi.search(vecs[7], k=1).labels[0, 0] == labels[7]
    assert read_hnsw_header(next(tmp_path.glob("*.hnsw"))).element_count == 4000


def test_corrupt_and_missing_files_are_rebuilt(tmp_path: Path, data) -> None:
    labels, vecs = data
    VectorIndex.open(tmp_path, MODEL, DIM, ArraySource(labels, vecs)).close()
    path = next(tmp_path.glob("*.hnsw"))
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 3] ^= 0xFF  # one flipped byte, same size
    path.write_bytes(bytes(raw))
    with pytest.raises(VectorIndexError, match="checksum"):
        VectorIndex.open(tmp_path, MODEL, DIM, verify="full")
    vi = VectorIndex.open(tmp_path, MODEL, DIM, ArraySource(labels, vecs))
    assert vi.report.action == "rebuilt"
    vi.close()
    for p in tmp_path.glob("*.hnsw"):
        p.unlink()
    vi = VectorIndex.open(tmp_path, MODEL, DIM, ArraySource(labels, vecs))
    assert vi.report.action == "rebuilt" and "missing" in vi.report.reason


def test_index_of_another_model_is_detected(tmp_path: Path, data) -> None:
    labels, vecs = data
    other = VectorIndex.open(tmp_path / "a", "other-encoder@2.0", DIM, ArraySource(labels, vecs))
    other.close()
    # Someone copies the other model's files under this model's name.
    mine = VectorIndex.create(tmp_path / "b", MODEL, DIM)
    (tmp_path / "b").mkdir(exist_ok=True)
    shutil.copy(other.meta_path, mine.meta_path)
    for p in (tmp_path / "a").glob("*.hnsw"):
        shutil.copy(p, tmp_path / "b" / p.name)
    with pytest.raises(VectorIndexError, match="other-encoder@2.0"):
        VectorIndex.open(tmp_path / "b", MODEL, DIM)
    # Same model key, but the model now makes another embedding size.
    with pytest.raises(VectorIndexError, match="64"):
        VectorIndex.open(tmp_path / "a", "other-encoder@2.0", 64)
    fixed = VectorIndex.open(tmp_path / "b", MODEL, DIM, ArraySource(labels, vecs))
    assert fixed.report.action == "rebuilt" and "other-encoder@2.0" in fixed.report.reason


def test_deleted_never_come_back(tmp_path: Path, data, assert_topk) -> None:
    labels, vecs = data
    vi = VectorIndex.open(tmp_path, MODEL, DIM, ArraySource(labels, vecs))
    gone = labels[:50]
    assert vi.mark_deleted(gone) == 50
    assert vi.mark_deleted(gone) == 0  # idempotent
    gone_set = set(gone.tolist())

    def check(v: VectorIndex) -> None:
        for mode in ("hnsw", "exact", "auto"):
            res = v.search(vecs[:50], k=20, mode=mode)
            assert_topk(res, vecs[:50], labels, vecs, 20, labels[50:], min_recall=1.0 if mode == "exact" else 0.9)
        res = v.search(vecs[:50], k=20, candidates=labels[:200])
        assert res.method == "exact-candidates"
        assert_topk(res, vecs[:50], labels, vecs, 20, labels[50:200])
        res = v.search(vecs[:5], k=20, filter=lambda l: True)
        assert_topk(res, vecs[:5], labels, vecs, 20, labels[50:], min_recall=0.9)
        only_gone = v.search(vecs[0], k=5, candidates=gone)
        assert only_gone.method == "empty" and "no indexed embedding" in only_gone.reason
        with pytest.raises(QueryError, match="not in the index"):
            v.get_vectors(gone[:1])

    check(vi)
    vi.close()
    # The store still lists them (its delete not yet committed): the index keeps them hidden
    # only if the store agrees, so reopen against the store without them.
    source = ArraySource(labels[50:], vecs[50:])
    reopened = VectorIndex.open(tmp_path, MODEL, DIM, source)
    assert reopened.report.action == "loaded" and gone_set <= reopened.deleted_labels
    check(reopened)


def test_stale_index_catches_up_with_store(tmp_path: Path, data, assert_topk) -> None:
    labels, vecs = data
    VectorIndex.open(tmp_path, MODEL, DIM, ArraySource(labels[:3000], vecs[:3000])).close()
    # Meanwhile the store gained 1000 embeddings and lost 10.
    keep = np.r_[np.arange(10, 4000)]
    vi = VectorIndex.open(tmp_path, MODEL, DIM, ArraySource(labels[keep], vecs[keep]))
    assert vi.report.action == "caught-up"
    assert (vi.report.added, vi.report.removed) == (1000, 10)
    assert len(vi) == 3990
    assert vi.search(vecs[3500], k=1).labels[0, 0] == labels[3500]
    assert_topk(vi.search(vecs[0], k=10), vecs[0], labels, vecs, 10, labels[keep], min_recall=0.9)
    assert VectorIndex.open(tmp_path, MODEL, DIM, ArraySource(labels[keep], vecs[keep])).report.action == "loaded"


def test_growth_by_resize_and_pending_vectors(tmp_path: Path) -> None:
    vi = VectorIndex.create(tmp_path, MODEL, DIM, IndexParams(initial_capacity=16))
    vecs = clustered(3000, seed=3)
    for s in range(0, 3000, 500):
        vi.add(np.arange(s, s + 500), vecs[s : s + 500])
    assert len(vi) == 3000
    # Exact search before any save reads the vectors added since (no file yet).
    res = vi.search(vecs[2999], k=1, candidates=np.arange(2900, 3000))
    assert res.labels[0, 0] == 2999
    vi.save()
    vi.add([5000], vecs[:1] * -1)
    res = vi.search(-vecs[0], k=1, candidates=[5000, 1, 2])
    assert res.labels[0, 0] == 5000
    vi.close()
    assert len(VectorIndex.open(tmp_path, MODEL, DIM)) == 3001


def test_bad_queries_raise_clear_errors(tmp_path: Path, data) -> None:
    labels, vecs = data
    vi = VectorIndex.open(tmp_path, MODEL, DIM, ArraySource(labels, vecs))
    with pytest.raises(QueryError, match="has 16 values.*32-value"):
        vi.search(np.ones(16, np.float32), k=3)
    with pytest.raises(QueryError, match="NaN"):
        vi.search(np.full(DIM, np.nan, np.float32), k=3)
    with pytest.raises(QueryError, match="all zeros"):
        vi.search(np.zeros(DIM, np.float32), k=3)
    with pytest.raises(QueryError, match="k must be positive"):
        vi.search(vecs[0], k=0)
    with pytest.raises(QueryError):
        vi.add([1, 1], vecs[:2])
    nothing = vi.search(vecs[0], k=5, candidates=[123456789])
    assert nothing.method == "empty" and nothing.hits() == []


def test_filter_and_exclude_are_honoured(tmp_path: Path, data, assert_topk) -> None:
    labels, vecs = data
    vi = VectorIndex.open(tmp_path, MODEL, DIM, ArraySource(labels, vecs))
    allowed = set(labels[::3].tolist())
    res = vi.search(vecs[:20], k=10, filter=allowed.__contains__)
    assert res.method == "hnsw-filtered"
    assert_topk(res, vecs[:20], labels, vecs, 10, allowed, min_recall=0.9)
    res = vi.search(vecs[0], k=5, exclude=[labels[0]])
    assert_topk(res, vecs[0], labels, vecs, 5, labels[1:], min_recall=0.8)
    big = labels[: 3000]
    res = vi.search(vecs[:5], k=10, candidates=big, mode="hnsw")
    assert_topk(res, vecs[:5], labels, vecs, 10, big, min_recall=0.9)
    exact = vi.search(vecs[:5], k=10, candidates=labels[:300])  # small pool: exact, so equal
    assert exact.method == "exact-candidates"
    assert_topk(exact, vecs[:5], labels, vecs, 10, labels[:300])
    # Fewer matches than k: both come back, the rest is padding, never an error.
    res = vi.search(vecs[0], k=10, filter={int(labels[1]), int(labels[2])}.__contains__, mode="hnsw")
    assert {l for l, _ in res.hits()} == {int(labels[1]), int(labels[2])}
    assert_topk(res, vecs[0], labels, vecs, 10, labels[1:3])


def test_concurrent_add_and_query_threads(tmp_path: Path) -> None:
    vecs = clustered(6000, seed=11)
    vi = VectorIndex.create(tmp_path, MODEL, DIM, IndexParams(initial_capacity=64))
    vi.add(np.arange(500), vecs[:500])
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer() -> None:
        try:
            for s in range(500, 6000, 250):
                vi.add(np.arange(s, s + 250), vecs[s : s + 250])
                vi.mark_deleted([s])
                if s % 1500 == 0:
                    vi.save()
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)
        finally:
            stop.set()

    def reader(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            while not stop.is_set():
                q = vecs[rng.integers(0, 6000)]
                deleted_before = vi.deleted_labels
                for res in (vi.search(q, k=10, mode="hnsw"), vi.search(q, k=5, candidates=np.arange(0, 400))):
                    got = res.labels[res.labels >= 0]
                    assert not set(got.tolist()) & deleted_before
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[0]
    assert len(vi) == 6000 - len(range(500, 6000, 250))
    vi.close()
    assert VectorIndex.open(tmp_path, MODEL, DIM).report.action == "loaded"


def test_rebuild_cancel_leaves_index_untouched(tmp_path: Path, data) -> None:
    labels, vecs = data
    vi = VectorIndex.open(tmp_path, MODEL, DIM, ArraySource(labels[:1000], vecs[:1000]))
    before = json.loads(vi.meta_path.read_text())
    cancel = threading.Event()
    seen: list[tuple[int, int]] = []

    def progress(done: int, total: int, message: str) -> None:
        seen.append((done, total))
        if done >= 1000:
            cancel.set()

    with pytest.raises(Cancelled):
        vi.rebuild(ArraySource(labels, vecs), progress=progress, cancel=cancel, batch_size=500)
    assert seen and seen[-1][1] == 4000
    assert len(vi) == 1000 and json.loads(vi.meta_path.read_text()) == before


def test_label_digest_matches_sql_formula() -> None:
    import sqlite3

    labels = np.array([0, 5, 2**40 + 3, 17, 2**31 - 1], np.int64)
    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE embedding (label INTEGER)")
    con.executemany("INSERT INTO embedding VALUES (?)", [(int(x),) for x in labels])
    row = con.execute("SELECT count(*), coalesce(sum(label), 0), coalesce(sum(((label % 2147483647) * "
                      "1103515245) % 2147483647), 0) FROM embedding").fetchone()
    assert list(row) == LabelDigest.of(labels).as_list()
    assert LabelDigest.of(labels[::-1]) == LabelDigest.of(labels)
    assert LabelDigest.of(labels[1:]) != LabelDigest.of(labels)


def test_readers_writer_lock_excludes_writers() -> None:
    lock = ReadWriteLock()
    inside: list[str] = []
    with lock.read():
        t = threading.Thread(target=lambda: lock.write().__enter__() or inside.append("w"))
        t.start()
        t.join(timeout=0.2)
        assert t.is_alive() and not inside  # writer waits for the reader
    t.join(timeout=2)
    assert inside == ["w"]


def test_background_open_answers_exactly_until_graph_is_loaded(tmp_path: Path, data) -> None:
    labels, vecs = data
    VectorIndex.open(tmp_path, MODEL, DIM, ArraySource(labels, vecs)).close()
    vi = VectorIndex.open(tmp_path, MODEL, DIM, background=True)
    first = vi.search(vecs[42], k=3)  # graph may still be loading: answered exactly then
    assert first.labels[0, 0] == labels[42] and first.method in ("exact-loading", "hnsw")
    vi.add([10**9], vecs[:1])  # writers wait for the load instead of failing
    assert vi.wait_ready(timeout=30)
    assert vi.search(vecs[42], k=3).method == "hnsw" and len(vi) == 4001


def test_corrupt_labels_sidecar_is_detected(tmp_path: Path, data) -> None:
    labels, vecs = data
    VectorIndex.open(tmp_path, MODEL, DIM, ArraySource(labels, vecs)).close()
    npy = next(tmp_path.glob("*.labels.npy"))
    raw = bytearray(npy.read_bytes())
    raw[-3] ^= 0x01
    npy.write_bytes(bytes(raw))
    with pytest.raises(VectorIndexError, match="labels file"):
        VectorIndex.open(tmp_path, MODEL, DIM)
    assert VectorIndex.open(tmp_path, MODEL, DIM, ArraySource(labels, vecs)).report.action == "rebuilt"


def test_heavily_deleted_index_is_compacted_on_open(tmp_path: Path, data) -> None:
    labels, vecs = data
    vi = VectorIndex.open(tmp_path, MODEL, DIM, ArraySource(labels, vecs))
    vi.mark_deleted(labels[:1500])
    assert vi.needs_compaction
    vi.close()
    again = VectorIndex.open(tmp_path, MODEL, DIM, ArraySource(labels[1500:], vecs[1500:]))
    assert again.report.action == "rebuilt" and "compacting" in again.report.reason
    assert not again.deleted_labels and len(again) == 2500
    assert read_hnsw_header(next(tmp_path.glob("*.hnsw"))).element_count == 2500
