"""The reading window as a radiologist meets it (issue 16), in real windows under Xvfb: where the
keyboard goes, colour ultrasound, images without geometry, single images, 3D presets per
modality, overlay text that never collides, the Find-similar box, side by side, the small things.

Screens are read back from the VTK render windows (``grab_render_window``) or, for plain Qt
widgets, ``QWidget.grab``; the state is the model the widgets bind to.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QLineEdit

from casebook.viewer.core.viewstate import StudyInfo
from casebook.viewer.render.capture import grab_render_window

from .conftest import close_gl_windows, load

pytestmark = pytest.mark.gui




_OPEN: list = []


@pytest.fixture(autouse=True)
def _finalize_windows():
    """Release the GL contexts before the X server goes away."""
    yield
    close_gl_windows(_OPEN)


def _settle(qtbot, *viewers):
    QApplication.processEvents()
    qtbot.wait(40)
    for v in viewers:
        v.flush_renders()


def _window(qtbot, settings, with_3d=False, size=(1400, 900)):
    from casebook.viewer.qt.main_window import MainWindow

    win = MainWindow(settings, with_3d=with_3d)
    qtbot.addWidget(win)
    _OPEN.append(win)
    win.resize(*size)
    win.show()
    qtbot.waitExposed(win)
    win.activateWindow()
    qtbot.waitUntil(win.isActiveWindow, timeout=3000)
    return win



@pytest.fixture(scope="module")
def colour_us(sample_file):
    """US1_UNCR.dcm: a power-Doppler ultrasound, RGB, with neither pixel spacing nor orientation."""
    return load(sample_file("US1_UNCR.dcm"))


@pytest.fixture(scope="module")
def mr_volume(need_shared):
    return load(need_shared("dicom", "dcm_qa_ge", "In", "05_3D_Ax_T1_MP_RAGE_R22"))


def _focused_view(win):
    f = QApplication.focusWidget()
    return next((n for n, vp in win.viewer.viewports.items() if vp.vtk_widget is f), None)


# -- the keyboard ---------------------------------------------------------------------------------
def test_keyboard_stays_with_the_viewer_after_layout_changes_and_opening_a_study(qtbot, ct_volume, settings,
                                                                                 need_shared):
    win = _window(qtbot, settings)
    search = win.browser.filter
    assert isinstance(search, QLineEdit)
    assert _focused_view(win) is not None  # at start the viewer, not the search box, has the keys
    win.show_volume(ct_volume)
    _settle(qtbot, win.viewer)
    st = win.state
    target = win.viewer.viewports["axial"].vtk_widget
    QTest.mouseClick(target, Qt.MouseButton.LeftButton, pos=QPoint(20, 20))  # the reader clicks the image
    for key in (Qt.Key.Key_1, Qt.Key.Key_2, Qt.Key.Key_4):
        QTest.keyClick(QApplication.focusWidget(), key, Qt.KeyboardModifier.ControlModifier)
        _settle(qtbot)
        assert _focused_view(win) is not None, f"Ctrl+{key}: focus went to {QApplication.focusWidget()!r}"
    QTest.keyClick(QApplication.focusWidget(), Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)
    QTest.keyClick(QApplication.focusWidget(), Qt.Key.Key_I)
    assert st.invert and search.text() == ""  # inverted, no "i" typed into the filter
    k = st.slice_index("axial")
    QTest.keyClick(QApplication.focusWidget(), Qt.Key.Key_Down)
    assert st.slice_index("axial") == k + 1
    # double-click to single view and back: the keys still scroll the slices
    QTest.keyClick(QApplication.focusWidget(), Qt.Key.Key_4, Qt.KeyboardModifier.ControlModifier)
    cor = win.viewer.viewports["coronal"].vtk_widget
    QTest.mouseDClick(cor, Qt.MouseButton.LeftButton, pos=QPoint(30, 30))
    _settle(qtbot)
    assert win.viewer.visible_views() == ["coronal"] and _focused_view(win) == "coronal"
    kc = st.slice_index("coronal")
    QTest.keyClick(QApplication.focusWidget(), Qt.Key.Key_Up)
    assert st.slice_index("coronal") == kc - 1
    QTest.keyClick(QApplication.focusWidget(), Qt.Key.Key_I)
    assert not st.invert and search.text() == ""
    # open a study while the list has the keyboard: the viewer takes it once the study shows
    win.browser.tree.setFocus()
    assert QApplication.focusWidget() is win.browser.tree
    w = win.open_path(need_shared("dicom", "dcm_qa_ct", "In", "Philips", "S21570", "S2010"))
    del w
    qtbot.waitUntil(lambda: st.volume is not ct_volume and st.volume.shape[0] == 28 and st.loading_fraction >= 1.0,
                    timeout=20000)
    _settle(qtbot)
    assert _focused_view(win) is not None and st.layout == "2x2"  # a preview is no single image
    o = st.active_view
    k = st.slice_index(o)
    QTest.keyClick(QApplication.focusWidget(), Qt.Key.Key_Down)
    assert st.slice_index(o) == k + 1


# -- colour, missing geometry, single images ------------------------------------------------------
def test_colour_ultrasound_is_shown_in_colour_without_orientation_or_scale(qtbot, colour_us, settings):
    assert colour_us.is_color and not colour_us.geometry.patient_geometry_known
    assert not colour_us.geometry.pixel_spacing_known
    win = _window(qtbot, settings, with_3d=True)
    win.show_volume(colour_us)
    _settle(qtbot, win.viewer)
    st = win.state
    # a single image opens in one view: no black reformats, no 3D that cannot render
    assert st.layout == "1x1" and win.viewer.visible_views() == [st.active_view]
    ad = win.viewer.adapters[st.active_view]
    # the screen shows the file's colours: Doppler orange stays orange
    st.set_overlay_visible(False)
    win.viewer.flush_renders()
    shot = grab_render_window(win.viewer.viewports[st.active_view].render_window).astype(int)
    x0, y0, x1, y1 = ad.image_rect_on_display()
    img = st.geometry.slice_array(st.active_view, st.slice_index(st.active_view)).astype(int)
    rows, cols = img.shape[:2]
    ys = np.linspace(y0 + 2, y1 - 2, 60).astype(int)
    xs = np.linspace(x0 + 2, x1 - 2, 80).astype(int)
    r = np.clip(np.round((ys - y0) / (y1 - y0) * (rows - 1)).astype(int), 0, rows - 1)
    c = np.clip(np.round((xs - x0) / (x1 - x0) * (cols - 1)).astype(int), 0, cols - 1)
    want = img[np.ix_(r, c)]
    got = shot[np.ix_(ys, xs)][..., :3]
    colourful = (want.max(axis=2) - want.min(axis=2)) > 80  # the Doppler signal
    assert colourful.sum() > 20
    # where the file is coloured the screen is coloured, red above blue as in the file
    assert np.median(got[colourful].max(axis=1) - got[colourful].min(axis=1)) > 60
    assert np.median(np.abs(got[colourful] - want[colourful])) < 40
    st.set_overlay_visible(True)
    win.viewer.flush_renders()
    # no orientation letters, no "Axial", no scale bar: the file gives none, and the image says so
    assert not any(m.GetVisibility() for m in ad.markers.values())
    assert not ad.scale_actor.GetVisibility() and not ad.scale_text.GetVisibility()
    tr = ad.corners["tr"].GetInput()
    assert "Axial" not in tr and "No patient orientation in file" in tr and "No pixel spacing" in tr
    assert "Z:" not in ad.corners["bl"].GetInput()
    # no crosshair lines (no other planes to point at) and no A/P/R/L glyphs on screen: with the
    # overlay on, the screen differs from the clean image only in the corners, never where the
    # letters would be (mid-left, mid-right, top and bottom centre)
    assert not ad.cross_h.GetVisibility() and not ad.cross_v.GetVisibility()
    with_overlay = grab_render_window(win.viewer.viewports[st.active_view].render_window).astype(int)
    h, w = with_overlay.shape[:2]
    diff = np.abs(with_overlay - shot).sum(axis=2) > 30
    assert diff[h - 60:, :].any() or diff[:60, :].any()  # the corner text is there
    for region in (diff[h // 2 - 14:h // 2 + 14, :40], diff[h // 2 - 14:h // 2 + 14, -40:],
                   diff[:50, w // 2 - 16:w // 2 + 16], diff[-50:, w // 2 - 16:w // 2 + 16]):
        assert not region.any()
    # a distance on it is in pixels
    from casebook.viewer.core.viewstate import Measurement

    m = st.add_measurement(Measurement("distance", st.active_view, 0, (100.0, 100.0), (100.0, 200.0)))
    assert m.label() == "100.0 px"


def test_a_ct_after_a_single_image_gets_the_2x2_back_with_letters(qtbot, colour_us, ct_volume, settings):
    win = _window(qtbot, settings)
    win.show_volume(ct_volume)
    assert win.state.layout == "2x2"
    win.show_volume(colour_us)
    assert win.state.layout == "1x1"
    win.show_volume(ct_volume)
    _settle(qtbot, win.viewer)
    assert win.state.layout == "2x2" and set(win.viewer.visible_views()) == {"axial", "coronal", "sagittal"}
    ad = win.viewer.adapters["axial"]
    assert [ad.markers[k].GetInput() for k in ("left", "right", "top", "bottom")] == ["R", "L", "A", "P"]
    assert all(m.GetVisibility() for m in ad.markers.values()) and ad.scale_actor.GetVisibility()
    assert "Axial" in ad.corners["tr"].GetInput()


# -- 3D presets -----------------------------------------------------------------------------------
def test_3d_preset_follows_the_modality(qtbot, ct_volume, mr_volume, settings):
    win = _window(qtbot, settings, with_3d=True)
    va = win.viewer.volume_adapter
    win.show_volume(ct_volume)
    assert va.preset == "ct-soft-tissue"
    win.show_volume(mr_volume)
    _settle(qtbot, win.viewer)
    assert va.preset == "mr-mip" and "MIP" in va.label.GetInput()
    shot = grab_render_window(win.viewer.viewports["3d"].render_window).astype(int)
    lit = shot[shot.sum(axis=2) > 150]
    assert len(lit) > 0.01 * shot.shape[0] * shot.shape[1]  # it rendered the (QA phantom) volume
    # grey, not the brown block of a CT transfer function on MR signal
    assert np.median(lit.max(axis=1) - lit.min(axis=1)) < 12
    # the reader's choice for MR comes back for the next MR; CT keeps its own
    win.actions_by_name["3D: MR grey ramp"].trigger()
    win.show_volume(ct_volume)
    assert va.preset == "ct-soft-tissue"
    win.show_volume(mr_volume)
    assert va.preset == "mr-default"


# -- overlay text ---------------------------------------------------------------------------------
def _bbox(actor, renderer):
    """(xmin, xmax, ymin, ymax) of a text actor on the screen, in display pixels."""
    b = [0.0] * 4
    actor.GetBoundingBox(renderer, b)  # relative to the actor's anchor
    x, y = actor.GetPositionCoordinate().GetComputedDisplayValue(renderer)
    return [b[0] + x, b[1] + x, b[2] + y, b[3] + y]


def _overlap(a, b):
    return a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]


def test_overlay_text_never_collides_in_2x2(qtbot, ct_volume, settings):
    from dataclasses import replace

    win = _window(qtbot, settings, size=(1100, 760))
    vol = replace(ct_volume, description="CHEST ABDOMEN PELVIS WITH CONTRAST PORTAL VENOUS PHASE 1.25 MM")
    win.show_volume(vol, StudyInfo(patient_name="VERYLONGFAMILYNAME^SOMEONE WITH MANY NAMES",
                                   patient_id="1234567890", study_description="CT CHEST ABDOMEN PELVIS FOLLOW-UP"))
    _settle(qtbot, win.viewer)
    for o in ("axial", "coronal", "sagittal"):
        ad = win.viewer.adapters[o]
        vw, vh = ad.render_window.GetSize()
        assert vw < 500  # the small views of 2x2
        tl, tr, top = (_bbox(ad.corners["tl"], ad.renderer), _bbox(ad.corners["tr"], ad.renderer),
                       _bbox(ad.markers["top"], ad.renderer))
        assert not _overlap(tl, top) and not _overlap(tr, top) and not _overlap(tl, tr), o
        assert tl[1] <= vw / 2 and tr[0] >= vw / 2 and tr[1] <= vw and tl[0] >= 0 and tl[3] <= vh
        # lines are cut at a word, with an ellipsis, never mid-word
        for line in ad.corners["tr"].GetInput().splitlines() + ad.corners["tl"].GetInput().splitlines():
            if line.endswith("…"):
                stem = line[:-1]
                full = next(x for x in (vol.modality + " " + vol.description, "VERYLONGFAMILYNAME^SOMEONE WITH MANY "
                                        "NAMES 1234567890", "CT CHEST ABDOMEN PELVIS FOLLOW-UP") if x.startswith(stem))
                first_word = full.split(" ")[0]
                if len(first_word) > len(stem):
                    continue  # one word wider than the space: only then is a word cut
                assert full[len(stem)] in " ,;:-^", (stem, full)


# -- Find similar box -----------------------------------------------------------------------------
def test_the_drawn_box_stays_on_the_image_until_the_next_one(qtbot, ct_volume):
    from casebook.viewer.qt.views.study_viewer import StudyViewer

    v = StudyViewer(with_3d=False)
    _OPEN.append(v)
    qtbot.addWidget(v)
    v.resize(520, 520)
    v.state.set_layout("1x1")
    v.show()
    qtbot.waitExposed(v)
    v.set_volume(ct_volume)
    v.state.set_crosshair_visible(False)
    v.state.set_overlay_visible(False)
    _settle(qtbot, v)
    v.state.set_tool("box")
    w = v.viewports["axial"].vtk_widget
    got = []
    v.box_drawn.connect(got.append)
    QTest.mousePress(w, Qt.MouseButton.LeftButton, pos=QPoint(150, 150))
    QTest.mouseMove(w, QPoint(260, 250))
    QTest.mouseRelease(w, Qt.MouseButton.LeftButton, pos=QPoint(300, 280))
    _settle(qtbot, v)
    assert len(got) == 1 and v.state.search_box is got[0] and v.state.preview is None
    ad = v.adapters["axial"]
    assert ad.search_box_actor.GetVisibility()
    shot = grab_render_window(v.viewports["axial"].render_window).astype(int)
    dpr = v.devicePixelRatioF()
    # the box's edges are drawn in its colour (magenta: red and blue high, green lower)
    edge = shot[int(150 * dpr) + 5:int(280 * dpr) - 5, int(150 * dpr) - 2:int(150 * dpr) + 3]
    magenta = (edge[..., 0] > 180) & (edge[..., 2] > 150) & (edge[..., 1] < edge[..., 0] - 60)
    assert magenta.any(axis=1).mean() > 0.8
    # scrolling away hides it, coming back shows it again
    v.state.scroll("axial", 1)
    assert not ad.search_box_actor.GetVisibility()
    v.state.scroll("axial", -1)
    assert ad.search_box_actor.GetVisibility()
    # the next box replaces it
    QTest.mousePress(w, Qt.MouseButton.LeftButton, pos=QPoint(60, 60))
    QTest.mouseMove(w, QPoint(100, 100))
    QTest.mouseRelease(w, Qt.MouseButton.LeftButton, pos=QPoint(120, 110))
    assert len(got) == 2 and v.state.search_box is got[1]


# -- side by side ---------------------------------------------------------------------------------
def test_side_by_side_equal_panes_linked_by_position_and_physical_size(qtbot, ct_volume, mr_volume, settings):
    win = _window(qtbot, settings)
    win.show_volume(ct_volume)
    _settle(qtbot, win.viewer)
    st, an = win.state, win.analogue.state
    win.open_analogue(mr_volume, "<p>Report of the analogue</p>", matched_slice=60, query_slice=14)
    _settle(qtbot, win.viewer, win.analogue)
    a, b = win.splitter.sizes()
    assert abs(a - b) <= 0.05 * (a + b)  # the width is shared equally
    # the same mm per screen pixel in both panes (the CT is 0.45 mm/px, the MR 0.94: zoom differs)
    qa, aa = win.viewer.adapters["axial"], win.analogue.adapters["axial"]
    assert aa.mm_per_display_pixel() == pytest.approx(qa.mm_per_display_pixel(), rel=0.02)
    st.set_zoom("axial", 2.0)
    _settle(qtbot, win.viewer, win.analogue)
    assert aa.mm_per_display_pixel() == pytest.approx(qa.mm_per_display_pixel(), rel=0.02)
    assert aa.scale_text.GetInput() == qa.scale_text.GetInput()  # one scale bar length for both
    # five wheel clicks on the 5 mm CT move the 1.2 mm MR by the same 25 mm (about 21 slices)
    z_q, z_a = float(st.crosshair_lps[2]), float(an.crosshair_lps[2])
    w = win.viewer.viewports["axial"].vtk_widget
    from PySide6.QtCore import QPointF
    from PySide6.QtGui import QWheelEvent

    for _ in range(5):
        ev = QWheelEvent(QPointF(50, 50), QPointF(w.mapToGlobal(QPoint(50, 50))), QPoint(0, 0), QPoint(0, -120),
                         Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
        QApplication.sendEvent(w, ev)
    dq, da = float(st.crosshair_lps[2]) - z_q, float(an.crosshair_lps[2]) - z_a
    assert abs(dq) == pytest.approx(25.0, abs=0.01)
    assert da == pytest.approx(dq, abs=0.6 * mr_volume.spacing[0])
    # the report is in the palette's text colour (readable in the light theme too)
    from casebook.viewer.qt.theme import apply_theme

    apply_theme(QApplication.instance(), "light")
    try:
        win._show_report()
        _settle(qtbot)
        img = win.report.viewport().grab().toImage()
        pal = win.report.palette()
        text, base = pal.color(pal.ColorRole.Text), pal.color(pal.ColorRole.Base)
        darkest = min(QColorLum(img.pixelColor(x, y)) for x in range(0, img.width(), 2) for y in range(0, 60, 2))
        assert abs(darkest - QColorLum(text)) < 60 and QColorLum(base) - darkest > 150
    finally:
        apply_theme(QApplication.instance(), settings.theme)
    win.close_analogue()
    assert not win.analogue_host.isVisible() and st.layout == "2x2"


def QColorLum(c) -> float:  # noqa: N802 - reads like the Qt colour it takes
    return 0.299 * c.red() + 0.587 * c.green() + 0.114 * c.blue()


# -- the small things -----------------------------------------------------------------------------
def test_help_table_fits_and_closed_panels_come_back_from_the_view_menu(qtbot, settings):
    from casebook.viewer.qt.views.help_dialog import HelpDialog

    h = HelpDialog()
    qtbot.addWidget(h)
    h.show()
    qtbot.waitExposed(h)
    t = h.table
    assert t.horizontalScrollBar().maximum() == 0  # nothing cut, no sideways scrolling
    need = max(t.sizeHintForColumn(c) for c in range(1)) + t.sizeHintForColumn(1)
    assert t.viewport().width() >= need
    win = _window(qtbot, settings)
    view_menu = next(a.menu() for a in win.menuBar().actions() if a.text() == "&View")
    names = [a.text() for a in view_menu.actions()]
    assert {"Studies panel", "Similar cases panel", "Measurements panel"} <= set(names)
    win.browser_dock.close()
    _settle(qtbot)
    assert not win.browser_dock.isVisible() and not win.panel_actions["Studies"].isChecked()
    win.panel_actions["Studies"].trigger()
    _settle(qtbot)
    assert win.browser_dock.isVisible()
