"""Linking two viewer states: each kind of link is one small object on the pair's shared guard.

A study and its analogue from another patient are linked by slice *delta* (their fields of view
differ; the reader aligned them on the matched slice), plus zoom/pan and window/level. A study and
its prior of the same patient will be linked through a registration transform: that is
:class:`TransformLink`, one more link in the same :class:`StateLink`, mapping the crosshair
through a 4x4 LPS matrix instead of counting slices.
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
    either moves the other to the same anatomy.
    """

    def __init__(self, a_to_b: np.ndarray) -> None:
        super().__init__()
        m = np.asarray(a_to_b, dtype=np.float64)
        if m.shape != (4, 4):
            raise ViewStateError(f"a registration transform is a 4x4 matrix, got shape {m.shape}")
        self.a_to_b = m
        self.b_to_a = np.linalg.inv(m)

    @staticmethod
    def _apply(m: np.ndarray, lps: np.ndarray) -> np.ndarray:
        return m[:3, :3] @ np.asarray(lps, dtype=np.float64) + m[:3, 3]

    def attach(self, a: ViewerState, b: ViewerState, guard: _Guard) -> None:
        self._hook(a.events.crosshair, lambda lps: guard.run(lambda: b.set_crosshair_lps(self._apply(self.a_to_b, lps))))
        self._hook(b.events.crosshair, lambda lps: guard.run(lambda: a.set_crosshair_lps(self._apply(self.b_to_a, lps))))
        guard.run(lambda: b.set_crosshair_lps(self._apply(self.a_to_b, a.crosshair_lps)))


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


__all__ = ["CameraLink", "Link", "ScrollDeltaLink", "StateLink", "TransformLink", "WindowLink"]
