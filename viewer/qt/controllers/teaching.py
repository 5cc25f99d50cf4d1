"""Teaching controller: *Save as teaching case* from the viewer, the Teaching panel (find by text,
filters, similar teaching cases by image), opening a case at its key image, and the quiz.

The store and search calls are the core's (``services/teaching``); long ones run on a worker.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np
from PySide6.QtCore import QObject, Qt, QThreadPool
from PySide6.QtGui import QAction, QKeySequence, QPixmap
from PySide6.QtWidgets import QDockWidget, QFileDialog, QInputDialog, QMainWindow, QMessageBox

from casebook.index.case_store.teaching_records import KeyImage
from casebook.viewer.core.errors import CasebookError
from casebook.viewer.core.progress import check_cancel

from .. import workers
from ..views.similar_panel import gray_to_pixmap
from ..views.teaching_panel import TeachingPanel
from ..views.teaching_quiz import QuizDialog

log = logging.getLogger(__name__)
THUMB = 96


def key_image_pixmap(store: Any, ki: KeyImage, size: int = THUMB) -> QPixmap | None:
    """The key image's stored slice, windowed as the author saw it (None when it cannot be read)."""
    from casebook.viewer.core.services.thumbnails import matched_slice

    try:
        img = np.asarray(matched_slice(store, ki.series_id, ki.slice_index))
    except (CasebookError, OSError, ValueError) as exc:
        log.info("teaching: key image not decoded: %s", type(exc).__name__)
        return None
    if img.ndim == 3:  # colour: its brightness, windowed over its own range
        img = img.mean(axis=-1)
        return gray_to_pixmap(img, (float(img.mean()), float(max(np.ptp(img), 1.0))), size)
    return gray_to_pixmap(img, (ki.window_center, ki.window_width), size)


