"""Pure-Python viewer state: what the reader sees, independent of Qt and VTK.

Napari-style: a plain model that emits events; VTK adapters (``casebook.viewer.render``) and Qt
widgets (``casebook.viewer.qt``) subscribe and never talk to each other directly. Everything a
gesture changes (slice, crosshair, window/level, zoom/pan, invert, layout, measurements) lives
here, so the logic is testable headless and two viewers (a study and its analogue) can be linked
by linking their states.

Geometry: :class:`MprGeometry` re-orders a :class:`Volume` to the patient axes nearest to its
acquisition axes (a cheap numpy view, no resampling) so that axial/coronal/sagittal slices are
plain array slices. Orientation markers come from the *true* direction cosines, so an oblique
acquisition shows combined letters (e.g. ``PL``) instead of a silently wrong single letter.
"""
from __future__ import annotations

import itertools
import json
import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from .dicom.volume import Volume

log = logging.getLogger(__name__)

ORIENTATIONS: tuple[str, ...] = ("axial", "coronal", "sagittal")
LAYOUTS: tuple[str, ...] = ("1x1", "1x2", "2x2")

# Window/level presets (center, width) in HU; "auto" is computed from the data. The shipped
# resources/presets/window_presets.json is the source of truth; these are its fallback copy.
_BUILTIN_WL: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "abdomen": (40.0, 400.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
}


def load_window_presets() -> list[dict[str, Any]]:
    """Presets with label and PACS function key, from the shipped JSON (fallback: built-ins)."""
    try:
        from casebook.resources import PRESETS_DIR

        data = json.loads((PRESETS_DIR / "window_presets.json").read_text(encoding="utf-8"))
        return list(data["presets"])
    except (OSError, ValueError, KeyError) as exc:
        log.warning("window presets file unreadable (%s); using built-in presets", exc)
        return [{"name": k, "label": k.capitalize(), "center": c, "width": w} for k, (c, w) in _BUILTIN_WL.items()]


WL_PRESETS: dict[str, tuple[float, float]] = {
    p["name"]: (float(p["center"]), float(p["width"])) for p in load_window_presets() if "center" in p
} or dict(_BUILTIN_WL)


