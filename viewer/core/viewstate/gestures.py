"""Mouse gestures as arithmetic on the view model: no Qt, no VTK, testable headless.

PACS conventions: left drag runs the current tool (window/level by default), right drag zooms,
middle drag pans, the wheel scrolls (Ctrl+wheel zooms). The Qt controller turns events into
(view, button, display pixel, image point) and calls :func:`begin_drag` / :meth:`Drag.move` /
:meth:`Drag.release`; everything the gesture changes is set on the :class:`ViewerState`, which
the renderers follow.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import ViewStateError
from .measurements import Measurement

if TYPE_CHECKING:  # pragma: no cover
    from .state import ViewerState

TOOLS: tuple[str, ...] = ("wl", "pan", "zoom", "crosshair", "distance", "ellipse", "box")
TOOL_LABELS: dict[str, str] = {
    "wl": "Window/level", "pan": "Pan", "zoom": "Zoom", "crosshair": "Crosshair", "distance": "Distance",
    "ellipse": "Ellipse ROI", "box": "Box (Find similar)",
}
DRAWING_TOOLS: tuple[str, ...] = ("distance", "ellipse", "box")

WL_PIXELS = 250.0  # a drag of this many pixels changes the width by its own size
ZOOM_PER_PIXEL = 1.01  # right drag: each pixel up zooms in 1 %
ZOOM_PER_WHEEL_STEP = 1.1
CLICK_PIXELS = 3.0  # a press and release closer than this is a click, not a drawing


def tool_label(tool: str) -> str:
    """The name a reader sees for a tool ("Window/level", not "wl")."""
    try:
        return TOOL_LABELS[tool]
    except KeyError:
        raise ViewStateError(f"unknown tool {tool!r}; expected one of {TOOLS}") from None


def button_tool(tool: str, button: str) -> str:
    """The tool a mouse button runs: left the current tool, right zoom, middle pan."""
    return {"right": "zoom", "middle": "pan"}.get(button, tool)


def window_drag(start: tuple[float, float], tx: float, ty: float) -> tuple[float, float]:
    """(center, width) after dragging (tx, ty) pixels from ``start``: right widens, down raises the level.

    The step scales with the width, so a narrow brain window and a wide lung window take the same
    hand movement to double.
    """
    c0, w0 = start
    scale = max(w0, 10.0) / WL_PIXELS
    return c0 + ty * scale, w0 + tx * scale


def zoom_drag(start_zoom: float, ty: float) -> float:
    """Zoom after a right drag of ``ty`` pixels (up is negative, zooms in)."""
    return start_zoom * ZOOM_PER_PIXEL ** (-ty)


def pan_drag(start_pan: tuple[float, float], tx: float, ty: float, mm_per_pixel: float) -> tuple[float, float]:
    """Pan (mm) after a middle drag: the image follows the hand one-to-one."""
    return start_pan[0] + tx * mm_per_pixel, start_pan[1] + ty * mm_per_pixel


def wheel_zoom(zoom: float, steps: float) -> float:
    """Ctrl+wheel: each notch away from the reader zooms in 10 %."""
    return zoom * ZOOM_PER_WHEEL_STEP ** steps


def wheel_scroll(steps: float) -> int:
    """Slice delta for a wheel turn: away from the reader goes up (towards the head); never 0."""
    n = int(round(steps)) or (1 if steps > 0 else -1)
    return -n


def is_click(x0: float, y0: float, x: float, y: float) -> bool:
    return abs(x - x0) + abs(y - y0) < CLICK_PIXELS


@dataclass
class Drag:
    """One press-move-release on a 2D view, started by :func:`begin_drag`."""

    view: str
    tool: str
    x0: float
    y0: float
    window: tuple[float, float]
    zoom: float
    pan: tuple[float, float]
    image0: tuple[float, float] | None = None

    def move(self, state: "ViewerState", x: float, y: float, image_point: tuple[float, float] | None = None,
             mm_per_pixel: float = 1.0) -> None:
        """Apply the drag so far (from the press, not the last move: no drift from rounding)."""
        tx, ty = x - self.x0, y - self.y0
        if self.tool == "wl":
            state.set_window(*window_drag(self.window, tx, ty))
        elif self.tool == "zoom":
            state.set_zoom(self.view, zoom_drag(self.zoom, ty))
        elif self.tool == "pan":
            state.set_pan(self.view, pan_drag(self.pan, tx, ty, mm_per_pixel))
        elif self.tool == "crosshair" and image_point is not None:
            state.set_crosshair_from_image(self.view, *image_point)
        elif self.tool in DRAWING_TOOLS and image_point is not None and self.image0 is not None:
            if self.tool == "box":
                state.set_search_box(None)  # drawing the next box replaces the last one
            state.set_preview(Measurement(self.tool, self.view, state.slice_index(self.view), self.image0,
                                          image_point))

    def release(self, state: "ViewerState", x: float, y: float,
                image_point: tuple[float, float] | None = None) -> Measurement | None:
        """End the drag; returns the drawn box (for Find similar), adds a distance/ellipse to the state."""
        if self.tool not in DRAWING_TOOLS:
            return None
        state.set_preview(None)
        if image_point is None or self.image0 is None or is_click(self.x0, self.y0, x, y):
            return None  # a click, not a drawing
        m = Measurement(self.tool, self.view, state.slice_index(self.view), self.image0, image_point)
        if self.tool == "box":
            state.set_search_box(m)
            return m
        return state.add_measurement(m)


def begin_drag(state: "ViewerState", view: str, button: str, x: float, y: float,
               image_point: tuple[float, float] | None = None) -> Drag:
    """Start a drag on a 2D view with ``button`` ("left", "right", "middle") at display (x, y)."""
    tool = button_tool(state.tool, button)
    state.set_active_view(view)
    d = Drag(view, tool, x, y, state.window, state.zoom[view], state.pan[view],
             image_point if tool in (*DRAWING_TOOLS, "crosshair") else None)
    if tool == "crosshair" and image_point is not None:
        state.set_crosshair_from_image(view, *image_point)
    return d


__all__ = ["DRAWING_TOOLS", "TOOLS", "TOOL_LABELS", "Drag", "begin_drag", "button_tool", "is_click", "pan_drag",
           "tool_label", "wheel_scroll", "wheel_zoom", "window_drag", "zoom_drag"]