class TeachingController(QObject):
    """Binds the Teaching panel and the window's teaching actions to the core services."""

    def __init__(self, window: QMainWindow, panel: TeachingPanel, settings: Callable[[], Any]) -> None:
        super().__init__(window)
        self.window, self.panel, self._settings = window, panel, settings
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(1)  # one thread owns the search service
        self._service: Any = None
        self._service_library: Any = None
        self.worker: workers.FunctionWorker | None = None
        self.quiz: Any = None
        self.quiz_dialog: QuizDialog | None = None
        panel.filters_changed.connect(self.refresh)
        panel.case_selected.connect(self.select)
        panel.open_requested.connect(self.open_case)
        panel.similar_requested.connect(self.find_similar)
        panel.quiz_requested.connect(self.start_quiz_dialog)
        panel.export_requested.connect(self.export_dialog)
        panel.editor.save_requested.connect(self.save_edits)
        panel.editor.open_key_image.connect(self._open_key_image_at)

    # -- store access (short, on the GUI thread: single-row reads and writes) -----------------
    def _store(self) -> Any:
        from casebook.viewer.core.services.library import open_store

        return open_store(self._settings())

    def refresh(self, select: int | None = None) -> None:
        """Re-run the panel's filters and text search against the library."""
        try:
            store = self._store()
        except CasebookError as exc:
            self.panel.status.setText(str(exc))
            return
        try:
            cases = store.list_teaching_cases(self.panel.filter())
            self.panel.set_choices(store.teaching_values())
        except CasebookError as exc:
            self.panel.status.setText(str(exc))
            return
        finally:
            store.close()
        cur = self.panel.editor.case.id if self.panel.editor.case is not None else None
        self.panel.show_cases(cases, select=select if select is not None else cur)
        self.panel.status.setText("" if cases else "No teaching case matches.")

    def select(self, case_id: int) -> None:
        """Show a case in the editor with its key images first."""
        store = self._store()
        try:
            case = store.get_teaching_case(case_id)
            thumbs = [key_image_pixmap(store, ki) for ki in case.key_images]
        except CasebookError as exc:
            self.panel.status.setText(str(exc))
            return
        finally:
            store.close()
        self.panel.editor.show_case(case, thumbs)

    def save_edits(self) -> None:
        editor = self.panel.editor
        if editor.case is None:
            return
        case = editor.edited()
        store = self._store()
        try:
            store.update_teaching_case(case)
            case = store.get_teaching_case(case.id)
        except CasebookError as exc:
            QMessageBox.warning(self.window, "Casebook", str(exc))
            return
        finally:
            store.close()
        editor.show_completeness(case)
        self.refresh(select=case.id)
        self.panel.status.setText(f"Case {case.id} saved.")

    # -- authoring ------------------------------------------------------------------------------
    def save_from_viewer(self) -> int | None:
        """*Save as teaching case*: the slice on screen becomes a key image of the study's case
        (made and pre-filled from the report when the study is not a case yet)."""
        from casebook.viewer.core.services.teaching.authoring import key_image_from_state, save_key_image

        w = self.window
        sid = getattr(w, "current_series_id", None)
        if sid is None or w.state.volume is None:
            QMessageBox.information(w, "Casebook", "Open a study of the library first: teaching cases are made "
                                                   "from stored studies.")
            return None
        store = self._store()
        try:
            ki = key_image_from_state(w.state, sid)
            case_id, new = save_key_image(store, sid, ki)
        except CasebookError as exc:
            QMessageBox.warning(w, "Casebook", str(exc))
            return None
        finally:
            store.close()
        self.refresh(select=case_id)
        self.select(case_id)
        w.statusBar().showMessage(("New teaching case " if new else "Key image added to case ") + str(case_id), 5000)
        return case_id

    # -- opening --------------------------------------------------------------------------------
    def open_case(self, case_id: int) -> None:
        """Open the case's study at its first key image (window and slice as saved)."""
        self.select(case_id)
        case = self.panel.editor.case
        if case is None:
            return
        if case.key_images:
            self._open_key_image(case.key_images[0])
        else:
            store = self._store()
            try:
                series = store.list_series(study_id=case.study_id)
            finally:
                store.close()
            if series:
                self.window.open_stored(series[0].id)

    def _open_key_image_at(self, index: int) -> None:
        case = self.panel.editor.case
        if case is not None and 0 <= index < len(case.key_images):
            self._open_key_image(case.key_images[index])

    def _open_key_image(self, ki: KeyImage) -> None:
        w = self.window.open_stored(ki.series_id)
        w.signals.result.connect(lambda _r, ki=ki: self._show_key_image(ki))

    def _show_key_image(self, ki: KeyImage) -> None:
        st = self.window.state
        if st.volume is None:
            return
        if ki.view_index is not None:
            st.set_slice(ki.orientation, ki.view_index)
        else:
            vol = st.volume
            c = np.array([(vol.shape[2] - 1) / 2.0, (vol.shape[1] - 1) / 2.0, float(ki.slice_index)])
            st.set_crosshair_lps(vol.index_to_lps(c))
        st.set_active_view(ki.orientation)
        st.set_window(ki.window_center, ki.window_width)

    # -- image search restricted to teaching cases -----------------------------------------------
    def _get_service(self, progress: Any = None, cancel: Any = None) -> Any:
        from casebook.viewer.core.services.search import open_store_search

        settings = self._settings()
        if self._service is None or self._service_library != settings.library_dir:
            if self._service is not None:
                self._service.close()
            self._service = open_store_search(settings, encoder=getattr(self.window.similar_controller, "encoder", None),
                                              progress=progress, cancel=cancel)
            self._service_library = settings.library_dir
        return self._service

    def find_similar(self, case_id: int) -> workers.FunctionWorker:
        """Teaching cases whose images are most like this case's key image (or its study)."""
        from casebook.viewer.core.services.search_types import SearchFilters

        settings = self._settings()

        def task(*, progress, cancel, signals):
            from casebook.viewer.core.services.library import open_store

            svc = self._get_service(progress, cancel)
            store = open_store(settings)
            try:
                case = store.get_teaching_case(case_id)
                sids = [k.series_id for k in case.key_images] or [s.id for s in store.list_series(study_id=case.study_id)]
                if not sids:
                    return []
                check_cancel(cancel)
                slices = [k.slice_index for k in case.key_images if k.series_id == sids[0]] or None
                q = svc.query_from_series(sids[0], slices)
                resp = svc.search(q, filters=SearchFilters(teaching_only=True), k=10)
                cases = store.teaching_case_for_series([h.series_id for h in resp.hits])
                rows, seen = [], set()
                for h in resp.hits:
                    cid = cases.get(int(h.series_id))
                    if cid is None or cid in seen or cid == case_id:
                        continue
                    seen.add(cid)
                    c = store.get_teaching_case(cid)
                    rows.append((cid, f"{c.title or '(untitled)'} — {c.diagnosis}", float(h.score)))
                return rows
            finally:
                store.close()

        self.panel.status.setText("Searching similar teaching cases…")
        wk = workers.FunctionWorker(task)
        self.worker = wk
        wk.signals.result.connect(lambda rows: self.panel.show_similar(rows))
        wk.signals.failed.connect(lambda msg: self.panel.status.setText(msg))
        return workers.start(wk, self.pool)

    # -- quiz -----------------------------------------------------------------------------------
    def start_quiz(self, collection: str, learner: str, mode: str = "choice") -> QuizDialog:
        """Run ``collection`` as a quiz for ``learner`` in a dialog (non-modal)."""
        from casebook.viewer.core.services.teaching.quiz import QuizSession, search_neighbours

        if not collection:
            raise CasebookError("choose a collection to run as a quiz")
        store = self._store()
        neighbours = None
        try:
            neighbours = search_neighbours(self._get_service(), store)
        except CasebookError as exc:  # no index yet: distractors come from other cases
            log.info("quiz without image search: %s", type(exc).__name__)
        self.quiz = QuizSession(store, collection, learner, mode=mode, neighbours=neighbours)
        self._quiz_store = store
        dlg = QuizDialog(f"Quiz: {collection}", self.window)
        dlg.answered.connect(self._quiz_answer)
        dlg.next_requested.connect(self._quiz_next)
        dlg.finished.connect(lambda _r: self._quiz_closed())
        self.quiz_dialog = dlg
        self._quiz_show()
        dlg.show()
        return dlg

    def start_quiz_dialog(self, collection: str) -> None:
        if not collection:
            QMessageBox.information(self.window, "Casebook", "Choose a collection in the Teaching panel first.")
            return
        learner, ok = QInputDialog.getText(self.window, "Quiz", "Learner name (scores are kept per learner):")
        if not ok or not learner.strip():
            return
        modes = {"Multiple choice": "choice", "Free text": "free"}
        mode, ok = QInputDialog.getItem(self.window, "Quiz", "Answers:", list(modes), 0, False)
        if not ok:
            return
        try:
            self.start_quiz(collection, learner.strip(), mode=modes[mode])
        except CasebookError as exc:
            QMessageBox.warning(self.window, "Casebook", str(exc))

    def _quiz_show(self) -> None:
        q, dlg = self.quiz.question(), self.quiz_dialog
        image = key_image_pixmap(self._quiz_store, q.key_images[0], 480) if q.key_images else None
        dlg.show_question(q.number, len(self.quiz), q.history, q.modalities, image, q.choices)

    def _quiz_answer(self, text: str) -> None:
        r = self.quiz.answer(text)
        c = r.case
        fields = {"Diagnosis": c.diagnosis, "Certainty": c.certainty, "Findings": c.findings,
                  "Differential": "; ".join(c.differential), "Discussion": c.discussion}
        similar = [f"{n.diagnosis or '(no diagnosis)'} (score {n.score:.2f})" for n in r.similar]
        s = self.quiz.score()
        self.quiz_dialog.show_reveal(r.correct, fields, similar, f"Score: {s.correct}/{s.answered}", self.quiz.finished)

    def _quiz_next(self) -> None:
        if self.quiz.finished:
            s = self.quiz.score()
            self.quiz_dialog.show_final(f"{self.quiz.learner}: {s.correct} of {s.answered} ({s.percent:.0f}%)")
            return
        self._quiz_show()

    def _quiz_closed(self) -> None:
        if getattr(self, "_quiz_store", None) is not None:
            self._quiz_store.close()
            self._quiz_store = None

    # -- export ---------------------------------------------------------------------------------
    def export_dialog(self) -> None:
        ids = self.panel.case_ids()
        if not ids:
            return
        out = QFileDialog.getExistingDirectory(self.window, "Export the listed cases de-identified into (empty) folder")
        if out:
            self.export(ids, out)

    def export(self, case_ids: list[int], out: str) -> workers.FunctionWorker:
        from pathlib import Path

        from casebook.viewer.core.services.teaching.export import export_cases

        settings = self._settings()

        def task(*, progress, cancel, signals):
            from casebook.viewer.core.services.library import open_store

            store = open_store(settings)
            try:
                return export_cases(store, case_ids, Path(out), progress=progress, cancel=cancel)
            finally:
                store.close()

        wk = workers.FunctionWorker(task)
        wk.signals.result.connect(lambda rep: QMessageBox.information(self.window, "Teaching export", rep.text()))
        wk.signals.failed.connect(lambda msg: QMessageBox.warning(self.window, "Casebook", msg))
        return workers.start(wk)