# --------------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------------
class EventEmitter:
    """A list of callbacks called synchronously with keyword arguments.

    Synchronous on purpose: a render adapter sees the new state before the gesture returns, and
    tests need no event loop. Exceptions in one callback are logged and do not stop the others.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._callbacks: list[Callable[..., Any]] = []
        self._blocked = 0

    def connect(self, callback: Callable[..., Any]) -> Callable[..., Any]:
        if callback not in self._callbacks:
            self._callbacks.append(callback)
        return callback

    def disconnect(self, callback: Callable[..., Any] | None = None) -> None:
        if callback is None:
            self._callbacks.clear()
        elif callback in self._callbacks:
            self._callbacks.remove(callback)

    def emit(self, **kwargs: Any) -> None:
        if self._blocked:
            return
        for cb in list(self._callbacks):
            try:
                cb(**kwargs)
            except Exception:  # noqa: BLE001 - one broken subscriber must not break the viewer
                log.exception("error in %s event handler %r", self.name, cb)

    @contextmanager
    def blocked(self) -> Iterator[None]:
        self._blocked += 1
        try:
            yield
        finally:
            self._blocked -= 1


class Events:
    """Named emitters: ``state.events.slice.connect(cb)``."""

    def __init__(self, *names: str) -> None:
        self._names = names
        for n in names:
            setattr(self, n, EventEmitter(n))

    def __iter__(self) -> Iterator[EventEmitter]:
        return (getattr(self, n) for n in self._names)


# --------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------
_LETTERS = (("R", "L"), ("A", "P"), ("I", "S"))


def orientation_label(vec: np.ndarray, threshold: float = 0.2) -> str:
    """Patient-direction letters for an LPS vector, strongest first (``(0.57, 0.82, 0)`` -> ``PL``)."""
    v = np.asarray(vec, dtype=np.float64)
    norm = float(np.linalg.norm(v))
    if norm == 0:
        return ""
    v = v / norm
    order = np.argsort(-np.abs(v))
    return "".join(_LETTERS[a][1 if v[a] > 0 else 0] for a in order if abs(v[a]) >= threshold)


class MprGeometry:
    """Axial/coronal/sagittal slices of a volume as numpy views, with their patient geometry.

    The canonical array ``canon[s, p, l]`` has its axes along the patient axes nearest to the
    acquisition axes, increasing towards Superior, Posterior and Left. Display conventions are
    radiological: axial and coronal show the patient's right on the screen's left, sagittal shows
    anterior on the left; superior is up.
    """

    def __init__(self, volume: Volume) -> None:
        self.volume = volume
        d = volume.direction  # columns: i, j, k
        # direction of voxel axis (0=k, 1=j, 2=i) in LPS
        vdirs = np.stack([d[:, 2], d[:, 1], d[:, 0]])
        vsp = np.array(volume.spacing, dtype=np.float64)  # (sk, sj, si)
        best, best_score = None, -1.0
        # canonical axis c (0=S, 1=P, 2=L) <- LPS component (2, 1, 0)
        for perm in itertools.permutations(range(3)):
            score = sum(abs(vdirs[perm[c]][2 - c]) for c in range(3))
            if score > best_score + 1e-9:
                best, best_score = perm, score
        assert best is not None
        self.perm: tuple[int, int, int] = tuple(best)  # type: ignore[assignment]
        self.flip: tuple[bool, bool, bool] = tuple(bool(vdirs[self.perm[c]][2 - c] < 0) for c in range(3))  # type: ignore[assignment]
        vox = volume.voxels
        arr = np.transpose(vox, self.perm + ((3,) if vox.ndim == 4 else ()))
        sl = tuple(slice(None, None, -1) if f else slice(None) for f in self.flip)
        self.canon: np.ndarray = arr[sl]
        self.shape: tuple[int, int, int] = tuple(int(n) for n in self.canon.shape[:3])  # type: ignore[assignment]
        self.spacing: tuple[float, float, float] = tuple(float(vsp[self.perm[c]]) for c in range(3))  # type: ignore[assignment]
        # LPS unit vector of each canonical axis (increasing index)
        self.axes_lps = np.stack([vdirs[self.perm[c]] * (-1.0 if self.flip[c] else 1.0) for c in range(3)])
        # affine canonical index (s, p, l) -> LPS
        a = np.eye(4)
        for c in range(3):
            a[:3, c] = self.axes_lps[c] * self.spacing[c]
        a[:3, 3] = self._canon_origin_lps()
        self.affine = a
        self._inv = np.linalg.inv(a)

    def _canon_origin_lps(self) -> np.ndarray:
        ijk = self._canon_to_ijk(np.zeros(3))
        return self.volume.index_to_lps(ijk)

    def _canon_to_ijk(self, c: np.ndarray) -> np.ndarray:
        vox_kji = np.zeros(3)
        vshape = self.volume.shape
        for ax in range(3):
            va = self.perm[ax]
            n = vshape[va]
            vox_kji[va] = (n - 1 - c[ax]) if self.flip[ax] else c[ax]
        return vox_kji[::-1].copy()  # (i, j, k)

    # -- coordinates ----------------------------------------------------------------------------
    def canon_to_lps(self, c: np.ndarray) -> np.ndarray:
        c = np.asarray(c, dtype=np.float64)
        return c @ self.affine[:3, :3].T + self.affine[:3, 3]

    def lps_to_canon(self, xyz: np.ndarray) -> np.ndarray:
        xyz = np.asarray(xyz, dtype=np.float64)
        return xyz @ self._inv[:3, :3].T + self._inv[:3, 3]

    @staticmethod
    def slice_axis(orientation: str) -> int:
        return ORIENTATIONS.index(orientation)

    def n_slices(self, orientation: str) -> int:
        return self.shape[self.slice_axis(orientation)]

    def center_canon(self) -> np.ndarray:
        return (np.array(self.shape, dtype=np.float64) - 1) / 2.0

    def slice_array(self, orientation: str, index: int) -> np.ndarray:
        """The displayed 2D image (rows down, columns right), a view when possible."""
        index = int(np.clip(index, 0, self.n_slices(orientation) - 1))
        if orientation == "axial":
            return self.canon[index]
        if orientation == "coronal":
            return self.canon[::-1, index, :]
        if orientation == "sagittal":
            return self.canon[::-1, :, index]
        raise ValueError(f"unknown orientation {orientation!r}")

    def pixel_spacing(self, orientation: str) -> tuple[float, float]:
        """(row_mm, col_mm) of the displayed image."""
        ss, sp, sl = self.spacing
        return {"axial": (sp, sl), "coronal": (ss, sl), "sagittal": (ss, sp)}[orientation]

    def image_shape(self, orientation: str) -> tuple[int, int]:
        s, p, l = self.shape
        return {"axial": (p, l), "coronal": (s, l), "sagittal": (s, p)}[orientation]

    def screen_vectors(self, orientation: str) -> tuple[np.ndarray, np.ndarray]:
        """LPS unit vectors pointing to the screen's right and down in this view."""
        s, p, l = self.axes_lps
        return {"axial": (l, p), "coronal": (l, -s), "sagittal": (p, -s)}[orientation]

    def markers(self, orientation: str) -> dict[str, str]:
        """Orientation letters at the left/right/top/bottom edges of the view."""
        right, down = self.screen_vectors(orientation)
        return {
            "right": orientation_label(right),
            "left": orientation_label(-right),
            "bottom": orientation_label(down),
            "top": orientation_label(-down),
        }

    def image_to_canon(self, orientation: str, index: float, row: float, col: float) -> np.ndarray:
        """(slice index, image row, image col) -> canonical continuous index (s, p, l)."""
        ns = self.shape[0]
        if orientation == "axial":
            return np.array([index, row, col], dtype=np.float64)
        if orientation == "coronal":
            return np.array([ns - 1 - row, index, col], dtype=np.float64)
        return np.array([ns - 1 - row, col, index], dtype=np.float64)

    def k_to_view(self, k: int) -> tuple[str, int]:
        """The view that shows stored slice ``k`` as a whole, and its slice index there."""
        c = self.perm.index(0)
        n = self.shape[c]
        k = int(np.clip(k, 0, n - 1))
        return ORIENTATIONS[c], (n - 1 - k) if self.flip[c] else k

    def canon_to_k(self, c: np.ndarray) -> int:
        """Stored slice index k (the loader's order) of a canonical point."""
        return int(round(float(self._canon_to_ijk(np.asarray(c, dtype=np.float64))[2])))

    def image_box_to_ijk_box(self, orientation: str, index: int, p0: tuple[float, float],
                             p1: tuple[float, float]) -> tuple[int, int, int, int, int, int]:
        """A box drawn on a view -> (k0, k1, j0, j1, i0, i1) voxel box (end-exclusive), one slice deep."""
        corners = [self._canon_to_ijk(self.image_to_canon(orientation, index, r, c))
                   for r in (p0[0], p1[0]) for c in (p0[1], p1[1])]
        a = np.array(corners)
        lo = np.floor(a.min(axis=0) + 0.5).astype(int)
        hi = np.floor(a.max(axis=0) + 0.5).astype(int) + 1
        nk, nj, ni = self.volume.shape
        lo = np.maximum(lo, 0)
        hi = np.minimum(hi, [ni, nj, nk])
        i0, j0, k0 = (int(x) for x in lo)
        i1, j1, k1 = (int(x) for x in hi)
        return k0, max(k1, k0 + 1), j0, max(j1, j0 + 1), i0, max(i1, i0 + 1)

    def canon_to_image(self, orientation: str, c: np.ndarray) -> tuple[float, float, float]:
        """Canonical index -> (slice index, image row, image col)."""
        s, p, l = (float(x) for x in c)
        ns = self.shape[0]
        if orientation == "axial":
            return s, p, l
        if orientation == "coronal":
            return p, ns - 1 - s, l
        return l, ns - 1 - s, p


