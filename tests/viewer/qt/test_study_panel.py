"""The study panel in the real window: the open study's report (sections, diagnosis source, how it
is linked), editing its diagnosis, tags and note (recorded as set by the reader), and removing
the study from the library after a confirmation."""
from __future__ import annotations

from pathlib import Path

import pytest

from ..core.reports_samples import oru, write_ct

pytestmark = pytest.mark.gui


@pytest.fixture
def small_library(tmp_path: Path):
    from casebook.index.case_store import CaseStore
    from casebook.viewer.core.config import Settings
    from casebook.viewer.core.services.ingest import ingest
    from casebook.viewer.core.services.reports import import_reports

    write_ct(tmp_path / "dicom" / "a", study_uid="1.2.826.0.1.3680043.10.1", accession="ACC1001", slices=4)
    write_ct(tmp_path / "dicom" / "b", study_uid="1.2.826.0.1.3680043.10.2", accession="ACC2002", slices=4,
             seed=2)
    (tmp_path / "a.hl7").write_text(oru())
    settings = Settings(library_dir=tmp_path / "lib")
    store = CaseStore.open(settings.database_path)
    try:
        ingest([tmp_path / "dicom"], store)
        assert import_reports(store, [tmp_path / "a.hl7"]).linked == 1
        ids = {st.accession_number: st.id for st in store.list_studies()}
        series = {st: store.list_series(study_id=st)[0].id for st in ids.values()}
    finally:
        store.close()
    return settings, ids, series


def test_study_panel_shows_the_report_and_saves_the_readers_labels(qtbot, main_window, small_library) -> None:
    from PySide6.QtWidgets import QDockWidget

    from casebook.index.case_store import CaseStore

    settings, ids, series = small_library
    win = main_window(settings)
    panel = win.study_panel
    assert isinstance(win.study_dock, QDockWidget) and "Study" in win.panel_actions
    assert not panel.save.isEnabled()  # nothing open yet
    study = ids["ACC1001"]
    win.open_stored(series[study])
    qtbot.waitUntil(lambda: win.current_series_id == series[study] and panel.save.isEnabled(), timeout=30000)
    text = panel.report.toPlainText()
    assert "History" in text and "Cough for three weeks." in text and "CT chest without contrast." in text
    assert "Nodule, RUL" in text and "from the impression" in text
    assert "linked by accession number" in panel.title.text()
    assert panel.diagnosis.text() == "Nodule, RUL" and "pulmonary nodule" in panel.finding.text()
    assert "import" in panel.provenance.text()
    # the reader corrects the diagnosis, adds tags and a note
    panel.diagnosis.setText("Lung nodule, 9 mm")
    panel.tags.setText("teaching, follow-up")
    panel.note.setPlainText("Compare with the 2022 CT.")
    panel.save.click()
    assert panel.status.text().startswith("Saved: diagnosis")
    with CaseStore.open(settings.database_path, create=False) as store:
        labels = store.study_labels(study)
    assert (labels.diagnosis, labels.finding) == ("Lung nodule, 9 mm", "pulmonary nodule")
    assert sorted(labels.tags) == ["follow-up", "teaching"] and labels.note == "Compare with the 2022 CT."
    assert labels.provenance["diagnosis"].source == "reader" and labels.provenance["tag:teaching"].source == "reader"
    assert "reader" in panel.provenance.text()
    # the browser shows the new diagnosis (it was refreshed)
    win.browser.filter.setText("teaching")
    assert win.browser.row_count() == 1
    # removing a tag in the field removes it from the study
    panel.tags.setText("teaching")
    panel.save.click()
    with CaseStore.open(settings.database_path, create=False) as store:
        assert store.study_labels(study).tags == ["teaching"]
        assert [e.action for e in store.label_history(study) if e.kind == "tag"] == ["add", "add", "remove"]


def test_reports_imported_from_the_window_show_in_the_panel(qtbot, main_window, small_library, tmp_path) -> None:
    settings, ids, series = small_library
    win = main_window(settings)
    assert win.import_reports_action.text() == "Import reports…"
    study = ids["ACC2002"]
    win.open_stored(series[study])
    qtbot.waitUntil(lambda: win.study_panel.save.isEnabled(), timeout=30000)
    (tmp_path / "b.hl7").write_text(oru(accession="ACC2002", control="B1", obx=[
        "OBX|1|TX|&GDT^Report||FINDINGS: Left rib fracture.||||||F",
        "OBX|2|TX|&GDT^Report||IMPRESSION: Rib fracture.||||||F"]))
    (tmp_path / "bad.hl7").write_text("MSH|^~\\&|RIS|X|||2024||ADT^A01|1|P|2.5\r")
    warned: list[str] = []
    import casebook.viewer.qt.controllers.study_panel as ctl_mod

    monkey = pytest.MonkeyPatch()
    monkey.setattr(ctl_mod.QMessageBox, "warning", staticmethod(lambda _p, _t, text: warned.append(text)))
    try:
        win.study_panel_controller.import_reports([str(tmp_path / "b.hl7"), str(tmp_path / "bad.hl7")])
        qtbot.waitUntil(lambda: win.study_panel.status.text().startswith("Reports:"), timeout=30000)
    finally:
        monkey.undo()
    assert "1 new" in win.study_panel.status.text() and "1 not imported" in win.study_panel.status.text()
    assert warned and "not an ORU^R01 result" in warned[0]
    assert "Left rib fracture." in win.study_panel.report.toPlainText()
    assert win.study_panel.diagnosis.text() == "Rib fracture"


def test_study_panel_removes_the_study_after_confirmation(qtbot, main_window, small_library) -> None:
    from casebook.index.case_store import CaseStore

    settings, ids, series = small_library
    win = main_window(settings)
    study = ids["ACC2002"]
    win.open_stored(series[study])
    qtbot.waitUntil(lambda: win.study_panel.save.isEnabled(), timeout=30000)
    assert "No report stored" in win.study_panel.report.toPlainText()
    removed: list[int] = []
    win.study_panel_controller.study_removed.connect(removed.append)
    w = win.study_panel_controller.confirm_delete(ask=False)
    assert w is not None
    qtbot.waitUntil(lambda: removed == [study], timeout=30000)
    assert not win.study_panel.save.isEnabled()
    assert win.compare_controller.refresh() == []  # the priors timeline of a removed study: empty, no error
    with CaseStore.open(settings.database_path, create=False) as store:
        assert [s.id for s in store.list_studies()] == [ids["ACC1001"]]
    assert all(f.exists() for f in (Path(settings.library_dir).parent / "dicom" / "b").glob("*.dcm"))
