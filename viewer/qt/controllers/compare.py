"""Priors and the *current | prior* compare layout: the timeline, registration in a worker, the
linked pair, fade/checkerboard/subtraction, the reader's nudge, copied measurements and the
interval change, and the follow-up of an analogue.

Qt input only: priors, registration, compare volumes and the change come from
``services.priors``, ``services.registration`` and ``services.compare``; the two views are kept in
step by ``viewstate.link`` (through the registration matrix), never by Qt. The pair is shown in
the main window's analogue pane (the side-by-side code the similar-case panel uses).
"""
from __future__ import annotations

import html
import logging
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QApplication, QDockWidget, QProgressDialog

from casebook.index.errors import UnknownItemError
from casebook.viewer.core.dicom.volume import Volume
from casebook.viewer.core.viewstate import StateLink
from casebook.viewer.core.viewstate.link import PhysicalCameraLink, TransformLink, WindowLink, registered_links
from casebook.viewer.core.viewstate.measurements import Measurement

from .. import workers
from ..views.compare_bar import CompareBar
from ..views.compare_timeline import PriorTimeline

if TYPE_CHECKING:
    from casebook.viewer.core.services.priors import PriorEntry

# The services behind this controller (the case store with SQLAlchemy, registration with
# SimpleITK) are imported when a compare is first asked for, not when the window opens: the
# window's cold start pays only for the dock and the menu.

log = logging.getLogger(__name__)

NUDGE_MM = 1.0
NUDGE_DEG = 0.5


def open_pair_task(settings: Any, current_series_id: int, prior_series_id: int, current: Volume | None, *,
                   progress, cancel, signals, recompute: bool = False):
    """Load the prior and register it (or reuse the stored registration), off the UI thread."""
    from casebook.viewer.core.services.library import open_store
    from casebook.viewer.core.services.priors import open_pair

    store = open_store(settings, create=False)
    try:
        return open_pair(store, current_series_id, prior_series_id, current=current, progress=progress,
                         cancel=cancel, recompute=recompute)
    finally:
        store.close()


def load_task(settings: Any, series_id: int, *, progress, cancel, signals):
    from casebook.viewer.core.services.library import open_store
    from casebook.viewer.core.services.priors import load_for_compare

    store = open_store(settings, create=False)
    try:
        return load_for_compare(store, series_id, "follow-up", progress=progress, cancel=cancel)
    finally:
        store.close()


