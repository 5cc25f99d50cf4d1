"""Slice geometry of a stack: order along the normal, spacing, origin, direction, and a report of
what is odd about it (gaps, non-uniform steps, gantry tilt, missing positions)."""
from __future__ import annotations

import math

import numpy as np

from ..errors import SeriesGeometryError
from .stack import InstanceHeader, SeriesStack, slice_order
from .volume import GeometryReport

_TILT_EPS_DEG = 0.01
_SPACING_TOL = 0.01  # relative difference of slice steps still counted as uniform


def _geometry(headers: list[InstanceHeader], stack: SeriesStack) -> tuple[list[int], tuple[float, float, float],
                                                                          tuple[float, float, float], np.ndarray,
                                                                          GeometryReport, np.ndarray | None]:
    """Sort slices along the normal and derive spacing/origin/direction; report oddities."""
    rep = GeometryReport()
    h0 = headers[0]
    ps = h0.pixel_spacing
    if ps is None:
        rep.warnings.append("no pixel spacing in the header: 1 mm assumed")
        rep.pixel_spacing_known = False
        sj, si = 1.0, 1.0
    else:
        sj, si = float(ps[0]), float(ps[1])
    n = len(headers)
    have_geo = all(h.position is not None and h.orientation is not None for h in headers)
    order = slice_order(headers)
    if not have_geo:
        rep.patient_geometry_known = False
        sk = float(h0.spacing_between_slices or h0.slice_thickness or 1.0)
        if n > 1:
            rep.warnings.append("slices have no position/orientation: stacked in instance order, "
                                f"{sk:g} mm apart (patient geometry unknown)")
        else:
            rep.warnings.append("no position/orientation in the header: patient geometry unknown")
        direction = np.eye(3)
        if h0.orientation is not None:
            r = np.asarray(h0.orientation[:3]); c = np.asarray(h0.orientation[3:])
            direction = np.column_stack([r, c, np.cross(r, c)])
        origin = tuple(float(x) for x in (h0.position or (0.0, 0.0, 0.0)))
        return order, (sk, sj, si), origin, direction, rep, None  # type: ignore[return-value]
    o = np.asarray(h0.orientation, dtype=np.float64)
    row, col = o[:3], o[3:]
    row = row / (np.linalg.norm(row) or 1.0)
    col = col / (np.linalg.norm(col) or 1.0)
    normal = np.cross(row, col)
    pos = np.array([h.position for h in headers], dtype=np.float64)
    d = pos @ normal
    pos = pos[order]
    d = d[order]
    if n == 1:
        sk = float(h0.spacing_between_slices or h0.slice_thickness or 1.0)
        return order, (sk, sj, si), tuple(pos[0]), np.column_stack([row, col, normal]), rep, pos  # type: ignore[return-value]
    steps = np.diff(d)
    if np.any(steps < 1e-4):
        raise SeriesGeometryError(stack.key, "two slices share the same position; the stack mixes volumes")
    span = pos[-1] - pos[0]
    along = float(np.linalg.norm(span))
    kdir = span / along
    tilt = math.degrees(math.acos(min(1.0, abs(float(kdir @ normal)))))
    med = float(np.median(steps))
    smin, smax = float(steps.min()), float(steps.max())
    rep.spacing_min, rep.spacing_max = smin, smax
    if smax - smin > max(_SPACING_TOL * med, 1e-3):
        rep.uniform_spacing = False
        # A missing slice shows as a step that is a whole multiple of the usual (smallest) step.
        ratios = steps / smin
        missing = int(sum(max(0, round(r) - 1) for r in ratios if abs(r - round(r)) < 0.05))
        rep.missing_slices = missing
        if missing:
            rep.warnings.append(f"{missing} slice(s) missing: gaps of {smax:.3g} mm in {med:.3g} mm steps")
        rep.warnings.append(f"non-uniform slice spacing {smin:.3g}-{smax:.3g} mm (median {med:.3g} mm)")
    if tilt > _TILT_EPS_DEG:
        rep.gantry_tilt_deg = tilt
        rep.warnings.append(f"gantry tilt {tilt:.2f} degrees: stored slices kept as acquired; the viewer reslices them into true patient planes")
        sk = along / (n - 1)
        direction = np.column_stack([row, col, kdir])
    else:
        # Slice step measured along the normal; affine stays orthonormal.
        sk = float((d[-1] - d[0]) / (n - 1))
        direction = np.column_stack([row, col, normal])
    if rep.uniform_spacing is False:
        sk = med if tilt <= _TILT_EPS_DEG else sk
    return order, (sk, sj, si), tuple(float(x) for x in pos[0]), direction, rep, pos  # type: ignore[return-value]

