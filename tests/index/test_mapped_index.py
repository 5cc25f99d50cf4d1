"""The memory-mapped search backend (``_hnswmap``) against hnswlib itself, on real index files.

An index opened from disk is searched in place through a memory map; hnswlib loads its private
copy only when a write comes. These tests check that the two answer alike, that the mapped
backend honours deletions and filters, that a write switches over without losing anything, and
that a damaged file is an error, never a crash.
"""
from __future__ import annotations

import mmap
import threading
from pathlib import Path

import hnswlib
import numpy as np
import pytest

from casebook.index import _hnswmap  # built by setup.py: CI must have it, so no skip
from casebook.index.errors import VectorIndexError
from casebook.index.vector_index import ArraySource, VectorIndex

DIM = 48
MODEL = "mapped-test@1"


def clustered(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(5).normal(size=(30, DIM))
    x = centers[rng.integers(0, 30, n)] + 0.4 * rng.normal(size=(n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    vecs = clustered(5000)
    labels = np.arange(5000, dtype=np.int64) * 5 + 11
    vi = VectorIndex.open(tmp_path, MODEL, DIM, ArraySource(labels, vecs))
    vi.mark_deleted(labels[:40])
    vi.close()
    return tmp_path, labels, vecs


def _hnswlib_index(path: Path, ef: int) -> hnswlib.Index:
    idx = hnswlib.Index(space="ip", dim=DIM)
    idx.load_index(str(path))
    idx.set_ef(ef)
    return idx


def test_open_maps_the_file_and_answers_like_hnswlib(saved) -> None:
    directory, labels, vecs = saved
    vi = VectorIndex.open(directory, MODEL, DIM, ArraySource(labels[40:], vecs[40:]))
    assert vi.report.action == "loaded" and vi.backend == "mapped"
    # The mapped graph costs no copy of the vectors: only link offsets and visited marks.
    assert vi.memory_bytes() < 5000 * DIM * 4
    q = clustered(300, seed=7)
    mine = vi.search(q, k=10, mode="hnsw")
    assert mine.method == "hnsw"
    ref_l, ref_d = _hnswlib_index(directory / vi._meta.index_file, vi.params.ef).knn_query(q, k=10)
    agree = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(mine.labels.tolist(), ref_l.tolist())])
    assert agree >= 0.99  # same algorithm; only float summation order differs
    np.testing.assert_allclose(np.sort(mine.scores, axis=1)[:, ::-1], np.sort(1 - ref_d, axis=1)[:, ::-1], atol=1e-5)
    exact = vi.search(q, k=10, mode="exact")
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(mine.labels.tolist(), exact.labels.tolist())])
    assert recall >= 0.95
    assert vi.backend == "mapped"  # reading never loads the writable graph


def test_mapped_search_honours_deletes_filters_and_exclusions(saved) -> None:
    directory, labels, vecs = saved
    vi = VectorIndex.open(directory, MODEL, DIM)
    gone = set(labels[:40].tolist())
    res = vi.search(vecs[:40], k=10, mode="hnsw")  # queries sit right on the deleted vectors
    assert not gone & set(res.labels.ravel().tolist())
    allowed = labels[40::4]
    res = vi.search(vecs[:20], k=10, candidates=allowed, mode="hnsw")
    assert res.method == "hnsw-filtered" and set(res.labels.ravel().tolist()) <= set(allowed.tolist())
    res = vi.search(vecs[100], k=5, exclude=[labels[100]], mode="hnsw")
    assert labels[100] not in res.labels[0].tolist() and len(res.hits()) == 5
    odd = vi.search(vecs[:5], k=10, filter=lambda l: l % 2 == 1, mode="hnsw")
    assert all(l % 2 == 1 for l in odd.labels.ravel().tolist())
    few = vi.search(vecs[200], k=10, candidates=labels[[200, 201]], mode="hnsw")
    assert {l for l, _ in few.hits()} == {int(labels[200]), int(labels[201])}
    assert (few.labels[0, 2:] == -1).all() and np.isneginf(few.scores[0, 2:]).all()
    assert vi.backend == "mapped"


def test_first_write_loads_the_graph_and_keeps_everything(saved) -> None:
    directory, labels, vecs = saved
    vi = VectorIndex.open(directory, MODEL, DIM)
    assert vi.backend == "mapped"
    new = clustered(10, seed=99)
    vi.add(np.arange(10) + 10**8, new)
    assert vi.backend == "hnswlib"
    assert vi.search(new[3], k=1).labels[0, 0] == 10**8 + 3
    assert vi.search(vecs[500], k=1).labels[0, 0] == labels[500]
    vi.close()
    again = VectorIndex.open(directory, MODEL, DIM)
    assert again.backend == "mapped" and len(again) == 5000 - 40 + 10
    assert again.search(new[3], k=1, mode="hnsw").labels[0, 0] == 10**8 + 3


