"""The reading-room main window: study browser, study viewer, analogue viewer, similar panel."""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QObject, QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (QApplication, QDockWidget, QFileDialog, QLabel, QMainWindow, QMessageBox, QProgressBar,
                               QProgressDialog, QSplitter, QTextBrowser, QVBoxLayout, QWidget)

from casebook.viewer.core.config import Settings, load_settings
from casebook.viewer.core.dicom.volume import Volume
from casebook.viewer.core.viewstate import (ORIENTATIONS, StateLink, StudyInfo, ViewerState, analogue_links,
                                            is_single_image, load_window_presets, tool_label)

from . import workers
from .icons import icon
from .views.help_dialog import HelpDialog
from .views.measurement_panel import MeasurementPanel
from .views.similar_panel import SimilarPanel
from .views.study_browser import StudyBrowser
from .views.study_viewer import StudyViewer

log = logging.getLogger(__name__)


class _FirstExpose(QObject):
    """Calls back once, when the window it watches is first exposed (drawn on the screen)."""

    def __init__(self, callback, parent: QObject) -> None:
        super().__init__(parent)
        self._callback = callback

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802
        if event.type() == QEvent.Type.Expose and obj.isExposed():  # type: ignore[attr-defined]
            cb, self._callback = self._callback, None
            if cb is not None:
                cb()
        return False


