"""Find similar in the real window on a real library, and opening a result side by side."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

pytestmark = pytest.mark.gui


def _headless(settings, series_id, *, k, slice_index=None):
    """What the search service answers on its own for the query the GUI sends (default filters)."""
    from casebook.viewer.core.services.search import open_store_search

    svc = open_store_search(settings, auto_encoder=False)
    try:
        q = svc.query_from_series(series_id) if slice_index is None else svc.query_from_slice(series_id, slice_index)
        return svc.search(q, filters=svc.default_filters(), k=k)
    finally:
        svc.close()


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
        # opening the library readied the finding search of every modality family it holds
        ctl = win.similar_controller
        qtbot.waitUntil(lambda: ctl.library_warming is not None and ctl.library_warming.done.is_set(),
                        timeout=60000)
        assert "CT" in (ctl.library_warmed or []), ctl.library_warmed
        assert "CT" in ctl._service.regions()._indexes  # the region index is open before any study is
        assert win.browser.row_count() > 3  # studies (each expands to its series)
        win.browser.filter.setText("CT")
        assert 0 < win.browser.row_count()
        win.browser.filter.setText("")
        # the Tags column shows the study's tags from the case store (the body part has its own column)
        from casebook.index.case_store.store import CaseStore

        store = CaseStore.open(settings.database_path, create=False)
        try:
            store.add_tag(store.get_series(head).study_id, "gui-teaching")
            body_part = store.get_series(head).body_part
        finally:
            store.close()
        win.refresh_library()
        win.browser.filter.setText("gui-teaching")
        assert win.browser.row_count() == 1
        study = win.browser.entry_at(win.browser.study_index(0))
        assert study.tags == ("gui-teaching",) and study.main_series.series_id == head
        assert [s.body_part for s in study.series if s.series_id == head] == [body_part]
        assert win.browser.model.index(0, 6).data() == "gui-teaching"  # the Tags column shows the tag
        win.browser.filter.setText("")
        # open the GE head CT from the library, off the UI thread
        win.open_stored(head)
        qtbot.waitUntil(lambda: win.state.volume is not None and win.state.volume.shape[0] == 28
                        and win.current_series_id == head, timeout=30000)
        # opening the study readied the search for it (the first box does not wait for the index)
        ctl = win.similar_controller
        qtbot.waitUntil(lambda: ctl.warming is not None and ctl.warming.done.is_set(), timeout=30000)
        assert ctl.warmed == (head, "CT")
        # Find similar (series): results appear as cards with scores
        with qtbot.waitSignal(ctl.results_shown, timeout=30000) as blocker:
            QTest.mouseClick(win.similar.buttons["series"], Qt.MouseButton.LeftButton)
        resp = blocker.args[0]
        expected = _headless(settings, head, k=win.similar.top_k.value())
        assert [h.series_id for h in resp.hits] == [h.series_id for h in expected.hits]  # exactly, in order
        assert resp.hits and resp.hits[0].series_id == expected.hits[0].series_id  # the best analogue first
        assert len(win.similar.cards) == len(resp.hits)
        assert all(h.series_id != head for h in resp.hits)  # same patient excluded by default
        assert [h.score for h in resp.hits] == sorted((h.score for h in resp.hits), reverse=True)
        assert win.similar.cards[0].findChildren(type(win.similar.status))  # labels present
        assert sum(c.has_thumbnail for c in win.similar.cards) >= len(resp.hits) - 1  # matched slices shown
        # filters are honoured: no MR in this library, so an MR-only search says why it is empty;
        # folded away (the cards get the height), the toggle still names the filter that is on
        assert not win.similar.filters_box.isVisible() and win.similar.filters_toggle.text() == "Filters: no filters"
        win.similar.modality.setCurrentText("MR")
        assert "modality=MR" in win.similar.filters_toggle.text()
        with qtbot.waitSignal(ctl.results_shown, timeout=30000) as b2:
            QTest.mouseClick(win.similar.buttons["series"], Qt.MouseButton.LeftButton)
        assert not b2.args[0].hits and "No similar cases" in win.similar.status.text()
        # the cards of the earlier search are gone from the screen at once (not drawn under new ones)
        from casebook.viewer.qt.views.similar_panel import ResultCard

        assert not [c for c in win.similar.grid_host.findChildren(ResultCard) if c.isVisible()]
        win.similar.modality.setCurrentText("any")
        win.similar.date_from.setText("not a date")
        QTest.mouseClick(win.similar.buttons["series"], Qt.MouseButton.LeftButton)
        assert "not a date" in win.similar.status.text()
        assert win.similar.filters_box.isVisible()  # opened on the field to correct
        win.similar.date_from.setText("")
        # "more like this" re-ranks the results
        with qtbot.waitSignal(ctl.results_shown, timeout=30000):
            QTest.mouseClick(win.similar.buttons["series"], Qt.MouseButton.LeftButton)
        shown = ctl.response
        with qtbot.waitSignal(ctl.results_shown, timeout=30000):
            win.similar.cards[-1].feedback.emit(shown.hits[-1], +1)
        assert ctl.response.hits and ctl.response is not shown
        assert ctl.response.hits[0].series_id in {h.series_id for h in shown.hits}
        # "this slice" searches with the slice on screen, and finds what the service finds for it
        k_on_screen = win.state.geometry.canon_to_k(win.state.crosshair_canon)
        with qtbot.waitSignal(ctl.results_shown, timeout=30000) as b_slice:
            QTest.mouseClick(win.similar.buttons["slice"], Qt.MouseButton.LeftButton)
        sliced = b_slice.args[0]
        assert sliced.query.slice_indices == [k_on_screen]
        expected = _headless(settings, head, k=win.similar.top_k.value(), slice_index=k_on_screen)
        assert [h.series_id for h in sliced.hits] == [h.series_id for h in expected.hits] and sliced.hits
        assert {h.query_slice for h in sliced.hits} == {k_on_screen}
        # a box drawn on the axial view is matched against the archive's findings (k0,k1,j0,j1,i0,i1 of
        # that slice), never against whole slices; CT boxes return CT only
        QTest.mouseClick(win.similar.buttons["box"], Qt.MouseButton.LeftButton)
        assert win.viewer.controller.tool == "box"
        w = win.viewer.viewports["axial"].vtk_widget
        ad = win.viewer.adapters["axial"]
        x0, y0, x1, y1 = ad.image_rect_on_display()
        from PySide6.QtCore import QPoint

        a = QPoint(int(x0 + (x1 - x0) * 0.3), int(y0 + (y1 - y0) * 0.3))
        b = QPoint(int(x0 + (x1 - x0) * 0.7), int(y0 + (y1 - y0) * 0.6))
        with qtbot.waitSignal(ctl.results_shown, timeout=60000) as b3:
            QTest.mousePress(w, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, a)
            QTest.mouseMove(w, b)
            QTest.mouseRelease(w, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, b)
        k0, k1, j0, j1, i0, i1 = ctl.last_box
        assert k1 - k0 == 1 and 0.25 * 512 < i0 < 0.35 * 512 and 0.65 * 512 < i1 < 0.75 * 512
        assert 0.25 * 512 < j0 < 0.35 * 512
        boxed = b3.args[0]
        assert boxed.method == "regions" and boxed.hits and all(h.info.modality == "CT" for h in boxed.hits)
        assert boxed.region_query.slice_index == k0 and boxed.calibration
        # the panel says what the box was taken to hold, and every wrapped line of it is on screen
        status = win.similar.status
        assert "\nSearched for " in status.text() and " mm" in status.text().split("Searched for ")[1]
        qtbot.wait(50)
        lines = status.fontMetrics().boundingRect(0, 0, status.width(), 100000, int(Qt.TextFlag.TextWordWrap),
                                                  status.text()).height()
        assert status.height() >= lines and lines > status.fontMetrics().height()  # wraps, not clipped
        # each card says how sure the match is (no labels to fit on here: the archive percentile)
        assert all(c.confidence is not None and c.confidence.text() for c in win.similar.cards)
        assert win.viewer.controller.tool == "wl"
        # the matched finding opens centred and boxed on the analogue
        rhit = boxed.hits[0]
        ctl.open_hit(rhit)
        qtbot.waitUntil(lambda: win.analogue_host.isVisible() and win.analogue.state.volume is not None
                        and bool(win.analogue.state.measurements), timeout=30000)
        ast = win.analogue.state
        o = ast.active_view
        mk0, mk1, mj0, mj1, mi0, mi1 = rhit.matched_box
        drawn = ast.measurements[-1]
        assert drawn.kind == "box" and drawn.orientation == o and ast.zoom[o] >= 2.0
        centre = ast.volume.index_to_lps([(mi0 + mi1 - 1) / 2, (mj0 + mj1 - 1) / 2, (mk0 + mk1 - 1) / 2])
        assert np.allclose(ast.crosshair_lps, centre, atol=max(ast.volume.spacing) + 1e-6)
        assert "Matched finding" in win.report.toPlainText()
        shot = __import__("os").environ.get("CASEBOOK_SHOT_DIR")
        if shot:  # for a person to look at: the analogue opened on its matched finding
            from casebook.viewer.render.capture import grab_render_window, save_png

            QApplication.processEvents()
            save_png(grab_render_window(win.analogue.adapters[o].render_window), Path(shot) / "box-analogue.png")
            save_png(grab_render_window(win.viewer.adapters[o].render_window), Path(shot) / "box-query.png")
        win.close_analogue()
        # "Findings": the series' least typical regions, each matched; cards carry the matched finding
        with qtbot.waitSignal(ctl.results_shown, timeout=60000) as b4:
            QTest.mouseClick(win.similar.buttons["findings"], Qt.MouseButton.LeftButton)
        found = b4.args[0]
        assert found.method == "regions" and found.hits and all(h.info.modality == "CT" for h in found.hits)
        assert found.region_query.weights is not None and len(found.region_query.vectors) >= 1
        assert all(h.matched_box is not None for h in found.hits) and len(win.similar.cards) == len(found.hits)
        ctl.set_encoder(pixel_encoder)
        with qtbot.waitSignal(ctl.results_shown, timeout=30000):
            QTest.mouseClick(win.similar.buttons["series"], Qt.MouseButton.LeftButton)
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
