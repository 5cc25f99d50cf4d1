"""One study on screen: MPR viewports + 3D in 1x1 / 1x2 / 2x2 layouts, bound to a ViewerState.

Layout only, plus the binding (Slicer style): VTK adapters subscribe to the state, this widget
arranges viewports and coalesces render requests so that one gesture renders each window once.
"""
from __future__ import annotations

import logging

from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtWidgets import QApplication, QGridLayout, QWidget

from casebook.viewer.core.dicom.volume import Volume
from casebook.viewer.core.viewstate import ORIENTATIONS, Measurement, ViewerState
from casebook.viewer.render.slice_view import SliceViewAdapter
from casebook.viewer.render.volume_view import VolumeViewAdapter

from ..controllers.interaction import InteractionController
from .viewport import Viewport

log = logging.getLogger(__name__)

VIEW_NAMES = (*ORIENTATIONS, "3d")


class StudyViewer(QWidget):
    tool_changed = Signal(str)  # the state's tool, for widgets that show it
    box_drawn = Signal(object)  # Measurement(kind="box")
    layout_requested = Signal(str)
    key_unhandled = Signal(object)

    def __init__(self, parent: QWidget | None = None, state: ViewerState | None = None,
                 with_3d: bool = True) -> None:
        super().__init__(parent)
        self.state = state or ViewerState()
        self.with_3d = with_3d
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(2)
        self.controller = InteractionController(self)
        self.viewports: dict[str, Viewport] = {}
        self.adapters: dict[str, SliceViewAdapter] = {}
        self._dirty: set[str] = set()
        self._render_timer = QTimer(self)
        self._render_timer.setSingleShot(True)
        self._render_timer.setInterval(0)
        self._render_timer.timeout.connect(self.flush_renders)
        names = VIEW_NAMES if with_3d else ORIENTATIONS
        for name in names:
            vp = Viewport(name, self)
            vp.vtk_widget.setProperty("casebook_view", name)
            vp.vtk_widget.installEventFilter(self.controller)
            vp.vtk_widget.installEventFilter(self)
            vp.vtk_widget.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
            self.viewports[name] = vp
        for o in ORIENTATIONS:
            self.adapters[o] = SliceViewAdapter(self.state, o, self.viewports[o].render_window,
                                                request_render=lambda o=o: self.request_render(o))
        self.volume_adapter = (VolumeViewAdapter(self.state, self.viewports["3d"].render_window,
                                                 request_render=lambda: self.request_render("3d"))
                               if with_3d else None)
        self.single_view: str | None = None
        self._cine = QTimer(self)
        self._cine.timeout.connect(lambda: self.state.cine_step())
        ev = self.state.events
        self._subs = [(ev.layout, self._on_layout), (ev.active_view, self._on_active), (ev.cine, self._on_cine),
                      (ev.tool, self._on_tool)]
        for emitter, cb in self._subs:
            emitter.connect(cb)
        self._arrange()
        self._on_active(self.state.active_view)

    # -- rendering ------------------------------------------------------------------------------
    def request_render(self, name: str) -> None:
        self._dirty.add(name)
        if not self._render_timer.isActive():
            self._render_timer.start()

    def flush_renders(self) -> None:
        """Render every window that changed since the last flush (visible ones only)."""
        dirty, self._dirty = self._dirty, set()
        for name in dirty:
            vp = self.viewports.get(name)
            if vp is not None and vp.isVisible():
                vp.render_window.Render()

    def render_all(self) -> None:
        for name, vp in self.viewports.items():
            if vp.isVisible():
                vp.render_window.Render()

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt API)
        if event.type() == QEvent.Type.Resize:
            name = obj.property("casebook_view")
            if name in self.adapters:
                QTimer.singleShot(0, self.adapters[name].on_resize)
        return False

    # -- layout ---------------------------------------------------------------------------------
    def set_volume(self, volume: Volume, keep_view: bool = False) -> None:
        self.state.set_volume(volume, keep_view=keep_view)

    def _arrange(self) -> None:
        focus = QApplication.focusWidget()
        had_focus = any(focus is vp.vtk_widget for vp in self.viewports.values())
        for vp in self.viewports.values():
            self.grid.removeWidget(vp)
        layout = self.state.layout
        active = self.state.active_view
        if self.single_view or layout == "1x1":
            shown = [[self.single_view or active]]
        elif layout == "1x2":
            other = "coronal" if active != "coronal" else "axial"
            shown = [[active, other]]
        else:
            second = ["sagittal", "3d"] if self.with_3d else ["sagittal"]
            shown = [["axial", "coronal"], second]
        names = {n for row in shown for n in row}
        # hide only what leaves the screen: hiding the focused view would hand the keyboard to the
        # next widget in the focus chain (the browser's search box), where "I" types an "i"
        for name, vp in self.viewports.items():
            if name not in names:
                vp.hide()
        for r, row in enumerate(shown):
            for c, name in enumerate(row):
                self.grid.addWidget(self.viewports[name], r, c)
                self.viewports[name].show()
        if had_focus:
            self.focus_view()
        for r in range(2):
            self.grid.setRowStretch(r, 1 if r < len(shown) else 0)
        for c in range(2):
            self.grid.setColumnStretch(c, 1 if c < max(len(row) for row in shown) else 0)
        for name in self.viewports:
            self.request_render(name)

    def focus_view(self, name: str | None = None) -> None:
        """Give the keyboard to a shown view (the active one by default): arrows scroll it, and the
        single-letter shortcuts reach the window instead of typing into a text field."""
        name = name or (self.single_view if self.single_view else self.state.active_view)
        vp = self.viewports.get(name)
        if vp is None or vp.isHidden():
            vp = next((v for v in self.viewports.values() if not v.isHidden()), None)
        if vp is not None:
            vp.vtk_widget.setFocus(Qt.FocusReason.OtherFocusReason)

    def has_keyboard(self) -> bool:
        """Whether one of this viewer's views has the keyboard focus."""
        focus = QApplication.focusWidget()
        return any(focus is vp.vtk_widget for vp in self.viewports.values())

    def visible_views(self) -> list[str]:
        return [n for n, vp in self.viewports.items() if vp.isVisible()]

    def toggle_single(self, name: str) -> None:
        self.single_view = None if self.single_view else name
        if name in ORIENTATIONS:
            self.state.set_active_view(name)
        self._arrange()

    def _on_layout(self, layout: str) -> None:
        self._arrange()

    def _on_tool(self, tool: str) -> None:
        self.tool_changed.emit(tool)

    def _on_active(self, orientation: str) -> None:
        for name, vp in self.viewports.items():
            vp.set_active(name == orientation)
        if self.state.layout != "2x2":
            self._arrange()

    def _on_cine(self, playing: bool, fps: float) -> None:
        if playing:
            self._cine.start(int(1000 / fps))
        else:
            self._cine.stop()

    # -- keyboard -------------------------------------------------------------------------------
    def handle_key(self, event) -> bool:
        """Keys that act on this viewer; others bubble up to the main window's shortcuts."""
        st = self.state
        o = st.active_view
        k = event.key()
        mods = event.modifiers()
        step = {Qt.Key.Key_Up: -1, Qt.Key.Key_Down: 1, Qt.Key.Key_Left: -1, Qt.Key.Key_Right: 1,
                Qt.Key.Key_PageUp: -10, Qt.Key.Key_PageDown: 10}.get(k)
        if step is not None and not (mods & Qt.KeyboardModifier.ControlModifier):
            st.scroll(o, step)
            return True
        if k == Qt.Key.Key_Home:
            st.set_slice(o, 0)
            return True
        if k == Qt.Key.Key_End:
            st.set_slice(o, st.n_slices(o) - 1)
            return True
        return False

    def add_measurement(self, m: Measurement) -> Measurement:
        return self.state.add_measurement(m)

    def close_adapters(self) -> None:
        """Unsubscribe from the state and release the GL contexts (idempotent)."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
        self._render_timer.stop()
        self._cine.stop()
        for emitter, cb in self._subs:
            emitter.disconnect(cb)
        self._subs = []
        for a in self.adapters.values():
            a.close()
        if self.volume_adapter:
            self.volume_adapter.close()
        for vp in self.viewports.values():
            vp.vtk_widget.Finalize()
