"""Embeddings stay true to the images: regenerated series are embedded again (pixels rewritten
the same are not), and concurrent ``casebook embed`` runs share the work while searches go on
(real DICOM files, real store, the shipped ONNX encoder, real HNSW index, real processes)."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from casebook.index.case_store import CaseStore
from casebook.index.vector_index import VectorIndex
from casebook.viewer.core.config import load_settings
from casebook.viewer.core.services.embedding import embed_missing, open_encoder
from casebook.viewer.core.services.ingest import ingest
from casebook.viewer.core.services.search_open import open_store_search

from .reports_samples import write_ct


def write_cohort(root: Path, n: int, seed: int, slices: int = 4) -> None:
    for i in range(n):
        write_ct(root / f"s{i:02d}", study_uid=f"1.2.826.0.1.3680043.10.{100 + i}", patient_id=f"P{i % 5}",
                 slices=slices, seed=seed * 1000 + i)


def labels_by_series(store: CaseStore, model_id: int) -> dict[int, set[int]]:
    es = store.get_embeddings(model_id)
    out: dict[int, set[int]] = {}
    for lab, sid in zip(es.labels, es.series_ids):
        out.setdefault(int(sid), set()).add(int(lab))
    return out


@contextmanager
def three_embedded_series(tmp_path: Path) -> Iterator[tuple[object, Path, CaseStore, object, object, object]]:
    """(settings, DICOM folder, store, encoder, model, first embed report) of 3 ingested, embedded series."""
    settings = load_settings()
    data = tmp_path / "dicom"
    write_cohort(data, 3, seed=1)
    store = CaseStore.open(settings.database_path)
    try:
        ingest([data], store)
        enc = open_encoder(settings)
        first = embed_missing(store, enc)
        yield settings, data, store, enc, store.get_model(enc.provenance.name), first
    finally:
        store.close()


def regenerate_first_series(data: Path) -> None:
    """The first series rewritten with other pixels (what ``demo --force`` with another seed does)."""
    time.sleep(0.01)
    write_ct(data / "s00", study_uid="1.2.826.0.1.3680043.10.100", patient_id="P0", slices=4, seed=77)


def test_changed_images_are_embedded_again_and_unchanged_pixels_keep_their_vectors(
        library_dir: Path, tmp_path: Path) -> None:
    with three_embedded_series(tmp_path) as (_settings, data, store, enc, model, first):
        assert (first.done, first.remaining) == (3, 0)
        before = labels_by_series(store, model.id)
        assert embed_missing(store, enc).done == 0  # nothing changed: nothing to do
        # "demo --force": the first series regenerated with other pixels, the second rewritten
        # byte for byte the same (new mtime), the third left alone
        regenerate_first_series(data)
        write_ct(data / "s01", study_uid="1.2.826.0.1.3680043.10.101", patient_id="P1", slices=4, seed=1001)
        ingest([data], store)
        ids = sorted(before)
        assert [s for s, _ in store.series_needing_embeddings(model.id)] == ids[:2]
        again = embed_missing(store, enc)
        assert (again.done, again.reembedded, again.unchanged, again.remaining) == (1, 1, 1, 0)
        after = labels_by_series(store, model.id)
        assert not after[ids[0]] & before[ids[0]]  # new vectors, new labels
        assert after[ids[1]] == before[ids[1]] and after[ids[2]] == before[ids[2]]
        assert embed_missing(store, enc).done == 0


def test_concurrent_embed_runs_share_the_work_and_searches_never_fail(library_dir: Path, tmp_path: Path) -> None:
    settings = load_settings()
    data = tmp_path / "dicom"
    n = 8
    write_cohort(data, n, seed=1, slices=6)
    store = CaseStore.open(settings.database_path)
    try:
        ingest([data], store)
        enc = open_encoder(settings)
        embed_missing(store, enc)
        model = store.get_model(enc.provenance.name)
        next_label_before = store.get_embeddings(model.id).labels.max() + 1
        svc = open_store_search(settings, auto_encoder=False)  # builds the index file
        svc.close()
        time.sleep(0.01)
        write_cohort(data, n, seed=2, slices=6)  # every series regenerated
        ingest([data], store)
        assert len(store.series_needing_embeddings(model.id)) == n
        env = dict(os.environ, CASEBOOK_LIBRARY=str(library_dir))
        cmd = [sys.executable, "-m", "casebook.viewer.cli", "embed", "--no-regions"]  # the vectors, not findings
        errors: list[str] = []
        searches = 0
        stop = threading.Event()

        def search_loop() -> None:
            nonlocal searches
            sid = store.list_series()[0].id
            while not stop.is_set():
                try:
                    s = open_store_search(settings, auto_encoder=False)
                    try:
                        s.search(s.query_from_series(sid), k=5)
                    finally:
                        s.close()
                    searches += 1
                    stop.wait(0.05)  # leave the two cores to the embed runs most of the time
                except Exception as exc:  # noqa: BLE001 - any failure of a search is what this test catches
                    errors.append(f"{type(exc).__name__}: {exc}")

        t = threading.Thread(target=search_loop)
        t.start()
        try:
            runs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                    for _ in range(2)]
            outs = [r.communicate(timeout=300) for r in runs]
        finally:
            stop.set()
            t.join()
        assert all(r.returncode == 0 for r in runs), outs
        done = [int(o.split("embedded ")[1].split(" ")[0]) for o, _ in outs]
        assert sum(done) == n, outs  # each series embedded once, by one run or the other
        print("embed runs:", [o.strip() for o, _ in outs], "searches during them:", searches)
        assert errors == [] and searches > 0
        # every series got exactly one new set of labels (6 slices + the series vector)
        by = labels_by_series(store, model.id)
        assert len(by) == n and all(len(v) == 7 for v in by.values())
        assert all(min(v) >= next_label_before for v in by.values())
        assert store.get_embeddings(model.id).labels.max() + 1 == next_label_before + 7 * n
        assert store.claims(model.id) == {}
        # the index and the store agree afterwards
        index = VectorIndex.open(settings.index_dir, model.key, model.dim, store.embedding_source(model.id))
        try:
            live = np.sort(store.embedding_source(model.id).labels())
            probe = store.get_embeddings(model.id)
            got = index.search(probe.vectors, k=1)
            assert np.array_equal(got.labels[:, 0], probe.labels)  # each vector finds itself, a live label
            assert set(got.labels.ravel().tolist()) <= set(live.tolist())
        finally:
            index.close()
    finally:
        store.close()


def test_a_search_opened_before_a_re_embed_still_queries_the_re_embedded_series(
        library_dir: Path, tmp_path: Path) -> None:
    """The race CI once hit: another run replaces a series' vectors after this index was opened."""
    with three_embedded_series(tmp_path) as (settings, data, store, enc, model, _first):
        svc = open_store_search(settings, auto_encoder=False)
        try:
            sid = store.list_series()[0].id
            old = svc.query_from_series(sid).own_labels
            regenerate_first_series(data)
            ingest([data], store)
            assert embed_missing(store, enc).reembedded == 1
            new = labels_by_series(store, model.id)[sid]
            q = svc.query_from_series(sid)  # the open index is behind: caught up, not an error
            assert q.own_labels and set(q.own_labels) <= new and not set(old) & new
            assert len(svc.search(q, k=2).hits) == 2
        finally:
            svc.close()
