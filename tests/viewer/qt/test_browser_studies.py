"""The study browser in the real window: a study list that expands to series, searched over its
columns with a count that follows, long IDs elided with the full text in a tooltip, double-click
opening a series (a study: its main series); and Import that leaves the new series searchable."""
from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

pytestmark = pytest.mark.gui


def _dclick(qtbot, tree, index):
    tree.scrollTo(index)
    rect = tree.visualRect(index)
    QTest.mouseClick(tree.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, rect.center())
    QTest.mouseDClick(tree.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, rect.center())


def test_study_tree_search_count_elided_ids_and_double_click(qtbot, main_window, gui_library, monkeypatch, tmp_path):
    settings, head = gui_library
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    from casebook.index.case_store.store import CaseStore
    from casebook.viewer.core.services.study_list import StudyEntry, load_study_list

    store = CaseStore.open(settings.database_path, create=False)
    try:
        studies = store.list_studies(limit=None)
        n_series = len(store.list_series())
        head_study = store.get_series(head).study_id
        tagged = [s.id for s in studies[:2] if s.id != head_study][:1] + [head_study]
        for sid in tagged:
            store.add_tag(sid, "follow-up-grew")
    finally:
        store.close()
    win = main_window(settings)
    try:
        win.refresh_library()
        b = win.browser
        # studies, not series: one top-level row per study, its series below it
        assert b.row_count() == len(studies) and len(studies) < n_series
        assert b.status.text() == f"{len(studies)} studies ({n_series} series)"
        assert sum(b.model.rowCount(b.study_index(r)) for r in range(b.row_count())) == n_series
        headers = [b.model.headerData(c, Qt.Orientation.Horizontal) for c in range(b.model.columnCount())]
        assert headers[:2] == ["Patient", "Patient ID"] and "Tags" in headers and "Diagnosis" in headers
        # a real tag finds its studies, and the count follows the filter
        b.filter.setText("follow-up-grew")
        assert b.row_count() == len(tagged)
        shown = [b.entry_at(b.study_index(r)) for r in range(b.row_count())]
        assert sorted(e.study_id for e in shown) == sorted(tagged)
        assert b.status.text() == (f"{len(tagged)} of {len(studies)} studies "
                                   f"({sum(e.series_count for e in shown)} series)")
        # a patient name (as the reader writes it) finds that patient's studies
        sl = load_study_list(settings)
        named = next(e for e in sl.studies if e.patient_name)
        b.filter.setText(named.patient_name.split(",")[0].lower())
        assert named.study_id in {b.entry_at(b.study_index(r)).study_id for r in range(b.row_count())}
        b.filter.setText("")
        # long IDs are elided to the column's width, the full ID in the tooltip
        longest = max(range(b.row_count()), key=lambda r: len(b.entry_at(b.study_index(r)).patient_id))
        idx = b.model.index(longest, 1)
        full = b.entry_at(idx).patient_id
        assert idx.data(Qt.ItemDataRole.ToolTipRole) == full
        fm = b.tree.fontMetrics()
        assert b.tree.columnWidth(1) <= 120
        if fm.horizontalAdvance(full) > b.tree.columnWidth(1):
            assert b.tree.textElideMode() != Qt.TextElideMode.ElideNone
        # double-click a series row: that series opens (Find similar then works on it)
        r_head = next(r for r in range(b.row_count()) if b.entry_at(b.study_index(r)).study_id == head_study)
        b.tree.expand(b.study_index(r_head))
        srow = next(i for i in range(b.model.rowCount(b.study_index(r_head)))
                    if b.entry_at(b.series_index(r_head, i)).series_id == head)
        with qtbot.waitSignal(b.open_requested, timeout=5000) as opened:
            _dclick(qtbot, b.tree, b.series_index(r_head, srow))
        assert opened.args[0]["series_id"] == head
        qtbot.waitUntil(lambda: win.current_series_id == head and win.state.volume is not None
                        and win.state.volume.shape[0] == 28, timeout=30000)
        # double-click a study row: its main series opens
        other = next(r for r in range(b.row_count()) if r != r_head and b.entry_at(b.study_index(r)).series_count > 1) \
            if any(b.entry_at(b.study_index(r)).series_count > 1 for r in range(b.row_count()) if r != r_head) \
            else next(r for r in range(b.row_count()) if r != r_head)
        entry = b.entry_at(b.study_index(other))
        assert isinstance(entry, StudyEntry)
        with qtbot.waitSignal(b.open_requested, timeout=5000) as opened:
            _dclick(qtbot, b.tree, b.model.index(other, 2))
        assert opened.args[0]["series_id"] == entry.main_series.series_id
        qtbot.waitUntil(lambda: win.current_series_id == entry.main_series.series_id, timeout=30000)
    finally:
        win.close()  # the main_window fixture also closes its VTK adapters
        store = CaseStore.open(settings.database_path, create=False)
        try:
            for sid in tagged:
                store.remove_tag(sid, "follow-up-grew")
        finally:
            store.close()


