"""Candidate findings of an image: blobs that differ from their local context, segmented.

Why: a reader's box is drawn around a *finding* (a nodule, a metastasis, a cyst), and an analogue
is useful when it shows the same kind of finding, not the same body outline. So each series is
reduced, once at embed time, to a few dozen candidate findings: places that differ from their
surroundings at some physical scale (2.6-26 mm radius), each segmented and described
(:mod:`.describe`). A box query goes through exactly the same steps restricted to the box, so the
query region and the stored regions are made alike by construction.

How, briefly (numpy + SimpleITK, no learned weights):

1. The image is mapped to a *family intensity*: Hounsfield units for CT, per-mille of the
   series' median tissue signal for MR and every other modality (their units are arbitrary), and
   resampled to an isotropic grid (2 mm, coarser for very large volumes) so that sizes and shapes
   are in mm and the same lesion looks alike in axial, coronal and sagittal series.
2. Scale-normalised Laplacian-of-Gaussian responses at six scales; candidates are the extrema in
   space and scale whose response stands out from the image's own noise (median absolute
   deviation) and from a fixed floor per family.
3. Each candidate is segmented by a two-sided band around its core value (the region closer to
   the core than to the context median, without running past the core), kept to the connected
   part that holds the centre, holes filled (cavities, necrosis), and rejected when it is really
   a piece of a larger structure (it leaks out of its search sphere) or too faint.

Blobs of normal anatomy are found too; they are kept (a box may be drawn on them, and they tell
the search what is common), and the descriptor separates them from lesions.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from ..errors import PreprocessError
from ..preprocess import ImageInput

log = logging.getLogger(__name__)

# modality -> family: regions are only ever compared within one family
_FAMILIES = {
    "CT": "CT",
    "MR": "MR",
    **{m: "XR" for m in ("CR", "DX", "MG", "RF", "XA", "RG", "IO", "PX", "DR")},
    **{m: "NM" for m in ("NM", "PT")},
    "US": "US",
}

GRID_MM = 2.0  # isotropic detection grid
MAX_GRID_VOXELS = 9_000_000  # a bigger volume gets a coarser grid (time and memory bound)
SCALES_MM = (1.5, 2.5, 4.0, 6.0, 9.0, 14.0)  # LoG sigmas; blob radius ~ sigma * sqrt(3)
_SQRT3 = math.sqrt(3.0)
RING_SHARE = 0.8  # share of the ring (14 directions) a blob must differ from


def modality_family(modality: str) -> str:
    """The family a modality's regions are compared within (CT with CT, MR with MR, ...)."""
    return _FAMILIES.get((modality or "").upper().strip(), "OT")


@dataclass
class PreparedImage:
    """An image on the isotropic detection grid, in family intensity units.

    ``values`` is (z, y, x) on a grid of ``grid_mm``; ``scale`` maps a grid index (z, y, x) to a
    continuous index of the original image (k, j, i) by multiplication, ``offset`` is added after
    (a crop's corner in the original image).
    """

    values: np.ndarray
    grid_mm: float
    family: str
    reference: float  # the family unit: 1 HU for CT, median tissue signal / 1000 otherwise
    scale: np.ndarray  # (3,) original-index per grid-index
    offset: np.ndarray  # (3,) original index of grid voxel 0
    original_shape: tuple[int, int, int]
    noise: float  # robust noise of the values (family units)

    def to_original(self, zyx: np.ndarray) -> np.ndarray:
        """Grid indices (..., 3) -> continuous original indices (k, j, i)."""
        return np.asarray(zyx, np.float64) * self.scale + self.offset


@dataclass
class Candidate:
    """A segmented blob on the detection grid (before description)."""

    centre: np.ndarray  # (3,) grid index (z, y, x), float
    sigma_mm: float
    polarity: int  # +1 brighter than its context, -1 darker
    response: float  # |scale-normalised LoG| (family units)
    core: float  # median value at the centre
    context: float  # median value of the surrounding shell
    crop: tuple[slice, slice, slice]  # grid crop the mask lives in
    mask: np.ndarray  # bool, shape of the crop
    filled: int  # voxels added by hole filling (cavity, necrosis)
    spread: float = 0.0  # robust spread (MAD) of the context shell
    #: how far the blob's very centre falls back from its wall towards the context: 0 solid, 1 a
    #: hole (a cavity, necrosis); 0 where it was not measured (a box taken as a whole)
    hollow: float = 0.0
    #: the wall's value (90th percentile within the blob radius on the side of its polarity; nan = not
    #: measured): what a hole enclosed in the slice plane is compared with (:func:`in_plane_hollow`)
    wall: float = float("nan")

    def saliency(self, noise: float) -> float:
        """How much the blob stands out from its context, in units of the context's own variation."""
        return abs(self.core - self.context) / (self.spread + 2.0 * noise)

    @property
    def contrast(self) -> float:
        return self.core - self.context

    @property
    def voxels(self) -> int:
        return int(self.mask.sum())


