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


def _off_plane_mm(a: ViewerState, b: ViewerState, m: np.ndarray, orientation: str) -> float:
    """How far (mm, worst of a grid of points) ``a``'s shown plane lands off ``b``'s shown plane
    when carried through ``m``: 0 when the two views show the same anatomy's plane."""
    ga, gb = a.geometry, b.geometry
    k = a.slice_index(orientation)
    h, w = ga.image_shape(orientation)
    worst = 0.0
    for row in np.linspace(0.2 * h, 0.8 * h, 4):
        for col in np.linspace(0.2 * w, 0.8 * w, 4):
            p = ga.canon_to_lps(ga.image_to_canon(orientation, k, row, col))
            q = m[:3, :3] @ p + m[:3, 3]
            worst = max(worst, abs(float(np.dot(q - b.crosshair_lps, gb.plane_normal(orientation)))))
    return worst


def test_oblique_turn_follows_through_the_transform(pair) -> None:
    """Turning the crosshair axes of the current turns the prior's through the registration, and back."""
    current, prior, m = pair
    a, b = ViewerState(current), ViewerState(prior)
    link = StateLink(a, b, links=registered_links(m))
    r = m[:3, :3]
    # turn the coronal view's axes: the axial and sagittal planes of both become oblique
    assert a.rotate_plane("coronal", 20.0)
    assert a.plane_angle_deg == pytest.approx(20.0) and b.plane_angle_deg == pytest.approx(20.0)
    np.testing.assert_allclose(b.plane_rotation, r @ a.plane_rotation @ r.T, atol=1e-9)
    np.testing.assert_allclose(b.crosshair_lps, r @ a.crosshair_lps + m[:3, 3], atol=1.0)
    # the prior's oblique axial plane is the current's carried through the transform (this pair
    # turns about the axial normal, so the true planes matched before the turn too)
    spacing = min(prior.spacing)
    assert _off_plane_mm(a, b, m, "axial") < spacing
    assert a.rotate_plane("axial", -12.0)
    assert _off_plane_mm(a, b, m, "axial") < spacing
    # the control: without the plane link the prior stays in its true planes, far off the turned plane
    c = ViewerState(prior)
    StateLink(a, c, links=[TransformLink(m, planes=False)])
    assert c.plane_angle_deg == 0.0 and _off_plane_mm(a, c, m, "axial") > 10.0
    # turning the prior turns the current back through the inverse; true planes give true planes
    before = a.plane_rotation.copy()
    assert b.rotate_plane("sagittal", 7.0)
    np.testing.assert_allclose(b.plane_rotation, r @ a.plane_rotation @ r.T, atol=1e-9)
    assert not np.allclose(a.plane_rotation, before)
    assert b.reset_plane_rotation()
    assert a.plane_angle_deg == pytest.approx(0.0, abs=1e-6) and b.plane_angle_deg == 0.0
    link.unlink()
    a.rotate_plane("axial", 5.0)
    assert b.plane_angle_deg == 0.0  # unlinked: nothing follows


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
