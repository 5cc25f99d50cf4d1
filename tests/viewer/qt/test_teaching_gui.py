"""Under Xvfb, in the real window on a real library: save a teaching case from the viewer, find it in
the Teaching panel by text and by image, run a three-question quiz."""
from __future__ import annotations

import shutil

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from casebook.index.case_store.teaching_records import KeyImage, TeachingCase

from .conftest import close_gl_windows

pytestmark = pytest.mark.gui


@pytest.fixture
def teaching_library(gui_library, tmp_path):
    """A copy of the GUI test library (its store and vector index) that this test may change."""
    from casebook.viewer.core.config import Settings

    settings, head = gui_library
    lib = tmp_path / "library"
    shutil.copytree(settings.library_dir, lib)
    return Settings(library_dir=lib, model=settings.model), head


def test_save_find_by_text_and_image_then_quiz(qtbot, teaching_library, monkeypatch, tmp_path):
    from casebook.viewer.core.services.library import open_store
    from casebook.viewer.core.viewstate.measurements import Measurement
    from casebook.viewer.qt.main_window import MainWindow

    settings, head = teaching_library
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    store = open_store(settings)
    try:
        ct = [se for se in store.list_series() if se.modality == "CT" and se.id != head and se.slice_count >= 1]
        reading, others, studies = ct[0], [], {ct[0].study_id}
        for se in ct[1:]:  # one series of each other study
            if se.study_id not in studies:
                studies.add(se.study_id)
                others.append(se)
        # two teaching cases already in the library, in the quiz collection
        for se, dx in zip(others[:2], ("Pulmonary embolism", "Lung adenocarcinoma")):
            store.create_teaching_case(TeachingCase(study_id=se.study_id, title=dx, diagnosis=dx,
                                                    history="Breathless", collections=["GUI quiz"],
                                                    key_images=[KeyImage(series_id=se.id, slice_index=0,
                                                                         window_center=-600, window_width=1500)]))
    finally:
        store.close()

    win = MainWindow(settings, with_3d=False)
    qtbot.addWidget(win)
    win.resize(1500, 950)
    win.show()
    qtbot.waitExposed(win)
    try:
        ctl = win.teaching_controller
        panel = ctl.panel
        assert not ctl.dock.isVisible()  # hidden at start: the cases are read when it is first shown
        win.panel_actions["Teaching"].trigger()
        assert ctl.dock.isVisible()
        assert len(panel.case_ids()) == 2
        # read a study, window it, measure, and save it as a teaching case (Ctrl+K)
        win.open_stored(reading.id)
        qtbot.waitUntil(lambda: win.state.volume is not None and win.current_series_id == reading.id, timeout=30000)
        st = win.state
        st.set_window(-600, 1500)
        k = st.slice_index("axial")
        st.add_measurement(Measurement(kind="distance", orientation="axial", slice_index=k, p0=(40.0, 40.0),
                                       p1=(80.0, 90.0)))
        win.actions_by_name["Save as teaching case"].trigger()
        store = open_store(settings)
        try:
            case_id = store.teaching_case_for_study(reading.study_id)
            assert case_id is not None
            case = store.get_teaching_case(case_id)
        finally:
            store.close()
        [ki] = case.key_images
        assert (ki.series_id, ki.window_center, ki.window_width, ki.orientation) == (reading.id, -600, 1500, "axial")
        assert [a["kind"] for a in ki.annotations][:1] == ["distance"]
        assert case.diagnosis == "normal (fixture)" and case.findings.startswith("Fixture report")  # pre-filled
        editor = panel.editor
        assert editor.case is not None and editor.case.id == case_id
        assert "missing" in editor.completeness.text() and "history" in editor.completeness.text()
        assert editor.key_images.count() == 1 and not editor.key_images.item(0).icon().isNull()
        # complete it in the case panel
        editor.title.setText("Ground-glass teaching case")
        editor.history.setPlainText("Fever and dry cough for a week")
        editor.diagnosis.setText("COVID-19 pneumonia")
        editor.certainty.setCurrentText("probable")
        editor.collections.setText("GUI quiz")
        QTest.mouseClick(editor.save_button, Qt.MouseButton.LeftButton)
        store = open_store(settings)
        try:
            saved = store.get_teaching_case(case_id)
        finally:
            store.close()
        assert (saved.title, saved.diagnosis, saved.certainty, saved.collections) == \
            ("Ground-glass teaching case", "COVID-19 pneumonia", "probable", ["GUI quiz"])
        assert "history" not in editor.completeness.text()
        # find it by text (FTS5 over the case fields)
        panel.search.setText("cough")
        QTest.keyClick(panel.search, Qt.Key.Key_Return)
        assert panel.case_ids() == [case_id]
        panel.search.setText("embolism")
        QTest.keyClick(panel.search, Qt.Key.Key_Return)
        assert panel.case_ids() != [case_id] and len(panel.case_ids()) == 1
        panel.search.setText("")
        QTest.keyClick(panel.search, Qt.Key.Key_Return)
        assert len(panel.case_ids()) == 3
        # find by image: teaching cases only, most like the key image
        panel.cases.setCurrentRow(panel.case_ids().index(case_id))
        QTest.mouseClick(panel.similar_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: panel.similar.count() > 0 or "similar" not in panel.status.text().lower()
                        or "teaching case(s)" in panel.status.text(), timeout=30000)
        qtbot.waitUntil(lambda: panel.similar.count() > 0, timeout=30000)
        assert set(panel.similar_ids()) <= set(panel.case_ids()) - {case_id}
        assert len(panel.similar_ids()) == 2  # the two other teaching cases, nothing else of the library
        # a three-question quiz, multiple choice: two right, one wrong
        dlg = ctl.start_quiz("GUI quiz", "tester", mode="choice")
        qtbot.waitExposed(dlg)
        seen_distractor = False
        for n in range(3):
            truth = ctl.quiz.cases[ctl.quiz.index].diagnosis
            buttons = dlg.choice_buttons()
            texts = [b.text() for b in buttons]
            assert truth in texts and len(texts) >= 3 and "Unknown case" in dlg.header.text()
            assert truth not in dlg.header.text() + dlg.history.text()  # an unknown: no diagnosis shown
            seen_distractor |= "normal (fixture)" in texts  # a nearest neighbour's other diagnosis
            pick = truth if n < 2 else next(t for t in texts if t != truth)
            buttons[texts.index(pick)].setChecked(True)
            QTest.mouseClick(dlg.submit_button, Qt.MouseButton.LeftButton)
            assert truth in dlg.reveal.toPlainText()
            assert ("Correct" in dlg.reveal.toPlainText()) == (n < 2)
            QTest.mouseClick(dlg.next_button, Qt.MouseButton.LeftButton)
        assert seen_distractor
        assert "2 of 3" in dlg.score.text()
        store = open_store(settings)
        try:
            [score] = store.quiz_scores("tester", "GUI quiz")
        finally:
            store.close()
        assert (score.answered, score.correct) == (3, 2)
        dlg.close()
    finally:
        close_gl_windows([win])