def in_plane_holes(mask: np.ndarray) -> np.ndarray:
    """What a (k, j, i) mask encloses within each of its own slices, not the mask itself."""
    # every slice in one call: the slices interleaved with solid layers, so no hole reaches the
    # outside through a neighbouring slice
    stack = np.ones((2 * mask.shape[0] + 1, *mask.shape[1:]), np.uint8)
    stack[1::2] = mask
    filled = sitk.GetArrayFromImage(sitk.BinaryFillhole(sitk.GetImageFromArray(stack), fullyConnected=False))
    return filled[1::2].astype(bool) & ~mask


def fall_back(wall: float, value: float, context: float, polarity: int) -> float:
    """How far ``value`` falls back from a blob's ``wall`` towards its ``context``: 0 at the wall
    (solid), 1 at the context (hollow); 0 when the wall does not stand out on the blob's side."""
    span = (wall - context) * polarity
    if not (math.isfinite(span) and span > 0):
        return 0.0
    return float(np.clip((wall - value) * polarity / span, 0.0, 1.0))


def in_plane_hollow(values: np.ndarray, cand: Candidate) -> float:
    """How far what the blob's mask encloses in its own slice planes falls back from its wall towards
    the context (0 when it encloses nothing); ``values`` are the grid the candidate was cut from.

    Why: a cavity that partial volume opens into the lung on the next slice is no closed hole in 3D,
    but its wall still rings it in the slice through its middle. Made for the regions kept (not every
    seed: filling every candidate's slices cost 60 % more detection time)."""
    if cand.mask.shape[0] < 2 or not (cand.wall - cand.context) * cand.polarity > 0:
        return 0.0  # one slice, or no wall standing out (nan: not measured)
    hole = in_plane_holes(cand.mask)
    if hole.sum() < max(2, 0.03 * (hole.sum() + cand.mask.sum())):
        return 0.0
    inside = float(np.median(values[cand.crop][hole]))
    return fall_back(cand.wall, inside, cand.context, cand.polarity)