# --------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------
@dataclass
class Measurement:
    """A distance or ellipse ROI drawn on one slice; points are image (row, col) in pixels."""

    kind: str  # "distance" | "ellipse" | "box"
    orientation: str
    slice_index: int
    p0: tuple[float, float]
    p1: tuple[float, float]
    values: dict[str, float] = field(default_factory=dict)
    unit: str = ""

    def label(self) -> str:
        v = self.values
        if self.kind == "distance":
            return f"{v.get('length_mm', 0.0):.1f} mm"
        if self.kind == "ellipse":
            u = f" {self.unit}" if self.unit else ""
            return (f"mean {v.get('mean', 0.0):.1f}{u}  SD {v.get('sd', 0.0):.1f}\n"
                    f"area {v.get('area_mm2', 0.0):.1f} mm²")
        return ""


def distance_mm(p0: tuple[float, float], p1: tuple[float, float], spacing: tuple[float, float]) -> float:
    dr = (p1[0] - p0[0]) * spacing[0]
    dc = (p1[1] - p0[1]) * spacing[1]
    return float(math.hypot(dr, dc))


def ellipse_stats(image: np.ndarray, p0: tuple[float, float], p1: tuple[float, float],
                  spacing: tuple[float, float]) -> dict[str, float]:
    """Mean/SD/min/max and area (mm²) of the pixels inside the ellipse inscribed in box p0-p1.

    Pixel centres inside the ellipse count; the area is the analytic ellipse area so that it
    does not jump by whole pixels while the reader drags.
    """
    r0, r1 = sorted((p0[0], p1[0]))
    c0, c1 = sorted((p0[1], p1[1]))
    cr, cc = (r0 + r1) / 2.0, (c0 + c1) / 2.0
    ar, ac = max((r1 - r0) / 2.0, 1e-6), max((c1 - c0) / 2.0, 1e-6)
    h, w = image.shape[:2]
    rs = slice(max(int(math.floor(r0)), 0), min(int(math.ceil(r1)) + 1, h))
    cs = slice(max(int(math.floor(c0)), 0), min(int(math.ceil(c1)) + 1, w))
    rr, cc_ = np.mgrid[rs, cs]
    inside = ((rr - cr) / ar) ** 2 + ((cc_ - cc) / ac) ** 2 <= 1.0
    vals = np.asarray(image[rs, cs], dtype=np.float64)[inside] if inside.size else np.empty(0)
    area = math.pi * ar * spacing[0] * ac * spacing[1]
    if vals.size == 0:
        return {"mean": float("nan"), "sd": float("nan"), "min": float("nan"), "max": float("nan"),
                "n": 0.0, "area_mm2": area}
    return {"mean": float(vals.mean()), "sd": float(vals.std(ddof=1)) if vals.size > 1 else 0.0,
            "min": float(vals.min()), "max": float(vals.max()), "n": float(vals.size), "area_mm2": area}


