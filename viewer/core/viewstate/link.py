"""Linking two viewer states: each kind of link is one small object on the pair's shared guard.

A study and its analogue from another patient are linked by *position*: the same mm along the
slice normal from the matched slices the reader aligned them on (:class:`PositionLink`), at the
same physical scale (:class:`PhysicalCameraLink`) and window/level (:func:`analogue_links`); the
plain slice-delta and zoom-factor links stay for views of the same grid. A study and
its prior of the same patient is linked through a registration transform: that is
:class:`TransformLink`, one more link in the same :class:`StateLink`, mapping the crosshair
(and so the slice of every view) through a 4x4 LPS matrix instead of counting slices;
:func:`registered_links` is the whole set for a registered pair.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable

import numpy as np

from .errors import ViewStateError
from .events import EventEmitter
from .geometry import ORIENTATIONS
from .state import ViewerState


class _Guard:
    """Stops the echo: while one state is being updated from the other, nothing links back."""

    def __init__(self) -> None:
        self.busy = False
        self.enabled = True

    def run(self, fn: Callable[[], None]) -> None:
        if self.busy or not self.enabled:
            return
        self.busy = True
        try:
            fn()
        finally:
            self.busy = False


class Link(ABC):
    """One linked aspect of two states; ``attach`` subscribes both ways, ``detach`` undoes it."""

    def __init__(self) -> None:
        self._handlers: list[tuple[EventEmitter, Callable[..., Any]]] = []

    @abstractmethod
    def attach(self, a: ViewerState, b: ViewerState, guard: _Guard) -> None:
        """Subscribe to the events of ``a`` and ``b`` that this link follows."""

    def _hook(self, emitter: EventEmitter, cb: Callable[..., Any]) -> None:
        emitter.connect(cb)
        self._handlers.append((emitter, cb))

    def resync(self) -> None:
        """Take the current positions as the new alignment (links with an alignment override it)."""

    def detach(self) -> None:
        for emitter, cb in self._handlers:
            emitter.disconnect(cb)
        self._handlers.clear()


class ScrollDeltaLink(Link):
    """Scrolling one state by n slices scrolls the other by n in the same orientation."""

    def attach(self, a: ViewerState, b: ViewerState, guard: _Guard) -> None:
        self._states = (a, b)
        self.resync()
        for src, dst in ((a, b), (b, a)):
            self._hook(src.events.slice, self._make(src, dst, guard))
            self._hook(src.events.volume, lambda src=src, **_: self._last.__setitem__(
                id(src), {o: src.slice_index(o) for o in ORIENTATIONS}))

    def resync(self) -> None:
        self._last = {id(s): {o: s.slice_index(o) for o in ORIENTATIONS} for s in self._states}

    def _make(self, src: ViewerState, dst: ViewerState, guard: _Guard) -> Callable[..., Any]:
        def on_slice(orientation: str, index: int) -> None:
            last = self._last[id(src)]
            delta = index - last.get(orientation, index)
            last[orientation] = index
            if delta == 0:
                return

            def apply() -> None:
                dst.scroll(orientation, delta)
                self._last[id(dst)][orientation] = dst.slice_index(orientation)
            guard.run(apply)
        return on_slice


class PositionLink(Link):
    """Scrolling one state moves the other by the same distance in patient mm along the slice
    normal (not by slice number: a 1 mm series beside a 5 mm one stays on the same anatomy).

    The alignment (the offset between the two positions, per orientation) is taken when linked
    and whenever either state gets a new volume: the reader aligned the pair on the matched slices.
    """

    def attach(self, a: ViewerState, b: ViewerState, guard: _Guard) -> None:
        self._states = (a, b)
        self._offset: dict[str, float] = {}
        self.resync()
        for src, dst, sign in ((a, b, 1.0), (b, a, -1.0)):
            self._hook(src.events.slice, self._make(src, dst, sign, guard))
            self._hook(src.events.volume, lambda keep_view=False, **_: None if keep_view else self.resync())

    @staticmethod
    def position(state: ViewerState, orientation: str) -> float | None:
        """The shown slice's position along its normal in mm (None without a volume)."""
        g = state.geometry
        return None if g is None else g.slice_position_mm(orientation, state.crosshair_canon)

    def resync(self) -> None:
        a, b = self._states
        for o in ORIENTATIONS:
            pa, pb = self.position(a, o), self.position(b, o)
            self._offset[o] = (pb - pa) if pa is not None and pb is not None else 0.0

    def _make(self, src: ViewerState, dst: ViewerState, sign: float, guard: _Guard) -> Callable[..., Any]:
        def on_slice(orientation: str, index: int) -> None:
            p = self.position(src, orientation)
            if p is None or dst.geometry is None:
                return
            target = p + sign * self._offset.get(orientation, 0.0)
            k = dst.geometry.index_at_position(orientation, target, dst.crosshair_canon)
            guard.run(lambda: dst.set_slice(orientation, k))
        return on_slice