def family_reference(image: ImageInput) -> tuple[str, float]:
    """(family, unit): CT is used in HU; other families relative to the median tissue signal."""
    family = modality_family(image.modality)
    if family == "CT":
        return family, 1.0
    v = np.asarray(image.voxels)
    sample = v[:: max(1, v.shape[0] // 24)].astype(np.float32, copy=False).ravel()
    if image.photometric.upper() == "MONOCHROME1":
        sample = float(sample.max()) - sample
    hi = float(np.percentile(sample, 99.5)) if sample.size else 0.0
    tissue = sample[sample > 0.1 * hi] if hi > 0 else sample
    ref = float(np.median(tissue)) if tissue.size else 1.0
    return family, max(ref, 1e-6) / 1000.0


def prepare(image: ImageInput, *, crop: tuple[slice, slice, slice] | None = None,
            reference: float | None = None, grid_mm: float = GRID_MM) -> PreparedImage:
    """The image (or a crop of it) on the isotropic detection grid, in family units.

    ``reference`` is the family unit of the whole series (pass it for a crop, so a box query is
    normalised like the stored regions of the same series)."""
    family, ref = family_reference(image)
    if reference is not None:
        ref = float(reference)
    vox = image.voxels
    off = np.zeros(3)
    if crop is not None:
        vox = vox[crop]
        off = np.array([s.start or 0 for s in crop], np.float64)
    if vox.size == 0:
        raise PreprocessError("cannot look for regions in an empty image")
    arr = np.asarray(vox, np.float32)
    if family != "CT":
        if image.photometric.upper() == "MONOCHROME1":
            arr = float(np.max(image.voxels)) - arr
        arr = arr / np.float32(ref)
    sp = np.asarray(image.spacing, np.float64)  # (sk, sj, si)
    extent = np.asarray(arr.shape) * sp
    g = max(float(grid_mm), float(min(sp[1:])))  # never finer than the image itself
    while np.prod(np.maximum(np.ceil(extent / g), 1)) > MAX_GRID_VOXELS:
        g *= 1.25
    flat = arr.shape[0] < 4  # one slice (a radiograph, a single CT slice): 2D on each slice
    size_zyx = [arr.shape[0] if flat else max(int(round(extent[0] / g)), 1),
                max(int(round(extent[1] / g)), 1), max(int(round(extent[2] / g)), 1)]
    out_sp = np.array([sp[0] if flat else extent[0] / size_zyx[0], extent[1] / size_zyx[1], extent[2] / size_zyx[2]])
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing([float(s) for s in sp[::-1]])
    # grid voxel centres span the same field of view as the original voxels
    origin = (out_sp - sp) / 2.0
    res = sitk.Resample(img, [int(v) for v in size_zyx[::-1]], sitk.Transform(), sitk.sitkLinear,
                        [float(o) for o in origin[::-1]], [float(s) for s in out_sp[::-1]], img.GetDirection(),
                        float(arr.min()), sitk.sitkFloat32)
    values = sitk.GetArrayFromImage(res)
    scale = out_sp / sp
    offset = off + origin / sp
    noise = _noise(values, family)
    return PreparedImage(values, float(np.mean(out_sp[1:])), family, float(ref), scale, offset,
                         tuple(int(s) for s in image.voxels.shape[:3]), noise)  # type: ignore[arg-type]


def _noise(values: np.ndarray, family: str) -> float:
    """Robust noise: MAD of the difference of neighbouring voxels inside the object."""
    fg = values > (-900.0 if family == "CT" else 100.0)
    d = np.diff(values, axis=-1)
    m = fg[..., 1:] & fg[..., :-1]
    if m.sum() < 100:
        return 1.0
    diffs = d[m]
    return float(max(1.4826 * np.median(np.abs(diffs - np.median(diffs))) / math.sqrt(2.0), 1e-3))


# thresholds per family (family units): minimum blob response and minimum segmented contrast
_FLOOR = {"CT": 10.0, "MR": 12.0}
_MIN_CONTRAST = {"CT": 18.0, "MR": 25.0}


def _image(arr: np.ndarray, g: float) -> sitk.Image:
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr, np.float32))
    img.SetSpacing([g] * arr.ndim)
    return img


