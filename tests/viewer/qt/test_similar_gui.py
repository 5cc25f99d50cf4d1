"""Find similar in the real window on a real library, and opening a result side by side."""
from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

pytestmark = pytest.mark.gui


def test_browse_find_similar_open_side_by_side(qtbot, gui_library, pixel_encoder, monkeypatch, tmp_path):
    settings, head = gui_library
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    from casebook.viewer.qt.main_window import MainWindow

    win = MainWindow(settings, with_3d=False)
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    qtbot.waitExposed(win)
    try:
        win.refresh_library()
        assert win.browser.row_count() > 5
        win.browser.filter.setText("CT")
        assert 0 < win.browser.row_count()
        win.browser.filter.setText("")
        # open the GE head CT from the library, off the UI thread
        win.open_stored(head)
        qtbot.waitUntil(lambda: win.state.volume is not None and win.state.volume.shape[0] == 28
                        and win.current_series_id == head, timeout=30000)
        # Find similar (series): results appear as cards with scores
        ctl = win.similar_controller
        with qtbot.waitSignal(ctl.results_shown, timeout=30000) as blocker:
            QTest.mouseClick(win.similar.buttons["series"], Qt.MouseButton.LeftButton)
        resp = blocker.args[0]
        assert resp.hits, resp.reason
        assert len(win.similar.cards) == len(resp.hits)
        assert all(h.series_id != head for h in resp.hits)  # same patient excluded by default
        assert resp.hits[0].score >= resp.hits[-1].score
        assert win.similar.cards[0].findChildren(type(win.similar.status))  # labels present
        assert sum(c.has_thumbnail for c in win.similar.cards) >= len(resp.hits) - 1  # matched slices shown
        # filters are honoured: no MR in this library, so an MR-only search says why it is empty
        win.similar.modality.setCurrentText("MR")
        with qtbot.waitSignal(ctl.results_shown, timeout=30000) as b2:
            QTest.mouseClick(win.similar.buttons["series"], Qt.MouseButton.LeftButton)
        assert not b2.args[0].hits and "No similar cases" in win.similar.status.text()
        win.similar.modality.setCurrentText("any")
        win.similar.date_from.setText("not a date")
        QTest.mouseClick(win.similar.buttons["series"], Qt.MouseButton.LeftButton)
        assert "not a date" in win.similar.status.text()
        win.similar.date_from.setText("")
        # "more like this" re-ranks the results
        with qtbot.waitSignal(ctl.results_shown, timeout=30000):
            QTest.mouseClick(win.similar.buttons["series"], Qt.MouseButton.LeftButton)
        shown = ctl.response
        with qtbot.waitSignal(ctl.results_shown, timeout=30000):
            win.similar.cards[-1].feedback.emit(shown.hits[-1], +1)
        assert ctl.response.hits and ctl.response is not shown
        assert ctl.response.hits[0].series_id in {h.series_id for h in shown.hits}
        # "this slice" searches with the slice on screen
        with qtbot.waitSignal(ctl.results_shown, timeout=30000):
            QTest.mouseClick(win.similar.buttons["slice"], Qt.MouseButton.LeftButton)
        # a box drawn on the axial view becomes an ROI query (k0,k1,j0,j1,i0,i1) of that slice
        enc = pixel_encoder
        ctl.set_encoder(enc)
        QTest.mouseClick(win.similar.buttons["box"], Qt.MouseButton.LeftButton)
        assert win.viewer.controller.tool == "box"
        w = win.viewer.viewports["axial"].vtk_widget
        ad = win.viewer.adapters["axial"]
        x0, y0, x1, y1 = ad.image_rect_on_display()
        from PySide6.QtCore import QPoint

        a = QPoint(int(x0 + (x1 - x0) * 0.3), int(y0 + (y1 - y0) * 0.3))
        b = QPoint(int(x0 + (x1 - x0) * 0.7), int(y0 + (y1 - y0) * 0.6))
        with qtbot.waitSignal(ctl.results_shown, timeout=30000) as b3:
            QTest.mousePress(w, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, a)
            QTest.mouseMove(w, b)
            QTest.mouseRelease(w, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, b)
        k0, k1, j0, j1, i0, i1 = enc.boxes[-1]
        assert k1 - k0 == 1 and 0.25 * 512 < i0 < 0.35 * 512 and 0.65 * 512 < i1 < 0.75 * 512
        assert 0.25 * 512 < j0 < 0.35 * 512 and b3.args[0].hits
        assert win.viewer.controller.tool == "wl"
        # open the best result: side by side, aligned on the matched slices, linked scroll
        hit = ctl.response.hits[0]
        ctl.open_hit(hit)
        qtbot.waitUntil(lambda: win.analogue_host.isVisible() and win.analogue.state.volume is not None, timeout=30000)
        o = win.analogue.state.active_view
        assert win.state.layout == "1x1" and win.viewer.isVisible()
        a0, q0 = win.analogue.state.slice_index(o), win.state.slice_index(o)
        if win.analogue.state.n_slices(o) > 1 and win.state.n_slices(o) > 1:
            step = 1 if a0 + 1 < win.analogue.state.n_slices(o) and q0 + 1 < win.state.n_slices(o) else -1
            win.state.scroll(o, step)
            assert win.analogue.state.slice_index(o) == a0 + step
        assert a0 in win.analogue.state.highlight[o]
        assert "Score" in win.report.toPlainText()
    finally:
        win.close()
        for v in win.all_viewers():
            v.close_adapters()
        QApplication.processEvents()
