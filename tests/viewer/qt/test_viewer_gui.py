"""The viewer in real windows under Xvfb: pixels, orientation markers, gestures, linking.

Screenshots come from the VTK render window's buffer (``QWidget.grab`` is blank for GL widgets).
"""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from casebook.viewer.render.capture import grab_render_window

from .conftest import close_gl_windows

pytestmark = pytest.mark.gui




def _settle(qtbot, viewer=None):
    QApplication.processEvents()
    qtbot.wait(30)
    if viewer is not None:
        viewer.flush_renders()


def _windowed(img, c, w):
    return np.clip((img.astype(np.float64) - (c - w / 2.0)) / w * 255.0, 0, 255)


_OPEN = []


@pytest.fixture(autouse=True)
def _finalize_windows():
    """Release the GL contexts before the X server goes away."""
    yield
    close_gl_windows(_OPEN)


def _make_viewer(qtbot, volume, orientation, size=(520, 520)):
    from casebook.viewer.qt.views.study_viewer import StudyViewer

    v = StudyViewer(with_3d=False)
    _OPEN.append(v)
    qtbot.addWidget(v)
    v.resize(*size)
    v.state.set_layout("1x1")
    v.state.set_active_view(orientation)
    v.show()
    qtbot.waitExposed(v)
    v.set_volume(volume)
    _settle(qtbot, v)
    return v


def _compare_displayed(viewer, orientation):
    """Screenshot of the view vs the expected windowed slice, resampled onto the same pixels."""
    ad = viewer.adapters[orientation]
    viewer.state.set_crosshair_visible(False)
    viewer.state.set_overlay_visible(False)
    viewer.flush_renders()
    shot = grab_render_window(viewer.viewports[orientation].render_window).astype(np.float64)
    st = viewer.state
    img = st.geometry.slice_array(orientation, st.slice_index(orientation))
    x0, y0, x1, y1 = ad.image_rect_on_display()
    rows, cols = img.shape
    # every 3rd screen pixel inside the inner image area, mapped back to continuous image coords
    ys = np.arange(max(int(y0 + (y1 - y0) * 0.12), 0), min(int(y0 + (y1 - y0) * 0.88), shot.shape[0] - 1), 3)
    xs = np.arange(max(int(x0 + (x1 - x0) * 0.12), 0), min(int(x0 + (x1 - x0) * 0.88), shot.shape[1] - 1), 3)
    r = np.clip((ys - y0) / (y1 - y0) * (rows - 1), 0, rows - 1.001)
    c = np.clip((xs - x0) / (x1 - x0) * (cols - 1), 0, cols - 1.001)
    r0, c0 = np.floor(r).astype(int), np.floor(c).astype(int)
    fr, fc = (r - r0)[:, None], (c - c0)[None, :]
    f = img.astype(np.float64)
    interp = (f[np.ix_(r0, c0)] * (1 - fr) * (1 - fc) + f[np.ix_(r0 + 1, c0)] * fr * (1 - fc)
              + f[np.ix_(r0, c0 + 1)] * (1 - fr) * fc + f[np.ix_(r0 + 1, c0 + 1)] * fr * fc)
    want = _windowed(interp, *st.window)
    got = shot[np.ix_(ys, xs)].mean(axis=2)
    return got, want, shot


def test_axial_ct_shows_windowed_pixels_and_markers(qtbot, ct_volume):
    v = _make_viewer(qtbot, ct_volume, "axial")
    st = v.state
    assert st.slice_index("axial") == ct_volume.shape[0] // 2
    got, want, shot = _compare_displayed(v, "axial")
    err = np.abs(got - want)
    # linear interpolation and 8-bit LUT: small differences only, and real structure present
    assert np.median(err) <= 5.0, np.median(err)
    assert np.percentile(err, 95) <= 40.0
    assert want.std() > 20 and np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.93
    # radiological convention for an axial CT (IOP 1\0\0\0\1\0): R on screen left, A at the top
    assert {k: a.GetInput() for k, a in v.adapters["axial"].markers.items()} == {
        "left": "R", "right": "L", "top": "A", "bottom": "P"}
    assert {k: a.GetInput() for k, a in v.adapters["coronal"].markers.items()} == {
        "left": "R", "right": "L", "top": "S", "bottom": "I"}


