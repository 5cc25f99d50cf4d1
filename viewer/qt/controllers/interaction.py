"""Mouse and keyboard gestures on the viewports -> changes of the ViewerState.

PACS conventions: wheel scrolls, left drag runs the current tool (window/level by default),
right drag zooms, middle drag pans, double-click toggles the single-view layout, arrow/page
keys scroll. The controller only translates gestures; the state does the work.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, Qt

from casebook.viewer.core.viewstate import Measurement

if TYPE_CHECKING:  # pragma: no cover
    from ..views.study_viewer import StudyViewer

TOOLS = ("wl", "pan", "zoom", "crosshair", "distance", "ellipse", "box")


class InteractionController(QObject):
    """Event filter installed on every viewport of one :class:`StudyViewer`."""

    def __init__(self, viewer: "StudyViewer") -> None:
        super().__init__(viewer)
        self.viewer = viewer
        self.tool = "wl"
        self._drag: dict | None = None

    def set_tool(self, tool: str) -> None:
        if tool not in TOOLS:
            raise ValueError(f"unknown tool {tool!r}")
        self.tool = tool
        self.viewer.tool_changed.emit(tool)

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

    def _wheel(self, name: str, event) -> bool:
        st = self.viewer.state
        steps = event.angleDelta().y() / 120.0
        if name == "3d":
            self.viewer.volume_adapter.dolly(1.1 ** steps)
            return True
        st.set_active_view(name)
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            st.set_zoom(name, st.zoom[name] * (1.1 ** steps))
        else:
            n = int(round(steps)) or (1 if steps > 0 else -1)
            st.scroll(name, -n)  # wheel away from the reader goes up / towards the head
        return True

    def _press(self, name: str, event) -> bool:
        st = self.viewer.state
        x, y = self._pos(event)
        btn = event.button()
        if name != "3d":
            st.set_active_view(name)
        tool = self.tool
        if btn == Qt.MouseButton.RightButton:
            tool = "zoom"
        elif btn == Qt.MouseButton.MiddleButton:
            tool = "pan"
        if name == "3d":
            tool = "rotate"
        self._drag = {"view": name, "tool": tool, "x0": x, "y0": y, "x": x, "y": y,
                      "window": st.window, "zoom": st.zoom.get(name, 1.0), "pan": st.pan.get(name, (0.0, 0.0))}
        if tool in ("distance", "ellipse", "box", "crosshair") and name != "3d":
            r, c = self.viewer.adapters[name].display_to_image(x, y)
            self._drag["img0"] = (r, c)
            if tool == "crosshair":
                st.set_crosshair_from_image(name, r, c)
        return True

    def _move(self, name: str, event) -> bool:
        d = self._drag
        if d is None:
            return False
        x, y = self._pos(event)
        dx, dy = x - d["x"], y - d["y"]
        tx, ty = x - d["x0"], y - d["y0"]
        d["x"], d["y"] = x, y
        st = self.viewer.state
        view = d["view"]
        tool = d["tool"]
        if tool == "rotate":
            self.viewer.volume_adapter.rotate(-dx * 0.5, dy * 0.5)
        elif tool == "wl":
            c0, w0 = d["window"]
            scale = max(w0, 10.0) / 250.0  # a 250-pixel drag changes the width by its own size
            st.set_window(c0 + ty * scale, w0 + tx * scale)
        elif tool == "zoom":
            st.set_zoom(view, d["zoom"] * (1.01 ** (-ty)))
        elif tool == "pan":
            mm = self.viewer.adapters[view].mm_per_display_pixel()
            st.set_pan(view, (d["pan"][0] + tx * mm, d["pan"][1] + ty * mm))
        elif tool == "crosshair":
            r, c = self.viewer.adapters[view].display_to_image(x, y)
            st.set_crosshair_from_image(view, r, c)
        elif tool in ("distance", "ellipse", "box"):
            r, c = self.viewer.adapters[view].display_to_image(x, y)
            m = Measurement(tool, view, st.slice_index(view), d["img0"], (r, c))
            self.viewer.adapters[view].set_preview(m)
        return True

    def _release(self, name: str, event) -> bool:
        d = self._drag
        self._drag = None
        if d is None:
            return False
        tool, view = d["tool"], d["view"]
        if tool in ("distance", "ellipse", "box"):
            x, y = self._pos(event)
            r, c = self.viewer.adapters[view].display_to_image(x, y)
            self.viewer.adapters[view].set_preview(None)
            if abs(x - d["x0"]) + abs(y - d["y0"]) < 3:
                return True  # a click, not a drawing
            m = Measurement(tool, view, self.viewer.state.slice_index(view), d["img0"], (r, c))
            if tool == "box":
                self.viewer.box_drawn.emit(m)
            else:
                self.viewer.state.add_measurement(m)
        return True
