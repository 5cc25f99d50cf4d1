"""True MPR in a real window under Xvfb: a gantry-tilted CT's axial view shows the true axial
plane (screen pixels), says it is resliced, and Shift + drag / keys turn the crosshair axes."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from casebook.viewer.render.capture import grab_render_window
from casebook.viewer.render.reslice import PlaneReslicer

from .conftest import close_gl_windows

pytestmark = pytest.mark.gui

_OPEN: list = []


@pytest.fixture(autouse=True)
def _close_windows():
    """Release the GL contexts before the X server goes away."""
    yield
    close_gl_windows(_OPEN)


@pytest.fixture(scope="module")
def tilted_ct():
    from casebook.viewer.core.dicom import load_volume, scan
    from tests.conftest import require_shared

    (stack,) = scan([require_shared("dicom", "dcm_qa_ct", "In", "GE")]).stacks
    return load_volume(stack)


def _viewer(qtbot, volume, layout="1x1"):
    from casebook.viewer.qt.views.study_viewer import StudyViewer

    v = StudyViewer(with_3d=False)
    _OPEN.append(v)
    qtbot.addWidget(v)
    v.resize(560, 560)
    v.state.set_layout(layout)
    v.state.set_active_view("axial")
    v.show()
    qtbot.waitExposed(v)
    v.set_volume(volume)
    QApplication.processEvents()
    v.flush_renders()
    return v


def _screen_vs(v, orientation, img):
    """Screen grey values at the centres of a grid of image pixels, and those pixels windowed."""
    ad = v.adapters[orientation]
    v.state.set_crosshair_visible(False)
    v.state.set_overlay_visible(False)
    v.flush_renders()
    shot = grab_render_window(v.viewports[orientation].render_window).astype(np.float64).mean(axis=2)
    rows, cols = img.shape
    got, want = [], []
    c, w = v.state.window
    for r in np.linspace(rows * 0.2, rows * 0.8, 25).astype(int):
        for col in np.linspace(cols * 0.2, cols * 0.8, 25).astype(int):
            dx, dy = ad.world_to_display(*ad.image_to_world(r, col))
            y = int(round(shot.shape[0] - 1 - dy))
            x = int(round(dx))
            if 0 <= y < shot.shape[0] and 0 <= x < shot.shape[1]:
                got.append(shot[y, x])
                want.append(np.clip((float(img[r, col]) - (c - w / 2.0)) / w * 255.0, 0, 255))
    return np.array(got), np.array(want)


def test_tilted_ct_axial_view_shows_the_true_axial_plane(qtbot, tilted_ct):
    v = _viewer(qtbot, tilted_ct)
    st = v.state
    ad = v.adapters["axial"]
    assert "Resliced: gantry tilt 18.5°" in ad.corners["tr"].GetInput()
    true_plane = st.geometry.slice_array("axial", st.slice_index("axial"))
    got, want = _screen_vs(v, "axial", true_plane)
    assert want.std() > 20
    assert np.corrcoef(got, want)[0, 1] > 0.97 and np.median(np.abs(got - want)) <= 6.0
    # the stored (tilted) slice at the same place is a different picture: the view is not it
    k = st.geometry.canon_to_k(st.crosshair_canon)
    stored = tilted_ct.voxels[k][: true_plane.shape[0], : true_plane.shape[1]]
    got2, want2 = _screen_vs(v, "axial", stored)
    assert np.corrcoef(got, want)[0, 1] > np.corrcoef(got2, want2)[0, 1] + 0.05


def test_shift_drag_and_keys_turn_the_crosshair_axes(qtbot, tilted_ct):
    v = _viewer(qtbot, tilted_ct, layout="2x2")
    st = v.state
    w = v.viewports["axial"].vtk_widget
    p = st.crosshair_lps
    ad = v.adapters["axial"]
    _, row, col = st.geometry.canon_to_image("axial", st.crosshair_canon)
    dx, dy = ad.world_to_display(*ad.image_to_world(row, col))
    dpr = v.devicePixelRatioF()
    cx, cy = dx / dpr, (ad.render_window.GetSize()[1] - 1 - dy) / dpr
    a = QPoint(int(cx + 120), int(cy))  # right of the crosshair ...
    b = QPoint(int(cx), int(cy - 120))  # ... to above it: a quarter turn counter-clockwise
    QTest.mousePress(w, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier, a)
    QTest.mouseMove(w, b)
    QTest.mouseRelease(w, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier, b)
    v.flush_renders()
    assert st.plane_angle_deg == pytest.approx(90.0, abs=3.0)
    np.testing.assert_allclose(st.crosshair_lps, p, atol=1e-6)
    # the anatomy turned with the hand: the coronal view now looks along the old L-R axis
    assert abs(float(st.geometry.plane_normal("coronal") @ [1.0, 0.0, 0.0])) > 0.99
    assert "Coronal 90°" in v.adapters["coronal"].corners["tr"].GetInput()
    assert not st.measurements  # a Shift drag is not a window/level drag or a drawing
    QTest.keyClick(w, Qt.Key.Key_Slash)
    assert st.plane_angle_deg == 0.0
    for _ in range(4):
        QTest.keyClick(w, Qt.Key.Key_Comma)  # 5° a press
    assert st.plane_angle_deg == pytest.approx(20.0)
    coronal = v.adapters["coronal"]
    v.flush_renders()
    assert {k: len(t.GetInput()) for k, t in coronal.markers.items()}["left"] == 2  # e.g. "RA"
    # what the turned coronal view shows is the plane the core samples there
    img = st.geometry.slice_array("coronal", st.slice_index("coronal"))
    np.testing.assert_allclose(PlaneReslicer().shown_array(st.geometry, "coronal", st.slice_index("coronal")),
                               img, atol=0.51)
