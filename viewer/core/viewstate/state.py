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
from .geometry import ORIENTATIONS, MprGeometry, can_reslice, check_rotation, rotation_about, rotation_angle_deg
from .gestures import TOOLS
from .measurements import Measurement, distance_mm, ellipse_stats
from .presets import wl_presets
from .reslice import VolumeSampler
from .study_info import StudyInfo

log = logging.getLogger(__name__)

LAYOUTS: tuple[str, ...] = ("1x1", "1x2", "2x2")
EVENT_NAMES: tuple[str, ...] = (
    "volume", "slice", "crosshair", "window", "invert", "zoom", "pan", "layout", "active_view", "measurements",
    "selection", "preview", "cine", "highlight", "overlay", "crosshair_visible", "tool", "loading", "study_info",
    "search_box", "plane",
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
    - ``plane(rotation)``: the oblique rotation of the three planes changed (3x3, LPS); every
      view's plane was rebuilt, the crosshair (a world point) stayed where it was

    The crosshair is a point in patient space (LPS mm, ``crosshair_lps``): the three views show
    the planes through it, and a link to another study maps it through a registration matrix.
    """

    def __init__(self, volume: Volume | None = None) -> None:
        self.events = Events(*EVENT_NAMES)
        self.geometry: MprGeometry | None = None
        self.volume: Volume | None = None
        self._crosshair_lps = np.zeros(3)  # the crosshair: a world point, LPS mm
        self.plane_rotation = np.eye(3)  # oblique MPR: the display axes turned by this (LPS)
        self._sampler: VolumeSampler | None = None  # kept per volume: a rotate drag rebuilds the grid often
        self._measurement_rotation: dict[int, np.ndarray] = {}  # id(measurement) -> planes it was drawn on
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
        old_rotation = self.plane_rotation
        keep_rotation = keep_view and old is not None and can_reslice(volume)
        self.plane_rotation = old_rotation if keep_rotation else np.eye(3)
        if self._sampler is not None and self._sampler.volume is not volume:
            self._sampler = None  # it holds the previous volume's voxels
        self.geometry = MprGeometry(volume, self.plane_rotation, sampler=self._sampler)
        self._sampler = self.geometry.sampler or self._sampler
        cleared = False
        if keep_view and old is not None:
            self._crosshair_lps = self.geometry.canon_to_lps(self._clamp(self.geometry.lps_to_canon(self._crosshair_lps)))
        else:
            self._crosshair_lps = self.geometry.canon_to_lps(np.round(self.geometry.center_canon()))
            self.window = volume.default_window()
            self.preset = "default"
            self.zoom = {o: 1.0 for o in ORIENTATIONS}
            self.pan = {o: (0.0, 0.0) for o in ORIENTATIONS}
            cleared = bool(self.measurements) or self.selected is not None
            self.measurements = []
            self._measurement_rotation = {}
            self.selected = None
            self._next_number = 1
            self.highlight = {o: set() for o in ORIENTATIONS}
        box_cleared = not keep_view and self.search_box is not None
        if box_cleared:
            self.search_box = None
        self.preview = None
        self.events.volume.emit(volume=volume, keep_view=keep_view)
        if not np.array_equal(old_rotation, self.plane_rotation):
            self.events.plane.emit(rotation=self.plane_rotation.copy())
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
            view, _ = self.geometry.k_to_view(self.geometry.canon_to_k(self.crosshair_canon))
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
        return int(round(float(self.crosshair_canon[MprGeometry.slice_axis(orientation)])))

    def n_slices(self, orientation: str) -> int:
        return self.geometry.n_slices(orientation) if self.geometry else 0

    @property
    def crosshair_canon(self) -> np.ndarray:
        """The crosshair in the display grid's continuous index (s, p, l)."""
        if self.geometry is None:
            return np.zeros(3)
        return self.geometry.lps_to_canon(self._crosshair_lps)

    @property
    def crosshair_lps(self) -> np.ndarray:
        """The crosshair: a point in patient space (LPS mm), the one all three planes pass through."""
        if self.geometry is None:
            return np.zeros(3)
        return self._crosshair_lps.copy()

    def set_slice(self, orientation: str, index: int) -> int:
        """Go to slice ``index`` of ``orientation`` (clamped); returns the index shown."""
        if self.geometry is None:
            return 0
        ax = MprGeometry.slice_axis(orientation)
        new = int(np.clip(int(index), 0, self.geometry.shape[ax] - 1))
        c = self.crosshair_canon
        if abs(float(c[ax]) - new) < 1e-9:
            return new
        before = self.slice_index(orientation)
        c[ax] = new
        self._crosshair_lps = self.geometry.canon_to_lps(c)
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
        if np.allclose(new, self.crosshair_canon, rtol=0.0, atol=1e-9):
            return
        before = [self.slice_index(o) for o in ORIENTATIONS]
        self._crosshair_lps = self.geometry.canon_to_lps(new)
        for o, b in zip(ORIENTATIONS, before):
            if self.slice_index(o) != b:
                self.events.slice.emit(orientation=o, index=self.slice_index(o))
        self.events.crosshair.emit(lps=self.crosshair_lps)

    def set_crosshair_lps(self, lps: np.ndarray) -> None:
        """Move the crosshair to a patient point (clamped into the volume's grid)."""
        if self.geometry is not None:
            self.set_crosshair_canon(self.geometry.lps_to_canon(lps))

    def set_crosshair_from_image(self, orientation: str, row: float, col: float) -> None:
        """Click in a view: move the crosshair there, keeping that view's slice."""
        if self.geometry is None:
            return
        c = self.geometry.image_to_canon(orientation, self.slice_index(orientation), row, col)
        self.set_crosshair_canon(c)

    # -- oblique MPR ----------------------------------------------------------------------------
    @property
    def can_rotate_planes(self) -> bool:
        """Whether the planes can be turned: a grey-scale stack of 2+ slices with a patient geometry."""
        return self.volume is not None and can_reslice(self.volume)

    @property
    def plane_angle_deg(self) -> float:
        """How far the planes are turned from the patient axes, in degrees (0: true axial/coronal/sagittal)."""
        return rotation_angle_deg(self.plane_rotation)

    def set_plane_rotation(self, rotation: np.ndarray) -> bool:
        """Turn the three planes to ``rotation`` (3x3 in LPS) about the crosshair; True if it changed.

        The crosshair stays on the same patient point; each view shows the plane of the new grid
        nearest to it. The identity gives back the true patient planes.
        """
        if self.volume is None or self.geometry is None:
            return False
        r = check_rotation(rotation)
        if np.allclose(r, self.plane_rotation, rtol=0.0, atol=1e-12):
            return False
        identity = np.allclose(r, np.eye(3), atol=1e-9)
        if identity:
            r = np.eye(3)
        elif not self.can_rotate_planes:
            raise ViewStateError("this series has no oblique planes: it is a single image, a colour series "
                                 "or has no patient geometry")
        before = [self.slice_index(o) for o in ORIENTATIONS]
        lps = self._crosshair_lps.copy()
        self.plane_rotation = r
        self.geometry = MprGeometry(self.volume, r, sampler=self._sampler)
        self._sampler = self.geometry.sampler or self._sampler
        self._crosshair_lps = self.geometry.canon_to_lps(self._clamp(self.geometry.lps_to_canon(lps)))
        if self.preview is not None:
            self.set_preview(None)
        self.events.plane.emit(rotation=r.copy())
        for o, b in zip(ORIENTATIONS, before):
            if self.slice_index(o) != b:
                self.events.slice.emit(orientation=o, index=self.slice_index(o))
        self.events.crosshair.emit(lps=self.crosshair_lps)
        return True

    def rotate_plane(self, orientation: str, degrees: float) -> bool:
        """Turn the crosshair axes of ``orientation``'s view by ``degrees`` about its normal
        (positive: the axes turn counter-clockwise against the anatomy, which turns clockwise on
        screen); the other two planes become oblique. False when nothing turned."""
        self._check_orientation(orientation)
        if self.geometry is None or not self.can_rotate_planes or not math.isfinite(degrees) or degrees == 0:
            return False
        right, down = self.geometry.screen_vectors(orientation)
        return self.set_plane_rotation(rotation_about(np.cross(down, right), degrees) @ self.plane_rotation)

    def reset_plane_rotation(self) -> bool:
        """Back to true axial/coronal/sagittal planes."""
        return self.set_plane_rotation(np.eye(3))

    def measurement_on_planes(self, m: Measurement) -> bool:
        """Whether ``m`` was drawn on the planes shown now (a rotation shows other planes)."""
        r = self._measurement_rotation.get(id(m))
        return r is None or np.allclose(r, self.plane_rotation, rtol=0.0, atol=1e-9)

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
        self._measurement_rotation[id(m)] = self.plane_rotation.copy()
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
            self._measurement_rotation.pop(id(m), None)
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
        drawn_on = self._measurement_rotation.get(id(m))
        if drawn_on is not None and not self.measurement_on_planes(m):
            self.set_plane_rotation(drawn_on)  # back to the planes it was drawn on
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
