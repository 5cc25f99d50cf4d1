"""The comparison views of a registered pair, and interval change of a measurement.

Fade, checkerboard and subtraction are volumes on the *current* series' grid (the prior
resampled through the registration), so they show in an ordinary view linked to the current one
slice for slice. The subtraction (current − registered prior) gets its own window, centred on
zero: a grey field where nothing changed, bright where the current is denser.

A measurement drawn on one study is copied to the same anatomy on the other through the
transform (the ends of a distance; the centre of an ellipse, keeping its size in mm), so the
reader only adjusts it; :func:`interval_change` then says how it changed, in mm and percent and
in ROI mean (HU on CT), the way the report sentence is written.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from casebook.common.errors import CasebookError

from ..dicom.volume import Volume
from ..viewstate import ViewerState
from ..viewstate.measurements import Measurement
from .priors import interval_text
from .registration import affine_from_matrix, read_deformable, to_sitk

MODES = ("prior", "fade", "checkerboard", "subtraction")


class CompareError(CasebookError):
    """A comparison view or a copied measurement cannot be made (the message says why)."""


def resample_prior(current: Volume, prior: Volume, matrix: np.ndarray, deformable: str = "") -> Volume:
    """The prior on the current grid: voxel (k, j, i) of the result is the prior at ``matrix`` applied
    to the current's LPS point there (plus the B-spline when given). Outside the prior: its minimum."""
    import SimpleITK as sitk

    if current.is_color or prior.is_color:
        raise CompareError("fade, checkerboard and subtraction need greyscale series")
    fixed, moving = to_sitk(current), to_sitk(prior)
    tx: Any = affine_from_matrix(matrix)
    if deformable:
        comp = sitk.CompositeTransform(3)
        comp.AddTransform(tx)
        comp.AddTransform(read_deformable(deformable))
        tx = comp
    out = sitk.Resample(moving, fixed, tx, sitk.sitkLinear, float(prior.value_range[0]), sitk.sitkFloat32)
    vox = sitk.GetArrayFromImage(out)
    return replace(current, voxels=vox, description=f"{prior.description} (registered)", window=prior.window,
                   meta={**current.meta, "derived": "registered prior"}, geometry=replace(current.geometry))


def fade(current: Volume, registered: Volume, alpha: float) -> Volume:
    """(1 − alpha) · current + alpha · registered prior, in the current's units and window."""
    a = float(np.clip(alpha, 0.0, 1.0))
    vox = (1.0 - a) * current.voxels.astype(np.float32) + a * registered.voxels.astype(np.float32)
    return _derived(current, vox, f"fade {round(a * 100)}% prior", current.window or current.default_window())