def test_searches_run_while_a_writer_switches_backends(saved) -> None:
    directory, labels, vecs = saved
    vi = VectorIndex.open(directory, MODEL, DIM)
    # HNSW leaves a few elements unreachable (both backends alike): query the ones it finds.
    first = vi.search(vecs[40:], k=1, mode="hnsw").labels[:, 0]
    findable = np.flatnonzero(first == labels[40:]) + 40
    assert len(findable) > 4900
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            while not stop.is_set():
                i = int(rng.choice(findable))
                got = vi.search(vecs[i], k=5, mode="hnsw").labels[0]
                assert labels[i] in got, (i, got)
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    for s in range(0, 200, 50):
        vi.add(np.arange(s, s + 50) + 10**9, clustered(50, seed=1000 + s))
    vi.save()
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors[0]
    assert vi.backend == "hnswlib" and len(vi) == 5000 - 40 + 200


def test_damaged_links_raise_instead_of_crashing(saved) -> None:
    directory, labels, vecs = saved
    path = next(directory.glob("*.hnsw"))
    raw = bytearray(path.read_bytes())
    per = int.from_bytes(raw[24:32], "little")
    for row in range(0, 5000, 7):  # neighbour ids far outside the index in many layer-0 lists
        off = 96 + row * per
        raw[off : off + 2] = (3).to_bytes(2, "little")
        raw[off + 4 : off + 16] = (0xFFFFFFF0).to_bytes(4, "little") * 3
    graph = _hnswmap.MappedHnsw(memoryview(bytes(raw)), DIM)
    with pytest.raises(RuntimeError, match="corrupt"):
        for q in clustered(50, seed=3):
            graph.knn_query(q[None, :], 10, 64)
    with pytest.raises(RuntimeError, match="truncated|trailing|corrupt"):
        _hnswmap.MappedHnsw(memoryview(bytes(raw[:-9])), DIM)
    with pytest.raises(RuntimeError, match="inconsistent header"):
        _hnswmap.MappedHnsw(memoryview(bytes(raw)), DIM + 1)  # another model's dimension
    with pytest.raises(RuntimeError, match="shorter"):
        _hnswmap.MappedHnsw(memoryview(b"\0" * 10), DIM)
    with pytest.raises(ValueError, match="queries"):
        graph.knn_query(np.zeros((1, DIM + 3), np.float32), 5, 32)
    # Through VectorIndex a damaged file is caught by its checksum and rebuilt from the store.
    path.write_bytes(bytes(raw))
    with pytest.raises(VectorIndexError, match="checksum"):
        VectorIndex.open(directory, MODEL, DIM)
    fixed = VectorIndex.open(directory, MODEL, DIM, ArraySource(labels[40:], vecs[40:]))
    assert fixed.report.action == "rebuilt" and fixed.search(vecs[77], k=1).labels[0, 0] == labels[77]


def test_mapping_stays_valid_while_in_use(saved) -> None:
    directory, _, _ = saved
    path = next(directory.glob("*.hnsw"))
    with open(path, "rb") as fh:
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    graph = _hnswmap.MappedHnsw(mm, DIM)
    with pytest.raises(BufferError):
        mm.close()  # the graph holds the buffer: the pages cannot vanish under a search
    assert graph.element_count == 5000 and graph.kernel in ("avx2", "sse", "generic")
    del graph
    mm.close()


def test_random_damage_never_crashes(saved) -> None:
    """Flip random bytes anywhere in a real file: every open or search either works or raises."""
    directory, _, _ = saved
    raw = next(directory.glob("*.hnsw")).read_bytes()
    rng = np.random.default_rng(2024)
    queries = clustered(5, seed=8)
    outcomes = {"ok": 0, "refused": 0}
    for _ in range(300):
        buf = bytearray(raw)
        for pos in rng.integers(0, len(buf), size=int(rng.integers(1, 40))):
            buf[int(pos)] = int(rng.integers(0, 256))
        if rng.random() < 0.3:  # damage the header too, where sizes and offsets live
            for pos in rng.integers(0, 96, size=3):
                buf[int(pos)] = int(rng.integers(0, 256))
        try:
            graph = _hnswmap.MappedHnsw(memoryview(bytes(buf)), DIM)
            graph.knn_query(queries, 10, 64)
            outcomes["ok"] += 1
        except (RuntimeError, ValueError):
            outcomes["refused"] += 1
    assert outcomes["ok"] + outcomes["refused"] == 300 and outcomes["refused"] > 0
