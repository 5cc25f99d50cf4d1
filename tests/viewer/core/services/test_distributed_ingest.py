"""``casebook ingest --ray``: a local Ray with 2 workers gives the same library as the plain
in-process ingest + embed of the same files, resumes without storing anything twice, and names
the missing extra when Ray is absent. Real DICOM (shared CTs and phantom series), real SQLite,
real ONNX encoder, real hnswlib, a real local Ray."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="ray is in the test extra (scripts/setup.sh --test)")

from casebook.index.case_store.context_maps import ContextMapStore  # noqa: E402
from casebook.viewer.core.config import Settings  # noqa: E402
from casebook.viewer.core.demo.phantom import PhantomOptions, generate_library  # noqa: E402
from casebook.viewer.core.services.anatomy import IMAGE_RULE  # noqa: E402
from casebook.viewer.core.services.distributed import (  # noqa: E402
    RayCluster, RayUnavailable, ingest_on_ray, start_local_ray)
from casebook.viewer.core.services.import_pipeline import embed_and_index  # noqa: E402
from casebook.viewer.core.services.ingest import ingest  # noqa: E402
from casebook.viewer.core.services.library import open_store  # noqa: E402
from casebook.viewer.core.services.regions import register  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    """One small local Ray for the module (2 workers, no dashboard, a 200 MB object store):
    ``ingest_on_ray`` uses a Ray that is already up and leaves it running."""
    start_local_ray(2, object_store_bytes=200 * 1024 * 1024)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, need_shared) -> list[Path]:
    ct = need_shared("dicom", "dcm_qa_ct", "In", "Philips", "S21570", "S4010")
    phantom = tmp_path_factory.mktemp("phantom")
    generate_library(phantom, PhantomOptions(patients=1, size=64, slices=12, big_slices=0, follow_up_share=1.0))
    return [ct, phantom]


def _library(store, settings: Settings) -> dict:
    """Everything the comparison looks at, keyed by what does not depend on row ids."""
    model = store.list_models()[0]
    regions, desc = register(store)
    readings = ContextMapStore(store).anatomy([se.id for se in store.list_series()], IMAGE_RULE)
    out = {}
    for se in store.list_series():
        emb = store.get_embeddings(model.id, [se.id])
        order = np.argsort(emb.slice_indices)
        rows, rvecs = regions.regions_of_series(desc.id, se.id)
        out[se.key] = {"slices": se.slice_count, "modality": se.modality,
                       "files": sorted(f.path for f in store.series_files(se.id)),
                       "slice_indices": emb.slice_indices[order].tolist(), "vectors": emb.vectors[order],
                       "regions": [(tuple(r.box), r.family, round(r.saliency, 6)) for r in rows], "rvecs": rvecs,
                       "anatomy": readings.get(se.id)}  # what its context map shows, read on the worker
    return out


def test_ray_ingest_equals_in_process_and_resumes(local_ray, corpus, tmp_path: Path) -> None:
    plain_settings = Settings(library_dir=tmp_path / "plain", ingest_workers=2)
    store = open_store(plain_settings)
    try:
        summary = ingest(corpus, store, workers=2)
        plain_index = embed_and_index(store, plain_settings)
        plain = _library(store, plain_settings)
    finally:
        store.close()

    ray_settings = Settings(library_dir=tmp_path / "ray")
    seen: list[str] = []
    store = open_store(ray_settings)
    try:
        rep = ingest_on_ray(corpus, store, ray_settings, workers=2, progress=lambda d, t, m="": seen.append(m))
        distributed = _library(store, ray_settings)
    finally:
        store.close()
    assert rep.workers == 2 and not rep.ingest.cancelled
    assert rep.ingest.series_stored == summary.series_stored >= 3
    assert rep.ingest.files_stored == summary.files_stored
    assert rep.index.embedded == plain_index.embedded == len(plain)
    assert rep.index.vectors == plain_index.vectors and rep.index.searchable, rep.index.text()
    assert rep.index.regions.done == len(plain) and rep.index.regions.indexed == plain_index.regions.indexed
    assert {"reading headers", "storing series", "embedding series"} <= set(seen)

    assert distributed.keys() == plain.keys()
    for key, want in plain.items():
        got = distributed[key]
        assert (got["slices"], got["modality"], got["files"]) == (want["slices"], want["modality"], want["files"])
        assert got["slice_indices"] == want["slice_indices"]
        np.testing.assert_allclose(got["vectors"], want["vectors"], atol=1e-5)
        assert got["regions"] == want["regions"]
        assert got["anatomy"] == want["anatomy"] is not None
        np.testing.assert_allclose(got["rvecs"], want["rvecs"], atol=1e-6)
    assert sum(len(v["regions"]) for v in plain.values()) > 0  # findings were compared, not two empty lists

    # a second run (a restart after an interruption, or the same command again) stores nothing new
    store = open_store(ray_settings)
    try:
        again = ingest_on_ray(corpus, store, ray_settings, workers=2)
        assert _library(store, ray_settings).keys() == plain.keys()
    finally:
        store.close()
    assert (again.ingest.series_stored, again.ingest.images_stored, again.ingest.files_stored) == (0, 0, 0)
    assert again.ingest.files_unchanged == summary.files_stored
    assert (again.index.embedded, again.index.regions.done, again.index.remaining) == (0, 0, 0)
    assert again.index.vectors == plain_index.vectors


def test_cancel_while_encoding_leaves_whole_series_and_resumes(local_ray, corpus, tmp_path: Path) -> None:
    import threading

    settings = Settings(library_dir=tmp_path / "ray")
    cancel = threading.Event()

    def progress(done: int, total: int, message: str = "") -> None:
        if message == "embedding series" and done >= 1:  # one series written: stop now
            cancel.set()

    store = open_store(settings)
    try:
        rep = ingest_on_ray(corpus, store, settings, workers=2, progress=progress, cancel=cancel)
        assert rep.ingest.cancelled and rep.ingest.series_stored >= 3
        model = store.list_models()[0]
        regions, desc = register(store)
        series = [se.id for se in store.list_series()]
        with_vectors = {int(s) for s in store.get_embeddings(model.id).series_ids}
        missing_regions = set(regions.series_missing_regions(desc.id))
        assert 1 <= len(with_vectors) < len(series)  # stopped part-way, between series
        assert with_vectors == set(series) - missing_regions  # each series has both or neither
        again = ingest_on_ray(corpus, store, settings, workers=2)
        assert not again.ingest.cancelled and again.ingest.series_stored == 0
        assert again.index.embedded == len(series) - len(with_vectors) and again.index.remaining == 0
        assert not regions.series_missing_regions(desc.id)
    finally:
        store.close()


def test_only_the_distributed_module_imports_ray() -> None:
    import re

    root = Path(__file__).resolve().parents[4]
    pattern = re.compile(r"^\s*(import ray\b|from ray\b)", re.MULTILINE)
    hits = sorted(str(p.relative_to(root)) for pkg in ("common", "viewer", "index", "inference", "resources")
                  for p in (root / pkg).rglob("*.py") if pattern.search(p.read_text(encoding="utf-8")))
    assert hits == ["viewer/core/services/distributed.py"]


def test_cli_without_ray_names_the_extra_and_creates_nothing(tmp_path: Path) -> None:
    import subprocess

    lib = tmp_path / "library"
    code = ("import sys; sys.modules['ray'] = None; from casebook.viewer.cli import main; "
            f"sys.exit(main(['--library', {str(lib)!r}, 'ingest', '--ray', {str(tmp_path)!r}]))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert "casebook[ray]" in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert not lib.exists()


def test_missing_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as on an installation without the extra
    with pytest.raises(RayUnavailable, match=r"casebook\[ray\]"):
        RayCluster.check_installed()
