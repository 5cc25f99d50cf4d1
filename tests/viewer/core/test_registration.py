"""Registration on the shared brain_tumor_progression MR pairs (real T1 volumes and tumour masks).

* known rigid transforms are recovered within 1 mm (worst corner of the volume) and 1°;
* each patient's earlier scan, displaced by a known rigid movement, registered to the later scan:
  the tumour masks overlap better after registration than before (Dice, per patient);
* what cannot be registered says why: a single slice, no overlap, no common structure; cancel stops.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from casebook.common.errors import Cancelled
from casebook.viewer.core.services.registration import (RegistrationError, RegistrationOptions, affine_from_matrix,
                                                         corner_points, moved_volume, register_volumes, rigid_matrix,
                                                         to_sitk, transform_error, volume_from_sitk)

sitk = pytest.importorskip("SimpleITK")

# fewer samples than the defaults: the same answer to well under a millimetre here, in a third of the time
FAST = dict(samples=(4000, 8000, 16000), threads=2)
PATIENTS = [f"{n:02d}" for n in range(1, 12)]


def _read(folder: Path, name: str):
    return sitk.ReadImage(str(folder / f"{name}.nii.gz"), sitk.sitkFloat32)


@pytest.fixture(scope="module")
def brain(need_shared) -> Path:
    return need_shared("temporal", "brain_tumor_progression")


def _centre(v) -> np.ndarray:
    return v.index_to_lps(np.array([(n - 1) / 2.0 for n in v.shape[::-1]]))


@pytest.mark.parametrize("patient,rot,tr", [
    ("03", (0.0, 0.0, 7.0), (6.0, -4.0, 2.0)),
    ("03", (2.0, -2.0, -5.0), (-5.0, 3.0, 1.5)),
    ("08", (-3.0, 1.0, 9.0), (9.0, 6.0, -2.0)),
])
def test_known_rigid_transform_is_recovered(brain: Path, patient: str, rot, tr) -> None:
    v = volume_from_sitk(_read(brain / patient, "Pre_Scan_T1"), modality="MR")
    truth = rigid_matrix(rot, tr, _centre(v))
    steps: list[tuple[int, int]] = []
    r = register_volumes(v, moved_volume(v, truth), RegistrationOptions(**FAST),
                         progress=lambda d, t, m: steps.append((d, t)))
    err_mm, err_deg = transform_error(r.matrix, truth, corner_points(v))
    assert err_mm <= 1.0 and err_deg <= 1.0, (err_mm, err_deg, r.summary())
    assert r.quality > 1.5 and r.overlap > 0.9 and r.metric < r.metric_before
    assert steps and steps[-1][0] == steps[-1][1] and all(d <= t for d, t in steps)
    assert "SimpleITK" in r.software


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0.5, b > 0.5
    return 2.0 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


@pytest.mark.parametrize("patient", PATIENTS)
def test_tumour_overlap_improves_per_patient(brain: Path, patient: str) -> None:
    """The later scan is the current; the earlier scan (and its mask) moved by a known rigid
    displacement (a patient lying differently) is the prior. Dice of the tumour masks after
    registration beats the Dice of the scans as they lie."""
    folder = brain / patient
    post, post_mask = _read(folder, "Post_Scan_T1"), _read(folder, "Post_Mask")
    pre, pre_mask = _read(folder, "Pre_Scan_T1"), _read(folder, "Pre_Mask")
    current = volume_from_sitk(post, modality="MR")
    m = rigid_matrix((0.0, 0.0, 6.0), (7.0, -5.0, 1.0), _centre(current))
    prior = moved_volume(volume_from_sitk(pre, modality="MR"), m)
    prior_mask = moved_volume(volume_from_sitk(pre_mask), m)
    fixed_mask = to_sitk(volume_from_sitk(post_mask))

    def mask_on_current(matrix: np.ndarray) -> np.ndarray:
        out = sitk.Resample(to_sitk(prior_mask), fixed_mask, affine_from_matrix(matrix), sitk.sitkNearestNeighbor, 0)
        return sitk.GetArrayFromImage(out)

    truth = sitk.GetArrayFromImage(fixed_mask)
    before = _dice(mask_on_current(np.eye(4)), truth)  # the two studies as they lie in their scanners
    # two pyramid levels (4 and 2 mm): the masks' overlap does not need the last fraction of a millimetre
    r = register_volumes(current, prior, RegistrationOptions(levels=(4, 2), smoothing_mm=(3.0, 1.0),
                                                             samples=(4000, 8000), threads=2))
    after = _dice(mask_on_current(r.matrix), truth)
    assert after > before, (patient, before, after, r.summary())


def test_single_slice_is_refused_with_the_reason(brain: Path) -> None:
    v = volume_from_sitk(_read(brain / "03", "Pre_Scan_T1"), modality="MR")
    from dataclasses import replace

    one = replace(v, voxels=v.voxels[10:11])
    with pytest.raises(RegistrationError, match="prior series .*single slice"):
        register_volumes(v, one)


def test_no_overlap_is_a_failed_registration(brain: Path) -> None:
    v = volume_from_sitk(_read(brain / "03", "Pre_Scan_T1"), modality="MR")
    far = rigid_matrix(translation_mm=(900.0, 0.0, 0.0))
    with pytest.raises(RegistrationError, match="overlap|outside|failed"):
        register_volumes(v, v, RegistrationOptions(**FAST), initial=far)


def test_no_common_structure_is_a_failed_registration(brain: Path) -> None:
    from dataclasses import replace

    v = volume_from_sitk(_read(brain / "03", "Pre_Scan_T1"), modality="MR")
    flat = replace(v, voxels=np.full(v.voxels.shape, 100.0, dtype=np.float32))
    with pytest.raises(RegistrationError, match="no common structure|failed|overlap"):
        register_volumes(v, flat, RegistrationOptions(**FAST))


def test_cancel_stops_the_registration(brain: Path) -> None:
    v = volume_from_sitk(_read(brain / "03", "Pre_Scan_T1"), modality="MR")
    token = threading.Event()

    def progress(done: int, total: int, message: str) -> None:
        if done >= 3:
            token.set()

    with pytest.raises(Cancelled):
        register_volumes(v, moved_volume(v, rigid_matrix((0, 0, 5), (3, 0, 0), _centre(v))),
                         RegistrationOptions(**FAST), progress=progress, cancel=token)


def test_clipped_intensities_on_request(brain: Path) -> None:
    """``clip_percentiles`` bins the anatomy's range, not the outliers', and still recovers the transform."""
    from casebook.viewer.core.services.registration import _clip_intensities

    img = _read(brain / "08", "Pre_Scan_T1")
    arr = sitk.GetArrayFromImage(img)
    lo, hi = np.percentile(arr, (0.5, 99.5))
    out = sitk.GetArrayFromImage(_clip_intensities(img, (0.5, 99.5)))
    assert out.max() == pytest.approx(hi, rel=0.02) and out.min() == pytest.approx(lo, abs=1e-3 + 0.02 * abs(lo))
    assert out.max() < arr.max()  # something was clipped
    assert _clip_intensities(img, None) is img
    v = volume_from_sitk(img, modality="MR")
    truth = rigid_matrix((1.0, -2.0, 5.0), (-4.0, 2.0, 3.0), _centre(v))
    r = register_volumes(v, moved_volume(v, truth), RegistrationOptions(clip_percentiles=(0.5, 99.5), **FAST))
    err_mm, err_deg = transform_error(r.matrix, truth, corner_points(v))
    assert err_mm <= 1.0 and err_deg <= 1.0, r.summary()


def test_affine_on_request_and_bad_options(brain: Path) -> None:
    v = volume_from_sitk(_read(brain / "03", "Pre_Scan_T1"), modality="MR")
    truth = rigid_matrix((0.0, 0.0, 4.0), (4.0, -3.0, 0.0), _centre(v))
    r = register_volumes(v, moved_volume(v, truth), RegistrationOptions(kind="affine", **FAST))
    assert r.kind == "affine"
    err_mm, _deg = transform_error(r.matrix, truth, corner_points(v))
    assert err_mm <= 2.0, r.summary()
    with pytest.raises(RegistrationError, match="kind must be one of"):
        RegistrationOptions(kind="elastic")


def test_deformable_on_request_improves_the_difference(brain: Path) -> None:
    from casebook.viewer.core.services.compare import resample_prior, subtraction

    current = volume_from_sitk(_read(brain / "08", "Post_Scan_T1"), modality="MR")
    prior = volume_from_sitk(_read(brain / "08", "Pre_Scan_T1"), modality="MR")
    r = register_volumes(current, prior, RegistrationOptions(deformable=True, bspline_iterations=8, **FAST))
    assert r.deformable.startswith("#Insight Transform File")
    rigid = np.abs(subtraction(current, resample_prior(current, prior, r.matrix)).voxels).mean()
    warped = np.abs(subtraction(current, resample_prior(current, prior, r.matrix, r.deformable)).voxels).mean()
    assert warped < rigid
