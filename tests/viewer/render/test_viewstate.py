"""Headless checks of the viewer model: MPR geometry, markers, measurements, linking, events."""
from __future__ import annotations

import numpy as np
import pytest

from casebook.viewer.core.dicom.volume import Volume
from casebook.viewer.core.viewstate import (Measurement, MprGeometry, StateLink, ViewerState, ellipse_stats,
                                            orientation_label)


def _vol(direction, shape=(10, 20, 30), spacing=(2.0, 0.5, 0.7), modality="CT") -> Volume:
    vox = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    return Volume(vox, spacing, (10.0, -20.0, 30.0), np.asarray(direction, float), modality=modality)


def test_axial_geometry_is_the_stored_array():
    v = _vol(np.eye(3))
    g = MprGeometry(v)
    assert g.shape == v.shape and g.spacing == v.spacing
    np.testing.assert_array_equal(g.slice_array("axial", 3), v.voxels[3])
    assert g.markers("axial") == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    assert g.markers("coronal") == {"left": "R", "right": "L", "top": "S", "bottom": "I"}
    assert g.markers("sagittal") == {"left": "A", "right": "P", "top": "S", "bottom": "I"}
    # canonical index <-> LPS agrees with the volume's own affine
    c = np.array([4.0, 7.0, 9.0])  # (s, p, l) = (k, j, i) here
    np.testing.assert_allclose(g.canon_to_lps(c), v.index_to_lps(np.array([9.0, 7.0, 4.0])))
    np.testing.assert_allclose(g.lps_to_canon(g.canon_to_lps(c)), c)
    assert g.k_to_view(4) == ("axial", 4)


def test_feet_first_and_sagittal_acquisitions_are_reoriented():
    # slices stacked towards the feet: axial index must still increase to the head
    v = _vol(np.diag([1.0, 1.0, -1.0]))
    g = MprGeometry(v)
    np.testing.assert_array_equal(g.slice_array("axial", 0), v.voxels[-1])
    assert g.k_to_view(0) == ("axial", v.shape[0] - 1)
    # sagittal acquisition: rows along P, columns to the feet, slices towards the left
    d = np.array([[0, 0, 1], [1, 0, 0], [0, -1, 0]], float)  # columns: i->P, j->I, k->L
    vs = _vol(d, shape=(8, 40, 50))
    gs = MprGeometry(vs)
    assert gs.shape == (40, 50, 8)
    np.testing.assert_array_equal(gs.slice_array("sagittal", 2), vs.voxels[2])
    assert gs.markers("sagittal") == {"left": "A", "right": "P", "top": "S", "bottom": "I"}
    assert gs.k_to_view(5) == ("sagittal", 5)


def test_oblique_markers_combine_letters():
    assert orientation_label(np.array([0.57, 0.82, 0.0])) == "PL"
    assert orientation_label(np.array([-0.1, 0.0, -1.0])) == "I"
    assert orientation_label(np.array([-0.5, -0.5, 0.7])) in ("SRA", "SAR")


def test_box_to_voxel_box_and_roi_stats():
    v = _vol(np.eye(3))
    g = MprGeometry(v)
    box = g.image_box_to_ijk_box("axial", 4, (2.0, 3.0), (6.0, 10.0))
    assert box == (4, 5, 2, 7, 3, 11)
    img = np.zeros((50, 50))
    img[20:30, 20:30] = 100.0
    s = ellipse_stats(img, (20, 20), (29, 29), (0.5, 0.5))
    assert s["mean"] == pytest.approx(100.0) and s["sd"] == pytest.approx(0.0)
    assert s["area_mm2"] == pytest.approx(np.pi * 2.25 * 2.25)


def test_state_events_scroll_window_and_measurements():
    st = ViewerState(_vol(np.eye(3)))
    seen = []
    st.events.slice.connect(lambda orientation, index: seen.append((orientation, index)))
    st.scroll("axial", 2)
    assert seen[-1] == ("axial", st.slice_index("axial"))
    assert st.set_slice("axial", 999) == 9  # clamped
    st.apply_preset("lung")
    assert st.window == (-600.0, 1500.0)
    st.set_window(10, -5)
    assert st.window[1] == 1.0  # width never below 1
    m = st.add_measurement(Measurement("ellipse", "axial", 9, (2, 2), (8, 12)))
    assert m.unit == "HU" and m.values["n"] > 10
    d = st.add_measurement(Measurement("distance", "axial", 9, (0, 0), (3, 4)))
    assert d.values["length_mm"] == pytest.approx(np.hypot(3 * 0.5, 4 * 0.7))
    st.cine_step("axial")
    assert st.slice_index("axial") == 0  # wraps


def test_link_scrolls_by_delta_and_mirrors_zoom_and_window():
    a = ViewerState(_vol(np.eye(3)))
    b = ViewerState(_vol(np.eye(3), shape=(30, 20, 30)))
    b.set_slice("axial", 20)
    link = StateLink(a, b)
    a0 = a.slice_index("axial")
    a.scroll("axial", -2)
    assert b.slice_index("axial") == 18
    b.scroll("axial", 1)
    assert a.slice_index("axial") == a0 - 1
    a.set_zoom("axial", 3.0)
    assert b.zoom["axial"] == 3.0
    b.apply_preset("bone")
    assert a.window == b.window
    link.unlink()
    a.scroll("axial", 1)
    assert b.slice_index("axial") == 19