ViewSize = Callable[[ViewerState, str], tuple[float, float]]


class PhysicalCameraLink(Link):
    """Zoom by physical size: both views show the same mm per screen pixel, and pan (in mm) alike.

    The states' zoom is relative to "fit the image", and two series rarely have the same field of
    view, so copying the factor shows a 35 cm chest beside a 20 cm one at different scales. The
    view size (width, height in pixels) comes from ``view_size``; equal views when not given.
    """

    def __init__(self, view_size: ViewSize | None = None) -> None:
        super().__init__()
        self.view_size: ViewSize = view_size or (lambda state, orientation: (1.0, 1.0))

    def _mm_per_px_at_zoom_1(self, state: ViewerState, orientation: str) -> float | None:
        g = state.geometry
        if g is None:
            return None
        vw, vh = self.view_size(state, orientation)
        return 2.0 * g.fit_half_height_mm(orientation, vw, vh) / max(vh, 1.0)

    def matching_zoom(self, src: ViewerState, dst: ViewerState, orientation: str) -> float | None:
        """The zoom of ``dst`` that shows its image at the scale ``src`` shows its own."""
        s, d = self._mm_per_px_at_zoom_1(src, orientation), self._mm_per_px_at_zoom_1(dst, orientation)
        if s is None or d is None or s <= 0:
            return None
        return src.zoom[orientation] * d / s

    def attach(self, a: ViewerState, b: ViewerState, guard: _Guard) -> None:
        self._states = (a, b)
        for src, dst in ((a, b), (b, a)):
            self._hook(src.events.zoom, lambda orientation, zoom, s=src, d=dst: guard.run(
                lambda: self._follow(s, d, orientation)))
            self._hook(src.events.pan, lambda orientation, pan, d=dst: guard.run(lambda: d.set_pan(orientation, pan)))
        self.resync()

    def _follow(self, src: ViewerState, dst: ViewerState, orientation: str) -> None:
        z = self.matching_zoom(src, dst, orientation)
        if z is not None:
            dst.set_zoom(orientation, z)

    def resync(self) -> None:
        """Bring the second state to the first one's scale (after a view was resized)."""
        a, b = self._states
        guard = _Guard()
        for o in ORIENTATIONS:
            guard.run(lambda o=o: self._follow(a, b, o))


class CameraLink(Link):
    """Zoom and pan of each orientation."""

    def attach(self, a: ViewerState, b: ViewerState, guard: _Guard) -> None:
        for src, dst in ((a, b), (b, a)):
            self._hook(src.events.zoom, lambda orientation, zoom, d=dst: guard.run(lambda: d.set_zoom(orientation, zoom)))
            self._hook(src.events.pan, lambda orientation, pan, d=dst: guard.run(lambda: d.set_pan(orientation, pan)))


