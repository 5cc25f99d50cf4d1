"""Mouse and keyboard gestures on the viewports -> the core's gesture functions on the ViewerState.

PACS conventions (see :mod:`casebook.viewer.core.viewstate.gestures`): wheel scrolls, left drag
runs the current tool (window/level by default), right drag zooms, middle drag pans, double-click
toggles the single-view layout, arrow/page keys scroll. This controller only reads Qt events and
asks the view's adapter where a pixel is in the image; the arithmetic and every change live in the
core and the state, which the renderers follow.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, Qt

from casebook.viewer.core.viewstate import TOOLS, Drag, begin_drag
from casebook.viewer.core.viewstate.gestures import wheel_scroll, wheel_zoom

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
            return self.viewer.handle_key(event)
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

    def _press(self, name: str, event) -> bool:
        x, y = self._pos(event)
        if name == "3d":
            self._rotate = (x, y)
            return True
        button = _BUTTONS.get(event.button())
        if button is None:
            return False
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
        d, self._drag = self._drag, None
        if d is None:
            return False
        x, y = self._pos(event)
        m = d.release(self.viewer.state, x, y, self._image_point(d.view, x, y))
        if m is not None and m.kind == "box":
            self.viewer.box_drawn.emit(m)
        return True
