"""Open a view on one finding: the slice through it, centred and enlarged, with a box around it.

Why: a region-level analogue is similar *because of* one finding (issue 11, "why similar"); an
analogue opened as a frame around the whole image leaves the reader to hunt for it. The box is
an ordinary box measurement of the state, so it is drawn, listed and removable like the reader's own.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from .measurements import Measurement

if TYPE_CHECKING:  # the state imports nothing from here
    from .state import ViewerState


def region_corners_lps(volume, box: Sequence[int]) -> np.ndarray:
    """The 8 corners (LPS mm) of a voxel box (k0, k1, j0, j1, i0, i1, end-exclusive): voxel centres
    at the box's first and last index on each axis."""
    k0, k1, j0, j1, i0, i1 = (int(v) for v in box)
    ijk = np.array([[i, j, k] for k in (k0, max(k1 - 1, k0)) for j in (j0, max(j1 - 1, j0))
                    for i in (i0, max(i1 - 1, i0))], dtype=np.float64)
    return volume.index_to_lps(ijk)


def focus_on_region(state: "ViewerState", box: Sequence[int], *, orientation: str | None = None,
                    zoom: float = 2.0, margin_px: float = 2.0) -> Measurement | None:
    """Show the finding in ``box`` (voxels of ``state.volume``): crosshair at its centre, the view
    of ``orientation`` (default: the one showing stored slices whole) on its slice, zoomed and
    panned so it sits in the middle, and a box measurement around it. Returns the box drawn."""
    g, vol = state.geometry, state.volume
    if g is None or vol is None:
        return None
    corners = region_corners_lps(vol, box)
    centre = corners.mean(axis=0)
    state.set_crosshair_lps(centre)
    if orientation is None:
        orientation = g.k_to_view(int((int(box[0]) + int(box[1]) - 1) // 2))[0]
    index = state.slice_index(orientation)
    rc = np.array([g.canon_to_image(orientation, g.lps_to_canon(p))[1:] for p in corners])  # (row, col)
    lo, hi = rc.min(axis=0) - margin_px, rc.max(axis=0) + margin_px
    row_mm, col_mm = g.pixel_spacing(orientation)
    w_mm, h_mm = g.extent_mm(orientation)
    r_c, c_c = (lo + hi) / 2.0
    # the adapter's camera looks at the image centre minus the pan (mm, screen right/down)
    state.set_pan(orientation, ((w_mm - col_mm) / 2.0 - c_c * col_mm, (h_mm - row_mm) / 2.0 - r_c * row_mm))
    state.set_zoom(orientation, max(float(zoom), state.zoom[orientation]))
    m = Measurement("box", orientation, index, (float(lo[0]), float(lo[1])), (float(hi[0]), float(hi[1])))
    return state.add_measurement(m)


__all__ = ["focus_on_region", "region_corners_lps"]