class MainWindow(QMainWindow):
    def __init__(self, settings: Settings | None = None, with_3d: bool = True) -> None:
        super().__init__()
        # (monotonic s, CPU s) when the window first reached the screen; the self-test's cold start
        self.first_exposed: tuple[float, float] | None = None
        self.library_opened = False  # the study list has been read from the case store once
        self._open_library_pending = False
        self._expose_filter: _FirstExpose | None = None
        self._after_first_paint: list = []  # start-up work that waits for the first paint
        self.settings = settings or load_settings()
        self.setWindowTitle("Casebook")
        self.setAcceptDrops(True)
        self.viewer = StudyViewer(self, with_3d=with_3d)
        self.state = self.viewer.state
        # analogue side (hidden until a similar case or a prior is opened). Its state exists from
        # the start (links, the compare controller and the tests bind to it); its three OpenGL views
        # are made on first use (:attr:`analogue`), which keeps them out of the cold start.
        self.analogue_host = QWidget(self)
        al = QVBoxLayout(self.analogue_host)
        al.setContentsMargins(0, 0, 0, 0)
        self.analogue_state = ViewerState()
        self.analogue_state.set_layout("1x1")
        self._analogue: StudyViewer | None = None
        self.report = QTextBrowser(self.analogue_host)
        self.report.setMaximumHeight(180)
        al.addWidget(self.report)
        self.analogue_host.hide()
        self.link: StateLink | None = None
        self.splitter = QSplitter(Qt.Orientation.Horizontal, self)
        self.splitter.addWidget(self.viewer)
        self.splitter.addWidget(self.analogue_host)
        self.setCentralWidget(self.splitter)

        self.browser = StudyBrowser(self)
        self.browser_dock = QDockWidget("Studies", self)
        self.browser_dock.setObjectName("studies_dock")
        self.browser_dock.setWidget(self.browser)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.browser_dock)
        self.similar = SimilarPanel(self)
        self.similar_dock = QDockWidget("Similar cases", self)
        self.similar_dock.setObjectName("similar_dock")
        self.similar_dock.setWidget(self.similar)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.similar_dock)
        self.measurements = MeasurementPanel(self.state, self)
        self.measurements_dock = QDockWidget("Measurements", self)
        self.measurements_dock.setObjectName("measurements_dock")
        self.measurements_dock.setWidget(self.measurements)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.measurements_dock)

        self.progress = QProgressBar(self)
        self.progress.setMaximumWidth(220)
        self.progress.hide()
        self.statusBar().addPermanentWidget(self.progress)
        self.status_label = QLabel("", self)
        self.statusBar().addWidget(self.status_label, 1)
        self.cine_label = QLabel("", self)
        self.cine_label.setObjectName("cine_status")
        self.statusBar().addPermanentWidget(self.cine_label)
        self.tool_label = QLabel(f"Tool: {tool_label(self.state.tool)}", self)
        self.tool_label.setObjectName("tool_status")
        self.statusBar().addPermanentWidget(self.tool_label)
        self._loader: workers.FunctionWorker | None = None
        self._build_actions()
        self.state.events.volume.connect(lambda **_: self._update_title())
        # a layout change hides views: the keyboard stays with the viewer, never the search box
        self.state.events.layout.connect(lambda **_: self.viewer.focus_view())
        self.viewer.tool_changed.connect(self._on_tool)
        self.state.events.cine.connect(self._on_cine)
        self.browser.open_requested.connect(self._open_row)
        self.browser.import_requested.connect(self.import_dialog)
        from .controllers.similar import SimilarController

        self.similar_controller = SimilarController(self.similar, self.state, self.viewer, lambda: self.settings,
                                                    self.open_analogue, parent=self)
        self.similar_controller.add_to_library.connect(self.import_path)
        self.current_series_id: int | None = None
        from .controllers.study_panel import install as install_study_panel

        install_study_panel(self)  # the open study's report and labels (self.study_panel_controller)
        self._install_compare()
        self._install_teaching()
        self._restore_geometry()
        self.viewer.focus_view()

    # -- actions --------------------------------------------------------------------------------
    def _act(self, text: str, shortcut: str | QKeySequence | None, slot, menu=None, checkable=False,
             icon_name: str | None = None) -> QAction:
        a = QAction(text, self)
        if icon_name:
            self._icon_names[a] = icon_name
            a.setIcon(icon(icon_name))
        if shortcut:
            a.setShortcut(QKeySequence(shortcut))
            a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            a.setToolTip(f"{text} ({a.shortcut().toString(QKeySequence.SequenceFormat.NativeText)})")
        a.setCheckable(checkable)
        a.triggered.connect(slot)
        self.addAction(a)
        if menu is not None:
            menu.addAction(a)
        self.actions_by_name[text] = a
        return a

    def _build_actions(self) -> None:
        self.actions_by_name: dict[str, QAction] = {}
        self._icon_names: dict[QAction, str] = {}
        mb = self.menuBar()
        fm = mb.addMenu("&File")
        tb = self.addToolBar("Reading")
        tb.setObjectName("reading_toolbar")
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)  # names and keys in tooltips
        tb.addAction(self._act("Open folder…", "Ctrl+O", self.open_dialog, fm, icon_name="open"))
        tb.addAction(self._act("Import folder / DICOMDIR…", "Ctrl+I", self.import_dialog, fm, icon_name="import"))
        self._act("Settings…", "Ctrl+,", self.settings_dialog, fm, icon_name="settings")
        from .controllers.pacs import install_pacs

        install_pacs(self, fm)  # File → Query/Retrieve… (controllers/pacs.py)
        fm.addSeparator()
        self._act("Quit", "Ctrl+Q", self.close, fm)
        vm = mb.addMenu("&View")
        tb.addSeparator()
        for key, layout in (("Ctrl+1", "1x1"), ("Ctrl+2", "1x2"), ("Ctrl+4", "2x2")):
            a = self._act(f"Layout {layout.replace('x', '×')}", key, lambda _=False, l=layout: self.state.set_layout(l), vm,
                          icon_name=f"layout-{layout}")
            tb.addAction(a)
        tb.addSeparator()
        tools = QActionGroup(self)
        tm = mb.addMenu("&Tools")
        self.tool_actions: dict[str, QAction] = {}
        for key, tool in (("W", "wl"), ("P", "pan"), ("Z", "zoom"), ("C", "crosshair"), ("D", "distance"),
                          ("E", "ellipse"), ("B", "box")):
            a = self._act(tool_label(tool), key, lambda _=False, t=tool: self.state.set_tool(t), tm, checkable=True,
                          icon_name=tool)
            tools.addAction(a)
            tb.addAction(a)
            self.tool_actions[tool] = a
        self.tool_actions[self.state.tool].setChecked(True)
        self._act("Delete measurement", QKeySequence(Qt.Key.Key_Delete), self._delete_measurement, tm)
        self._act("Measurements list", "M", lambda: self.measurements_dock.setVisible(not self.measurements_dock.isVisible()),
                  tm)
        tb.addSeparator()
        wm = mb.addMenu("&Window")
        for p in load_window_presets():
            self._act(p["label"], p.get("key"), lambda _=False, n=p["name"]: self.state.apply_preset(n), wm)
        if self.viewer.volume_adapter is not None:
            vr = vm.addMenu("3D preset")
            for name, p in self.viewer.volume_adapter.presets.items():
                self._act(f"3D: {p['label']}", None, lambda _=False, n=name: self.viewer.volume_adapter.set_preset(n), vr)
        self._act("Invert", "I", lambda: self.state.set_invert(not self.state.invert), vm, icon_name="invert")
        self._act("Reset view", "R", self.state.reset_view, vm, icon_name="reset")
        self._act("Cine play/stop", QKeySequence(Qt.Key.Key_Space), lambda: self.state.set_cine(not self.state.cine_playing), vm,
                  icon_name="cine")
        self._act("Cine slower", "[", lambda: self.state.set_cine(self.state.cine_playing, self.state.cine_fps / 1.25), vm)
        self._act("Cine faster", "]", lambda: self.state.set_cine(self.state.cine_playing, self.state.cine_fps * 1.25), vm)
        self._act("Toggle crosshair", "X", self._toggle_crosshair, vm)
        self._act("Toggle overlay", "O", self._toggle_overlay, vm)
        vm.addSeparator()
        # a closed panel comes back from here (not only from a right-click on the toolbar)
        self.panel_actions: dict[str, QAction] = {}
        for name, dock in (("Studies", self.browser_dock), ("Similar cases", self.similar_dock),
                           ("Measurements", self.measurements_dock)):
            a = dock.toggleViewAction()
            a.setText(f"{name} panel")
            vm.addAction(a)
            self.panel_actions[name] = a
        for n in ("Invert", "Reset view", "Cine play/stop"):
            tb.addAction(self.actions_by_name[n])
        sm = mb.addMenu("&Similar")
        tb.addSeparator()
        tb.addAction(self._act("Find similar: series", "Ctrl+F", lambda: self.similar.find_requested.emit("series"), sm,
                               icon_name="similar"))
        self._act("Find similar: current slice", "Ctrl+Shift+F", lambda: self.similar.find_requested.emit("slice"), sm)
        self._act("Find similar: same findings", "Ctrl+Alt+F", lambda: self.similar.find_requested.emit("findings"), sm)
        self._act("Close analogue", "Ctrl+W", self.close_analogue, sm)
        hm = mb.addMenu("&Help")
        self._act("Keyboard shortcuts", "F1", self.show_help, hm)

    def _install_compare(self) -> None:
        """Priors timeline, compare layout and the Priors menu (controllers/compare.py)."""
        from .controllers.compare import install_compare

        self.compare_controller = install_compare(self)

    def _install_teaching(self) -> None:
        from .controllers.teaching import install_teaching

        self.teaching_controller = install_teaching(self)

    def _toggle_crosshair(self) -> None:
        self.state.set_crosshair_visible(not self.state.show_crosshair)

    def _toggle_overlay(self) -> None:
        self.state.set_overlay_visible(not self.state.show_overlay)

    def _delete_measurement(self) -> None:
        """Delete the selected measurement, else the last one drawn (the PACS habit)."""
        m = self.state.selected or (self.state.measurements[-1] if self.state.measurements else None)
        if m is not None:
            self.state.remove_measurement(m)

    def _on_tool(self, tool: str) -> None:
        self.tool_label.setText(f"Tool: {tool_label(tool)}")
        a = self.tool_actions.get(tool)
        if a is not None and not a.isChecked():
            a.setChecked(True)

    def _on_cine(self, playing: bool, fps: float) -> None:
        self.cine_label.setText(f"▶ Cine {fps:.0f} fps" if playing else "")

    def show_help(self) -> None:
        HelpDialog(self).exec()

    def settings_dialog(self) -> None:
        from .views.settings_dialog import SettingsDialog

        dlg = SettingsDialog(self.settings, self)
        if dlg.exec():
            self.settings = dlg.result_settings()
            try:
                self.settings.save()
            except OSError as exc:
                QMessageBox.warning(self, "Settings", f"Could not save settings: {exc}")
            app = QApplication.instance()
            if app is not None:
                from .theme import apply_theme

                apply_theme(app, self.settings.theme)
                self.refresh_icons()
                self._show_report()
            self.similar.top_k.setValue(self.settings.search.top_k)
            self.similar.exclude_patient.setChecked(self.settings.search.exclude_same_patient)
            self.similar.same_anatomy.setChecked(self.settings.search.same_anatomy)
            self.refresh_library()

    def refresh_icons(self) -> None:
        """Redraw the action icons in the current palette's colours (after a theme change)."""
        for action, name in self._icon_names.items():
            action.setIcon(icon(name))

    # -- geometry -------------------------------------------------------------------------------
    def _restore_geometry(self) -> None:
        qs = QSettings("Casebook", "Casebook")
        g = qs.value("main/geometry")
        s = qs.value("main/state")
        if g is not None:
            self.restoreGeometry(g)
        else:
            self.resize(1500, 950)
        if s is not None:
            self.restoreState(s)
        else:  # first start: the analogues get most of the right column, not a strip of card tops
            self.resizeDocks([self.similar_dock, self.measurements_dock, self.study_dock], [620, 110, 220],
                             Qt.Orientation.Vertical)

    # -- first paint, then the library -----------------------------------------------------------
    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        handle = self.windowHandle()
        if self.first_exposed is None and handle is not None and self._expose_filter is None:
            self._expose_filter = _FirstExpose(self._on_first_expose, handle)
            handle.installEventFilter(self._expose_filter)

    def _on_first_expose(self) -> None:
        self.first_exposed = (time.monotonic(), sum(os.times()[:2]))
        handle = self.windowHandle()
        if handle is not None and self._expose_filter is not None:
            handle.removeEventFilter(self._expose_filter)
        self._expose_filter = None
        # posted: they run once this expose has been painted, so the reader sees the window first
        if self._open_library_pending:
            QTimer.singleShot(0, self._open_library_now)
        for fn in self._after_first_paint:
            QTimer.singleShot(0, fn)
        self._after_first_paint = []

    def run_after_first_paint(self, fn) -> None:
        """Call ``fn`` once the window has been painted for the first time (at once, posted, if it
        has): start-up work the first window does not show waits for it."""
        if self.first_exposed is not None:
            QTimer.singleShot(0, fn)
        else:
            self._after_first_paint.append(fn)

    def open_library_when_shown(self) -> None:
        """Read the study list from the case store right after the window's first paint, not
        before it: opening the store loads SQLAlchemy and alembic and migrates the schema, which
        would otherwise delay the first window. The status bar says what is going on meanwhile."""
        if self.first_exposed is not None:
            self.refresh_library()
            return
        self._open_library_pending = True
        self.status_label.setText("Opening the library…")
        self.browser.status.setText("Opening the library…")
        # a platform that never exposes the window (headless) still gets its library
        QTimer.singleShot(3000, self._open_library_now)

    def _open_library_now(self) -> None:
        if not self._open_library_pending:
            return
        self._open_library_pending = False
        self.refresh_library()
        if self.status_label.text() == "Opening the library…":
            self.status_label.setText("")

    def closeEvent(self, event) -> None:  # noqa: N802
        qs = QSettings("Casebook", "Casebook")
        qs.setValue("main/geometry", self.saveGeometry())
        qs.setValue("main/state", self.saveState())
        if self._loader is not None:
            self._loader.cancel()
        super().closeEvent(event)

    @property
    def analogue(self) -> StudyViewer:
        """The analogue pane's viewer (on :attr:`analogue_state`), made on first use."""
        if self._analogue is None:
            v = StudyViewer(self.analogue_host, state=self.analogue_state, with_3d=False)
            lay = self.analogue_host.layout()
            lay.insertWidget(lay.indexOf(self.report), v, 1)  # below the compare bar, above the report
            self._analogue = v
        return self._analogue

    def all_viewers(self) -> list[StudyViewer]:
        """The viewers made so far (the analogue one only once it has been used)."""
        return [self.viewer] + ([self._analogue] if self._analogue is not None else [])

    # -- loading --------------------------------------------------------------------------------
    def _update_title(self) -> None:
        v = self.state.volume
        self.setWindowTitle(f"Casebook — {v.modality} {v.description}".strip() if v else "Casebook")

    def show_volume(self, volume: Volume, info: StudyInfo | None = None, keep_view: bool = False) -> None:
        """Show a volume with the study facts of its overlay (blank when not known)."""
        self.state.set_study_info(info or StudyInfo())
        refine = keep_view and self.state.volume is not None
        self.viewer.set_volume(volume, keep_view=refine)
        if not refine:
            self.viewer.focus_view()  # a study opened (e.g. by double-click in the list): arrows scroll it

    def open_dialog(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Open DICOM folder")
        if d:
            self.open_path(Path(d))

    def open_path(self, path: Path, stack_key: str | None = None) -> workers.FunctionWorker:
        """Load a series off the UI thread; the middle slice shows first, then the full volume."""
        self._set_current_series(None)
        w = self._start_loader(workers.FunctionWorker(workers.load_series_task, Path(path), stack_key=stack_key),
                               Path(path).name)
        w.signals.result.connect(lambda vs, p=Path(path): self.similar_controller.set_study(None, p, vs[1].key))
        return w

    def _start_loader(self, w: workers.FunctionWorker, what: str) -> workers.FunctionWorker:
        if self._loader is not None:
            self._loader.cancel()
        self._loader = w
        self.progress.show()
        self.progress.setRange(0, 0)
        self.status_label.setText(f"Loading {what}…")
        w.signals.progress.connect(self._on_progress)
        w.signals.preview.connect(lambda vs, w=w: self._on_preview(w, vs))
        w.signals.result.connect(lambda vs, w=w: self._on_loaded(w, vs))
        w.signals.failed.connect(lambda msg: self._on_failed(msg))
        w.signals.finished.connect(self.progress.hide)
        return workers.start(w)

    def _on_progress(self, done: int, total: int, message: str) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        if total:
            self.state.set_loading_fraction(done / total)

    def _on_preview(self, w: workers.FunctionWorker, vs: Any) -> None:
        if w is not self._loader:
            return
        vol, stack = vs
        from casebook.viewer.core.dicom import slice_count

        vol.meta["series_slices"] = slice_count(stack)  # a preview of a stack: not a single image
        self.state.set_loading_fraction(0.0)
        self._preview_shown = w
        self.show_volume(vol, StudyInfo.from_stack(stack))

    def _on_loaded(self, w: workers.FunctionWorker, vs: Any) -> None:
        if w is not self._loader:
            return
        vol, stack = vs
        self.state.set_loading_fraction(1.0)
        # after a preview, keep what the reader already set (window, zoom) and the slice position
        self.show_volume(vol, StudyInfo.from_stack(stack), keep_view=getattr(self, "_preview_shown", None) is w)
        self._preview_shown = None
        unit = "frames" if is_single_image(vol) and vol.shape[0] > 1 else "slices"
        self.status_label.setText(f"{vol.modality} {vol.description}: {vol.shape[0]} {unit}"
                                  + ("; " + "; ".join(vol.geometry.warnings) if vol.geometry.warnings else ""))

    def _on_failed(self, message: str) -> None:
        self.status_label.setText(message)
        QMessageBox.warning(self, "Casebook", message)

    def _open_row(self, row: dict[str, Any]) -> None:
        if row.get("series_id") is not None:
            self.open_stored(int(row["series_id"]))
        elif row.get("path"):
            self.open_path(Path(row["path"]), stack_key=row.get("key"))

    def open_stored(self, series_id: int) -> workers.FunctionWorker:
        """Open a series of the library (Find similar then works on it)."""
        from .controllers.library import load_stored_task

        w = self._start_loader(workers.FunctionWorker(load_stored_task, self.settings, series_id), f"series {series_id}")
        w.signals.result.connect(lambda _r, sid=series_id: self._set_current_series(sid))
        return w

    def _set_current_series(self, series_id: int | None) -> None:
        self.current_series_id = series_id
        self.similar_controller.current_series_id = series_id
        self.study_panel_controller.show_series(series_id)

    def import_dialog(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Import DICOM folder or DICOMDIR into the library")
        if d:
            self.import_path(Path(d))

    def import_path(self, path: Path) -> workers.FunctionWorker:
        """Ingest a folder/DICOMDIR into the library with a progress dialog and Cancel."""
        dlg = QProgressDialog(f"Importing {path.name}…", "Cancel", 0, 0, self)
        dlg.setWindowTitle("Import")
        dlg.setWindowModality(Qt.WindowModality.NonModal)  # runs in the background: reading goes on
        dlg.setMinimumDuration(300)
        from .controllers.library import import_task

        w = workers.FunctionWorker(import_task, self.settings, path)
        self._import_worker = w
        self._import_dialog = dlg

        def on_progress(done: int, total: int, message: str) -> None:
            dlg.setMaximum(max(total, 1))
            dlg.setValue(min(done, max(total, 1)))
            dlg.setLabelText(f"{message or 'Importing'}: {done}/{total}")

        def on_done(report: Any) -> None:
            from .views.import_report import ImportReportDialog

            dlg.close()
            self.status_label.setText(report.headline(path.name))
            self.similar_controller.library_changed()
            self.refresh_library()
            self.import_report = ImportReportDialog(path.name, report, self)
            self.import_report.show()

        w.signals.progress.connect(on_progress)
        dlg.canceled.connect(w.cancel)
        w.signals.result.connect(on_done)
        w.signals.failed.connect(lambda m: (dlg.close(), self._on_failed(m)))
        w.signals.cancelled.connect(lambda: (dlg.close(), self.status_label.setText("Import cancelled"), self.refresh_library()))
        return workers.start(w)

    def refresh_library(self) -> None:
        """Reload the study browser from the case store (when a library exists)."""
        from .controllers.library import study_list

        self._open_library_pending = False  # a refresh asked for meanwhile does the deferred one's work
        try:
            self.browser.set_studies(study_list(self.settings))
        except Exception as exc:  # noqa: BLE001 - an unreadable library must not stop the viewer
            log.warning("library not readable: %s", exc)
            self.browser.status.setText(f"Library not readable: {exc}")
        self.library_opened = True
        if self.settings.database_path.exists():
            self.similar_controller.warm_library()  # cheap once warm; after an import it warms again

    # -- drag and drop --------------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        """A folder dropped on the study browser is imported; dropped anywhere else it is opened."""
        urls = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if urls:
            on_browser = self.browser_dock.isVisible() and self.browser_dock.geometry().contains(event.position().toPoint())
            if on_browser:
                self.import_path(Path(urls[0]))
            else:
                self.open_path(Path(urls[0]))
            event.acceptProposedAction()

    # -- analogue side by side ------------------------------------------------------------------
    def open_analogue(self, volume: Volume, report_html: str = "", matched_slice: int | None = None,
                      query_slice: int | None = None, orientation: str = "axial",
                      focus_box: tuple[int, ...] | None = None) -> None:
        """Show an analogue beside the study (1×2), aligned on the matched slices, linked.

        The two panes share the width equally; scrolling follows patient mm from the matched
        slices and both show the same mm per screen pixel (:func:`analogue_links`). With
        ``focus_box`` (the matched finding of a box search, voxels of the analogue) the analogue
        opens centred on that finding, enlarged, with a box around it.
        """
        if self.link is not None:
            self.link.unlink()
            self.link = None
        if not self.analogue_host.isVisible():
            self._layout_before_analogue = self.state.layout
        self.analogue.set_volume(volume)
        self.analogue_state.set_layout("1x1")
        self.analogue_state.set_active_view(orientation)
        self.state.set_active_view(orientation)
        self.state.set_layout("1x1")
        if matched_slice is not None:
            self.analogue_state.set_slice(orientation, matched_slice)
            self.analogue_state.set_highlight(orientation, {matched_slice})
        if query_slice is not None:
            self.state.set_slice(orientation, query_slice)
            self.state.set_highlight(orientation, {query_slice})
        self.analogue_state.set_window(*self.state.window)
        self._report_html = report_html or "<i>No report stored for this case.</i>"
        self._show_report()
        self.analogue_host.show()
        half = max(self.splitter.width() // 2, 1)
        self.splitter.setSizes([half, half])
        QApplication.processEvents()  # the panes take their new sizes before the scales are matched
        self.link = StateLink(self.state, self.analogue_state, links=analogue_links(self._view_size))
        if focus_box is not None:
            from casebook.viewer.core.viewstate import PositionLink
            from casebook.viewer.core.viewstate.focus import focus_on_region

            # centred on the finding without moving the reader's own view; the scroll link then
            # takes the finding's slice as the new alignment
            self.link.enabled = False
            self.analogue_state.clear_measurements()
            focus_on_region(self.analogue_state, focus_box, orientation=orientation)
            self.link.enabled = True
            for lk in self.link.links:
                if isinstance(lk, PositionLink):
                    lk.resync()
        self.viewer.focus_view()

    def _view_size(self, state: ViewerState, orientation: str) -> tuple[float, float]:
        """Pixel size of the view showing ``orientation`` of ``state`` (for physical-size zoom)."""
        viewer = self.viewer if state is self.state else self.analogue
        w, h = viewer.adapters[orientation].render_window.GetSize()
        if w <= 1 or h <= 1:  # not drawn yet: the widget's size in device pixels
            vw = viewer.viewports[orientation].vtk_widget
            dpr = vw.devicePixelRatioF()
            w, h = vw.width() * dpr, vw.height() * dpr
        return float(max(w, 1)), float(max(h, 1))

    def _show_report(self) -> None:
        """The analogue's report in the palette's text colour (readable in both themes)."""
        pal = self.report.palette()
        text = pal.color(pal.ColorRole.Text).name()
        link = pal.color(pal.ColorRole.Link).name()
        self.report.document().setDefaultStyleSheet(f"body, p, h1, h2, h3, li, b, i {{ color: {text}; }} "
                                                    f"a {{ color: {link}; }}")
        self.report.setHtml(getattr(self, "_report_html", ""))

    def close_analogue(self) -> None:
        if self.link is not None:
            self.link.unlink()
            self.link = None
        for o in ORIENTATIONS:
            self.state.set_highlight(o, set())
        self.analogue_host.hide()
        self.state.set_layout(getattr(self, "_layout_before_analogue", "2x2"))
