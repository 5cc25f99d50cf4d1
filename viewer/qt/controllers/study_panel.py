"""Binds the study panel to the library: shows the open study's report and labels, saves the
reader's edits (recorded as set by the reader, with the login name), removes a study after a
confirmation. Reads and label writes are single short store calls; removal runs on a worker."""
from __future__ import annotations

import logging
from typing import Any, Callable

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QMessageBox

from casebook.viewer.core.config import Settings
from casebook.viewer.core.errors import CasebookError

from .. import workers
from ..views.study_panel import StudyPanel

log = logging.getLogger(__name__)


def _remove_task(settings: Settings, study_id: int, *, progress, cancel, signals):  # noqa: ANN001
    from casebook.viewer.core.services.library import open_store
    from casebook.viewer.core.services.reports.study_edit import remove_study

    store = open_store(settings, create=False)
    try:
        return remove_study(store, study_id, settings.index_dir)
    finally:
        store.close()


def _import_reports_task(settings: Settings, paths: list[str], *, progress, cancel, signals):  # noqa: ANN001
    from casebook.viewer.core.services.library import open_store
    from casebook.viewer.core.services.reports import import_reports

    store = open_store(settings, create=False)
    try:
        return import_reports(store, paths, progress=progress, cancel=cancel)
    finally:
        store.close()