def install_teaching(window: QMainWindow) -> TeachingController:
    """The Teaching dock, its menu and the *Save as teaching case* key (Ctrl+K; K adds a key image)."""
    panel = TeachingPanel(window)
    dock = QDockWidget("Teaching", window)
    dock.setObjectName("teaching_dock")
    dock.setWidget(panel)
    window.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)
    dock.hide()  # shown by Save as teaching case or the Teaching menu; the reading layout stays as it was
    ctl = TeachingController(window, panel, lambda: window.settings)
    ctl.dock = dock
    menu = window.menuBar().addMenu("T&eaching")

    def act(text: str, key: str | None, slot: Callable[[], Any]) -> QAction:
        a = QAction(text, window)
        if key:
            a.setShortcut(QKeySequence(key))
            a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        a.triggered.connect(slot)
        window.addAction(a)
        menu.addAction(a)
        window.actions_by_name[text] = a
        return a

    def save() -> None:
        if ctl.save_from_viewer() is not None:
            dock.show()
            dock.raise_()

    act("Save as teaching case", "Ctrl+K", save)
    act("Add key image", "K", lambda: ctl.save_from_viewer())
    menu.addSeparator()
    panel_action = dock.toggleViewAction()
    panel_action.setText("Teaching panel")
    menu.addAction(panel_action)
    window.panel_actions["Teaching"] = panel_action
    act("Quiz…", None, lambda: ctl.start_quiz_dialog(panel._value(panel.collection)))
    # the cases are read when the panel is shown (it starts hidden), not with the window: opening
    # the case store at start would delay the first window by the SQLAlchemy import and a query
    dock.visibilityChanged.connect(lambda visible: ctl.refresh() if visible else None)
    if dock.isVisible():
        ctl.refresh()
    return ctl


__all__ = ["TeachingController", "install_teaching", "key_image_pixmap"]
