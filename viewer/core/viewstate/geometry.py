"""MPR geometry and orientation labels: which array slice is which patient plane.

:class:`MprGeometry` re-orders a :class:`Volume` to the patient axes nearest to its acquisition
axes (a cheap numpy view, no resampling) so that axial/coronal/sagittal slices are plain array
slices. Orientation markers come from the *true* direction cosines, so an oblique acquisition
shows combined letters (e.g. ``PL``) instead of a silently wrong single letter.
"""
from __future__ import annotations

import itertools

import numpy as np

from ..dicom.volume import Volume
from .errors import ViewStateError

ORIENTATIONS: tuple[str, ...] = ("axial", "coronal", "sagittal")

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
        """Canonical axis (0=S, 1=P, 2=L) that an orientation's slices step along."""
        try:
            return ORIENTATIONS.index(orientation)
        except ValueError:
            raise ViewStateError(f"unknown orientation {orientation!r}; expected one of {ORIENTATIONS}") from None

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
        raise ViewStateError(f"unknown orientation {orientation!r}")

    def pixel_spacing(self, orientation: str) -> tuple[float, float]:
        """(row_mm, col_mm) of the displayed image."""
        ss, sp, sl = self.spacing
        return {"axial": (sp, sl), "coronal": (ss, sl), "sagittal": (ss, sp)}[orientation]

    def image_shape(self, orientation: str) -> tuple[int, int]:
        s, p, l = self.shape
        return {"axial": (p, l), "coronal": (s, l), "sagittal": (s, p)}[orientation]

    def extent_mm(self, orientation: str) -> tuple[float, float]:
        """(width, height) of the displayed image in mm."""
        rows, cols = self.image_shape(orientation)
        row_mm, col_mm = self.pixel_spacing(orientation)
        return cols * col_mm, rows * row_mm

    def fit_half_height_mm(self, orientation: str, view_w: float, view_h: float) -> float:
        """Half the view height in mm that shows the whole image in a ``view_w`` x ``view_h`` view
        (zoom 1: the camera's parallel scale), with a 2% margin."""
        w_mm, h_mm = self.extent_mm(orientation)
        aspect = view_h / view_w if view_w > 0 and view_h > 0 else 1.0
        return max(h_mm / 2.0, w_mm / 2.0 * aspect) * 1.02

    def slice_position_mm(self, orientation: str, canon: np.ndarray) -> float:
        """Where the slice through ``canon`` lies along its normal, in patient mm (LPS projected)."""
        ax = self.slice_axis(orientation)
        return float(self.canon_to_lps(canon) @ self.axes_lps[ax])

    def index_at_position(self, orientation: str, position_mm: float, canon: np.ndarray) -> int:
        """The slice of ``orientation`` nearest to ``position_mm`` along its normal (clamped)."""
        ax = self.slice_axis(orientation)
        c0 = np.array(canon, dtype=np.float64)
        c0[ax] = 0.0
        step = self.spacing[ax] * float(self.axes_lps[ax] @ self.axes_lps[ax])
        k = (position_mm - self.slice_position_mm(orientation, c0)) / (step or 1.0)
        return int(np.clip(round(k), 0, self.shape[ax] - 1))

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



__all__ = ["ORIENTATIONS", "MprGeometry", "orientation_label"]