# --------------------------------------------------------------------------------------------
# The state
# --------------------------------------------------------------------------------------------
class ViewerState:
    """Everything one study viewer displays. All setters clamp, then emit only on change."""

    def __init__(self, volume: Volume | None = None) -> None:
        self.events = Events("volume", "slice", "crosshair", "window", "invert", "zoom", "pan",
                             "layout", "active_view", "measurements", "cine", "highlight", "overlay")
        self.geometry: MprGeometry | None = None
        self.volume: Volume | None = None
        self._crosshair_canon = np.zeros(3)
        self.window: tuple[float, float] = (40.0, 400.0)
        self.invert = False
        self.zoom: dict[str, float] = {o: 1.0 for o in ORIENTATIONS}
        self.pan: dict[str, tuple[float, float]] = {o: (0.0, 0.0) for o in ORIENTATIONS}
        self.layout = "2x2"
        self.active_view = "axial"
        self.measurements: list[Measurement] = []
        self.cine_playing = False
        self.cine_fps = 15.0
        self.highlight: dict[str, set[int]] = {o: set() for o in ORIENTATIONS}
        self.preset = "default"
        self.loading_fraction = 1.0
        if volume is not None:
            self.set_volume(volume)

    # -- volume -----------------------------------------------------------------------------
    def set_volume(self, volume: Volume, keep_view: bool = False) -> None:
        """Show a new volume; ``keep_view`` keeps slice/zoom/window (a progressive load refining)."""
        old = self.geometry
        self.volume = volume
        self.geometry = MprGeometry(volume)
        if keep_view and old is not None:
            lps = old.canon_to_lps(self._crosshair_canon)
            self._crosshair_canon = self._clamp(self.geometry.lps_to_canon(lps))
        else:
            self._crosshair_canon = np.round(self.geometry.center_canon())
            self.window = volume.default_window()
            self.preset = "default"
            self.zoom = {o: 1.0 for o in ORIENTATIONS}
            self.pan = {o: (0.0, 0.0) for o in ORIENTATIONS}
            self.measurements = []
            self.highlight = {o: set() for o in ORIENTATIONS}
        self.events.volume.emit(volume=volume, keep_view=keep_view)
        for o in ORIENTATIONS:
            self.events.slice.emit(orientation=o, index=self.slice_index(o))
        self.events.crosshair.emit(lps=self.crosshair_lps)
        if not keep_view:
            self.events.window.emit(center=self.window[0], width=self.window[1])

    def _clamp(self, c: np.ndarray) -> np.ndarray:
        assert self.geometry is not None
        hi = np.array(self.geometry.shape, dtype=np.float64) - 1
        return np.clip(np.asarray(c, dtype=np.float64), 0, hi)

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
        if new == self.slice_index(orientation) and float(self._crosshair_canon[ax]) == float(new):
            return new
        self._crosshair_canon[ax] = new
        self.events.slice.emit(orientation=orientation, index=new)
        self.events.crosshair.emit(lps=self.crosshair_lps)
        return new

    def scroll(self, orientation: str, delta: int) -> int:
        return self.set_slice(orientation, self.slice_index(orientation) + int(delta))

    def set_crosshair_canon(self, c: np.ndarray) -> None:
        if self.geometry is None:
            return
        new = self._clamp(c)
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
        width = max(float(width), 1.0)
        self.preset = preset or "custom"
        if (float(center), width) == self.window:
            return
        self.window = (float(center), width)
        self.events.window.emit(center=self.window[0], width=self.window[1])

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
        elif name in WL_PRESETS:
            c, w = WL_PRESETS[name]
            self.set_window(c, w, preset=name)
        else:
            raise ValueError(f"unknown window preset {name!r}")

    def set_invert(self, invert: bool) -> None:
        if bool(invert) != self.invert:
            self.invert = bool(invert)
            self.events.invert.emit(invert=self.invert)

    # -- zoom/pan/layout ------------------------------------------------------------------------
    def set_zoom(self, orientation: str, zoom: float) -> None:
        z = float(np.clip(zoom, 0.1, 40.0))
        if z != self.zoom[orientation]:
            self.zoom[orientation] = z
            self.events.zoom.emit(orientation=orientation, zoom=z)

    def set_pan(self, orientation: str, pan_mm: tuple[float, float]) -> None:
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
            raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
        if layout != self.layout:
            self.layout = layout
            self.events.layout.emit(layout=layout)

    def set_active_view(self, orientation: str) -> None:
        if orientation != self.active_view:
            self.active_view = orientation
            self.events.active_view.emit(orientation=orientation)

    # -- cine -----------------------------------------------------------------------------------
    def set_cine(self, playing: bool, fps: float | None = None) -> None:
        if fps is not None:
            self.cine_fps = float(np.clip(fps, 1.0, 60.0))
        self.cine_playing = bool(playing)
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
        if m.kind == "distance":
            m.values = {"length_mm": distance_mm(m.p0, m.p1, sp)}
        elif m.kind in ("ellipse", "box"):
            img = self.geometry.slice_array(m.orientation, m.slice_index)
            m.values = ellipse_stats(img, m.p0, m.p1, sp)
            m.unit = self._unit()
        return m

    def add_measurement(self, m: Measurement) -> Measurement:
        self.measure(m)
        self.measurements.append(m)
        self.events.measurements.emit(action="added", measurement=m)
        return m

    def update_measurement(self, m: Measurement) -> None:
        self.measure(m)
        self.events.measurements.emit(action="changed", measurement=m)

    def remove_measurement(self, m: Measurement) -> None:
        if m in self.measurements:
            self.measurements.remove(m)
            self.events.measurements.emit(action="removed", measurement=m)

    def clear_measurements(self) -> None:
        for m in list(self.measurements):
            self.remove_measurement(m)

    # -- similar-case highlights ----------------------------------------------------------------
    def set_highlight(self, orientation: str, slices: set[int]) -> None:
        self.highlight[orientation] = set(int(s) for s in slices)
        self.events.highlight.emit(orientation=orientation, slices=self.highlight[orientation])


