"""The memory-mapped search backend (``_hnswmap``) against hnswlib itself, on real index files.

An index opened from disk is searched in place through a memory map; additions go to an
in-memory delta saved as its own small file, deletions to tombstones, until a save merges them
into a new base file. These tests check that the mapped backend answers like hnswlib, honours
deletions and filters, that writes never rewrite the base file yet survive reopening, that
searches run safely through saves and merges, and that a damaged file is an error, never a crash.
"""
from __future__ import annotations

import json
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
    ref = _hnswlib_index(directory / vi._meta.index_file, vi.params.ef)
    for label in labels[:40].tolist():  # deletions since the base file are tombstones in the sidecar
        ref.mark_deleted(label)
    ref_l, ref_d = ref.knn_query(q, k=10)
    agree = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(mine.labels.tolist(), ref_l.tolist())])
    assert agree >= 0.99  # same algorithm; only float summation order differs
    np.testing.assert_allclose(np.sort(mine.scores, axis=1)[:, ::-1], np.sort(1 - ref_d, axis=1)[:, ::-1], atol=1e-5)
    exact = vi.search(q, k=10, mode="exact")
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(mine.labels.tolist(), exact.labels.tolist())])
    assert recall >= 0.95
    assert vi.backend == "mapped"  # reading never loads the writable graph


def test_mapped_search_honours_deletes_filters_and_exclusions(saved, assert_topk) -> None:
    directory, labels, vecs = saved
    vi = VectorIndex.open(directory, MODEL, DIM)
    live = labels[40:]
    res = vi.search(vecs[:40], k=10, mode="hnsw")  # queries sit right on the deleted vectors
    assert_topk(res, vecs[:40], labels, vecs, 10, live, min_recall=0.9)  # full rows, none deleted
    allowed = labels[40::4]
    res = vi.search(vecs[:20], k=10, candidates=allowed, mode="hnsw")
    assert res.method == "hnsw-filtered"
    assert_topk(res, vecs[:20], labels, vecs, 10, allowed, min_recall=0.9)
    res = vi.search(vecs[100], k=5, exclude=[labels[100]], mode="hnsw")
    assert_topk(res, vecs[100], labels, vecs, 5, np.setdiff1d(live, labels[100:101]), min_recall=0.8)
    odd = vi.search(vecs[:5], k=10, filter=lambda l: l % 2 == 1, mode="hnsw")
    assert_topk(odd, vecs[:5], labels, vecs, 10, live[live % 2 == 1], min_recall=0.9)
    few = vi.search(vecs[200], k=10, candidates=labels[[200, 201]], mode="hnsw")
    assert {l for l, _ in few.hits()} == {int(labels[200]), int(labels[201])}
    assert (few.labels[0, 2:] == -1).all() and np.isneginf(few.scores[0, 2:]).all()
    assert vi.backend == "mapped"


def test_writes_go_to_a_delta_and_never_rewrite_the_base(saved, assert_topk) -> None:
    directory, labels, vecs = saved
    vi = VectorIndex.open(directory, MODEL, DIM)
    base = directory / vi._meta.index_file
    base_bytes = base.read_bytes()
    new = clustered(10, seed=99)
    vi.add(np.arange(10) + 10**8, new)
    replaced = clustered(1, seed=123)
    vi.add([labels[700]], replaced)  # a new vector for a label the base file holds
    assert vi.mark_deleted(labels[[500, 501]]) == 2
    assert vi.backend == "mapped" and vi.delta_count == 11

    # What each label holds now (numpy ground truth): labels[700] has its replacement vector.
    every_l = np.concatenate([labels, np.arange(10) + 10**8, np.arange(30) + 10**7])
    every_v = np.concatenate([vecs, new, clustered(30, seed=7)])
    every_v[700] = replaced[0]

    def check(v: VectorIndex, extra: int = 0) -> None:
        for mode in ("hnsw", "exact"):
            assert v.search(new[3], k=1, mode=mode).labels[0, 0] == 10**8 + 3, mode
            got = v.search(vecs[500:502], k=10, mode=mode)
            assert_topk(got, vecs[500:502], every_l, every_v, 10, v.live_labels,
                        min_recall=1.0 if mode == "exact" else 0.8)  # full rows, 500 and 501 gone
            assert v.search(replaced[0], k=1, mode=mode).labels[0, 0] == labels[700], mode
            old = v.search(vecs[700], k=10, mode=mode)  # the old vector is gone with its copy
            assert labels[700] not in old.labels[0, :1].tolist(), mode
        np.testing.assert_allclose(v.get_vectors([labels[700]])[0], replaced[0], atol=1e-6)
        pool = np.concatenate([labels[1000:1500], [10**8 + 3]])
        got = v.search(new[3], k=5, candidates=pool, mode="hnsw")
        assert got.labels[0, 0] == 10**8 + 3
        assert_topk(got, new[3], every_l, every_v, 5, pool, min_recall=0.8)
        got = v.search(new[3], k=5, candidates=labels[1000:1500], mode="hnsw")  # delta not in the pool
        assert_topk(got, new[3], every_l, every_v, 5, labels[1000:1500], min_recall=0.8)
        got = v.search(new[3], k=5, exclude=[10**8 + 3], mode="hnsw")
        assert 10**8 + 3 not in got.labels[0].tolist()
        live = v.live_labels
        assert_topk(got, new[3], every_l, every_v, 5, live[live != 10**8 + 3], min_recall=0.8)
        assert len(v) == 5000 - 40 + 10 - 2 + extra

    check(vi)
    vi.save()
    assert base.read_bytes() == base_bytes  # saving wrote the delta and the sidecar only
    assert vi._meta.delta_file and (directory / vi._meta.delta_file).stat().st_size < len(base_bytes) / 20
    vi.close()
    again = VectorIndex.open(directory, MODEL, DIM, ArraySource(
        np.concatenate([np.delete(labels[40:], [460, 461]), np.arange(10) + 10**8]),
        np.concatenate([np.delete(vecs[40:], [460, 461], axis=0), new])))
    assert again.backend == "mapped" and again.delta_count == 11
    check(again)
    # Past the merge threshold a save folds the delta into a new base file.
    again.params.delta_min_merge, again.params.delta_fraction = 20, 0.0
    more = clustered(30, seed=7)
    again.add(np.arange(30) + 10**7, more)
    again.save()
    assert again.backend == "mapped" and again.delta_count == 0 and not again._meta.delta_file
    assert again._meta.index_file != base.name and not base.exists()
    check(again, extra=30)
    assert again.search(more[5], k=1, mode="hnsw").labels[0, 0] == 10**7 + 5
    again.close()
    final = VectorIndex.open(directory, MODEL, DIM)
    assert final.backend == "mapped" and final.delta_count == 0
    check(final, extra=30)
    assert not list(directory.glob("*.tmp")) and len(list(directory.glob("*.hnsw"))) == 1


