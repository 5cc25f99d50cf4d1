"""The real-data region-search check (issue 11) runs end to end on two patients of TCIA
Brain-Tumor-Progression: NIfTI written as real DICOM MR series, real ingest, real SQLite, real
findings and hnswlib index; a box on the later scan's tumour returns MR analogues only, with a
matched box inside the analogue's voxels. The figures themselves are the benchmark's
(``benchmarks/brain_tumour_retrieval.py``), not asserted here: it is a held-out check."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

_REPO = Path(__file__).resolve().parents[4]
_spec = importlib.util.spec_from_file_location("brain_tumour_retrieval", _REPO / "benchmarks" / "brain_tumour_retrieval.py")
btr = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = btr  # dataclasses look their module up there
_spec.loader.exec_module(btr)  # type: ignore[union-attr]


def test_two_patients_end_to_end(need_shared, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = need_shared("temporal", "brain_tumor_progression")
    lib = tmp_path / "library"
    monkeypatch.setenv("CASEBOOK_LIBRARY", str(lib))  # restored after the test (the module sets them too)
    monkeypatch.setenv("CASEBOOK_CONFIG", str(lib / "settings.toml"))
    scans, timings = btr.build_library(data, lib, ["01", "02"], log=lambda *_: None)

    # the written files are MR series of one patient each, the earlier scan dated first
    for p, (earlier, later) in scans.items():
        assert earlier.series_id != later.series_id
        files = sorted((lib / "dicom" / f"BTP-{p}").glob("*/IM0001.dcm"))  # folders named by study date
        heads = [pydicom.dcmread(x, stop_before_pixels=True) for x in files]
        assert len(heads) == 2 and heads[0].StudyDate < heads[1].StudyDate
        assert {h.PatientID for h in heads} == {f"BTP-{p}"} and {h.Modality for h in heads} == {"MR"}
        assert heads[0].SeriesInstanceUID == earlier.series_uid and heads[1].SeriesInstanceUID == later.series_uid
    assert timings["regions"] > 0

    rows, stored = btr.evaluate(lib, scans, margin=4, k=10)
    assert stored[1] == timings["regions"] and stored[3] == 4
    assert [r.patient for r in rows] == ["01", "02"]
    for r in rows:
        assert not r.error, r.error
        assert r.n_off > 0 and r.n_on > 0
        assert r.modalities == {"MR"}
        assert 0.0 <= r.p5 <= 0.4  # only the other patient's 2 series can count with the filter on
        k0, k1, j0, j1, i0, i1 = r.box
        later = scans[r.patient][1]
        assert k1 == k0 + 1 and later.mask_kji[k0, j0:j1, i0:i1].any()
    text = btr.report(rows, timings, stored=stored, margin=4, elapsed=1.0, load=(0.0, 0.0, 0.0))
    assert "top hit = same patient's earlier scan" in text and "P@5" in text


def test_box_and_overlap_rules() -> None:
    mask = np.zeros((3, 20, 30), bool)
    mask[1, 5:9, 10:14] = True
    mask[2, 6:7, 11:12] = True
    assert btr.largest_slice_box(mask, 2) == (1, 2, 3, 11, 8, 16)
    assert btr.largest_slice_box(mask, 50) == (1, 2, 0, 20, 0, 30)  # clipped to the image
    assert btr.overlaps(mask, (1, 2, 8, 9, 13, 20))
    assert not btr.overlaps(mask, (0, 1, 0, 20, 0, 30))
    assert not btr.overlaps(mask, (1, 3, 9, 20, 0, 30))