class StudyPanelController(QObject):
    """``show_series(series_id)`` when a stored series opens; ``library_changed`` after edits."""

    library_changed = Signal()
    study_removed = Signal(int)

    def __init__(self, panel: StudyPanel, settings: Callable[[], Settings], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.panel, self._settings = panel, settings
        self.study_id: int | None = None
        self._worker: workers.FunctionWorker | None = None
        panel.save_requested.connect(self.save)
        panel.revert.clicked.connect(self.reload)
        panel.delete_requested.connect(self.confirm_delete)

    def _store(self) -> Any:
        from casebook.viewer.core.services.library import open_store

        return open_store(self._settings(), create=False)

    def show_series(self, series_id: int | None) -> None:
        if series_id is None:
            self.study_id = None
            self.panel.set_enabled_for_study(False)
            return
        try:
            store = self._store()
            try:
                self.study_id = store.get_series(int(series_id)).study_id
            finally:
                store.close()
        except CasebookError as exc:
            self.study_id = None
            self.panel.set_enabled_for_study(False)
            self.panel.status.setText(str(exc))
            return
        self.reload()

    def reload(self) -> None:
        if self.study_id is None:
            return
        from casebook.viewer.core.services.reports.display import study_report

        try:
            store = self._store()
            try:
                st = store.get_study(self.study_id)
                view = study_report(store, self.study_id)
                terms = [e.name for e in store.vocabulary()]
            finally:
                store.close()
        except CasebookError as exc:
            self.panel.status.setText(str(exc))
            return
        prov = [f"{k}: {view.provenance_text(k)}" for k in ("diagnosis", "note") if view.provenance_text(k)]
        prov += [f"tag {t}: {view.provenance_text('tag:' + t)}" for t in view.labels.tags
                 if view.provenance_text("tag:" + t)]
        title = f"<b>{st.study_date or ''} {', '.join(st.modalities)} {st.description}</b>"
        if view.link_text:
            title += f"<br><small>report {view.link_text}</small>"
        self.panel.set_vocabulary(terms)
        self.panel.show_study(title, view.html(), view.labels.diagnosis, view.labels.finding, view.labels.tags,
                              view.labels.note, "<small>Set by — " + "; ".join(prov) + "</small>" if prov else "")

    def save(self, diagnosis: str, tags: list[str], note: str) -> None:
        if self.study_id is None:
            return
        from casebook.viewer.core.services.reports.study_edit import apply_labels

        try:
            store = self._store()
            try:
                have = store.study_labels(self.study_id)
                ch = apply_labels(store, self.study_id, diagnosis=diagnosis,
                                  add_tags=[t for t in tags if t.lower() not in {x.lower() for x in have.tags}],
                                  remove_tags=[t for t in have.tags if t.lower() not in {x.lower() for x in tags}],
                                  note=note, source="reader")
            finally:
                store.close()
        except CasebookError as exc:
            self.panel.status.setText(f"Not saved: {exc}")
            return
        self.reload()
        self.panel.status.setText("Saved: " + ", ".join(ch.changed) if ch.changed else "Nothing changed")
        if ch.changed:
            self.library_changed.emit()

    def import_reports(self, paths: list[str]) -> workers.FunctionWorker | None:
        """Import report files (HL7, SR/PDF, CSV/JSON) on a worker; the outcome goes to the panel's
        status line, each bad file with its reason in a message box."""
        if not paths:
            return None
        w = workers.FunctionWorker(_import_reports_task, self._settings(), list(paths))
        self._worker = w
        self.panel.status.setText("Importing reports…")

        def done(rep: Any) -> None:
            self.panel.status.setText(
                f"Reports: {rep.new} new, {rep.amended} amended, {rep.duplicate} already imported; "
                f"{rep.linked + rep.weak} linked ({rep.weak} weakly), {rep.unmatched} waiting for their study"
                + (f"; {len(rep.errors)} not imported" if rep.errors else ""))
            if rep.errors:
                QMessageBox.warning(self.panel, "Reports not imported",
                                    "\n".join(why for _, why in rep.errors[:30]))
            self.reload()
            self.library_changed.emit()

        w.signals.result.connect(done)
        w.signals.failed.connect(lambda m: self.panel.status.setText(f"Reports not imported: {m}"))
        return workers.start(w)

    def import_dialog(self) -> None:
        from PySide6.QtWidgets import QFileDialog

        paths, _ = QFileDialog.getOpenFileNames(
            self.panel, "Import reports (HL7 ORU, DICOM SR / PDF, CSV, JSON)", "",
            "Reports (*.hl7 *.txt *.dcm *.csv *.tsv *.json *.jsonl);;All files (*)")
        self.import_reports(paths)

    def confirm_delete(self, *, ask: bool = True) -> workers.FunctionWorker | None:
        if self.study_id is None:
            return None
        if ask:
            answer = QMessageBox.question(
                self.panel, "Remove from library",
                "Remove this study from the library: its series, report, labels and embeddings?\n"
                "The DICOM files stay on disk.")
            if answer != QMessageBox.StandardButton.Yes:
                return None
        sid = self.study_id
        w = workers.FunctionWorker(_remove_task, self._settings(), sid)
        self._worker = w
        self.panel.status.setText("Removing…")

        def done(_r: Any) -> None:
            self.study_id = None
            self.panel.set_enabled_for_study(False)
            self.panel.status.setText(f"Study {sid} removed from the library")
            self.study_removed.emit(sid)
            self.library_changed.emit()

        w.signals.result.connect(done)
        w.signals.failed.connect(lambda m: self.panel.status.setText(f"Not removed: {m}"))
        return workers.start(w)


def install(window: Any) -> StudyPanelController:
    """Add the study panel to the main window as a dock (View menu: Study panel), following the
    series the window opens; edits refresh the study browser."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QDockWidget

    panel = StudyPanel(window)
    dock = QDockWidget("Study", window)
    dock.setObjectName("study_dock")
    dock.setWidget(panel)
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    ctl = StudyPanelController(panel, lambda: window.settings, parent=window)
    ctl.library_changed.connect(window.refresh_library)
    toggle = dock.toggleViewAction()
    toggle.setText("Study panel")
    for a in window.menuBar().actions():
        if a.menu() is not None and a.text().replace("&", "") == "View":
            a.menu().addAction(toggle)
        if a.menu() is not None and a.text().replace("&", "") == "File":
            imp = a.menu().addAction("Import reports…")
            imp.triggered.connect(ctl.import_dialog)
            window.import_reports_action = imp
    if hasattr(window, "panel_actions"):
        window.panel_actions["Study"] = toggle
    window.study_panel, window.study_dock, window.study_panel_controller = panel, dock, ctl
    return ctl
