"""The view model of one study viewer: everything the reader sees, independent of Qt and VTK.

Napari-style: a plain model that emits events; VTK adapters (``casebook.viewer.render``) and Qt
widgets (``casebook.viewer.qt``) subscribe and never talk to each other directly. Everything a
gesture or a key changes (slice, crosshair, window/level and its preset, zoom/pan, invert,
layout, the current tool, overlay and crosshair visibility, cine, loading progress, the
measurement being drawn and the measurements) lives here, so the logic is testable headless and
two viewers (a study and its analogue, or a prior) are linked by linking their states.

Every setter clamps its input, then emits exactly when the value changed: a subscriber can
redraw on every event without comparing first, and nothing the reader sees goes stale.
"""
from __future__ import annotations

import logging
import math

import numpy as np

from ..dicom.volume import Volume
from .errors import ViewStateError
from .events import Events
from .geometry import ORIENTATIONS, MprGeometry
from .gestures import TOOLS
from .measurements import Measurement, distance_mm, ellipse_stats
from .presets import wl_presets
from .study_info import StudyInfo

log = logging.getLogger(__name__)

LAYOUTS: tuple[str, ...] = ("1x1", "1x2", "2x2")
EVENT_NAMES: tuple[str, ...] = (
    "volume", "slice", "crosshair", "window", "invert", "zoom", "pan", "layout", "active_view", "measurements",
    "selection", "preview", "cine", "highlight", "overlay", "crosshair_visible", "tool", "loading", "study_info",
    "search_box",
)
# Projection and video modalities: one plane of the patient per image, never an MPR stack.
PROJECTION_MODALITIES: frozenset[str] = frozenset(
    {"CR", "DX", "MG", "XA", "RF", "US", "IO", "PX", "OP", "XC", "ES", "GM", "SM", "DOC"})
ZOOM_RANGE = (0.1, 40.0)


def is_single_image(volume: Volume) -> bool:
    """A single image or a projection radiograph / ultrasound loop: shown in one view, not MPR.

    ``volume.meta["series_slices"]`` (set on the one-slice preview of a longer series) is the
    series' real slice count: its preview is not a single image.
    """
    n = int(volume.meta.get("series_slices", volume.shape[0]))
    return n == 1 or volume.modality.upper() in PROJECTION_MODALITIES
CINE_FPS_RANGE = (1.0, 60.0)