class WindowLink(Link):
    """Window/level (with its preset name) and invert."""

    def attach(self, a: ViewerState, b: ViewerState, guard: _Guard) -> None:
        for src, dst in ((a, b), (b, a)):
            self._hook(src.events.window, lambda center, width, preset="custom", d=dst: guard.run(
                lambda: d.set_window(center, width, preset)))
            self._hook(src.events.invert, lambda invert, d=dst: guard.run(lambda: d.set_invert(invert)))


class TransformLink(Link):
    """The crosshair of ``b`` is ``a_to_b`` applied to the crosshair of ``a`` (LPS mm), and back.

    For a prior registered to the current study: scrolling, clicking or the crosshair tool in
    either moves the other to the same anatomy. With ``planes`` (the default) turning the
    crosshair axes of one (oblique MPR) turns the other's through the transform: a turn ``D`` of
    ``a``'s planes (3x3, LPS of ``a``) is the turn ``R D Rᵀ`` of ``b``'s, ``R`` the rotation of
    ``a_to_b``: both turn about the same anatomical axis by the same angle. When linked (and on
    :meth:`resync`) ``b`` takes ``a``'s turn that way, so true planes in ``a`` are true planes in
    ``b`` (as before oblique MPR: a prior lying a few degrees differently shows its own true
    planes, those few degrees apart) and taking ``a`` back to true planes takes ``b`` back too.
    """

    def __init__(self, a_to_b: np.ndarray, planes: bool = True) -> None:
        super().__init__()
        self._states: tuple[ViewerState, ViewerState] | None = None
        self._guard: _Guard | None = None
        self.planes = bool(planes)
        self.set_matrix(a_to_b)

    def set_matrix(self, a_to_b: np.ndarray) -> None:
        """A new transform (the reader nudged it): ``b`` moves to the anatomy under ``a``'s crosshair."""
        m = np.asarray(a_to_b, dtype=np.float64)
        if m.shape != (4, 4) or not np.all(np.isfinite(m)):
            raise ViewStateError(f"a registration transform is a finite 4x4 matrix, got shape {m.shape}")
        try:
            inv = np.linalg.inv(m)
        except np.linalg.LinAlgError:
            raise ViewStateError("a registration transform must be invertible") from None
        self.a_to_b, self.b_to_a = m, inv
        u, _s, vt = np.linalg.svd(m[:3, :3])  # the rotation of an affine: its nearest rotation
        self.rotation = u @ vt
        if np.linalg.det(self.rotation) < 0:
            raise ViewStateError("a registration transform must not mirror the image")
        if self._states is not None:
            self.resync()

    def map_a_to_b(self, lps: np.ndarray) -> np.ndarray:
        """A point of ``a`` (LPS mm) at the same anatomy in ``b``."""
        return self._apply(self.a_to_b, lps)

    def map_b_to_a(self, lps: np.ndarray) -> np.ndarray:
        return self._apply(self.b_to_a, lps)

    def resync(self) -> None:
        """Bring ``b`` to the anatomy under ``a``'s crosshair (after a new matrix or volume)."""
        if self._states is None or self._guard is None:
            return
        a, b = self._states
        if a.geometry is not None and b.geometry is not None:
            self._guard.run(lambda: b.set_crosshair_lps(self._apply(self.a_to_b, a.crosshair_lps)))
            if self.planes:
                self._guard.run(lambda: self._turn(b, self.plane_rotation_b(a.plane_rotation)))

    def plane_rotation_b(self, rotation_a: np.ndarray) -> np.ndarray:
        """The rotation of ``b``'s planes that shows the anatomy ``a`` shows with ``rotation_a``."""
        r = self.rotation
        return r @ np.asarray(rotation_a, dtype=np.float64) @ r.T

    def plane_rotation_a(self, rotation_b: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`plane_rotation_b`."""
        r = self.rotation
        return r.T @ np.asarray(rotation_b, dtype=np.float64) @ r

    @staticmethod
    def _turn(state: ViewerState, rotation: np.ndarray) -> None:
        """Turn ``state``'s planes if it can (a single slice or a colour series stays as it is)."""
        if state.geometry is None or not state.can_rotate_planes:
            return
        try:
            state.set_plane_rotation(rotation)
        except ViewStateError:
            return

    @staticmethod
    def _apply(m: np.ndarray, lps: np.ndarray) -> np.ndarray:
        return m[:3, :3] @ np.asarray(lps, dtype=np.float64) + m[:3, 3]

    def attach(self, a: ViewerState, b: ViewerState, guard: _Guard) -> None:
        self._states, self._guard = (a, b), guard
        self._hook(a.events.crosshair, lambda lps: guard.run(lambda: b.set_crosshair_lps(self._apply(self.a_to_b, lps))))
        self._hook(b.events.crosshair, lambda lps: guard.run(lambda: a.set_crosshair_lps(self._apply(self.b_to_a, lps))))
        if self.planes:
            self._hook(a.events.plane, lambda rotation: guard.run(lambda: self._turn(b, self.plane_rotation_b(rotation))))
            self._hook(b.events.plane, lambda rotation: guard.run(lambda: self._turn(a, self.plane_rotation_a(rotation))))
        self.resync()

    def detach(self) -> None:
        super().detach()
        self._states = None


class StateLink:
    """Links two viewer states with a set of :class:`Link` s sharing one echo guard.

    The default is the analogue link: scroll by slice delta, zoom/pan, window/level. Pass
    ``transform`` (4x4, LPS of ``a`` -> LPS of ``b``) to link positions through a registration
    instead of by delta; pass ``links`` to choose the set outright.
    """

    def __init__(self, a: ViewerState, b: ViewerState, scroll: bool = True, zoom: bool = True,
                 window: bool = True, transform: np.ndarray | None = None,
                 links: list[Link] | None = None) -> None:
        self.a, self.b = a, b
        self._guard = _Guard()
        if links is None:
            links = []
            if transform is not None:
                links.append(TransformLink(transform))
            elif scroll:
                links.append(ScrollDeltaLink())
            if zoom:
                links.append(CameraLink())
            if window:
                links.append(WindowLink())
        self.links = list(links)
        for link in self.links:
            link.attach(a, b, self._guard)

    @property
    def enabled(self) -> bool:
        return self._guard.enabled

    @enabled.setter
    def enabled(self, on: bool) -> None:
        self._guard.enabled = bool(on)

    def resync(self) -> None:
        """Take the current slices as the new alignment (after a manual re-alignment)."""
        for link in self.links:
            link.resync()

    def unlink(self) -> None:
        for link in self.links:
            link.detach()
        self.links = []


def analogue_links(view_size: ViewSize | None = None) -> list[Link]:
    """A study beside an analogue: same anatomy by position, same physical scale, same window."""
    return [PositionLink(), PhysicalCameraLink(view_size), WindowLink()]


def registered_links(a_to_b: np.ndarray, view_size: ViewSize | None = None) -> list[Link]:
    """A study beside its registered prior: the same anatomy through the transform in every plane
    (crosshair, hence every view's slice), the same physical scale and pan, the same window.

    The prior's pan follows in mm of the view; for the small rotations of a rigid registration of
    one patient that is the same anatomy to well under a pixel of a fitted view.
    """
    return [TransformLink(a_to_b), PhysicalCameraLink(view_size), WindowLink()]


def transform_link(link: "StateLink") -> TransformLink | None:
    """The :class:`TransformLink` of a state link, if it has one (to nudge its matrix)."""
    return next((k for k in link.links if isinstance(k, TransformLink)), None)


__all__ = ["CameraLink", "Link", "PhysicalCameraLink", "PositionLink", "ScrollDeltaLink", "StateLink",
           "TransformLink", "ViewSize", "WindowLink", "analogue_links", "registered_links", "transform_link"]
