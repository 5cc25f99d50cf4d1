"""Phantom generator: determinism, valid DICOM geometry, lesions where stated, follow-up changes."""
from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest

from casebook.viewer.core.demo.phantom import (LESION_KINDS, PhantomOptions, SeriesPlan, generate_library,
                                               iter_lesion_masks, lesion_volume_ml, plan_library, render_slice,
                                               write_study)

SMALL = PhantomOptions(patients=4, size=96, slices=16, big_slices=0, follow_up_share=1.0)


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_and_uids(tmp_path: Path) -> None:
    plan = plan_library(SMALL)[0]
    a = write_study(plan, tmp_path / "a", seed=SMALL.seed)
    b = write_study(plan, tmp_path / "b", seed=SMALL.seed)
    fa = [f for s in a.series for f in s.files]
    fb = [f for s in b.series for f in s.files]
    assert a.study_uid == b.study_uid and [s.series_uid for s in a.series] == [s.series_uid for s in b.series]
    assert _digest(fa) == _digest(fb)
    c = write_study(plan, tmp_path / "c", seed=SMALL.seed + 1)
    assert c.study_uid != a.study_uid


def test_files_are_valid_dicom_with_consistent_geometry(tmp_path: Path) -> None:
    studies = generate_library(tmp_path, SMALL)
    planes = set()
    for st in studies:
        for se in st.series:
            dss = [pydicom.dcmread(f) for f in se.files]
            ds0 = dss[0]
            assert "SYNTHETIC PHANTOM" in ds0.SeriesDescription and "SYNTHETIC PHANTOM" in ds0.StudyDescription
            assert ds0.Manufacturer == "Casebook phantom" and ds0.PatientName.family_name == "DEMO"
            assert ds0.SOPClassUID.name in ("CT Image Storage", "MR Image Storage")
            assert len({d.SOPInstanceUID for d in dss}) == len(dss)
            iop = np.array(ds0.ImageOrientationPatient, float)
            normal = np.cross(iop[:3], iop[3:])
            proj = np.array([np.dot(np.array(d.ImagePositionPatient, float), normal) for d in dss])
            steps = np.diff(proj)
            assert np.allclose(steps, float(ds0.SliceThickness), atol=1e-3)
            arr = ds0.pixel_array
            assert arr.shape == (ds0.Rows, ds0.Columns)
            planes.add("axial" if abs(normal[2]) > 0.9 else "other")
            if ds0.Modality == "CT":
                hu = arr * float(ds0.RescaleSlope) + float(ds0.RescaleIntercept)
                assert hu.min() < -900 and hu.max() > 100  # air outside, enhancing/bone inside
    assert planes == {"axial", "other"}


@pytest.mark.parametrize("kind", sorted(LESION_KINDS))
def test_lesion_differs_from_surroundings_as_designed(kind: str) -> None:
    from casebook.viewer.core.demo.phantom import _PLACES, LesionSpec

    organ = LESION_KINDS[kind][0]
    base = next(p for p in plan_library(PhantomOptions(patients=8, size=128, slices=24, big_slices=0))
                if (p.region == "brain") == (organ == "brain"))
    centre, place = _PLACES[organ][0]
    les = LesionSpec(kind, centre, 20.0 if organ != "bone" else 14.0, place)
    plan = replace(base, lesions=(les,), shift_mm=(0.0, 0.0, 0.0))
    healthy = replace(plan, lesions=())
    sp = next(s for s in plan.series if s.plane == "axial")
    if organ == "brain":
        sp = replace(sp, contrast="t1c")  # the enhancing rim is designed for post-contrast T1
    sp = replace(sp, slice_mm=2.0, slices=1)
    # centre the single slice on the lesion
    sp_grid = replace(sp, slices=1)
    from casebook.viewer.core.demo import phantom as ph

    rdir, cdir, normal, origin = ph.series_geometry(sp_grid, plan.shift_mm)
    dz = centre[2] - origin[2]
    plan_c = replace(plan, shift_mm=(0.0, 0.0, -dz))
    healthy_c = replace(healthy, shift_mm=(0.0, 0.0, -dz))
    with_l, mask = render_slice(plan_c, sp_grid, 0)
    without, _ = render_slice(healthy_c, sp_grid, 0)
    assert mask.sum() > 10, kind
    diff = float(np.mean(with_l[mask]) - np.mean(without[mask]))
    expected_sign = {"lung_nodule_solid": 1, "lung_nodule_ggo": 1, "lung_nodule_cavitating": 1,
                     "liver_met_hypo": -1, "liver_met_hyper": 1, "renal_cyst": -1, "bone_lytic": -1,
                     "bone_sclerotic": 1, "brain_tumour": 1}[kind]
    assert diff * expected_sign > 30, (kind, diff)
    changed = np.abs(with_l - without) > 0
    if kind == "brain_tumour":
        # oedema reaches beyond the enhancing lesion, and raises T1-post signal there less than the rim
        assert (changed & ~mask).any()
    else:
        assert not (changed & ~mask).any(), kind  # nothing painted outside the stated lesion


def test_follow_up_same_patient_later_date_volume_changes() -> None:
    plans = plan_library(PhantomOptions(patients=12, size=64, slices=12, big_slices=0, follow_up_share=1.0))
    by_pat: dict[str, list] = {}
    for p in plans:
        by_pat.setdefault(p.patient_id, []).append(p)
    seen = set()
    for pid, ps in by_pat.items():
        if len(ps) < 2:
            continue
        a, b = ps
        assert b.study_date > a.study_date and a.patient_name == b.patient_name and a.birth_date == b.birth_date
        assert b.shift_mm != (0.0, 0.0, 0.0)
        va, vb = lesion_volume_ml(a.lesions[0]), lesion_volume_ml(b.lesions[0])
        ratio = vb / va
        assert {"grew": ratio > 1.5, "shrank": ratio < 0.5, "stable": abs(ratio - 1) < 1e-6}[b.change], (b.change, ratio)
        seen.add(b.change)
        # measured on the pixels: lesion voxel counts change the same way
        sp = replace(next(s for s in a.series if s.plane == "axial"), size=96, pixel_mm=3.0, slices=40, slice_mm=5.0)
        na = sum(int(m.sum()) for _, m in iter_lesion_masks(replace(a, lesions=a.lesions[:1]), sp))
        nb = sum(int(m.sum()) for _, m in iter_lesion_masks(replace(b, lesions=b.lesions[:1]), sp))
        if b.change == "grew":
            assert nb > na * 1.5
        elif b.change == "shrank":
            assert nb < na * 0.6
        else:
            assert 0.7 < nb / max(na, 1) < 1.3
    assert seen == {"grew", "shrank", "stable"}


def test_parallel_writing_gives_the_same_files(tmp_path: Path) -> None:
    opts = PhantomOptions(patients=2, size=64, slices=10, big_slices=0, follow_up_share=1.0)
    one = generate_library(tmp_path / "one", opts, workers=1)
    two = generate_library(tmp_path / "two", opts, workers=2)
    assert [s.study_uid for s in one] == [s.study_uid for s in two]
    rel = lambda root, studies: sorted(str(f.relative_to(root)) for s in studies for se in s.series for f in se.files)  # noqa: E731
    assert rel(tmp_path / "one", one) == rel(tmp_path / "two", two)
    assert _digest([f for s in one for se in s.series for f in se.files]) == \
        _digest([f for s in two for se in s.series for f in se.files])