class StateLink:
    """Links two viewer states: scroll (by slice delta), zoom, pan and window/level.

    Scrolling is linked by delta rather than position: an analogue from another patient has a
    different field of view, and the reader aligned the two on the matched slice when opening it.
    """

    def __init__(self, a: ViewerState, b: ViewerState, scroll: bool = True, zoom: bool = True,
                 window: bool = True) -> None:
        self.a, self.b = a, b
        self.enabled = True
        self._busy = False
        self._last = {id(a): {o: a.slice_index(o) for o in ORIENTATIONS},
                      id(b): {o: b.slice_index(o) for o in ORIENTATIONS}}
        self._handlers: list[tuple[EventEmitter, Callable[..., Any]]] = []
        for src, dst in ((a, b), (b, a)):
            if scroll:
                self._hook(src.events.slice, self._make_slice(src, dst))
            if zoom:
                self._hook(src.events.zoom, self._guard(lambda orientation, zoom, d=dst: d.set_zoom(orientation, zoom)))
                self._hook(src.events.pan, self._guard(lambda orientation, pan, d=dst: d.set_pan(orientation, pan)))
            if window:
                self._hook(src.events.window, self._guard(lambda center, width, d=dst: d.set_window(center, width)))
                self._hook(src.events.invert, self._guard(lambda invert, d=dst: d.set_invert(invert)))

    def _hook(self, emitter: EventEmitter, cb: Callable[..., Any]) -> None:
        emitter.connect(cb)
        self._handlers.append((emitter, cb))

    def _guard(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(**kw: Any) -> None:
            if self._busy or not self.enabled:
                return
            self._busy = True
            try:
                fn(**kw)
            finally:
                self._busy = False
        return wrapped

    def _make_slice(self, src: ViewerState, dst: ViewerState) -> Callable[..., Any]:
        def on_slice(orientation: str, index: int) -> None:
            last = self._last[id(src)]
            delta = index - last.get(orientation, index)
            last[orientation] = index
            if self._busy or not self.enabled or delta == 0:
                return
            self._busy = True
            try:
                dst.scroll(orientation, delta)
                self._last[id(dst)][orientation] = dst.slice_index(orientation)
            finally:
                self._busy = False
        return on_slice

    def resync(self) -> None:
        """Take the current slices as the new alignment (after a manual re-alignment)."""
        for s in (self.a, self.b):
            self._last[id(s)] = {o: s.slice_index(o) for o in ORIENTATIONS}

    def unlink(self) -> None:
        for emitter, cb in self._handlers:
            emitter.disconnect(cb)
        self._handlers.clear()


__all__ = ["EventEmitter", "Events", "MprGeometry", "Measurement", "ViewerState", "StateLink",
           "ORIENTATIONS", "LAYOUTS", "WL_PRESETS", "orientation_label", "ellipse_stats", "distance_mm"]
