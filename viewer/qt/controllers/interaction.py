"""Mouse and keyboard gestures on the viewports -> the core's gesture functions on the ViewerState.

PACS conventions (see :mod:`casebook.viewer.core.viewstate.gestures`): wheel scrolls, left drag
runs the current tool (window/level by default), right drag zooms, middle drag pans, double-click
toggles the single-view layout, arrow/page keys scroll. Shift + left drag turns the crosshair
axes of a slice view (oblique MPR); ``,`` / ``.`` turn the active view 5° (Shift: 1°) and ``/``
goes back to true axial/coronal/sagittal planes. This controller only reads Qt events and
asks the view's adapter where a pixel is in the image; the arithmetic and every change live in the
core and the state, which the renderers follow.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, Qt

from casebook.viewer.core.viewstate import TOOLS, Drag, begin_drag
from casebook.viewer.core.viewstate.gestures import wheel_scroll, wheel_zoom
from casebook.viewer.core.viewstate.oblique import PlaneRotateDrag, begin_rotate, rotate_key

if TYPE_CHECKING:  # pragma: no cover
    from ..views.study_viewer import StudyViewer

_BUTTONS = {Qt.MouseButton.LeftButton: "left", Qt.MouseButton.RightButton: "right",
            Qt.MouseButton.MiddleButton: "middle"}

__all__ = ["TOOLS", "InteractionController"]


class InteractionController(QObject):
    """Event filter installed on every viewport of one :class:`StudyViewer`."""

    def __init__(self, viewer: "StudyViewer") -> None:
        super().__init__(viewer)
        self.viewer = viewer
        self._drag: Drag | None = None
        self._rotate: tuple[float, float] | None = None  # 3D view: last pointer position
        self._plane_drag: PlaneRotateDrag | None = None  # Shift + left drag: oblique MPR

    @property
    def tool(self) -> str:
        """The current left-button tool (kept in the state; this is a convenience)."""
        return self.viewer.state.tool

    def set_tool(self, tool: str) -> None:
        self.viewer.state.set_tool(tool)

    # ------------------------------------------------------------------------------------------
    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt API)
        name = obj.property("casebook_view")
        if not name:
            return False
        t = event.type()
        if t == QEvent.Type.Wheel:
            return self._wheel(name, event)
        if t == QEvent.Type.MouseButtonPress:
            return self._press(name, event)
        if t == QEvent.Type.MouseMove:
            return self._move(name, event)
        if t == QEvent.Type.MouseButtonRelease:
            return self._release(name, event)
        if t == QEvent.Type.MouseButtonDblClick:
            self.viewer.toggle_single(name)
            return True
        if t == QEvent.Type.KeyPress:
            return self._key(event) or self.viewer.handle_key(event)
        return False

    def _pos(self, obj_event) -> tuple[float, float]:
        p = obj_event.position()
        dpr = self.viewer.devicePixelRatioF()
        return p.x() * dpr, p.y() * dpr

    def _image_point(self, view: str, x: float, y: float) -> tuple[float, float]:
        return self.viewer.adapters[view].display_to_image(x, y)

    def _wheel(self, name: str, event) -> bool:
        st = self.viewer.state
        steps = event.angleDelta().y() / 120.0
        if name == "3d":
            self.viewer.volume_adapter.dolly(1.1 ** steps)
            return True
        st.set_active_view(name)
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            st.set_zoom(name, wheel_zoom(st.zoom[name], steps))
        else:
            st.scroll(name, wheel_scroll(steps))
        return True

    def _key(self, event) -> bool:
        """Oblique MPR keys: ``,`` / ``.`` turn the active view's crosshair axes, ``/`` resets."""
        st = self.viewer.state
        k = event.key()
        fine = bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
        if k in (Qt.Key.Key_Comma, Qt.Key.Key_Less):
            rotate_key(st, st.active_view, +1, fine)
            return True
        if k in (Qt.Key.Key_Period, Qt.Key.Key_Greater):
            rotate_key(st, st.active_view, -1, fine)
            return True
        if k == Qt.Key.Key_Slash:
            st.reset_plane_rotation()
            return True
        return False

    def _crosshair_on_screen(self, view: str) -> tuple[float, float]:
        """The crosshair in widget pixels (top-left origin): the pivot of a rotate drag."""
        ad = self.viewer.adapters[view]
        g = self.viewer.state.geometry
        _, row, col = g.canon_to_image(view, self.viewer.state.crosshair_canon)
        dx, dy = ad.world_to_display(*ad.image_to_world(row, col))
        _, vh = ad.render_window.GetSize()
        return dx, vh - 1 - dy

    def _press(self, name: str, event) -> bool:
        x, y = self._pos(event)
        if name == "3d":
            self._rotate = (x, y)
            return True
        button = _BUTTONS.get(event.button())
        if button is None:
            return False
        if button == "left" and event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            st = self.viewer.state
            st.set_active_view(name)
            self._plane_drag = begin_rotate(st, name, x, y, self._crosshair_on_screen(name))
            return True
        self._drag = begin_drag(self.viewer.state, name, button, x, y, self._image_point(name, x, y))
        return True

    def _move(self, name: str, event) -> bool:
        x, y = self._pos(event)
        if self._rotate is not None:
            # the 3D camera is the render adapter's own: the model holds no 3D view state yet
            lx, ly = self._rotate
            self._rotate = (x, y)
            self.viewer.volume_adapter.rotate(-(x - lx) * 0.5, (y - ly) * 0.5)
            return True
        if self._plane_drag is not None:
            self._plane_drag.move(self.viewer.state, x, y)
            return True
        d = self._drag
        if d is None:
            return False
        ad = self.viewer.adapters[d.view]
        d.move(self.viewer.state, x, y, self._image_point(d.view, x, y), ad.mm_per_display_pixel())
        return True

    def _release(self, name: str, event) -> bool:
        if self._rotate is not None:
            self._rotate = None
            return True
        if self._plane_drag is not None or (
                event.button() == Qt.MouseButton.LeftButton and event.modifiers() & Qt.KeyboardModifier.ShiftModifier
                and self._drag is None):
            self._plane_drag = None
            return True
        d, self._drag = self._drag, None
        if d is None:
            return False
        x, y = self._pos(event)
        m = d.release(self.viewer.state, x, y, self._image_point(d.view, x, y))
        if m is not None and m.kind == "box":
            self.viewer.box_drawn.emit(m)
        return True
