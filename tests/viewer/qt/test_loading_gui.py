"""Loading and importing off the UI thread, with a first slice before the whole series."""
from __future__ import annotations

import time

import numpy as np
import pytest
from PySide6.QtWidgets import QApplication

pytestmark = pytest.mark.gui


def _close(win):
    win.close()
    for v in win.all_viewers():
        v.close_adapters()
    QApplication.processEvents()


def test_open_folder_shows_first_slice_then_the_series(qtbot, need_shared, settings):
    folder = need_shared("dicom", "dcm_qa_ge", "In", "05_3D_Ax_T1_MP_RAGE_R22")
    from casebook.viewer.qt.main_window import MainWindow

    win = MainWindow(settings, with_3d=True)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    try:
        shapes, vols = [], []
        win.state.events.volume.connect(lambda volume, keep_view: (shapes.append(volume.shape[0]), vols.append(volume)))
        t0 = time.perf_counter()
        worker = win.open_path(folder)
        # the UI thread keeps running while the worker loads: timers fire meanwhile
        ticks = []
        qtbot.waitUntil(lambda: (ticks.append(1) or True) and win.state.volume is not None
                        and win.state.volume.shape[0] == 130, timeout=60000)
        assert shapes[0] == 1 and shapes[-1] == 130, shapes  # middle slice first, then all of it
        assert len(ticks) > 1
        assert win.state.loading_fraction == 1.0
        # the full series opens at the preview slice's position, keeping the preview's window
        g = win.state.geometry
        shown_lps = g.canon_to_lps(win.state.crosshair_canon)
        normal = vols[-1].direction[:, 2]
        assert abs(float((shown_lps - vols[0].index_to_lps([0, 0, 0])) @ normal)) <= vols[-1].spacing[0] / 2 + 1e-6
        assert win.state.window == vols[0].default_window()
        # the 3D view frames the full volume although the preview (one slice) had no 3D
        from casebook.viewer.render.capture import grab_render_window

        win.viewer.flush_renders()
        img = grab_render_window(win.viewer.viewports["3d"].render_window)
        bg = img[2, 2].astype(int)  # corner = background colour
        # (this QA series is mostly zero outside a bright cross-shaped pattern: little to draw)
        assert (np.abs(img.astype(int) - bg).sum(axis=2) > 30).mean() > 0.005
        assert time.perf_counter() - t0 < 60
        assert not worker.cancel_token.is_set()
    finally:
        _close(win)


def test_import_folder_with_progress_and_library_refresh(qtbot, need_shared, settings):
    folder = need_shared("dicom", "dcm_qa_ct", "In", "GE")
    from casebook.viewer.qt.main_window import MainWindow

    win = MainWindow(settings, with_3d=False)
    qtbot.addWidget(win)
    win.show()
    try:
        assert win.browser.row_count() == 0
        w = win.import_path(folder)
        qtbot.waitUntil(w.done.is_set, timeout=60000)  # not waitSignal: it may have fired already
        qtbot.waitUntil(lambda: win.browser.row_count() == 1, timeout=10000)
        assert "Imported" in win.status_label.text()
        # a cancelled import stops cleanly and says so
        w2 = win.import_path(need_shared("dicom", "dcm_qa_ct", "In", "Philips"))
        w2.cancel()
        qtbot.waitUntil(w2.done.is_set, timeout=60000)
        qtbot.waitUntil(lambda: "cancelled" in win.status_label.text().lower(), timeout=10000)
        assert "Imported" not in win.status_label.text()
    finally:
        _close(win)


def test_cli_registers_gui():
    from casebook.viewer.cli import COMMAND_MODULES, build_parser

    assert "gui" in COMMAND_MODULES
    args = build_parser().parse_args(["gui", "--library", "/tmp/x", "/tmp"])
    assert args.library == "/tmp/x" and str(args.path) == "/tmp"
