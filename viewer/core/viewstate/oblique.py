"""Oblique MPR gestures as arithmetic on the view model: turning the crosshair axes of a view.

A Shift + left drag in a slice view turns the planes about that view's normal through the
crosshair; the angle is the one the pointer sweeps around the crosshair on screen, so the
anatomy follows the hand (it turns under the fixed crosshair lines, and the other two views
become oblique). Keys turn the active view by fixed steps. No Qt, no VTK: the controller passes
display pixels, this module sets :meth:`ViewerState.set_plane_rotation`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .geometry import rotation_about

if TYPE_CHECKING:  # pragma: no cover
    from .state import ViewerState

ROTATE_KEY_STEP_DEG = 5.0  # one key press
ROTATE_FINE_STEP_DEG = 1.0  # with Shift
_MIN_RADIUS_PX = 8.0  # nearer the pivot than this the angle is noise: the drag waits


@dataclass
class PlaneRotateDrag:
    """One rotate drag: where it started, about which pivot, from which rotation."""

    view: str
    pivot: tuple[float, float]  # the crosshair on screen, widget pixels (y down)
    start: tuple[float, float]
    rotation0: np.ndarray = field(repr=False)
    axis: np.ndarray = field(repr=False)
    degrees: float = 0.0

    def _angle(self, x: float, y: float) -> float | None:
        dx, dy = x - self.pivot[0], y - self.pivot[1]
        if math.hypot(dx, dy) < _MIN_RADIUS_PX:
            return None
        return math.degrees(math.atan2(-dy, dx))  # counter-clockwise on screen is positive

    def move(self, state: "ViewerState", x: float, y: float) -> None:
        """Turn the planes by the angle swept since the press (from the start, never accumulated)."""
        a0, a = self._angle(*self.start), self._angle(x, y)
        if a0 is None or a is None:
            return
        sweep = (a - a0 + 180.0) % 360.0 - 180.0
        self.degrees = sweep
        # the anatomy follows the pointer: turning it counter-clockwise on screen turns the
        # crosshair axes clockwise against it (a negative plane rotation)
        state.set_plane_rotation(rotation_about(self.axis, -sweep) @ self.rotation0)


def begin_rotate(state: "ViewerState", view: str, x: float, y: float,
                 pivot: tuple[float, float]) -> PlaneRotateDrag | None:
    """Start turning ``view``'s crosshair axes at widget pixel (x, y); None when it cannot turn."""
    if state.geometry is None or not state.can_rotate_planes:
        return None
    right, down = state.geometry.screen_vectors(view)
    return PlaneRotateDrag(view, pivot, (x, y), state.plane_rotation.copy(), np.cross(down, right))


def rotate_key(state: "ViewerState", view: str, direction: int, fine: bool = False) -> bool:
    """A key press: turn ``view``'s crosshair axes one step (``direction`` +1 counter-clockwise)."""
    step = ROTATE_FINE_STEP_DEG if fine else ROTATE_KEY_STEP_DEG
    return state.rotate_plane(view, step * (1 if direction > 0 else -1))


__all__ = ["PlaneRotateDrag", "ROTATE_FINE_STEP_DEG", "ROTATE_KEY_STEP_DEG", "begin_rotate", "rotate_key"]