class CompareController(QObject):
    """Owns the priors dock, the compare bar and the state of the pair on screen."""

    pair_shown = Signal(bool)  # linked?
    entries_shown = Signal(int)

    def __init__(self, win: Any) -> None:
        super().__init__(win)
        self.win = win
        self.timeline = PriorTimeline(win)
        self.dock = QDockWidget("Priors", win)
        self.dock.setObjectName("priors_dock")
        self.dock.setWidget(self.timeline)
        win.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.dock)
        win.tabifyDockWidget(win.browser_dock, self.dock)
        win.browser_dock.raise_()
        self.bar = CompareBar(win.analogue_host)
        win.analogue_host.layout().insertWidget(0, self.bar)
        self.bar.hide()
        self.active = False  # the analogue pane shows our pair (not a similar case)
        self.current: Volume | None = None
        self.prior: Volume | None = None
        self.matrix: np.ndarray | None = None  # computed, current LPS -> prior LPS
        self.nudge = np.eye(4)
        self.ids: tuple[int, int, str] | None = None  # current series, prior series, kind (stored)
        self.days: int | None = None
        self.mode = "prior"
        self.deformable = ""  # a stored B-spline (after the matrix), used by the compare views
        self._registered: Volume | None = None
        self._pairs: list[tuple[Measurement, Measurement]] = []  # (on prior, on current)
        self._worker: workers.FunctionWorker | None = None
        self._study_shown: int | None = None
        self._setting_volume = False
        self.bar.mode_changed.connect(self.set_mode)
        self.bar.fade_changed.connect(lambda a: self.set_mode("fade", alpha=a))
        self.bar.copy_requested.connect(self.copy_measurement)
        self.timeline.compare_requested.connect(lambda st, se: self.compare(st, se))
        self.timeline.follow_up_requested.connect(self.open_follow_up)
        win.state.events.volume.connect(lambda **_: QTimer.singleShot(0, self._maybe_refresh))
        win.analogue_state.events.volume.connect(self._on_analogue_volume)
        for st in (win.state, win.analogue_state):
            st.events.measurements.connect(lambda action, measurement: self._update_change())
        self._build_actions()

    # -- actions -----------------------------------------------------------------------------------
    def _build_actions(self) -> None:
        w = self.win
        pm = w.menuBar().addMenu("&Priors")
        pm.addAction(w._act("Compare with prior", "Shift+P", lambda: self.compare(), pm))
        w._act("Follow-up of the analogue", "Ctrl+Shift+U", self.show_follow_ups, pm)
        w._act("Copy measurement to the other study", "Ctrl+Shift+C", self.copy_measurement, pm)
        w._act("Register again", None, lambda: self.compare(recompute=True), pm)
        pm.addSeparator()
        for name, mode, key in (("Show prior", "prior", "Alt+1"), ("Fade", "fade", "Alt+2"),
                                ("Checkerboard", "checkerboard", "Alt+3"), ("Subtraction", "subtraction", "Alt+4")):
            w._act(f"Compare: {name}", key, lambda _=False, m=mode: self.set_mode(m), pm)
        pm.addSeparator()
        nm = pm.addMenu("Nudge the registration")
        for name, key, args in (("right", "Alt+Right", ("right", 1)), ("left", "Alt+Left", ("right", -1)),
                                ("down", "Alt+Down", ("down", 1)), ("up", "Alt+Up", ("down", -1)),
                                ("deeper", "Alt+PgDown", ("normal", 1)), ("shallower", "Alt+PgUp", ("normal", -1))):
            w._act(f"Move prior {name} {NUDGE_MM:g} mm", key, lambda _=False, a=args: self.nudge_by(*a), nm)
        w._act(f"Rotate prior clockwise {NUDGE_DEG:g}°", "Alt+.", lambda: self.rotate_by(NUDGE_DEG), nm)
        w._act(f"Rotate prior anticlockwise {NUDGE_DEG:g}°", "Alt+,", lambda: self.rotate_by(-NUDGE_DEG), nm)
        w._act("Forget the nudge", None, self.reset_nudge, nm)
        a = self.dock.toggleViewAction()
        a.setText("Priors panel")
        pm.addAction(a)
        view_menu = next((x.menu() for x in w.menuBar().actions() if x.text() == "&View"), None)
        if view_menu is not None:
            view_menu.addAction(a)
        w.panel_actions["Priors"] = a

    # -- timeline ----------------------------------------------------------------------------------
    def _say(self, text: str) -> None:
        self.timeline.status.setText(text)
        self.win.status_label.setText(text)

    def _maybe_refresh(self) -> None:
        sid = self.win.current_series_id
        if sid is None or sid == self._study_shown:
            return
        self._study_shown = sid
        self.refresh()

    def refresh(self) -> list[PriorEntry]:
        """List the open library study's priors in the timeline."""
        from casebook.viewer.core.services.library import open_store
        from casebook.viewer.core.services.priors import find_priors

        sid = self.win.current_series_id
        if sid is None:
            self.timeline.set_entries([], "Open a study from the library to see its priors.")
            return []
        store = open_store(self.win.settings, create=False)
        try:
            st = store.get_series(sid)
            entries = find_priors(store, st.study_id, current_series_id=sid,
                                  name_birth_fallback=self.win.settings.priors_name_birth_fallback)
        except UnknownItemError:  # the study was removed meanwhile (study panel, another window)
            self.timeline.set_entries([], "This study is no longer in the library.")
            return []
        finally:
            store.close()
        n = sum(e.relation == "prior" for e in entries)
        self.timeline.set_entries(entries, f"{n} prior{'s' if n != 1 else ''}, "
                                           f"{len(entries) - n} other stud{'y' if len(entries) - n == 1 else 'ies'} "
                                           "of this patient (newest first)")
        self.entries_shown.emit(len(entries))
        return entries

    # -- compare -----------------------------------------------------------------------------------
    def compare(self, study_id: int | None = None, series_id: int | None = None, *,
                recompute: bool = False) -> workers.FunctionWorker | None:
        """Open *current | prior*: the selected (else the newest) prior's chosen series, registered."""
        cur = self.win.current_series_id
        if recompute and self.ids is not None:
            cur, series_id = self.ids[0], self.ids[1]
            study_id = None
        if cur is None or self.win.state.volume is None:
            self._say("Open a study from the library first: priors are found in the library.")
            return None
        if self.win.state.loading_fraction < 1.0:
            self._say("The study is still loading: compare once all its slices are in.")
            return None
        if series_id is None:
            e = self.timeline.selected_entry()
            if e is None:
                entries = self.refresh()
                e = next((x for x in entries if x.relation == "prior"), entries[0] if entries else None)
            if e is None:
                self._say("No other study of this patient in the library.")
                return None
            sel = self.timeline.selected_series_id() if e is self.timeline.selected_entry() else None
            series_id = sel if sel is not None else (e.best.series.id if e.best else None)
            study_id = e.study.id
            if series_id is None:
                self._say("That study has no series to compare.")
                return None
        entry = next((x for x in self.timeline.entries if x.study.id == study_id), None)
        if study_id is not None:
            self.days = entry.interval_days if entry is not None else None
        if self._worker is not None:
            self._worker.cancel()
        w = workers.FunctionWorker(open_pair_task, self.win.settings, int(cur), int(series_id),
                                   self.win.state.volume, recompute=recompute)
        self._worker = w
        dlg = QProgressDialog("Loading and registering the prior…", "Cancel", 0, 0, self.win)
        dlg.setWindowTitle("Compare with prior")
        dlg.setMinimumDuration(400)
        dlg.setAutoClose(False)
        dlg.canceled.connect(w.cancel)
        w.signals.progress.connect(lambda d, t, m: (dlg.setRange(0, max(t, 1)), dlg.setValue(d), dlg.setLabelText(m)))
        w.signals.result.connect(lambda pair, s=int(series_id), c=int(cur): self._on_pair(pair, c, s))
        w.signals.failed.connect(lambda msg: self._say(msg))
        w.signals.cancelled.connect(lambda: self._say("Registration cancelled; nothing was stored."))
        w.signals.finished.connect(dlg.close)
        w.signals.finished.connect(dlg.deleteLater)
        self._say("Loading and registering the prior…")
        return workers.start(w)

    def _on_pair(self, pair: Any, current_series_id: int, prior_series_id: int) -> None:
        rec = pair.registration
        self.ids = (current_series_id, prior_series_id, rec.kind) if rec is not None else None
        self.nudge = rec.nudge.copy() if rec is not None and rec.nudge is not None else np.eye(4)
        self.show_pair(pair.current, pair.prior, None if rec is None else rec.matrix, pair.message,
                       deformable=rec.deformable if rec is not None else "")

    def show_pair(self, current: Volume, prior: Volume, matrix: np.ndarray | None, message: str,
                  days: int | None = None, deformable: str = "") -> None:
        """The compare layout (hanging protocol): both panes one view of the current's active plane,
        the same window/level, the prior on the same anatomy through ``matrix`` (None: unlinked)."""
        from casebook.viewer.core.services.priors import interval_text

        w = self.win
        if days is not None:
            self.days = days
        self.current, self.prior, self.matrix = current, prior, None if matrix is None else np.asarray(matrix)
        self._registered = None
        self.deformable = deformable
        self._pairs = []
        self.mode = "prior"
        if w.link is not None:
            w.link.unlink()
            w.link = None
        if not w.analogue_host.isVisible():
            w._layout_before_analogue = w.state.layout
        orientation = w.state.active_view
        self._set_prior_volume(prior)
        w.analogue_state.set_layout("1x1")
        w.analogue_state.set_active_view(orientation)
        w.state.set_layout("1x1")
        w.analogue_state.set_window(*w.state.window)
        when = "" if self.days is None else f" — {interval_text(self.days)}"
        w._report_html = (f"<p><b>{html.escape(prior.modality)} {html.escape(prior.description)}</b>{when}</p>"
                          f"<p>{html.escape(message)}</p>")
        w._show_report()
        self.bar.show()
        self.bar.set_linked(self.matrix is not None)
        self.bar.set_mode("prior")
        self.bar.quality.setText(message)
        self.bar.change.setText("")
        w.analogue_host.show()
        half = max(w.splitter.width() // 2, 1)
        w.splitter.setSizes([half, half])
        QApplication.processEvents()
        if self.matrix is not None:
            w.link = StateLink(w.state, w.analogue_state, links=registered_links(self.effective, w._view_size))
        self._say(message)
        w.viewer.focus_view()
        self.pair_shown.emit(self.matrix is not None)

    @property
    def effective(self) -> np.ndarray:
        """The matrix the views use: the registration, then the reader's nudge."""
        return np.eye(4) if self.matrix is None else self.nudge @ self.matrix

    def _set_prior_volume(self, vol: Volume) -> None:
        self._setting_volume = True
        try:
            self.win.analogue.set_volume(vol)
        finally:
            self._setting_volume = False
        self.active = True

    def _on_analogue_volume(self, volume: Any = None, keep_view: bool = False, **_: Any) -> None:
        if not self._setting_volume and not keep_view:  # a similar case took the pane
            self.active = False
            self.bar.hide()

    # -- compare views -----------------------------------------------------------------------------
    def set_mode(self, mode: str, alpha: float | None = None) -> None:
        """Prior, fade, checkerboard or subtraction in the right pane (the last three on the
        current's grid, linked one to one; the subtraction keeps its own window)."""
        from casebook.viewer.core.services.compare import CompareError, compare_volume, resample_prior

        if not self.active or self.current is None or self.prior is None or not self.win.analogue_host.isVisible():
            return
        if mode != "prior" and self.matrix is None:
            self._say("Fade, checkerboard and subtraction need a registered prior.")
            self.bar.set_mode("prior")
            return
        w = self.win
        self.mode = mode
        self.bar.set_mode(mode)
        if w.link is not None:
            w.link.unlink()
            w.link = None
        lps = w.state.crosshair_lps
        if mode == "prior":
            self._set_prior_volume(self.prior)
            w.analogue_state.set_layout("1x1")
            w.analogue_state.set_active_view(w.state.active_view)
            w.analogue_state.set_window(*w.state.window)
            w.link = StateLink(w.state, w.analogue_state, links=registered_links(self.effective, w._view_size))
            return
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            if self._registered is None:
                # the B-spline was fitted after the computed matrix: it holds only while not nudged
                bs = self.deformable if np.allclose(self.nudge, np.eye(4)) else ""
                self._registered = resample_prior(self.current, self.prior, self.effective, bs)
            a = alpha if alpha is not None else self.bar.fade.value() / 100.0
            vol = compare_volume(mode, self.current, self._registered, alpha=a)
        except CompareError as exc:
            self._say(str(exc))
            return
        finally:
            QApplication.restoreOverrideCursor()
        self._set_prior_volume(vol)
        w.analogue_state.set_layout("1x1")
        w.analogue_state.set_active_view(w.state.active_view)
        if mode != "subtraction":
            w.analogue_state.set_window(*w.state.window)
        links = [TransformLink(np.eye(4)), PhysicalCameraLink(w._view_size)]
        if mode != "subtraction":
            links.append(WindowLink())
        w.link = StateLink(w.state, w.analogue_state, links=links)
        w.state.set_crosshair_lps(lps)

    # -- nudge -------------------------------------------------------------------------------------
    def _apply_nudge(self, n: np.ndarray) -> None:
        if not self.active or self.matrix is None:
            self._say("Nudging needs a registered prior on screen.")
            return
        self.nudge = n @ self.nudge
        self._registered = None
        self._store_nudge()
        if self.mode == "prior" and self.win.link is not None:
            from casebook.viewer.core.viewstate.link import transform_link

            tl = transform_link(self.win.link)
            if tl is not None:
                tl.set_matrix(self.effective)
        else:
            self.set_mode(self.mode)
        t = self.nudge[:3, 3]
        self.bar.quality.setText(f"{self.bar.quality.text().split(' | nudge')[0]} | nudge ({t[0]:.1f}, {t[1]:.1f}, "
                                 f"{t[2]:.1f}) mm")

    def nudge_by(self, direction: str, sign: int) -> None:
        """Move the prior's image by 1 mm on screen (right/down) or along the view's normal."""
        g = self.win.analogue_state.geometry
        if g is None:
            return
        right, down = (np.asarray(v, dtype=np.float64) for v in g.screen_vectors(self.win.state.active_view))
        vec = {"right": right, "down": down, "normal": np.cross(right, down)}[direction]
        n = np.eye(4)
        n[:3, 3] = -float(sign) * NUDGE_MM * vec / (np.linalg.norm(vec) or 1.0)  # the image moves, not the lookup
        self._apply_nudge(n)

    def rotate_by(self, degrees: float) -> None:
        from casebook.viewer.core.services.registration import axis_rotation

        g = self.win.analogue_state.geometry
        if g is None:
            return
        right, down = (np.asarray(v, dtype=np.float64) for v in g.screen_vectors(self.win.state.active_view))
        centre = self.effective[:3, :3] @ self.win.state.crosshair_lps + self.effective[:3, 3]
        self._apply_nudge(axis_rotation(np.cross(right, down), -degrees, centre))

    def reset_nudge(self) -> None:
        self.nudge = np.eye(4)
        self._apply_nudge(np.eye(4))

    def _store_nudge(self) -> None:
        from casebook.viewer.core.services.library import open_store

        if self.ids is None:
            return
        store = open_store(self.win.settings, create=False)
        try:
            cur, pri, kind = self.ids
            identity = np.allclose(self.nudge, np.eye(4))
            store.set_registration_nudge(cur, pri, kind, None if identity else self.nudge)
        finally:
            store.close()

    # -- measurements ------------------------------------------------------------------------------
    def copy_measurement(self) -> Measurement | None:
        """Copy the selected measurement to the same anatomy on the other study, for adjusting."""
        from casebook.viewer.core.services.compare import CompareError, copy_measurement

        w = self.win
        if not self.active or self.matrix is None:
            self._say("Copying a measurement needs a registered prior on screen.")
            return None
        m_to_prior = self.effective if self.mode == "prior" else np.eye(4)
        try:
            if w.state.selected is not None:
                src_m = w.state.selected
                out = copy_measurement(src_m, w.state, w.analogue_state, m_to_prior)
                self._pairs.append((out, src_m))
            elif w.analogue_state.selected is not None:
                src_m = w.analogue_state.selected
                out = copy_measurement(src_m, w.analogue_state, w.state, np.linalg.inv(m_to_prior))
                self._pairs.append((src_m, out))
            else:
                self._say("Select a measurement first (click it in the list or on the image).")
                return None
        except CompareError as exc:
            self._say(str(exc))
            return None
        self._update_change()
        return out

    def _update_change(self) -> None:
        if not self._pairs:  # nothing copied: no need to load the compare services
            self.bar.change.setText("")
            return
        from casebook.viewer.core.services.compare import CompareError, interval_change

        lines = []
        for prior_m, cur_m in self._pairs:
            if prior_m not in self.win.analogue_state.measurements or cur_m not in self.win.state.measurements:
                continue
            try:
                lines.append(f"{cur_m.title()}: {interval_change(prior_m, cur_m, self.days).sentence()}")
            except CompareError:
                continue
        self.bar.change.setText("\n".join(lines))

    # -- follow-up of an analogue ------------------------------------------------------------------
    def show_follow_ups(self) -> list[PriorEntry]:
        """The analogue's own later studies in the timeline ("what happened to this patient")."""
        from casebook.viewer.core.services.library import open_store
        from casebook.viewer.core.services.priors import follow_up_studies

        vol = self.win.analogue_state.volume
        if vol is None or not self.win.analogue_host.isVisible() or self.active:
            self._say("Open a similar case first: its later studies are listed here.")
            return []
        store = open_store(self.win.settings, create=False)
        try:
            study = next((s for s in store.list_studies() if s.study_uid == vol.study_uid), None)
            entries = [] if study is None else follow_up_studies(store, study.id)
        finally:
            store.close()
        self._analogue_date = study.study_date if study is not None else None
        self.timeline.set_entries(entries, (f"{len(entries)} later stud{'y' if len(entries) == 1 else 'ies'} of the "
                                            "analogue's patient" if entries else
                                            "The analogue's patient has no later study in the library."),
                                  mode="follow-up")
        self.dock.show()
        self.dock.raise_()
        return entries

    def open_follow_up(self, study_id: int, series_id: int) -> workers.FunctionWorker:
        from casebook.viewer.core.services.priors import interval_text

        entry = next((e for e in self.timeline.entries if e.study.id == study_id), None)
        w = workers.FunctionWorker(load_task, self.win.settings, int(series_id))

        def shown(vol: Volume) -> None:
            when = interval_text(entry.interval_days) if entry is not None else ""
            date = entry.study.study_date.isoformat() if entry is not None and entry.study.study_date else "?"
            self.win.open_analogue(vol, f"<h3>Follow-up of the analogue: {date} ({html.escape(when)})</h3>"
                                        f"<p>{html.escape(vol.modality)} {html.escape(vol.description)}</p>")
            self._say(f"Follow-up of the analogue, {when}")

        w.signals.result.connect(shown)
        w.signals.failed.connect(self._say)
        return workers.start(w)


def install_compare(win: Any) -> CompareController:
    """Add the priors dock, the compare bar and the Priors menu to the main window."""
    return CompareController(win)


def __getattr__(name: str) -> Any:
    if name == "registration_message":  # re-exported, loaded on first use like the other services
        from casebook.viewer.core.services.priors import registration_message

        return registration_message
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["CompareController", "install_compare", "registration_message"]