def test_sagittal_mr_markers_and_pixels(qtbot, sag_mr_volume):
    vol = sag_mr_volume
    v = _make_viewer(qtbot, vol, "sagittal")
    # the displayed sagittal image of a native sagittal acquisition is the stored image itself
    shown = v.state.geometry.slice_array("sagittal", 0)
    np.testing.assert_array_equal(shown, vol.voxels[0])
    v.state.set_zoom("sagittal", 2.0)  # ~1 screen pixel per image pixel for the 1024² image
    got, want, _ = _compare_displayed(v, "sagittal")
    err = np.abs(got - want)
    assert np.median(err) <= 5.0 and np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.95
    # oblique sagittal (rows along 0.57 L + 0.82 P, columns to the feet): anterior left, head up,
    # the obliquity shows as a second letter rather than being hidden
    m = {k: a.GetInput() for k, a in v.adapters["sagittal"].markers.items()}
    assert m == {"left": "AR", "right": "PL", "top": "S", "bottom": "I"}


def _wheel(widget, steps, mods=Qt.KeyboardModifier.NoModifier):
    pos = QPointF(widget.width() / 2, widget.height() / 2)
    ev = QWheelEvent(pos, widget.mapToGlobal(pos), QPoint(0, 0), QPoint(0, 120 * steps),
                     Qt.MouseButton.NoButton, mods, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, ev)