def _log_at(values: np.ndarray, g: float, sigma: float) -> tuple[np.ndarray, float]:
    """Scale-normalised LoG at ``sigma`` on a grid of about sigma/2 (a pyramid: coarse scales
    cost little); returns (response, its grid step). Flat images are filtered slice by slice."""
    flat = values.shape[0] < 4
    step = max(1, int(sigma / 2.0 // g))
    dims = values.shape[1:] if flat else values.shape
    while step > 1 and min(dims) // step < 4:
        step -= 1
    if min(dims) < 4:  # too small to filter: no blob at this scale
        return np.zeros((values.shape[0], *[int(np.ceil(n / step)) for n in values.shape[1:]]), np.float32), g * step
    if flat:
        sl = values[:, ::step, ::step]
        out = np.stack([sitk.GetArrayFromImage(sitk.LaplacianRecursiveGaussian(_image(sl[k], g * step), sigma, True))
                        for k in range(sl.shape[0])])
    else:
        img = _image(values, g)
        if step > 1:
            img = sitk.BinShrink(img, [step] * 3)
        out = sitk.GetArrayFromImage(sitk.LaplacianRecursiveGaussian(img, sigma, True))
    return out, g * step


def _peaks(resp: np.ndarray, thr: float) -> np.ndarray:
    """(n, 3) indices of voxels above ``thr`` that are maxima of their 3x3x3 neighbourhood (3x3 in
    plane for a single slice), in C order. The box maximum is taken axis by axis over the whole
    array (gathering the 26 neighbours of every voxel above the threshold was a fifth of a series'
    detection time)."""
    above = resp > thr
    if not above.any():
        return np.argwhere(above)
    mx = np.asarray(resp)
    for axis in range(mx.ndim):  # a 3-wide box maximum is separable: one pass per axis
        if mx.shape[axis] == 1:
            continue
        lo = [slice(None)] * mx.ndim
        hi = [slice(None)] * mx.ndim
        lo[axis], hi[axis] = slice(0, -1), slice(1, None)
        out = mx.copy()
        np.maximum(out[tuple(lo)], mx[tuple(hi)], out=out[tuple(lo)])  # the next voxel
        np.maximum(out[tuple(hi)], mx[tuple(lo)], out=out[tuple(hi)])  # the previous voxel
        mx = out
    return np.argwhere(above & (resp >= mx))


def find_candidates(prep: PreparedImage, *, within: tuple[slice, slice, slice] | None = None,
                    max_seeds: int = 400, max_tries: int = 1200,
                    scales: Sequence[float] = SCALES_MM) -> list[Candidate]:
    """Segmented blob candidates of a prepared image, most salient first.

    ``within`` limits the candidate *centres* to a part of the grid (a box query): the filtering
    still sees the whole prepared image, so a candidate inside the box is computed exactly as it
    would have been over the whole series."""
    v = prep.values
    g = prep.grid_mm
    fam = prep.family
    flat = v.shape[0] < 4
    floor = _FLOOR.get(fam, 12.0)
    levels = [_log_at(v, g, s) for s in scales]
    seeds: list[tuple[float, int, np.ndarray, int]] = []
    thr_cap: dict[int, float] = {}
    for n, s in enumerate(scales):
        log_n, step = levels[n]
        f = step / g
        # |response| is the same for both polarities: one median per scale
        mad = float(np.median(np.abs(log_n))) * 1.4826 if log_n.size > 64 else 0.0
        for polarity in (1, -1):
            resp = -polarity * log_n  # bright blobs have a negative Laplacian
            # the response's spread at coarse scales is the body outline, not noise: never ask a
            # coarse blob to stand out more than the finest scale asks (a 4 cm metastasis of +50 HU)
            thr = max(floor, min(6.0 * mad, thr_cap.setdefault(polarity, 6.0 * mad)))
            for p in _peaks(resp, thr):
                c = p * (1.0 if flat else f)
                if flat:
                    c = np.array([p[0], p[1] * f, p[2] * f], float)
                if within is not None and not all(sl.start <= cc < sl.stop for sl, cc in zip(within, c)):
                    continue
                r = float(resp[tuple(p)])
                ok = True
                for m in (n - 1, n + 1):  # a maximum across scale too
                    if 0 <= m < len(scales):
                        lm, sm = levels[m]
                        q = np.clip(np.round(c / np.array([1.0 if flat else sm / g, sm / g, sm / g])).astype(int), 0,
                                    np.asarray(lm.shape) - 1)
                        if -polarity * float(lm[tuple(q)]) > r:
                            ok = False
                if ok:
                    seeds.append((r, n, c, polarity))
    seeds.sort(key=lambda t: -t[0])
    smooth = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(_image(v, g), 1.0)) if not flat else v
    unique = _blob_like(smooth, g, seeds, scales, fam)
    out: list[Candidate] = []
    centres = np.empty((0, 3))
    radii = np.empty(0)
    sig = np.empty(0)
    pol = np.empty(0, int)
    for strength, n, c, polarity in unique[:max_tries]:
        if len(out) >= max_seeds:
            break
        s = scales[n]
        r_mm = s * _SQRT3
        if len(out):
            # the same blob at a neighbouring position or scale: each centre lies within the other's
            # radius (a disc beside a lytic lesion, a vessel beside a nodule are other blobs)
            near = ((pol == polarity) & (np.linalg.norm(centres - c, axis=1) * g < 0.8 * np.minimum(radii, r_mm))
                    & (s / sig > 0.4) & (s / sig < 2.5))
            if near.any():
                continue  # the same blob at a neighbouring position or scale
        cand = segment(smooth, g, c, s, polarity, fam, strength)
        if cand is not None:
            out.append(cand)
            centres = np.vstack([centres, c[None]])
            radii = np.append(radii, r_mm)
            sig = np.append(sig, s)
            pol = np.append(pol, polarity)
    return out


# directions of the ring a blob must differ from on (nearly) every side: 6 axes + 8 diagonals
_DIRS = np.array([d for d in np.ndindex(3, 3, 3) if d != (1, 1, 1) and sum(abs(x - 1) for x in d) in (1, 3)],
                 float) - 1.0
_DIRS /= np.linalg.norm(_DIRS, axis=1, keepdims=True)
_AXES = _DIRS[np.count_nonzero(_DIRS, axis=1) == 1]  # the 6 axis directions
_DIRS_2D = np.array([(0.0, np.cos(a), np.sin(a)) for a in np.linspace(0, 2 * np.pi, 12, endpoint=False)])


def _sample(smooth: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Values at points (seeds, directions, 3) of the grid, rounded to voxels, clipped to the image."""
    hi = np.asarray(smooth.shape) - 1
    return smooth[tuple(np.clip(np.round(pts).astype(int), 0, hi).transpose(2, 0, 1))]


def _blob_like(smooth: np.ndarray, g: float, seeds: list[tuple[float, int, np.ndarray, int]],
               scales: Sequence[float], family: str) -> list[tuple[float, int, np.ndarray, int]]:
    """Seeds whose centre differs from a ring around it on nearly every side (a blob, not an edge
    or a ridge, which the Laplacian also answers to); cheap: 20 samples per seed."""
    if not seeds:
        return []
    flat = smooth.shape[0] < 4
    dirs = _DIRS_2D if flat else _DIRS
    cen = np.array([sd[2] for sd in seeds])
    r = np.array([scales[sd[1]] * _SQRT3 / g for sd in seeds])
    pol = np.array([sd[3] for sd in seeds], float)
    core = _sample(smooth, cen[:, None, :])[:, 0]
    pts = cen[:, None, :] + dirs[None, :, :] * (1.6 * np.maximum(r, 1.0))[:, None, None]
    ring = _sample(smooth, pts)
    ctx = np.median(ring, axis=1)
    # a hollow blob (a cavitating nodule, a ring-enhancing tumour around necrosis) has its centre
    # in the hole: judge it by its wall (the median of 6 axis points, 4 in 2D, at 0.7 of its
    # radius) when the wall stands out from the ring more than twice as much as the centre does;
    # a solid blob's centre is its extreme, so nothing changes for it
    axes = _DIRS_2D[::3] if flat else _AXES
    inner = cen[:, None, :] + axes[None, :, :] * (0.7 * np.maximum(r, 1.0))[:, None, None]
    wall = np.median(_sample(smooth, inner), axis=1)
    core = np.where((wall - ctx) * pol > 2.0 * np.maximum((core - ctx) * pol, 0.0), wall, core)
    d0 = (core - ctx) * pol
    side = ((core[:, None] - ring) * pol[:, None]) > 0.5 * d0[:, None]
    ok = (d0 >= _MIN_CONTRAST.get(family, 25.0) * 0.7) & (side.mean(axis=1) >= RING_SHARE)
    return [sd for sd, keep in zip(seeds, ok) if keep]


def _sphere_crop(shape: Sequence[int], centre: np.ndarray, radius_vox: float, flat: bool
                 ) -> tuple[tuple[slice, slice, slice], np.ndarray]:
    r = int(math.ceil(radius_vox))
    lo = [max(int(round(c)) - r, 0) for c in centre]
    hi = [min(int(round(c)) + r + 1, n) for c, n in zip(centre, shape)]
    if flat:
        lo[0], hi[0] = int(round(centre[0])), int(round(centre[0])) + 1
    crop = tuple(slice(a, b) for a, b in zip(lo, hi))
    grids = list(np.meshgrid(*[np.arange(a, b) - cc for a, b, cc in zip(lo, hi, centre)], indexing="ij"))
    if flat:
        grids[0] = np.zeros_like(grids[0])
    dist = np.sqrt(sum(gg.astype(np.float32) ** 2 for gg in grids))
    return crop, dist  # type: ignore[return-value]


def _component_at(band: np.ndarray, core: np.ndarray) -> np.ndarray | None:
    """The connected part of ``band`` that overlaps ``core`` most (None when none does)."""
    lab = sitk.GetArrayFromImage(sitk.ConnectedComponent(sitk.GetImageFromArray(band.astype(np.uint8))))
    near = lab[core & (lab > 0)]
    if near.size == 0:
        return None
    return lab == np.bincount(near).argmax()


def segment(smooth: np.ndarray, g: float, centre: np.ndarray, sigma_mm: float, polarity: int, family: str,
            response: float = 0.0) -> Candidate | None:
    """Segment the blob at ``centre`` (grid index) of scale ``sigma_mm``; None when it is no blob."""
    flat = smooth.shape[0] < 4
    r_vox = sigma_mm * _SQRT3 / g
    reach = max(2.5 * r_vox, 2.5)
    crop, dist = _sphere_crop(smooth.shape, centre, reach * 1.1 + 1, flat)
    vals = smooth[crop]
    shell = (dist >= max(1.8 * r_vox, 1.5)) & (dist <= max(2.6 * r_vox, 2.5))
    core_m = dist <= max(0.5 * r_vox, 0.75)
    if shell.sum() < 6 or core_m.sum() < 1:
        return None
    ring = vals[shell]
    context = float(np.median(ring))
    spread = float(1.4826 * np.median(np.abs(ring - context)))
    core = float(np.median(vals[core_m]))
    d0 = core - context
    # a hollow blob: the centre is the hole (a cavity, necrosis) and the wall is what differs from
    # the context. Its brightest (darkest) tenth within the blob radius stands for the core and
    # seeds the band, and hole filling gives the cavity back to the mask; a solid blob's tenth is
    # its core value, so nothing changes for it
    ball = dist <= max(0.9 * r_vox, 1.5)
    wall = float(np.percentile(vals[ball], 90 if polarity > 0 else 10))
    # hollowness, read at the very centre (0.3 of the radius): at the blob's scale the core's median
    # mixes a 10 mm cavity with its wall (-320 HU between -90 and -950); the hole its wall encloses
    # in the slice plane is read for the kept regions only (:func:`in_plane_hollow`)
    centre_m = dist <= max(0.3 * r_vox, 0.75)
    centre_value = float(np.median(vals[centre_m if centre_m.any() else core_m]))  # a centre between voxels
    hollow = fall_back(wall, centre_value, context, polarity)
    if (wall - context) * polarity > 2.0 * max(d0 * polarity, 0.0):
        core, d0 = wall, wall - context
        core_m = ball & ((vals - context) * polarity > abs(d0) / 2.0)
    if d0 * polarity <= 0 or abs(d0) < _MIN_CONTRAST.get(family, 25.0):
        return None
    if polarity > 0:
        band = (vals > context + d0 / 2.0) & (vals < core + abs(d0))
    else:
        band = (vals < context + d0 / 2.0) & (vals > core - abs(d0))
    band &= dist <= reach
    if not band.any():
        return None
    keep = _component_at(band, core_m)
    if keep is None:
        return None
    # cut thin attachments (a vessel feeding a nodule, a rib touching a vertebra) off the blob;
    # a blob still running out of its sphere is cut harder once, then given up as a larger structure
    for frac in (0.35, 0.6):
        part = keep
        open_r = int(round(frac * r_vox))
        if open_r >= 1 and r_vox >= 2.5 and not flat:  # a blob a few voxels across has nothing to cut
            opened = sitk.GetArrayFromImage(sitk.BinaryMorphologicalOpening(
                sitk.GetImageFromArray(keep.astype(np.uint8)), [open_r] * 3, sitk.sitkBall)).astype(bool)
            part = _component_at(opened, core_m) if opened.any() else None
            if part is None:
                part = keep
        filled_img = sitk.BinaryFillhole(sitk.GetImageFromArray(part.astype(np.uint8)), fullyConnected=False)
        mask = sitk.GetArrayFromImage(filled_img).astype(bool)
        n = int(mask.sum())
        if n < (2 if flat else 3):
            return None
        # a blob with attachments crosses its search sphere in a few places; a piece of a larger
        # structure (a lung, the liver) covers much of the sphere's surface
        surface = dist > reach - 1.0
        if int((mask & surface).sum()) <= 0.15 * max(int((surface & (dist <= reach)).sum()), 1):
            keep = part
            break
    else:
        # a lesion in an organ whose wall is thinner than the grid (a lytic lesion inside the
        # vertebral cortex, a metastasis at the liver capsule) runs out into the tissue beyond:
        # it passed the ring test, so keep the part within its blob radius instead of dropping it
        part = _component_at(keep & (dist <= max(1.25 * r_vox, 1.5)), core_m)
        if part is None:
            return None
        mask = sitk.GetArrayFromImage(sitk.BinaryFillhole(sitk.GetImageFromArray(part.astype(np.uint8)),
                                                          fullyConnected=False)).astype(bool)
        n = int(mask.sum())
        if n < (2 if flat else 3):
            return None
        keep = part
    return Candidate(np.asarray(centre, float), float(sigma_mm), int(polarity), float(response), core, context,
                     crop, mask, int(n - keep.sum()), spread, hollow, wall)


__all__ = ["Candidate", "GRID_MM", "PreparedImage", "SCALES_MM", "fall_back", "family_reference", "find_candidates",
           "in_plane_hollow", "in_plane_holes", "modality_family", "prepare", "segment"]
