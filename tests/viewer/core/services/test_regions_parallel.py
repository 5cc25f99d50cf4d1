"""The findings step is faster, not different: on real phantom DICOM (CT and MR), ingested into a
real SQLite store, the regions and descriptors are those the code made before it was sped up
(``tests/data/region_findings_golden.npz``, written by that code: run this file with
``--write`` to make it again after an intended change of the detector), and computing them in
worker processes stores exactly what one process stores, cancel included."""
from __future__ import annotations

import multiprocessing
import shutil
import sys
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from casebook.common.errors import Cancelled
from casebook.index.case_store import CaseStore
from casebook.inference.regions import detect
from casebook.viewer.core.demo.phantom import PhantomOptions, plan_library, write_study
from casebook.viewer.core.services.ingest import ingest
from casebook.viewer.core.services.library import load_stored_volume
from casebook.viewer.core.services import regions as findings_service
from casebook.viewer.core.services.regions import describe_volume, register

GOLDEN = Path(__file__).resolve().parents[3] / "data" / "region_findings_golden.npz"
FLOATS = ("diameter_mm", "volume_ml", "contrast", "saliency")


def make_library(root: Path) -> Path:
    """Two phantom patients (CT chest with a nodule, axial + coronal; MR brain T1 with a tumour) as
    DICOM files, ingested; returns the store's path (closed)."""
    plans = plan_library(PhantomOptions(patients=4, size=96, slices=24, big_slices=0, seed=20240601))
    mr = next(p for p in plans if p.series[0].contrast != "ct")
    for plan in (plans[0], replace(mr, series=mr.series[:1])):
        write_study(plan, root / "dicom", seed=20240601)
    db = root / "casebook.sqlite"
    store = CaseStore.open(db, create=True)
    try:
        ingest([root / "dicom"], store)
    finally:
        store.close()
    return db


def findings(store: CaseStore) -> dict[str, np.ndarray]:
    """Every series' findings as arrays keyed by series description (stable across libraries)."""
    out: dict[str, np.ndarray] = {}
    for se in store.list_series():
        family, rows, vecs = describe_volume(load_stored_volume(store, se.id), se.modality)
        key = se.description.replace(" ", "_")
        out[f"{key}/family"] = np.array(family)
        out[f"{key}/box"] = np.array([r.box for r in rows], np.int64).reshape(-1, 6)
        out[f"{key}/polarity"] = np.array([r.polarity for r in rows], np.int64)
        out[f"{key}/centre"] = np.array([r.centre for r in rows], np.float64).reshape(-1, 3)
        out[f"{key}/centre_lps"] = np.array([r.centre_lps or (np.nan,) * 3 for r in rows], np.float64).reshape(-1, 3)
        out[f"{key}/floats"] = np.array([[getattr(r, f) for f in FLOATS] for r in rows], np.float64).reshape(-1, 4)
        out[f"{key}/vectors"] = vecs
    return out


def stored(db: Path) -> tuple[list, dict]:
    """(per series: id, rows, vectors) and the region index labels per family, as stored."""
    store = CaseStore.open(db)
    try:
        regions, desc = register(store)
        per = [(se.id, *regions.regions_of_series(desc.id, se.id)) for se in sorted(store.list_series(),
                                                                                   key=lambda s: s.id)]
        labels = {f: regions.source(desc.id, f).labels().tolist() for f in regions.families(desc.id)}
        missing = regions.series_missing_regions(desc.id)
    finally:
        store.close()
    return per + [("missing", missing)], labels


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_library(tmp_path_factory.mktemp("findings"))


def copy_of(db: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / "copy.sqlite"
    shutil.copy(db, dst)
    return dst


def test_findings_are_those_of_the_code_before_the_speed_up(library: Path) -> None:
    store = CaseStore.open(library)
    try:
        got = findings(store)
    finally:
        store.close()
    want = dict(np.load(GOLDEN))
    assert sorted(got) == sorted(want)
    for key, w in want.items():
        g = got[key]
        assert g.shape == w.shape, key
        if g.dtype.kind in "iU":
            assert (g == w).all(), key
        else:
            np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6, err_msg=key)
    assert sum(len(v) for k, v in got.items() if k.endswith("/box")) >= 30  # a detector that finds things