def test_import_from_the_window_is_searchable_and_lists_skipped_files(qtbot, main_window, need_shared, settings, tmp_path):
    """Issue 16: after Import…, Find similar on the new series failed with "run casebook embed first"."""
    folder = tmp_path / "incoming"
    folder.mkdir()
    for f in sorted(need_shared("dicom", "dcm_qa_ct", "In", "GE").iterdir()):
        (folder / f.name).symlink_to(f)
    (folder / "readme.txt").write_text("not DICOM\n")
    win = main_window(settings)
    try:
        w = win.import_path(folder)
        qtbot.waitUntil(w.done.is_set, timeout=120000)
        w2 = win.import_path(need_shared("dicom", "dcm_qa_ct", "In", "Philips"))
        qtbot.waitUntil(w2.done.is_set, timeout=120000)
        qtbot.waitUntil(lambda: win.browser.row_count() >= 2, timeout=10000)
        dlg = win.import_report
        assert dlg.isVisible() and dlg.report.index.searchable
        assert "series embedded" in win.status_label.text()
        # the last import's report lists every skipped file with its reason (none for Philips now)
        assert dlg.files.rowCount() == len(dlg.report.skipped)
        # open the GE series from the browser and search: results, no "run casebook embed"
        ge = next(e for e in win.browser.shown if any(s.images == 28 for s in e.series) and e.series_count == 1)
        win.open_stored(ge.main_series.series_id)
        qtbot.waitUntil(lambda: win.current_series_id == ge.main_series.series_id, timeout=30000)
        ctl = win.similar_controller
        failures = []
        ctl.search_failed.connect(failures.append)
        with qtbot.waitSignal(ctl.results_shown, timeout=60000) as shown:
            QTest.mouseClick(win.similar.buttons["series"], Qt.MouseButton.LeftButton)
        assert not failures
        resp = shown.args[0]
        assert resp.query is not None and resp.query.series_id == ge.main_series.series_id
        assert resp.hits and len(win.similar.cards) == len(resp.hits)
    finally:
        win.close()  # the main_window fixture also closes its VTK adapters


def test_import_report_dialog_lists_skipped_files(qtbot, main_window, need_shared, settings, tmp_path):
    folder = tmp_path / "incoming"
    folder.mkdir()
    for f in sorted(need_shared("dicom", "dcm_qa_ct", "In", "GE").iterdir())[:3]:
        (folder / f.name).symlink_to(f)
    (folder / "readme.txt").write_text("not DICOM\n")
    (folder / "empty.dcm").write_bytes(b"")
    win = main_window(settings)
    try:
        w = win.import_path(folder)
        qtbot.waitUntil(w.done.is_set, timeout=120000)
        qtbot.waitUntil(lambda: getattr(win, "import_report", None) is not None, timeout=10000)
        dlg = win.import_report
        rows = {dlg.files.item(r, 0).text(): dlg.files.item(r, 1).text() for r in range(dlg.files.rowCount())}
        assert set(rows) == {str(folder / "readme.txt"), str(folder / "empty.dcm")}
        assert all(rows.values())  # each with its reason
        assert dlg.files.isVisible() and dlg.reasons.rowCount() >= 1
        assert "2 files skipped" in dlg.headline.text()
    finally:
        win.close()  # the main_window fixture also closes its VTK adapters