def test_gestures_change_the_model(qtbot, ct_volume):
    v = _make_viewer(qtbot, ct_volume, "axial")
    st = v.state
    w = v.viewports["axial"].vtk_widget
    k0 = st.slice_index("axial")
    _wheel(w, -3)
    assert st.slice_index("axial") == k0 + 3
    QTest.keyClick(w, Qt.Key.Key_Up)
    assert st.slice_index("axial") == k0 + 2
    QTest.keyClick(w, Qt.Key.Key_End)
    assert st.slice_index("axial") == ct_volume.shape[0] - 1
    # the crosshair follows: its z (LPS) is the slice position
    z_expected = ct_volume.index_to_lps(np.array([0, 0, ct_volume.shape[0] - 1]))[2]
    assert st.crosshair_lps[2] == pytest.approx(z_expected, abs=1e-3)
    # left drag = window/level: right widens, down raises the level
    c0, w0 = st.window
    center = QPoint(w.width() // 2, w.height() // 2)
    QTest.mousePress(w, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, center)
    QTest.mouseMove(w, center + QPoint(50, 40))
    QTest.mouseRelease(w, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, center + QPoint(50, 40))
    c1, w1 = st.window
    assert w1 > w0 and c1 > c0
    # right drag up = zoom in; ctrl+wheel zooms too
    QTest.mousePress(w, Qt.MouseButton.RightButton, Qt.KeyboardModifier.NoModifier, center)
    QTest.mouseMove(w, center + QPoint(0, -60))
    QTest.mouseRelease(w, Qt.MouseButton.RightButton, Qt.KeyboardModifier.NoModifier, center + QPoint(0, -60))
    assert st.zoom["axial"] > 1.5
    z = st.zoom["axial"]
    _wheel(w, 2, Qt.KeyboardModifier.ControlModifier)
    assert st.zoom["axial"] == pytest.approx(z * 1.21, rel=1e-3)
    _settle(qtbot, v)
    # zoom is visible in the overlay text
    assert "Zoom" in v.adapters["axial"].corners["br"].GetInput()
    # middle drag pans by the dragged distance in mm
    mm = v.adapters["axial"].mm_per_display_pixel()
    QTest.mousePress(w, Qt.MouseButton.MiddleButton, Qt.KeyboardModifier.NoModifier, center)
    QTest.mouseMove(w, center + QPoint(30, 0))
    QTest.mouseRelease(w, Qt.MouseButton.MiddleButton, Qt.KeyboardModifier.NoModifier, center + QPoint(30, 0))
    assert st.pan["axial"][0] == pytest.approx(30 * mm, rel=0.05) and st.pan["axial"][1] == pytest.approx(0, abs=1e-6)
    # crosshair tool: a click moves the crosshair, so the coronal and sagittal slices follow
    v.controller.set_tool("crosshair")
    ad = v.adapters["axial"]
    row, col = 100.0, 400.0
    x, y = ad.image_to_world(row, col)
    from vtkmodules.vtkRenderingCore import vtkCoordinate  # noqa: PLC0415 (test-only VTK use)

    c = vtkCoordinate()
    c.SetCoordinateSystemToWorld()
    c.SetValue(x, y, 0.0)
    dx, dy = c.GetComputedDoubleDisplayValue(ad.renderer)
    vh = ad.render_window.GetSize()[1]
    p = QPoint(int(round(dx)), int(round(vh - 1 - dy)))
    QTest.mouseClick(w, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, p)
    assert abs(st.slice_index("coronal") - row) <= 2 and abs(st.slice_index("sagittal") - col) <= 2


def _drag(w, a, b):
    QTest.mousePress(w, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, a)
    QTest.mouseMove(w, b)
    QTest.mouseRelease(w, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, b)


def _label_on_screen(ad, text_part):
    """(text, bbox (x0, x1, y0, y1) in display pixels) of the one text actor showing ``text_part``."""
    from vtkmodules.vtkRenderingCore import vtkTextActor  # noqa: PLC0415 (test-only VTK use)

    props = ad.renderer.GetViewProps()
    props.InitTraversal()
    found = []
    for _ in range(props.GetNumberOfItems()):
        p = props.GetNextProp()
        if isinstance(p, vtkTextActor) and p.GetVisibility() and text_part in (p.GetInput() or ""):
            bbox = [0.0] * 4
            p.GetBoundingBox(ad.renderer, bbox)  # relative to the actor's anchor
            px, py = p.GetPositionCoordinate().GetComputedDisplayValue(ad.renderer)
            found.append((p.GetInput(), (bbox[0] + px, bbox[1] + px, bbox[2] + py, bbox[3] + py)))
    assert len(found) == 1, (text_part, found)
    return found[0]


def _cyan_pixels(shot, bbox):
    """Pixels of the measurement colour inside a display-coordinate box of a top-down screenshot."""
    h = shot.shape[0]
    x0, x1, y0, y1 = (int(round(v)) for v in bbox)
    region = shot[max(h - y1, 0):h - y0, max(x0, 0):x1].astype(int)
    return int(((region[..., 2] > 170) & (region[..., 1] > 150) & (region[..., 0] < 140)).sum())


def test_ellipse_roi_gives_hu_stats_and_distance_in_mm(qtbot, ct_volume):
    v = _make_viewer(qtbot, ct_volume, "axial")
    st = v.state
    w = v.viewports["axial"].vtk_widget
    v.controller.set_tool("ellipse")
    ad = v.adapters["axial"]
    x0, y0, x1, y1 = ad.image_rect_on_display()
    a = QPoint(int(x0 + (x1 - x0) * 0.35), int(y0 + (y1 - y0) * 0.35))
    b = QPoint(int(x0 + (x1 - x0) * 0.55), int(y0 + (y1 - y0) * 0.6))
    _drag(w, a, b)
    assert len(st.measurements) == 1
    m = st.measurements[0]
    assert m.kind == "ellipse" and m.unit == "HU"
    # reference statistics straight from the voxel array: this axial series is stored head-up,
    # so the displayed slice is voxels[k] (checked), and the ellipse is inscribed in the drawn box
    k = st.slice_index("axial")
    assert st.geometry.perm == (0, 1, 2) and st.geometry.flip == (False, False, False)
    plane = ct_volume.voxels[k].astype(np.float64)
    (ra, ca), (rb, cb) = m.p0, m.p1
    rr, cc = np.mgrid[0:plane.shape[0], 0:plane.shape[1]]
    inside = (((rr - (ra + rb) / 2) / (abs(rb - ra) / 2)) ** 2 + ((cc - (ca + cb) / 2) / (abs(cb - ca) / 2)) ** 2) <= 1
    ref_mean, ref_sd = plane[inside].mean(), plane[inside].std(ddof=1)
    assert m.values["mean"] == pytest.approx(ref_mean) and m.values["sd"] == pytest.approx(ref_sd)
    assert m.values["n"] == inside.sum() > 100
    # the ellipse spans ~20% x 25% of a 231 mm field: area = pi * a * b
    row_mm, col_mm = st.geometry.pixel_spacing("axial")
    ar = abs(m.p1[0] - m.p0[0]) / 2 * row_mm
    ac = abs(m.p1[1] - m.p0[1]) / 2 * col_mm
    assert m.values["area_mm2"] == pytest.approx(np.pi * ar * ac, rel=1e-6)
    v.controller.set_tool("distance")
    c = QPoint(int(x0 + (x1 - x0) * 0.6), int(y0 + (y1 - y0) * 0.7))
    e = QPoint(int(x0 + (x1 - x0) * 0.8), int(y0 + (y1 - y0) * 0.85))
    _drag(w, c, e)
    d = st.measurements[1]
    mm_per_px = ad.mm_per_display_pixel()
    expected = np.hypot(e.x() - c.x(), e.y() - c.y()) * mm_per_px
    assert d.values["length_mm"] == pytest.approx(expected, rel=0.03)
    _settle(qtbot, v)

    # on screen: both measurements on the one slice are drawn, each with its values beside it
    vh = ad.render_window.GetSize()[1]
    text, box = _label_on_screen(ad, "#1 ")
    assert f"mean {ref_mean:.1f} HU" in text and f"SD {ref_sd:.1f}" in text
    assert f"area {np.pi * ar * ac:.1f} mm²" in text and text.startswith("#1 ")
    # beside the ellipse: left edge just right of the shape, top near the shape's top
    assert b.x() <= box[0] <= b.x() + 30 and abs((vh - 1 - box[3]) - a.y()) <= 30
    dtext, dbox = _label_on_screen(ad, "#2 ")
    assert dtext == f"#2 {d.values['length_mm']:.1f} mm"
    assert float(dtext.split()[1]) == pytest.approx(expected, rel=0.03)
    assert e.x() <= dbox[0] <= e.x() + 30 and abs((vh - 1 - (dbox[2] + dbox[3]) / 2) - e.y()) <= 20
    shot = grab_render_window(ad.render_window)
    with_labels = (_cyan_pixels(shot, box), _cyan_pixels(shot, dbox))
    st.clear_measurements()
    _settle(qtbot, v)
    bare = grab_render_window(ad.render_window)
    assert min(with_labels) > 25, with_labels  # the glyphs are there, in the measurement colour
    assert _cyan_pixels(bare, box) == 0 and _cyan_pixels(bare, dbox) == 0
    assert np.abs(shot.astype(int) - bare.astype(int)).sum() > 0


def test_overlay_shows_loading_cine_and_follows_the_flags(qtbot, ct_volume):
    v = _make_viewer(qtbot, ct_volume, "axial")
    st, ad = v.state, v.adapters["axial"]
    st.set_loading_fraction(0.4)
    assert "loading 40%" in ad.corners["bl"].GetInput()
    st.set_loading_fraction(1.0)
    assert "loading" not in ad.corners["bl"].GetInput()
    st.set_cine(True, fps=12)
    assert "CINE 12 fps" in ad.corners["bl"].GetInput()
    st.set_cine(False)
    assert "CINE" not in ad.corners["bl"].GetInput()
    st.apply_preset("lung")
    assert "CT Lung" in ad.corners["br"].GetInput()
    _settle(qtbot, v)
    shown = grab_render_window(ad.render_window)
    st.set_overlay_visible(False)
    st.set_crosshair_visible(False)
    assert not ad.corners["bl"].GetVisibility() and not ad.cross_h.GetVisibility()
    _settle(qtbot, v)
    hidden = grab_render_window(ad.render_window)
    # the corner text (pale yellow, unlike the grey image) is gone from the bottom-left corner
    corner = (slice(shown.shape[0] - 40, shown.shape[0]), slice(0, 120))

    def yellow(img):
        px = img[corner].astype(int)
        return int(((px[..., 0] - px[..., 2] > 25) & (px[..., 0] > 120)).sum())
    assert yellow(shown) > 30 and yellow(hidden) == 0


def test_main_window_shortcuts_layouts_and_side_by_side(qtbot, ct_volume, settings):
    from casebook.viewer.qt.main_window import MainWindow

    win = MainWindow(settings)
    qtbot.addWidget(win)
    _OPEN.append(win)
    win.resize(1400, 900)
    win.show()
    qtbot.waitExposed(win)
    from casebook.viewer.core.viewstate import StudyInfo

    win.show_volume(ct_volume, StudyInfo(patient_name="PHANTOM^CT", study_date="2021-03-04"))
    _settle(qtbot, win.viewer)
    st = win.state
    assert win.viewer.adapters["axial"].corners["tl"].GetInput().splitlines() == ["PHANTOM^CT", "2021-03-04"]
    assert win.tool_label.text() == "Tool: Window/level"
    assert set(win.viewer.visible_views()) == {"axial", "coronal", "sagittal", "3d"}
    win.activateWindow()
    qtbot.waitUntil(win.isActiveWindow, timeout=3000)
    target = win.viewer.viewports["axial"].vtk_widget
    target.setFocus()
    QTest.keyClick(target, Qt.Key.Key_F2)
    assert st.window == (-600.0, 1500.0) and st.preset == "lung"
    QTest.keyClick(target, Qt.Key.Key_I)
    assert st.invert
    QTest.keyClick(target, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)
    assert st.layout == "1x1" and win.viewer.visible_views() == ["axial"]
    QTest.keyClick(target, Qt.Key.Key_R)
    assert not st.invert and st.window == ct_volume.default_window()
    # cine: Space plays (the slice advances on its own), Space again stops
    k0 = st.slice_index("axial")
    QTest.keyClick(target, Qt.Key.Key_Space)
    assert st.cine_playing and win.cine_label.text() == "▶ Cine 15 fps"
    assert "CINE 15 fps" in win.viewer.adapters["axial"].corners["bl"].GetInput()
    qtbot.waitUntil(lambda: st.slice_index("axial") != k0, timeout=3000)
    QTest.keyClick(target, Qt.Key.Key_Space)
    assert not st.cine_playing and win.cine_label.text() == ""
    # tools by key: the status bar names the tool, the toolbar follows
    QTest.keyClick(target, Qt.Key.Key_E)
    assert st.tool == "ellipse" and win.tool_label.text() == "Tool: Ellipse ROI"
    assert win.tool_actions["ellipse"].isChecked()
    QTest.keyClick(target, Qt.Key.Key_W)
    assert st.tool == "wl" and win.tool_label.text() == "Tool: Window/level"
    # the 3D view rendered something (not a blank background)
    QTest.keyClick(target, Qt.Key.Key_4, Qt.KeyboardModifier.ControlModifier)
    _settle(qtbot, win.viewer)
    img3d = grab_render_window(win.viewer.viewports["3d"].render_window)
    assert (img3d.astype(int).sum(axis=2) > 120).mean() > 0.05
    win.actions_by_name["3D: CT Bone"].trigger()
    assert win.viewer.volume_adapter.preset == "ct-bone"
    bone = grab_render_window(win.viewer.viewports["3d"].render_window)
    assert np.abs(bone.astype(int) - img3d.astype(int)).mean() > 1.0  # the rendering changed

    # an analogue side by side, aligned on the matched slices, scroll/zoom/window linked
    analogue = ct_volume
    win.open_analogue(analogue, "<b>Report</b> text", matched_slice=5, query_slice=10)
    _settle(qtbot, win.viewer)
    assert win.analogue_host.isVisible() and win.viewer.isVisible()
    assert win.analogue.state.slice_index("axial") == 5 and st.slice_index("axial") == 10
    assert 5 in win.analogue.state.highlight["axial"] and 10 in st.highlight["axial"]
    assert win.analogue.adapters["axial"].highlight.GetVisibility()
    st.scroll("axial", 3)
    assert win.analogue.state.slice_index("axial") == 8
    win.analogue.state.scroll("axial", -2)
    assert st.slice_index("axial") == 11
    st.set_zoom("axial", 2.0)
    _settle(qtbot, win.viewer)
    win.analogue.flush_renders()
    # zoom is linked by physical size (issue 16): the same mm per screen pixel in both panes
    assert win.analogue.adapters["axial"].mm_per_display_pixel() == pytest.approx(
        win.viewer.adapters["axial"].mm_per_display_pixel(), rel=1e-3)
    st.apply_preset("bone")
    assert win.analogue.state.window == st.window
    assert "Report" in win.report.toPlainText()
    win.close_analogue()
    assert not win.analogue_host.isVisible() and st.layout == "2x2"


def test_measurement_list_selects_jumps_and_deletes(qtbot, ct_volume, settings):
    from casebook.viewer.core.viewstate import Measurement
    from casebook.viewer.qt.main_window import MainWindow

    win = MainWindow(settings, with_3d=False)
    qtbot.addWidget(win)
    _OPEN.append(win)
    win.resize(1400, 900)
    win.show()
    qtbot.waitExposed(win)
    win.show_volume(ct_volume)
    st, panel = win.state, win.measurements
    assert panel.rows() == [] and panel.empty.isVisible()
    k = st.slice_index("axial")
    a = st.add_measurement(Measurement("distance", "axial", k, (100.0, 100.0), (100.0, 200.0)))
    b = st.add_measurement(Measurement("ellipse", "axial", k + 3, (150.0, 150.0), (200.0, 230.0)))
    rows = panel.rows()
    assert rows[0] == ("1", "Distance", f"Axial {k + 1}", a.label())
    assert rows[1][:3] == ("2", "Ellipse ROI", f"Axial {k + 4}") and "HU" in rows[1][3]
    # a click on the ellipse's row selects it and shows its slice, where its label is drawn
    cell = panel.table.visualItemRect(panel.table.item(1, 0)).center()
    QTest.mouseClick(panel.table.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, cell)
    assert st.selected is b and st.slice_index("axial") == k + 3 and st.active_view == "axial"
    _settle(qtbot, win.viewer)
    assert [m for m, _ in win.viewer.adapters["axial"].label_actors()] == [b]
    QTest.mouseClick(panel.delete_button, Qt.MouseButton.LeftButton)
    assert st.measurements == [a] and st.selected is None and [r[0] for r in panel.rows()] == ["1"]
    assert win.viewer.adapters["axial"].label_actors() == []
    # Delete (the window's shortcut) without a selection removes the last one
    win.actions_by_name["Delete measurement"].trigger()
    assert st.measurements == [] and panel.rows() == []


def test_help_and_settings_dialogs(qtbot, settings):
    from casebook.viewer.qt.views.help_dialog import SHORTCUTS, HelpDialog
    from casebook.viewer.qt.views.settings_dialog import SettingsDialog

    h = HelpDialog()
    qtbot.addWidget(h)
    from PySide6.QtWidgets import QTableWidget

    t = h.findChild(QTableWidget)
    assert t.rowCount() == len(SHORTCUTS) and any("F2" in k for k, _ in SHORTCUTS)
    d = SettingsDialog(settings)
    qtbot.addWidget(d)
    d.top_k.setValue(25)
    d.excl_patient.setChecked(False)
    assert not d.priors_name_birth.isChecked() and "name + birth date" in d.priors_name_birth.text()
    d.priors_name_birth.setChecked(True)
    assert d.same_anatomy.isChecked()
    d.same_anatomy.setChecked(False)
    s = d.result_settings()
    assert s.search.top_k == 25 and not s.search.exclude_same_patient and s.priors_name_birth_fallback
    assert not s.search.same_anatomy
    assert settings.search.top_k != 25  # the dialog edits a copy until accepted
    path = s.save()
    from casebook.viewer.core.config import load_settings

    assert load_settings(path).search.top_k == 25 and load_settings(path).priors_name_birth_fallback
