"""Linked comparison through a transform, the compare volumes, copied measurements and interval change,
on a real brain MR volume (brain_tumor_progression) and a copy of it moved by a known rigid transform."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from casebook.viewer.core.services.compare import (CompareError, checkerboard, compare_volume, copy_measurement,
                                                    fade, interval_change, map_measurement, resample_prior,
                                                    subtraction)
from casebook.viewer.core.services.registration import moved_volume, rigid_matrix, volume_from_sitk
from casebook.viewer.core.viewstate import ORIENTATIONS, StateLink, ViewerState
from casebook.viewer.core.viewstate.errors import ViewStateError
from casebook.viewer.core.viewstate.link import TransformLink, registered_links, transform_link
from casebook.viewer.core.viewstate.measurements import Measurement

sitk = pytest.importorskip("SimpleITK")


@pytest.fixture(scope="module")
def pair(need_shared):
    folder = need_shared("temporal", "brain_tumor_progression", "08")
    v = volume_from_sitk(sitk.ReadImage(str(folder / "Pre_Scan_T1.nii.gz"), sitk.sitkFloat32), modality="MR")
    centre = v.index_to_lps(np.array([(n - 1) / 2.0 for n in v.shape[::-1]]))
    m = rigid_matrix((0.0, 0.0, 8.0), (12.0, -7.0, 3.0), centre)
    return v, moved_volume(v, m), m


def _value_at(state: ViewerState) -> float:
    """The voxel under the crosshair (what the reader looks at)."""
    v = state.volume
    ijk = np.round(v.lps_to_index(state.crosshair_lps)).astype(int)
    return float(v.voxels[ijk[2], ijk[1], ijk[0]])


def test_transform_link_shows_the_same_anatomy_in_every_plane(pair) -> None:
    current, prior, m = pair
    a, b = ViewerState(current), ViewerState(prior)
    link = StateLink(a, b, links=registered_links(m))
    rng = np.random.default_rng(3)
    nk, nj, ni = current.shape
    for _ in range(20):
        # click somewhere in a random view: both crosshairs sit on the same anatomy
        o = ORIENTATIONS[rng.integers(3)]
        a.set_crosshair_lps(current.index_to_lps(np.array([rng.integers(20, ni - 20), rng.integers(20, nj - 20),
                                                           rng.integers(2, nk - 2)], dtype=float)))
        np.testing.assert_allclose(b.crosshair_lps, m[:3, :3] @ a.crosshair_lps + m[:3, 3], atol=1.0)
        assert _value_at(a) == pytest.approx(_value_at(b), rel=0.05, abs=20.0), o
    # scrolling either one moves the other, in either direction
    before = b.crosshair_lps
    a.scroll("axial", 2)
    assert not np.allclose(b.crosshair_lps, before)
    np.testing.assert_allclose(b.crosshair_lps, m[:3, :3] @ a.crosshair_lps + m[:3, 3], atol=1.0)
    b.scroll("axial", -1)
    np.testing.assert_allclose(a.crosshair_lps, np.linalg.inv(m)[:3, :3] @ b.crosshair_lps + np.linalg.inv(m)[:3, 3],
                               atol=1.0)
    # window/level and zoom follow
    a.set_window(300.0, 900.0)
    assert b.window == (300.0, 900.0)
    a.set_zoom("axial", 2.0)
    # the same mm per screen pixel (the turned prior is resliced on a larger true-plane grid, so
    # its zoom factor differs from the current's)
    def mm_per_px(st: ViewerState) -> float:
        return st.geometry.fit_half_height_mm("axial", 1.0, 1.0) / st.zoom["axial"]

    assert b.zoom["axial"] > 1.0 and mm_per_px(b) == pytest.approx(mm_per_px(a), rel=1e-6)
    # a nudge moves the prior to the new mapping at once
    tl = transform_link(link)
    nudge = rigid_matrix(translation_mm=(0.0, 5.0, 0.0))
    tl.set_matrix(nudge @ m)
    np.testing.assert_allclose(b.crosshair_lps, (nudge @ m)[:3, :3] @ a.crosshair_lps + (nudge @ m)[:3, 3], atol=1.0)
    link.unlink()
    a.scroll("axial", 1)
    with pytest.raises(ViewStateError, match="4x4"):
        TransformLink(np.eye(3))
    with pytest.raises(ViewStateError, match="invertible"):
        TransformLink(np.zeros((4, 4)))


def test_compare_volumes_on_the_current_grid(pair) -> None:
    current, prior, m = pair
    reg = resample_prior(current, prior, m)
    assert reg.shape == current.shape
    inner = (slice(4, -4), slice(40, -40), slice(40, -40))
    # registered: the difference is interpolation only; unregistered it is anatomy
    d_reg = np.abs(subtraction(current, reg).voxels[inner])
    d_raw = np.abs(subtraction(current, resample_prior(current, prior, np.eye(4))).voxels[inner])
    assert np.median(d_reg) < 0.2 * np.median(d_raw) + 1e-3
    sub = subtraction(current, reg)
    assert sub.window[0] == 0.0 and sub.window[1] > 0 and "subtraction" in sub.description
    half = fade(current, reg, 0.5)
    np.testing.assert_allclose(half.voxels, 0.5 * current.voxels + 0.5 * reg.voxels, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(fade(current, reg, 0.0).voxels, current.voxels)
    cb = checkerboard(current, reg, 4)
    from_cur = np.isclose(cb.voxels, current.voxels)
    from_reg = np.isclose(cb.voxels, reg.voxels)
    assert np.all(from_cur | from_reg)
    assert cb.voxels[0, 0, 0] == current.voxels[0, 0, 0]  # the first square is the current's
    assert compare_volume("fade", current, reg, alpha=0.25).meta["derived"].startswith("fade")
    with pytest.raises(CompareError, match="compare mode"):
        compare_volume("blend", current, reg)


def test_copied_measurement_lands_on_the_same_anatomy_and_interval_change(pair) -> None:
    current, prior, m = pair
    a, b = ViewerState(current), ViewerState(prior)
    k = current.shape[0] // 2
    dist = a.add_measurement(Measurement("distance", "axial", k, (100.0, 90.0), (100.0, 150.0)))
    roi = a.add_measurement(Measurement("ellipse", "axial", k, (110.0, 110.0), (140.0, 150.0)))
    copied = copy_measurement(dist, a, b, m)
    assert copied in b.measurements and b.selected is copied
    # same length (a rigid move keeps lengths) and the ends on the same anatomy
    assert copied.values["length_mm"] == pytest.approx(dist.values["length_mm"], abs=1.0)
    g_a, g_b = a.geometry, b.geometry
    end_a = g_a.canon_to_lps(g_a.image_to_canon("axial", dist.slice_index, *dist.p0))
    end_b = g_b.canon_to_lps(g_b.image_to_canon("axial", copied.slice_index, *copied.p0))
    assert np.linalg.norm(m[:3, :3] @ end_a + m[:3, 3] - end_b) < 1.5
    r2 = map_measurement(roi, a, b, m)
    assert r2.values["area_mm2"] == pytest.approx(roi.values["area_mm2"], rel=0.02)
    assert r2.values["mean"] == pytest.approx(roi.values["mean"], rel=0.1)
    # the reader adjusts the copy: the lesion "grew" from 60 to 75 px along the row
    grown = Measurement("distance", "axial", k, (100.0, 90.0), (100.0, 165.0))
    a.measure(grown)
    ch = interval_change(dist, grown, days=412)
    assert ch.delta == pytest.approx(15.0, abs=0.01) and ch.percent == pytest.approx(25.0, abs=0.1)
    assert ch.sentence().startswith("grown from 60.0 to 75.0 mm (+15.0 mm, +25%)") and "1 year" in ch.sentence()
    roi_ch = interval_change(roi, r2)
    assert "ROI mean" in roi_ch.sentence() and "area" in roi_ch.sentence()
    with pytest.raises(CompareError, match="cannot compare"):
        interval_change(dist, roi)
    far = Measurement("distance", "axial", 0, (0.0, 0.0), (1.0, 1.0))
    with pytest.raises(CompareError, match="outside the other study"):
        map_measurement(far, a, b, rigid_matrix(translation_mm=(0.0, 0.0, 500.0)))
