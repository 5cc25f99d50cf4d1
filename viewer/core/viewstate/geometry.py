"""MPR geometry and orientation labels: every view is a plane in patient (LPS) space.

:class:`MprGeometry` defines a *display grid*: three orthogonal axes (towards Superior,
Posterior and Left, or those axes turned by the reader's oblique rotation), a spacing along each
and an extent that covers the volume. Axial/coronal/sagittal slices are planes of that grid.

- A straight acquisition (its voxel axes along the patient axes, even slice steps) has a display
  grid that *is* its voxel array re-ordered: slices are numpy views, nothing is resampled, and
  the stored image is shown pixel for pixel.
- An oblique acquisition, a gantry-tilted CT, or any series after the reader rotated the
  crosshair axes is *resliced*: each plane is sampled from the voxels through the real slice
  positions (uneven steps included) (:class:`~.reslice.VolumeSampler`), so a tilted head
  CT's "axial" is a true axial plane, not its tilted acquisition plane.

Orientation markers come from the display grid's true directions, so a rotated plane shows
combined letters (e.g. ``PL``) instead of a silently wrong single letter.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from ..dicom.volume import Volume
from .errors import ViewStateError
from .reslice import VolumeSampler

ORIENTATIONS: tuple[str, ...] = ("axial", "coronal", "sagittal")

_LETTERS = (("R", "L"), ("A", "P"), ("I", "S"))
# Patient unit vectors of the display axes before any rotation: canonical axis 0 = S, 1 = P, 2 = L.
_PATIENT_AXES = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
# A voxel axis further than this from its patient axis (sine of the angle, ~0.06 degrees: 0.2 mm
# across a 200 mm field) makes the series oblique: it is resliced, not shown along its array axes.
OBLIQUE_TOLERANCE = 1e-3
_SLICE_CACHE = 8  # resliced planes kept (the renderer and a measurement ask for the same one)


def orientation_label(vec: np.ndarray, threshold: float = 0.2) -> str:
    """Patient-direction letters for an LPS vector, strongest first (``(0.57, 0.82, 0)`` -> ``PL``)."""
    v = np.asarray(vec, dtype=np.float64)
    norm = float(np.linalg.norm(v))
    if norm == 0:
        return ""
    v = v / norm
    order = np.argsort(-np.abs(v))
    return "".join(_LETTERS[a][1 if v[a] > 0 else 0] for a in order if abs(v[a]) >= threshold)


def rotation_about(axis: np.ndarray, degrees: float) -> np.ndarray:
    """3x3 rotation by ``degrees`` about the LPS ``axis`` (right-hand rule)."""
    a = np.asarray(axis, dtype=np.float64)
    a = a / (np.linalg.norm(a) or 1.0)
    t = math.radians(float(degrees))
    k = np.array([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]])
    return np.eye(3) + math.sin(t) * k + (1.0 - math.cos(t)) * (k @ k)


def rotation_angle_deg(rotation: np.ndarray) -> float:
    """How far ``rotation`` turns, in degrees (0 for the identity)."""
    c = (float(np.trace(np.asarray(rotation, dtype=np.float64))) - 1.0) / 2.0
    return math.degrees(math.acos(min(1.0, max(-1.0, c))))


def check_rotation(rotation: np.ndarray) -> np.ndarray:
    """A proper 3x3 rotation (orthonormal, determinant +1), re-orthonormalised; else ViewStateError."""
    r = np.asarray(rotation, dtype=np.float64)
    if r.shape != (3, 3) or not np.all(np.isfinite(r)):
        raise ViewStateError(f"plane rotation must be a finite 3x3 matrix, got shape {r.shape}")
    if not np.allclose(r @ r.T, np.eye(3), atol=1e-4) or np.linalg.det(r) < 0:
        raise ViewStateError("plane rotation must be orthonormal with determinant +1 (a rotation, no mirror)")
    u, _, vt = np.linalg.svd(r)
    return u @ vt


def reslice_reason(volume: Volume) -> str | None:
    """Why the series' own voxel axes are not true patient planes (None: they are).

    Colour series, single images and series without patient geometry are always shown as stored.
    """
    if not can_reslice(volume):
        return None
    rep = volume.geometry
    if rep.gantry_tilt_deg > 0:
        return f"gantry tilt {rep.gantry_tilt_deg:.1f}°"
    # A straight stack with uneven steps (a missing slice) keeps its acquired slices in their own
    # plane (the reader reads those, not interpolations between them; the loader's warning says
    # so); turning its planes reslices it through the real positions like any other.
    d = volume.direction
    for c in range(3):
        u = d[:, c] / (np.linalg.norm(d[:, c]) or 1.0)
        off_axis = math.sqrt(max(0.0, 1.0 - float(np.max(np.abs(u))) ** 2))  # sine of the angle
        if off_axis > OBLIQUE_TOLERANCE:
            return "oblique acquisition"
    return None


def can_reslice(volume: Volume) -> bool:
    """A grey-scale stack of two or more slices with a known patient geometry."""
    return (not volume.is_color and volume.shape[0] >= 2 and volume.geometry.patient_geometry_known
            and volume.meta.get("series_slices", volume.shape[0]) >= 2)


class MprGeometry:
    """Axial/coronal/sagittal planes of a volume in patient space, with their patient geometry.

    The display grid ``canon[s, p, l]`` has its axes along ``axes_lps`` (Superior, Posterior,
    Left, turned by ``rotation``). Display conventions are radiological: axial and coronal show
    the patient's right on the screen's left, sagittal shows anterior on the left; superior is up.
    ``is_resliced`` says whether planes are sampled (oblique, tilted, uneven or rotated) or are
    views of the voxel array (``canon``, the array re-ordered to the nearest patient axes, which
    the 3D view uses either way, with ``canon_spacing``).
    """

    def __init__(self, volume: Volume, rotation: np.ndarray | None = None,
                 sampler: VolumeSampler | None = None) -> None:
        """``sampler``: the one of an earlier geometry of the same volume (a rotate drag rebuilds
        the grid on every pointer move; the sampler's tables stay valid)."""
        self.volume = volume
        self.rotation = np.eye(3) if rotation is None else check_rotation(rotation)
        rotated = not np.allclose(self.rotation, np.eye(3), atol=1e-9)
        if rotated and not can_reslice(volume):
            raise ViewStateError("only a grey-scale series of two or more slices with a patient geometry "
                                 "can be shown in oblique planes")
        d = volume.direction  # columns: i, j, k
        # direction of voxel axis (0=k, 1=j, 2=i) in LPS
        vdirs = np.stack([d[:, 2], d[:, 1], d[:, 0]])
        vsp = np.array(volume.spacing, dtype=np.float64)  # (sk, sj, si)
        self.perm, self.flip = self._nearest_axes(vdirs, _PATIENT_AXES)
        vox = volume.voxels
        arr = np.transpose(vox, self.perm + ((3,) if vox.ndim == 4 else ()))
        sl = tuple(slice(None, None, -1) if f else slice(None) for f in self.flip)
        self.canon: np.ndarray = arr[sl]
        self.canon_spacing: tuple[float, float, float] = tuple(float(vsp[self.perm[c]]) for c in range(3))  # type: ignore[assignment]
        self.reslice_reason: str | None = "oblique planes" if rotated else reslice_reason(volume)
        self.is_resliced = self.reslice_reason is not None
        if sampler is not None and sampler.volume is not volume:
            sampler = None
        self.sampler: VolumeSampler | None = (sampler or VolumeSampler(volume)) if self.is_resliced else None
        self._cache: dict[tuple[str, int], np.ndarray] = {}
        if self.sampler is None:
            self.shape: tuple[int, int, int] = tuple(int(n) for n in self.canon.shape[:3])  # type: ignore[assignment]
            self.spacing: tuple[float, float, float] = self.canon_spacing
            # LPS unit vector of each canonical axis (increasing index)
            self.axes_lps = np.stack([vdirs[self.perm[c]] * (-1.0 if self.flip[c] else 1.0) for c in range(3)])
            origin = volume.index_to_lps(self._array_canon_to_ijk(np.zeros(3)))
        else:
            origin = self._build_grid(self.sampler, vdirs, vsp)
        # affine canonical index (s, p, l) -> LPS
        a = np.eye(4)
        for c in range(3):
            a[:3, c] = self.axes_lps[c] * self.spacing[c]
        a[:3, 3] = origin
        self.affine = a
        self._inv = np.linalg.inv(a)

    @staticmethod
    def _nearest_axes(vdirs: np.ndarray, axes: np.ndarray) -> tuple[tuple[int, int, int], tuple[bool, bool, bool]]:
        """The voxel axis nearest to each display axis, and whether it runs the other way."""
        best, best_score = None, -1.0
        for perm in itertools.permutations(range(3)):
            score = sum(abs(float(vdirs[perm[c]] @ axes[c])) for c in range(3))
            if score > best_score + 1e-9:
                best, best_score = perm, score
        assert best is not None
        flip = tuple(bool(float(vdirs[best[c]] @ axes[c]) < 0) for c in range(3))
        return tuple(best), flip  # type: ignore[return-value]

    def _build_grid(self, sampler: VolumeSampler, vdirs: np.ndarray, vsp: np.ndarray) -> np.ndarray:
        """Axes, spacing and extent of the resliced grid; returns its origin (LPS of node 0,0,0).

        Each display axis keeps the resolution of the voxel axis nearest to it (the slice step
        measured along the slice normal for the stacking axis), never finer than the finest voxel
        spacing. The grid covers the volume's bounding box along its own axes and has a node on the
        volume's centre, so the same rotation always gives the same planes.
        """
        axes = self.rotation @ _PATIENT_AXES.T  # columns: rotated S, P, L
        self.axes_lps = axes.T.copy()
        stack_dirs = np.stack([sampler.normal, vdirs[1], vdirs[2]])
        perm, _ = self._nearest_axes(stack_dirs, self.axes_lps)
        steps = (sampler.slice_step, float(vsp[1]), float(vsp[2]))
        finest = min(steps)
        self.spacing = tuple(max(float(steps[perm[c]]), finest) for c in range(3))  # type: ignore[assignment]
        ni, nj, nk = sampler.ni, sampler.nj, sampler.nk
        corners = np.array([[i, j, k] for i in (0, ni - 1) for j in (0, nj - 1) for k in (0, nk - 1)], dtype=np.float64)
        pts = sampler.ijk_to_lps(corners)
        anchor = sampler.ijk_to_lps(np.array([(ni - 1) / 2.0, (nj - 1) / 2.0, (nk - 1) / 2.0]))
        shape, origin = [], anchor.copy()
        for c in range(3):
            t = (pts - anchor) @ self.axes_lps[c] / self.spacing[c]
            lo = math.ceil(float(t.min()) - 1e-3)
            hi = math.floor(float(t.max()) + 1e-3)
            shape.append(max(hi - lo + 1, 1))
            origin = origin + lo * self.spacing[c] * self.axes_lps[c]
        self.shape = tuple(shape)  # type: ignore[assignment]
        return origin

    def _array_canon_to_ijk(self, c: np.ndarray) -> np.ndarray:
        vox_kji = np.zeros(3)
        vshape = self.volume.shape
        for ax in range(3):
            va = self.perm[ax]
            n = vshape[va]
            vox_kji[va] = (n - 1 - c[ax]) if self.flip[ax] else c[ax]
        return vox_kji[::-1].copy()  # (i, j, k)

    def _canon_to_ijk(self, c: np.ndarray) -> np.ndarray:
        """Display-grid point -> continuous voxel index (i, j, k) of the stored volume."""
        if self.sampler is None:
            return self._array_canon_to_ijk(np.asarray(c, dtype=np.float64))
        return self.sampler.lps_to_ijk(self.canon_to_lps(c))

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
        """The displayed 2D image (rows down, columns right): a view of the voxels, or the plane
        resampled from them (float32) when the series is resliced."""
        index = int(np.clip(index, 0, self.n_slices(orientation) - 1))
        if self.sampler is not None:
            key = (orientation, index)
            hit = self._cache.get(key)
            if hit is None:
                hit = self.sampler.sample_plane(*self.plane_frame(orientation, index))
                if len(self._cache) >= _SLICE_CACHE:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[key] = hit
            return hit
        if orientation == "axial":
            return self.canon[index]
        if orientation == "coronal":
            return self.canon[::-1, index, :]
        if orientation == "sagittal":
            return self.canon[::-1, :, index]
        raise ViewStateError(f"unknown orientation {orientation!r}")

    def plane_frame(self, orientation: str, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
        """(origin, row step, column step, rows, cols) of a displayed plane in LPS mm: pixel
        (r, c) lies at ``origin + r * row_step + c * col_step``."""
        rows, cols = self.image_shape(orientation)
        o = self.canon_to_lps(self.image_to_canon(orientation, index, 0.0, 0.0))
        r = self.canon_to_lps(self.image_to_canon(orientation, index, 1.0, 0.0)) - o
        c = self.canon_to_lps(self.image_to_canon(orientation, index, 0.0, 1.0)) - o
        return o, r, c, rows, cols

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

    def plane_normal(self, orientation: str) -> np.ndarray:
        """LPS unit normal of a view's planes, the direction its slice index increases."""
        return self.axes_lps[self.slice_axis(orientation)].copy()

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
        """The view nearest to showing stored slice ``k`` as a whole, and its slice index there."""
        if self.sampler is None:
            c = self.perm.index(0)
            n = self.shape[c]
            k = int(np.clip(k, 0, n - 1))
            return ORIENTATIONS[c], (n - 1 - k) if self.flip[c] else k
        s = self.sampler
        c = int(np.argmax(np.abs(self.axes_lps @ s.normal)))
        k = int(np.clip(k, 0, s.nk - 1))
        centre = s.ijk_to_lps(np.array([(s.ni - 1) / 2.0, (s.nj - 1) / 2.0, float(k)]))
        idx = int(np.clip(round(float(self.lps_to_canon(centre)[c])), 0, self.shape[c] - 1))
        return ORIENTATIONS[c], idx

    def canon_to_k(self, c: np.ndarray) -> int:
        """Stored slice index k (the loader's order) of a canonical point."""
        k = int(round(float(self._canon_to_ijk(np.asarray(c, dtype=np.float64))[2])))
        return int(np.clip(k, 0, self.volume.shape[0] - 1)) if self.sampler is not None else k

    def image_box_to_ijk_box(self, orientation: str, index: int, p0: tuple[float, float],
                             p1: tuple[float, float]) -> tuple[int, int, int, int, int, int]:
        """A box drawn on a view -> (k0, k1, j0, j1, i0, i1) voxel box (end-exclusive), one slice deep.

        On a resliced plane (a tilted or oblique series) the box crosses several stored slices:
        it is the stored slice through the box's centre, cut to the box's footprint there.
        """
        corners = [self._canon_to_ijk(self.image_to_canon(orientation, index, r, c))
                   for r in (p0[0], p1[0]) for c in (p0[1], p1[1])]
        a = np.array(corners)
        lo = np.floor(a.min(axis=0) + 0.5).astype(int)
        hi = np.floor(a.max(axis=0) + 0.5).astype(int) + 1
        nk, nj, ni = self.volume.shape
        if self.sampler is not None:
            mid = self._canon_to_ijk(self.image_to_canon(orientation, index, (p0[0] + p1[0]) / 2.0,
                                                         (p0[1] + p1[1]) / 2.0))
            k = int(np.clip(round(float(mid[2])), 0, nk - 1))
            lo[2], hi[2] = k, k + 1
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


__all__ = ["OBLIQUE_TOLERANCE", "ORIENTATIONS", "MprGeometry", "can_reslice", "check_rotation",
           "orientation_label", "reslice_reason", "rotation_about", "rotation_angle_deg"]