@pytest.mark.parametrize("background", [False, True])
def test_saved_delta_opens_without_the_mapping_module(saved, monkeypatch, background: bool,
                                                      assert_topk) -> None:
    """A build without _hnswmap loads base + delta + tombstones into one hnswlib graph."""
    directory, labels, vecs = saved
    vi = VectorIndex.open(directory, MODEL, DIM)
    new = clustered(10, seed=42)
    vi.add(np.arange(10) + 10**8, new)
    vi.mark_deleted(labels[[900, 901]])
    vi.close()
    monkeypatch.setattr(VectorIndex, "use_mapped", False)
    full = VectorIndex.open(directory, MODEL, DIM, background=background)
    assert full.wait_ready(timeout=60) and full.backend == "hnswlib"
    assert full.search(new[4], k=1, mode="hnsw").labels[0, 0] == 10**8 + 4
    every_l, every_v = np.concatenate([labels, np.arange(10) + 10**8]), np.concatenate([vecs, new])
    got = full.search(vecs[900:902], k=10, mode="hnsw")
    assert_topk(got, vecs[900:902], every_l, every_v, 10, full.live_labels, min_recall=0.8)
    assert not {int(labels[900]), int(labels[901])} & set(full.live_labels.tolist())
    got = full.search(vecs[:40], k=10, mode="hnsw")
    assert_topk(got, vecs[:40], every_l, every_v, 10, full.live_labels, min_recall=0.9)
    assert not set(labels[:40].tolist()) & set(full.live_labels.tolist())
    full.add([10**8 + 50], clustered(1, seed=1))
    full.close()  # writes one full generation: the delta is folded in
    monkeypatch.setattr(VectorIndex, "use_mapped", True)
    back = VectorIndex.open(directory, MODEL, DIM)
    assert back.backend == "mapped" and back.delta_count == 0 and len(back) == 5000 - 40 + 10 - 2 + 1
    assert back.search(new[4], k=1, mode="hnsw").labels[0, 0] == 10**8 + 4


def test_searches_run_while_a_writer_adds_saves_and_merges(saved) -> None:
    directory, labels, vecs = saved
    vi = VectorIndex.open(directory, MODEL, DIM)
    vi.params.delta_min_merge, vi.params.delta_fraction = 120, 0.0  # the loop below crosses it once
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
    generations = set()
    for s in range(0, 200, 50):
        vi.add(np.arange(s, s + 50) + 10**9, clustered(50, seed=1000 + s))
        vi.save()
        generations.add(vi._meta.index_file)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors[0]
    assert len(generations) == 2  # deltas saved, then one merge into a new base file
    assert vi.backend == "mapped" and len(vi) == 5000 - 40 + 200 and vi.delta_count == 50


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
    warmer = threading.Thread(target=graph.warm)  # what open() runs in the background
    warmer.start()
    hits = graph.knn_query(clustered(20, seed=4), 5, 32)[0]  # searches go on meanwhile (no GIL held)
    warmer.join(timeout=30)
    assert not warmer.is_alive() and (hits >= 0).all() and graph.warm() == path.stat().st_size
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