def checkerboard(current: Volume, registered: Volume, squares: int = 8) -> Volume:
    """Alternating squares of current and registered prior (edges that jump show misalignment)."""
    nk, nj, ni = current.shape
    n = max(int(squares), 2)
    jj = (np.arange(nj) * n // max(nj, 1))[:, None]
    ii = (np.arange(ni) * n // max(ni, 1))[None, :]
    board2d = ((jj + ii) % 2).astype(bool)
    kk = (np.arange(nk) * n // max(nk, 1)) % 2
    board = board2d[None, :, :] ^ kk[:, None, None].astype(bool)
    vox = np.where(board, registered.voxels.astype(np.float32), current.voxels.astype(np.float32))
    return _derived(current, vox, f"checkerboard {n}×{n}", current.window or current.default_window())


def subtraction(current: Volume, registered: Volume) -> Volume:
    """current − registered prior, with its own window centred on zero (99th percentile of |difference|)."""
    vox = current.voxels.astype(np.float32) - registered.voxels.astype(np.float32)
    sample = np.abs(vox[:: max(1, vox.shape[0] // 16)])
    width = float(max(2.0 * np.percentile(sample, 99.0), 1.0))
    return _derived(current, vox, "subtraction (current − prior)", (0.0, width))


def _derived(current: Volume, vox: np.ndarray, what: str, window: tuple[float, float]) -> Volume:
    return replace(current, voxels=vox, description=f"{current.description} — {what}".strip(" —"),
                   window=window, meta={**current.meta, "derived": what},
                   geometry=replace(current.geometry, warnings=list(current.geometry.warnings)))


def compare_volume(mode: str, current: Volume, registered: Volume, *, alpha: float = 0.5,
                   squares: int = 8) -> Volume:
    """The volume the compare pane shows for ``mode`` (see :data:`MODES`; "prior" is not derived)."""
    if mode == "fade":
        return fade(current, registered, alpha)
    if mode == "checkerboard":
        return checkerboard(current, registered, squares)
    if mode == "subtraction":
        return subtraction(current, registered)
    raise CompareError(f"compare mode must be one of {', '.join(MODES[1:])}, not {mode!r}")


# ------------------------------------------------------------------------------------------------
# measurements across the pair


def _to_lps(state: ViewerState, orientation: str, index: float, row: float, col: float) -> np.ndarray:
    g = state.geometry
    assert g is not None
    return g.canon_to_lps(g.image_to_canon(orientation, index, row, col))


def _to_image(state: ViewerState, orientation: str, lps: np.ndarray) -> tuple[float, float, float]:
    g = state.geometry
    assert g is not None
    return g.canon_to_image(orientation, g.lps_to_canon(lps))


def _apply(m: np.ndarray, p: np.ndarray) -> np.ndarray:
    return m[:3, :3] @ p + m[:3, 3]


def map_measurement(m: Measurement, src: ViewerState, dst: ViewerState, src_to_dst: np.ndarray) -> Measurement:
    """The same measurement at the same anatomy on ``dst`` (not added; values measured there).

    A distance keeps its end points' anatomy; an ellipse or box keeps its centre's anatomy and its
    size in mm (its edges are what the reader adjusts to the lesion's new outline).
    """
    if src.geometry is None or dst.geometry is None:
        raise CompareError("both studies must be open to copy a measurement")
    mat = np.asarray(src_to_dst, dtype=np.float64)
    o = m.orientation
    if m.kind == "distance":
        pts = [_to_image(dst, o, _apply(mat, _to_lps(src, o, m.slice_index, *p))) for p in (m.p0, m.p1)]
        index = int(round((pts[0][0] + pts[1][0]) / 2.0))
        p0, p1 = (pts[0][1], pts[0][2]), (pts[1][1], pts[1][2])
    else:
        cr, cc = (m.p0[0] + m.p1[0]) / 2.0, (m.p0[1] + m.p1[1]) / 2.0
        k, r, c = _to_image(dst, o, _apply(mat, _to_lps(src, o, m.slice_index, cr, cc)))
        index = int(round(k))
        s_sp, d_sp = src.geometry.pixel_spacing(o), dst.geometry.pixel_spacing(o)
        hr = abs(m.p1[0] - m.p0[0]) / 2.0 * s_sp[0] / d_sp[0]
        hc = abs(m.p1[1] - m.p0[1]) / 2.0 * s_sp[1] / d_sp[1]
        p0, p1 = (r - hr, c - hc), (r + hr, c + hc)
    n = dst.n_slices(o)
    if not 0 <= index < n:
        raise CompareError(f"that place is outside the other study's {o} slices (slice {index} of {n}): "
                           "nothing to copy onto")
    out = Measurement(kind=m.kind, orientation=o, slice_index=index, p0=(float(p0[0]), float(p0[1])),
                      p1=(float(p1[0]), float(p1[1])))
    return dst.measure(out)


def copy_measurement(m: Measurement, src: ViewerState, dst: ViewerState, src_to_dst: np.ndarray) -> Measurement:
    """Copy onto ``dst`` (added, selected, its slice shown) for the reader to adjust."""
    out = dst.add_measurement(map_measurement(m, src, dst, src_to_dst))
    dst.go_to_measurement(out)
    return out


@dataclass
class IntervalChange:
    """How one finding changed between the prior and the current study."""

    kind: str
    before: float  # mm (distance) or ROI mean (ellipse)
    after: float
    unit: str
    days: int | None
    area_before_mm2: float | None = None
    area_after_mm2: float | None = None

    @property
    def delta(self) -> float:
        return self.after - self.before

    @property
    def percent(self) -> float | None:
        return None if abs(self.before) < 1e-9 else 100.0 * self.delta / abs(self.before)

    def sentence(self) -> str:
        """The sentence of the report: "grown from 8.0 to 11.0 mm (+3.0 mm, +38%) in 1 year"."""
        when = "" if self.days is None else f" over {interval_text(self.days).replace(' before', '')}"
        if self.kind == "distance":
            verb = "grown" if self.delta > 0.05 else ("decreased" if self.delta < -0.05 else "unchanged at")
            pct = "" if self.percent is None else f", {self.percent:+.0f}%"
            if verb == "unchanged at":
                return f"unchanged at {self.after:.1f} {self.unit}{when}"
            return (f"{verb} from {self.before:.1f} to {self.after:.1f} {self.unit} "
                    f"({self.delta:+.1f} {self.unit}{pct}){when}")
        u = f" {self.unit}" if self.unit else ""
        area = ""
        if self.area_before_mm2 is not None and self.area_after_mm2 is not None and self.area_before_mm2 > 0:
            area = (f"; area {self.area_before_mm2:.0f} → {self.area_after_mm2:.0f} mm² "
                    f"({100.0 * (self.area_after_mm2 - self.area_before_mm2) / self.area_before_mm2:+.0f}%)")
        return f"ROI mean {self.before:.1f}{u} → {self.after:.1f}{u} ({self.delta:+.1f}{u}){area}{when}"


def interval_change(prior_m: Measurement, current_m: Measurement, days: int | None = None) -> IntervalChange:
    """The change from the prior's measurement to the current's (same kind)."""
    if prior_m.kind != current_m.kind:
        raise CompareError(f"cannot compare a {prior_m.kind} with a {current_m.kind}")
    if prior_m.kind == "distance":
        return IntervalChange("distance", prior_m.values.get("length_mm", 0.0), current_m.values.get("length_mm", 0.0),
                              current_m.length_unit, days)
    return IntervalChange(prior_m.kind, prior_m.values.get("mean", 0.0), current_m.values.get("mean", 0.0),
                          current_m.unit, days, prior_m.values.get("area_mm2"), current_m.values.get("area_mm2"))


__all__ = ["MODES", "CompareError", "IntervalChange", "checkerboard", "compare_volume", "copy_measurement", "fade",
           "interval_change", "map_measurement", "resample_prior", "subtraction"]
