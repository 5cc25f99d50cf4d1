"""The compare layout in the real window under Xvfb.

A real brain MR volume (brain_tumor_progression) is the current; the prior is the same patient's
anatomy with a different coverage (its first slices missing) and a different position in the
scanner (a known translation). In the compare layout the two views show the same anatomy at the
crosshair (compared on the screenshots), scrolling one scrolls the other, the subtraction of the
registered prior is flat, and a copied measurement reports its change. A single-slice prior from
the covid19_ny_sbu DICOM library opens unlinked with the reason.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from casebook.viewer.render.capture import grab_render_window

from .conftest import close_gl_windows

pytestmark = pytest.mark.gui
sitk = pytest.importorskip("SimpleITK")
_OPEN: list = []


@pytest.fixture(autouse=True)
def _close_windows():
    yield
    close_gl_windows(_OPEN)


@pytest.fixture(scope="module")
def brain_pair(need_shared):
    from casebook.viewer.core.services.registration import volume_from_sitk

    folder = need_shared("temporal", "brain_tumor_progression", "08")
    cur = volume_from_sitk(sitk.ReadImage(str(folder / "Pre_Scan_T1.nii.gz"), sitk.sitkFloat32), modality="MR",
                           description="T1 post")
    cut = 4
    k_step = cur.direction[:, 2] * cur.spacing[0]
    shift = np.array([14.0, -9.0, 6.0])  # the patient lay elsewhere in the prior's scanner
    prior = replace(cur, voxels=cur.voxels[cut:].copy(),
                    origin=tuple(np.asarray(cur.origin) + cut * k_step + shift), meta={}, description="T1 prior")
    m = np.eye(4)
    m[:3, 3] = shift  # current LPS -> prior LPS
    return cur, prior, m, cut


def _window(settings, qtbot):
    from casebook.viewer.qt.main_window import MainWindow

    win = MainWindow(settings, with_3d=False)
    _OPEN.append(win)
    qtbot.addWidget(win)
    win.resize(1300, 800)
    win.show()
    qtbot.waitExposed(win)
    return win


HALF = 30  # the screen patch around the crosshair that is compared (pixels each side)


def _view_image(viewer) -> np.ndarray:
    """The patch of the axial view's screenshot around the crosshair, the crosshair lines blanked.

    The crosshair is found on the screenshot itself: the row and the column with the most
    coloured (not grey) pixels are its two lines.
    """
    viewer.flush_renders()
    rgb = grab_render_window(viewer.adapters["axial"].render_window).astype(np.float64)
    colour = (rgb.max(axis=2) - rgb.min(axis=2)) > 60
    y, x = int(np.argmax(colour.sum(axis=1))), int(np.argmax(colour.sum(axis=0)))
    grey = rgb.mean(axis=2)
    patch = grey[y - HALF:y + HALF + 1, x - HALF:x + HALF + 1].copy()
    assert patch.shape == (2 * HALF + 1, 2 * HALF + 1), "the crosshair is too near the view's edge"
    keep = np.ones(patch.shape, dtype=bool)
    keep[HALF - 3:HALF + 4, :] = False
    keep[:, HALF - 3:HALF + 4] = False
    return patch[keep]


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_compare_layout_same_anatomy_and_linked_scrolling(qtbot, settings, brain_pair) -> None:
    cur, prior, m, cut = brain_pair
    win = _window(settings, qtbot)
    win.show_volume(cur)
    win.state.set_active_view("axial")
    ctl = win.compare_controller
    with qtbot.waitSignal(ctl.pair_shown, timeout=20000) as sig:
        ctl.show_pair(cur, prior, m, "Registered (rigid, test): NMI 2.00", days=412)
    assert sig.args == [True]
    assert win.analogue_host.isVisible() and ctl.bar.isVisible()
    # hanging protocol: one view each, the same plane, the same window
    assert win.state.layout == win.analogue.state.layout == "1x1"
    assert win.analogue.state.active_view == win.state.active_view == "axial"
    assert win.analogue.state.window == win.state.window
    assert "1 year" in win.report.toPlainText() and "NMI 2.00" in ctl.bar.quality.text()
    k = win.state.slice_index("axial")
    assert win.analogue.state.slice_index("axial") == k - cut  # the same anatomy, not the same number
    QApplication.processEvents()
    a, b = _view_image(win.viewer), _view_image(win.analogue)
    assert _corr(a, b) > 0.95  # the same anatomy on screen
    # scrolling the current (keyboard, in its view) scrolls the prior to the same anatomy
    win.activateWindow()
    win.viewer.focus_view("axial")
    QApplication.processEvents()
    target = QApplication.focusWidget() or win.viewer.viewports["axial"].vtk_widget
    for _ in range(3):
        QTest.keyClick(target, Qt.Key.Key_Up)
    k2 = win.state.slice_index("axial")
    assert k2 != k and win.analogue.state.slice_index("axial") == k2 - cut
    a2, b2 = _view_image(win.viewer), _view_image(win.analogue)
    assert _corr(a2, b2) > 0.95
    assert _corr(a2, a) < _corr(a2, b2)  # a different slice really looks different
    # and scrolling the prior scrolls the current
    win.analogue.state.scroll("axial", -2)
    assert win.state.slice_index("axial") == win.analogue.state.slice_index("axial") + cut
    # window/level follows
    win.state.set_window(500.0, 1500.0)
    assert win.analogue.state.window == (500.0, 1500.0)
    # the subtraction of the registered prior is flat where both have anatomy
    ctl.set_mode("subtraction")
    sub = win.analogue.state.volume
    assert sub.shape == cur.shape and sub.window[0] == 0.0
    inner = sub.voxels[cut + 1:-1, 40:-40, 40:-40]
    assert np.percentile(np.abs(inner), 95) < 0.05 * float(np.ptp(cur.voxels))
    assert win.analogue.state.slice_index("axial") == win.state.slice_index("axial")  # same grid now
    ctl.set_mode("checkerboard")
    assert "checkerboard" in win.analogue.state.volume.description
    ctl.set_mode("prior")
    assert win.analogue.state.volume is prior
    # a nudge moves the prior's lookup by 1 mm
    before = win.analogue.state.crosshair_lps.copy()
    ctl.nudge_by("right", 1)
    assert np.linalg.norm(win.analogue.state.crosshair_lps - before) == pytest.approx(1.0, abs=0.6)
    ctl.reset_nudge()
    # a measurement copied to the prior lands on the same anatomy; adjusting it reports the change
    from casebook.viewer.core.viewstate.measurements import Measurement

    kk = win.state.slice_index("axial")
    dm = win.state.add_measurement(Measurement("distance", "axial", kk, (120.0, 100.0), (120.0, 140.0)))
    win.state.select_measurement(dm)
    copied = ctl.copy_measurement()
    assert copied is not None and copied in win.analogue.state.measurements
    assert copied.slice_index == kk - cut
    assert copied.values["length_mm"] == pytest.approx(dm.values["length_mm"], abs=0.5)
    # the reader shortens the prior's copy (the lesion was smaller then): the change is reported
    copied.p1 = (120.0, 130.0)
    win.analogue.state.update_measurement(copied)
    text = ctl.bar.change.text()
    assert "grown from 30.0 to 40.0 mm" in text and "+33%" in text and "1 year" in text
    # oblique MPR: turning the current's crosshair axes (keys) turns the prior's through the
    # transform (a shift here, so by the same rotation), and the two still show the same anatomy
    win.viewer.focus_view("axial")
    QApplication.processEvents()
    target = QApplication.focusWidget() or win.viewer.viewports["axial"].vtk_widget
    for _ in range(3):
        QTest.keyClick(target, Qt.Key.Key_Period)
    assert win.state.plane_angle_deg == pytest.approx(15.0)
    np.testing.assert_allclose(win.analogue.state.plane_rotation, win.state.plane_rotation, atol=1e-9)
    a3, b3 = _view_image(win.viewer), _view_image(win.analogue)
    assert _corr(a3, b3) > 0.95 and _corr(a3, b3) > _corr(a3, a2)
    QTest.keyClick(target, Qt.Key.Key_Slash)
    assert win.analogue.state.plane_angle_deg == 0.0
    win.close_analogue()
    assert not win.analogue_host.isVisible() and win.link is None


def test_single_slice_prior_from_the_library_opens_unlinked(qtbot, settings, need_shared) -> None:
    from casebook.index.case_store import CaseStore
    from casebook.viewer.core.services.ingest import ingest

    src = need_shared("temporal", "covid19_ny_sbu", "data-sample", "A002304", "axial")
    store = CaseStore.open(settings.database_path)
    try:
        ingest([src], store, workers=1)
        later = max(store.list_studies(), key=lambda s: s.study_date)
        series = store.list_series(study_id=later.id)[0].id
    finally:
        store.close()
    win = _window(settings, qtbot)
    win.open_stored(series)
    qtbot.waitUntil(lambda: win.current_series_id == series and win.state.volume is not None, timeout=30000)
    ctl = win.compare_controller
    qtbot.waitUntil(lambda: len(ctl.timeline.entries) == 1, timeout=10000)
    assert ctl.timeline.entries[0].relation == "prior"
    assert "before" in ctl.timeline.tree.topLevelItem(0).text(1)
    act = win.actions_by_name["Compare with prior"]
    assert act.shortcut().toString() == "Shift+P"
    with qtbot.waitSignal(ctl.pair_shown, timeout=60000, raising=False) as sig:
        act.trigger()
    assert sig.signal_triggered, ctl.timeline.status.text()
    assert sig.args == [False]  # side by side, not linked
    assert win.link is None and win.analogue_host.isVisible()
    assert "single slice" in ctl.bar.quality.text()
    assert not ctl.bar.copy_button.isEnabled()
    ctl.set_mode("subtraction")  # refused with a message, nothing breaks
    assert "need a registered prior" in ctl.timeline.status.text()
    win.close_analogue()
    # follow-up of an analogue: the earlier study open as a similar case lists its later study
    from casebook.viewer.core.services.library import load_stored_volume

    store = CaseStore.open(settings.database_path)
    try:
        earlier = min(store.list_studies(), key=lambda s: s.study_date)
        vol = load_stored_volume(store, store.list_series(study_id=earlier.id)[0].id)
    finally:
        store.close()
    win.open_analogue(vol, "<p>a similar case</p>")
    assert not ctl.bar.isVisible()
    entries = ctl.show_follow_ups()
    assert [e.study.id for e in entries] == [later.id] and ctl.timeline.mode == "follow-up"
    assert ctl.timeline.compare_button.text() == "Open follow-up"
    assert "later" in ctl.timeline.tree.topLevelItem(0).text(1)
    with qtbot.waitSignal(ctl.timeline.follow_up_requested, timeout=5000):
        ctl.timeline.compare_button.click()
    qtbot.waitUntil(lambda: "Follow-up of the analogue" in win.report.toPlainText(), timeout=30000)
    assert win.analogue.state.volume.study_uid == later.study_uid