class ViewerState:
    """Everything one study viewer displays. All setters clamp, then emit only on change.

    Events (keyword arguments):

    - ``volume(volume, keep_view)``, ``slice(orientation, index)``, ``crosshair(lps)``
    - ``window(center, width, preset)``, ``invert(invert)``
    - ``zoom(orientation, zoom)``, ``pan(orientation, pan)``, ``layout(layout)``, ``active_view(orientation)``
    - ``measurements(action, measurement)``: action ``added`` / ``changed`` / ``removed`` / ``cleared``
    - ``selection(measurement)``, ``preview(measurement)``: the one being drawn, or None
    - ``cine(playing, fps)``, ``highlight(orientation, slices)``, ``overlay(visible)``,
      ``crosshair_visible(visible)``, ``tool(tool)``, ``loading(fraction)``, ``study_info(info)``
    - ``search_box(measurement)``: the last box drawn for Find similar (stays drawn), or None
    """

    def __init__(self, volume: Volume | None = None) -> None:
        self.events = Events(*EVENT_NAMES)
        self.geometry: MprGeometry | None = None
        self.volume: Volume | None = None
        self._crosshair_canon = np.zeros(3)
        self.window: tuple[float, float] = (40.0, 400.0)
        self.preset = "default"
        self.invert = False
        self.zoom: dict[str, float] = {o: 1.0 for o in ORIENTATIONS}
        self.pan: dict[str, tuple[float, float]] = {o: (0.0, 0.0) for o in ORIENTATIONS}
        self.layout = "2x2"
        self.active_view = "axial"
        self.tool = "wl"
        self.show_overlay = True
        self.show_crosshair = True
        self.measurements: list[Measurement] = []
        self.selected: Measurement | None = None
        self.preview: Measurement | None = None
        self.search_box: Measurement | None = None
        self._next_number = 1
        self.cine_playing = False
        self.cine_fps = 15.0
        self.highlight: dict[str, set[int]] = {o: set() for o in ORIENTATIONS}
        self._loading_fraction = 1.0
        self.study_info = StudyInfo()
        self._layout_before_single: str | None = None
        if volume is not None:
            self.set_volume(volume)

    # -- volume -----------------------------------------------------------------------------
    def set_volume(self, volume: Volume, keep_view: bool = False) -> None:
        """Show a new volume; ``keep_view`` keeps slice/zoom/window (a progressive load refining)."""
        old = self.geometry
        self.volume = volume
        self.geometry = MprGeometry(volume)
        cleared = False
        if keep_view and old is not None:
            lps = old.canon_to_lps(self._crosshair_canon)
            self._crosshair_canon = self._clamp(self.geometry.lps_to_canon(lps))
        else:
            self._crosshair_canon = np.round(self.geometry.center_canon())
            self.window = volume.default_window()
            self.preset = "default"
            self.zoom = {o: 1.0 for o in ORIENTATIONS}
            self.pan = {o: (0.0, 0.0) for o in ORIENTATIONS}
            cleared = bool(self.measurements) or self.selected is not None
            self.measurements = []
            self.selected = None
            self._next_number = 1
            self.highlight = {o: set() for o in ORIENTATIONS}
        box_cleared = not keep_view and self.search_box is not None
        if box_cleared:
            self.search_box = None
        self.preview = None
        self.events.volume.emit(volume=volume, keep_view=keep_view)
        for o in ORIENTATIONS:
            self.events.slice.emit(orientation=o, index=self.slice_index(o))
        self.events.crosshair.emit(lps=self.crosshair_lps)
        if not keep_view:
            self.events.window.emit(center=self.window[0], width=self.window[1], preset=self.preset)
        if cleared:
            self.events.measurements.emit(action="cleared", measurement=None)
            self.events.selection.emit(measurement=None)
        if box_cleared:
            self.events.search_box.emit(measurement=None)
        if not keep_view:
            self._layout_for(volume)

    def _layout_for(self, volume: Volume) -> None:
        """One view for a single image (its own plane), the reader's layout back for the next stack.

        Coronal/sagittal reformats of one image are black lines and 3D cannot render it, so a CR,
        an ultrasound or a one-slice CT opens in 1x1 on the view that shows the stored image.
        """
        assert self.geometry is not None
        if is_single_image(volume):
            if self._layout_before_single is None:
                self._layout_before_single = self.layout
            view, _ = self.geometry.k_to_view(self.geometry.canon_to_k(self._crosshair_canon))
            self.set_active_view(view)
            self.set_layout("1x1")
        elif self._layout_before_single is not None:
            layout, self._layout_before_single = self._layout_before_single, None
            self.set_layout(layout)

    def _clamp(self, c: np.ndarray) -> np.ndarray:
        assert self.geometry is not None
        hi = np.array(self.geometry.shape, dtype=np.float64) - 1
        return np.clip(np.asarray(c, dtype=np.float64), 0, hi)

    @staticmethod
    def _check_orientation(orientation: str) -> None:
        if orientation not in ORIENTATIONS:
            raise ViewStateError(f"unknown orientation {orientation!r}; expected one of {ORIENTATIONS}")

    # -- slices and crosshair -------------------------------------------------------------------
    def slice_index(self, orientation: str) -> int:
        return int(round(self._crosshair_canon[MprGeometry.slice_axis(orientation)]))

    def n_slices(self, orientation: str) -> int:
        return self.geometry.n_slices(orientation) if self.geometry else 0

    @property
    def crosshair_canon(self) -> np.ndarray:
        return self._crosshair_canon.copy()

    @property
    def crosshair_lps(self) -> np.ndarray:
        if self.geometry is None:
            return np.zeros(3)
        return self.geometry.canon_to_lps(self._crosshair_canon)

    def set_slice(self, orientation: str, index: int) -> int:
        """Go to slice ``index`` of ``orientation`` (clamped); returns the index shown."""
        if self.geometry is None:
            return 0
        ax = MprGeometry.slice_axis(orientation)
        new = int(np.clip(int(index), 0, self.geometry.shape[ax] - 1))
        if float(self._crosshair_canon[ax]) == float(new):
            return new
        before = self.slice_index(orientation)
        self._crosshair_canon[ax] = new
        if new != before:
            self.events.slice.emit(orientation=orientation, index=new)
        self.events.crosshair.emit(lps=self.crosshair_lps)
        return new

    def scroll(self, orientation: str, delta: int) -> int:
        return self.set_slice(orientation, self.slice_index(orientation) + int(delta))

    def set_crosshair_canon(self, c: np.ndarray) -> None:
        if self.geometry is None:
            return
        new = self._clamp(c)
        if np.array_equal(new, self._crosshair_canon):
            return
        before = [self.slice_index(o) for o in ORIENTATIONS]
        self._crosshair_canon = new
        for o, b in zip(ORIENTATIONS, before):
            if self.slice_index(o) != b:
                self.events.slice.emit(orientation=o, index=self.slice_index(o))
        self.events.crosshair.emit(lps=self.crosshair_lps)

    def set_crosshair_lps(self, lps: np.ndarray) -> None:
        if self.geometry is not None:
            self.set_crosshair_canon(self.geometry.lps_to_canon(lps))

    def set_crosshair_from_image(self, orientation: str, row: float, col: float) -> None:
        """Click in a view: move the crosshair there, keeping that view's slice."""
        if self.geometry is None:
            return
        c = self.geometry.image_to_canon(orientation, self.slice_index(orientation), row, col)
        self.set_crosshair_canon(c)

    # -- window/level ---------------------------------------------------------------------------
    def set_window(self, center: float, width: float, preset: str | None = None) -> None:
        """Set window/level; ``preset`` names where it came from ("custom" for a drag or a link)."""
        width = max(float(width), 1.0)
        new = (float(center), width)
        name = preset or "custom"
        if new == self.window and name == self.preset:
            return
        self.window, self.preset = new, name
        self.events.window.emit(center=new[0], width=new[1], preset=name)

    def adjust_window(self, d_center: float, d_width: float) -> None:
        self.set_window(self.window[0] + d_center, self.window[1] + d_width)

    def apply_preset(self, name: str) -> None:
        """CT presets in HU; ``auto`` (MR and anything else) from the data's percentiles."""
        if name == "auto":
            if self.volume is None:
                return
            sample = self.volume.voxels[:: max(1, self.volume.shape[0] // 16)]
            lo, hi = np.percentile(sample, [1.0, 99.0])
            self.set_window((lo + hi) / 2.0, max(hi - lo, 1.0), preset="auto")
        elif name == "default":
            if self.volume is not None:
                c, w = self.volume.default_window()
                self.set_window(c, w, preset="default")
        else:
            table = wl_presets()
            if name not in table:
                raise ViewStateError(f"unknown window preset {name!r}; known: {sorted(table)}")
            self.set_window(*table[name], preset=name)

    def set_invert(self, invert: bool) -> None:
        if bool(invert) != self.invert:
            self.invert = bool(invert)
            self.events.invert.emit(invert=self.invert)

    # -- zoom/pan/layout ------------------------------------------------------------------------
    def set_zoom(self, orientation: str, zoom: float) -> None:
        self._check_orientation(orientation)
        z = float(np.clip(zoom, *ZOOM_RANGE))
        if z != self.zoom[orientation]:
            self.zoom[orientation] = z
            self.events.zoom.emit(orientation=orientation, zoom=z)

    def set_pan(self, orientation: str, pan_mm: tuple[float, float]) -> None:
        self._check_orientation(orientation)
        p = (float(pan_mm[0]), float(pan_mm[1]))
        if p != self.pan[orientation]:
            self.pan[orientation] = p
            self.events.pan.emit(orientation=orientation, pan=p)

    def reset_view(self) -> None:
        """Fit, centre, default window, no invert; the slice position is kept."""
        for o in ORIENTATIONS:
            self.set_zoom(o, 1.0)
            self.set_pan(o, (0.0, 0.0))
        self.apply_preset("default")
        self.set_invert(False)

    def set_layout(self, layout: str) -> None:
        if layout not in LAYOUTS:
            raise ViewStateError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
        if layout != self.layout:
            self.layout = layout
            self.events.layout.emit(layout=layout)

    def set_active_view(self, orientation: str) -> None:
        self._check_orientation(orientation)
        if orientation != self.active_view:
            self.active_view = orientation
            self.events.active_view.emit(orientation=orientation)

    # -- tool and view flags --------------------------------------------------------------------
    def set_tool(self, tool: str) -> None:
        """The left-button tool (``wl``, ``pan``, ``zoom``, ``crosshair``, ``distance``, ``ellipse``, ``box``)."""
        if tool not in TOOLS:
            raise ViewStateError(f"unknown tool {tool!r}; expected one of {TOOLS}")
        if tool != self.tool:
            self.tool = tool
            if self.preview is not None:
                self.set_preview(None)
            self.events.tool.emit(tool=tool)

    def set_overlay_visible(self, visible: bool) -> None:
        """Corner text, orientation letters and scale bar (O toggles them for a clean image)."""
        if bool(visible) != self.show_overlay:
            self.show_overlay = bool(visible)
            self.events.overlay.emit(visible=self.show_overlay)

    def set_crosshair_visible(self, visible: bool) -> None:
        if bool(visible) != self.show_crosshair:
            self.show_crosshair = bool(visible)
            self.events.crosshair_visible.emit(visible=self.show_crosshair)

    @property
    def loading_fraction(self) -> float:
        """How much of the series is loaded (1.0 when complete); the overlay shows it."""
        return self._loading_fraction

    def set_loading_fraction(self, fraction: float) -> None:
        f = float(np.clip(fraction, 0.0, 1.0)) if math.isfinite(fraction) else 0.0
        if f != self._loading_fraction:
            self._loading_fraction = f
            self.events.loading.emit(fraction=f)

    def set_study_info(self, info: StudyInfo) -> None:
        if info != self.study_info:
            self.study_info = info
            self.events.study_info.emit(info=info)

    # -- cine -----------------------------------------------------------------------------------
    def set_cine(self, playing: bool, fps: float | None = None) -> None:
        new_fps = float(np.clip(fps, *CINE_FPS_RANGE)) if fps is not None else self.cine_fps
        if bool(playing) == self.cine_playing and new_fps == self.cine_fps:
            return
        self.cine_playing, self.cine_fps = bool(playing), new_fps
        self.events.cine.emit(playing=self.cine_playing, fps=self.cine_fps)

    def cine_step(self, orientation: str | None = None) -> int:
        """Advance one frame, wrapping at the end (as a PACS cine loop does)."""
        o = orientation or self.active_view
        n = self.n_slices(o)
        if n == 0:
            return 0
        return self.set_slice(o, (self.slice_index(o) + 1) % n)

    # -- measurements ---------------------------------------------------------------------------
    def _unit(self) -> str:
        return "HU" if self.volume is not None and self.volume.modality.upper() == "CT" else ""

    def measure(self, m: Measurement) -> Measurement:
        """Compute the values of a measurement from the displayed pixels."""
        if self.geometry is None:
            return m
        sp = self.geometry.pixel_spacing(m.orientation)
        known = self.volume is None or self.volume.geometry.pixel_spacing_known
        m.length_unit = "mm" if known else "px"  # the 1 mm placeholder makes the values pixels
        if m.kind == "distance":
            m.values = {"length_mm": distance_mm(m.p0, m.p1, sp)}
        elif m.kind in ("ellipse", "box"):
            img = self.geometry.slice_array(m.orientation, m.slice_index)
            m.values = ellipse_stats(img, m.p0, m.p1, sp)
            m.unit = self._unit()
        return m

    def add_measurement(self, m: Measurement) -> Measurement:
        self.measure(m)
        m.number = self._next_number
        self._next_number += 1
        self.measurements.append(m)
        self.events.measurements.emit(action="added", measurement=m)
        return m

    def update_measurement(self, m: Measurement) -> None:
        """Recompute after its points were edited (the shape moved, so its label moves too)."""
        self.measure(m)
        if m in self.measurements:
            self.events.measurements.emit(action="changed", measurement=m)

    def remove_measurement(self, m: Measurement) -> None:
        if m in self.measurements:
            if self.selected is m:
                self.select_measurement(None)
            self.measurements.remove(m)
            self.events.measurements.emit(action="removed", measurement=m)

    def clear_measurements(self) -> None:
        for m in list(self.measurements):
            self.remove_measurement(m)

    def select_measurement(self, m: Measurement | None) -> None:
        """Select one measurement (the list panel and the overlay mark it); None deselects."""
        if m is not None and m not in self.measurements:
            raise ViewStateError("that measurement is not on this viewer")
        if m is not self.selected:
            self.selected = m
            self.events.selection.emit(measurement=m)

    def go_to_measurement(self, m: Measurement) -> None:
        """Select it and show its slice in its view (the list panel's jump)."""
        self.select_measurement(m)
        self.set_active_view(m.orientation)
        self.set_slice(m.orientation, m.slice_index)

    def set_preview(self, m: Measurement | None) -> None:
        """The measurement being drawn, with live values; None when the drag ends."""
        if m is None and self.preview is None:
            return
        if m is not None:
            self.measure(m)
        self.preview = m
        self.events.preview.emit(measurement=m)

    def set_search_box(self, m: Measurement | None) -> None:
        """The box the reader drew for Find similar: it stays on the image (the query the results
        answer) until the next box is started or another volume opens."""
        if m is not self.search_box:
            self.search_box = m
            self.events.search_box.emit(measurement=m)

    # -- similar-case highlights ----------------------------------------------------------------
    def set_highlight(self, orientation: str, slices: set[int]) -> None:
        self._check_orientation(orientation)
        new = set(int(s) for s in slices)
        if new != self.highlight[orientation]:
            self.highlight[orientation] = new
            self.events.highlight.emit(orientation=orientation, slices=set(new))


__all__ = ["EVENT_NAMES", "LAYOUTS", "PROJECTION_MODALITIES", "ViewerState", "is_single_image"]