@pytest.fixture(scope="module")
def serial(library: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[tuple[list, dict], list]:
    """What one process stores (the reference), and its progress calls."""
    db = copy_of(library, tmp_path_factory.mktemp("serial"))
    seen: list[tuple[int, int]] = []
    store = CaseStore.open(db)
    try:
        rep = findings_service.embed_regions(store, workers=1, progress=lambda d, t, m="": seen.append((d, t)))
    finally:
        store.close()
    assert rep.done == 3 and not rep.failed and rep.remaining == 0 and rep.regions > 30
    return stored(db), seen


def same_as(got: tuple[list, dict], want: tuple[list, dict]) -> None:
    assert [x[0] for x in got[0]] == [x[0] for x in want[0]] and got[1] == want[1]  # same series, same ids
    for (sid, rows_a, vec_a), (_, rows_b, vec_b) in zip(got[0][:-1], want[0][:-1]):
        assert rows_a == rows_b, sid
        assert np.array_equal(vec_a, vec_b), sid
    assert got[0][-1] == want[0][-1] == ("missing", [])


def test_workers_store_exactly_what_one_process_stores(library: Path, serial, tmp_path: Path) -> None:
    db = copy_of(library, tmp_path)
    seen: list[tuple[int, int]] = []
    store = CaseStore.open(db)
    try:
        rep = findings_service.embed_regions(store, workers=2, progress=lambda d, t, m="": seen.append((d, t)))
    finally:
        store.close()
    assert rep.done == 3 and not rep.failed and rep.remaining == 0
    assert seen == serial[1] == [(1, 3), (2, 3), (3, 3)]  # one step per series, in order
    same_as(stored(db), serial[0])
    assert not multiprocessing.active_children()  # the workers are gone


def test_cancel_stops_the_workers_keeps_what_was_written_and_the_rerun_finishes(library: Path, serial,
                                                                              tmp_path: Path) -> None:
    db = copy_of(library, tmp_path)
    token = threading.Event()
    store = CaseStore.open(db)
    try:
        with pytest.raises(Cancelled):
            findings_service.embed_regions(store, workers=2, cancel=token, progress=lambda d, t, m="": token.set())
        assert not multiprocessing.active_children()  # terminated, not left computing
        regions, desc = register(store)
        assert len(regions.series_missing_regions(desc.id)) == 2  # the first series is stored, whole
        rep = findings_service.embed_regions(store, workers=1)  # resumable: the rest, in this process
        assert rep.done == 2 and rep.remaining == 0
    finally:
        store.close()
    same_as(stored(db), serial[0])


def _reference(op: str, mask: np.ndarray, radius: int = 0) -> np.ndarray:
    img = sitk.GetImageFromArray(mask.astype(np.uint8))
    if op == "open":
        out = sitk.BinaryMorphologicalOpening(img, [radius] * 3, sitk.sitkBall)
    elif op == "fill":
        out = sitk.BinaryFillhole(img, fullyConnected=False)
    return sitk.GetArrayFromImage(out).astype(bool)


@pytest.mark.parametrize("seed", range(6))
def test_filters_on_the_bounding_box_equal_the_filters_on_the_whole_crop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in rng.integers(12, 30, 3))
    smooth = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(
        sitk.GetImageFromArray(rng.normal(size=shape).astype(np.float32)), 1.5))
    for level in (0.05, 0.15, 0.3):
        mask = smooth > level
        if seed % 2:  # objects touching the crop's border (its boundary rules must still apply)
            mask[:, :2] = True
        for r in (1, 2, 4):
            assert np.array_equal(detect._opening(mask, r), _reference("open", mask, r)), (level, r)
        assert np.array_equal(detect._fill_holes(mask), _reference("fill", mask))
        core = mask & (rng.random(shape) < 0.01)  # scattered over several components: ties and all
        lab = sitk.GetArrayFromImage(sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8))))
        near = lab[core & (lab > 0)]
        want = lab == np.bincount(near).argmax() if near.size else None
        got = detect._component_at(mask, core)
        assert (got is None and want is None) or np.array_equal(got, want), level
    hole = np.zeros((9, 9, 9), bool)
    hole[1:8, 1:8, 1:8] = True
    hole[4, 4, 4] = False
    assert detect._fill_holes(hole)[4, 4, 4] and not detect._fill_holes(np.zeros((5, 5, 5), bool)).any()
    assert detect._component_at(np.zeros((5, 5, 5), bool), np.ones((5, 5, 5), bool)) is None


def test_worker_count(monkeypatch: pytest.MonkeyPatch) -> None:
    ENV_WORKERS, findings_workers = findings_service.ENV_WORKERS, findings_service.findings_workers
    monkeypatch.delenv(ENV_WORKERS, raising=False)
    auto = findings_workers()
    assert 1 <= auto <= 8
    assert findings_workers(3) == 3
    monkeypatch.setenv(ENV_WORKERS, "1")
    assert findings_workers() == 1 and findings_workers(2) == 2
    monkeypatch.setenv(ENV_WORKERS, "lots")
    assert findings_workers() == auto


if __name__ == "__main__" and "--write" in sys.argv:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        db = make_library(Path(tmp))
        st = CaseStore.open(db)
        try:
            arrays = findings(st)
        finally:
            st.close()
    np.savez_compressed(GOLDEN, **arrays)
    print(f"wrote {GOLDEN}: {sum(len(v) for k, v in arrays.items() if k.endswith('/box'))} regions")