def test_sidecar_format_versions(saved) -> None:
    """Sidecars of format 1 (before deltas) still open; a format from the future is refused."""
    directory, labels, vecs = saved
    meta_path = next(directory.glob("*.json"))
    meta = json.loads(meta_path.read_text())
    meta["format"] = 1
    meta_path.write_text(json.dumps(meta))
    vi = VectorIndex.open(directory, MODEL, DIM)
    assert vi.report.action == "loaded" and len(vi) == 5000 - 40
    vi.add([10**8], clustered(1, seed=3))
    vi.close()
    assert json.loads(meta_path.read_text())["format"] == 2  # a delta: written as format 2
    meta = json.loads(meta_path.read_text())
    meta["format"] = 99
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(VectorIndexError, match="format 99"):
        VectorIndex.open(directory, MODEL, DIM)


_EXIT_WHILE_WARMING = r"""
import os, sys, time
from pathlib import Path
from casebook.index.vector_index import VectorIndex
d = Path(sys.argv[1])
for f in d.iterdir():  # cold cache: warming takes a while
    fd = os.open(f, os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)
vi = VectorIndex.open(d, sys.argv[2], int(sys.argv[3]))
class SlowTeardown:  # a slow GUI teardown during interpreter finalization
    def __del__(self):
        time.sleep(0.5)
keep = SlowTeardown()
"""


def test_exit_while_warming_is_clean(tmp_path: Path) -> None:
    """The background warm-up is stopped before shutdown: no abort when the app exits mid-way."""
    import subprocess
    import sys

    vecs = clustered(20000)
    vi = VectorIndex.create(tmp_path, MODEL, DIM)
    vi.add(np.arange(20000), vecs)
    vi.close()
    with open(next(tmp_path.glob("*.hnsw")), "rb") as fh:
        graph = _hnswmap.MappedHnsw(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ), DIM)
    assert graph.warm() > 0
    graph.stop_warm()  # what the shutdown hook does: a running or later warm() returns at once
    assert graph.warm() == 0
    for _ in range(2):
        run = subprocess.run([sys.executable, "-c", _EXIT_WHILE_WARMING, str(tmp_path), MODEL, str(DIM)],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr[-2000:]
        assert "terminate" not in run.stderr


def test_two_writers_on_one_library_never_leave_a_dangling_sidecar(saved) -> None:
    """A reading-room GUI and a CLI ingest with the same index open (two instances stand in for
    two processes: the file lock is per open file). Whatever order they save in, the sidecar
    always names files that exist, and the next open catches up from the store without a rebuild."""
    directory, labels, vecs = saved
    live_l, live_v = labels[40:], vecs[40:]
    gui = VectorIndex.open(directory, MODEL, DIM)
    cli = VectorIndex.open(directory, MODEL, DIM)
    x, y, z = clustered(5, seed=201), clustered(5, seed=202), clustered(5, seed=203)
    cli.add(np.arange(5) + 10**8, x)
    cli.save()  # delta 1
    gui.add(np.arange(5) + 2 * 10**8, y)
    gui.save()  # same base: its own delta replaces the other's (both stay in the store)

    def check_files() -> None:
        meta = json.loads(next(directory.glob("*.json")).read_text())
        assert (directory / meta["index_file"]).is_file()
        assert not meta["delta_file"] or (directory / meta["delta_file"]).is_file()

    check_files()
    store_l = np.concatenate([live_l, np.arange(5) + 10**8, np.arange(5) + 2 * 10**8])
    store_v = np.concatenate([live_v, x, y])
    again = VectorIndex.open(directory, MODEL, DIM, ArraySource(store_l, store_v))
    assert again.report.action == "caught-up" and again.report.added == 5  # the CLI's, from the store
    assert again.search(x[2], k=1, mode="hnsw").labels[0, 0] == 10**8 + 2
    assert again.search(y[2], k=1, mode="hnsw").labels[0, 0] == 2 * 10**8 + 2
    again.close()
    # Now the CLI merges into a new base file while the GUI still has the old one mapped.
    cli.params.delta_min_merge, cli.params.delta_fraction = 0, 0.0
    cli.add(np.arange(5) + 3 * 10**8, z)
    cli.save()
    gui.add([4 * 10**8], clustered(1, seed=204))
    gui.save()  # its base is gone from the sidecar: it does not write a delta on top of it
    check_files()
    assert gui.search(vecs[300], k=1, mode="hnsw").labels[0, 0] == labels[300]  # still searchable
    gui.close()
    cli.close()
    check_files()
    final = VectorIndex.open(directory, MODEL, DIM, ArraySource(
        np.concatenate([store_l, np.arange(5) + 3 * 10**8, [4 * 10**8]]),
        np.concatenate([store_v, z, clustered(1, seed=204)])))
    assert final.report.action in ("loaded", "caught-up")
    assert final.search(z[1], k=1, mode="hnsw").labels[0, 0] == 3 * 10**8 + 1
    assert final.search(clustered(1, seed=204)[0], k=1, mode="hnsw").labels[0, 0] == 4 * 10**8
